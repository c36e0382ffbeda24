"""Token clustering on the sphere (spec §6b, checks D12-D15).

Models (``cfg.model``):

* ``sa`` / ``usa``: the Geshkovski-Letrouit-Polyanskiy-Rigollet dynamics of
  unit vectors z: (n, d) (:func:`attnlab.river.fields.sa_field`,
  ``usa_field``), RK4 + renormalisation (a projected RK4).
* ``river_identity``: the paper's post-LN river R-post with identity
  weights, one head, scale 1/sqrt(d), no FFN, on S1(0, sigma2) with
  ``sigma2 = (beta / sqrt(d))**0.5`` so that it IS SA with inverse
  temperature beta (spec §2.4); projected RK4 with the LN projection. Its
  rho, energy and clusters are those of the centred, normalised rows.

Initial data (``cfg.init``): ``equiangular`` (rho0 = 0: n orthonormal rows,
randomly rotated; n <= d, and n <= d - 1 for the river, whose rows live in
1-perp), ``uniform`` (i.i.d. uniform on the sphere / LN-projected
Gaussians) or ``hemisphere`` (i.i.d. uniform on the open half-sphere
{z_d > 0}: the uniform draw with its last coordinate replaced by its absolute
value; SA then converges to one cluster exponentially fast, Geshkovski et al.;
sphere models only).

Per run (one jitted ``lax.scan`` of T/h steps, vmapped over seeds): rho(t),
min pairwise cosine and E_beta(t) at every step (curves subsampled to
``n_curve`` points), rho at ``times``, min_k (E_{k+1} - E_k), final energy,
final cluster count. The summary adds the equiangular reference rho(t) of the
scalar ODE (SciPy DOP853, rtol = atol = 1e-13; the closed form at beta = 0)
and the largest deviation.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core import prng
from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import OneShot
from attnlab.river import fields as F
from attnlab.river import integrators as I
from attnlab.river import metrics as M
from attnlab.river import operators as O
from attnlab.river.params import identity_block

MODELS = ("sa", "usa", "river_identity")


def resolved_d(cfg) -> int:
  """``d = 0`` means the smallest valid dimension for the model/init."""
  if cfg.d:
    return int(cfg.d)
  if cfg.init == "equiangular":
    return cfg.n + 1 if cfg.model == "river_identity" else cfg.n
  return 4 if cfg.model == "river_identity" else 3


def _times(cfg):
  return tuple(float(t) for t in (cfg.times if isinstance(cfg.times, (tuple, list)) else (cfg.times,)))


def validate(cfg):
  check_choice(cfg, "model", MODELS)
  check_choice(cfg, "init", ("equiangular", "uniform", "hemisphere"))
  check(not (cfg.init == "hemisphere" and cfg.model == "river_identity"), "init",
        "hemisphere starts are for the sphere models sa/usa (the river's rows live in 1-perp)")
  check(cfg.T > 0, "T", f"must be > 0, got {cfg.T}")
  check(cfg.h > 0, "h", f"must be > 0, got {cfg.h}")
  check(cfg.beta >= 0, "beta", f"must be >= 0, got {cfg.beta}")
  check_positive(cfg, "n", "n_curve")
  check(cfg.n >= 2, "n", f"needs at least 2 tokens, got {cfg.n}")
  check(cfg.d >= 0, "d", f"must be >= 0 (0 = auto), got {cfg.d}")
  steps = cfg.T / cfg.h
  check(abs(steps - round(steps)) < 1e-9 * max(1.0, steps), "h", f"T/h must be an integer, got T={cfg.T}, h={cfg.h}")
  d = resolved_d(cfg)
  need = cfg.n + 1 if cfg.model == "river_identity" else cfg.n
  if cfg.init == "equiangular":
    check(d >= need, "d", f"an equiangular start (rho0 = 0) of n={cfg.n} tokens needs d >= {need} "
          f"for model={cfg.model}, got d={d} (use d=0 for auto)")
  check(d >= (3 if cfg.model != "river_identity" else 4), "d", f"too small for the sphere model: {d}")
  for t in _times(cfg):
    check(0 <= t <= cfg.T, "times", f"every time must be in [0, T={cfg.T}], got {t}")
    k = t / cfg.h
    check(abs(k - round(k)) < 1e-9 * max(1.0, k), "times", f"every time must be a multiple of h={cfg.h}, got {t}")


def initial_state(cfg, key, d, beta):
  """(state, z0): state is on the model's manifold; z0 the unit directions."""
  n = cfg.n
  if cfg.init == "equiangular":
    basis = jnp.eye(d)
    if cfg.model == "river_identity":  # an orthonormal basis of 1-perp (Helmert-like via QR)
      a = jnp.concatenate([jnp.ones((d, 1)), jax.random.normal(key, (d, d - 1))], axis=1)
      q, _ = jnp.linalg.qr(a)
      z0 = q[:, 1:n + 1].T
    else:
      rot, _ = jnp.linalg.qr(jax.random.normal(key, (d, d)))
      z0 = (basis[:n] @ rot)
  else:
    g = jax.random.normal(key, (n, d))
    if cfg.model == "river_identity":
      g = g - jnp.mean(g, axis=1, keepdims=True)
    z0 = g / jnp.linalg.norm(g, axis=1, keepdims=True)
    if cfg.init == "hemisphere":
      z0 = z0.at[:, -1].set(jnp.abs(z0[:, -1]))
  if cfg.model == "river_identity":
    sigma2 = jnp.sqrt(beta / math.sqrt(d))
    return sigma2 * math.sqrt(d) * z0, z0
  return z0, z0


