"""C5 (associative-memory certificate) and C3 (agnostic guarantee), float64."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attnlab.core.linear_attention import init_mhla, mhla_batch
from attnlab.mhla import regression as R
from attnlab.mhla import tasks as T


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


FRACS = (0.95, 0.97, 0.99, 0.995, 1.0)


@jax.jit
def _c5(key):
  def one(frac):
    Zs, Ys = T.assoc_memory_data(key, 4, 2 ** 14, frac, "exact", jnp.float64)
    neq = R.normal_equations(Zs, Ys, chunk=2048)
    return R.certificate(neq.A, neq.count)
  return jax.lax.map(one, jnp.asarray(FRACS))


def test_c5_assoc_memory_certificate():
  # d = 4 (D = 8, ψ = 288), N = 2^14, exact labels; one key for all fractions, so the
  # unidentifiable subsets are nested. An rbg key: threefry compiles several times slower.
  cert = jax.tree.map(np.asarray, _c5(jax.random.key(0, impl="rbg")))
  lam = cert.lambda_min
  assert np.all(np.diff(lam) < 0), lam  # monotone in the fraction
  assert 0.04 <= lam[0] <= 0.08, lam[0]  # paper: 0.06
  assert lam[-1] < 1e-10 * cert.lambda_max[-1]
  assert int(cert.null_dim[-1]) == 40 and int(cert.null_dim[0]) == 0


@jax.jit
def _c3(Zs, Ys, keys):
  """Algorithm 1 vs full-batch Adam for H in {1, d^2 = 9} heads on non-realisable data."""
  def mse(V, Q):
    return jnp.mean(jnp.sum((mhla_batch(V, Q, Zs) - Ys) ** 2, axis=-1))

  fit = R.fit_p(Zs, Ys)
  sse, _, n = R.streamed_sse(fit.p, Zs, Ys)
  out = {"alg1": sse / n}
  for H, k in zip((1, 9), keys):
    params = init_mhla(k, H, Zs.shape[1], Ys.shape[1], 0.5, jnp.float64)
    opt = optax.adam(1e-2)

    def step(c, _):
      p, s = c
      g = jax.grad(lambda p: mse(*p))(p)
      u, s = opt.update(g, s)
      return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=400)
    out[f"adam{H}"] = mse(*params)
  return out


def test_c3_agnostic_guarantee():
  # Non-realisable labels: a 1-head teacher plus a cubic term outside the MHLA span
  # (z_{0n}^3, which no ⟨z_j:, z_k:⟩ z_ln feature reproduces) plus Gaussian noise.
  rng = np.random.default_rng(3)
  d, n, N = 3, 6, 300
  Zs = rng.normal(size=(N, d, n)) / np.sqrt(n)
  V, Q = rng.normal(size=(1, d, d)), rng.normal(size=(1, d, d))
  Ys = np.asarray(mhla_batch(jnp.asarray(V), jnp.asarray(Q), jnp.asarray(Zs)))
  Ys = Ys + (Zs[:, :1, -1] ** 3) * 5 + 0.05 * rng.normal(size=Ys.shape)
  keys = jnp.stack([jax.random.PRNGKey(i) for i in range(2)])
  o = jax.tree.map(float, _c3(jnp.asarray(Zs), jnp.asarray(Ys), keys))
  assert o["alg1"] > 1e-4  # really not realisable
  for H in (1, 9):
    assert o["alg1"] <= o[f"adam{H}"] * (1 + 1e-8), (H, o)
