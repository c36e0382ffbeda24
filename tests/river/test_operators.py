"""Spec checks A1-A5: LayerNorm as the projection onto S1, Pi_T, ReLU, attention. float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.river import operators as O
from attnlab.river import params as P


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _on_s1(rng, shape, s1, s2):
  """Random points of S1(s1, s2) (row-wise), drawn in NumPy."""
  w = rng.normal(size=shape)
  w = w - w.mean(-1, keepdims=True)
  return s1 + s2 * w / np.sqrt((w ** 2).mean(-1, keepdims=True))


def test_a1_layernorm_is_the_projection_onto_s1():
  rng = np.random.default_rng(0)
  d, s1, s2 = 64, 0.3, 1.7
  v = rng.normal(size=(1000, d)) * rng.uniform(0.2, 5, size=(1000, 1)) + rng.normal(size=(1000, 1))
  ln = jax.jit(lambda x: O.layernorm_project(x, s1, s2))
  u = np.asarray(ln(v))
  assert np.max(np.abs(u.mean(-1) - s1)) <= 1e-14
  assert np.max(np.abs(u.var(-1) - s2 ** 2)) <= 1e-13 * s2 ** 2
  # closed-form distance (T1): d (s2 - sqrt(Var v))^2 + d (s1 - mean v)^2
  dist = ((u - v) ** 2).sum(-1)
  formula = d * (s2 - np.sqrt(v.var(-1))) ** 2 + d * (s1 - v.mean(-1)) ** 2
  assert np.max(np.abs(dist - formula)) <= 1e-12 * max(1.0, formula.max()) * 10 / 10
  # no point of S1 is closer: 10 rows x 1000 random points = 10^4 comparisons
  w = _on_s1(rng, (10, 1000, d), s1, s2)
  dw = ((w - v[:10, None, :]) ** 2).sum(-1)
  assert np.all(dist[:10, None] <= dw + 1e-12)
  # degenerate (constant) rows go to sigma1 * 1 and are counted (P3)
  const = np.ones((3, d)) * 2.5
  assert np.all(np.asarray(ln(const)) == s1)
  assert int(O.degenerate_rows(jnp.asarray(np.concatenate([const, v[:2]])))) == 3
  g = jax.grad(lambda x: jnp.sum(O.layernorm_project(x, s1, s2) ** 2))(jnp.asarray(const))
  assert np.all(np.isfinite(np.asarray(g)))


def test_a2_jacobian_of_layernorm_is_the_tangent_projector():
  rng = np.random.default_rng(1)
  d, s1, s2 = 8, -0.4, 1.3
  u = _on_s1(rng, (d,), s1, s2)

  @jax.jit
  def mats(u):
    J = jax.jacfwd(lambda x: O.layernorm_project(x, s1, s2))(u)
    Pi = jax.jacfwd(lambda g: O.tangent_project(u, g))(jnp.zeros_like(u))
    return J, Pi

  J, Pi = map(np.asarray, mats(jnp.asarray(u)))
  assert np.max(np.abs(J - Pi)) <= 1e-13
  assert np.max(np.abs(Pi - Pi.T)) <= 1e-13
  assert np.max(np.abs(Pi @ Pi - Pi)) <= 1e-13
  with jax.enable_x64(True):
    assert np.linalg.matrix_rank(Pi, tol=1e-10) == d - 2
  # the projected field is tangent: mean and variance are first integrals
  g = rng.normal(size=(d,))
  t = np.asarray(O.tangent_project(jnp.asarray(u), jnp.asarray(g)))
  assert abs(t.sum()) <= 1e-13 and abs(np.dot(u - s1, t)) <= 1e-12


def test_a3_relu_is_the_projection_onto_the_cone():
  rng = np.random.default_rng(2)
  v = rng.normal(size=(200, 16))
  p = np.asarray(O.relu_project(jnp.asarray(v)))
  w = np.abs(rng.normal(size=(200, 500, 16)))
  w[rng.uniform(size=w.shape) < 0.3] = 0.0
  assert np.all(((p - v) ** 2).sum(-1)[:, None] <= ((w - v[:, None]) ** 2).sum(-1) + 1e-15)
  assert np.all(p >= 0)


def test_a4_layernorm_scale_invariance_and_eps_rule():
  rng = np.random.default_rng(3)
  v = jnp.asarray(rng.normal(size=(50, 32)))
  eps = 1e-5

  @jax.jit
  def f(v):
    return (O.layernorm_project(0.5 * v), O.layernorm_project(3.0 * v), O.layernorm_project(v),
            O.layernorm_project(v / 2, eps=eps), O.layernorm_project(v, eps=4 * eps),
            O.layernorm_project(v, eps=eps))

  a, b, c, e1, e4, e_same = map(np.asarray, f(v))
  assert np.max(np.abs(a - c)) <= 1e-15 * 4 and np.max(np.abs(b - c)) <= 1e-15 * 4
  assert np.max(np.abs(e1 - e4)) <= 1e-15 * 4
  # without the eps/4 rule the 1/2 relaxation is visible at O(eps/Var) (spec P4)
  assert np.max(np.abs(e1 - e_same)) > 1e-7


def test_a5_attention_stochastic_equivariant_causal_absorbed():
  rng = np.random.default_rng(4)
  n, d, H = 7, 12, 3
  u = jnp.asarray(rng.normal(size=(n, d)))
  p = P.init_block(rng, d, H, 16, use_bias=True).attn
  pc = p.replace(causal=True)
  perm = rng.permutation(n)

  @jax.jit
  def f(u):
    rows = O.attention_matrices(u, p).sum(-1)
    out = O.attention(u, p)
    out_perm = O.attention(u[perm], p)
    Jc = jax.jacfwd(lambda x: O.attention(x, pc))(u)  # (n, d, n, d)
    absorbed = O.attention_absorbed(u, p)
    return rows, out, out_perm, Jc, absorbed

  rows, out, out_perm, Jc, absorbed = map(np.asarray, f(u))
  assert np.max(np.abs(rows - 1)) <= 1e-15 * 4
  assert np.max(np.abs(out[perm] - out_perm)) <= 1e-13
  blocks = np.abs(Jc).sum(axis=(1, 3))  # (i, j): sensitivity of out_i to u_j
  assert np.all(blocks[np.triu_indices(n, 1)] == 0.0)
  assert np.all(np.diag(blocks) > 0)
  assert np.max(np.abs(out - absorbed)) <= 1e-13
