"""Benchmark: attnlab's vmapped engine against per-run Python loops.

Quickstart-sized training (a single-head linear-attention teacher, d = 4,
n = 20 tokens, N = 2048 sequences; 4-head students, full-batch Adam, 200
steps) for R runs (R seeds, each with its own learning rate), timed as wall
clock *including compilation* (the persistent compilation cache is off):

* engine:     ``attnlab.engine.runner.run`` (one jit(vmap(scan)) program,
              logging, metrics to disk; no TensorBoard, no checkpoints);
* loop-jit:   a Python loop that jits and runs each run on its own, the
              hyperparameters baked in as constants (what a script that
              builds ``optax.adam(lr)`` per run does: every run compiles);
* loop-1jit:  a Python loop over one shared jitted run whose learning rate is
              a traced argument (compiles once; the strongest loop baseline).

  python scripts/bench_engine.py [--runs 8,32,128] [--steps 200]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attnlab.core import linear_attention as la
from attnlab.core import prng
from attnlab.engine import runner
from attnlab.engine.config import base_config

D, N_TOK, N, H = 4, 20, 2048, 4


def config(runs: int, steps: int):
  cfg = base_config("attnlab.quickstart:experiment", seeds=1, sweep={"lr": tuple(lr_grid(runs))}, steps=steps, log_every=steps // 4,
                    chunk_steps=steps, ckpt_every=0, d=D, d_out=D, n_tokens=N_TOK, n_train=N, heads=H,
                    lr=1e-2, teacher_init_std_scale=1.0, student_init_std=0.1)
  cfg.lock()
  return cfg


def lr_grid(runs: int) -> list[float]:
  return [float(x) for x in np.geomspace(1e-3, 1e-2, runs)]


def single_run(key, lr, steps):
  """The same computation as one engine run (data, init, Adam, final loss)."""
  from attnlab.quickstart import relative_mse
  kd = prng.stream(key, prng.DATA)
  k_teacher, k_z = jax.random.split(kd)
  V, Q = la.init_mhla(k_teacher, 1, D, D, std=1.0 / jnp.sqrt(D))
  Zs = jax.random.normal(k_z, (N, D, N_TOK)) / jnp.sqrt(N_TOK)
  ys = la.mhla_batch(V, Q, Zs, "last")
  G, z = jax.vmap(la.gram)(Zs), Zs[:, :, -1]
  params = la.init_mhla(prng.stream(key, prng.INIT), H, D, D, std=0.1)
  opt = optax.adam(lr)
  loss = lambda p: relative_mse(la.mhla_last_from_stats(*p, G, z), ys)

  def body(carry, _):
    p, s = carry
    g = jax.grad(loss)(p)
    u, s = opt.update(g, s, p)
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
  return loss(params)


def bench(runs: int, steps: int) -> dict:
  jax.clear_caches()
  lrs = lr_grid(runs)
  t = time.perf_counter()
  with tempfile.TemporaryDirectory() as wd:
    runner.run(config(runs, steps), wd, tb=False, quiet=True)
  t_engine = time.perf_counter() - t

  jax.clear_caches()
  t = time.perf_counter()
  for i in range(runs):
    key = prng.run_key(0, 0)
    lr = lrs[i]
    f = jax.jit(lambda k: single_run(k, lr, steps))  # a new program per run
    f(key).block_until_ready()
  t_loop = time.perf_counter() - t

  jax.clear_caches()
  t = time.perf_counter()
  shared = jax.jit(single_run, static_argnums=2)
  for i in range(runs):
    shared(prng.run_key(0, 0), jnp.float32(lrs[i]), steps).block_until_ready()
  t_loop1 = time.perf_counter() - t
  return {"runs": runs, "engine": t_engine, "loop_jit": t_loop, "loop_1jit": t_loop1}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--runs", default="8,32,128")
  ap.add_argument("--steps", type=int, default=200)
  args = ap.parse_args()
  jax.config.update("jax_enable_compilation_cache", False)
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, steps={args.steps}, "
        f"d={D}, n={N_TOK}, N={N}, H={H}; wall seconds incl. compilation")
  print(f"{'runs':>5} {'engine':>9} {'loop-jit':>10} {'ratio':>7} {'loop-1jit':>10} {'ratio':>7}")
  for r in [int(x) for x in args.runs.split(",")]:
    b = bench(r, args.steps)
    print(f"{r:>5} {b['engine']:>9.2f} {b['loop_jit']:>10.2f} {b['loop_jit'] / b['engine']:>6.1f}x "
          f"{b['loop_1jit']:>10.2f} {b['loop_1jit'] / b['engine']:>6.1f}x", flush=True)


if __name__ == "__main__":
  main()
