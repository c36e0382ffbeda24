"""Data generator, students, losses, gradients (G4), memory (G5), diagnostics, config errors."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from attnlab.engine.config import base_config
from attnlab.engine.experiment import ConfigError
from attnlab.superposition import data as sdata
from attnlab.superposition import experiment
from attnlab.superposition import models
from attnlab.superposition import train


def test_sparse_sampler_moments(getkey):
  n, B = 16, 2 ** 16
  p = sdata.feature_probs(n, 1.2)
  cap = sdata.event_capacity(B, sdata.total_rate(np.asarray(p)))
  ev = jax.jit(sdata.sample_events, static_argnums=(2, 3))(getkey(), p, B, cap)
  assert np.all(np.diff(np.asarray(ev.row)) >= 0)                              # sorted rows (segment sums)
  x = np.asarray(sdata.densify(ev, n))
  freq = (x > 0).mean(0)
  se = np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / B)
  assert np.all(np.abs(freq - np.asarray(p)) < 5 * se), (freq, p)
  np.testing.assert_allclose(x.sum() / (x > 0).sum(), 1.0, atol=0.01)        # E[u] = 1
  np.testing.assert_allclose((x ** 2).sum(0)[:4] / B, 4 / 3 * np.asarray(p[:4]), rtol=0.05)  # lambda = 4p/3
  assert x.max() <= 2.0 and x.min() >= 0.0
  np.testing.assert_allclose(float(jnp.sum(p)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(sdata.feature_probs(4, 1.0, "max1")), [1, 0.5, 1 / 3, 0.25], rtol=1e-6)


def test_sparse_and_dense_paths_agree(getkey):
  n, k, B = 12, 5, 64
  cap = sdata.event_capacity(B, sdata.total_rate(sdata.feature_probs_np(n, 1.1)))

  @jax.jit
  def pairs(key):
    """(sparse, dense) pairs for every student: forward, the loss in both importance modes, the mean reduction.
    One compiled program (sampling and init included: eager random draws compile one program per call)."""
    p = sdata.feature_probs(n, 1.1)
    imp = sdata.importance(n, 0.5)
    k_ev, k_init = jax.random.split(key)
    ev = sdata.sample_events(k_ev, p, B, cap)
    x = sdata.densify(ev, n)
    out = [(jnp.sum(ev.val > 0).astype(jnp.float32), jnp.asarray(B / 2, jnp.float32))]
    for student, kk in zip(models.STUDENTS, jax.random.split(k_init, len(models.STUDENTS))):
      P = models.init_params(kk, student, n, k, 0.4, bias_init=-0.05)
      out += [(models.forward_sparse(P, ev, student), models.forward(P, x, student))]
      out += [(models.batch_loss_sparse(P, ev, imp, student, mode, red), models.batch_loss(P, x, imp, student, mode, red))
              for mode, red in (("teacher_scale", "sum"), ("loss_weight", "sum"), ("loss_weight", "mean"))]
    return out

  out = pairs(getkey())
  assert float(out[0][0]) > float(out[0][1])                       # more than B/2 active entries
  out = out[1:]
  assert len(out) == 4 * len(models.STUDENTS)
  for j, (a, b) in enumerate(out):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=models.STUDENTS[j // 4])


def test_G4_tied_gradient_matches_hand_derivation(getkey):
  """grad_W = h^T dz + (dz W^T)^T x with dz = dL/dz, for ReLU(x W^T W + c)."""
  n, k, B = 20, 6, 32
  p = sdata.feature_probs(n, 1.2)
  imp = sdata.importance(n, 0.3)
  params = models.init_params(getkey(), "tied_relu", n, k, 0.5, bias_init=0.02)
  x = sdata.sample_inputs(getkey(), p, B)

  @jax.jit
  def both(params):
    g = jax.grad(models.batch_loss)(params, x, imp, "tied_relu", "teacher_scale")
    W, c = params["W"], params["c"]
    h = x @ W.T
    z = h @ W + c[None, :]
    dz = 2.0 * (jax.nn.relu(z) - x * imp[None, :]) * (z > 0) / B
    return g, h.T @ dz + (dz @ W.T).T @ x, dz

  g, gW, dz = both(params)
  np.testing.assert_allclose(g["W"], gW, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(gW))))
  np.testing.assert_allclose(g["c"], dz.sum(0), rtol=1e-5, atol=1e-7)


def test_G5_no_n_by_n_in_training_step():
  n, k = 96, 8
  spec = train.Spec(n=n, k=k, batch=32, eval_size=64, eval_chunk=64)
  hp = {name: jnp.asarray(v) for name, v in dict(lr=0.1, freq_exp=1.2, imp_exp=0.0, sigma0=1e-2, bias_init=0.0,
                                                bias_lr_scale=1.0, bias_freeze_steps=0, weight_decay=0.0).items()}
  state = train.init_state(jax.random.PRNGKey(0), hp, spec)
  jaxpr = jax.make_jaxpr(lambda s: train.train_step(s, hp, spec))(state)
  shapes = set()

  def walk(jx):
    for eqn in jx.eqns:
      for v in eqn.outvars:
        shapes.add(tuple(getattr(v.aval, "shape", ())))
      for prm in eqn.params.values():
        inner = getattr(prm, "jaxpr", prm)
        if hasattr(inner, "eqns"):
          walk(inner)
  walk(jaxpr.jaxpr)
  assert (n, n) not in shapes
  assert max(int(np.prod(s)) for s in shapes) <= max(32 * n, k * n, spec.train_events * k)  # B.N, K.N, E.K


def test_population_loss_of_diagonal_student():
  n = 10
  p = sdata.feature_probs(n, 1.5)
  imp = sdata.importance(n, 0.5)
  s = jnp.linspace(0.0, 0.9, n)
  lam = sdata.second_moment(p)
  got = models.population_loss_linear(jnp.diag(s), p, imp, "teacher_scale")
  np.testing.assert_allclose(got, jnp.sum(lam * (imp - s) ** 2), rtol=1e-6)
  got = models.population_loss_linear(jnp.diag(s), p, imp, "loss_weight")
  np.testing.assert_allclose(got, jnp.sum(imp * lam * (1 - s) ** 2), rtol=1e-6)


def test_diagnostics_orthogonal_and_superposed():
  eye = {"W": jnp.eye(4)}
  d = models.diagnostics(eye, "tied_linear", jnp.ones(4))
  assert float(d["interference"]) == 0.0 and float(d["dims_per_feature"]) == 1.0 and float(d["represented"]) == 4
  ang = jnp.linspace(0, jnp.pi, 3, endpoint=False)
  sup = {"W": jnp.stack([jnp.cos(ang), jnp.sin(ang)]), "c": -jnp.ones(3)}   # 3 features in 2 dims
  d = models.diagnostics(sup, "tied_relu", jnp.ones(3))
  np.testing.assert_allclose(float(d["interference"]), 2 * 0.25, rtol=1e-5)  # cos^2(60 deg) = 1/4, two partners
  np.testing.assert_allclose(float(d["dims_per_feature"]), 2 / 3, rtol=1e-6)


def test_init_dists_keep_the_scale(getkey):
  """normalized: ||w_i||^2 = K sigma0^2 exactly; orthogonal: also w_i . w_j = 0 (K = N), and rows orthonormal up
  to scale (K < N); both rescale the same Gaussian draw."""
  sigma0, key = 0.1, getkey()
  g = models.init_params(key, "tied_relu", 8, 8, sigma0)["W"]
  nrm = models.init_params(key, "tied_relu", 8, 8, sigma0, init_dist="normalized")["W"]
  np.testing.assert_allclose(jnp.sum(nrm ** 2, 0), 8 * sigma0 ** 2, rtol=1e-5)
  np.testing.assert_allclose(nrm / jnp.linalg.norm(nrm, axis=0)[None, :], g / jnp.linalg.norm(g, axis=0)[None, :],
                             rtol=1e-5)
  orth = models.init_params(key, "tied_relu", 8, 8, sigma0, init_dist="orthogonal")["W"]
  np.testing.assert_allclose(orth.T @ orth, 8 * sigma0 ** 2 * np.eye(8), atol=1e-7)
  wide = models.init_params(key, "untied_relu", 12, 4, sigma0, init_dist="orthogonal")
  np.testing.assert_allclose(wide["E"] @ wide["E"].T, 12 * sigma0 ** 2 * np.eye(4), atol=1e-7)   # [K, N] rows
  np.testing.assert_allclose(wide["D"].T @ wide["D"], 12 * sigma0 ** 2 * np.eye(4), atol=1e-7)   # [N, K] columns
  with pytest.raises(ValueError, match="init_dist"):
    models.init_params(key, "tied_relu", 8, 8, sigma0, init_dist="uniform")


def _cfg(**kw):
  f = dict(experiment.SIM_FIELDS)
  f.update(kw)
  return base_config("attnlab.superposition.experiment:bottleneck", steps=10, log_spacing="log", **f)


@pytest.mark.parametrize("field,kw", [("freq_exp", dict(freq_exp=0.0)), ("freq_exp", dict(freq_exp=-1.0)),
                                      ("k_ratio", dict(n_features=64, k_ratio=0.001)),
                                      ("k_ratio", dict(n_features=64, k_ratio=2.0)),
                                      ("batch", dict(batch=0)), ("student", dict(student="mlp")),
                                      ("init_dist", dict(init_dist="uniform"))])
def test_bad_config_raises(field, kw):
  with pytest.raises(ConfigError) as e:
    experiment.bottleneck(_cfg(**kw))
  assert e.value.field == field


def test_bad_config_cli_exit_status(repo_root):
  out = subprocess.run([sys.executable, "-m", "attnlab.run", "--config=configs/superposition_bottleneck.py:smoke",
                        "--config.batch=0", "--workdir=/tmp/s4_test_bad_cli"], cwd=repo_root, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 2, out.stderr[-2000:]
  lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and "batch" in lines[0], out.stderr
