"""Post-processing of logged superposition runs: fits, ODE comparisons, checks, figures.

Everything here reads the logs (``attnlab.engine.logs.Logs``) and runs on the
host in float64 (the theory curves through :mod:`theory` under
``jax.enable_x64``). The curve fits need the logged curves, so they are the
engine's ``summarize_logs(cfg, logs)`` hook (:func:`summarize_logs`), whose
keys ``settings_fit`` (one record per sweep setting: gamma, fit_window,
plateau_loss, represented_features, ...), ``checks``, ``fit_options`` and
``time_unit`` go into ``summary.json``; :func:`figures` draws from the same
fits (computed once per logs object). Both ``python -m attnlab.run`` and
``python -m attnlab.plot`` rewrite them.
"""
from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.engine import plotting
from attnlab.superposition import data as sdata
from attnlab.superposition import fit as fitlib
from attnlab.superposition import theory as th

plt = plotting.plt


def _get(run: dict, cfg, name: str):
  return run.get("coords", {}).get(name, cfg[name])


def _setting_key(run: dict) -> str:
  return json.dumps(run.get("coords", {}), sort_keys=True)


def time_axis(steps: np.ndarray, run: dict, cfg) -> np.ndarray:
  """``t = lr * step`` for SGD (``fit_time_unit='auto'`` or ``'lr_step'``), else ``step``."""
  unit = cfg.fit_time_unit
  if unit == "lr_step" or (unit == "auto" and _get(run, cfg, "optimizer") == "sgd"):
    return float(_get(run, cfg, "lr")) * steps.astype(np.float64)
  return steps.astype(np.float64)


def ode_setup(run: dict, cfg):
  """(r, y, w, lam, s0, dynamics, scale) of the per-feature ODE matching a run, in float64."""
  n = int(_get(run, cfg, "n_features"))
  student = _get(run, cfg, "student")
  dyn = cfg.theory_kind if cfg.theory_kind != "auto" else ("linear" if student == "linear_full" else "logistic")
  k = int(round(float(_get(run, cfg, "k_ratio")) * n))
  sigma0 = float(_get(run, cfg, "sigma0"))
  s0 = float(cfg.theory_s0) if cfg.theory_s0 >= 0 else (k * sigma0 ** 2 if dyn == "logistic" else 0.0)
  with jax.enable_x64(True):
    lam, y, w = th.feature_constants(n, float(_get(run, cfg, "freq_exp")), float(_get(run, cfg, "imp_exp")),
                                     _get(run, cfg, "importance_mode"), _get(run, cfg, "p_norm"))
    # SGD on the summed MSE: linear_full relaxes at 2*lambda (spec §5.1), tied at 8*w*lambda*y
    r = th.rates(lam, y, w, dyn, linear_factor=2.0)
  scale = 1.0 / n if _get(run, cfg, "loss_reduction") == "mean" else 1.0
  return r, y, w, lam, s0, dyn, scale


def ode_loss(t: np.ndarray, run: dict, cfg) -> np.ndarray:
  r, y, w, lam, s0, dyn, scale = ode_setup(run, cfg)
  with jax.enable_x64(True):
    return scale * np.asarray(th.loss_curve(jnp.asarray(t, jnp.float64), r, y, w, lam, s0, dyn))


