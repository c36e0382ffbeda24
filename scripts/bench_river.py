"""Benchmark of attnlab.river integrators (spec §9 F18-F20).

Setting (spec): float64, n = 16 tokens, d = 64, d_ff = 256, H = 4, RK4 on the
R-pre field (GELU), L = 256 steps of h = 1/L, shared weights.

Prints a table with:
  * run time after compile (median of ``--repeats``) and the compile time of
    ``integrate`` against L (8, 64, 256, 1024), with the persistent
    compilation cache disabled;
  * a vmapped batch of 64 initial conditions against a Python loop calling the
    compiled single-trajectory program 64 times;
  * a pure NumPy RK4 of the same field (float64), and the ratio;
  * with ``--gpu`` (or when a GPU is the default backend): float32 with
    HIGHEST matmul precision, n = 256, d = 256, H = 8, batch 64, L = 128.

Usage:
  python scripts/bench_river.py            # CPU table (about 1-2 minutes on 2 cores)
  python scripts/bench_river.py --quick    # L = 64 and fewer repeats
"""
from __future__ import annotations

import argparse
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
  ts = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    ts.append(time.perf_counter() - t)
  return statistics.median(ts)


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

  # compile time against L (fresh jit each time; cache disabled)
  compile_t = {}
  for Lc in (8, 64, 256, 1024):
    f = jax.jit(rk4_program(Lc))
    t = time.perf_counter()
    f.lower(u0, theta).compile()
    compile_t[Lc] = time.perf_counter() - t
  for Lc, t in compile_t.items():
    rows.append((f"compile integrate(RK4), L={Lc}", f"{t:.3f} s", f"{t / compile_t[8]:.2f}x of L=8"))

  single = jax.jit(rk4_program(L))
  single(u0, theta).block_until_ready()
  t1 = _timeit(lambda: single(u0, theta), repeats)
  flops = 4 * L * (H * (3 * 2 * n * d * (d // H) + 2 * 2 * n * n * (d // H) + 2 * n * (d // H) * d)
                   + 2 * 2 * n * d * dff)
  rows.append((f"RK4 L={L}, 1 trajectory (after compile)", f"{t1 * 1e3:.1f} ms",
               f"{flops / t1 / 1e9:.2f} GFLOP/s ({flops / 1e9:.2f} GFLOP)"))

  batched = jax.jit(jax.vmap(rk4_program(L), in_axes=(0, None)))
  batched(U0, theta).block_until_ready()
  tb = _timeit(lambda: batched(U0, theta), max(1, repeats // 2))
  rows.append((f"vmapped batch of {B} initial conditions", f"{tb * 1e3:.1f} ms",
               f"{tb / B * 1e3:.2f} ms / trajectory"))
  tl = _timeit(lambda: [single(U0[i], theta) for i in range(B)], 1)
  rows.append((f"Python loop over {B} (compiled single)", f"{tl * 1e3:.1f} ms",
               f"vmap speed-up {tl / tb:.2f}x"))

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
      tg = _timeit(lambda: g(U32, th32), 3)
    fl = B * 4 * L2 * (H2 * (3 * 2 * n2 * d2 * (d2 // H2) + 2 * 2 * n2 * n2 * (d2 // H2)
                             + 2 * n2 * (d2 // H2) * d2) + 2 * 2 * n2 * d2 * 4 * d2)
    rows.append((f"{jax.devices()[0].device_kind}: f32 HIGHEST, n={n2}, d={d2}, H={H2}, B={B}, L={L2}",
                 f"{tg * 1e3:.1f} ms", f"{fl / tg / 1e12:.2f} TFLOP/s"))

  w = max(len(r[0]) for r in rows)
  print(f"attnlab.river benchmark  (jax {jax.__version__}, {jax.devices()[0].platform}, "
        f"f64, n={n}, d={d}, d_ff={dff}, H={H})")
  print(f"{'case':<{w}}  {'time':>12}  note")
  print("-" * (w + 50))
  for a, b, c in rows:
    print(f"{a:<{w}}  {b:>12}  {c}")


if __name__ == "__main__":
  main()
