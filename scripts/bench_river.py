"""Benchmark of attnlab.river integrators (spec §9 F18-F20).

Setting (spec): float64, n = 16 tokens, d = 64, d_ff = 256, H = 4, RK4 on the
R-pre field (GELU), L = 256 steps of h = 1/L, shared weights.

Prints a table with:
  * the compile time of ``integrate`` against L (8, 64, 256, 1024) with the
    persistent compilation cache disabled: one discarded warm-up compile, then
    several interleaved rounds (order alternating), wall and process-CPU time,
    minimum and median per L and the ratios to L = 8 (spec F18: <= 1.5x), for
    the benchmark's RK4 program and for the F18 test's small ``paper_step``
    program; plus how many lines of the optimized HLO differ between L = 8 and
    L = 1024 (only the trip count and the h-dependent constants);
  * run time after compile (min of ``--repeats``);
  * a vmapped batch of 64 initial conditions against a Python loop calling the
    compiled single-trajectory program 64 times (same program, both compiled
    before timing, interleaved rounds; wall and CPU time);
  * a pure NumPy RK4 of the same field (float64), and the ratio;
  * with ``--gpu`` (or when a GPU is the default backend): float32 with
    HIGHEST matmul precision, n = 256, d = 256, H = 8, batch 64, L = 128.

Usage:
  python scripts/bench_river.py            # CPU table (about 3 minutes on 2 idle cores)
  python scripts/bench_river.py --quick    # L = 64 and fewer repeats
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_compilation_cache", False)

from attnlab.river import fields as F  # noqa: E402
from attnlab.river import integrators as I  # noqa: E402
from attnlab.river import params as P  # noqa: E402


def _timeit(fn, repeats):
  """(min wall, median wall, min process-CPU) seconds of ``fn()`` over ``repeats`` calls."""
  ts, cs = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    ts.append(time.perf_counter() - t)
    cs.append(time.process_time() - c)
  return min(ts), statistics.median(ts), min(cs)


COMPILE_LS = (8, 64, 256, 1024)


def compile_times(make, args, Ls, rounds):
  """Wall and process-CPU seconds of ``make(L).lower(*args).compile()`` per L.

  One warm-up compile (L = 16, discarded) absorbs the process's one-time
  costs (backend and LLVM initialisation); then ``rounds`` rounds over ``Ls``,
  forward and backward order alternately, so that load drifts on a shared
  machine hit every L alike. Also returns the number of optimized-HLO lines
  that differ between the smallest and the largest L.
  """
  make(16).lower(*args).compile()
  wall = {L: [] for L in Ls}
  cpu = {L: [] for L in Ls}
  texts = {}
  for r in range(rounds):
    for L in (Ls if r % 2 == 0 else Ls[::-1]):
      f = make(L)
      t, c = time.perf_counter(), time.process_time()
      compiled = f.lower(*args).compile()
      wall[L].append(time.perf_counter() - t)
      cpu[L].append(time.process_time() - c)
      texts[L] = compiled.as_text()
  a, b = texts[Ls[0]].splitlines(), texts[Ls[-1]].splitlines()
  sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
  diff = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal")
  return {"wall": wall, "cpu": cpu, "hlo_diff": diff, "hlo_lines": (len(a), len(b))}


def paper_program(L):
  return lambda u0, theta: I.integrate(I.paper_step, u0, theta, 1.0 / L, L)[0]


def rk4_program(L):
  step = lambda u, th, h: I.rk4_step(F.preln_field, u, th, h)
  return lambda u0, theta: I.integrate(step, u0, theta, 1.0 / L, L)[0]


def numpy_field(theta):
  """The same R-pre field in NumPy (tokens are rows)."""
  a, f = theta.attn, theta.ffn
  wq, wk, wv, wo = (np.asarray(x) for x in (a.wq, a.wk, a.wv, a.wo))
  scale = np.asarray(a.scale)
  w1, b1, w2, b2 = (np.asarray(x) for x in (f.w1, f.b1, f.w2, f.b2))

  def ln(u):
    c = u - u.mean(-1, keepdims=True)
    return c / np.sqrt((c * c).mean(-1, keepdims=True))

  def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))

  def field(u):
    v = ln(u)
    out = np.zeros_like(u)
    for m in range(wq.shape[0]):
      s = scale[m] * (v @ wq[m]) @ (v @ wk[m]).T
      s = np.exp(s - s.max(1, keepdims=True))
      s /= s.sum(1, keepdims=True)
      out += s @ (v @ wv[m]) @ wo[m]
    return out + gelu(v @ w1 + b1) @ w2 + b2

  return field


def numpy_rk4(field, u, L):
  h = 1.0 / L
  for _ in range(L):
    k1 = field(u); k2 = field(u + 0.5 * h * k1); k3 = field(u + 0.5 * h * k2); k4 = field(u + h * k3)
    u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
  return u


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--gpu", action="store_true")
  ap.add_argument("--compile_rounds", type=int, default=5)
  args = ap.parse_args()
  jax.config.update("jax_enable_x64", True)
  L = 64 if args.quick else 256
  repeats = 3 if args.quick else 5
  n, d, dff, H, B = 16, 64, 256, 4, 64
  rng = np.random.default_rng(0)
  theta = P.init_block(rng, d, H, dff, act="gelu")
  u0 = jnp.asarray(rng.normal(size=(n, d)))
  U0 = jnp.asarray(rng.normal(size=(B, n, d)))
  rows = []
  load0 = os.getloadavg()[0]

  # compile time against L: fresh jit each time, persistent cache disabled,
  # one discarded warm-up compile, then interleaved rounds (alternating order).
  ct = compile_times(lambda Lc: jax.jit(rk4_program(Lc)), (u0, theta), COMPILE_LS,
                     3 if args.quick else args.compile_rounds)
  small_theta = P.init_block(rng, 8, 1, 16, act="gelu")
  small_u0 = jnp.asarray(rng.normal(size=(6, 8)))
  ct_small = compile_times(lambda Lc: jax.jit(paper_program(Lc)), (small_u0, small_theta),
                           COMPILE_LS, 3 if args.quick else 2 * args.compile_rounds)
  for label, c in (("RK4 (bench size)", ct), ("paper_step, n=6, d=8 (the F18 test's program)", ct_small)):
    for Lc in COMPILE_LS:
      w, cpu = c["wall"][Lc], c["cpu"][Lc]
      note = (f"wall min/median {min(w):.3f}/{statistics.median(w):.3f} s, CPU min/median "
              f"{min(cpu):.3f}/{statistics.median(cpu):.3f} s, {len(w)} compiles")
      if Lc != COMPILE_LS[0]:
        w8 = c["wall"][COMPILE_LS[0]]
        note += (f"; L={Lc}/L={COMPILE_LS[0]}: min {min(w) / min(w8):.2f}x, median "
                 f"{statistics.median(w) / statistics.median(w8):.2f}x (F18: <= 1.5x)")
      rows.append((f"compile {label}, L={Lc}", f"{statistics.median(w):.3f} s", note))
    rows.append((f"optimized HLO {label}, L={COMPILE_LS[0]} vs L={COMPILE_LS[-1]}",
                 f"{c['hlo_lines'][0]} lines", f"{c['hlo_diff']} lines differ (trip count, h constants, renumbered names)"))

  single = jax.jit(rk4_program(L))
  single(u0, theta).block_until_ready()
  t1, t1med, c1 = _timeit(lambda: single(u0, theta), repeats)
  flops = 4 * L * (H * (3 * 2 * n * d * (d // H) + 2 * 2 * n * n * (d // H) + 2 * n * (d // H) * d)
                   + 2 * 2 * n * d * dff)
  rows.append((f"RK4 L={L}, 1 trajectory (after compile)", f"{t1 * 1e3:.1f} ms",
               f"min of {repeats} (median {t1med * 1e3:.1f} ms, CPU {c1 * 1e3:.1f} ms); "
               f"{flops / t1 / 1e9:.2f} GFLOP/s ({flops / 1e9:.2f} GFLOP); F19 target <= 1 s"))

  # vmap vs a Python loop: the same single-trajectory program (vmapped, resp.
  # jitted once and called B times), both compiled before timing, timed in
  # interleaved rounds. The vmapped HLO folds the batch into the token axis of
  # the Q/K/V/O and FFN matmuls (e.g. f64[B*n, d_ff] dots).
  batched = jax.jit(jax.vmap(rk4_program(L), in_axes=(0, None)))
  hlo = batched.lower(U0, theta).compile().as_text()
  folded = len(re.findall(rf"f64\[{B * n},{dff}\]\S* dot\(", hlo))
  outb = batched(U0, theta).block_until_ready()
  loop = lambda: [single(U0[i], theta) for i in range(B)]
  outl = jnp.stack(loop())
  tb, tl, cb, cl = [], [], [], []
  for _ in range(2 if args.quick else 3):
    x = _timeit(lambda: batched(U0, theta), 1); tb.append(x[0]); cb.append(x[2])
    x = _timeit(loop, 1); tl.append(x[0]); cl.append(x[2])
  rows.append((f"vmapped batch of {B} initial conditions", f"{min(tb) * 1e3:.1f} ms",
               f"{min(tb) / B * 1e3:.2f} ms / trajectory (CPU {min(cb) * 1e3:.0f} ms); "
               f"{folded} FFN dots of shape [{B * n},{dff}] (batch folded into the matmuls)"))
  rows.append((f"Python loop over {B} (compiled single)", f"{min(tl) * 1e3:.1f} ms",
               f"vmap speed-up {min(tl) / min(tb):.2f}x wall, {min(cl) / min(cb):.2f}x CPU; "
               f"max |vmap - loop| {float(jnp.max(jnp.abs(outb - outl))):.1e}"))

  fnp = numpy_field(theta)
  ref = np.asarray(single(u0, theta))
  t = time.perf_counter()
  out = numpy_rk4(fnp, np.asarray(u0), L)
  tn = time.perf_counter() - t
  rows.append((f"pure NumPy RK4, L={L}, 1 trajectory", f"{tn * 1e3:.1f} ms",
               f"JAX speed-up {tn / t1:.2f}x (max diff {np.max(np.abs(out - ref)):.1e})"))

  if args.gpu or jax.default_backend() == "gpu":
    jax.config.update("jax_enable_x64", False)
    n2, d2, H2, L2 = 256, 256, 8, 128
    th32 = P.init_block(rng, d2, H2, 4 * d2, act="gelu", dtype=jnp.float32)
    U32 = jnp.asarray(rng.normal(size=(B, n2, d2)), jnp.float32)
    with jax.default_matmul_precision("highest"):
      g = jax.jit(jax.vmap(rk4_program(L2), in_axes=(0, None)))
      g(U32, th32).block_until_ready()
      tg = _timeit(lambda: g(U32, th32), 3)[0]
    fl = B * 4 * L2 * (H2 * (3 * 2 * n2 * d2 * (d2 // H2) + 2 * 2 * n2 * n2 * (d2 // H2)
                             + 2 * n2 * (d2 // H2) * d2) + 2 * 2 * n2 * d2 * 4 * d2)
    rows.append((f"{jax.devices()[0].device_kind}: f32 HIGHEST, n={n2}, d={d2}, H={H2}, B={B}, L={L2}",
                 f"{tg * 1e3:.1f} ms", f"{fl / tg / 1e12:.2f} TFLOP/s"))

  w = max(len(r[0]) for r in rows)
  print(f"attnlab.river benchmark  (jax {jax.__version__}, {jax.devices()[0].platform}, "
        f"f64, n={n}, d={d}, d_ff={dff}, H={H}; load average at start/end "
        f"{load0:.1f}/{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
  print(f"{'case':<{w}}  {'time':>12}  note")
  print("-" * (w + 50))
  for a, b, c in rows:
    print(f"{a:<{w}}  {b:>12}  {c}")


if __name__ == "__main__":
  main()
