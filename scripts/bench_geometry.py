"""Benchmark: the float64 Jacobian-rank estimator on the Figure 3 configurations.

For delta = 3..10 (softmax, l = 2, t = 3, a = 2, N = 250, float64, OpenBLAS at
one thread for both methods) it times, for each rank method ``M`` in
``--rank_method`` (``both`` by default: ``qr``, the spec's SVD of J via its R
factor and the experiments' default, and ``lu_rows``, the SVD of the P rows
that LU with partial pivoting selects; see
:func:`attnlab.geometry.estimator.rank_stats`)

* ``ours_M``: one run of the estimator as the experiments run it,
  ``jit(vmap(estimate_run))`` over one seed (the engine's program, default XLA
  options): draw + the per-input reverse-mode Jacobian vmapped over the inputs
  + row normalisation + the rank step + both ranks, warm; ``compile_s`` is
  the first method's first call minus one warm run (trace + compile);
* ``rank_M``: the rank step alone on the same J (row normalisation, reduction
  to P rows, SVD, both ranks);
* ``ratio_M``: (``rowwise_jac_s`` + ``rank_M``) / ``ours_M``: the baseline
  gets the same rank step as ours;
* ``jac_s``: our Jacobian alone (``jacobian_mode="rev"``), and ``jacfwd_s``
  the spec's literal ``jax.jacfwd(f)(theta)`` (``jacobian_mode="fwd"``);
* ``rowwise_jac_s``: the authors' NeuroDim approach in JAX: one forward pass,
  then the Jacobian built one output row at a time with reverse mode (a jitted
  VJP of the stored forward pass, called once per output with a one-hot
  cotangent, like ``y[j].backward(retain_graph=True)``), rows stacked on the
  host; ``ratio_jac`` = ``rowwise_jac_s`` / ``jac_s``. With
  ``--rowwise_rows=k`` the baseline is timed on its first k rows and scaled by
  rows/k: every row runs the same compiled program, so its cost per row is
  constant.

Every timing is the minimum over ``--repeats`` runs (the machine is shared).
Both build the same Jacobian (checked: ``max|dJ|``, against the rowwise rows
and against jacfwd) and get the same rank (asserted). The load average is
printed before and after.

  python scripts/bench_geometry.py [--deltas 3,4,...] [--repeats 5] [--rowwise_rows 1000] [--rank_method both]

``--malloc_keep`` (default on) re-runs the script with glibc's
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` raised, so that
freed blocks stay in the heap. Without it every call of our program gets its
~17 MB Jacobian buffers from fresh ``mmap`` pages and page-faults them in:
about 0.01 s of the 0.03 s at delta = 10. The baseline's per-row calls
allocate little and are not affected (measured: 1.2-1.4 s either way).
``--no-malloc_keep`` measures without it.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.geometry import estimator as ge
from attnlab.geometry import model as gm


def _time(fn, repeats: int) -> float:
  """Minimum wall time of ``fn()`` (blocked) over ``repeats`` calls."""
  out = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    out.append(time.perf_counter() - t0)
  return min(out)


@jax.jit
def _row(pullback, y, j):
  """Row j of J: the stored forward pass's VJP with the one-hot cotangent e_j."""
  return pullback(jnp.zeros_like(y).at[j].set(1.0))[0]


def rowwise_jacobian(y, pullback, n_rows=None):
  """The baseline: J one row at a time by reverse mode (a Python loop over outputs).

  ``y, pullback = jax.vjp(jit(f), theta)`` ran the forward pass once (its
  residuals are kept, like ``retain_graph=True``); ``pullback`` is a pytree, so
  one compiled ``_row`` serves every row.
  """
  rows = [_row(pullback, y, j) for j in range(y.shape[0] if n_rows is None else n_rows)]
  # Stacked on the host: jnp.stack of thousands of operands compiles one XLA
  # concatenate per row count (minutes at 7500 rows), an artifact that would
  # inflate the baseline; torch.stack in the authors' code has no such cost.
  return jnp.asarray(np.stack([np.asarray(r) for r in rows]))


_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 31 - 1), "MALLOC_TRIM_THRESHOLD_": str(2 ** 32)}


