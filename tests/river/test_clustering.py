"""Spec checks D12-D14: equiangular SA/USA anchors, the identity-weight river = SA,
energy monotonicity. float64. Each block compiles one program, vmapped over
betas or seeds (the experiment's own ``compute``)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.core import prng
from attnlab.river import fields as F
from attnlab.river import integrators as I
from attnlab.river import metrics as M
from attnlab.river import params as P
from attnlab.river.experiments import clustering as C
from configs import river_clustering


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _run(cfg, betas, seeds=None):
  exp = C.experiment(cfg)
  seeds = np.zeros(len(betas), int) if seeds is None else np.asarray(seeds)
  keys = jax.vmap(lambda i: prng.run_key(0, i))(jnp.asarray(seeds))
  out = jax.jit(jax.vmap(exp.compute, in_axes=(0, 0, None)))(
      keys, {"beta": jnp.asarray(betas, jnp.float64)}, None)
  return jax.tree.map(np.asarray, out)


def test_d12_equiangular_sa_anchors_and_full_particle_system():
  cfg = river_clustering.get_config()
  cfg.d, cfg.T, cfg.times = 16, 5.0, (1.0, 2.0, 5.0)  # full particles in d = 16 (rho0 = 0)
  out = _run(cfg, [0.0, 1.0, 4.0])
  rho = out["rho_at"]
  assert abs(rho[0, 0] - 0.444021904912) <= 1e-10
  assert abs(rho[0, 0] - M.rho_closed_form_beta0(1.0, 8)) <= 1e-10
  assert abs(rho[1, 1] - 0.8163423586) <= 1e-8
  assert abs(rho[2, 1] - 0.0936521340) <= 1e-8
  assert abs(rho[2, 2] - 0.6168373758) <= 1e-8
  assert np.all(out["offdiag_spread_final"] <= 1e-12)  # stays equiangular
  assert np.all(out["min_energy_increment"] >= -1e-12)


def test_d13_identity_weight_river_is_sa_and_the_block_is_first_order():
  """R-post with identity weights, d = 8, n = 4, s = 1/sqrt(8), equiangular start on S1(0, 1):
  projected RK4 (h = 1e-3) and the post-LN attention-only block (h = 1/L), one program."""
  cfg = river_clustering.get_config("river")
  state0, _ = C.initial_state(cfg, prng.stream(prng.run_key(0, 0), prng.INIT), 8, math.sqrt(8.0))
  theta = P.identity_block(8, 1.0)
  rk4p = lambda u, th, h: F.project_post(I.rk4_step(F.attn_post, u, th, h), th)
  rho = lambda u: M.rho(M.directions(u, center=True))

  @jax.jit
  def run(u0):
    river = I.integrate_n(rk4p, u0, theta, 1e-3, 1000)
    blocks = jax.vmap(lambda L: rho(I.integrate_n(I.paper_step, u0, theta, 1.0 / L, L)))(jnp.asarray([64, 128]))
    return rho(river), M.manifold_residual(river), blocks

  r, resid, (r64, r128) = map(np.asarray, run(state0))
  assert abs(r - 0.1284049999) <= 1e-8
  assert resid <= 1e-14
  e64, e128 = abs(r64 - 0.1284049999), abs(r128 - 0.1284049999)
  assert abs(e128 - 1.3e-3) <= 2e-4
  assert abs(math.log2(e64 / e128) - 1.0) <= 0.05


def test_d14_energy_is_monotone_and_collapse_reaches_e4_over_8():
  """D14 as written: SA, beta = 4, n = 32, d = 3, RK4 h = 0.01, T = 30.

  The spec does not say where the start is drawn. From i.i.d. uniform starts
  the check holds only for some (we measured 13 of 256 at T = 30; most sit in
  a metastable two-cluster state, 159 of 256 still at T = 200): there we check
  the monotone energy and that the starts that collapse are one cluster at
  E = e^4/8. From starts in an open hemisphere (where SA converges
  exponentially to one cluster) the check as written holds for every one of
  these 8 starts (63 of 64 in our measurement; see experiments/river/README.md).
  """
  for init in ("uniform", "hemisphere"):
    cfg = river_clustering.get_config("energy")
    cfg.init = init
    out = _run(cfg, [4.0] * 8, seeds=range(8))
    assert np.all(out["min_energy_increment"] >= -1e-12)
    collapsed = ((np.abs(out["final_energy"] - math.exp(4) / 8) <= 1e-6)
                 & (out["final_min_cosine"] >= 1 - 1e-6))
    print(f"D14 {init}: {collapsed.sum()} of 8 starts collapsed at T = 30")
    assert np.all(out["clusters_final"][collapsed] == 1)
    if init == "hemisphere":
      assert collapsed.all(), (out["final_energy"], out["final_min_cosine"])
