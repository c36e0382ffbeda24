"""E2: optimisation of the population objective (spec §7.2, AC-5 to AC-7).

One run = one (method, kappa, seed). ``method`` is static (it picks the
optimiser's structure); ``kappa`` and every step size, damping, weight and
scale are traced hyperparameters, so all kappas and seeds of a method run as
one ``jit(vmap(lax.scan))``. Runs in float64 (``x64=True``).

Per run (the DATA stream): Sigma = O diag(linspace(sigma_lo, sigma_hi, d)) O^T,
M = P diag(geomspace(1, 1/kappa, r)) R^T, Mt = M Sigma^{1/2}.
Inits (the INIT stream):

* spectral: the balanced SVD factors of ``Mt + perturb * unit * G / ||G||_2``
  (G Gaussian; ``unit`` = sigma_min(Mt) or sigma_max(Mt), ``perturb_unit``),
  mapped back to (A, B);
* random: i.i.d. N(0, scale^2) entries.

Step sizes are in natural units: ``eta`` (SA-PrecGD) and ``scaledgd_eta`` are
dimensionless; plain GD uses ``gd_eta / sigma_max(Mt)``; damping values
``delta`` and ``scaledgd_delta`` are in units of sigma_max(Mt).

Metrics per step (of the updated state): ``rel_loss`` =
||A S B^T S^{1/2} - Mt||^2 / ||Mt||^2, and accumulators carried in the scan
state so they reach ``runs.jsonl`` ``final``: ``steps_to_1e-10``,
``steps_to_1e-12``, ``steps_to_1e-20`` (first step at or below; -1 if never),
``max_rel_loss``, ``rel_loss_at_check`` (at step ``check_step``),
``median_step_ratio`` (median of rel_loss_t / rel_loss_{t-1} over
``ratio_from < t <= ratio_to``), ``kappa_tilde`` = kappa(Mt) and
``beta_now`` = ||S^{1/2} B S^{1/2}||_2.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attnlab.core import prng
from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import ConfigError, Iterative
from attnlab.softmax_precond import model
from attnlab.softmax_precond import optim as opt_lib

THRESHOLDS = {"1e-10": 1e-10, "1e-12": 1e-12, "1e-20": 1e-20}
HPARAMS = ("kappa", "eta", "delta", "lam", "beta", "perturb", "gd_eta", "adam_lr", "init_scale",
           "scaledgd_eta", "scaledgd_init_scale", "scaledgd_delta")


def _as_tuple(v):
  return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def validate(cfg) -> None:
  """Raise ConfigError for bad population-config values."""
  check(isinstance(cfg.d, int) and cfg.d >= 1, "d", f"must be a positive int, got {cfg.d!r}")
  check(isinstance(cfg.k, int) and cfg.k >= 1, "k", f"must be a positive int, got {cfg.k!r}")
  for kap in _as_tuple(cfg.kappa):
    check(isinstance(kap, (int, float)) and kap >= 1, "kappa", f"condition numbers must be >= 1, got {cfg.kappa!r}")
  check_choice(cfg, "methods", tuple(opt_lib.METHODS))
  check_choice(cfg, "method", tuple(opt_lib.METHODS))
  check_choice(cfg, "precond", opt_lib.PRECONDS)
  check_choice(cfg, "init", opt_lib.INITS)
  check_choice(cfg, "reg", opt_lib.REGS)
  check_choice(cfg, "renorm", opt_lib.RENORMS)
  check_choice(cfg, "renorm_norm", opt_lib.RENORM_NORMS)
  check_choice(cfg, "perturb_unit", ("sigma_min", "sigma_max"))
  check_choice(cfg, "gd_coordinates", ("whitened", "raw"))
  check_positive(cfg, "eta", "gd_eta", "adam_lr", "init_scale", "scaledgd_eta", "scaledgd_init_scale", "beta",
                 "sigma_lo", "sigma_hi")
  check_positive(cfg, "delta", "lam", "perturb", "scaledgd_delta", strict=False)
  check(cfg.sigma_hi >= cfg.sigma_lo, "sigma_hi", "must be >= sigma_lo")
  r = min(cfg.k, cfg.d) if not cfg.M_rank else cfg.M_rank
  check(1 <= r <= min(cfg.k, cfg.d), "M_rank", f"must be in [1, min(k, d)] (0: full), got {cfg.M_rank}")
  check(0 <= cfg.ratio_from < cfg.ratio_to, "ratio_to", "need 0 <= ratio_from < ratio_to")
  # A singular ScaledGD preconditioner: A^T A (d x d) has rank <= k < d, and
  # a rank-r target leaves V^T V singular at the optimum.
  for method in _as_tuple(cfg.methods) + (cfg.method,):
    m = opt_lib.resolve_method(method, cfg.precond, cfg.init)
    if m.precond != "scaledgd":
      continue
    zero = ((m.damped == "delta" and cfg.delta == 0) or m.damped == "none"
            or (m.damped == "fixed" and cfg.scaledgd_delta == 0))
    if zero and r < cfg.d:
      field = "k" if cfg.k < cfg.d else "M_rank"
      raise ConfigError(field, f"method {method!r} uses precond=scaledgd with zero damping, but the target has "
                        f"rank {r} < d = {cfg.d}: the preconditioner (A^T A or B^T S B) is singular; "
                        f"set delta > 0 or k = d")


def make_population(cfg) -> Iterative:
  """The E2 factory (cheap: validation and closures only)."""
  validate(cfg)
  d, k = int(cfg.d), int(cfg.k)
  rank = int(cfg.M_rank) if cfg.M_rank else min(k, d)
  method_name = cfg.method
  method = opt_lib.resolve_method(method_name, cfg.precond, cfg.init)
  reg_kind = cfg.reg if method.reg else "none"
  renorm_kind = cfg.renorm if method.renorm else "none"
  renorm_norm = cfg.renorm_norm
  perturb_unit = cfg.perturb_unit
  r0, r1, check_step = int(cfg.ratio_from), int(cfg.ratio_to), int(cfg.check_step)
  sig_lo, sig_hi = float(cfg.sigma_lo), float(cfg.sigma_hi)
  # plain GD runs on the matrix-factorisation objective 1/2||U V^T - Mt||^2,
  # i.e. in whitened coordinates, where gd_eta / sigma_max(Mt) is the natural
  # step; "raw" runs it on (A, B) directly.
  gd_precond = "whiten" if cfg.gd_coordinates == "whitened" else "none"

  def make_data(key, hp):
    ks, km = jax.random.split(key)
    Sigma = model.make_sigma(ks, d, sig_lo, sig_hi)
    Sh, Shi = model.sqrtm_psd(Sigma)
    M = model.make_target(km, k, d, hp["kappa"], rank)
    s = jnp.linalg.svd(model.mm(M, Sh), compute_uv=False)
    return {"Sigma": Sigma, "Sigma_half": Sh, "Sigma_half_inv": Shi, "M": M, "smax": s[0], "smin": s[rank - 1]}

  def optimizer(hp, data):
    smax = data["smax"]
    if method.opt == "gd":
      return optax.chain(opt_lib.precondition(gd_precond, data["Sigma"], Sigma_half=data["Sigma_half"],
                                              Sigma_half_inv=data["Sigma_half_inv"]),
                         optax.sgd(hp["gd_eta"] / smax))
    if method.opt == "adam":
      return optax.adam(hp["adam_lr"])
    if method.damped == "delta":
      delta = hp["delta"] * smax
    elif method.damped == "fixed":
      delta = hp["scaledgd_delta"] * smax
    else:
      delta = 0.0
    eta = hp["eta"] if method.init == "spectral" else hp["scaledgd_eta"]
    return opt_lib.sa_precgd(eta, data["Sigma"], data["Sigma_half"], precond=method.precond, delta=delta,
                             reg=reg_kind, lam=hp["lam"], renorm=renorm_kind, beta=hp["beta"],
                             Sigma_half_inv=data["Sigma_half_inv"], renorm_norm=renorm_norm)

  def loss_fn(params, data):
    return model.population_loss(params, data["Sigma"], data["Sigma_half"], data["M"])

  def rel(params, data):
    return model.relative_population_loss(params, data["Sigma"], data["Sigma_half"], data["M"])

  def init(key, hp, data):
    kinit = prng.stream(key, prng.INIT)
    if method.init == "spectral":
      Mt = model.mm(data["M"], data["Sigma_half"])
      G = jax.random.normal(kinit, Mt.shape, Mt.dtype)
      unit = data["smin"] if perturb_unit == "sigma_min" else data["smax"]
      U0, V0 = opt_lib.spectral_factors(Mt + hp["perturb"] * unit * G / model.spectral_norm(G), d, rank)
      params = model.from_whitened(U0, V0, data["Sigma_half_inv"])
      if renorm_kind == "spectral_to_beta":
        params = opt_lib.renormalize_params(params, data["Sigma_half"], hp["beta"])
    else:
      scale = hp["init_scale"] if method.opt in ("gd", "adam") else hp["scaledgd_init_scale"]
      params = opt_lib.random_params(kinit, k, d, scale, data["Sigma"].dtype)
    opt_state = optimizer(hp, data).init(params)
    r = rel(params, data)
    dt = r.dtype
    return {
        "params": params, "opt_state": opt_state, "t": jnp.zeros((), jnp.int32), "rel": r,
        "first": {name: jnp.where(r <= thr, 0, -1).astype(jnp.int32) for name, thr in THRESHOLDS.items()},
        "max_rel": r, "at_check": jnp.where(check_step == 0, r, jnp.asarray(-1.0, dt)),
        "ratios": jnp.zeros((r1 - r0,), dt),
    }

  def step(state, hp, data):
    params = state["params"]
    tx = optimizer(hp, data)
    grads = jax.grad(loss_fn)(params, data)
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    params = optax.apply_updates(params, updates)
    t = state["t"] + 1
    r = rel(params, data)
    first = {name: jnp.where((f < 0) & (r <= thr), t, f) for (name, thr), f in
             zip(THRESHOLDS.items(), state["first"].values())}
    prev = state["rel"]
    ratio = jnp.where(prev > 0, r / jnp.where(prev > 0, prev, 1.0), 0.0)
    idx = t - r0 - 1
    in_win = (idx >= 0) & (idx < r1 - r0)
    ratios = jnp.where(in_win & (jnp.arange(r1 - r0) == idx), ratio, state["ratios"])
    at_check = jnp.where(t == check_step, r, state["at_check"])
    new = {"params": params, "opt_state": opt_state, "t": t, "rel": r, "first": first,
           "max_rel": jnp.maximum(state["max_rel"], r), "at_check": at_check, "ratios": ratios}
    # median of the filled window entries (the state must stay finite, so the
    # unfilled entries are zeros; they are pushed past the end with +inf here)
    n_fill = jnp.clip(t - r0, 0, r1 - r0)
    filled = jnp.arange(r1 - r0) < n_fill
    srt = jnp.sort(jnp.where(filled, ratios, jnp.inf))
    lo = srt[jnp.maximum((n_fill - 1) // 2, 0)]
    hi = srt[jnp.maximum(n_fill // 2, 0)]
    med = jnp.where(n_fill > 0, 0.5 * (lo + hi), 0.0)
    metrics = {
        "rel_loss": r, "max_rel_loss": new["max_rel"],
        "rel_loss_at_check": at_check,
        "median_step_ratio": med,
        "kappa_tilde": data["smax"] / data["smin"],
        **{f"steps_to_{name}": f for name, f in first.items()},
    }
    return new, metrics

  def evaluate(state, hp, data):
    params, Sh = state["params"], data["Sigma_half"]
    return {"loss": loss_fn(params, data), "beta_now": model.spectral_norm(model.mm(Sh, params["B"], Sh))}

  return Iterative(init=init, step=step, evaluate=evaluate, make_data=make_data, hparams=HPARAMS, summarize=summarize,
                   figures=figures, plot_metrics=("rel_loss",), log_x=False, x64=True)


# ----------------------------------------------------------------------------
# Summary and figures (host side)
# ----------------------------------------------------------------------------

def _nan_none(x):
  return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _final(r, key, default):
  v = r["final"].get(key)
  return default if v is None else v


def summarize(cfg, runs) -> dict:
  """summary[method][str(kappa)] from the per-run final metrics.

  Primary keys are medians over the seeds; ``*_worst`` keys give the worst
  seed (a diverged run counts as inf / never):

  * ``final_rel_loss`` (``final_rel_loss_worst``: max over seeds).
  * ``steps_to_1e-10`` (and ``1e-12``, ``1e-20``): the median over seeds of the
    first step at or below the threshold; null if fewer than half the seeds
    got there. ``steps_to_<thr>_worst``: the slowest seed, null if any seed
    never got there; ``n_reached_<thr>``: how many did.
  * ``median_step_ratio``: the median over seeds of each run's median
    per-step loss ratio rel_loss_t / rel_loss_{t-1}, ratio_from < t <= ratio_to.
  * ``rel_loss_at_step_<check_step>_worst``; ``max_rel_loss`` (the largest
    relative loss seen, worst seed) and ``n_max_rel_loss_above_1``.
  * ``kappa_tilde``: kappa(M Sigma^{1/2}) (median over seeds).
  """
  out: dict = {}
  by = {}
  for r in runs:
    by.setdefault((r["method"] if "method" in r else cfg.method, float(r["kappa"]) if "kappa" in r
                   else float(_as_tuple(cfg.kappa)[0])), []).append(r)
  for (method, kappa), rs in sorted(by.items()):
    ok = [r for r in rs if r["status"] == "ok"]
    finals = [_final(r, "rel_loss", math.inf) if r["status"] == "ok" else math.inf for r in rs]
    ent = {"final_rel_loss": _nan_none(float(np.median(finals))),
           "final_rel_loss_worst": _nan_none(float(np.max(finals))),
           "n_seeds": len(rs), "n_diverged": len(rs) - len(ok)}
    for name in THRESHOLDS:
      st = [int(_final(r, f"steps_to_{name}", -1)) if r["status"] == "ok" else -1 for r in rs]
      reached = [s for s in st if s >= 0]
      # the median with "never" = +inf
      med = float(np.median([s if s >= 0 else math.inf for s in st]))
      ent[f"steps_to_{name}"] = med if math.isfinite(med) else None
      ent[f"steps_to_{name}_worst"] = int(max(st)) if len(reached) == len(st) else None
      ent[f"n_reached_{name}"] = len(reached)
    ratios = [r["final"]["median_step_ratio"] for r in ok if r["final"].get("median_step_ratio") is not None]
    ent["median_step_ratio"] = float(np.median(ratios)) if ratios else None
    chk = [_final(r, "rel_loss_at_check", -1.0) if r["status"] == "ok" else math.inf for r in rs]
    ent[f"rel_loss_at_step_{int(cfg.check_step)}_worst"] = None if min(chk) < 0 else _nan_none(float(np.max(chk)))
    mx = [_final(r, "max_rel_loss", math.inf) if r["status"] == "ok" else math.inf for r in rs]
    ent["max_rel_loss"] = _nan_none(float(np.max(mx)))
    ent["n_max_rel_loss_above_1"] = int(sum(m > 1 for m in mx))
    kt = [_final(r, "kappa_tilde", math.nan) for r in rs]
    ent["kappa_tilde"] = _nan_none(float(np.nanmedian(kt))) if np.isfinite(kt).any() else None
    out.setdefault(method, {})[str(kappa)] = ent
  return out


def figures(cfg, logs, outdir) -> list:
  """rel_loss vs step: one panel per kappa, one median + IQR band per method."""
  from attnlab.engine import plotting
  import matplotlib.pyplot as plt

  runs = [r for r in logs.runs]
  kappas = sorted({float(r.get("kappa", _as_tuple(cfg.kappa)[0])) for r in runs})
  methods = list(dict.fromkeys(r.get("method", cfg.method) for r in runs))
  if not kappas:
    return []
  fig, axes = plt.subplots(1, len(kappas), figsize=(3.6 * len(kappas), 3.0), squeeze=False)
  for j, kap in enumerate(kappas):
    ax = axes[0, j]
    for m in methods:
      ids = [r["run_id"] for r in runs if r.get("method", cfg.method) == m
             and float(r.get("kappa", kap)) == kap]
      steps, Y = logs.curves(ids, "rel_loss")
      if len(steps):
        Y = np.where(Y > 0, Y, 1e-300)
        plotting.band(ax, steps, Y, label=m)
    ax.set_yscale("log")
    ax.set_ylim(1e-34, None)
    ax.set_xlabel("step")
    ax.set_ylabel("relative population loss")
    ax.set_title(f"kappa(M) = {kap:g}")
    ax.legend(loc="best")
  fig.suptitle("E2: population objective, median and IQR over seeds", fontsize=9)
  paths = [plotting.savefig(fig, f"{outdir}/population_rel_loss.png")]
  # zoom on the first 100 steps (SA-PrecGD's regime)
  fig, axes = plt.subplots(1, len(kappas), figsize=(3.6 * len(kappas), 3.0), squeeze=False)
  for j, kap in enumerate(kappas):
    ax = axes[0, j]
    for m in methods:
      ids = [r["run_id"] for r in runs if r.get("method", cfg.method) == m and float(r.get("kappa", kap)) == kap]
      steps, Y = logs.curves(ids, "rel_loss")
      sel = steps <= 100
      if sel.any():
        plotting.band(ax, steps[sel], np.where(Y[:, sel] > 0, Y[:, sel], 1e-300), label=m)
    ax.set_yscale("log")
    ax.set_ylim(1e-34, None)
    ax.set_xlabel("step")
    ax.set_title(f"kappa(M) = {kap:g} (first 100 steps)")
    ax.legend(loc="best")
  paths.append(plotting.savefig(fig, f"{outdir}/population_rel_loss_first100.png"))
  return paths
