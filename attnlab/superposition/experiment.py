"""Engine factories for the superposition experiments (spec §7.2, E1-E8).

* :func:`theory`: exponent tables from the per-feature ODE alone (OneShot, x64).
* :func:`no_sup`, :func:`bottleneck`, :func:`robustness`: online training of a
  student (Iterative). Seeds and the traced hyperparameters
  (``train.HPARAMS``: lr, freq_exp, imp_exp, sigma0, bias_init, bias_lr_scale,
  bias_freeze_steps, weight_decay) are vmapped in one program per static group;
  ``n_features``, ``k_ratio``, ``student``, ``optimizer``, ``batch``, ... split
  static groups.

The fits (gamma, windows, ODE comparisons, acceleration, ceilings) need the
logged curves: they are the engine's ``summarize_logs`` hook
(:func:`attnlab.superposition.analysis.summarize_logs`), merged into
``summary.json`` by the engine.
"""
from __future__ import annotations

import numpy as np

from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import ConfigError, Iterative, OneShot
from attnlab.superposition import analysis
from attnlab.superposition import data as sdata
from attnlab.superposition import models
from attnlab.superposition import theory as th
from attnlab.superposition import train

SIM_FIELDS = dict(
    n_features=1024,            # N
    k_ratio=1.0,                # K = round(k_ratio * N)
    student="tied_relu",
    freq_exp=1.2,               # a
    imp_exp=0.0,                # b
    importance_mode="teacher_scale",
    p_norm="sum1",
    batch=1024,                 # B
    optimizer="sgd",
    lr=0.25,                    # eta, constant
    sigma0=1e-2,                # init scale
    init_dist="gaussian",       # the spec's W_ij ~ N(0, sigma0^2); 'normalized' / 'orthogonal' keep s_i(0) =
                                # K sigma0^2 and remove its spread / the columns' overlaps (diagnostics of S1)
    bias_init=0.0,
    bias_lr_scale=1.0,
    bias_freeze_steps=0,
    weight_decay=0.0,
    loss_reduction="sum",
    eval_size=32768,
    eval_chunk=4096,
    eval_mode="auto",
    n_probes=16,
    fit_time_unit="auto",       # eta*step for SGD, step for Adam
    fit_smooth_points=7,
    fit_band=0.1,
    fit_min_decades=1.0,
    fit_start_frac=0.5,
    fit_ceiling_nsigma=3.0,
    fit_subtract_ceiling=False,
    fit_ceiling_tail_frac=0.1,
    theory_kind="auto",         # logistic for tied students, linear for linear_full
    theory_s0=-1.0,             # < 0: K * sigma0^2 (the simulation's s_i(0))
    accel_target_frac=0.1,
)
"""Every [reconstructed] run-time choice of the simulations, with the spec's default."""


def _vals(v):
  return v if isinstance(v, (tuple, list)) else (v,)


def latent_dim(cfg) -> int:
  return int(round(float(cfg.k_ratio) * int(cfg.n_features)))


def validate_sim(cfg) -> train.Spec:
  """Check a simulation config (raises ConfigError) and return its static Spec."""
  check(isinstance(cfg.n_features, int) and cfg.n_features >= 2, "n_features", "must be an int >= 2")
  check_choice(cfg, "student", models.STUDENTS)
  check_choice(cfg, "importance_mode", sdata.IMPORTANCE_MODES)
  check_choice(cfg, "p_norm", sdata.P_NORMS)
  check_choice(cfg, "optimizer", train.OPTIMIZERS)
  check_choice(cfg, "loss_reduction", models.REDUCTIONS)
  check_choice(cfg, "init_dist", models.INIT_DISTS)
  check_choice(cfg, "eval_mode", ("auto", "population", "monte_carlo"))
  check_choice(cfg, "fit_time_unit", ("auto", "step", "lr_step"))
  check_choice(cfg, "theory_kind", ("auto",) + th.DYNAMICS)
  for v in _vals(cfg.freq_exp):
    check(v > 0, "freq_exp", f"the frequency exponent a must be > 0, got {v!r}")
  check_positive(cfg, "lr", "sigma0", "eval_size", "eval_chunk", "n_probes")
  check_positive(cfg, "bias_lr_scale", "bias_freeze_steps", strict=False)
  for v in _vals(cfg.batch):
    check(isinstance(v, int) and v >= 1, "batch", f"must be an int >= 1, got {v!r}")
  for v in _vals(cfg.k_ratio):
    check(v > 0, "k_ratio", f"must be > 0, got {v!r}")
  k = latent_dim(cfg) if not isinstance(cfg.k_ratio, (tuple, list)) else None
  if k is not None and cfg.student != "linear_full":
    check(k >= 1, "k_ratio", f"K = round(k_ratio * N) = {k} < 1 (N = {cfg.n_features})")
    check(k <= cfg.n_features, "k_ratio",
          f"K = {k} > N = {cfg.n_features}: student '{cfg.student}' needs K <= N (K = N is no superposition)")
  check(cfg.eval_size % cfg.eval_chunk == 0 or cfg.eval_size < cfg.eval_chunk, "eval_size",
        f"must be a multiple of eval_chunk = {cfg.eval_chunk} (or smaller), got {cfg.eval_size}")
  if cfg.eval_mode == "population":
    check(cfg.student in models.LINEAR, "eval_mode", f"population loss needs a linear student, not {cfg.student}")
  # the sparse sampler's static event-list length is set from the largest Q = sum_i -log(1 - p_i) over the
  # swept freq_exp values, so a batch overflows it with probability < 1e-9 (data.event_capacity)
  rate_bound = max(sdata.total_rate(sdata.feature_probs_np(int(cfg.n_features), a, cfg.p_norm))
                   for a in _vals(cfg.freq_exp))
  check(cfg.log_spacing == "log", "log_spacing", "exponent fits need log-spaced logging ('log')")
  eval_size = int(cfg.eval_size)
  chunk = min(int(cfg.eval_chunk), eval_size)
  return train.Spec(n=int(cfg.n_features), k=max(1, latent_dim(cfg)) if k is not None else 1,
                    student=cfg.student, optimizer=cfg.optimizer,
                    batch=int(cfg.batch) if not isinstance(cfg.batch, (tuple, list)) else 1,
                    importance_mode=cfg.importance_mode, p_norm=cfg.p_norm, reduction=cfg.loss_reduction,
                    eval_size=eval_size, eval_chunk=chunk, eval_mode=cfg.eval_mode,
                    rate_bound=rate_bound, n_probes=int(cfg.n_probes), init_dist=cfg.init_dist)


