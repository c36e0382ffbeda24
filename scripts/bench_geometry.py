"""Benchmark: the float64 Jacobian-rank estimator on the Figure 3 configurations.

For delta = 3..10 (softmax, l = 2, t = 3, a = 2, N = 250, float64) it times

* ``ours``: :func:`attnlab.geometry.estimator.estimate_kernel` (draw + ``jacfwd``
  + row normalisation + QR/SVD + both ranks), warm (compile excluded, reported
  separately as ``compile``);
* ``rowwise``: the authors' NeuroDim approach in JAX: one forward pass, then the
  Jacobian built one output row at a time with reverse mode (a jitted VJP of
  the stored forward pass, called once per output with a one-hot cotangent,
  like ``y[j].backward(retain_graph=True)``), followed by the same rank step;

and prints seconds per delta for both, with the ratio (median of ``--repeats``
timings for ``ours``, one timing for ``rowwise``; with ``--rowwise_rows=k`` the
baseline is timed on its first k rows and scaled by rows/k, since every row is
the same compiled program). Both build the same
Jacobian (checked: max abs difference) and get the same rank.

  python scripts/bench_geometry.py [--deltas 3,4,...] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.geometry import estimator as ge
from attnlab.geometry import model as gm


def _time(fn, repeats: int) -> float:
  out = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    out.append(time.perf_counter() - t0)
  return statistics.median(out)


@jax.jit
def _row(pullback, y, j):
  """Row j of J: the stored forward pass's VJP with the one-hot cotangent e_j."""
  return pullback(jnp.zeros_like(y).at[j].set(1.0))[0]


def rowwise_jacobian(y, pullback, n_rows=None):
  """The baseline: J one row at a time by reverse mode (a Python loop over outputs).

  ``y, pullback = jax.vjp(jit(f), theta)`` ran the forward pass once (its
  residuals are kept, like ``retain_graph=True``); ``pullback`` is a pytree, so
  one compiled ``_row`` serves every row (about 0.4 ms per row on an idle core).
  """
  return jnp.stack([_row(pullback, y, j) for j in range(y.shape[0] if n_rows is None else n_rows)])


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--deltas", default="3,4,5,6,7,8,9,10")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--n_inputs", type=int, default=250)
  p.add_argument("--blas_threads", type=int, default=1)
  p.add_argument("--rowwise_rows", type=int, default=0,
                 help="time the baseline on this many rows and extrapolate linearly to all rows (0: all)")
  args = p.parse_args()
  key = jax.random.PRNGKey(0)
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), float64, N = {args.n_inputs}")
  header = (f"{'delta':>5} {'P':>4} {'rows':>5} {'rank':>4} {'compile_s':>9} {'ours_s':>8} {'ours_jac_s':>10} "
            f"{'rowwise_s':>9} {'rowwise_jac_s':>13} {'ratio':>7} {'ratio_jac':>9} {'max|dJ|':>8}")
  print(header)
  print("-" * len(header))
  # OpenBLAS (jaxlib's CPU QR/SVD) at one thread for both methods, as the
  # experiments run it (see attnlab.geometry.estimator.blas_threads).
  with jax.enable_x64(True), ge.blas_threads(args.blas_threads):
    rank_fn = jax.jit(ge.rank_stats)
    for delta in [int(d) for d in args.deltas.split(",")]:
      arch = gm.Arch((delta,) * 3, (2, 2), "softmax", 3)
      static = dict(arch=arch, n_inputs=args.n_inputs, trials=1)
      c0 = time.perf_counter()
      est = jax.block_until_ready(ge.estimate_kernel(key, 1.0, 1.0, 1e6, **static))
      compile_s = time.perf_counter() - c0
      ours = _time(lambda: ge.estimate_kernel(key, 1.0, 1.0, 1e6, **static), args.repeats)
      data = jax.jit(ge.draw, static_argnums=(1, 2))(key, arch, args.n_inputs)
      theta, X = data["theta"][0], data["X"][0]
      jac = jax.jit(ge.jacobian, static_argnums=2)
      J = jax.block_until_ready(jac(theta, X, arch))
      rank_fn(J)
      ours_jac = _time(lambda: jac(theta, X, arch), args.repeats)
      # one forward pass with stored residuals (not timed: it is one call), then
      # compile the per-row program on 2 rows, then time all rows.
      y, pullback = jax.vjp(jax.jit(lambda th: ge.flat_forward(th, X, arch)), theta)
      jax.block_until_ready(rowwise_jacobian(y, pullback, n_rows=2))
      m = J.shape[0]
      k = m if args.rowwise_rows <= 0 else min(args.rowwise_rows, m)
      t0 = time.perf_counter()
      J_rows = jax.block_until_ready(rowwise_jacobian(y, pullback, n_rows=k))
      rowwise_jac = (time.perf_counter() - t0) * m / k  # per-row cost is constant: one program
      dj = float(jnp.max(jnp.abs(J_rows - J[:k])))
      if k < m:  # the rank step on the full (forward-mode) J stands in for the baseline's
        J_rows = J
      t0 = time.perf_counter()
      r = jax.block_until_ready(rank_fn(J_rows))
      rowwise = rowwise_jac + time.perf_counter() - t0
      assert int(r["rank_tol"]) == int(est["rank_tol"])
      print(f"{delta:>5} {arch.num_params:>4} {J.shape[0]:>5} {int(est['rank_tol']):>4} {compile_s:>9.2f} "
            f"{ours:>8.3f} {ours_jac:>10.3f} {rowwise:>9.2f} {rowwise_jac:>13.2f} {rowwise / ours:>7.1f} "
            f"{rowwise_jac / ours_jac:>9.1f} {dj:>8.1e}", flush=True)


if __name__ == "__main__":
  main()
