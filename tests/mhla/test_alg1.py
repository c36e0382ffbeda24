"""C2 (exact recovery by Algorithm 1), the solvers, and compress_heads, float64."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.mhla import features as F
from attnlab.mhla import regression as R
from attnlab.core.linear_attention import mhla_batch


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _draw(seed, H, d, d_out, N, n, tests=()):
  """Teacher (V, Q ~ N(0, 1)), training Z ~ N(0, 1/n) and test Z of other lengths.

  NumPy draws: jax.random.normal costs seconds of compilation per shape on CPU.
  """
  rng = np.random.default_rng(seed)
  V, Q = rng.normal(size=(H, d_out, d)), rng.normal(size=(H, d, d))
  Zs = rng.normal(size=(N, d, n)) / np.sqrt(n)
  return V, Q, Zs, [rng.normal(size=(1000, d, nt)) / np.sqrt(n) for nt in tests]


@jax.jit
def _c2(V, Q, Zs, Zts):
  d = Zs.shape[1]
  Ys = mhla_batch(V, Q, Zs)
  fit = R.fit_p(Zs, Ys)
  tests = [(Zt, mhla_batch(V, Q, Zt)) for Zt in Zts]
  p_true = F.p_of_params(V, Q)
  W = F.W_from_p(fit.p, d)
  Vh, Qh, nh = R.heads_from_W(W, d)
  return dict(train=R.rel_mse(fit.p, Zs, Ys), test=jnp.stack([R.rel_mse(fit.p, *t) for t in tests]),
              pdist=F.p_distance(F.p_of_params(Vh, Qh), p_true) / jnp.linalg.norm(p_true), nh=nh,
              vnorm=jnp.linalg.norm(Vh.reshape(Vh.shape[0], -1), axis=1),
              qnorm=jnp.linalg.norm(Qh.reshape(Qh.shape[0], -1), axis=1), ident=fit.cert.identifiable,
              res2=R.compress_heads(W, d, 2, 300)[1], res1=R.compress_heads(W, d, 1, 300)[1])


def test_c2_exact_recovery():
  # d = 6, a random 2-head teacher, N = 3000, n = 12; tests at n = 3, 12, 50.
  V, Q, Zs, Zts = _draw(0, 2, 6, 6, 3000, 12, (3, 12, 50))
  o = jax.tree.map(np.asarray, _c2(V, Q, Zs, Zts))
  assert o["train"] < 1e-16
  assert np.all(o["test"] < 1e-12), o["test"]  # n = 3, 12, 50
  # Measured from the folded heads (Alg. 1 steps 5-7), not only from p̂.
  assert o["pdist"] < 1e-10
  assert o["nh"] <= 36
  np.testing.assert_allclose(o["vnorm"], o["qnorm"], rtol=1e-10)  # √σ on each side
  assert o["ident"]
  # compress_heads: an exact rank-2 representative, none of rank 1.
  assert o["res2"] < 1e-10
  assert o["res1"] > 1e-2


@jax.jit
def _solvers(V, Q, Zs, V1, Q1, Zc):
  d = Zs.shape[1]
  Ys = mhla_batch(V, Q, Zs)
  p_true = F.p_of_params(V, Q)
  rel = lambda p: F.p_distance(p, p_true) / jnp.linalg.norm(p_true)
  fit = functools.partial(R.fit_p, chunk=64)
  out = {s: rel(fit(Zs, Ys, solver=s, iters=200).p) for s in ("cholesky", "eigh_pinv", "lstsq", "cg")}
  out["gd10"] = rel(fit(Zs, Ys, solver="gd", iters=10).p)
  out["gd400"] = rel(fit(Zs, Ys, solver="gd", iters=400).p)
  base = fit(Zs, Ys)
  out["ridge"] = rel(fit(Zs, Ys, ridge=1e-2 * jnp.trace(base.neq.A)).p)
  # Causal labels at every prefix (Sec. 4.1): each prefix is a sample.
  Yc = mhla_batch(V1, Q1, Zc, "causal")
  fc = fit(Zc, Yc, labels="all")
  p1 = F.p_of_params(V1, Q1)
  out["causal"] = F.p_distance(fc.p, p1) / jnp.linalg.norm(p1)
  out["causal_count"] = fc.neq.count
  out["causal_shape"] = jnp.asarray(Yc.shape)
  return out


def test_solvers():
  V, Q, Zs, _ = _draw(1, 2, 3, 1, 200, 6)
  V1, Q1, Zc, _ = _draw(2, 1, 3, 3, 200, 6)
  o = jax.tree.map(np.asarray, _solvers(V, Q, Zs, V1, Q1, Zc))
  for s in ("cholesky", "eigh_pinv", "lstsq", "cg"):
    assert o[s] < 1e-8, (s, o[s])
  assert o["gd400"] < o["gd10"]  # fixed-budget GD is approximate and improves with the budget
  assert o["gd10"] > 1e-6
  assert o["ridge"] > 1e-6  # a ridge biases the solution
  assert o["causal"] < 1e-10 and o["causal_count"] == 200 * 6
  assert tuple(o["causal_shape"]) == (200, 3, 6)


def test_refuses_large_d():
  with pytest.raises(ValueError, match="d = 33 > 32"):
    R.check_d(33)
