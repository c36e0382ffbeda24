"""attnlab.core.linalg: the eigenvalues-only symmetric solver and the LAPACK thread switch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.core import linalg


@pytest.mark.parametrize("shape,dtype", [((6, 6), np.float64), ((3, 5, 5), np.float32)])
def test_eigvalsh_matches_numpy(shape, dtype):
  rng = np.random.default_rng(0)
  X = rng.normal(size=shape).astype(dtype)
  A = X @ np.swapaxes(X, -1, -2) - 2.0 * np.eye(shape[-1], dtype=dtype)  # indefinite
  with jax.enable_x64(dtype == np.float64):
    w = np.asarray(jax.jit(linalg.eigvalsh)(jnp.asarray(A)))
  assert w.dtype == dtype
  ref = np.linalg.eigvalsh(A.astype(np.float64))
  tol = 1e-12 if dtype == np.float64 else 2e-5
  np.testing.assert_allclose(w, ref, rtol=0, atol=tol * np.max(np.abs(ref)))
  assert np.all(np.diff(w, axis=-1) >= 0)  # ascending


def test_eigvalsh_under_vmap_and_jit():
  rng = np.random.default_rng(1)
  X = rng.normal(size=(2, 3, 4, 4))
  A = X @ np.swapaxes(X, -1, -2)
  with jax.enable_x64(True):
    w = jax.jit(jax.vmap(jax.vmap(linalg.eigvalsh)))(jnp.asarray(A))
  np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(A), rtol=0, atol=1e-12 * np.abs(A).max())


def test_eigvalsh_symmetrizes_and_flags_failure():
  with jax.enable_x64(True):
    A = jnp.asarray([[2.0, 1.0], [0.0, 2.0]])  # (A + Aᵀ)/2 has eigenvalues 1.5 and 2.5
    np.testing.assert_allclose(np.asarray(linalg.eigvalsh(A)), [1.5, 2.5], rtol=1e-15)
    assert bool(jnp.all(jnp.isnan(linalg.eigvalsh(jnp.full((3, 3), jnp.nan)))))


def test_set_lapack_threads_round_trips():
  old = linalg.set_lapack_threads(1)
  if old is None:
    pytest.skip("jaxlib's LAPACK is not SciPy's bundled OpenBLAS here")
  try:
    assert linalg.set_lapack_threads(old) == 1
  finally:
    linalg.set_lapack_threads(old)
  with pytest.raises(ValueError, match="n must be >= 1"):
    linalg.set_lapack_threads(0)
