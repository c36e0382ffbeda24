"""Superposition S4, theory tables: exponents of the per-feature ODE (spec §5.4, §11b).

For every (freq_exp a, imp_exp b, dynamics, importance_mode, n_features) in the
product of the tuple fields, the ODE loss L(t) = sum_i w_i lambda_i (y_i - s_i(t))^2
is evaluated exactly in float64 on 800 log-spaced t in [1e-2, 1e14] and
gamma = -slope(log L, log t) is fitted over the window [1/r_4, 1/r_{N/4}].

Command:
  python -m attnlab.run --config=configs/superposition_theory.py --workdir=/tmp/sp_theory
  # the finite-size table T4 (a = 1.2, b = 0, linear, N = 1024 / 4096 / 1e5):
  python -m attnlab.run --config=configs/superposition_theory.py:t4 --workdir=/tmp/sp_theory_t4
  # any (a, b): --config.freq_exp="(1.7,)" --config.imp_exp="(0.3,)"

Runtime: 2.5 min measured on 2 shared CPU cores for the default 36 rows at N = 1e5
(each row is one 1e5-feature ODE sum over the window's t points); ``:t4``
about 20 s.

Expected result (summary.json ``rows``; spec §5.4): linear/teacher_scale
gamma_fit (a, b) = (2, 0): 0.513, (3, 0): 0.668, (1.5, 0.5): 1.007,
(1.5, 1): 1.668, (2, 1): 1.500; logistic b = 0: 0.351, 0.504, 0.667 for
a = 1.5, 2, 3; loss_weight rows within 0.015 of 1 - 1/(a + b). ``:t4``:
0.448 (N = 1024), 0.390 (4096), 0.309 (1e5). Each row has
``within_tolerance`` against the asymptotic formula (None for logistic
teacher_scale rows with b > 0, which carry log corrections, spec §5.4).

Arguments: ``:t4`` (finite-size table), ``:smoke`` (N = 1024, two rows).
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, t4=False, smoke=False)
  cfg = base_config(
      "attnlab.superposition.experiment:theory",
      seeds=1,
      n_features=(100000,),
      freq_exp=(1.5, 2.0, 3.0),
      imp_exp=(0.0, 0.5, 1.0),
      dynamics=("linear", "logistic"),
      importance_mode=("teacher_scale", "loss_weight"),
      p_norm="sum1",
      s0=1e-3,          # logistic initial value s_i(0)  [reconstructed, §5.4]
      n_t=800,          # log-spaced time points          [reconstructed, §11b]
      t_min=1e-2,
      t_max=1e14,
  )
  if a["t4"]:
    cfg.n_features = (1024, 4096, 100000)
    cfg.freq_exp = (1.2,)
    cfg.imp_exp = (0.0,)
    cfg.dynamics = ("linear",)
    cfg.importance_mode = ("teacher_scale",)
  if a["smoke"]:
    cfg.n_features = (1024,)
    cfg.freq_exp = (1.2,)
    cfg.imp_exp = (0.0,)
    cfg.dynamics = ("linear", "logistic")
    cfg.importance_mode = ("teacher_scale",)
  return cfg
