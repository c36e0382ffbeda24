"""Benchmark (spec check G2): R seeds of the superposition trainer in one jit(vmap) vs a Python loop.

Both variants train ``tied_relu`` (N features, K latent, batch B, SGD, fresh
sparse batches drawn inside the scan) for ``--steps`` steps:

* ``vmap``: one ``jit(vmap(scan))`` program over R seeds, called once;
* ``loop``: one single-seed ``jit(scan)`` program, called R times from Python.

Compilation is done (and timed) separately before the timed calls, so the
table compares steady-state throughput. The ratio does not depend on the number
of steps once compiled; use ``--steps`` to keep the run short on a shared CPU.

  python scripts/bench_superposition.py                       # spec sizes: N=1024, K=256, B=1024, 2000 steps
  python scripts/bench_superposition.py --steps=20            # same shapes, 20 steps (what we ran on CPU)
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

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
  spec = train.Spec(n=args.n, k=args.k, batch=args.batch, student="tied_relu")
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
  t0 = time.perf_counter()
  single_c = single.lower(keys[0], hp1).compile()
  t_c1 = time.perf_counter() - t0
  t0 = time.perf_counter()
  batched_c = batched.lower(keys, hpR).compile()
  t_cR = time.perf_counter() - t0

  loop_t, vmap_t = [], []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    outs = [single_c(keys[i], hp1) for i in range(R)]
    jax.block_until_ready(outs)
    loop_t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    out = batched_c(keys, hpR)
    jax.block_until_ready(out)
    vmap_t.append(time.perf_counter() - t0)
  same = np.allclose(np.stack([np.asarray(o) for o in outs]), np.asarray(out), rtol=1e-4, atol=1e-6)
  lt, vt = min(loop_t), min(vmap_t)
  dev = jax.devices()[0]
  print(f"superposition trainer, tied_relu N={args.n} K={args.k} B={args.batch}, {args.steps} steps, "
        f"{R} seeds, device={dev.platform} ({dev.device_kind})")
  print("| variant | compile (s) | run (s) | ms / step / seed | speed-up |")
  print("|---|---|---|---|---|")
  print(f"| Python loop of {R} single-seed jits | {t_c1:.1f} | {lt:.2f} | {1e3 * lt / args.steps / R:.2f} | 1.00x |")
  print(f"| one jit(vmap) over {R} seeds | {t_cR:.1f} | {vt:.2f} | {1e3 * vt / args.steps / R:.2f} | "
        f"{lt / vt:.2f}x |")
  print(f"curves identical (rtol 1e-4): {same}")


if __name__ == "__main__":
  main()