def experiment(cfg) -> OneShot:
  validate(cfg)
  d = resolved_d(cfg)
  steps = int(round(cfg.T / cfg.h))
  times = _times(cfg)
  idx = [int(round(t / cfg.h)) for t in times]
  stride = max(1, steps // cfg.n_curve)
  center = cfg.model == "river_identity"

  def compute(key, hp, data):
    beta = hp["beta"]
    state0, _ = initial_state(cfg, prng.stream(key, prng.INIT), d, beta)
    if cfg.model == "river_identity":
      theta = identity_block(d, jnp.sqrt(beta / math.sqrt(d)))
      step = lambda u, th, h: F.project_post(I.rk4_step(F.attn_post, u, th, h), th)
    else:
      field = F.sa_field if cfg.model == "sa" else F.usa_field
      theta = beta
      step = lambda z, b, h: F.sphere_project(I.rk4_step(field, z, b, h))

    def obs(u):
      z = M.directions(u, center)
      return jnp.stack([M.rho(z), M.min_cosine(z), M.energy(z, beta)])

    def body(u, _):
      u = step(u, theta, cfg.h)
      return u, obs(u)

    uT, tr = jax.lax.scan(body, state0, None, length=steps)
    tr = jnp.concatenate([obs(state0)[None], tr])  # (steps + 1, 3), row k = time k h
    zT = M.directions(uT, center)
    out = {"rho_at": tr[jnp.asarray(idx), 0],
           "min_energy_increment": jnp.min(jnp.diff(tr[:, 2])),
           "final_energy": tr[-1, 2], "final_rho": tr[-1, 0], "final_min_cosine": tr[-1, 1],
           "clusters_final": M.n_clusters(zT, cfg.cluster_tol),
           "offdiag_spread_final": M.offdiag_spread(zT),
           "t_curve": jnp.arange(0, steps + 1, stride) * cfg.h,
           "rho_curve": tr[::stride, 0], "min_cos_curve": tr[::stride, 1],
           "energy_curve": tr[::stride, 2]}
    if cfg.model == "river_identity":
      out["manifold_residual"] = M.manifold_residual(uT, 0.0, beta / math.sqrt(d))
    return out

  def summarize(cfg_, runs):
    ok = [r for r in runs if r["status"] == "ok"]
    f = ok[0]["final"]
    beta = float(ok[0].get("beta", cfg.beta))
    rho_at = {str(t): float(np.median([r["final"]["rho_at"][i] for r in ok])) for i, t in enumerate(times)}
    out = {"model": cfg.model, "init": cfg.init, "beta": beta, "n": cfg.n, "d": d, "h": cfg.h,
           "T": cfg.T, "rho_at": rho_at,
           "min_energy_increment": min(r["final"]["min_energy_increment"] for r in ok),
           "final_energy": float(np.median([r["final"]["final_energy"] for r in ok])),
           "energy_full_collapse": (math.exp(beta) / (2 * beta) if beta > 0 else 0.5),
           "final_min_cosine": min(r["final"]["final_min_cosine"] for r in ok),
           "clusters_final": [int(r["final"]["clusters_final"]) for r in ok]}
    # spec D14's collapse criterion, per run: E_T within 1e-6 of e^beta/(2 beta), min cos >= 1 - 1e-6
    out["collapsed_runs"] = sum(
        int(abs(r["final"]["final_energy"] - out["energy_full_collapse"]) <= 1e-6
            and r["final"]["final_min_cosine"] >= 1 - 1e-6) for r in ok)
    out["n_runs"] = len(ok)
    if cfg.model == "river_identity":
      out["manifold_residual"] = max(r["final"]["manifold_residual"] for r in ok)
      out["sigma2"] = math.sqrt(beta / math.sqrt(d))
    if cfg.init == "equiangular" and len(ok) == 1 and "beta" not in cfg.sweep:
      ref = rho_reference(times, beta, cfg.n, "usa" if cfg.model == "usa" else "sa")
      out["rho_ref_at"] = {str(t): v for t, v in zip(times, ref)}
      out["rho_abs_err_max"] = max(abs(rho_at[str(t)] - v) for t, v in zip(times, ref))
      out["offdiag_spread_final"] = f["offdiag_spread_final"]
      if beta == 0:
        out["rho_closed_form_at"] = {str(t): float(M.rho_closed_form_beta0(t, cfg.n)) for t in times}
    return out

  def figures(cfg_, logs, outdir):
    import matplotlib.pyplot as plt
    from attnlab.engine import plotting
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for r in logs.runs:
      f = r["final"]
      lab = f"seed {r['seed']}" + (f", beta={r['beta']}" if "beta" in r else "")
      t = np.asarray(f["t_curve"])
      axes[0].plot(t, f["rho_curve"], label=lab)
      axes[1].plot(t, f["min_cos_curve"], label=lab)
      axes[2].plot(t, f["energy_curve"], label=lab)
    if cfg.init == "equiangular" and len(logs.runs) == 1 and "beta" not in cfg.sweep:
      t = np.asarray(logs.runs[0]["final"]["t_curve"])
      rho_ref = rho_reference(tuple(t), float(cfg.beta), cfg.n, "usa" if cfg.model == "usa" else "sa")
      axes[0].plot(t, rho_ref, "k--", lw=0.8, label="scalar ODE (ref)")
    for ax, name in zip(axes, ("rho(t) (mean cosine)", "min pairwise cosine", "energy E_beta")):
      ax.set_xlabel("t"); ax.set_title(name)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{cfg.model}, n={cfg.n}, d={d}, init={cfg.init}")
    return [plotting.savefig(fig, outdir / "clustering.png")]

  return OneShot(compute=compute, x64=True, hparams=("beta",), summarize=summarize,
                 figures=figures)


def rho_reference(times, beta, n, model="sa"):
  """rho(t) of the equiangular scalar ODE (Appendix A.3), SciPy DOP853 at 1e-13."""
  from scipy.integrate import solve_ivp
  core = lambda r: 2 * math.exp(beta * r) * (1 - r) * ((n - 1) * r + 1)
  if model == "sa":
    rhs = lambda t, r: [core(r[0]) / (math.exp(beta) + (n - 1) * math.exp(beta * r[0]))]
  else:
    rhs = lambda t, r: [core(r[0]) / n]
  ts = np.asarray(times, float)
  order = np.argsort(ts)
  sol = solve_ivp(rhs, (0.0, float(ts.max()) if ts.max() > 0 else 1.0), [0.0], method="DOP853",
                  rtol=1e-13, atol=1e-13, t_eval=ts[order], dense_output=False)
  out = np.empty_like(ts)
  out[order] = sol.y[0]
  return [float(v) for v in out]