def _load() -> str:
  return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--deltas", default="3,4,5,6,7,8,9,10")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--rowwise_repeats", type=int, default=2)
  p.add_argument("--n_inputs", type=int, default=250)
  p.add_argument("--blas_threads", type=int, default=1)
  p.add_argument("--rank_method", default="both", choices=(*ge.RANK_METHODS, "both"),
                 help="how the tall J is reduced before the SVD (estimator.rank_stats), the same for ours "
                      "and the baseline; 'both': one column group each")
  p.add_argument("--rowwise_rows", type=int, default=0,
                 help="time the baseline on this many rows and extrapolate linearly to all rows (0: all)")
  p.add_argument("--malloc_keep", action=argparse.BooleanOptionalAction, default=True,
                 help="re-run with glibc keeping freed memory (see the module doc)")
  args = p.parse_args()
  if args.malloc_keep and _MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"] != os.environ.get("MALLOC_MMAP_THRESHOLD_"):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC_ENV})
  key = jax.random.PRNGKey(0)
  methods = ge.RANK_METHODS if args.rank_method == "both" else (args.rank_method,)
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), float64, N = {args.n_inputs}, "
        f"OpenBLAS threads {args.blas_threads}, malloc_keep {args.malloc_keep}; "
        f"load average (1/5/15 min) before: {_load()}")
  per_method = "".join(f" {'ours_' + m:>12} {'rank_' + m:>12} {'ratio_' + m:>13}" for m in methods)
  header = (f"{'delta':>5} {'P':>4} {'rows':>5} {'rank':>4} {'compile_s':>9}{per_method} {'jac_s':>7} "
            f"{'jacfwd_s':>8} {'rowwise_jac_s':>13} {'ratio_jac':>9} {'max|dJ|':>8}")
  print(header)
  print("-" * len(header))
  with jax.enable_x64(True), ge.blas_threads(args.blas_threads):
    rank_fns = {m: jax.jit(functools.partial(ge.rank_stats, rank_method=m)) for m in methods}
    jac = jax.jit(ge.jacobian, static_argnames=("arch", "mode"))
    for delta in [int(d) for d in args.deltas.split(",")]:
      arch = gm.Arch((delta,) * 3, (2, 2), "softmax", 3)
      ours, compile_s, ranks = {}, {}, {}
      for m in methods:
        static = dict(arch=arch, n_inputs=args.n_inputs, trials=1, rank_method=m)
        program = jax.jit(jax.vmap(functools.partial(ge.estimate_run, **static)))
        keys, ones = key[None], jnp.ones((1,))
        run = lambda: program(keys, ones, ones, 1e6 * ones)
        c0 = time.perf_counter()
        est = jax.tree.map(lambda v: v[0], jax.block_until_ready(run()))
        first = time.perf_counter() - c0
        ours[m] = _time(run, args.repeats)
        compile_s[m] = first - ours[m]
        ranks[m] = int(est["rank_tol"])
      assert len(set(ranks.values())) == 1, ranks
      data = jax.jit(ge.draw, static_argnums=(1, 2))(key, arch, args.n_inputs)
      theta, X = data["theta"][0], data["X"][0]
      J = jax.block_until_ready(jac(theta, X, arch=arch, mode="rev"))
      J_fwd = jax.block_until_ready(jac(theta, X, arch=arch, mode="fwd"))
      ours_jac = _time(lambda: jac(theta, X, arch=arch, mode="rev"), args.repeats)
      fwd_jac = _time(lambda: jac(theta, X, arch=arch, mode="fwd"), args.repeats)
      rank_s = {}
      for m, fn in rank_fns.items():
        fn(J)
        rank_s[m] = _time(lambda: fn(J), args.repeats)
      # one forward pass with stored residuals (not timed: it is one call), then
      # compile the per-row program on 2 rows, then time the rows.
      y, pullback = jax.vjp(jax.jit(lambda th: ge.flat_forward(th, X, arch)), theta)
      jax.block_until_ready(rowwise_jacobian(y, pullback, n_rows=2))
      n_rows = J.shape[0]
      k = n_rows if args.rowwise_rows <= 0 else min(args.rowwise_rows, n_rows)
      J_rows = None
      per_k = []
      for _ in range(args.rowwise_repeats):
        t0 = time.perf_counter()
        J_rows = jax.block_until_ready(rowwise_jacobian(y, pullback, n_rows=k))
        per_k.append(time.perf_counter() - t0)
      rowwise_jac = min(per_k) * n_rows / k  # per-row cost is constant: one program
      dj = max(float(jnp.max(jnp.abs(J_rows - J[:k]))), float(jnp.max(jnp.abs(J_fwd - J))))
      # The baseline's rank step is the same program as ours, on its own J (when
      # only k rows were built, the full J stands in for the rest).
      cols = ""
      for m, fn in rank_fns.items():
        r = jax.block_until_ready(fn(J_rows if k == n_rows else J))
        assert int(r["rank_tol"]) == ranks[m]
        cols += f" {ours[m]:>12.3f} {rank_s[m]:>12.3f} {(rowwise_jac + rank_s[m]) / ours[m]:>13.1f}"
      print(f"{delta:>5} {arch.num_params:>4} {n_rows:>5} {ranks[methods[0]]:>4} {compile_s[methods[0]]:>9.2f}{cols} "
            f"{ours_jac:>7.3f} {fwd_jac:>8.3f} {rowwise_jac:>13.2f} {rowwise_jac / ours_jac:>9.1f} {dj:>8.1e}",
            flush=True)
  print(f"load average after: {_load()}")


if __name__ == "__main__":
  main()
