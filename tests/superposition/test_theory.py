"""Theory checks T1-T5 of the superposition spec (float64), plus the ODE closed forms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.superposition import data as sdata
from attnlab.superposition import models
from attnlab.superposition import theory as th

N_BIG = 100_000


@pytest.mark.parametrize("a,b,expected,tol", [(2, 0, 0.50, 0.02), (3, 0, 0.667, 0.01), (1.5, 0.5, 1.00, 0.01),
                                              (1.5, 1, 1.667, 0.01), (2, 1, 1.50, 0.01)])
def test_T1_linear_teacher_scale(a, b, expected, tol):
  r = th.theory_gamma(N_BIG, a, b, "linear", "teacher_scale")
  assert abs(r["gamma_asymptotic"] - (a + 2 * b - 1) / a) < 1e-12
  assert abs(r["gamma_fit"] - r["gamma_asymptotic"]) <= tol, r
  assert abs(expected - r["gamma_asymptotic"]) < 1e-3


@pytest.mark.parametrize("a,ref", [(1.5, 0.351), (2.0, 0.504), (3.0, 0.667)])
def test_T2_logistic_b0(a, ref):
  r = th.theory_gamma(N_BIG, a, 0.0, "logistic", "teacher_scale")
  assert abs(r["gamma_fit"] - (a - 1) / a) <= 0.02, r
  assert abs(r["gamma_fit"] - ref) <= 0.002, r  # the spec's reference fit (§5.4)


@pytest.mark.parametrize("a,b", [(1.5, 0.5), (2, 0.5), (2, 1), (3, 1)])
def test_T3_loss_weight_both_dynamics(a, b):
  for dyn in th.DYNAMICS:
    r = th.theory_gamma(N_BIG, a, b, dyn, "loss_weight")
    assert abs(r["gamma_fit"] - (1 - 1 / (a + b))) <= 0.015, (dyn, r)


@pytest.mark.parametrize("n,expected", [(1024, 0.45), (N_BIG, 0.31)])
def test_T4_finite_size(n, expected):
  r = th.theory_gamma(n, 1.2, 0.0, "linear", "teacher_scale")
  assert abs(r["gamma_fit"] - expected) <= 0.01, r
  assert abs(r["gamma_asymptotic"] - 1 / 6) < 1e-12  # far from the fit: the guard of T4


def test_closed_forms_solve_their_odes():
  """d s/dt from autodiff equals r (y - s) (linear) and r s (y - s) / y (logistic)."""
  with jax.enable_x64(True):
    r = jnp.array([0.3, 2.0, 0.01])
    y = jnp.array([1.0, 0.5, 0.2])
    t = jnp.array([0.1, 1.0, 7.0, 50.0])
    for dyn, rhs in (("linear", lambda s: r * (y - s)), ("logistic", lambda s: r * s * (y - s) / y)):
      s = th.per_feature_curve(t, r, y, dyn, 1e-3)
      ds = jax.vmap(lambda tt: jax.jacfwd(lambda u: th.per_feature_curve(u[None], r, y, dyn, 1e-3)[0])(tt))(t)
      np.testing.assert_allclose(ds, jax.vmap(rhs)(s), rtol=1e-10, atol=1e-14)
      np.testing.assert_allclose(th.per_feature_curve(jnp.zeros(1), r, y, dyn, 1e-3)[0], 1e-3, rtol=1e-12)


def test_loss_curve_requires_x64():
  lam, y, w = jnp.ones(2), jnp.ones(2), jnp.ones(2)
  with pytest.raises(RuntimeError):
    th.loss_curve(jnp.ones(3), lam, y, w, lam, 1e-3, "linear")


def test_T5_closed_form_loss_matches_monte_carlo(getkey):
  """tied_linear at a random W: tr[(M - A) C (M - A)^T] vs the MC loss on 2^18 samples, within 1%.

  Both importance modes; the samples come from the training sampler (sparse);
  the dense sampler and forward pass are checked against it in test_models."""
  n, k = 48, 12
  p = sdata.feature_probs(n, 1.5)
  imp = sdata.importance(n, 0.5)
  params = {"W": jax.random.normal(getkey(), (k, n)) / np.sqrt(k)}

  @jax.jit
  def mc(key):
    def one(kk):
      ev = sdata.sample_events(kk, p, 2 ** 14, sdata.event_capacity(2 ** 14, sdata.total_rate(np.asarray(p))))
      return jnp.stack([models.batch_loss_sparse(params, ev, imp, "tied_linear", m)
                        for m in sdata.IMPORTANCE_MODES])
    return jnp.mean(jax.lax.map(one, jax.random.split(key, 16)), axis=0)

  got = np.asarray(mc(getkey()))
  M = models.effective_matrix(params, "tied_linear")
  for j, mode in enumerate(sdata.IMPORTANCE_MODES):
    exact = float(models.population_loss_linear(M, p, imp, mode))
    assert abs(got[j] / exact - 1) < 0.01, (mode, exact, got[j])


def test_theory_config_through_engine(tmp_path, repo_root):
  """configs/superposition_theory.py:smoke through the runner: summary rows with the issue's keys."""
  import importlib.util
  from attnlab.engine import runner
  spec = importlib.util.spec_from_file_location("sp_theory_cfg", repo_root / "configs" / "superposition_theory.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config("smoke")
  cfg.lock()
  summary = runner.run(cfg, tmp_path / "wd", quiet=True, tb=False)
  rows = summary["rows"]
  assert len(rows) == 2
  for row in rows:
    assert {"freq_exp", "imp_exp", "dynamics", "importance_mode", "n_features", "gamma_fit", "gamma_asymptotic",
            "fit_window"} <= set(row)
  logistic = next(r for r in rows if r["dynamics"] == "logistic")
  linear = next(r for r in rows if r["dynamics"] == "linear")
  assert abs(linear["gamma_fit"] - 0.448) < 0.01 and abs(logistic["gamma_fit"] - 0.27) < 0.01  # spec §5.4, §10 P3
  assert (tmp_path / "wd" / "superposition_theory.png").exists()
