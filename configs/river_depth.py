"""Depth convergence of the rivers (spec §6a; checks C9-C11), float64.

One shared-weight block (n = 6 tokens, d = 8, d_ff = 16, one head, GELU,
Appendix A.1 scalings), T = 1, L in {4, ..., 256}; every scheme of the spec's
§6a tables for R-pre (preln, macaron_euler, lie_rk4sub, strang_rk4sub, rk4)
and R-post (postln, heun_proj, strang_proj, rk4_proj) against an RK4
reference at 8 * max(L) steps. Slopes are least-squares fits over
L in {32, 64, 128, 256}; a log-log figure shows them.

Command:
  python -m attnlab.run --config=configs/river_depth.py --workdir=/tmp/river_depth
  # ReLU FFN (C11: Lie/Strang keep 1 and 2 +- 0.15; RK4 not required to reach 4):
  python -m attnlab.run --config=configs/river_depth.py --workdir=/tmp/river_depth_relu --config.act=relu

Runtime: about 40 s on 2 idle CPU cores (one compile per scheme; the step
count is traced), at most a few minutes on a loaded machine.

Expected result (summary.json): order = preln 0.99, macaron_euler 0.99,
lie_rk4sub 1.00, strang_rk4sub 2.00, rk4 3.99, postln 0.99, heun_proj 2.00,
strang_proj 2.00, rk4_proj 4.01; error_at_L.preln["256"] ~ 6.6e-3;
manifold_residual <= 1e-14 for every projected scheme; pass = true.

Bad input: ``--config.T=0``, ``--config.Ls='(0,8)'`` or an unknown scheme exit
with status 2 and a one-line error.
"""
from attnlab.engine.config import base_config, parse_arg

PRE = ("preln", "macaron_euler", "lie_rk4sub", "strang_rk4sub", "rk4")
POST = ("postln", "heun_proj", "strang_proj", "rk4_proj")


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = base_config(
      "attnlab.river.experiments.depth:experiment",
      x64=True,
      seed=0,
      d=8,
      n_tokens=6,
      d_ff=16,
      heads=1,
      act="gelu",  # smooth activation for order tests (spec P12)
      T=1.0,
      Ls=(4, 8, 16, 32, 64, 128, 256),
      fit_Ls=(32, 64, 128, 256),  # least-squares window of the order fit (spec §9 C)
      schemes=PRE + POST,
      ref_factor=8,  # reference: RK4 at ref_factor * max(Ls) steps (spec §7.6)
      model="postln",  # river.model of the reconstructed choices table (both rivers are run here)  [reconstructed, §2.4]
      controls="piecewise_constant",  # shared weights here: one control for all of [0, T]  [reconstructed, §2.3]
      norm_eps=0.0,  # LN epsilon in projections / manifold tests  [reconstructed, P3/P4]
  )
  if a["smoke"]:
    cfg.Ls = (8, 16, 32)
    cfg.fit_Ls = (8, 16, 32)
    cfg.schemes = ("preln", "rk4", "heun_proj")
    cfg.ref_factor = 4
  return cfg
