"""Spec checks AC-5, AC-6, AC-7 and AC-9 at reduced size, through the
experiment factories (the same init/step functions the engine vmaps), and
the config validation (bad input -> ConfigError)."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.core import prng
from attnlab.engine.experiment import ConfigError
from attnlab.softmax_precond import finite, population

import importlib.util
import pathlib

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _config(name, arg=None, **over):
  spec = importlib.util.spec_from_file_location(name, _ROOT / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config(arg)
  for k, v in over.items():
    setattr(cfg, k, v)
  return cfg


def _run(exp, cfg, hp_rows, steps, staged=True):
  """All runs (hp_rows x seeds) of one static group, vmapped and jitted.

  ``staged``: three jitted stages (data, init, the ``lax.scan`` of the
  steps). The data stage depends only on the config's shapes and the number
  of runs, so population tests of different methods with the same number of
  runs share its compiled program (drawing the data compiles slowly on CPU:
  each vmapped ``jax.random.normal`` takes ~1 s). Otherwise one program (the
  cheaper choice when nothing is shared). Returns the metrics of every step,
  each an array (runs, steps) over runs in row-major order (hp row, then seed).
  """
  rows = [(h, s) for h in hp_rows for s in range(cfg.seeds)]
  keys = jnp.stack([prng.run_key(cfg.seed, s) for _, s in rows])
  hp = {name: jnp.asarray([float(h.get(name, cfg[name])) for h, _ in rows]) for name in exp.hparams}
  make_data = lambda k, h: exp.make_data(prng.stream(k, prng.DATA), h)

  def scan(s, h, d):
    _, ms = jax.lax.scan(lambda s, _: exp.step(s, h, d), s, None, length=steps)
    return ms

  if not staged:
    return jax.jit(jax.vmap(lambda k, h: (lambda d: scan(exp.init(k, h, d), h, d))(make_data(k, h))))(keys, hp)
  data = jax.jit(jax.vmap(make_data))(keys, hp)
  state = jax.jit(jax.vmap(exp.init))(keys, hp, data)
  return jax.jit(jax.vmap(scan))(state, hp, data)


def test_ac5_sa_precgd_geometric_kappa_independent():
  """AC-5: d = k = 8, kappa in {10, 100, 1000}, 5 seeds, spectral init
  perturbed by 0.1 sigma_min(Mt), delta = lam = 0: eta = 0.5 reaches
  rel loss <= 1e-20 within 50 steps in all 15 runs; eta = 0.1 has median
  per-step ratio in [0.62, 0.66] over steps 5-30. (One compiled program: eta
  and kappa are traced; two calls of 15 runs, the size the AC-6/AC-7 tests
  use too, so all three share the data stage.)"""
  with jax.enable_x64(True):
    cfg = _config("softmax_population")
    cfg.method = "sa_precgd"
    exp = population.make_population(cfg)
    mf, ms = (_run(exp, cfg, [{"eta": eta, "kappa": kap} for kap in (10.0, 100.0, 1000.0)], 50) for eta in (0.5, 0.1))
    fast, slow = np.asarray(mf["rel_loss"]), np.asarray(ms["rel_loss"])  # (15, 50) each
    assert np.all(fast[:, -1] <= 1e-20), fast[:, -1]
    assert np.all(np.asarray(mf["steps_to_1e-20"])[:, -1] >= 0)
    ratios = np.asarray(ms["median_step_ratio"])[:, -1]
    assert np.all((ratios >= 0.62) & (ratios <= 0.66)), ratios
    # the per-seed medians match a direct computation from the curve
    direct = np.median(slow[:, 5:30] / slow[:, 4:29], axis=1)
    np.testing.assert_allclose(ratios, direct, rtol=1e-12)


def test_ac7_random_init_needs_damping():
  """AC-7: undamped ScaledGD from a random 1e-2 init (d = 8, kappa = 1000,
  eta = 0.3) exceeds relative loss 1 in >= 3 of 5 seeds; with damping
  1e-3 ||Mt||_2 it reaches <= 1e-12 by step 200 in 5 of 5; undamped, it also
  exceeds 1 in >= 3 of 5 seeds at kappa = 100. (The damping is traced, so
  all variants are one compiled program; scaledgd_random is
  scaledgd_random_damped with scaledgd_delta = 0.)"""
  with jax.enable_x64(True):
    cfg = _config("softmax_population")
    cfg.method = "scaledgd_random_damped"
    m = _run(population.make_population(cfg), cfg,
             [{"kappa": 1000.0, "scaledgd_delta": 0.0}, {"kappa": 1000.0, "scaledgd_delta": 1e-3},
              {"kappa": 100.0, "scaledgd_delta": 0.0}], 200)
    assert np.sum(np.asarray(m["max_rel_loss"])[:5, -1] > 1) >= 3
    assert np.all(np.asarray(m["rel_loss"])[5:10, -1] <= 1e-12)
    assert np.sum(np.asarray(m["max_rel_loss"])[10:, -1] > 1) >= 3  # undamped fails at kappa = 100 too


def test_ac6_gd_is_slower_and_kappa_dependent():
  """AC-6: plain GD (eta = 0.2 / sigma_max(Mt), init 1e-3 N(0, 1)): for
  kappa = 100 the relative loss is still >= 1e-8 at step 2000, and the median
  number of steps to 1e-10 grows >= 5x from kappa = 10 to kappa = 100 (and
  does not shrink from kappa = 100 to 1000)."""
  with jax.enable_x64(True):
    cfg = _config("softmax_population", check_step=2000)
    cfg.method = "gd"
    m = _run(population.make_population(cfg), cfg, [{"kappa": 10.0}, {"kappa": 100.0}, {"kappa": 1000.0}], 5000)
    st = np.asarray(m["steps_to_1e-10"])[:, -1].astype(float)
    st[st < 0] = np.inf  # never within 5000 steps
    med10, med100, med1000 = np.median(st[:5]), np.median(st[5:10]), np.median(st[10:])
    assert np.isfinite(med10) and med100 >= 5 * med10, (med10, med100)
    assert med1000 >= med100, (med100, med1000)
    at2000 = np.asarray(m["rel_loss_at_check"])[5:10, -1]
    assert np.all(at2000 >= 1e-8), at2000


def test_ac9_finite_reduced():
  """AC-9 at reduced size ("self" mode, d = k = 5, sigma = 0.1, n = 300, 3
  seeds, 40 steps, float64): the full method stays finite in every seed (no
  singular solve), its test 1/2 MSE after 40 steps is below the value after
  the first step and above the irreducible 1/2 k sigma^2 = 0.025, and
  ||S^1/2 B S^1/2||_2 = beta to 1e-12 at every step (AC-8 on the finite
  objective). The full-size numbers (n = 2000, 20 seeds; Adam) come from
  configs/softmax_finite.py:ac9 and :ac9_adam."""
  with jax.enable_x64(True):
    cfg = _config("softmax_finite", n_test=100)
    cfg.method, cfg.n_train = "sa_precgd", (300,)
    cfg.seeds = 3
    m = _run(finite.make_finite(cfg), cfg, [{}], 40, staged=False)
    test = np.asarray(m["test_mse"])
    assert np.all(np.isfinite(test))
    assert np.all(test[:, -1] < test[:, 0]), test[:, [0, -1]]
    assert np.all(test > 0.025)
    np.testing.assert_allclose(np.asarray(m["beta_now"]), 0.3, atol=1e-12)


@pytest.mark.parametrize("over,field", [
    (dict(k=4), "k"),  # k < d with precond=scaledgd and delta = 0: singular A^T A
    (dict(kappa=(10.0, 0.5)), "kappa"),
    (dict(beta=0.0), "beta"),
    (dict(methods=("sa_precgd", "sgd")), "methods"),
    (dict(precond="newton"), "precond"),
    (dict(init="orthogonal"), "init"),
])
def test_population_bad_input(over, field):
  cfg = _config("softmax_population")
  for k, v in over.items():
    setattr(cfg, k, v)
  with pytest.raises(ConfigError) as e:
    population.make_population(cfg)
  assert e.value.field == field


def test_population_k_greater_than_d_is_not_singular():
  """The ScaledGD Gram matrices are A^T A (d x d, rank <= min(k, d)) and
  B^T S B (d x d): k > d with delta = 0 leaves both full rank (a rank-d
  target), so the factory accepts it; only k < d is rejected (above)."""
  cfg = _config("softmax_population", d=4, k=6, delta=0.0)
  exp = population.make_population(cfg)
  assert exp.hparams


@pytest.mark.parametrize("over,field", [
    (dict(beta=-1.0), "beta"),
    (dict(M_kappa=0.5), "M_kappa"),
    (dict(k=3, delta=0.0), "k"),
    (dict(context_mode="chat"), "context_mode"),
    (dict(precond="newton"), "precond"),
])
def test_finite_bad_input(over, field):
  cfg = _config("softmax_finite")
  for k, v in over.items():
    setattr(cfg, k, v)
  with pytest.raises(ConfigError) as e:
    finite.make_finite(cfg)
  assert e.value.field == field


def test_cli_bad_kappa_exits_2(tmp_path):
  """The CLI turns a bad kappa into one line on stderr and exit status 2,
  before anything is written."""
  wd = tmp_path / "w"
  p = subprocess.run([sys.executable, "-m", "attnlab.run", "--config=configs/softmax_population.py",
                      f"--workdir={wd}", "--config.kappa=(10.0,0.5)"], cwd=_ROOT, capture_output=True, text=True,
                     timeout=120)
  assert p.returncode == 2, p.stderr
  assert "kappa" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
  assert not wd.exists()


# Spec §9: each reconstructed choice, its config field and the spec's default.
_SPEC_9_DEFAULTS = {
    "softmax_finite": dict(M_kappa=10.0, logit_orientation="query_left", context_mode="self",
                           exclude_self_token=False, precond="scaledgd", reg="balance", renorm="spectral_to_beta",
                           init="spectral", delta=1e-3, k=5, d=5, spectral_rank=0),
    "softmax_population": dict(precond="scaledgd", reg="balance", renorm="spectral_to_beta", init="spectral",
                               delta=0.0),
}


@pytest.mark.parametrize("name", sorted(_SPEC_9_DEFAULTS))
def test_ac12_reconstructed_choices_are_fields_with_spec_defaults(name):
  """AC-12: the §9 choices are config fields with the spec's defaults (the
  engine writes the whole config to the run's config.json), and the full
  method's parts follow the precond/init fields while the named ablations
  keep their fixed recipes."""
  from attnlab.softmax_precond import optim
  cfg = _config(name)
  for field, want in _SPEC_9_DEFAULTS[name].items():
    assert cfg[field] == want, field
  full = optim.resolve_method("sa_precgd", cfg.precond, cfg.init)
  assert (full.precond, full.init) == ("scaledgd", "spectral") and full == optim.METHODS["sa_precgd"]
  assert optim.resolve_method("sa_precgd", "whiten", "spectral") == optim.METHODS["whiten"]
  assert optim.resolve_method("sa_precgd", "scaledgd", "random") == optim.METHODS["random_init"]
  assert optim.resolve_method("gd", "whiten", "spectral") == optim.METHODS["gd"]
