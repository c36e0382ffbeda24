"""Superposition S4, E8: robustness of the superposed exponent to sigma0, weight decay, importance mode.

N = 1024, K = N/64 = 16, a = 1.2, b = 0, ``tied_relu``, SGD lr 0.25, B = 256,
2000 steps, 2 seeds. One compiled program sweeps the traced knobs
sigma0 in {1e-3, 1e-2} x weight_decay in {-1e-3, 0, 1e-3} (negative weight
decay strengthens superposition, as in the sibling code). Static knobs get one
call each (optimizer, batch, lr, bias: see configs/superposition_bottleneck.py,
whose exploration runs are listed in experiments/superposition/README.md).

Commands:
  python -m attnlab.run --config=configs/superposition_robustness.py --workdir=/tmp/s4_robust
  python -m attnlab.run --config=configs/superposition_robustness.py:loss_weight --workdir=/tmp/s4_robust_lw

Runtime: 4.2 min (default) on 2 shared CPU cores; on the idle machine 17 s
(default with --config.imp_exp=0.5) and 21 s (``:loss_weight``).

Expected result: summary.json ``settings_fit`` gives gamma per (sigma0,
weight_decay); recorded only (spec E8). Measured: gamma 0.20-0.22 (b = 0),
0.42-0.44 (``:loss_weight``, b = 0.5), 0.72-0.73 (teacher_scale, b = 0.5),
each at the K = N per-feature ODE value of its mode; tables in the README.

Arguments: ``:loss_weight`` (importance as a loss weight, b = 0.5),
``:smoke`` (tiny).
"""
from attnlab.engine.config import base_config, parse_arg
from attnlab.superposition.experiment import SIM_FIELDS


def get_config(arg=None):
  a = parse_arg(arg, loss_weight=False, smoke=False)
  f = dict(SIM_FIELDS)
  f.update(student="tied_relu", n_features=1024, k_ratio=1 / 64, batch=256, lr=0.25, freq_exp=1.2, imp_exp=0.0,
           sigma0=(1e-3, 1e-2), weight_decay=(-1e-3, 0.0, 1e-3), eval_size=4096, eval_chunk=4096, n_probes=12)
  eng = dict(seeds=2, steps=2000, log_spacing="log", n_log_points=40, chunk_steps=250, ckpt_every=0)
  if a["loss_weight"]:
    f.update(importance_mode="loss_weight", imp_exp=0.5)
  if a["smoke"]:
    f.update(n_features=32, k_ratio=0.25, batch=64, eval_size=256, eval_chunk=256, n_probes=4)
    eng.update(seeds=1, steps=60, n_log_points=20, chunk_steps=60)
  cfg = base_config("attnlab.superposition.experiment:robustness", **eng, **f)
  for name in ("sigma0", "weight_decay"):
    cfg.sweep[name] = cfg.get_ref(name)
  return cfg
