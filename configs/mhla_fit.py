"""Algorithm 1 of Yau et al. on random-teacher data (spec check C2), float64.

A random ``heads_teacher``-head MHLA teacher (d = 6, H = 2, d_out = d) labels
N = 3000 sequences of n = 12 tokens, Z ~ N(0, 1/n); Algorithm 1 (ψ-space
normal equations streamed with lax.scan, Cholesky + one refinement step, the
SVD fold into heads) recovers it; 3 seeds.

Command:
  python -m attnlab.run --config=configs/mhla_fit.py --workdir=/tmp/mhla_fit
  # any d <= 8, H <= 4 (N = 3000 >= 2 psi up to d = 8):
  python -m attnlab.run --config=configs/mhla_fit.py --workdir=/tmp/mhla_fit8 --config.d=8 --config.heads_teacher=4

Runtime: 6 s wall on 2 CPU cores at load ~1 (d = 6 or 8; up to 45 s on busy cores),
mostly compilation; the fit itself 0.01 s (d = 6) and 0.03 s (d = 8).

Expected result (summary.json, medians over seeds): train_rel_mse ~ 1e-30
(< 1e-16), test_rel_mse ~ 1e-30 at lengths 3, 12 and 50 (< 1e-12),
p_distance_rel ~ 3e-15 (< 1e-10), heads_recovered = 36 = d² (the minimum-norm
Ŵ is generically of full rank; spec §3.4), psi = 126, lambda_min ~ 4e-3.

Arguments: ``:smoke`` (d = 3, N = 200, 1 seed) for tests.
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = base_config(
      "attnlab.mhla.exp_fit:experiment",
      seeds=3,
      d=6,
      heads_teacher=2,
      d_out=0,  # 0 means d_out = d; 1 gives the Sec. 4.1 scalar output  [reconstructed, spec §9.A2]
      n_tokens=12,
      n_train=3000,
      labels="last",  # "last" (Eq. 5) or "all" (every prefix: the Sec. 4.1 causal labels)
      teacher_init_std=None,  # None: d^-1/2  [reconstructed, spec §9.A3]
      input_std=None,  # None: n_tokens^-1/2  [reconstructed, spec §9.A3]
      solver="cholesky",  # cholesky | eigh_pinv | lstsq | cg | gd  [reconstructed, §9.B2]
      ridge=0.0,  # the paper solves plain least squares  [reconstructed, §9.B2]
      solver_iters=2000,  # budget of cg / gd
      pinv_rtol=1e-12,  # eigh_pinv relative cutoff (and the cholesky fallback)
      certificate_tol=1e-10,  # identifiable iff lambda_min > tol * lambda_max  [reconstructed, §5]
      svd_rtol=1e-10,  # heads with sigma_h <= rtol * sigma_1 are dropped  [reconstructed, §9.B4]
      compress_rank=None,  # None: off; r: try compress_heads for ranks 1..r  [reconstructed, §3.4]
      compress_iters=500,
      compress_tol=1e-10,  # relative affine residual accepted by compress_heads
      test_lengths=(3, 12, 50),
      n_test=1000,
      chunk=256,  # sequences per loop step of the streamed normal equations (256: the chunk fits in L2/L3)
  )
  if a["smoke"]:
    cfg.seeds = 1
    cfg.d = 3
    cfg.n_train = 200
    cfg.n_tokens = 5
    cfg.n_test = 50
    cfg.test_lengths = (2, 9)
  return cfg
