"""Solvers and gradients (spec §6d, §7.6-7.7, checks E16-E17), float64.

On the R-pre GELU field (Appendix A.1 sizes, shared weights, T = 1):

* E16: diffrax Tsit5 (rtol = atol = 1e-10) and Dopri8 (1e-12) against the
  ``lax.scan`` RK4 at L = ``L_ref`` (1024), with the accepted step counts.
* E17: gradients of ||u_T||^2 with respect to every parameter: the scan RK4
  gradient against central differences (step ``fd_step``, 3 random
  directions); diffrax ``RecursiveCheckpointAdjoint`` (Dopri5, 1e-10) and
  ``BacksolveAdjoint`` against the scan RK4 gradient at L_ref.
* P15: a stacked (``layers`` distinct per-layer controls, piecewise constant)
  river solved by diffrax with and without ``jump_ts`` at the layer
  boundaries, against the scan RK4 with ``substeps`` per layer.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core import prng
from attnlab.engine.config import check, check_positive
from attnlab.engine.experiment import OneShot
from attnlab.river import diffrax_backend as DB
from attnlab.river import fields as F
from attnlab.river import integrators as I
from attnlab.river.params import init_block, stack


def experiment(cfg) -> OneShot:
  check_positive(cfg, "d", "n_tokens", "d_ff", "L_ref", "layers", "substeps")
  check(cfg.T > 0, "T", f"must be > 0, got {cfg.T}")
  check(cfg.fd_step > 0, "fd_step", f"must be > 0, got {cfg.fd_step}")

  def compute(key, hp, data):
    key = jnp.asarray(key)
    rng = np.random.default_rng(np.asarray(key).astype(np.int64).tolist())
    theta = init_block(rng, cfg.d, 1, cfg.d_ff, act=cfg.act)
    u0 = jnp.asarray(rng.normal(size=(cfg.n_tokens, cfg.d)))
    T, Lr = float(cfg.T), int(cfg.L_ref)
    rk4 = lambda u, th, h: I.rk4_step(F.preln_field, u, th, h)
    scan = lambda th, L: I.integrate(rk4, u0, th, T / L, L)[0]

    @jax.jit
    def e16(theta):
      ref = scan(theta, Lr)
      t5, n5 = DB.solve(F.preln_field, u0, theta, T, solver="tsit5", rtol=1e-10, atol=1e-10)
      d8, n8 = DB.solve(F.preln_field, u0, theta, T, solver="dopri8", rtol=1e-12, atol=1e-12)
      return jnp.max(jnp.abs(t5 - ref)), n5, jnp.max(jnp.abs(d8 - ref)), n8

    t5, n5, d8, n8 = map(np.asarray, e16(theta))
    leaves, tdef = jax.tree.flatten(theta)
    dirs = [jax.tree.unflatten(tdef, [jnp.asarray(rng.normal(size=np.shape(x))) for x in leaves])
            for _ in range(3)]
    loss = lambda th: jnp.sum(scan(th, Lr) ** 2)
    eps = float(cfg.fd_step)

    @jax.jit
    def e17(theta):
      g = jax.grad(loss)(theta)
      fd = jnp.stack([(loss(jax.tree.map(lambda x, v: x + eps * v, theta, d)) -
                       loss(jax.tree.map(lambda x, v: x - eps * v, theta, d))) / (2 * eps) for d in dirs])
      ad = jnp.stack([sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(d)))
                      for d in dirs])
      flat = lambda t: jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)])
      out = {"fd_rel_err": jnp.max(jnp.abs(fd - ad) / jnp.abs(ad))}
      for adj in ("recursive", "backsolve"):
        ld = lambda th: jnp.sum(DB.solve(F.preln_field, u0, th, T, solver="dopri5", rtol=1e-10,
                                         atol=1e-10, adjoint=adj, max_steps=4096)[0] ** 2)
        ga = jax.grad(ld)(theta)
        out[f"{adj}_rel_err"] = jnp.linalg.norm(flat(ga) - flat(g)) / jnp.linalg.norm(flat(g))
      return out

    grads = {k: float(v) for k, v in e17(theta).items()}
    thetas = stack([init_block(rng, cfg.d, 1, cfg.d_ff, act=cfg.act) for _ in range(cfg.layers)])

    @jax.jit
    def p15(thetas):
      ref, _ = I.integrate(rk4, u0, thetas, 1.0, substeps=cfg.substeps)
      out = {}
      for jumps in (True, False):
        if jumps:
          y, n = DB.solve(F.preln_field, u0, thetas, float(cfg.layers), stacked=True, solver="tsit5",
                          rtol=1e-10, atol=1e-10)
        else:  # same stacked controls, but no jump_ts: steps straddle the boundaries
          f = F.as_diffrax(F.preln_field, lambda th, t: DB.theta_at(th, t))
          import diffrax
          sol = diffrax.diffeqsolve(diffrax.ODETerm(f), diffrax.Tsit5(), 0.0, float(cfg.layers), None,
                                    u0, thetas, stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10),
                                    max_steps=100_000)
          y, n = sol.ys[0], sol.stats["num_accepted_steps"]
        tag = "with_jump_ts" if jumps else "without_jump_ts"
        out[f"{tag}_err"] = jnp.max(jnp.abs(y - ref))
        out[f"{tag}_steps"] = n
      return out

    layers = {k: float(v) for k, v in p15(thetas).items()}
    return {"e16": {"tsit5_err": float(t5), "tsit5_steps": int(n5), "dopri8_err": float(d8),
                    "dopri8_steps": int(n8)},
            "e17": grads, "p15": layers}

  def summarize(cfg_, runs):
    f = runs[0]["final"]
    e16, e17 = f["e16"], f["e17"]
    return {"e16": e16, "e17": e17, "p15_layer_boundaries": f["p15"],
            "pass": {"tsit5_le_1e-9": e16["tsit5_err"] <= 1e-9, "dopri8_le_1e-12": e16["dopri8_err"] <= 1e-12,
                     "fd_le_1e-6": e17["fd_rel_err"] <= 1e-6, "recursive_le_1e-7": e17["recursive_rel_err"] <= 1e-7,
                     "backsolve_le_1e-5": e17["backsolve_rel_err"] <= 1e-5}}

  return OneShot(compute=compute, jit=False, x64=True, summarize=summarize)
