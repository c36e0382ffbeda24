"""Dense linear algebra helpers that jax.numpy does not offer directly.

``jnp.linalg.eigvalsh`` computes the eigenvectors and throws them away (it calls
``eigh``). On CPU that costs about twice the eigenvalues alone: LAPACK's
``syevd`` with ``jobz = 'N'`` skips the back-transformation and the
divide-and-conquer eigenvector work. :func:`eigvalsh` calls that LAPACK routine
directly on CPU and falls back to ``jnp.linalg.eigvalsh`` on other backends,
for other dtypes, or when this jaxlib does not expose the routine.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

_LAPACK_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _lapack_target(dtype):
  """The registered CPU FFI target of ``?syevd`` for ``dtype``, or None."""
  if np.dtype(dtype) not in _LAPACK_DTYPES:
    return None
  try:
    from jaxlib import lapack
    return lapack.prepare_lapack_call("syevd_ffi", np.dtype(dtype))
  except Exception:  # a jaxlib without the FFI kernels: use the generic path
    return None


def _eigvalsh_lapack(a: jax.Array, target: str) -> jax.Array:
  out = (jax.ShapeDtypeStruct(a.shape, a.dtype), jax.ShapeDtypeStruct(a.shape[:-1], a.dtype),
         jax.ShapeDtypeStruct(a.shape[:-2], jnp.int32))
  # The kernel loops over leading batch dimensions itself, so vmap just adds one.
  call = jax.ffi.ffi_call(target, out, input_output_aliases={0: 0}, vmap_method="broadcast_all")
  _, w, info = call(a, mode=np.uint8(ord("N")), uplo=np.uint8(ord("L")))
  # LAPACK reports failure through info; mirror jnp.linalg.eigvalsh (NaN).
  return jnp.where((info == 0)[..., None], w, jnp.nan)


def eigvalsh(a: jax.Array) -> jax.Array:
  """Eigenvalues of a real symmetric matrix, ascending, without eigenvectors.

  Args:
    a: (..., n, n) real symmetric; it is symmetrized as (a + aᵀ)/2 first, as
      ``jnp.linalg.eigvalsh`` does.

  Returns:
    (..., n) eigenvalues in ascending order (NaN where LAPACK fails).

  Agrees with ``jnp.linalg.eigvalsh`` to rounding (both are LAPACK ``syevd`` on
  CPU); not differentiable on the CPU fast path.
  """
  chex.assert_rank(a, {2, 3, 4})
  chex.assert_equal(a.shape[-1], a.shape[-2])
  a = (a + jnp.swapaxes(a, -1, -2)) / 2
  target = _lapack_target(a.dtype)
  if target is None:
    return jnp.linalg.eigvalsh(a, symmetrize_input=False)
  return jax.lax.platform_dependent(
      a, cpu=lambda x: _eigvalsh_lapack(x, target),
      default=lambda x: jnp.linalg.eigvalsh(x, symmetrize_input=False))


def _jax_openblas():
  """ctypes handle of the OpenBLAS behind jaxlib's CPU LAPACK kernels, or None.

  jaxlib takes its LAPACK from SciPy (``scipy.linalg.cython_lapack``); SciPy's
  wheels bundle their own OpenBLAS (``scipy.libs/libscipy_openblas*.so``),
  separate from NumPy's copy, so changing it leaves NumPy's BLAS alone.
  """
  import ctypes
  import glob
  import os
  try:
    import scipy
    import scipy.linalg.cython_lapack  # noqa: F401  (loads the library)
  except ImportError:
    return None
  pattern = os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs",
                         "libscipy_openblas*.so*")
  for path in glob.glob(pattern):
    try:
      lib = ctypes.CDLL(path)
      lib.scipy_openblas_set_num_threads, lib.scipy_openblas_get_num_threads  # noqa: B018
      return lib
    except (OSError, AttributeError):
      continue
  return None


def set_lapack_threads(n: int) -> int | None:
  """Set the thread count of jaxlib's CPU LAPACK calls (process-wide); returns the old one.

  Returns None, changing nothing, when SciPy's bundled OpenBLAS is not found
  (another BLAS, or a source build). Why one would: XLA keeps its own worker
  threads busy around a LAPACK call, and OpenBLAS adds one thread per core on
  top; on a small CPU the two pools compete. On 2 cores, Algorithm 1 of S2 at
  d = 12 (``scripts/bench_mhla.py``) took 0.116-0.133 s with 1 LAPACK thread
  against 0.143-0.158 s with the default 2.
  """
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  lib = _jax_openblas()
  if lib is None:
    return None
  old = int(lib.scipy_openblas_get_num_threads())
  lib.scipy_openblas_set_num_threads(int(n))
  return old
