"""Single-layer Jacobian ranks at structured (critical) points (spec §3.2, check 8).

Lightning, d = 4, d' = 3, a = 2, t = 3: generic weights, rank-1 Q, rank-1 Q
and K, rank-1 V, rank-1 V/Q/K, Q = 0, Q = K = 0, V = 0. The point index is a
traced hyperparameter, so the 8 points (x seeds) run in one compiled program.

Command:
  python -m attnlab.run --config=configs/geometry_critical_points.py --workdir=/tmp/geo_crit

Runtime: about 7-10 s on 2 idle CPU cores (6.5 s of CPU time, 18 s wall at
load average 8, cold compilation cache).

Expected result (summary.json): ``ranks = [23, 21, 18, 23, 18, 8, 0, 12]``
equal to ``spec_ranks``, ``all_match_spec = true``. Figure: ``critical_points.png``.
"""
from attnlab.engine.config import base_config
from attnlab.geometry.critical import POINT_NAMES
from attnlab.geometry.experiments import estimator_fields


def get_config(arg=None):
  del arg
  cfg = base_config(
      "attnlab.geometry.experiments:critical_points",
      widths=(4, 3),
      attn_dims=(2,),
      point=tuple(range(len(POINT_NAMES))),
      **estimator_fields(kind="lightning", t=3),
  )
  cfg.sweep.point = cfg.get_ref("point")
  cfg.lanes = cfg.get_ref("seeds")  # the engine vmaps all seeds of a setting in lockstep
  cfg.lock()
  return cfg
