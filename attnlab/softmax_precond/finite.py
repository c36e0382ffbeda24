"""E3-E5: training on the finite-data softmax objective (spec §4.3, §7.2).

One run = one (method, n_train, seed) plus traced hyperparameters (eta, delta,
lam, beta, learning rates, init scale, noise level, kappa). ``method``,
``n_train`` and every shape are static.

Data (the DATA stream of the run key): Sigma = O diag(linspace(sigma_lo,
sigma_hi, d)) O^T, M = P diag(geomspace(1, 1/M_kappa, r)) R^T, and

* ``context_mode="self"``: the training set X (d, n), Y = M X + noise (k, n)
  is also every query's context; test queries (``n_test`` fresh x) attend over
  the n training tokens;
* ``context_mode="prompt"``: query i has its own context of ``N_context``
  fresh tokens (training and test alike).

The data-dependent parts (preconditioner, spectral init, renormalisation) use
Sigma_hat = X X^T / n and C_hat = Y X^T / n.

Metrics (of the updated state): ``test_excess`` = 1/2 mean_x ||f(x) - M x||^2
over the test queries (noise-free targets, so no label-noise variance);
``test_mse`` = test_excess + 1/2 k sigma^2, the test 1/2 MSE averaged over the
label noise (exact, since the noise is independent of f);
``steps_to_target`` (first step with test_mse <= ``test_target``, -1 if
never); ``beta_now`` = ||Sigma_hat^{1/2} B Sigma_hat^{1/2}||_2. At logged steps
(``evaluate``): ``train_loss`` (the training objective) and
``train_mse_softmax`` (the softmax empirical loss), and ``ols_excess`` (the
population excess of M_hat_OLS, for reference).
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

HPARAMS = ("eta", "delta", "lam", "beta", "gd_lr", "adam_lr", "init_scale", "sigma_noise", "M_kappa",
           "scaledgd_delta", "test_target")


def _as_tuple(v):
  return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def validate(cfg) -> None:
  for name in ("d", "k", "n_test", "query_chunk"):
    check(isinstance(cfg[name], int) and cfg[name] >= 1, name, f"must be a positive int, got {cfg[name]!r}")
  for n in _as_tuple(cfg.n_train):
    check(isinstance(n, int) and n > cfg.d, "n_train", f"must be ints > d = {cfg.d} (Sigma_hat must be "
          f"invertible), got {cfg.n_train!r}")
  check_choice(cfg, "methods", tuple(opt_lib.METHODS))
  check_choice(cfg, "method", tuple(opt_lib.METHODS))
  check_choice(cfg, "precond", opt_lib.PRECONDS)
  check_choice(cfg, "init", opt_lib.INITS)
  check_choice(cfg, "reg", opt_lib.REGS)
  check_choice(cfg, "renorm", opt_lib.RENORMS)
  check_choice(cfg, "renorm_norm", opt_lib.RENORM_NORMS)
  check_choice(cfg, "context_mode", ("self", "prompt"))
  check_choice(cfg, "logit_orientation", ("query_left", "key_left"))
  check_choice(cfg, "objective", ("empirical_softmax", "empirical_linearized"))
  check(isinstance(cfg.exclude_self_token, bool), "exclude_self_token", "must be a bool")
  check_positive(cfg, "eta", "gd_lr", "adam_lr", "init_scale", "sigma_lo", "sigma_hi", "test_target")
  check_positive(cfg, "beta")
  check_positive(cfg, "delta", "lam", "sigma_noise", "scaledgd_delta", strict=False)
  check(cfg.M_kappa >= 1, "M_kappa", f"the condition number must be >= 1, got {cfg.M_kappa!r}")
  check(cfg.sigma_hi >= cfg.sigma_lo, "sigma_hi", "must be >= sigma_lo")
  if cfg.context_mode == "prompt":
    check(isinstance(cfg.N_context, int) and cfg.N_context >= 1, "N_context", "must be a positive int")
  r = min(cfg.k, cfg.d)
  check(0 <= cfg.spectral_rank <= r, "spectral_rank", f"must be in [0, min(k, d)] (0: full), got {cfg.spectral_rank}")
  r_init = cfg.spectral_rank or r
  for method in _as_tuple(cfg.methods) + (cfg.method,):
    m = opt_lib.resolve_method(method, cfg.precond, cfg.init)
    if m.precond != "scaledgd":
      continue
    zero = ((m.damped == "delta" and cfg.delta == 0) or m.damped == "none"
            or (m.damped == "fixed" and cfg.scaledgd_delta == 0))
    if zero and (cfg.k < cfg.d or (m.init == "spectral" and r_init < cfg.d)):
      raise ConfigError("delta" if cfg.k >= cfg.d else "k",
                        f"method {method!r} uses precond=scaledgd with zero damping, but k = {cfg.k} or the "
                        f"init rank {r_init} is < d = {cfg.d}: the preconditioner is singular; set delta > 0")


def make_finite(cfg) -> Iterative:
  """The E3/E4/E5 factory."""
  validate(cfg)
  d, k, n, n_test = int(cfg.d), int(cfg.k), int(_as_tuple(cfg.n_train)[0]), int(cfg.n_test)
  method = opt_lib.resolve_method(cfg.method, cfg.precond, cfg.init)
  reg_kind = cfg.reg if method.reg else "none"
  renorm_kind = cfg.renorm if method.renorm else "none"
  renorm_norm = cfg.renorm_norm
  mode, orient, excl = cfg.context_mode, cfg.logit_orientation, bool(cfg.exclude_self_token)
  objective, chunk = cfg.objective, int(cfg.query_chunk)
  N_ctx = int(cfg.N_context) if mode == "prompt" else 0
  rank = int(cfg.spectral_rank) or min(k, d)
  sig_lo, sig_hi = float(cfg.sigma_lo), float(cfg.sigma_hi)

  def make_data(key, hp):
    ks, km, kx, kt, kc = jax.random.split(key, 5)
    Sigma = model.make_sigma(ks, d, sig_lo, sig_hi)
    Sh, _ = model.sqrtm_psd(Sigma)
    M = model.make_target(km, k, d, hp["M_kappa"])
    X, Y = model.sample_regression(kx, Sh, M, hp["sigma_noise"], n)
    Xt = model.mm(Sh, jax.random.normal(kt, (d, n_test), Sh.dtype))
    S_hat, C_hat = model.empirical_moments(X, Y)
    S_half, S_half_inv = model.sqrtm_psd(S_hat)
    data = {"Sigma": Sigma, "M": M, "X": X, "Y": Y, "Xt": Xt, "S_hat": S_hat, "C_hat": C_hat,
            "S_half": S_half, "S_half_inv": S_half_inv}
    if mode == "prompt":
      kc1, kc2 = jax.random.split(kc)
      data["ctx"] = jnp.einsum("de,ien->idn", Sh, jax.random.normal(kc1, (n, d, N_ctx), Sh.dtype))
      data["ctx_test"] = jnp.einsum("de,ien->idn", Sh, jax.random.normal(kc2, (n_test, d, N_ctx), Sh.dtype))
    return data

  def train_loss(params, data):
    if objective == "empirical_linearized":
      return model.linearized_loss(params, data["S_hat"], data["C_hat"])
    return softmax_loss(params, data)

  def softmax_loss(params, data):
    return model.empirical_loss(params, data["X"], data["Y"], mode, data.get("ctx"), excl, orient, chunk)

  def test_excess(params, data):
    Xt = data["Xt"]
    if mode == "self":
      pred = model.self_mode_predictions(params, Xt, data["X"], None, False, orient, chunk)
    else:
      pred = model.prompt_mode_predictions(params, Xt, data["ctx_test"], orient, chunk)
    return model.half_mse(pred, model.mm(data["M"], Xt))

  def optimizer(hp, data):
    if method.opt == "gd":
      return optax.sgd(hp["gd_lr"])
    if method.opt == "adam":
      return optax.adam(hp["adam_lr"])
    delta = {"delta": hp["delta"], "fixed": hp["scaledgd_delta"], "none": 0.0}[method.damped]
    return opt_lib.sa_precgd(hp["eta"], data["S_hat"], data["S_half"], precond=method.precond, delta=delta,
                             reg=reg_kind, lam=hp["lam"], renorm=renorm_kind, beta=hp["beta"], renorm_norm=renorm_norm)

  def noise_floor(hp):
    return 0.5 * k * hp["sigma_noise"] ** 2

  def init(key, hp, data):
    kinit = prng.stream(key, prng.INIT)
    if method.init == "spectral":
      U0, V0 = opt_lib.spectral_factors(model.mm(data["C_hat"], data["S_half_inv"]), d, rank)
      params = model.from_whitened(U0, V0, data["S_half_inv"])
      if renorm_kind == "spectral_to_beta":
        params = opt_lib.renormalize_params(params, data["S_half"], hp["beta"])
    else:
      params = opt_lib.random_params(kinit, k, d, hp["init_scale"], data["X"].dtype)
    te = test_excess(params, data)
    hit = te + noise_floor(hp) <= hp["test_target"]
    return {"params": params, "opt_state": optimizer(hp, data).init(params), "t": jnp.zeros((), jnp.int32),
            "first": jnp.where(hit, 0, -1).astype(jnp.int32)}

  def step(state, hp, data):
    params = state["params"]
    grads = jax.grad(train_loss)(params, data)
    updates, opt_state = optimizer(hp, data).update(grads, state["opt_state"], params)
    params = optax.apply_updates(params, updates)
    t = state["t"] + 1
    te = test_excess(params, data)
    tm = te + noise_floor(hp)
    first = jnp.where((state["first"] < 0) & (tm <= hp["test_target"]), t, state["first"])
    Sh = data["S_half"]
    metrics = {"test_excess": te, "test_mse": tm, "steps_to_target": first,
               "beta_now": model.spectral_norm(model.mm(Sh, params["B"], Sh))}
    return {"params": params, "opt_state": opt_state, "t": t, "first": first}, metrics

  def evaluate(state, hp, data):
    params = state["params"]
    E = model.mm(data["C_hat"], data["S_half_inv"], data["S_half_inv"]) - data["M"]  # M_OLS - M
    ols = 0.5 * jnp.sum(model.mm(E, data["Sigma"]) * E)
    out = {"train_mse_softmax": softmax_loss(params, data), "ols_excess": ols}
    out["train_loss"] = train_loss(params, data) if objective != "empirical_softmax" else out["train_mse_softmax"]
    return out

  return Iterative(init=init, step=step, evaluate=evaluate, make_data=make_data, hparams=HPARAMS,
                   summarize=summarize, figures=figures, plot_metrics=("test_mse", "train_mse_softmax"),
                   log_x=False, x64=bool(cfg.x64))


# ----------------------------------------------------------------------------
# Summary and figures
# ----------------------------------------------------------------------------

def _final(r, key, default=math.nan):
  v = r["final"].get(key)
  return default if v is None else v


def _coord(r, name, cfg):
  v = r.get(name)
  if v is None:
    v = cfg[name]
    v = _as_tuple(v)[0] if name == "n_train" else v
  return v


def _finite_or_none(x):
  x = float(x)
  return x if math.isfinite(x) else None


def fit_slope(ns, excess) -> float | None:
  """Least-squares slope of log(excess) against log(n) (None if < 2 points)."""
  ns, ex = np.asarray(ns, float), np.asarray(excess, float)
  ok = np.isfinite(ex) & (ex > 0)
  if ok.sum() < 2:
    return None
  return float(np.polyfit(np.log(ns[ok]), np.log(ex[ok]), 1)[0])


def summarize(cfg, runs) -> dict:
  """summary[method][n_train (str)] (and [beta] when beta is swept):
  medians over seeds of test_mse / test_excess / train loss / steps_to_target
  (the first step with test_mse <= test_target; "never" counts as +inf),
  n_diverged, n_converged (final test_mse <= converged_test_mse); plus
  ``slope[method]``: the fitted log-log slope of the median final excess test
  error against n (AC-10; the paper's claim is -1)."""
  by: dict = {}
  swept = tuple(cfg.sweep.keys())
  extra = [a for a in swept if a not in ("method", "n_train")]
  for r in runs:
    key = (_coord(r, "method", cfg), int(_coord(r, "n_train", cfg))) + tuple(r.get(a) for a in extra)
    by.setdefault(key, []).append(r)
  out: dict = {}
  per_method_n: dict = {}
  thr = float(cfg.converged_test_mse)
  for key, rs in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1]) + tuple(str(x) for x in kv[0][2:])):
    method, n = key[0], key[1]
    ok = [r for r in rs if r["status"] == "ok"]
    med = lambda name: (float(np.median([_final(r, name) for r in ok])) if ok else None)
    st = [int(_final(r, "steps_to_target", -1)) for r in ok]
    reached = [s for s in st if s >= 0]
    ent = {"test_mse": med("test_mse"), "test_excess": med("test_excess"),
           "train_mse_softmax": med("train_mse_softmax"), "ols_excess": med("ols_excess"),
           "beta_now": med("beta_now"),
           # median over seeds with "never" = +inf (null if fewer than half got there)
           "steps_to_target": _finite_or_none(np.median([s if s >= 0 else math.inf for s in st]
                                                        + [math.inf] * (len(rs) - len(ok)))),
           "steps_to_target_worst": int(max(reached)) if reached and len(reached) == len(rs) else None,
           "n_reached_target": len(reached),
           "n_seeds": len(rs), "n_diverged": len(rs) - len(ok),
           "n_converged": int(sum(_final(r, "test_mse", math.inf) <= thr for r in ok)),
           "test_target": float(cfg.test_target), "converged_test_mse": thr}
    ent["fraction_converged"] = ent["n_converged"] / len(rs)
    node = out.setdefault(method, {})
    node = node.setdefault(str(n), {}) if extra else node
    for a, v in zip(extra, key[2:]):
      node = node.setdefault(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}", {})
    node.update(ent) if extra else out[method].__setitem__(str(n), ent)
    if not extra:
      per_method_n.setdefault(method, []).append((n, ent["test_excess"]))
  slopes = {}
  for method, pts in per_method_n.items():
    pts = [(n, e) for n, e in pts if e is not None]
    if len(pts) >= 2:
      slopes[method] = {"slope": fit_slope(*zip(*pts)), "n": [p[0] for p in pts],
                        "test_excess": [p[1] for p in pts]}
  if slopes:
    out["excess_vs_n"] = slopes
    out["excess_vs_n_note"] = ("fitted log-log slope of the median final excess test error against n; "
                               "the paper's 1/n floor predicts -1, a slope shallower than -0.75 flags an "
                               "objective/renormalisation mismatch (spec AC-10)")
  return out


