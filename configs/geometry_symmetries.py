"""Symmetries of deep attention: invariance errors and the Jacobian kernel (checks 2-3).

For lightning and softmax at widths (4, 3, 3), a = (2, 2), float64: the max
relative change of phi under a random GL_{a_i} rotation of (Q_i, K_i), a
random pass-through M_i, the per-layer scaling (c = ``scale_c`` = 1.7) and
the K<->V swap of a single (d_0 -> 1, a = 1) layer; the residuals
||J xi|| / (||J||_2 ||xi||) of the infinitesimal generators; and the Jacobian
nullity against the dimension of the symmetry group.

Command:
  python -m attnlab.run --config=configs/geometry_symmetries.py --workdir=/tmp/geo_sym

Runtime: about 20 s on 2 idle CPU cores (20.4 s of CPU time, 56 s wall at
load average 8, cold compilation cache; mostly compiling two programs).

Expected result (summary.json ``by_kind``): lightning: every error and
residual <= 1e-12 (ours ~1e-16), nullity 19 = symmetry_dimension; softmax:
GL and pass-through <= 1e-12, scaling 0.53 and swap 0.95 (> 1e-3: broken; the spec saw 0.42 and 0.68),
nullity 17 = symmetry_dimension; ``all_pass = true``.
Other architectures: ``--config.widths='(5,4,3)' --config.attn_dims='(2,3)'``
(nullity 31 L / 29 S).
"""
from attnlab.engine.config import base_config
from attnlab.geometry.experiments import estimator_fields


def get_config(arg=None):
  del arg
  cfg = base_config(
      "attnlab.geometry.experiments:symmetries",
      widths=(4, 3, 3),
      attn_dims=(2, 2),
      scale_c=1.7,
      **estimator_fields(kind=("lightning", "softmax"), t=3),
  )
  cfg.sweep.kind = cfg.get_ref("kind")
  cfg.lanes = cfg.get_ref("seeds")  # the engine vmaps all seeds of a setting in lockstep
  cfg.lock()
  return cfg