def _simulation(cfg, kind: str) -> Iterative:
  spec = validate_sim(cfg)
  return Iterative(
      init=lambda key, hp, data: train.init_state(key, hp, spec),
      step=lambda state, hp, data: train.train_step(state, hp, spec),
      evaluate=lambda state, hp, data: train.evaluate(state, hp, spec),
      hparams=train.HPARAMS,
      summarize_logs=lambda c, logs: analysis.summarize_logs(c, logs, kind),
      figures=lambda c, logs, outdir: analysis.figures(c, logs, outdir, kind),
      plot_metrics=("loss", "represented"),
      log_x=True,
  )


def no_sup(cfg) -> Iterative:
  """E1-E3: simulation against the per-feature ODE, traveling wave, exponent map."""
  return _simulation(cfg, "no_sup")


def bottleneck(cfg) -> Iterative:
  """E4-E7: K < N loss curves, gamma vs K/N, acceleration, ceiling L_inf(K)."""
  return _simulation(cfg, "bottleneck")


def robustness(cfg) -> Iterative:
  """E8: optimizer, batch, lr, sigma0, weight decay and importance mode."""
  return _simulation(cfg, "robustness")


# ----------------------------------------------------------------------------
# Theory tables


def theory(cfg) -> OneShot:
  """Exponent tables of the per-feature ODE (spec §5.4, §11b), one row per
  (freq_exp, imp_exp, dynamics, importance_mode, n_features)."""
  for v in _vals(cfg.freq_exp):
    check(v > 0, "freq_exp", f"the frequency exponent a must be > 0, got {v!r}")
  for v in _vals(cfg.n_features):
    check(isinstance(v, int) and v >= 8, "n_features", f"must be ints >= 8 (the window needs r_4 and r_N/4), got {v!r}")
  check_choice(cfg, "dynamics", th.DYNAMICS)
  check_choice(cfg, "importance_mode", sdata.IMPORTANCE_MODES)
  check_choice(cfg, "p_norm", sdata.P_NORMS)
  check_positive(cfg, "s0", "n_t", "t_min", "t_max")
  check(cfg.t_max > cfg.t_min, "t_max", "must exceed t_min")

  def compute(key, hp, data):
    rows = []
    for n in _vals(cfg.n_features):
      for a in _vals(cfg.freq_exp):
        for b in _vals(cfg.imp_exp):
          for dyn in _vals(cfg.dynamics):
            for mode in _vals(cfg.importance_mode):
              r = th.theory_gamma(int(n), float(a), float(b), dyn, mode, s0=float(cfg.s0), n_t=int(cfg.n_t),
                                  t_range=(float(cfg.t_min), float(cfg.t_max)), p_norm=cfg.p_norm)
              rows.append([n, a, b, th.DYNAMICS.index(dyn), sdata.IMPORTANCE_MODES.index(mode),
                           r["gamma_fit"], r["gamma_asymptotic"], *r["fit_window"]])
    return {"table": np.asarray(rows, np.float64)}

  return OneShot(compute=compute, jit=False, x64=True, summarize=analysis.summarize_theory,
                 figures=analysis.theory_figures)
