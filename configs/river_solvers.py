"""diffrax backend and gradients on the R-pre GELU river (spec §6d, checks E16-E17), float64.

n = 6, d = 8, d_ff = 16, one head, T = 1; RK4 scan reference at L = 1024.
Also the layer-boundary check (spec P15): 4 distinct piecewise-constant
layers, diffrax Tsit5 with and without ``jump_ts`` vs the scan RK4 with 64
substeps per layer.

Command:
  python -m attnlab.run --config=configs/river_solvers.py --workdir=/tmp/river_solvers

Runtime: about 1 minute on 2 CPU cores (diffrax compilation dominates).

Expected result (summary.json): e16.tsit5_err ~ 5e-11 (<= 1e-9, ~33 accepted
steps), e16.dopri8_err ~ 2e-13 (<= 1e-12, ~18 steps); e17.fd_rel_err ~ 1e-9
(<= 1e-6), recursive_rel_err ~ 4e-10 (<= 1e-7), backsolve_rel_err ~ 1e-10
(<= 1e-5); every entry of ``pass`` true.
"""
from attnlab.engine.config import base_config


def get_config(arg=None):
  return base_config(
      "attnlab.river.experiments.solvers:experiment",
      x64=True,
      d=8,
      n_tokens=6,
      d_ff=16,
      act="gelu",
      T=1.0,
      L_ref=1024,
      fd_step=1e-6,
      adjoint="recursive",  # river.adjoint default (the comparisons run all of them)  [reconstructed, §7.7]
      layers=4,
      substeps=64,
  )
