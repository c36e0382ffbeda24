"""Sub-stepping a trained post-LN Transformer (spec §5 item 4): how ODE-like is it?

Trains a 4-layer post-LN Transformer in the paper's form (d = 32, 4 heads,
d_ff = 64, GELU, LN onto S1(0, 1) without per-feature gain) with Adam to sort
8 integers from {0..9}, 2 seeds, vmapped by the engine. At every logged step
each layer's unit interval is refined into m in {1, 2, 4, ..., 64} sub-steps
(piecewise-constant controls); distances to m = 1 (the trained network) and to
the m -> infinity river (projected RK4, 32 sub-steps per layer) are logged.

Command:
  python -m attnlab.run --config=configs/river_substep.py:small --workdir=/tmp/river_substep_small
  python -m attnlab.run --config=configs/river_substep.py --workdir=/tmp/river_substep   # full size
  python -m attnlab.plot --workdir=/tmp/river_substep_small

Runtime: ``:small`` (d = 16, 2 heads, 3 layers, 2000 steps, 1 seed): 437 s on a
heavily loaded 2-core CPU, about 250 s of it compilation. The full size was
not run to completion here: its compilation exceeded 10 minutes on the loaded
machine.

Expected result (``:small``, summary.json): final_acc = 1.0 (token accuracy),
distance_m1_to_limit ~ 1.19 (the trained network is far from its river),
dist_to_limit = 0.55, 0.29, 0.16, 0.088, 0.046, 0.024 at m = 2..64 (order_in_m
~ 0.9, tending to 1), acc_at_m ~ 0.38-0.44 for every m >= 2.
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, smoke=False, small=False)
  cfg = base_config(
      "attnlab.river.experiments.substep:experiment",
      seeds=2,
      steps=3000,
      log_every=500,
      chunk_steps=500,
      lr=3e-3,
      d=32,
      heads=4,
      layers=4,
      d_ff=64,
      act="gelu",
      vocab=10,
      n_tokens=8,
      batch=128,
      eval_batch=128,
      ms=(1, 2, 4, 8, 16, 32, 64),
      ref_substeps=16,  # projected RK4 sub-steps per layer for the m -> infinity river
      controls="piecewise_constant",  # one control per layer  [reconstructed, §2.3]
      norm_mode="projection",  # LN without per-feature gain (P5: no limit otherwise)  [reconstructed]
  )
  if a["small"]:  # a cheaper variant (the full one compiles for > 10 min on a loaded 2-core CPU)
    cfg.seeds, cfg.steps, cfg.log_every, cfg.chunk_steps = 1, 2000, 500, 500
    cfg.d, cfg.heads, cfg.layers, cfg.d_ff, cfg.batch, cfg.eval_batch = 16, 2, 3, 32, 64, 128
  if a["smoke"]:
    cfg.seeds, cfg.steps, cfg.log_every, cfg.chunk_steps = 1, 20, 10, 10
    cfg.d, cfg.heads, cfg.layers, cfg.d_ff, cfg.ms, cfg.ref_substeps = 8, 2, 2, 8, (1, 2, 4), 4
    cfg.batch, cfg.eval_batch = 8, 8
  return cfg