def figures(cfg, logs, outdir) -> list:
  """test_mse vs step per n (one band per method); excess vs n (log-log);
  test_mse vs beta when beta is swept."""
  from attnlab.engine import plotting
  import matplotlib.pyplot as plt

  runs = logs.runs
  paths = []
  ns = sorted({int(_coord(r, "n_train", cfg)) for r in runs})
  methods = list(dict.fromkeys(_coord(r, "method", cfg) for r in runs))
  swept = tuple(cfg.sweep.keys())
  floor = 0.5 * cfg.k * cfg.sigma_noise ** 2
  if "beta" not in swept:
    fig, axes = plt.subplots(1, len(ns), figsize=(3.4 * len(ns), 3.0), squeeze=False)
    for j, n in enumerate(ns):
      ax = axes[0, j]
      for m in methods:
        ids = [r["run_id"] for r in runs if _coord(r, "method", cfg) == m and int(_coord(r, "n_train", cfg)) == n]
        steps, Y = logs.curves(ids, "test_mse")
        if len(steps):
          plotting.band(ax, steps, Y, label=m)
      ax.axhline(floor, color="k", lw=0.8, ls="--", label="1/2 k sigma^2")
      ax.set_yscale("log")
      ax.set_xlabel("step")
      ax.set_ylabel("test 1/2 MSE")
      ax.set_title(f"n = {n}")
      ax.legend(loc="best")
    fig.suptitle("E3: finite-data training, median and IQR over seeds", fontsize=9)
    paths.append(plotting.savefig(fig, f"{outdir}/finite_test_curves.png"))
    if len(ns) >= 2:
      fig, ax = plt.subplots(figsize=(4.0, 3.2))
      for m in methods:
        ex = []
        for n in ns:
          v = [_final(r, "test_excess") for r in runs if _coord(r, "method", cfg) == m
               and int(_coord(r, "n_train", cfg)) == n and r["status"] == "ok"]
          ex.append(np.median(v) if v else np.nan)
        s = fit_slope(ns, ex)
        ax.loglog(ns, ex, "o-", label=f"{m} (slope {s:.2f})" if s is not None else m)
      ref = np.asarray(ns, float)
      ax.loglog(ref, np.nanmax(ex) * ref[0] / ref, "k--", lw=0.8, label="1/n (paper)")
      ax.set_xlabel("n (training set size)")
      ax.set_ylabel("final excess test error")
      ax.legend(loc="best")
      paths.append(plotting.savefig(fig, f"{outdir}/finite_excess_vs_n.png"))
  else:
    fig, ax = plt.subplots(figsize=(4.0, 3.2))
    for n in ns:
      for m in methods:
        pts = {}
        for r in runs:
          if _coord(r, "method", cfg) == m and int(_coord(r, "n_train", cfg)) == n and r["status"] == "ok":
            pts.setdefault(float(r["beta"]), []).append(_final(r, "test_mse"))
        bs = sorted(pts)
        ax.plot(bs, [np.median(pts[b]) for b in bs], "o-", label=f"{m}, n = {n}")
    ax.axhline(floor, color="k", lw=0.8, ls="--", label="1/2 k sigma^2")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("renormalisation target beta")
    ax.set_ylabel("final test 1/2 MSE")
    ax.legend(loc="best")
    paths.append(plotting.savefig(fig, f"{outdir}/finite_test_vs_beta.png"))
  return paths
