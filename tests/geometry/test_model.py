"""Spec check 1 (forward semantics), pitfalls 10 and 12 (softmax axis, layout).

Checks 2-3 (symmetries, kernel) are in test_estimator.py."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.core import attention as core_attention
from attnlab.geometry import model as gm


def _params(seed, arch, std=0.5):
  """Gaussian weights drawn with NumPy (no threefry compiles in these small tests)."""
  rng = np.random.default_rng(seed)
  return tuple(gm.Layer(*(jnp.asarray(std * rng.standard_normal(s)) for s in shapes))
               for shapes in arch.layer_shapes())


def _x(seed, *shape):
  return jnp.asarray(np.random.default_rng(1000 + seed).standard_normal(shape))


def _rel(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def test_single_layer_matches_hand_loop():
  with jax.enable_x64(True):
    arch = gm.Arch((4, 3), (2,), "lightning", 3)
    (L,) = _params(0, arch)
    X = _x(0, 4, 3)
    out = jax.jit(gm.forward, static_argnums=2)((L,), X, "lightning")
    Q, K, V, Xn = (np.asarray(m) for m in (L.Q, L.K, L.V, X))
    ref = np.zeros((3, 3))
    for j in range(3):
      for i in range(3):
        ref[:, j] += np.dot(K @ Xn[:, i], Q @ Xn[:, j]) * (V @ Xn[:, i])
    assert out.dtype == jnp.float64
    assert _rel(out, ref) <= 1e-13


def test_softmax_normalises_over_key_index():
  with jax.enable_x64(True):
    arch = gm.Arch((4, 3), (2,), "softmax", 5)
    (L,) = _params(0, arch)
    X = _x(1, 4, 5)

    @jax.jit
    def f(L, X):
      S = core_attention.scores(L.Q @ X, L.K @ X)  # S[i, j] = <K x_i, Q x_j>
      A = core_attention.attention_matrix(S, "softmax")
      return (S, A, gm.forward((L,), X, "softmax"), gm.forward((L,), X, "softmax", softmax_axis="query"))

    S, A, out, out_q = (np.asarray(v) for v in f(L, X))
    Q, K, V, Xn = (np.asarray(m) for m in (L.Q, L.K, L.V, X))
    np.testing.assert_allclose(S[1, 2], np.dot(K @ Xn[:, 1], Q @ Xn[:, 2]), rtol=1e-14)
    assert np.max(np.abs(A.sum(axis=0) - 1.0)) <= 1e-14  # each query column sums to 1
    np.testing.assert_allclose(out, V @ Xn @ A, rtol=1e-13, atol=1e-15)  # phi = V X A
    # the query-axis variant (pitfall 10) normalises each key row instead
    Aq = np.exp(S - S.max(axis=1, keepdims=True))
    Aq /= Aq.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out_q, V @ Xn @ Aq, rtol=1e-13, atol=1e-15)


def test_neurodim_layout_agrees():
  """NeuroDim: x (N, t, d), A[n,i,j] = <K x_i, Q x_j>, softmax over dim 1, res[n,j] = sum_i A V x_i."""
  with jax.enable_x64(True):
    arch = gm.Arch((3, 3), (2,), "softmax", 4)
    (L,) = _params(1, arch, 1.0)
    X = np.asarray(_x(2, 2, 3, 4))  # ours: (N, d, t)
    x = X.transpose(0, 2, 1)  # NeuroDim: (N, t, d)
    Q, K, V = (np.asarray(m) for m in L)
    A = np.einsum("nia,nja->nij", x @ K.T, x @ Q.T)
    A = np.exp(A - A.max(axis=1, keepdims=True))
    A = A / A.sum(axis=1, keepdims=True)
    res = np.einsum("nij,nie->nje", A, x @ V.T)  # (N, t, d')
    ours = jax.jit(gm.forward, static_argnums=2)((L,), jnp.asarray(X), "softmax")
    assert _rel(ours, res.transpose(0, 2, 1)) <= 1e-13


@pytest.mark.parametrize("kind", ["lightning", "softmax"])
def test_layered_equals_virtual_weights(kind):
  with jax.enable_x64(True):
    arch = gm.Arch((4, 3, 3, 2), (2, 3, 1), kind, 3)
    params = _params(2, arch)
    X = _x(3, 5, 4, 3)

    @jax.jit
    def f(params, X):
      A_t, V_t = gm.virtual_weights(params)
      return A_t, V_t, gm.virtual_forward(A_t, V_t, X, kind), gm.forward(params, X, kind)

    A_t, V_t, virt, layered = f(params, X)
    assert [a.shape for a in A_t] == [(4, 4)] * 3 and V_t.shape == (2, 4)
    assert _rel(virt, layered) <= 1e-13


def test_param_count_and_ravel_order():
  arch = gm.Arch((4, 3, 2), (2, 2), "lightning", 3)
  assert arch.num_params == (2 * 2 * 4 + 3 * 4) + (2 * 2 * 3 + 2 * 3) == 46
  params = _params(3, arch)
  theta, _ = jax.flatten_util.ravel_pytree(params)
  np.testing.assert_array_equal(theta[:8], params[0].Q.reshape(-1))  # Q first, row-major
  np.testing.assert_array_equal(theta[8:16], params[0].K.reshape(-1))
