"""E3 (Goel, Soltanolkotabi & Bartlett): training on the finite-data softmax
objective in "self" context mode (the training set is every query's context),
d = k = 5, sigma = 0.1, n in {250, 500, 1000, 2000, 4000}; SA-PrecGD (spectral
init, ScaledGD preconditioner with delta = 1e-3, renormalisation to beta = 0.3,
eta = 0.2) against plain GD (lr 0.05) and Adam (lr 1e-2) from a random 1e-2
init. n in {250, 500, 1000, 2000} (4000 in ``:ac10``), 2 seeds, 200 steps.
Training runs in float32 (``--config.x64=True`` for float64; the float64
checks, e.g. ||S^1/2 B S^1/2||_2 = beta to 1e-12, are in the tests).

Command:
  python -m attnlab.run --config=configs/softmax_finite.py --workdir=/tmp/sp_finite
  # AC-9 at n = 2000: the full method with 20 seeds, 150 steps; then Adam (2 seeds, 750 steps):
  python -m attnlab.run --config=configs/softmax_finite.py:ac9 --workdir=/tmp/sp_ac9
  python -m attnlab.run --config=configs/softmax_finite.py:ac9_adam --workdir=/tmp/sp_ac9_adam
  # AC-10: the excess-vs-n slope of the full method only, n in {500, ..., 4000}:
  python -m attnlab.run --config=configs/softmax_finite.py:ac10 --workdir=/tmp/sp_ac10
  (prefix with ``taskset -c 0`` on a shared CPU)

Runtime on the shared 2-core CPU (load ~8), compilation included, with the
process pinned to one core (``taskset -c 0``; unpinned, XLA's thread pool
makes it 2-10x slower on this machine): ``:ac9`` 5.8 min; ``:ac9_adam``
4 min; ``:ac10`` 3.9 min; default (12 groups) about 10 min (estimated);
``:smoke`` about 2 min (compilation of 6 groups).

Expected result (summary.json): ``:ac9`` (eta = 0.5, beta = 0.45, chosen on
held-out seeds 20-29; the base config keeps the spec defaults eta = 0.2,
beta = 0.3): ``sa_precgd`` at n = 2000 after 150 steps has median test
1/2 MSE 0.0283 (irreducible 1/2 k sigma^2 = 0.025), 18 of 20 seeds reach
<= 0.030 within 150 steps (worst 0.0313), none diverged. With the spec
defaults: median 0.0299, 11 of 20. Adam is at 0.0304 after 750 steps
(``:ac9_adam``). ``excess_vs_n.sa_precgd.slope`` (``:ac10``), the fitted
log-log slope of the final excess test error against n: -0.59 measured;
the paper's 1/n claim predicts -1 (see experiments/softmax_precond/README.md).

Every [reconstructed] choice of the spec is a field below (context_mode,
exclude_self_token, logit_orientation, objective, the full method's precond
and init, reg, renorm, beta, delta, lam, spectral_rank, sigma spectrum,
M_kappa; the baselines and ablations are named recipes in ``method``).
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, smoke=False, ac9=False, ac9_adam=False, ac10=False)
  cfg = base_config(
      "attnlab.softmax_precond.finite:make_finite",
      seeds=2,
      steps=200,
      log_every=10,
      chunk_steps=50,
      ckpt_every=0,
      x64=False,
      lanes=1,  # one run per lane: no padding of small seed counts (the n x n work gains nothing from vmap on CPU)
      d=5,
      k=5,
      n_train=(250, 500, 1000, 2000),
      n_test=1000,
      sigma_noise=0.1,  # [reconstructed, §3]
      sigma_lo=1.0,  # Sigma eigenvalues linspace(sigma_lo, sigma_hi, d)  [reconstructed, §3]
      sigma_hi=4.0,
      M_kappa=10.0,  # condition number of M  [reconstructed, §3]
      context_mode="self",  # self | prompt  [reconstructed, §2.3]
      N_context=256,  # context length in prompt mode
      exclude_self_token=False,  # [reconstructed, §9.3]
      logit_orientation="query_left",  # query_left (x^T B x_j) | key_left  [reconstructed, §2.2]
      objective="empirical_softmax",  # empirical_softmax | empirical_linearized  [reconstructed, §4.3]
      methods=("sa_precgd", "gd", "adam"),
      method="sa_precgd",
      eta=0.2,  # [reconstructed, §5.4]
      delta=1e-3,  # preconditioner damping (absolute)  [reconstructed, §5.2]
      lam=0.0,  # regulariser weight  [reconstructed, §5.4]
      precond="scaledgd",  # the full method's preconditioner: none | whiten | scaledgd  [reconstructed, §9.4]
      init="spectral",  # the full method's initialisation: random | spectral  [reconstructed, §9.4]
      reg="balance",  # none | balance | balance_scale_invariant  [reconstructed, §4.2]
      renorm="spectral_to_beta",  # none | spectral_to_beta  [reconstructed, §5.2]
      beta=0.3,  # renormalisation target  [reconstructed, §11]
      renorm_norm="certified_power",  # how ||S^1/2 B S^1/2||_2 is evaluated: certified_power (warm-started,
      # Cholesky-certified power iteration = the SVD value to rounding, 4-7x cheaper) | svd (LAPACK)
      spectral_rank=0,  # 0: full rank min(k, d)
      gd_lr=0.05,  # [reconstructed, §5.3]
      adam_lr=1e-2,
      init_scale=1e-2,  # random init of the baselines
      scaledgd_delta=1e-3,  # damping of scaledgd_random_damped
      test_target=0.030,  # steps_to_target threshold on test 1/2 MSE (AC-9)
      converged_test_mse=0.040,  # a run "converged" if its final test 1/2 MSE is below this (E4)
      query_chunk=256,  # queries per chunk of the n x n softmax
  )
  cfg.sweep.method = cfg.get_ref("methods")
  cfg.sweep.n_train = cfg.get_ref("n_train")
  if a["ac9"] or a["ac10"]:
    # AC-9/AC-10 step size and renormalisation target. The spec leaves both open
    # (§5.4: eta 0.2 on the finite objective, beta in [0.15, 0.6] "tuned on
    # held-out data"); with the defaults (0.2, 0.3) the full method converges
    # too slowly for 150 steps (11 of 20 seeds <= 0.030 at n = 2000). These
    # values were chosen on held-out seeds 20-29 (grid eta in {0.2, 0.5} x
    # beta in {0.3, 0.45, 0.6}), not on the AC-9 seeds 0-19; see
    # experiments/softmax_precond/README.md.
    cfg.eta = 0.5
    cfg.beta = 0.45
  if a["ac9"]:
    cfg.n_train = (2000,)
    cfg.seeds = 20
    cfg.methods = ("sa_precgd",)
    cfg.steps = 150
    cfg.log_every = 5
  if a["ac9_adam"]:
    cfg.n_train = (2000,)
    cfg.seeds = 2
    cfg.methods = ("adam",)
    cfg.steps = 750
    cfg.log_every = 25
    cfg.chunk_steps = 75
  if a["ac10"]:
    cfg.n_train = (500, 1000, 2000, 4000)
    cfg.methods = ("sa_precgd",)
    cfg.seeds = 2
    cfg.steps = 150
  if a["smoke"]:
    cfg.n_train = (64, 128)
    cfg.n_test = 64
    cfg.seeds = 2
    cfg.steps = 20
    cfg.log_every = 5
    cfg.chunk_steps = 10
    cfg.query_chunk = 32
  return cfg
