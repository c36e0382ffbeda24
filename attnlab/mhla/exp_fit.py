"""Algorithm 1 on random-teacher data (spec §4, check C2): a one-shot, float64 experiment.

Per seed: a random ``heads_teacher``-head teacher (entries N(0, teacher_init_std²)),
``n_train`` sequences Z ~ N(0, input_std²) of ``n_tokens`` tokens labelled at
the last token (``labels="last"``) or at every prefix (``labels="all"``, the
Sec. 4.1 causal labels), and ``n_test`` fresh sequences per length in
``test_lengths``. Algorithm 1 (:mod:`attnlab.mhla.regression`): the ψ-space
normal equations streamed over chunks, the ``solver``, the certificate,
the SVD fold into heads. ``seconds_fit`` times that whole pipeline after
compilation (``jit=False`` so each run is timed from the host).

Metrics per run (``runs.jsonl``): ``train_rel_mse``, ``test_rel_mse`` (one per
test length), ``p_distance_rel`` = ‖p(Θ̂) − p(Θ)‖/‖p(Θ)‖ with p(Θ̂) computed from
the folded heads, ``heads_recovered`` (Ĥ), ``lambda_min``, ``lambda_max``,
``psi``, ``seconds_fit``, and the singular values of Ŵ. ``summary.json`` holds
the medians over seeds under the same names.
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import ConfigError, OneShot
from attnlab.mhla import features as F
from attnlab.mhla import regression as R
from attnlab.mhla import tasks as T


def resolved_d_out(cfg) -> int:
  return cfg.d if cfg.d_out in (0, None) else cfg.d_out


def validate_common(cfg) -> None:
  """Checks shared by the MHLA experiments (d, d_out, solver, ridge)."""
  check(isinstance(cfg.d, int) and cfg.d >= 1, "d", f"must be a positive int, got {cfg.d!r}")
  if cfg.d > R.MAX_D:
    psi = F.psi_dim(cfg.d)
    raise ConfigError("d", f"must be <= {R.MAX_D}: the float64 psi x psi Gram (psi = {psi}) would need "
                      f"{psi * psi * 8 / 2**30:.0f} GiB")
  if "solver" in cfg:
    check_choice(cfg, "solver", R.SOLVERS)
    if cfg.solver == "lstsq" and cfg.d > R.MAX_D_LSTSQ:
      raise ConfigError("solver", f"'lstsq' builds the N x psi design; refused for d > {R.MAX_D_LSTSQ}")
  if "ridge" in cfg:
    check_positive(cfg, "ridge", strict=False)


def _validate(cfg) -> None:
  validate_common(cfg)
  check(cfg.d_out in (0, 1, cfg.d), "d_out", f"must be 1 or d = {cfg.d} (0 means d), got {cfg.d_out!r}")
  for f in ("n_train", "n_tokens", "heads_teacher", "n_test"):
    check(isinstance(cfg[f], int) and cfg[f] >= 1, f, f"must be an int >= 1, got {cfg[f]!r}")
  lengths = cfg.test_lengths if isinstance(cfg.test_lengths, (tuple, list)) else (cfg.test_lengths,)
  check(len(lengths) > 0 and all(isinstance(L, int) and L >= 1 for L in lengths), "test_lengths",
        f"must be a list of ints >= 1, got {cfg.test_lengths!r}")
  check_choice(cfg, "labels", ("last", "all"))
  for f in ("teacher_init_std", "input_std"):
    check(cfg[f] is None or cfg[f] > 0, f, f"must be > 0 (or None for the default), got {cfg[f]!r}")
  check(cfg.solver_iters >= 1, "solver_iters", f"must be >= 1, got {cfg.solver_iters}")
  check(cfg.chunk >= 1, "chunk", f"must be >= 1, got {cfg.chunk}")
  if cfg.solver == "lstsq":
    check(cfg.ridge == 0, "ridge", "is not supported with solver 'lstsq' (use cholesky or eigh_pinv)")
  check(cfg.compress_rank is None or cfg.compress_rank >= 1, "compress_rank",
        f"must be None or >= 1, got {cfg.compress_rank!r}")


def experiment(cfg) -> OneShot:
  """The ``mhla_fit`` factory (cheap: validation and closures only)."""
  _validate(cfg)
  d, H, n, N = cfg.d, cfg.heads_teacher, cfg.n_tokens, cfg.n_train
  d_out = resolved_d_out(cfg)
  t_std = cfg.teacher_init_std if cfg.teacher_init_std is not None else d ** -0.5
  z_std = cfg.input_std if cfg.input_std is not None else n ** -0.5
  lengths = tuple(cfg.test_lengths) if isinstance(cfg.test_lengths, (tuple, list)) else (cfg.test_lengths,)
  solver, iters, labels = cfg.solver, cfg.solver_iters, cfg.labels
  n_test, chunk = cfg.n_test, cfg.chunk
  kw = dict(labels=labels, solver=solver, iters=iters, pinv_rtol=cfg.pinv_rtol,
            certificate_tol=cfg.certificate_tol, chunk=chunk)
  svd_rtol, compress_rank, compress_iters = cfg.svd_rtol, cfg.compress_rank, cfg.compress_iters

  @jax.jit
  def _data(key):
    # One flat Gaussian draw cut into V, Q, Z and the test sets: every distinct
    # jax.random.normal shape costs seconds of compilation on CPU.
    shapes = [(H, d_out, d), (H, d, d), (N, d, n)] + [(n_test, d, L) for L in lengths]
    V, Q, Z, *Zt = T.normals(key, shapes, jnp.float64)
    V, Q = t_std * V, t_std * Q
    mode = "last" if labels == "last" else "causal"
    Z = z_std * Z
    tests = [(z_std * z, T.mhla_batch(V, Q, z_std * z, "last")) for z in Zt]
    return {"V": V, "Q": Q, "Z": Z, "Y": T.mhla_batch(V, Q, Z, mode), "tests": tests}

  def make_data(key, hp):
    return _data(key)

  @jax.jit
  def alg1(Z, Y, ridge):
    fit = R.fit_p(Z, Y, ridge=ridge, **kw)
    W = F.W_from_p(fit.p, d)
    Vh, Qh, nh = R.heads_from_W(W, d, svd_rtol)
    return fit.p, fit.cert, Vh, Qh, nh, jnp.linalg.svd(W, compute_uv=False)

  @jax.jit
  def metrics(p, Vh, Qh, data):
    p_true = F.p_of_params(data["V"], data["Q"])
    p_heads = F.p_of_params(Vh, Qh)
    out = {"train_rel_mse": R.rel_mse(p, data["Z"], data["Y"], labels=labels, chunk=chunk),
           "test_rel_mse": jnp.stack([R.rel_mse(p, Zt, Yt) for Zt, Yt in data["tests"]]),
           "p_distance_rel": F.p_distance(p_heads, p_true) / jnp.linalg.norm(p_true),
           "p_distance_rel_lsq": F.p_distance(p, p_true) / jnp.linalg.norm(p_true)}
    return out

  def compute(key, hp, data):
    ridge = jnp.asarray(hp["ridge"], jnp.float64)
    compiled = alg1.lower(data["Z"], data["Y"], ridge).compile()
    jax.block_until_ready(compiled(data["Z"], data["Y"], ridge))  # warm-up run
    t0 = time.perf_counter()
    p, cert, Vh, Qh, nh, sv = jax.block_until_ready(compiled(data["Z"], data["Y"], ridge))
    seconds = time.perf_counter() - t0
    out = dict(metrics(p, Vh, Qh, data))
    out.update(heads_recovered=nh, lambda_min=cert.lambda_min, lambda_max=cert.lambda_max,
               lambda_ratio=cert.ratio, n_over_psi=cert.n_over_psi, identifiable=cert.identifiable,
               psi=jnp.asarray(F.psi_dim(d)), seconds_fit=jnp.asarray(seconds),
               singular_values=sv)
    if compress_rank is not None:
      W = F.W_from_p(p, d)
      S = jnp.linalg.norm(F.sym_W(W, d))
      res = [float(R.compress_heads(W, d, r, compress_iters)[1] / S) for r in range(1, compress_rank + 1)]
      ok = [r for r, e in zip(range(1, compress_rank + 1), res) if e < cfg.compress_tol]
      out["compress_residual_rel"] = jnp.asarray(res)
      out["heads_min"] = jnp.asarray(ok[0] if ok else -1)
    return out

  return OneShot(compute=compute, jit=False, x64=True, make_data=make_data, hparams=("ridge",),
                 summarize=functools.partial(summarize, lengths=lengths), figures=figures)


def _median(runs, key):
  vals = [r["final"][key] for r in runs if r["status"] == "ok" and key in r["final"]]
  return float(np.median(vals)) if vals else None


def summarize(cfg, runs, lengths=()):
  """Medians over seeds (over all runs of the config) of the summary contract keys."""
  out = {k: _median(runs, k) for k in ("train_rel_mse", "p_distance_rel", "heads_recovered", "lambda_min",
                                      "lambda_max", "psi", "seconds_fit", "lambda_ratio", "n_over_psi")}
  ok = [r for r in runs if r["status"] == "ok"]
  out["test_rel_mse"] = {str(L): float(np.median([r["final"]["test_rel_mse"][i] for r in ok]))
                         for i, L in enumerate(lengths)} if ok else {}
  if ok and "heads_min" in ok[0]["final"]:
    out["heads_min"] = _median(runs, "heads_min")
  return out


def figures(cfg, logs, outdir):
  """singular_values.png: the spectrum of Ŵ per seed (Ĥ = d² generically, spec §3.4)."""
  from attnlab.engine import plotting
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(4, 3))
  for r in logs.runs:
    sv = np.asarray(r["final"].get("singular_values", []), np.float64)
    if sv.size:
      ax.semilogy(np.arange(1, sv.size + 1), np.maximum(sv, 1e-300), ".-", lw=0.8, label=f"seed {r['seed']}")
  ax.set_xlabel("index h")
  ax.set_ylabel("singular value of Ŵ")
  ax.set_title(f"Algorithm 1, d={cfg.d}, teacher H={cfg.heads_teacher}")
  ax.legend()
  return [plotting.savefig(fig, f"{outdir}/singular_values.png")]
