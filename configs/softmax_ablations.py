"""E4 (Goel, Soltanolkotabi & Bartlett): ablations of SA-PrecGD (spec §5.3) in
the E3 setting ("self" mode, d = k = 5, sigma = 0.1), n = 500, 20 seeds,
150 steps, float64: the fraction of seeds that converge (final test 1/2 MSE
<= ``converged_test_mse`` = 0.040, irreducible 0.025) and the final excess
test error, for

  sa_precgd               the full method (spectral init, ScaledGD precond. with
                          delta = 1e-3, renormalisation to beta = 0.3)
  no_precond              (i) GD + spectral init + renormalisation (eta = 0.2)
  whiten                  (ii) the whitening-only preconditioner P1
  no_renorm               (iv) no renormalisation
  scaledgd_random         (v) ScaledGD from a random 1e-2 init, undamped
  scaledgd_random_damped  (v) the same with delta = 1e-3
  random_init             (vi) the full method from a random 1e-2 init

(iii) "no regulariser" is the full method itself: the default weight is
lam = 0 (spec §5.4), see experiments/softmax_precond/README.md.

Command:
  python -m attnlab.run --config=configs/softmax_ablations.py --workdir=/tmp/sp_abl

Runtime: 5.6 min on the shared 2-core CPU.

Expected result (summary.json ``<method>["500"]``, measured): ``fraction_converged``
0.9 for sa_precgd (18 of 20, none diverged); no_precond and whiten diverge in
20 of 20 at eta = 0.2; no_renorm 0 of 20 (median test 0.052); ScaledGD from a
random init 0 of 20 (undamped and damped); random_init 13 of 20.
"""
import importlib.util
import pathlib

from attnlab.engine.config import parse_arg

_spec = importlib.util.spec_from_file_location("softmax_finite", pathlib.Path(__file__).with_name("softmax_finite.py"))
_finite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_finite)


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = _finite.get_config("smoke" if a["smoke"] else None)
  cfg.methods = ("sa_precgd", "no_precond", "whiten", "no_renorm", "scaledgd_random", "scaledgd_random_damped",
                 "random_init")
  if a["smoke"]:
    cfg.n_train = (64,)
    return cfg
  cfg.n_train = (500,)
  cfg.seeds = 20
  cfg.steps = 150
  cfg.log_every = 10
  cfg.chunk_steps = 50
  cfg.n_test = 500
  return cfg
