"""Benchmark (spec check G2): R seeds of the superposition trainer in one jit(vmap) vs a Python loop.

Both variants train ``tied_relu`` (N features, K latent, batch B, SGD, fresh
sparse batches drawn inside the scan) for ``--steps`` steps:

* ``vmap``: one ``jit(vmap(scan))`` program over R seeds, called once;
* ``loop``: one single-seed ``jit(scan)`` program, called R times from Python;
* ``map``: one ``jit(lax.map(scan))`` program over R seeds, called once: the
  seeds run one after the other inside one program, which is what the engine
  does with ``--config.lanes=1`` (not a vmap, so not G2's variant; shown
  because on a compute-bound CPU it is the fastest way to run many seeds).

Compilation is done (and timed) separately before the timed calls, so the
table compares steady-state throughput. The ratio does not depend on the number
of steps once compiled; use ``--steps`` to keep the run short on a shared CPU.
Both variants run the same ``train.train_step`` (sparse event-list input layer,
dense ``B x K x N`` output layer), with the same keys, hence the same batches.

The GFLOP/s column counts the three dense ``B x K x N`` products of a step
(forward ``h W``, backward ``h^T dz`` and ``dz W^T``: ``6 B K N`` FLOPs); the
last line is the rate of one plain ``[B, K] x [K, N]`` f32 matmul on this
machine (a compute roofline): when the loop already runs near it, batching the
seeds cannot be much faster.

  python scripts/bench_superposition.py                       # spec sizes: N=1024, K=256, B=1024, 2000 steps
  python scripts/bench_superposition.py --steps=20            # same shapes, 20 steps (what we ran on CPU)
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.superposition import data as sdata
from attnlab.superposition import train


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--n", type=int, default=1024)
  ap.add_argument("--k", type=int, default=256)
  ap.add_argument("--batch", type=int, default=1024)
  ap.add_argument("--steps", type=int, default=2000)
  ap.add_argument("--seeds", type=int, default=16)
  ap.add_argument("--repeats", type=int, default=1)
  args = ap.parse_args()
  rate = sdata.total_rate(sdata.feature_probs_np(args.n, 1.2))   # as the experiment factories size the event list
  spec = train.Spec(n=args.n, k=args.k, batch=args.batch, student="tied_relu", rate_bound=rate)
  hp1 = {k: jnp.asarray(v, jnp.int32 if k == "bias_freeze_steps" else jnp.float32) for k, v in
         dict(lr=0.25, freq_exp=1.2, imp_exp=0.0, sigma0=1e-2, bias_init=0.0, bias_lr_scale=1.0,
              bias_freeze_steps=0, weight_decay=0.0).items()}
  R = args.seeds
  hpR = {k: jnp.broadcast_to(v, (R,)) for k, v in hp1.items()}
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(R))

  def run(key, hp):
    state = train.init_state(key, hp, spec)
    state, m = jax.lax.scan(lambda s, _: train.train_step(s, hp, spec), state, None, length=args.steps)
    return m["batch_loss"]

  single = jax.jit(run)
  batched = jax.jit(jax.vmap(run))
  mapped = jax.jit(lambda keys, hp: jax.lax.map(lambda a: run(*a), (keys, hp)))
  t0 = time.perf_counter()
  single_c = single.lower(keys[0], hp1).compile()
  t_c1 = time.perf_counter() - t0
  t0 = time.perf_counter()
  batched_c = batched.lower(keys, hpR).compile()
  t_cR = time.perf_counter() - t0
  t0 = time.perf_counter()
  mapped_c = mapped.lower(keys, hpR).compile()
  t_cM = time.perf_counter() - t0

  loop_t, vmap_t, map_t = [], [], []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    outs = [single_c(keys[i], hp1) for i in range(R)]
    jax.block_until_ready(outs)
    loop_t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    out = batched_c(keys, hpR)
    jax.block_until_ready(out)
    vmap_t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    out_map = mapped_c(keys, hpR)
    jax.block_until_ready(out_map)
    map_t.append(time.perf_counter() - t0)
  loop_curves, vmap_curves = np.stack([np.asarray(o) for o in outs]), np.asarray(out)
  same = np.allclose(loop_curves, vmap_curves, rtol=1e-4, atol=1e-6)
  max_rel = float(np.max(np.abs(loop_curves - vmap_curves) / np.maximum(np.abs(loop_curves), 1e-12)))
  map_same = bool(np.array_equal(loop_curves, np.asarray(out_map)))
  lt, vt, mt = min(loop_t), min(vmap_t), min(map_t)
  dev = jax.devices()[0]
  flops = 6.0 * args.batch * args.k * args.n * args.steps * R
  h = jnp.ones((args.batch, args.k), jnp.float32)
  W = jnp.ones((args.k, args.n), jnp.float32)
  mm = jax.jit(lambda h, W: h @ W)
  mm(h, W).block_until_ready()
  t0 = time.perf_counter()
  for _ in range(20):
    out_mm = mm(h, W)
  out_mm.block_until_ready()
  mm_rate = 20 * 2.0 * args.batch * args.k * args.n / (time.perf_counter() - t0) / 1e9
  print(f"superposition trainer, tied_relu N={args.n} K={args.k} B={args.batch}, {args.steps} steps, "
        f"{R} seeds, device={dev.platform} ({dev.device_kind})")
  print("| variant | compile (s) | run (s) | ms / step / seed | GFLOP/s | speed-up |")
  print("|---|---|---|---|---|---|")
  print(f"| Python loop of {R} single-seed jits | {t_c1:.1f} | {lt:.2f} | {1e3 * lt / args.steps / R:.2f} | "
        f"{flops / lt / 1e9:.1f} | 1.00x |")
  print(f"| one jit(vmap) over {R} seeds | {t_cR:.1f} | {vt:.2f} | {1e3 * vt / args.steps / R:.2f} | "
        f"{flops / vt / 1e9:.1f} | {lt / vt:.2f}x |")
  print(f"| one jit(lax.map) over {R} seeds (engine lanes=1) | {t_cM:.1f} | {mt:.2f} | "
        f"{1e3 * mt / args.steps / R:.2f} | {flops / mt / 1e9:.1f} | {lt / mt:.2f}x |")
  # float32: the batched and the single matmul kernels round differently, and
  # training amplifies the difference step by step.
  print(f"vmap curves equal to the loop's (rtol 1e-4): {same}; max relative difference {max_rel:.1e}; "
        f"lax.map curves bit-identical to the loop's: {map_same}")
  print(f"one [{args.batch},{args.k}]x[{args.k},{args.n}] f32 matmul: {mm_rate:.1f} GFLOP/s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
  main()
