"""E1 (Goel, Soltanolkotabi & Bartlett): softmax attention over N Gaussian
context tokens tends to the linear map A Sigma B^T x; N * MSE tends to
e^s tr(A(Sigma + Sigma v v^T Sigma)A^T) (spec §4.4), v = B^T x, s = v^T Sigma v.

d = 5, k = 3, Sigma eigenvalues in [0.5, 2], N in {10, 100, 1e3, 1e4, 1e5},
s in {0.25, 0.5, 1, 2}, 200 context draws per point, 3 seeds (each seed a new
A, B, Sigma, x), float64.

Command:
  python -m attnlab.run --config=configs/softmax_limit.py --workdir=/tmp/sp_limit

Runtime: 4.4 min on the shared 2-core CPU (5 compiled programs, one per N).

Expected result (summary.json): ``mse_vs_N_slope`` about -1 for every s
(measured -0.99, -0.99, -0.97, -0.89);
``limit[s][N].ratio`` (measured / predicted N * MSE) within 10% of 1 for
N >= 1000 and s <= 1 (at s = 2 the heavy e^{x^T B x_j} tail makes the
estimate noisier); ``n_mse_over_trace`` follows e^s; ``mse_wrong_orientation``
(against A Sigma B x) stays O(1), pinning the query-left orientation.

Argument: ``:smoke`` (N in {10, 1000}, 20 draws, 1 seed).
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = base_config(
      "attnlab.softmax_precond.limit:make_limit",
      seeds=3,
      x64=True,
      d=5,
      k=3,
      sigma_lo=0.5,
      sigma_hi=2.0,
      N=(10, 100, 1000, 10_000, 100_000),
      s=(0.25, 0.5, 1.0, 2.0),
      draws=200,
      logit_orientation="query_left",  # query_left (x^T B x_j) | key_left  [reconstructed, §2.2]
  )
  cfg.sweep.N = cfg.get_ref("N")
  cfg.sweep.s = cfg.get_ref("s")
  if a["smoke"]:
    cfg.N = (10, 1000)
    cfg.draws = 20
    cfg.seeds = 1
  return cfg
