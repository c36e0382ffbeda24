"""Benchmark Algorithm 1 (attnlab, ψ-space, float64) against a naive NumPy baseline.

attnlab: features ℋ, the Gram A = Σℋℋᵀ streamed with lax.scan (from the
Kronecker factors ℋ = g ⊗ z, see ``regression.normal_equations``), Cholesky +
refinement, the certificate (eigvalsh of Λ_D) and the SVD fold into heads, one
jitted program; the time excludes compilation (reported separately). Both
methods are timed in ``--repeats`` interleaved rounds (attnlab, naive) after
one untimed run each, and each time is the best of its rounds. Peak memory: the compiled program's temporaries and
outputs (``memory_analysis()``), inputs excluded.

Naive: ``numpy.linalg.lstsq`` on the explicit N x d³ design vec 𝒳(Z) (the
paper's features with their duplicate columns), d outputs. Peak memory: ``tracemalloc`` over
building the design and solving (NumPy registers its buffers with
tracemalloc), inputs excluded.

Both fit the same data: a random 2-head teacher with d_out = d, N sequences of
n tokens, Z ~ N(0, 1/n). The last column checks that both recover the teacher
(train relative MSE).

Usage:
  python scripts/bench_mhla.py                      # d in 4 8 12 16, N = 1e4, n = 20
  python scripts/bench_mhla.py --d 4 8 --N 2000     # quick
  python scripts/bench_mhla.py --d 32 --N 40000 --naive_max_d 0   # on a GPU
  python scripts/bench_mhla.py --d 12 --lapack_threads 0           # jaxlib's default LAPACK threads
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core.linalg import set_lapack_threads
from attnlab.mhla import features as F
from attnlab.mhla import regression as R


def data(d, N, n, seed=0):
  rng = np.random.default_rng(seed)
  V, Q = rng.normal(size=(2, d, d)), rng.normal(size=(2, d, d))
  Z = rng.normal(size=(N, d, n)) / np.sqrt(n)
  G = np.einsum("bin,bjn->bij", Z, Z)
  y = np.einsum("haj,bjk,hkl,bl->ba", V, G, Q, Z[:, :, -1])
  return Z, y


def attnlab_fit(Z, Y, chunk):
  d = Z.shape[1]
  fit = R.fit_p(Z, Y, chunk=chunk)
  W = F.W_from_p(fit.p, d)
  Vh, Qh, nh = R.heads_from_W(W, d)
  return fit.p, fit.cert.lambda_min, Vh, Qh, nh


def compile_attnlab(Z, Y, chunk):
  """The jitted Algorithm 1 program, its compile time and peak memory (x64 on)."""
  Zj, Yj = jnp.asarray(Z), jnp.asarray(Y)
  t0 = time.perf_counter()
  compiled = jax.jit(attnlab_fit, static_argnums=2).lower(Zj, Yj, chunk).compile()
  t_compile = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  peak = (mem.temp_size_in_bytes + mem.output_size_in_bytes) if mem is not None else float("nan")
  return (lambda: jax.block_until_ready(compiled(Zj, Yj))), t_compile, peak, Zj, Yj


def _naive_fit(Z, Y):
  N, d, _ = Z.shape
  G = np.einsum("bin,bjn->bij", Z, Z)
  X = np.einsum("bjk,bl->bjkl", G, Z[:, :, -1]).reshape(N, d ** 3)
  M, *_ = np.linalg.lstsq(X, Y, rcond=None)
  return X, M


def naive_peak_and_rel(Z, Y):
  """Peak memory of one naive fit (tracemalloc) and its train relative MSE."""
  tracemalloc.start()
  X, M = _naive_fit(Z, Y)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  res = X @ M - Y
  rel = float(np.sum(res ** 2) / np.sum((Y - Y.mean(0)) ** 2))
  return peak, rel


def timed(f) -> float:
  t0 = time.perf_counter()
  f()
  return time.perf_counter() - t0


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--d", type=int, nargs="+", default=[4, 8, 12, 16])
  ap.add_argument("--N", type=int, default=10_000)
  ap.add_argument("--n", type=int, default=20)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--chunk", type=int, default=256)
  ap.add_argument("--naive_max_d", type=int, default=16, help="skip the naive baseline above this d")
  ap.add_argument("--pause", type=float, default=0.5,
                  help="seconds to idle between timed calls: OpenBLAS worker threads busy-wait for a while "
                       "after a call, and would otherwise share the cores with the next timed call")
  ap.add_argument("--lapack_threads", type=int, default=1,
                  help="threads of jaxlib's CPU LAPACK (SciPy's OpenBLAS) for attnlab; 0 keeps the default "
                       "(one per core). The baseline uses NumPy's own OpenBLAS, which this does not touch.")
  a = ap.parse_args()
  threads = "default"
  if a.lapack_threads > 0:
    threads = a.lapack_threads if set_lapack_threads(a.lapack_threads) is not None else "default (not OpenBLAS)"
  print(f"Algorithm 1, N = {a.N}, n = {a.n}, float64, device = {jax.devices()[0].platform}, "
        f"attnlab LAPACK threads = {threads}")
  hdr = (f"{'d':>3} {'psi':>6} {'d^3':>6} | {'attnlab s':>9} {'compile s':>9} {'peak MiB':>9} {'rel-MSE':>8} | "
         f"{'naive s':>8} {'peak MiB':>9} {'rel-MSE':>8} | {'speedup':>7}")
  print(hdr)
  print("-" * len(hdr))
  with jax.enable_x64(True):
    for d in a.d:
      Z, Y = data(d, a.N, a.n)
      run, tc, peak, Zj, Yj = compile_attnlab(Z, Y, a.chunk)
      rel = float(R.rel_mse(run()[0], Zj, Yj))
      naive_on = d <= a.naive_max_d
      if naive_on:
        peakn, reln = naive_peak_and_rel(Z, Y)
      # Interleaved (attnlab, naive) repeats, best of each: on a shared machine both
      # see the same load, so the ratio is more stable than either time.
      t, tn = [], []
      for _ in range(a.repeats):
        t.append(timed(run))
        if naive_on:
          time.sleep(a.pause)
          tn.append(timed(lambda: _naive_fit(Z, Y)))
          time.sleep(a.pause)
      t = min(t)
      if naive_on:
        naive = f"{min(tn):8.2f} {peakn / 2**20:9.1f} {reln:8.1e} | {min(tn) / t:6.1f}x"
      else:
        naive = f"{'-':>8} {'-':>9} {'-':>8} | {'-':>7}"
      print(f"{d:3d} {F.psi_dim(d):6d} {d ** 3:6d} | {t:9.3f} {tc:9.2f} {peak / 2**20:9.1f} {rel:8.1e} | {naive}",
            flush=True)


if __name__ == "__main__":
  main()
