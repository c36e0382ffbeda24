"""Spec checks E16-E17 (diffrax agreement, gradients) and F18 (compile time flat in L),
plus ``integrate`` semantics (stacked controls, substeps, trajectory, remat). float64."""
import time

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


def test_e17_gradients_fd_and_adjoints():
  theta, u0 = _setup(1)
  leaves, tdef = jax.tree.flatten(theta)
  rng = np.random.default_rng(5)
  dirs = [jax.tree.unflatten(tdef, [jnp.asarray(rng.normal(size=np.shape(x))) for x in leaves])
          for _ in range(3)]
  loss_scan = lambda th, L: jnp.sum(_rk4(u0, th, L) ** 2)
  dot = lambda a, b: sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  axpy = lambda a, x, y: jax.tree.map(lambda p, q: p + a * q, x, y)

  @jax.jit
  def grads(theta):
    g32 = jax.grad(loss_scan)(theta, 32)
    eps = 1e-6
    fd = jnp.stack([(loss_scan(axpy(eps, theta, v), 32) - loss_scan(axpy(-eps, theta, v), 32)) / (2 * eps)
                    for v in dirs])
    ad = jnp.stack([dot(g32, v) for v in dirs])
    g_ref = jax.grad(loss_scan)(theta, 1024)
    loss_dfx = lambda th, adj: jnp.sum(DB.solve(F.preln_field, u0, th, 1.0, solver="dopri5", rtol=1e-10,
                                                atol=1e-10, adjoint=adj, max_steps=4096)[0] ** 2)
    g_rec = jax.grad(loss_dfx)(theta, "recursive")
    g_bs = jax.grad(loss_dfx)(theta, "backsolve")
    flat = lambda g: jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)])
    rel = lambda a, b: jnp.linalg.norm(flat(a) - flat(b)) / jnp.linalg.norm(flat(b))
    return fd, ad, rel(g_rec, g_ref), rel(g_bs, g_ref)

  fd, ad, rec, bs = map(np.asarray, grads(theta))
  print(f"E17: fd rel {np.max(np.abs(fd - ad) / np.abs(ad)):.1e}, recursive {rec:.1e}, backsolve {bs:.1e}")
  assert np.max(np.abs(fd - ad) / np.abs(ad)) <= 1e-6
  assert rec <= 1e-7
  assert bs <= 1e-5


def test_f18_compile_time_does_not_grow_with_L():
  theta, u0 = _setup()
  prev = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  try:
    def compile_time(L):
      f = jax.jit(lambda u, th: I.integrate(I.paper_step, u, th, 1.0 / L, L)[0])
      t = time.perf_counter()
      f.lower(u0, theta).compile()
      return time.perf_counter() - t
    t8, t1024 = compile_time(8), compile_time(1024)
  finally:
    jax.config.update("jax_enable_compilation_cache", prev)
  print(f"F18: compile L=8 {t8:.2f}s, L=1024 {t1024:.2f}s")
  assert t1024 <= 1.5 * t8 + 0.05  # 50 ms slack for timer noise on a shared machine


def test_integrate_stacked_substeps_trajectory_remat():
  rng = np.random.default_rng(3)
  thetas = P.stack([P.init_block(rng, 8, 2, 8, act="tanh") for _ in range(3)])
  u0 = jnp.asarray(rng.normal(size=(5, 8)))
  euler = lambda u, th, h: I.euler_step(F.preln_field, u, th, h)

  @jax.jit
  def run(u0, thetas):
    uT, traj = I.integrate(euler, u0, thetas, 1.0, substeps=4, save=True)
    manual = u0
    for i in range(3):  # reference: per layer, 4 explicit Euler steps of h/4
      th = P.layer(thetas, i)
      for _ in range(4):
        manual = manual + 0.25 * F.preln_field(manual, th)
    g = jax.grad(lambda t: jnp.sum(I.integrate(euler, u0, t, 1.0, substeps=4)[0] ** 2))(thetas)
    g_r = jax.grad(lambda t: jnp.sum(I.integrate(euler, u0, t, 1.0, substeps=4, remat=True)[0] ** 2))(thetas)
    # the pre-LN stack (h = 1, one step per layer) is the residual network
    stack1, _ = I.integrate(I.preln_step, u0, thetas, 1.0)
    resid = u0
    for i in range(3):
      th = P.layer(thetas, i)
      resid = resid + F.attn_pre(resid, th)
      resid = resid + F.ffn_pre(resid, th)
    return uT, traj, manual, g, g_r, stack1, resid

  uT, traj, manual, g, g_r, stack1, resid = run(u0, thetas)
  assert traj.shape == (3, 5, 8)
  assert np.max(np.abs(np.asarray(traj[-1] - uT))) == 0
  assert np.max(np.abs(np.asarray(uT - manual))) <= 1e-13
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_r)):
    assert np.max(np.abs(np.asarray(a - b))) <= 1e-12
  assert np.max(np.abs(np.asarray(stack1 - resid))) <= 1e-13
