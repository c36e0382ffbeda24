"""Spec checks E16-E17 (diffrax agreement, gradients) and F18 (compile time flat in L),
plus ``integrate`` semantics (stacked controls, substeps, trajectory, remat). float64."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.river import diffrax_backend as DB
from attnlab.river import fields as F
from attnlab.river import integrators as I
from attnlab.river import params as P


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _setup(seed=0):
  rng = np.random.default_rng(seed)
  return P.init_block(rng, 8, 1, 16, act="gelu"), jnp.asarray(rng.normal(size=(6, 8)))


def _rk4(u0, theta, L):
  return I.integrate(lambda u, th, h: I.rk4_step(F.preln_field, u, th, h), u0, theta, 1.0 / L, L)[0]


def test_e16_diffrax_adaptive_agrees_with_rk4():
  theta, u0 = _setup()

  @jax.jit
  def solves(u0, theta):
    ref = _rk4(u0, theta, 1024)
    t5, n5 = DB.solve(F.preln_field, u0, theta, 1.0, solver="tsit5", rtol=1e-10, atol=1e-10)
    d8, n8 = DB.solve(F.preln_field, u0, theta, 1.0, solver="dopri8", rtol=1e-12, atol=1e-12)
    return jnp.max(jnp.abs(t5 - ref)), jnp.max(jnp.abs(d8 - ref)), n5, n8

  e5, e8, n5, n8 = map(np.asarray, solves(u0, theta))
  print(f"E16: tsit5 err {e5:.2e} ({n5} steps), dopri8 err {e8:.2e} ({n8} steps)")
  assert e5 <= 1e-9 and e8 <= 1e-12
  assert 0 < n8 < n5


def test_e17_scan_gradient_matches_central_differences():
  """jax.grad through the lax.scan RK4 vs central differences (step 1e-6) along 3 random
  directions in parameter space. The diffrax adjoint comparisons (RecursiveCheckpoint,
  Backsolve) run in configs/river_solvers.py (too costly to compile here)."""
  theta, u0 = _setup(1)
  leaves, tdef = jax.tree.flatten(theta)
  rng = np.random.default_rng(5)
  dirs = [jax.tree.unflatten(tdef, [jnp.asarray(rng.normal(size=np.shape(x))) for x in leaves])
          for _ in range(3)]
  loss_scan = lambda th: jnp.sum(_rk4(u0, th, 64) ** 2)
  dot = lambda a, b: sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  eps = 1e-6
  plus_minus = jax.tree.map(lambda x, *vs: jnp.stack([x + sg * eps * v for v in vs for sg in (1, -1)]),
                            theta, *dirs)

  @jax.jit
  def grads(theta, plus_minus):
    g = jax.grad(loss_scan)(theta)
    vals = jax.vmap(loss_scan)(plus_minus).reshape(len(dirs), 2)
    return (vals[:, 0] - vals[:, 1]) / (2 * eps), jnp.stack([dot(g, v) for v in dirs])

  fd, ad = map(np.asarray, grads(theta, plus_minus))
  print(f"E17: fd rel {np.max(np.abs(fd - ad) / np.abs(ad)):.1e}")
  assert np.max(np.abs(fd - ad) / np.abs(ad)) <= 1e-6


def test_f18_compiled_program_does_not_grow_with_L():
  """F18, checked structurally: depth is a scan trip count, not unrolled code.

  Compile *time* is a benchmark quantity (timer noise on a shared CI machine
  made a timed assertion flaky); the property behind it is that the optimized
  program for L = 1024 is the same size as for L = 8 and keeps one while loop.
  """
  theta, u0 = _setup()

  def optimized_hlo(L):
    f = jax.jit(lambda u, th: I.integrate(I.paper_step, u, th, 1.0 / L, L)[0])
    return f.lower(u0, theta).compile().as_text()

  def instruction_count(hlo):
    return len(re.findall(r"^\s+\S+ = ", hlo, re.M))

  h8, h1024 = optimized_hlo(8), optimized_hlo(1024)
  n8, n1024 = instruction_count(h8), instruction_count(h1024)
  print(f"F18: optimized HLO instructions L=8 {n8}, L=1024 {n1024}")
  assert h1024.count(" while(") >= 1
  # A handful of instructions differ (trip-count constants); unrolling even
  # two layers would add a full step body (338 instructions for one step).
  assert n1024 <= n8 + 20


def test_integrate_stacked_substeps_trajectory_remat():
  rng = np.random.default_rng(3)
  thetas = P.stack([P.init_block(rng, 8, 1, 8, act="tanh") for _ in range(3)])
  u0 = jnp.asarray(rng.normal(size=(5, 8)))
  euler = lambda u, th, h: I.euler_step(F.preln_field, u, th, h)

  @jax.jit
  def run(u0, thetas):
    uT, traj = I.integrate(euler, u0, thetas, 1.0, substeps=4, save=True)
    # reference: every layer's control repeated 4 times, one step of h/4 each
    rep = jax.tree.map(lambda x: jnp.repeat(x, 4, axis=0), thetas)
    ref, _ = I.integrate(euler, u0, rep, 0.25)
    remat, _ = I.integrate(euler, u0, thetas, 1.0, substeps=4, remat=True)
    return uT, traj, ref, remat

  uT, traj, ref, remat = run(u0, thetas)
  assert traj.shape == (3, 5, 8)
  assert np.max(np.abs(np.asarray(traj[-1] - uT))) == 0
  assert np.max(np.abs(np.asarray(uT - ref))) <= 1e-13
  assert np.max(np.abs(np.asarray(remat - uT))) <= 1e-13
