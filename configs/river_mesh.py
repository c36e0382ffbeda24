"""Mesh refinement of the continuous river in the token (x) and feature (y) domains (spec §5.5).

Smooth kernels on [0, 1]^2 (see attnlab/river/experiments/mesh.py), R-pre
field, RK4 with L = 8 steps to T = 1, midpoint quadrature with N_x, N_y in
{16, ..., 512}; errors of the observable J = int u_T phi against (512, 512),
refining both axes, tokens only, features only.

Command:
  python -m attnlab.run --config=configs/river_mesh.py --workdir=/tmp/river_mesh

Runtime: about 1-2 minutes on 2 CPU cores (the 512 x 512 solves dominate).

Expected result (summary.json): rate_both, rate_tokens, rate_features all
close to 2 (the midpoint rule on smooth, non-periodic data; the spec asks to
measure it, not assume it).
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = base_config(
      "attnlab.river.experiments.mesh:experiment",
      x64=True,
      Ns=(16, 32, 64, 128, 256, 512),
      fit_Ns=(16, 32, 64, 128),  # fit below the reference level (error vs N_max is biased near it)
      T=1.0,
      L=8,
      act="gelu",
      measure="unit_interval",  # the quadrature map used here  [reconstructed, §3.1]
  )
  if a["smoke"]:
    cfg.Ns, cfg.fit_Ns, cfg.L = (8, 16, 32, 64), (8, 16, 32), 2
  return cfg
