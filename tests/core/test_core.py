"""The shared forward passes in attnlab.core against explicit loops."""
import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core import attention, linear_attention as la, prng


def test_bilinear_softmax_attention_query_on_the_left(getkey):
  W = jax.random.normal(getkey(), (3, 3))
  X = jax.random.normal(getkey(), (3, 5))
  out = np.asarray(attention.bilinear_attention(W, X, X, X))
  Wn, Xn = np.asarray(W, np.float64), np.asarray(X, np.float64)
  for t in range(5):
    s = np.array([Xn[:, t] @ Wn @ Xn[:, j] for j in range(5)])
    a = np.exp(s - s.max())
    a /= a.sum()
    np.testing.assert_allclose(out[:, t], Xn @ a, rtol=1e-5, atol=1e-6)


def test_attention_columns_sum_to_one_and_mask(getkey):
  S = jax.random.normal(getkey(), (4, 4))
  A = attention.attention_matrix(S, "softmax", attention.causal_mask(4))
  np.testing.assert_allclose(A.sum(0), 1.0, rtol=1e-6)
  assert np.all(np.asarray(A)[np.triu_indices(4, 1)[::-1]] == 0)  # key s > query t is masked
  L = attention.attention_matrix(S, "lightning")
  np.testing.assert_array_equal(L, S)


def test_mhla_modes_agree_on_last_token(getkey):
  V, Q = la.init_mhla(getkey(), 2, 3, 3)
  Z = jax.random.normal(getkey(), (3, 6))
  last = la.mhla(V, Q, Z, "last")
  causal = la.mhla(V, Q, Z, "causal")
  full = la.mhla(V, Q, Z, "full")
  np.testing.assert_allclose(causal[:, -1], last, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(full[:, -1], last, rtol=1e-5, atol=1e-6)
  # causal position t equals "last" on the prefix Z[:, :t+1]
  np.testing.assert_allclose(causal[:, 2], la.mhla(V, Q, Z[:, :3], "last"), rtol=1e-5, atol=1e-6)
  # explicit sum over heads of V_h Z (Z^T Q_h z_n)
  ref = sum(np.asarray(V[h]) @ np.asarray(Z) @ (np.asarray(Z).T @ np.asarray(Q[h]) @ np.asarray(Z[:, -1]))
            for h in range(2))
  np.testing.assert_allclose(last, ref, rtol=1e-4, atol=1e-5)


def test_mhla_last_from_stats_matches_forward(getkey):
  V, Q = la.init_mhla(getkey(), 3, 4, 2)
  Zs = jax.random.normal(getkey(), (5, 4, 7))
  ref = la.mhla_batch(V, Q, Zs, "last")
  got = la.mhla_last_from_stats(V, Q, jax.vmap(la.gram)(Zs), Zs[:, :, -1])
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_prng_streams_are_distinct_and_stable():
  k = prng.run_key(0, 3)
  np.testing.assert_array_equal(k, jax.random.fold_in(jax.random.PRNGKey(0), 3))
  streams = {tuple(np.asarray(prng.stream(k, s))) for s in (prng.INIT, prng.DATA, prng.NOISE)}
  assert len(streams) == 3


def test_prng_normal_is_bit_identical_to_jax_random_normal():
  key = jax.random.PRNGKey(3)
  for shape, dtype in [((7, 4, 5), jnp.float32), ((3, 2), jnp.float32), ((), jnp.float32)]:
    np.testing.assert_array_equal(np.asarray(prng.normal(key, shape, dtype)),
                                  np.asarray(jax.random.normal(key, shape, dtype)))
