"""Neuromanifold dimension of any deep attention architecture (Henry, Marchetti & Kohn 2025).

Estimates the dimension as the float64 rank of the parameter Jacobian over N
random inputs (per-input reverse mode, row normalisation, QR + SVD; tolerance
rank and largest-gap rank must agree with a gap >= ``min_gap``) and compares
it with the formula (spec §3.3-§3.4), which is only applied inside (B1)-(B3).
An unreliable softmax estimate is repeated once at the same draw rescaled
layer by layer, with the Jacobian's columns equilibrated per weight matrix
(``fallback="calibrated"``); for lightning networks the
reported dimension is the exact Jacobian rank over F_p
(``lightning_exact=True``), the float64 one is kept beside it. A softmax
estimate that stays unreliable is certified by ball arithmetic
(``softmax_certify=True``, :mod:`attnlab.geometry.certify`): a proof that the
rank reaches P - (symmetry dimension), the formula's value inside (B1)-(B3).
``rank_method="lu_rows"`` selects P rows of J by LU before the SVD (2.4x
cheaper rank step; the default ``"qr"`` is the spec's SVD of J).

Command:
  python -m attnlab.run --config=configs/geometry_dimension.py --workdir=/tmp/geo_dim \
      --config.widths='(5,4,3)' --config.attn_dims='(2,3)' --config.kind=lightning

Runtime: 5-10 s on 2 CPU cores (one compiled program per architecture,
vmapped over the seeds; 7.5 s CPU and 21 s wall for the default at load
average 8, cold compilation cache). N defaults to the spec's
max(250, ceil(3P / (d_l t))).

Expected result (summary.json): for the default (4,4,4)/(2,2) softmax,
``parameters = 64``, ``expected_dimension = 40``, ``estimated_dimension = 40``,
``reliable = true``, ``gap_log10`` = 13.5, ``nullity = symmetry_dimension = 24``.
For (5,4,3)/(2,3) lightning: 45 == 45. Outside (B1)-(B3), e.g. widths (2,3,2),
a = (1,1), lightning: ``expected_dimension = null`` with the reason in
``formula_note``, and the estimate 8. Deep: widths (4,4,4,4,4,4), a = (2,2,2,2,2)
softmax: 76 == 76, reliable, ``attempts_per_seed = [2]`` (the spec's procedure
alone: 66, unreliable); widths (2,2,2,2,1,1), a = (5,3,4,2,4), t = 2,
lightning: exact 14 == 14, ``certified = true`` (float64: 2). Deep narrow
softmax: widths (3,)*10, a = (3,4,4,1,3,1,2,2,1), t = 2: float64 69
(unreliable, gap 1e2.3), certified 76 == 76 (``estimate_method =
"certified_ball_arithmetic"``, 1024 bits, about 11 s in all).

Fields: ``widths`` = (d_0, ..., d_l) and ``attn_dims`` = (a_1, ..., a_l) are
tuples (``--config.widths='(6,5,4)' --config.attn_dims='(3,2)'``); the other
fields are those of :func:`attnlab.geometry.experiments.estimator_fields`.
``x64=False`` runs in float32 to demonstrate the precision guard.
Argument ``:float32`` sets that mode.
"""
from attnlab.engine.config import base_config, parse_arg
from attnlab.geometry.experiments import estimator_fields


def get_config(arg=None):
  a = parse_arg(arg, float32=False)
  cfg = base_config(
      "attnlab.geometry.experiments:dimension",
      widths=(4, 4, 4),
      attn_dims=(2, 2),
      **estimator_fields(x64=not a["float32"]),
  )
  cfg.lanes = cfg.get_ref("seeds")  # the engine vmaps all seeds of a setting in lockstep
  cfg.lock()
  return cfg
