"""The authors' public NeuroDim sweep: d = 4, t = 3, l = 3 layers, a = 1..4, both kinds.

NeuroDim (github.com/giovanni-marchetti/NeuroDim, ``dim_estimator.py``) sweeps
the attention dim a with d = 4 and l = 3; its figure plots the formula twice
(its 'Estimated' line is ``true_dim_vec``). We plot the actual float64
Jacobian rank against the formula (spec §4.3, check 7), with the spec's
default N = max(250, ceil(3P / (d_l t))) = 250 (NeuroDim used N = 10).

Command:
  python -m attnlab.run --config=configs/geometry_sweep_a.py --workdir=/tmp/geo_sweep_a

Runtime: about 35 s on 2 idle CPU cores (8 compiled programs; 34 s of CPU
time and 88 s of wall time at load average 7, cold compilation cache).

Expected result (summary.json, sorted by a then kind):
softmax 37, 52, 61, 64 and lightning 34, 49, 58, 61 for a = 1..4;
``estimated == expected`` everywhere, ``all_reliable = true`` (gaps 1e10.3-1e13.9
for these 3-layer networks). Figure: ``dimension.png``.
"""
from attnlab.engine.config import base_config
from attnlab.geometry.experiments import estimator_fields


def get_config(arg=None):
  del arg
  cfg = base_config(
      "attnlab.geometry.experiments:uniform",
      delta=4,
      depth=3,
      a=(1, 2, 3, 4),
      **estimator_fields(kind=("softmax", "lightning"), t=3),
  )
  cfg.sweep.a = cfg.get_ref("a")
  cfg.sweep.kind = cfg.get_ref("kind")
  cfg.lanes = cfg.get_ref("seeds")  # the engine vmaps all seeds of a setting in lockstep
  cfg.lock()
  return cfg
