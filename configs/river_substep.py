"""Sub-stepping a trained post-LN Transformer (spec §5 item 4): how ODE-like is it?

Trains a small post-LN Transformer in the paper's form (default: d = 16, 2
heads, 3 layers, d_ff = 32, GELU, LN onto S1(0, 1) without per-feature gain)
with Adam to sort 8 integers from {0..9} (2000 steps, batch 64, 1 seed). At
every logged step each layer's unit interval is refined into m in
{1, 2, 4, ..., 64} sub-steps (piecewise-constant controls); distances to m = 1
(the trained network) and to the m -> infinity river (projected RK4, 16
sub-steps per layer) are logged.

Commands:
  python -m attnlab.run --config=configs/river_substep.py --workdir=/tmp/river_substep
  python -m attnlab.plot --workdir=/tmp/river_substep
  # :small is the same as the default (kept for old commands); :large is the former
  # default (d = 32, 4 heads, 4 layers, d_ff = 64, 3000 steps, batch 128, 2 seeds)
  python -m attnlab.run --config=configs/river_substep.py:large --workdir=/tmp/river_substep_large

Runtime: default 288 s wall (145 s CPU) on the shared 2-core CPU at load
average 7 (first chunk incl. compilation 155 s, then ~40 s per 500 steps).
:large was not run to completion: 1000 of 3000 steps took 626 s wall (~5 CPU
minutes) at load average 8, i.e. about 28 minutes in all there. Its cost is
the training and the evaluations themselves, not compilation (the training
step compiles in ~18 s, the evaluation in ~12 s, wall, loaded).

Expected result (default, summary.json): final_acc = 1.0 (token accuracy),
distance_m1_to_limit = 1.19 (the trained network is far from its river),
dist_to_limit = 0.55, 0.29, 0.16, 0.088, 0.046, 0.024 at m = 2..64 (order_in_m
= 0.91, tending to 1), acc_at_m = 0.38-0.44 for every m >= 2.
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, smoke=False, small=False, large=False)
  cfg = base_config(
      "attnlab.river.experiments.substep:experiment",
      seeds=1,
      steps=2000,
      log_every=500,
      chunk_steps=500,
      lr=3e-3,
      d=16,
      heads=2,
      layers=3,
      d_ff=32,
      act="gelu",
      vocab=10,
      n_tokens=8,
      batch=64,
      eval_batch=128,
      ms=(1, 2, 4, 8, 16, 32, 64),
      ref_substeps=16,  # projected RK4 sub-steps per layer for the m -> infinity river
      controls="piecewise_constant",  # one control per layer  [reconstructed, §2.3]
      norm_mode="projection",  # LN without per-feature gain (P5: no limit otherwise)  [reconstructed]
  )
  if a["large"]:  # the former default; ~28 min on the loaded 2-core CPU (see above)
    cfg.seeds, cfg.steps = 2, 3000
    cfg.d, cfg.heads, cfg.layers, cfg.d_ff, cfg.batch = 32, 4, 4, 64, 128
  if a["smoke"]:
    cfg.seeds, cfg.steps, cfg.log_every, cfg.chunk_steps = 1, 20, 10, 10
    cfg.d, cfg.heads, cfg.layers, cfg.d_ff, cfg.ms, cfg.ref_substeps = 8, 2, 2, 8, (1, 2, 4), 4
    cfg.batch, cfg.eval_batch = 8, 8
  return cfg
