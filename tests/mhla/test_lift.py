"""C1 (forward identities) and C4 (certificate basics) of the S2 spec, float64.

Each test jits one function that computes every quantity it checks, so the
suite compiles a handful of programs instead of hundreds of eager ops.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.core.linear_attention import mhla
from attnlab.mhla import features as F
from attnlab.mhla import regression as R


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


@pytest.fixture
def rng():
  """NumPy draws: jax.random.normal costs seconds of compilation per shape on CPU."""
  return np.random.default_rng(0)


@jax.jit
def _c1(V, Q, Z):
  d, n = Z.shape
  d_out = V.shape[1]
  y = mhla(V, Q, Z, "last")
  Tm = F.lifted_params(V, Q)
  X = F.features_X(Z)
  # <T_Theta, X_a> with X_a = 𝒳(Z) in row block a of a (d_out*d, d^2) matrix.
  frob = jnp.stack([jnp.sum(Tm * jnp.zeros_like(Tm).at[a * d:(a + 1) * d].set(X)) for a in range(d_out)])
  p = F.p_of_params(V, Q)
  h = F.features_H(Z)
  yc = mhla(V, Q, Z, "causal")
  prefix_last = jnp.stack([mhla(V, Q, Z[:, :t], "last") for t in range(1, n + 1)], axis=1)
  prefix_h = jnp.stack([F.features_H(Z[:, :t]) for t in range(1, n + 1)])
  Zp = jnp.zeros((d, n + 3), Z.dtype).at[:, :n].set(Z)
  return dict(y=y, frob=frob, mvec=Tm.reshape(d_out, d ** 3) @ X.reshape(-1), ph=F.predict_p(p, h),
              p_from_T=F.p_from_W(Tm, d), p=p, W_from_p=F.W_from_p(p, d), symT=F.sym_W(Tm, d),
              roundtrip=F.p_from_W(F.W_from_p(p, d), d), causal=yc, prefix_last=prefix_last,
              full_last=mhla(V, Q, Z, "full")[:, -1], prefix_feats=F.prefix_features_H(Z), prefix_h=prefix_h,
              h=h, h_padded=F.features_H(Zp, jnp.asarray(n)), X=X)


@pytest.mark.parametrize("d_out", [5, 1])
def test_c1_forward_identities(rng, d_out):
  H, d, n = 3, 5, 7
  V, Q, Z = rng.normal(size=(H, d_out, d)), rng.normal(size=(H, d, d)), rng.normal(size=(d, n))
  o = jax.tree.map(np.asarray, _c1(V, Q, Z))
  assert o["X"].shape == (d, d * d) and o["h"].shape == (F.psi_dim(d),) == (75,)
  close = lambda a, b: np.testing.assert_allclose(o[a], o[b], rtol=0, atol=1e-12)
  close("frob", "y")  # <T_Θ, X_a> = MHLA_last(Z)[a]
  close("mvec", "y")  # M vec(𝒳(Z))
  close("ph", "y")  # p(Θ) ℋ(Z)
  close("p_from_T", "p")  # W -> p on T_Θ gives Eq. 41
  close("W_from_p", "symT")  # the minimum-norm representative is sym(T_Θ)
  close("roundtrip", "p")
  close("causal", "prefix_last")  # causal at t == last on Z[:, :t]
  close("full_last", "y")
  close("prefix_feats", "prefix_h")  # cumsum prefix features
  close("h_padded", "h")  # zero padding + length is exact


def test_alg2_order_and_p_distance():
  d = 3
  Z = jnp.arange(1.0, 1.0 + d * 2, dtype=jnp.float64).reshape(d, 2)
  G = np.asarray(Z @ Z.T)
  zn = np.asarray(Z[:, -1])
  h = np.asarray(F.features_H(Z))
  expect = [G[j, k] * zn[l] for j in range(d) for k in range(j + 1, d) for l in range(d)]
  expect += [G[j, j] * zn[l] for j in range(d) for l in range(d)]
  np.testing.assert_allclose(h, np.asarray(expect), rtol=1e-15)
  X = np.asarray(F.features_X(Z))
  assert X[1, 2 * d + 0] == pytest.approx(G[1, 2] * zn[0])  # column index k*d + l (Alg. 8)
  p1 = jnp.ones((1, F.psi_dim(d)), jnp.float64)
  assert float(F.p_distance(p1, 0 * p1)) == pytest.approx(np.sqrt(F.psi_dim(d)))


@jax.jit
def _c4(Zs):
  N, d, _ = Zs.shape
  Y0 = jnp.zeros((N, 1), Zs.dtype)
  neq = R.normal_equations(Zs, Y0)
  Xv = jax.vmap(lambda Z: F.features_X(Z).reshape(-1))(Zs[:500])
  small = R.normal_equations(Zs[:30], Y0[:30])
  scaled = R.normal_equations(1.7 * Zs, Y0)
  return (R.certificate(neq.A, neq.count), jnp.linalg.eigvalsh(Xv.T @ Xv / 500),
          R.certificate(small.A, small.count), R.certificate(scaled.A, scaled.count))


def test_c4_certificate_basics(rng):
  d, n, N = 4, 10, 4000
  Zs = rng.normal(size=(N, d, n))  # N(0, 1) entries
  cert, lam_x, c_small, c_s = _c4(Zs)
  assert float(cert.lambda_min) > 1.0  # spec: 7.8
  assert bool(cert.identifiable) and int(cert.null_dim) == 0
  # The moment matrix of vec(𝒳) (d^3 coordinates) is singular: null space d^3 - ψ = 24.
  assert int(jnp.sum(lam_x <= 1e-10 * lam_x[-1])) == d ** 3 - F.psi_dim(d) == 24
  # N < ψ: λ_min ≈ 0.
  assert float(c_small.lambda_min) < 1e-10 * float(c_small.lambda_max) and not bool(c_small.identifiable)
  # Scaling Z by s multiplies λ_min by s^6.
  assert abs(float(c_s.lambda_min) / float(cert.lambda_min) / 1.7 ** 6 - 1) < 1e-8


@jax.jit
def _streamed_vs_design(Z, L, Y_last, Y_all):
  out = {}
  for labels, Y in (("last", Y_last), ("all", Y_all)):
    ne = R.normal_equations(Z, Y, L, labels, chunk=4)  # 2 full chunks and a partial one
    H, Yr = R.design(Z, Y, L, labels)
    out[labels] = (ne.A, H.T @ H, ne.B, H.T @ Yr)
  return out


def test_streamed_gram_equals_design_gram(rng):
  """The Gram accumulated from the Kronecker factors ℋ = g ⊗ z equals ℋᵀℋ of the
  explicit design (last-token and all-prefix rows, zero-padded sequences), and
  is exactly symmetric."""
  N, d, n = 10, 3, 5
  L = rng.integers(1, n + 1, size=N)
  Z = rng.normal(size=(N, d, n)) * (np.arange(n)[None, None, :] < L[:, None, None])
  out = _streamed_vs_design(Z, L, rng.normal(size=(N, 2)), rng.normal(size=(N, 2, n)))
  for labels, (A, A0, B, B0) in out.items():
    assert A.shape == A0.shape == (F.psi_dim(d), F.psi_dim(d)), labels
    np.testing.assert_allclose(np.asarray(A), np.asarray(A0), rtol=1e-13, atol=1e-13 * float(jnp.max(A0)))
    np.testing.assert_allclose(np.asarray(B), np.asarray(B0), rtol=1e-13, atol=1e-13 * float(jnp.max(jnp.abs(B0))))
    assert bool(jnp.all(A == A.T)), labels
