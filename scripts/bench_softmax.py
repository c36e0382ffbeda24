"""Benchmark of softmax_precond (spec AC-11).

1. Population objective, d = 32: 1000 SA-PrecGD steps (spectral init,
   eta = 0.5, delta = lam = 0, renormalisation) in one ``jit`` + ``lax.scan``,
   ``vmap``ped over 5 seeds x 3 kappa (15 runs), float64, through the E2
   experiment's own init/step functions; against a NumPy loop of the same
   updates (closed-form gradients, Cholesky solves, renormalisation).
2. "self" context mode, n = 4096, d = k = 16: SA-PrecGD steps on the softmax
   empirical loss (float32, chunked queries), one run. On CPU only a few
   steps are timed and the 200-step time is extrapolated (marked "~").

Usage:
  python scripts/bench_softmax.py [--self_steps=5] [--skip_numpy]

Prints a table of times (after compilation) and ratios. Target (AC-11):
< 1 s for the population run on CPU; < 10 s for 200 self-mode steps on a GPU.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg as sla

from attnlab.core import prng
from attnlab.softmax_precond import model, optim as opt_lib, population


def _pop_cfg(d: int):
  import importlib.util
  import pathlib
  spec = importlib.util.spec_from_file_location(
      "softmax_population", pathlib.Path(__file__).resolve().parents[1] / "configs" / "softmax_population.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config()
  cfg.d = d
  cfg.method = "sa_precgd"
  return cfg


def bench_population(d=32, steps=1000, kappas=(10.0, 100.0, 1000.0), seeds=5, numpy=True):
  with jax.enable_x64(True):
    cfg = _pop_cfg(d)
    exp = population.make_population(cfg)
    rows = [(kap, s) for kap in kappas for s in range(seeds)]
    keys = jnp.stack([prng.run_key(0, s) for _, s in rows])
    hp = {name: jnp.asarray([float(kap) if name == "kappa" else float(cfg[name]) for kap, _ in rows])
          for name in exp.hparams}

    def one(key, h):
      data = exp.make_data(prng.stream(key, prng.DATA), h)
      state = exp.init(key, h, data)
      state, ms = jax.lax.scan(lambda s, _: exp.step(s, h, data), state, None, length=steps)
      return ms["rel_loss"][-1], state["params"], data

    run = jax.jit(jax.vmap(one))
    t = time.perf_counter()
    jax.block_until_ready(run(keys, hp))
    compile_s = time.perf_counter() - t
    print(f"  (population: first call incl. compile {compile_s:.1f} s)", flush=True)
    t = time.perf_counter()
    rel, params, data = jax.block_until_ready(run(keys, hp))
    jax_s = time.perf_counter() - t

    # NumPy: the same updates from the same initial points, run by run
    init = jax.jit(jax.vmap(lambda k, h: exp.init(k, h, exp.make_data(prng.stream(k, prng.DATA), h))["params"]))
    p0 = jax.device_get(init(keys, hp))
    data = jax.device_get(data)
    np_s, np_rel = None, None
    if numpy:
      t = time.perf_counter()
      np_rel = []
      for i in range(len(rows)):
        S, Sh, M = data["Sigma"][i], data["Sigma_half"][i], data["M"][i]
        A, B = p0["A"][i].copy(), p0["B"][i].copy()
        cS = sla.cho_factor(S)
        for _ in range(steps):
          E = A @ S @ B.T - M
          gA, gB = E @ S @ B @ S, S @ E.T @ A @ S
          rA = sla.cho_solve(cS, gA.T).T  # gA S^-1
          rA = sla.cho_solve(sla.cho_factor(B.T @ S @ B), rA.T).T
          A_new = A - 0.5 * sla.cho_solve(cS, rA.T).T
          rB = sla.cho_solve(cS, sla.cho_solve(cS, gB).T).T  # S^-1 gB S^-1
          rB = sla.cho_solve(sla.cho_factor(A.T @ A), rB.T).T
          B = B - 0.5 * sla.cho_solve(cS, rB.T).T
          A = A_new
          c = np.linalg.norm(Sh @ B @ Sh, 2) / cfg.beta
          A, B = A * c, B / c
        R = A @ S @ B.T @ Sh - M @ Sh
        np_rel.append(np.sum(R * R) / np.sum((M @ Sh) ** 2))
      np_s = time.perf_counter() - t
    return dict(compile_s=compile_s, jax_s=jax_s, numpy_s=np_s, rel_max=float(np.max(rel)),
                numpy_rel_max=None if np_rel is None else float(np.max(np_rel)), runs=len(rows))


def bench_self(n=4096, d=16, steps=5, total=200, chunk=256):
  key = jax.random.PRNGKey(0)
  ks, km, kx = jax.random.split(key, 3)
  Sigma = model.make_sigma(ks, d, 1.0, 4.0)
  Sh, _ = model.sqrtm_psd(Sigma)
  M = model.make_target(km, d, d, 10.0)
  X, Y = model.sample_regression(kx, Sh, M, 0.1, n)
  S_hat, C_hat = model.empirical_moments(X, Y)
  S_half, S_half_inv = model.sqrtm_psd(S_hat)
  U0, V0 = opt_lib.spectral_factors(model.mm(C_hat, S_half_inv), d)
  params = opt_lib.renormalize_params(model.from_whitened(U0, V0, S_half_inv), S_half, 0.3)
  tx = opt_lib.sa_precgd(0.2, S_hat, S_half, delta=1e-3, reg="none", renorm="spectral_to_beta", beta=0.3)

  @jax.jit
  def train(p):
    def body(c, _):
      p, s = c
      loss, g = jax.value_and_grad(model.empirical_loss)(p, X, Y, chunk=chunk)
      u, s = tx.update(g, s, p)
      return (jax.tree.map(lambda a, b: a + b, p, u), s), loss
    (p, _), losses = jax.lax.scan(body, (p, tx.init(p)), None, length=steps)
    return p, losses

  t = time.perf_counter()
  jax.block_until_ready(train(params))
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  _, losses = jax.block_until_ready(train(params))
  run_s = time.perf_counter() - t
  return dict(compile_s=compile_s, steps=steps, run_s=run_s, per_step=run_s / steps,
              est_total=run_s / steps * total, total=total, loss0=float(losses[0]), loss_end=float(losses[-1]))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--self_steps", type=int, default=5)
  ap.add_argument("--skip_numpy", action="store_true")
  args = ap.parse_args()
  dev = jax.devices()[0]
  print(f"device: {dev.platform} ({dev.device_kind}), jax {jax.__version__}")
  print()
  print("| benchmark | compile (s) | time after compile (s) | NumPy loop (s) | speed-up | check |", flush=True)
  print("|---|---|---|---|---|---|", flush=True)
  pop = bench_population(numpy=not args.skip_numpy)
  on_gpu = dev.platform == "gpu"
  npt = f"{pop['numpy_s']:.2f}" if pop["numpy_s"] else "skipped"
  ratio = f"{pop['numpy_s'] / pop['jax_s']:.0f}x" if pop["numpy_s"] else "-"
  print(f"| population d=32, 1000 SA-PrecGD steps x {pop['runs']} runs (5 seeds x 3 kappa), f64 "
        f"| {pop['compile_s']:.2f} | {pop['jax_s']:.3f} | {npt} | {ratio} "
        f"| max final rel loss {pop['rel_max']:.1e} (NumPy {pop['numpy_rel_max'] if pop['numpy_rel_max'] is None else format(pop['numpy_rel_max'], '.1e')}) |",
        flush=True)
  sm = bench_self(steps=200 if on_gpu else args.self_steps)
  est = "" if sm["steps"] == sm["total"] else "~"
  print(f"| self mode n=4096, d=16, {sm['total']} SA-PrecGD steps, f32, 1 run "
        f"| {sm['compile_s']:.2f} | {est}{sm['est_total']:.1f} ({sm['per_step']:.3f}/step, {sm['steps']} timed) "
        f"| - | - | loss {sm['loss0']:.4f} -> {sm['loss_end']:.4f} |")


if __name__ == "__main__":
  main()