def analyze_run(run: dict, cfg, logs) -> dict:
  """Fits of one run: gamma over the automatic window, ceiling, target time, ODE comparison, front."""
  opts = fitlib.FitOptions.from_config(cfg)
  steps, L = logs.curve(run["run_id"], "loss")
  out = {"run_id": run["run_id"], "seed": run["seed"], "status": run["status"]}
  if steps.size < 3 or not np.isfinite(L[0]):
    return out
  L0 = float(L[0])
  m = steps > 0
  steps_p, Lp = steps[m], L[m]
  t = time_axis(steps_p, run, cfg)
  f = fitlib.fit_gamma(t, Lp, L0, opts, steps=steps_p)
  out.update(gamma=f["gamma"], fit_window=f["fit_window"], window_decades=f["window_decades"], L0=L0,
             plateau_loss=f["L_inf"], sigma_noise=f["sigma_noise"], final_loss=float(Lp[-1]),
             t_target=fitlib.time_to_target(t, Lp, float(cfg.accel_target_frac) * L0),
             time_unit="lr*step" if not np.array_equal(t, steps_p.astype(float)) else "step")
  # the same data fitted on L - L_inf (spec §6.2 step 5): over the raw-L window, and over its own automatic window
  Lsub = Lp - f["L_inf"]
  out["gamma_sub_same_window"] = fitlib.fit_gamma_on_window(t, np.where(Lsub > 0, Lsub, np.nan), f["fit_window"])
  fs = fitlib.fit_gamma(t, np.where(Lsub > 0, Lsub, np.nan), L0 - f["L_inf"], opts, steps=steps_p)
  out["gamma_sub_auto"], out["fit_window_sub_auto"] = fs["gamma"], fs["fit_window"]
  # plateau check: the log-log slope over the last half decade of t (about 0 once the ceiling is reached)
  late = t >= t[-1] / np.sqrt(10.0)
  out["gamma_late"] = -fitlib.slope(np.log(t[late]), np.log(Lp[late])) if late.sum() >= 3 else float("nan")
  _, rep = logs.curve(run["run_id"], "represented")
  out["represented_features"] = float(rep[-1]) if rep.size else float("nan")
  optimizer = _get(run, cfg, "optimizer")
  if optimizer == "sgd":
    Lode = ode_loss(t, run, cfg)
    out["gamma_ode_same_window"] = fitlib.fit_gamma_on_window(t, Lode, f["fit_window"])
    sel = Lode >= 0.1 * L0
    ratio = Lp[sel] / Lode[sel]
    out["ode_ratio_min"] = float(np.min(ratio)) if ratio.size else float("nan")
    out["ode_ratio_max"] = float(np.max(ratio)) if ratio.size else float("nan")
    # the no-superposition (ODE) exponent on the theory's own window [1/r_4, 1/r_{N/4}] and time to target
    r, y, w, lam, s0, dyn, scale = ode_setup(run, cfg)
    r = np.asarray(r)
    n = r.shape[0]
    tt = np.logspace(-2, 14, 800)
    Lt = ode_loss(tt, run, cfg)
    out["gamma0_ode"] = th.fit_fixed_window(tt, Lt, 1 / r[3], 1 / r[n // 4 - 1])
    out["t_target_ode"] = fitlib.time_to_target(tt, Lt, float(cfg.accel_target_frac) * float(Lt[0]))
  _, front = logs.curve(run["run_id"], "represented")
  if front.size == steps.size:
    out["front_slope"] = fitlib.front_slope(t, front[m], int(_get(run, cfg, "n_features")))
  return out


def _agg(vals):
  v = np.asarray([x for x in vals if x is not None and np.isfinite(x)], np.float64)
  if v.size == 0:
    return float("nan"), float("nan")
  return float(v.mean()), float(v.std())


def analyze(cfg, logs) -> dict:
  """Per-run fits and per-setting aggregates (mean and std over seeds)."""
  per_run = {r["run_id"]: (r, analyze_run(r, cfg, logs)) for r in logs.runs}
  settings = {}
  for run, res in per_run.values():
    settings.setdefault(_setting_key(run), []).append((run, res))
  out = []
  for key, items in settings.items():
    run0 = items[0][0]
    rec = dict(json.loads(key))
    for name in ("n_features", "k_ratio", "freq_exp", "imp_exp", "student", "optimizer", "lr", "batch",
                 "sigma0", "bias_lr_scale", "weight_decay", "importance_mode"):
      rec.setdefault(name, _get(run0, cfg, name))
    rec["latent_dim"] = int(round(float(rec["k_ratio"]) * int(rec["n_features"])))
    res = [r for _, r in items]
    rec["n_seeds"] = len(res)
    rec["n_diverged"] = sum(r["status"] != "ok" for r in res)
    for name in ("gamma", "plateau_loss", "represented_features", "final_loss", "gamma_ode_same_window",
                 "gamma0_ode", "front_slope", "t_target", "t_target_ode", "window_decades",
                 "gamma_sub_same_window", "gamma_sub_auto", "gamma_late"):
      mean, std = _agg([r.get(name) for r in res])
      rec[name] = mean
      if name in ("gamma", "plateau_loss", "front_slope"):
        rec[name + "_std"] = std
    rec["gamma_per_seed"] = [r.get("gamma") for r in res]
    rec["fit_window"] = [r.get("fit_window") for r in res]
    rec["fit_window_sub_auto"] = [r.get("fit_window_sub_auto") for r in res]
    rec["n_windows"] = sum(r.get("fit_window") is not None for r in res)
    mins = [r["ode_ratio_min"] for r in res if "ode_ratio_min" in r]
    maxs = [r["ode_ratio_max"] for r in res if "ode_ratio_max" in r]
    if mins:
      rec["ode_ratio_range"] = [float(np.nanmin(mins)), float(np.nanmax(maxs))]
    if np.isfinite(rec.get("gamma", np.nan)) and np.isfinite(rec.get("gamma0_ode", np.nan)):
      rec["accel_exponent_ratio_vs_ode"] = rec["gamma"] / rec["gamma0_ode"]
    if np.isfinite(rec.get("t_target", np.nan)) and np.isfinite(rec.get("t_target_ode", np.nan)):
      rec["accel_time_ratio_vs_ode"] = rec["t_target_ode"] / rec["t_target"]
    out.append(rec)
  return {"settings_fit": out, "per_run": [r for _, r in per_run.values()]}


# ----------------------------------------------------------------------------
# Checks


def _group(recs, drop):
  groups = {}
  for r in recs:
    key = json.dumps({k: v for k, v in r.items() if k in ("n_features", "student", "optimizer", "lr", "batch",
                                                           "sigma0", "bias_lr_scale", "weight_decay",
                                                           "importance_mode", "freq_exp", "imp_exp", "k_ratio")
                      and k not in drop}, sort_keys=True, default=str)
    groups.setdefault(key, []).append(r)
  return groups


def checks_no_sup(recs: list, per_run: list, cfg, logs) -> dict:
  out = {}
  rr = [r["ode_ratio_range"] for r in recs if "ode_ratio_range" in r]
  if rr:
    lo, hi = min(x[0] for x in rr), max(x[1] for x in rr)
    out["S1_ode_ratio"] = {"min": lo, "max": hi, "threshold": [0.90, 1.10], "pass": bool(lo >= 0.9 and hi <= 1.1)}
  cells = [r for r in recs if r["freq_exp"] + 2 * r["imp_exp"] >= 1.5 and r["optimizer"] == "sgd"]
  if cells:
    diffs = [abs(r["gamma"] - r["gamma_ode_same_window"]) for r in cells]
    fitted = [d for d in diffs if np.isfinite(d)]
    # The spec's criterion is over all cells: a cell without a fit window is not within 0.05.
    frac = float(np.mean([np.isfinite(d) and d <= 0.05 for d in diffs]))
    out["S4_exponent_map"] = {"cells": len(cells), "cells_with_fit": len(fitted),
                              "frac_within_0.05": frac,
                              "frac_of_fitted_within_0.05": float(np.mean([d <= 0.05 for d in fitted])) if fitted else None,
                              "max_abs_diff": float(np.max(fitted)) if fitted else None,
                              "pass": bool(frac >= 0.9)}
  fronts = [r for r in recs if np.isfinite(r.get("front_slope", np.nan))]
  if fronts:
    out["S5_front_slope"] = [{"freq_exp": r["freq_exp"], "imp_exp": r["imp_exp"], "slope": r["front_slope"],
                              "expected": 1 / (r["freq_exp"] + r["imp_exp"]),
                              "pass": bool(abs(r["front_slope"] * (r["freq_exp"] + r["imp_exp"]) - 1) <= 0.1)}
                             for r in fronts]
  s2 = linear_full_diagonal(cfg, logs)
  if s2 is not None:
    out["S2_linear_full_diagonal"] = s2
  s3 = time_unit_collapse(cfg, logs)
  if s3 is not None:
    out["S3_time_unit_collapse"] = s3
  return out


def linear_full_diagonal(cfg, logs, max_feature: int = 20, lower: float = 0.1):
  """S2: for ``linear_full`` SGD runs, the logged probes s_i/a_i (i <= 20) against the spec's
  1 - exp(-2 lambda_i t) while ``lower <= pred < 0.9`` (the lower cut is ours: below it SGD
  sampling noise of rare features dominates). Also reported, against the same selection:
  the exact mean of the SGD map (``theory.linear_full_mean_fraction``: the full C with its
  p_i p_j off-diagonal, discrete steps), per seed and for the mean over seeds."""
  dev = {"spec": 0.0, "exact_map": 0.0, "spec_seed_mean": 0.0, "exact_map_seed_mean": 0.0}
  n = 0
  names = [k for k in (logs.metrics[0] if logs.metrics else {}) if k.startswith("frac_")]
  groups = {}
  for r in logs.runs:
    if _get(r, cfg, "student") != "linear_full" or _get(r, cfg, "optimizer") != "sgd":
      continue
    groups.setdefault(json.dumps(r.get("coords", {}), sort_keys=True), []).append(r)
  for runs in groups.values():
    r0 = runs[0]
    _, _, _, lam, _, _, _ = ode_setup(r0, cfg)
    lam = np.asarray(lam)
    lr = float(_get(r0, cfg, "lr"))
    for name in names:
      i = int(name[5:])
      if i > max_feature:
        continue
      curves = [logs.curve(r["run_id"], name) for r in runs]
      steps = curves[0][0]
      m = steps > 0
      t = time_axis(steps[m], r0, cfg)
      pred = 1 - np.exp(-2 * lam[i - 1] * t)
      exact = th.linear_full_mean_fraction(int(_get(r0, cfg, "n_features")), float(_get(r0, cfg, "freq_exp")),
                                           float(_get(r0, cfg, "imp_exp")), _get(r0, cfg, "importance_mode"), lr,
                                           steps[m], _get(r0, cfg, "p_norm"))[:, i - 1]
      sel = (pred >= lower) & (pred < 0.9)
      if not sel.any():
        continue
      fracs = np.stack([c[1][m] for c in curves])
      n += 1
      dev["spec"] = max(dev["spec"], float(np.max(np.abs(fracs[:, sel] / pred[sel] - 1))))
      dev["exact_map"] = max(dev["exact_map"], float(np.max(np.abs(fracs[:, sel] / exact[sel] - 1))))
      mean = fracs.mean(0)
      dev["spec_seed_mean"] = max(dev["spec_seed_mean"], float(np.max(np.abs(mean[sel] / pred[sel] - 1))))
      dev["exact_map_seed_mean"] = max(dev["exact_map_seed_mean"], float(np.max(np.abs(mean[sel] / exact[sel] - 1))))
  if n == 0:
    return None
  return {"features_checked": n, "max_rel_deviation": dev["spec"], "threshold": 0.05, "lower_cut": lower,
          "max_rel_deviation_vs_exact_mean_map": dev["exact_map"],
          "seed_mean_max_rel_deviation": dev["spec_seed_mean"],
          "seed_mean_max_rel_deviation_vs_exact_mean_map": dev["exact_map_seed_mean"],
          "pass": bool(dev["spec"] <= 0.05)}


def time_unit_collapse(cfg, logs):
  """S3: curves of the same setting and seed at different lr, against t = lr*step,
  agree within 5% while L >= 0.1 L_0 (log-log interpolation on the common t range)."""
  by = {}
  for r in logs.runs:
    c = dict(r.get("coords", {}))
    lr = c.pop("lr", None)
    if lr is None:
      return None
    by.setdefault(json.dumps(c, sort_keys=True) + f"/{r['seed']}", []).append((lr, r))
  worst = 0.0
  n = 0
  for items in by.values():
    if len(items) < 2:
      continue
    curves = []
    for lr, r in items:
      s, L = logs.curve(r["run_id"], "loss")
      m = s > 0
      curves.append((lr * s[m].astype(float), L[m], L[0]))
    lo = max(c[0][0] for c in curves)
    hi = min(c[0][-1] for c in curves)
    if hi <= lo:
      continue
    grid = np.geomspace(lo, hi, 50)
    Ls = np.stack([np.exp(np.interp(np.log(grid), np.log(t), np.log(L))) for t, L, _ in curves])
    keep = np.all(Ls >= 0.1 * min(c[2] for c in curves), axis=0)
    if keep.sum() == 0:
      continue
    dev = np.max(Ls[:, keep], axis=0) / np.min(Ls[:, keep], axis=0) - 1
    worst = max(worst, float(np.max(dev)))
    n += 1
  if n == 0:
    return None
  return {"groups": n, "max_rel_deviation": worst, "threshold": 0.05, "pass": bool(worst <= 0.05)}


def checks_bottleneck(recs: list) -> dict:
  out = {}
  sup = [r for r in recs if r["k_ratio"] <= 0.25]
  p1 = []
  for key, g in _group(sup, ("freq_exp", "imp_exp")).items():
    gam = [r["gamma"] for r in g]
    fin = [x for x in gam if np.isfinite(x)]
    p1.append({"setting": json.loads(key), "gammas": gam,
               "spread": float(max(fin) - min(fin)) if fin else None,
               "pass": bool(len(fin) == len(gam) and all(abs(x - 1) <= 0.15 for x in fin)
                            and max(fin) - min(fin) <= 0.2)})
  out["P1_universal_gamma"] = {"groups": p1, "pass": bool(p1 and all(x["pass"] for x in p1))}
  p2, p3, p4 = [], [], []
  for key, g in _group(recs, ("k_ratio",)).items():
    g = sorted(g, key=lambda r: r["k_ratio"])
    ks = [r["k_ratio"] for r in g]
    gam = [r["gamma"] for r in g]
    g0 = g[-1].get("gamma0_ode", float("nan"))
    seq = gam + ([] if 1.0 in ks else [g0])  # ends at the K = N value (simulated, else the ODE's)
    mono = all(seq[i] + 0.05 >= seq[i + 1] for i in range(len(seq) - 1)) if all(np.isfinite(seq)) else False
    setting = json.loads(key)
    p2.append({"setting": setting, "k_ratio": ks, "gamma": gam, "gamma_K_eq_N": seq[-1], "pass": bool(mono)})
    small = g[0]
    ref = next((r["gamma"] for r in g if r["k_ratio"] == 1.0), g0)
    if np.isfinite(small["gamma"]) and np.isfinite(ref):
      p3.append({"setting": setting, "k_ratio": small["k_ratio"], "gamma_small_K": small["gamma"],
                 "gamma_K_eq_N": ref, "accel_exponent_ratio": small["gamma"] / ref,
                 "accel_time_ratio_vs_ode": small.get("accel_time_ratio_vs_ode"),
                 "pass": bool(small["gamma"] / ref >= 2)})
    sel = [r for r in g if 1 / 64 - 1e-9 <= r["k_ratio"] <= 0.25 + 1e-9]
    if len(sel) >= 2:
      K = np.array([r["latent_dim"] for r in sel], float)
      Linf = np.array([r["plateau_loss"] for r in sel], float)
      dec = bool(np.all(np.diff(Linf) < 0))
      sl = fitlib.slope(np.log(K), np.log(Linf)) if np.all(Linf > 0) else float("nan")
      p4.append({"setting": setting, "K": K.tolist(), "plateau_loss": Linf.tolist(), "loglog_slope": sl,
                 "strictly_decreasing": dec, "pass": bool(dec and -1.3 <= sl <= -0.7)})
  out["P2_monotone_transition"] = {"groups": p2, "pass": bool(p2 and all(x["pass"] for x in p2))}
  at = [x for x in p3 if abs(x["setting"].get("freq_exp", 0) - 1.2) < 1e-9 and x["setting"].get("imp_exp", 0) == 0]
  out["P3_acceleration"] = {"groups": p3, "pass_at_a1.2_b0": bool(at and all(x["pass"] for x in at)) if at else None}
  out["P4_ceiling"] = {"groups": p4, "pass": bool(p4 and all(x["pass"] for x in p4))}
  return out


# ----------------------------------------------------------------------------
# Engine hooks


def _fits(cfg, logs, kind: str) -> dict:
  """:func:`analyze` plus the checks of ``kind``, cached on the logs object
  (``summarize_logs`` and ``figures`` both need them)."""
  cached = getattr(logs, "_superposition_fits", None)
  if cached is not None and cached[0] == kind:
    return cached[1]
  res = analyze(cfg, logs)
  recs = res["settings_fit"]
  checks = checks_no_sup(recs, res["per_run"], cfg, logs) if kind == "no_sup" else (
      checks_bottleneck(recs) if kind == "bottleneck" else {})
  out = {"settings_fit": recs, "checks": checks, "per_run": res["per_run"]}
  object.__setattr__(logs, "_superposition_fits", (kind, out))
  return out


def summarize_logs(cfg, logs, kind: str) -> dict:
  """The engine's ``summarize_logs`` hook: fits and checks from the logged curves."""
  fits = _fits(cfg, logs, kind)
  return _clean({"settings_fit": fits["settings_fit"], "checks": fits["checks"],
                 "fit_options": fitlib.FitOptions.from_config(cfg).__dict__,
                 "time_unit": "t = lr*step for SGD, step for Adam (fit_time_unit=auto)"})


def _clean(o):
  if isinstance(o, dict):
    return {k: _clean(v) for k, v in o.items()}
  if isinstance(o, (list, tuple)):
    return [_clean(v) for v in o]
  if isinstance(o, (np.floating, float)):
    return float(o) if math.isfinite(o) else None
  if isinstance(o, np.integer):
    return int(o)
  if isinstance(o, np.bool_):
    return bool(o)
  return o


def figures(cfg, logs, outdir, kind: str) -> list:
  """Draw the figures of ``kind`` from the fits (see :func:`summarize_logs`)."""
  recs = _fits(cfg, logs, kind)["settings_fit"]
  figs = [_curves_figure(cfg, logs, recs, outdir, kind)]
  if kind == "no_sup":
    figs.append(_wave_figure(cfg, logs, outdir))
    figs.append(_map_figure(recs, outdir))
  if kind == "bottleneck":
    figs.append(_bottleneck_figure(recs, outdir))
  if kind == "robustness":
    figs.append(_robust_figure(recs, outdir))
  return [f for f in figs if f]


def _label(rec, keys):
  return ", ".join(f"{k}={rec[k]:g}" if isinstance(rec[k], float) else f"{k}={rec[k]}" for k in keys if k in rec)


def _curves_figure(cfg, logs, recs, outdir, kind):
  settings = {}
  for r in logs.runs:
    settings.setdefault(_setting_key(r), []).append(r)
  keys = sorted({k for r in logs.runs for k in r.get("coords", {})})
  panel_key = [k for k in keys if k in ("freq_exp", "imp_exp")]
  panels = {}
  for skey, runs in settings.items():
    c = json.loads(skey)
    panels.setdefault(tuple(c.get(k) for k in panel_key), []).append((c, runs))
  n = max(1, len(panels))
  cols = min(4, n)
  rows = int(math.ceil(n / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
  for ax, (pk, items) in zip(axes.flat, panels.items()):
    for c, runs in items:
      ids = [r["run_id"] for r in runs]
      steps, Y = logs.curves(ids, "loss")
      m = steps > 0
      if not m.any():
        continue
      t = time_axis(steps[m], runs[0], cfg)
      line = plotting.band(ax, t, Y[:, m], label=_label(c, [k for k in keys if k not in panel_key]) or "sim")
      if kind == "no_sup" and _get(runs[0], cfg, "optimizer") == "sgd":
        ax.plot(t, ode_loss(t, runs[0], cfg), ls="--", color=line.get_color(), lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(", ".join(f"{k}={v}" for k, v in zip(panel_key, pk)) or "loss", fontsize=8)
    ax.set_xlabel("t (lr*step for SGD, step for Adam)")
    ax.set_ylabel("loss")
    ax.legend(fontsize=6)
  for ax in list(axes.flat)[n:]:
    ax.axis("off")
  fig.suptitle("loss curves (median, IQR over seeds)" + ("; dashed: per-feature ODE" if kind == "no_sup" else ""),
               fontsize=9)
  return plotting.savefig(fig, pathlib.Path(outdir) / f"superposition_{kind}_curves.png")


def _wave_figure(cfg, logs, outdir):
  """E2: s_i / y_i at the probe features against (log t, log i), first run of the first setting."""
  run = logs.runs[0]
  names = sorted({k for m in logs.metrics[:200] for k in m if k.startswith("frac_")}, key=lambda k: int(k[5:]))
  if not names:
    return None
  idx = np.array([int(k[5:]) for k in names])
  steps, _ = logs.curve(run["run_id"], names[0])
  m = steps > 0
  t = time_axis(steps[m], run, cfg)
  Z = np.stack([logs.curve(run["run_id"], k)[1][m] for k in names])
  fig, ax = plt.subplots(figsize=(4.5, 3.2))
  pc = ax.pcolormesh(np.log10(t), np.log10(idx), np.clip(Z, 0, 1.2), shading="nearest", cmap="viridis")
  fig.colorbar(pc, ax=ax, label="s_i / y_i")
  _, front = logs.curve(run["run_id"], "represented")
  ax.plot(np.log10(t), np.log10(np.maximum(front[m], 0.5)), "w--", lw=1, label="front i*(t)")
  ax.set_xlabel("log10 t")
  ax.set_ylabel("log10 i")
  ax.set_title(f"traveling wave ({run.get('name', '')})", fontsize=7)
  ax.legend(fontsize=6)
  return plotting.savefig(fig, pathlib.Path(outdir) / "superposition_wave.png")


def _map_figure(recs, outdir):
  a = sorted({r["freq_exp"] for r in recs})
  b = sorted({r["imp_exp"] for r in recs})
  if len(a) < 2 and len(b) < 2:
    return None
  G = np.full((len(b), len(a)), np.nan)
  D = np.full((len(b), len(a)), np.nan)
  for r in recs:
    i, j = b.index(r["imp_exp"]), a.index(r["freq_exp"])
    G[i, j] = r["gamma"]
    D[i, j] = r["gamma"] - r.get("gamma_ode_same_window", np.nan)
  fig, axes = plt.subplots(1, 2, figsize=(8, 3))
  for ax, M, title in ((axes[0], G, "fitted gamma (sim)"), (axes[1], D, "gamma_sim - gamma_ODE (same window)")):
    pc = ax.imshow(M, origin="lower", aspect="auto", cmap="coolwarm" if "-" in title else "viridis")
    ax.set_xticks(range(len(a)), [f"{x:g}" for x in a])
    ax.set_yticks(range(len(b)), [f"{x:g}" for x in b])
    ax.set_xlabel("a (freq_exp)")
    ax.set_ylabel("b (imp_exp)")
    ax.set_title(title, fontsize=8)
    fig.colorbar(pc, ax=ax)
    for (i, j), v in np.ndenumerate(M):
      if np.isfinite(v):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
  return plotting.savefig(fig, pathlib.Path(outdir) / "superposition_exponent_map.png")


def _bottleneck_figure(recs, outdir):
  fig, axes = plt.subplots(1, 2, figsize=(8, 3))
  groups = _group(recs, ("k_ratio",))
  for key, g in groups.items():
    g = sorted(g, key=lambda r: r["k_ratio"])
    lab = _label(json.loads(key), ("freq_exp", "imp_exp", "lr", "batch", "optimizer", "student"))
    kr = [r["k_ratio"] for r in g]
    line = axes[0].errorbar(kr, [r["gamma"] for r in g], yerr=[r.get("gamma_std", 0) for r in g], marker="o",
                            ms=3, label=lab)
    axes[0].axhline(g[-1].get("gamma0_ode", np.nan), color=line[0].get_color(), ls=":", lw=0.8)
    axes[1].plot([r["latent_dim"] for r in g], [r["plateau_loss"] for r in g], marker="o", ms=3, label=lab)
  axes[0].axhline(1.0, color="k", lw=0.8)
  if any(r["gamma"] is not None and np.isfinite(r["gamma"]) for r in recs):   # else no data limits to log-scale
    axes[0].set_xscale("log")
  axes[0].set_xlabel("K/N")
  axes[0].set_ylabel("gamma (dotted: K=N ODE)")
  axes[1].set_xscale("log")
  if any(np.isfinite(r["plateau_loss"]) and r["plateau_loss"] > 0 for r in recs):
    axes[1].set_yscale("log")
  axes[1].set_xlabel("K")
  axes[1].set_ylabel("plateau L_inf")
  axes[0].legend(fontsize=5)
  return plotting.savefig(fig, pathlib.Path(outdir) / "superposition_bottleneck.png")


def _robust_figure(recs, outdir):
  fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(recs)), 3))
  labels = [_label(r, ("optimizer", "batch", "lr", "sigma0", "weight_decay", "importance_mode", "k_ratio"))
            for r in recs]
  ax.bar(range(len(recs)), [r["gamma"] if np.isfinite(r["gamma"]) else 0 for r in recs],
         yerr=[r.get("gamma_std", 0) for r in recs])
  ax.set_xticks(range(len(recs)), labels, rotation=90, fontsize=5)
  ax.set_ylabel("gamma")
  return plotting.savefig(fig, pathlib.Path(outdir) / "superposition_robustness.png")


# ----------------------------------------------------------------------------
# Theory tables

# Spec tolerances (T1-T3) on the domains where the spec expects the asymptotic formula to hold at N = 1e5:
# linear/teacher_scale with a + 2b >= 2 (T1; 0.02 at a + 2b = 2, as for (2, 0)), logistic/teacher_scale with
# b = 0 and a >= 1.5 (T2), loss_weight with a + b >= 2 (T3). Elsewhere (a + 2b or a + b near 1, or logistic with
# b > 0, which carries ln(a_i / s0) corrections, spec §5.4) the finite-N fit is reported without a check.
def _tolerance(a, b, dyn, mode) -> float | None:
  if mode == "loss_weight":
    return 0.015 if a + b >= 2.0 - 1e-9 else None
  if dyn == "linear":
    if a + 2 * b < 2.0 - 1e-9:
      return None
    return 0.02 if a + 2 * b <= 2.0 + 1e-9 else 0.01
  if b == 0 and a >= 1.5 - 1e-9:
    return 0.02
  return None


def summarize_theory(cfg, runs: list) -> dict:
  rows = []
  for run in runs:
    for n, a, b, di, mi, g, ga, lo, hi in run["final"]["table"]:
      dyn, mode = th.DYNAMICS[int(di)], sdata.IMPORTANCE_MODES[int(mi)]
      tol = _tolerance(a, b, dyn, mode)
      row = {"freq_exp": a, "imp_exp": b, "dynamics": dyn, "importance_mode": mode, "n_features": int(n),
             "gamma_fit": g, "gamma_asymptotic": ga, "fit_window": [lo, hi], "tolerance": tol}
      row["within_tolerance"] = None if tol is None or n < 1e5 else bool(abs(g - ga) <= tol)
      rows.append(row)
  asym = [r for r in rows if r["within_tolerance"] is not None]
  return {"rows": rows, "asymptotic_check": {"rows_checked": len(asym),
                                             "rows_within_tolerance": sum(r["within_tolerance"] for r in asym)}}


def theory_figures(cfg, logs, outdir) -> list:
  rows = summarize_theory(cfg, logs.runs)["rows"]
  fig, ax = plt.subplots(figsize=(4, 4))
  for dyn, mk in (("linear", "o"), ("logistic", "s")):
    for mode, col in (("teacher_scale", "C0"), ("loss_weight", "C1")):
      sel = [r for r in rows if r["dynamics"] == dyn and r["importance_mode"] == mode]
      if sel:
        ax.scatter([r["gamma_asymptotic"] for r in sel], [r["gamma_fit"] for r in sel], marker=mk, color=col,
                   s=12, label=f"{dyn}, {mode}", alpha=0.7)
  lim = [0, max([1.0] + [r["gamma_asymptotic"] for r in rows] + [r["gamma_fit"] for r in rows]) * 1.05]
  ax.plot(lim, lim, "k--", lw=0.8)
  ax.set_xlabel("asymptotic gamma")
  ax.set_ylabel("fitted gamma (finite N)")
  ax.legend(fontsize=6)
  return [plotting.savefig(fig, pathlib.Path(outdir) / "superposition_theory.png")]
