"""E1: the infinite-data identity f_N(x) -> A Sigma B^T x (spec §2.2, §4.4, AC-1).

One run = one (N, s, seed). N (the number of context tokens) is static; the
logit scale ``s`` is a traced hyperparameter. Per run: Sigma with eigenvalues
linspace(sigma_lo, sigma_hi, d), A (k, d) and B (d, d) Gaussian, one query
x ~ N(0, Sigma), and B rescaled so that s(x) = x^T B Sigma B^T x equals the
target ``s``. Then ``draws`` independent contexts of N tokens
(``lax.map`` over draws, so memory is O(d N)).

Metrics: ``mse`` = mean over draws of ||f_N(x) - A Sigma B^T x||^2,
``n_mse`` = N * mse, ``n_mse_pred`` = e^s tr(A(Sigma + Sigma v v^T Sigma)A^T)
(§4.4), ``ratio`` = n_mse / n_mse_pred, ``n_mse_over_trace`` = n_mse /
tr(...) (which should follow e^s), and ``mse_wrong_orientation`` against
A Sigma B x (the key-left limit), which does not vanish.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core import prng
from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import OneShot
from attnlab.softmax_precond import model


def _as_tuple(v):
  return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def make_limit(cfg) -> OneShot:
  for name in ("d", "k", "draws"):
    check(isinstance(cfg[name], int) and cfg[name] >= 1, name, f"must be a positive int, got {cfg[name]!r}")
  for N in _as_tuple(cfg.N):
    check(isinstance(N, int) and N >= 1, "N", f"context lengths must be positive ints, got {cfg.N!r}")
  check_positive(cfg, "s", "sigma_lo", "sigma_hi")
  check_choice(cfg, "logit_orientation", ("query_left", "key_left"))
  d, k, draws, N = int(cfg.d), int(cfg.k), int(cfg.draws), int(_as_tuple(cfg.N)[0])
  orient = cfg.logit_orientation
  lo, hi = float(cfg.sigma_lo), float(cfg.sigma_hi)

  def compute(key, hp, data):
    ks, ka, kb, kx = jax.random.split(prng.stream(key, prng.DATA), 4)
    Sigma = model.make_sigma(ks, d, lo, hi)
    Sh, _ = model.sqrtm_psd(Sigma)
    A = jax.random.normal(ka, (k, d), Sh.dtype) / jnp.sqrt(d)
    B = jax.random.normal(kb, (d, d), Sh.dtype) / jnp.sqrt(d)
    x = model.mm(Sh, jax.random.normal(kx, (d, 1), Sh.dtype))[:, 0]
    Beff = B if orient == "query_left" else B.T  # the key-left logit x_j^T B x = x^T B^T x_j
    v = Beff.T @ x
    B = B * jnp.sqrt(hp["s"] / (v @ Sigma @ v))
    params = {"A": A, "B": B}
    Beff = B if orient == "query_left" else B.T
    target = model.mm(A, Sigma, Beff.T, x[:, None])[:, 0]
    wrong = model.mm(A, Sigma, Beff, x[:, None])[:, 0]

    def one(kk):
      X = model.mm(Sh, jax.random.normal(kk, (d, N), Sh.dtype))
      f = model.forward(params, x[:, None], X, orientation=orient)[:, 0]
      return jnp.sum((f - target) ** 2), jnp.sum((f - wrong) ** 2)

    e, ew = jax.lax.map(one, jax.random.split(prng.stream(key, prng.NOISE), draws))
    mse = jnp.mean(e)
    pred = model.finite_context_mse({"A": A, "B": Beff}, x, Sigma, 1.0)
    vv = Beff.T @ x
    trace = pred / jnp.exp(vv @ Sigma @ vv)
    return {"mse": mse, "mse_se": jnp.std(e) / jnp.sqrt(draws), "n_mse": N * mse, "n_mse_pred": pred,
            "ratio": N * mse / pred, "n_mse_over_trace": N * mse / trace,
            "mse_wrong_orientation": jnp.mean(ew)}

  return OneShot(compute=compute, hparams=("s",), summarize=summarize, figures=figures, x64=True)


def summarize(cfg, runs) -> dict:
  """``limit[str(s)][str(N)]``: medians over seeds of N*MSE, the prediction and
  their ratio; ``slope[str(s)]``: the log-log slope of MSE against N
  (expected -1); ``max_abs_log_ratio_N>=1000``: the worst |log ratio| for
  N >= 1000 (within 10% means < 0.095)."""
  by: dict = {}
  for r in runs:
    s = float(r.get("s", _as_tuple(cfg.s)[0]))
    N = int(r.get("N", _as_tuple(cfg.N)[0]))
    by.setdefault(s, {}).setdefault(N, []).append(r["final"])
  out, slopes, worst = {}, {}, 0.0
  for s, per_n in sorted(by.items()):
    node = {}
    for N, fs in sorted(per_n.items()):
      node[str(N)] = {key: float(np.median([f[key] for f in fs])) for key in
                      ("mse", "n_mse", "n_mse_pred", "ratio", "n_mse_over_trace", "mse_wrong_orientation")}
      if N >= 1000:
        worst = max(worst, abs(float(np.log(node[str(N)]["ratio"]))))
    out[str(s)] = node
    Ns = sorted(per_n)
    if len(Ns) >= 2:
      slopes[str(s)] = float(np.polyfit(np.log(Ns), np.log([node[str(N)]["mse"] for N in Ns]), 1)[0])
  return {"limit": out, "mse_vs_N_slope": slopes, "max_abs_log_ratio_N>=1000": worst}


def figures(cfg, logs, outdir) -> list:
  from attnlab.engine import plotting
  import matplotlib.pyplot as plt

  summ = summarize(cfg, logs.runs)["limit"]
  fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2))
  ss = sorted(summ, key=float)
  for s in ss:
    Ns = sorted(summ[s], key=int)
    axes[0].loglog([int(N) for N in Ns], [summ[s][N]["mse"] for N in Ns], "o-", label=f"s = {float(s):g}")
    axes[0].loglog([int(N) for N in Ns], [summ[s][N]["n_mse_pred"] / int(N) for N in Ns], "k:", lw=0.8)
  axes[0].set_xlabel("N (context tokens)")
  axes[0].set_ylabel("E||f_N(x) - A S B^T x||^2")
  axes[0].set_title("measured (o) vs e^s tr(...)/N (dotted)")
  axes[0].legend(loc="best")
  Nmax = max((int(N) for s in ss for N in summ[s]), default=1)
  sv = np.array([float(s) for s in ss])
  axes[1].semilogy(sv, [summ[s][str(Nmax)]["n_mse_over_trace"] for s in ss], "o", label=f"N*MSE / tr, N = {Nmax}")
  grid = np.linspace(sv.min(), sv.max(), 50) if sv.size else sv
  axes[1].semilogy(grid, np.exp(grid), "k--", lw=0.8, label="e^s")
  axes[1].set_xlabel("logit variance s")
  axes[1].legend(loc="best")
  fig.suptitle("E1: the infinite-token limit of softmax attention", fontsize=9)
  return [plotting.savefig(fig, f"{outdir}/limit.png")]
