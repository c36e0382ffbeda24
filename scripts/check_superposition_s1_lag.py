"""Where S1's late excess comes from: a per-feature lag, not interference.

S1 (spec): ``tied_relu_nobias``, N = K = 128, a = 1.2, b = 0, B = 512, SGD
lr 0.25, sigma0 = 1e-2; L_sim / L_ODE(logistic, rate 8 lr lambda_i, s0 = K
sigma0^2) should stay in [0.90, 1.10] while L_ODE >= 0.1 L_0. This script
runs the S1 setting (one ``jit(vmap(simulate))`` over the seeds, evaluation
set 131072 samples per seed) and splits the ratio at every evaluation into

* ``L_sim / L_diag``: L_diag = sum_i lambda_i (1 - s_i)^2 is the loss the
  simulated diagonal s_i = ||w_i||^2 would have without interference, so this
  factor is interference (and Monte Carlo noise);
* ``L_diag / L_ODE``: the simulated s_i against the ODE's, i.e. a lag.

Then, for every feature that crosses s_i = 1/2, it compares the crossing time
with the ODE's and converts the delay into an effective initial condition,
``s0_eff / s0 = exp(-r_i (t_sim - t_ODE))``, next to ``(K - m) / K`` where m
is the number of features already past 1/2 at that time: the share of R^K not
yet taken by learned features, in which a new feature's initial weight
vector can grow without being suppressed as interference.

A causal test of that reading (``--init``): the same runs (same data and
evaluation streams) from three initializations with s_i(0) = K sigma0^2
(``models.INIT_DISTS``, config field ``init_dist``),

* ``gaussian``: the spec's W_ij ~ N(0, sigma0^2) (||w_i||^2 spreads as chi^2_K);
* ``normalized``: the same Gaussian W with every column rescaled to
  ||w_i||^2 = K sigma0^2 exactly (no spread of s_i(0), overlaps kept);
* ``orthogonal``: W = sigma0 sqrt(K) Q with Q orthogonal (no spread and no
  overlaps: w_i . w_j = 0), only for K = N.

If crowding is the cause, ``orthogonal`` follows the per-feature ODE and the
other two lag.

  python scripts/check_superposition_s1_lag.py [--seeds 4] [--steps 560] [--points 120] [--init gaussian]
  python scripts/check_superposition_s1_lag.py --init gaussian normalized orthogonal --plot /tmp/s1_lag.png
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.superposition import data as sdata
from attnlab.superposition import models
from attnlab.superposition import theory as th
from attnlab.superposition import train

HP = dict(lr=0.25, freq_exp=1.2, imp_exp=0.0, sigma0=1e-2, bias_init=0.0, bias_lr_scale=1.0, bias_freeze_steps=0,
          weight_decay=0.0)


def crossing_time(t: np.ndarray, s: np.ndarray, level: float = 0.5) -> float:
  """First time ``s`` reaches ``level`` (log-linear interpolation), NaN if never or already at t[0]."""
  k = int(np.argmax(s >= level))
  if s[k] < level or k == 0:
    return float("nan")
  a, b = np.log(t[k - 1]), np.log(t[k])
  return float(np.exp(a + (level - s[k - 1]) / (s[k] - s[k - 1]) * (b - a)))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--seeds", type=int, default=4)
  p.add_argument("--steps", type=int, default=560)
  p.add_argument("--points", type=int, default=120)
  p.add_argument("--eval_size", type=int, default=131072)
  p.add_argument("--init", nargs="+", default=["gaussian"], choices=models.INIT_DISTS)
  p.add_argument("--plot", default=None, help="save a figure here: L_sim/L_ODE against t, switch-on delay per feature")
  args = p.parse_args()
  results = {init: report(args, init) for init in args.init}
  if args.plot:
    print("figure:", plot(results, args.plot))


def plot(results: dict, path: str) -> str:
  """Left: L_sim / L_ODE against t = lr step (median and IQR over seeds), S1's band and window end.
  Right: switch-on time t_sim / t_ODE of each feature crossing s_i = 1/2 (median over the seeds where it crosses,
  features crossing in at least two)."""
  from attnlab.engine import plotting
  fig, (ax0, ax1) = plotting.plt.subplots(1, 2, figsize=(9, 3.4))
  for init, (t, ratio, window_end, rows) in results.items():
    line = plotting.band(ax0, t, ratio, label=init)
    feats = np.unique(rows[:, 0])
    feats = feats[[np.sum(rows[:, 0] == f) >= 2 for f in feats]]
    med = [np.median(rows[rows[:, 0] == f, 1]) for f in feats]
    ax1.plot(feats, med, "o-", ms=2.5, lw=0.8, color=line.get_color(), label=init)
  ax0.axhspan(0.9, 1.1, color="0.85", zorder=0, label="S1 band [0.90, 1.10]")
  ax0.axvline(window_end, color="0.4", ls=":", lw=1, label="L_ODE = 0.1 L_0")
  ax0.set(xscale="log", xlabel="t = lr * step", ylabel="L_sim / L_ODE", title="S1 setting: loss against the ODE")
  ax1.axhline(1.0, color="0.4", lw=0.8)
  ax1.set(xscale="log", xlabel="feature i", ylabel="t_1/2 sim / t_1/2 ODE", title="switch-on time against the ODE (median over seeds)")
  ax0.legend()
  ax1.legend()
  return plotting.savefig(fig, path)


def report(args, init: str):
  n = k = 128
  spec = train.Spec(n=n, k=k, student="tied_relu_nobias", batch=512, eval_size=args.eval_size, eval_chunk=16384,
                    rate_bound=sdata.total_rate(sdata.feature_probs_np(n, HP["freq_exp"])), init_dist=init)
  log = np.unique(np.round(np.geomspace(1, args.steps, args.points)).astype(int))
  mask = np.zeros(args.steps, bool)
  mask[log - 1] = True
  hp = {name: jnp.full((args.seeds,), v, jnp.int32 if name == "bias_freeze_steps" else jnp.float32)
        for name, v in HP.items()}
  keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(args.seeds))
  out = jax.device_get(jax.jit(jax.vmap(lambda key, h: train.simulate(key, h, spec, mask)[1]))(keys, hp))
  t = HP["lr"] * log
  s0 = k * HP["sigma0"] ** 2
  with jax.enable_x64(True):
    lam, y, w = th.feature_constants(n, HP["freq_exp"], HP["imp_exp"], "teacher_scale")
    r = th.rates(lam, y, w, "logistic")
    L_ode = np.asarray(th.loss_curve(jnp.asarray(t, jnp.float64), r, y, w, lam, s0, "logistic"))
  lam, r = np.asarray(lam), np.asarray(r)
  t_half_ode = np.log(1.0 / s0 - 1.0) / r
  print(f"\n== init {init} ==\nS1 setting, {args.seeds} seeds, {args.steps} steps, evaluation set {args.eval_size}; "
        "ratios over the evaluations with L_ODE >= 0.1 L_0")
  print(f"{'seed':>4} {'L/L_ODE':>13} {'L/L_diag':>13} {'L_diag/L_ODE':>13}   at the max of L/L_ODE (step)")
  rows = []
  for j in range(args.seeds):
    L = np.asarray(out["loss"][j, log - 1])
    s = np.asarray(out["s"][j, log - 1])
    L_diag = ((1.0 - s) ** 2 * lam[None, :]).sum(1)
    sel = L_ode >= 0.1 * float(out["loss0"][j])
    total, inter, lag = L / L_ode, L / L_diag, L_diag / L_ode
    i = int(np.argmax(np.where(sel, total, -np.inf)))
    rng = lambda v: f"{v[sel].min():.3f}-{v[sel].max():.3f}"
    print(f"{j:>4} {rng(total):>13} {rng(inter):>13} {rng(lag):>13}   {total[i]:.3f} = {inter[i]:.3f} x "
          f"{lag[i]:.3f} ({log[i]})")
    t_half = np.array([crossing_time(t, s[:, q]) for q in range(n)])
    for q in range(n):
      if np.isfinite(t_half[q]):
        m = int(np.sum(t_half[np.arange(n) != q] <= t_half[q]))
        rows.append((q + 1, t_half[q] / t_half_ode[q], np.exp(-r[q] * (t_half[q] - t_half_ode[q])), (k - m) / k))
  rows = np.array(rows)
  print("\nswitch-on (s_i = 1/2) against the ODE, features pooled over seeds:")
  print(f"{'features':>9} {'n':>4} {'t_sim/t_ODE':>12} {'s0_eff/s0':>10} {'(K-m)/K':>8}")
  for lo, hi in ((1, 5), (6, 10), (11, 20), (21, 30), (31, 40), (41, 64)):
    sel = (rows[:, 0] >= lo) & (rows[:, 0] <= hi)
    if sel.any():
      print(f"{lo:>4}-{hi:<4} {int(sel.sum()):>4} {rows[sel, 1].mean():>12.3f} {np.median(rows[sel, 2]):>10.3f} "
            f"{rows[sel, 3].mean():>8.3f}")
  ratios = np.stack([np.asarray(out["loss"][j, log - 1]) / L_ode for j in range(args.seeds)])
  window_end = float(t[L_ode >= 0.1 * float(np.mean(out["loss0"]))].max())
  return t, ratios, window_end, rows


if __name__ == "__main__":
  main()
