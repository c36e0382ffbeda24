"""Associative memory (Sec. 4.2, Fig. 2; spec checks C5, C6, C8).

Two experiments on the mixture of :func:`attnlab.mhla.tasks.assoc_memory_data`
(d = 4, D = 2d = 8, n = d + 1 = 5 tokens, ψ = 288, N = 2^14):

* :func:`experiment` (one-shot, float64; Fig. 2a, C5, C6): per unidentifiable
  fraction (a traced hyperparameter, so all fractions share one program), the
  certificate (λ_min, λ_max, null-space dimension of Λ_D) and Algorithm 1's
  p-distance to the ground truth with the exact solvers (``cholesky``,
  ``eigh_pinv``), with fixed-budget gradient descent (``gd_iters`` steps of
  size 1/λ_max from 0), and for a *random* minimiser (the minimum-norm solution
  plus a random null-space component, ``null_scale`` per unit direction),
  whose train loss and outputs on fresh Gaussian inputs are also reported.
* :func:`sgd_experiment` (iterative, float32; Fig. 2b, C8): H-head MHLA trained
  by Adam on the same data; ``evaluate`` logs the train MSE and the p-distance
  ‖p(Θ) − p(Θ_gt)‖ (absolute and relative to ‖p(Θ_gt)‖ = 4).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import Iterative, OneShot
from attnlab.mhla import features as F
from attnlab.mhla import regression as R
from attnlab.mhla import tasks as T
from attnlab.mhla import train as TR


def _validate(cfg) -> None:
  check(isinstance(cfg.d, int) and 1 <= cfg.d <= 16, "d", f"must be an int in [1, 16] (D = 2d <= 32), got {cfg.d!r}")
  check(isinstance(cfg.n_samples, int) and cfg.n_samples >= 1, "n_samples", f"must be an int >= 1, got {cfg.n_samples!r}")
  fr = cfg.frac_unident if isinstance(cfg.frac_unident, (tuple, list)) else (cfg.frac_unident,)
  check(all(0.0 <= f <= 1.0 for f in fr), "frac_unident", f"must lie in [0, 1], got {cfg.frac_unident!r}")
  check_choice(cfg, "am_label", ("exact", "printed"))


def experiment(cfg) -> OneShot:
  """Fig. 2a / C5 / C6: certificate and Algorithm 1 p-distances per mixture fraction."""
  _validate(cfg)
  check_positive(cfg, "gd_iters", "n_fresh", "chunk")
  check_positive(cfg, "null_scale", strict=False)
  d, N, label = cfg.d, cfg.n_samples, cfg.am_label
  D = 2 * d
  gd_iters, tol, pinv_rtol, chunk = cfg.gd_iters, cfg.certificate_tol, cfg.pinv_rtol, cfg.chunk
  n_fresh, null_scale = cfg.n_fresh, cfg.null_scale

  @jax.jit
  def make_data(key, hp):
    return T.assoc_memory_data(key, d, N, hp["frac_unident"], label, jnp.float64)

  @jax.jit
  def compute(key, hp, data):
    Zs, Ys = data
    V, Q = T.assoc_memory_teacher(d, jnp.float64)
    p_gt = F.p_of_params(V, Q)
    neq = R.normal_equations(Zs, Ys, chunk=chunk)
    cert = R.certificate(neq.A, neq.count, tol)
    lam, U = jnp.linalg.eigh(neq.A)
    dist = lambda p: F.p_distance(p, p_gt)
    p_chol = R.solve(neq.A, neq.B, "cholesky", pinv_rtol=pinv_rtol).T
    p_pinv = R.solve(neq.A, neq.B, "eigh_pinv", pinv_rtol=pinv_rtol).T
    p_gd = R.solve(neq.A, neq.B, "gd", iters=gd_iters, lam_max=lam[-1]).T
    # A random minimiser: p_pinv + a random combination of null-space directions of Λ_D.
    null = (lam <= tol * lam[-1]).astype(Zs.dtype)
    g = jax.random.normal(jax.random.fold_in(key, 7), (D, lam.shape[0]), Zs.dtype)
    p_rand = p_pinv + null_scale * (g * null[None, :]) @ U.T
    sse = lambda p: R.streamed_sse(p, Zs, Ys, chunk=chunk)
    sse_pinv, var, _ = sse(p_pinv)
    sse_rand, _, _ = sse(p_rand)
    Zf = jax.random.normal(jax.random.fold_in(key, 8), (n_fresh, D, d + 1), Zs.dtype)
    Hf = F.features_H_batch(Zf)
    out_pinv, out_rand = F.predict_p(p_pinv, Hf), F.predict_p(p_rand, Hf)
    fresh_diff = jnp.sqrt(jnp.sum((out_rand - out_pinv) ** 2) / jnp.sum(out_pinv ** 2))
    return {"lambda_min": cert.lambda_min, "lambda_max": cert.lambda_max, "lambda_ratio": cert.ratio,
            "null_dim": cert.null_dim, "identifiable": cert.identifiable,
            "p_distance_cholesky": dist(p_chol), "p_distance_eigh_pinv": dist(p_pinv),
            "p_distance_gd": dist(p_gd), "p_distance_random_minimiser": dist(p_rand),
            "train_rel_mse_eigh_pinv": sse_pinv / var,
            "train_rel_mse_cholesky": sse(p_chol)[0] / var,
            "train_loss_delta_random": (sse_rand - sse_pinv) / neq.count,
            "fresh_output_rel_diff_random": fresh_diff, "p_gt_norm": jnp.linalg.norm(p_gt),
            "frac_unident_measured": jnp.mean(jnp.all(jnp.abs(
                jnp.einsum("nij,nik->njk", Zs[:, :d, :d], Zs[:, :d, :d]) - jnp.eye(d)) < 1e-8, axis=(1, 2)))}

  # jit=False: the engine calls the jitted compute once per run. Under the engine's
  # jit(vmap(compute)) this program hung on CPU (all threads idle in a futex; jax 0.10.2),
  # although every piece of it vmaps fine on its own.
  return OneShot(compute=compute, jit=False, x64=True, make_data=make_data, hparams=("frac_unident",),
                 summarize=summarize, figures=figures)


def _by_frac(runs, key):
  out = {}
  for r in runs:
    if r["status"] == "ok" and key in r["final"]:
      out.setdefault(float(r["frac_unident"]), []).append(r["final"][key])
  return {f: float(np.median(v)) for f, v in sorted(out.items())}


def summarize(cfg, runs):
  """Per fraction (medians over seeds) and the C5/C6 verdicts as measured."""
  keys = ("lambda_min", "lambda_max", "null_dim", "p_distance_cholesky", "p_distance_eigh_pinv",
          "p_distance_gd", "p_distance_random_minimiser", "train_loss_delta_random",
          "fresh_output_rel_diff_random", "train_rel_mse_cholesky")
  table = {k: {str(f): v for f, v in _by_frac(runs, k).items()} for k in keys}
  lam = _by_frac(runs, "lambda_min")
  fr = sorted(lam)
  out = {"by_frac": table}
  # Per seed monotonicity of λ_min in the fraction (C5).
  seeds = sorted({r["seed"] for r in runs})
  mono = []
  for s in seeds:
    rs = sorted((r for r in runs if r["seed"] == s and r["status"] == "ok"), key=lambda r: r["frac_unident"])
    v = [r["final"]["lambda_min"] for r in rs]
    mono.append(all(a > b for a, b in zip(v, v[1:])))
  out["c5_lambda_min_monotone_decreasing"] = bool(all(mono))
  if 0.95 in lam:
    out["c5_lambda_min_at_0.95"] = lam[0.95]
  if 1.0 in lam:
    out["c5_null_dim_at_1.0"] = _by_frac(runs, "null_dim")[1.0]
    out["c5_lambda_ratio_at_1.0"] = _by_frac(runs, "lambda_min")[1.0] / _by_frac(runs, "lambda_max")[1.0]
  # C6: exact solver p-distance < 1e-8 wherever λ_min > 1e-6 (every run).
  ok = [r for r in runs if r["status"] == "ok"]
  exact = [r["final"]["p_distance_cholesky"] for r in ok if r["final"]["lambda_min"] > 1e-6]
  out["c6_max_exact_p_distance_where_lambda_gt_1e-6"] = float(max(exact)) if exact else None
  gd = _by_frac(runs, "p_distance_gd")
  lmax = _by_frac(runs, "lambda_max")
  pos = [f for f in fr if lam[f] > cfg.certificate_tol * lmax[f]]  # certificate passes
  out["c6_gd_p_distance_monotone_in_lambda_where_lambda_gt_0"] = bool(all(
      gd[a] < gd[b] for a, b in zip(pos, pos[1:])))
  # With lambda_min = 0 included: GD from 0 never leaves the range of Λ_D, and here the
  # ground truth is the minimum-norm minimiser, so the λ = 0 point need not be the worst.
  out["c6_gd_p_distance_monotone_in_lambda_all"] = bool(all(gd[a] < gd[b] for a, b in zip(fr, fr[1:])))
  return out


def figures(cfg, logs, outdir):
  """fig2a.png: p-distance against λ_min (exact, pinv, fixed-budget GD) and λ_min against the fraction."""
  import matplotlib.pyplot as plt
  from attnlab.engine import plotting
  runs = [r for r in logs.runs if r["status"] == "ok"]
  if not runs:
    return []
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(8, 3.2))
  lam = np.array([r["final"]["lambda_min"] for r in runs])
  lam_plot = np.maximum(lam, 1e-18)
  for key, mk in (("p_distance_cholesky", "o"), ("p_distance_eigh_pinv", "x"), ("p_distance_gd", "s"),
                  ("p_distance_random_minimiser", "^")):
    ax0.loglog(lam_plot, np.maximum([r["final"][key] for r in runs], 1e-18), mk, ms=4,
               label=key.replace("p_distance_", ""))
  ax0.set_xlabel("certificate λ_min(Λ_D)  (0 drawn at 1e-18)")
  ax0.set_ylabel("‖p(Θ̂) − p(Θ)‖_F")
  ax0.set_title(f"Fig. 2a: Algorithm 1 (gd: {cfg.gd_iters} steps)")
  ax0.legend()
  fr = np.array([r["frac_unident"] for r in runs])
  ax1.semilogy(fr, lam_plot, "o")
  ax1.set_xlabel("unidentifiable fraction")
  ax1.set_ylabel("λ_min(Λ_D)")
  ax1.set_title(f"certificate, N = {cfg.n_samples}")
  return [plotting.savefig(fig, f"{outdir}/fig2a.png")]


# --- Fig. 2b: SGD ---------------------------------------------------------------


def sgd_experiment(cfg) -> Iterative:
  """Fig. 2b / C8: Adam-trained H-head MHLA on identifiable vs unidentifiable data."""
  _validate(cfg)
  check(isinstance(cfg.heads, int) and cfg.heads >= 1, "heads", f"must be an int >= 1, got {cfg.heads!r}")
  check_positive(cfg, "lr", "init_std", "mse_threshold")
  check_positive(cfg, "batch", strict=False)
  check_positive(cfg, "weight_decay", strict=False)
  d, N, label, H = cfg.d, cfg.n_samples, cfg.am_label, cfg.heads
  D = 2 * d
  model_kw = {"name": f"mhla:{H}"}
  init, step, evaluate_mse = TR.make(model_kw, {}, cfg.batch)
  V_gt, Q_gt = T.assoc_memory_teacher(d)
  p_gt = F.p_of_params(V_gt, Q_gt)

  def make_data(key, hp):
    Z, Y = T.assoc_memory_data(key, d, N, hp["frac_unident"], label)
    return {"Z": Z, "Y": Y, "yvar": TR.label_var(Y)}

  def evaluate(state, hp, data):
    m = evaluate_mse(state, hp, data)
    V, Q = state["params"]
    dist = F.p_distance(F.p_of_params(V, Q), p_gt)
    return {**m, "p_distance": dist, "p_distance_rel": dist / jnp.linalg.norm(p_gt)}

  def summarize(cfg, runs):
    thr = cfg.mse_threshold
    table: dict = {}
    for r in runs:
      if r["status"] != "ok":
        continue
      key = f"frac={r.get('frac_unident', cfg.frac_unident)},init_std={r.get('init_std', cfg.init_std)}"
      row = table.setdefault(key, {}).setdefault(f"heads={r.get('heads', cfg.heads)}", {"p_distance": [], "skipped": 0})
      if r["final"]["train_mse"] < thr:
        row["p_distance"].append(r["final"]["p_distance"])
      else:
        row["skipped"] += 1
    out = {}
    for k, rows in table.items():
      out[k] = {h: {"median_p_distance": float(np.median(v["p_distance"])) if v["p_distance"] else None,
                    "n_converged": len(v["p_distance"]), "n_skipped": v["skipped"]} for h, v in rows.items()}
    ident = [r["final"]["p_distance_rel"] for r in runs if r["status"] == "ok"
             and r.get("frac_unident", cfg.frac_unident) < 1.0 and r["final"]["train_mse"] < thr]
    return {"p_distance_converged": out, "p_gt_norm": float(jnp.linalg.norm(p_gt)), "mse_threshold": thr,
            "c8_hard_max_rel_p_distance_identifiable_converged": float(max(ident)) if ident else None,
            "c8_hard_n_converged_identifiable": len(ident)}

  return Iterative(init=init, step=step, evaluate=evaluate, make_data=make_data,
                   hparams=("lr", "init_std", "weight_decay", "frac_unident"), summarize=summarize,
                   figures=sgd_figures, plot_metrics=("train_mse", "p_distance"), log_x=False)


def sgd_figures(cfg, logs, outdir):
  """fig2b.png: final p-distance per head count, identifiable vs unidentifiable."""
  import matplotlib.pyplot as plt
  from attnlab.engine import plotting
  runs = [r for r in logs.runs if r["status"] == "ok"]
  if not runs:
    return []
  fig, ax = plt.subplots(figsize=(4.2, 3.2))
  fracs = sorted({r.get("frac_unident", cfg.frac_unident) for r in runs})
  for i, f in enumerate(fracs):
    rs = [r for r in runs if r.get("frac_unident", cfg.frac_unident) == f]
    hs = np.array([r.get("heads", cfg.heads) for r in rs], float)
    pd = np.array([r["final"]["p_distance"] for r in rs])
    conv = np.array([r["final"]["train_mse"] < cfg.mse_threshold for r in rs])
    x = np.log2(hs) + (i - 0.5) * 0.15 + 0.05 * (np.array([r.get("init_std", cfg.init_std) for r in rs]) > 0.5)
    ax.semilogy(x[conv], pd[conv], "o", label=f"unident. frac {f} (converged)", color=f"C{i}")
    ax.semilogy(x[~conv], pd[~conv], "x", label=f"unident. frac {f} (MSE ≥ {cfg.mse_threshold:g})", color=f"C{i}")
  ax.set_xlabel("log2 heads")
  ax.set_ylabel("‖p(Θ) − p(Θ_gt)‖_F")
  ax.set_title("Fig. 2b: Adam-trained MHLA")
  ax.legend(fontsize=6)
  return [plotting.savefig(fig, f"{outdir}/fig2b.png")]
