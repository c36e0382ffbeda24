"""Engine experiments for the geometry of lightning self-attention (spec §5-§8).

Factories (``config.experiment = "attnlab.geometry.experiments:<name>"``):

* :func:`dimension`: any architecture (``widths``, ``attn_dims`` tuples).
* :func:`uniform`: equal widths ``delta`` and equal attention dims ``a`` over
  ``depth`` layers; any of ``delta``, ``a``, ``kind`` may be swept (Figure 3
  sweeps ``delta``; the NeuroDim sweep sweeps ``a`` and ``kind``).
* :func:`critical_points`: the single-layer rank table at structured points.
* :func:`symmetries`: invariance errors of every symmetry, generator residuals,
  Jacobian nullity against the symmetry dimension.

All four are ``OneShot(jit=True)``: the engine runs ``jit(vmap(compute))``
over the runs of a static group, so each architecture is one compiled program
(XLA's default options) that holds every seed, and the trials are vmapped
inside it (:func:`attnlab.geometry.estimator.estimate_run`,
:func:`critical_run`, :func:`symmetry_run`). The geometry configs set
``lanes = seeds`` (a reference), so all seeds of a setting run as one vmap;
swept traced hyperparameters (``point`` of the critical-point table) are
mapped over inside the same program. The rank decisions are made in the
program too (the Jacobians never leave it). The per-run wall time is not
observable inside one program, so ``seconds`` in the summaries is ``None``
(the CLI prints the total; ``scripts/bench_geometry.py`` times the kernel).
All run in float64 unless ``x64`` is off (the float32 precision-guard demo).

Shared estimator fields (:func:`estimator_fields`, spec §5.3 [reconstructed]
choices with the spec's defaults unless noted): ``kind``, ``t``, ``n_inputs``
(0: auto, the spec's max(250, ceil(3P / (d_l t)))), ``trials``, ``init``
("fan_in": std ``init_std / sqrt(d_in)``; "normal": std ``init_std``),
``init_std``, ``temperature`` (1: none), ``softmax_axis`` ("key"),
``row_normalize`` (True), ``min_gap`` (1e6), ``formula_gate`` (True),
``formula_effective_widths`` (False), ``x64`` (True), ``jacobian_mode``
("rev": per-input reverse mode vmapped over the inputs; "fwd": the spec's
literal ``jax.jacfwd``; same J, "rev" is 7-11x faster, see
:mod:`attnlab.geometry.estimator`), ``blas_threads`` (1: OpenBLAS threads for
the QR/SVD, set for the process by the factory, see
:func:`attnlab.geometry.estimator.set_blas_threads`; 0: leave it alone),
``rank_method`` ("qr": the spec's SVD of J via its R factor; "lu_rows": the
SVD of the P rows of J that LU with partial pivoting selects, ours, about
2.4x cheaper for a tall J, see :func:`attnlab.geometry.estimator.rank_stats`),
``fallback`` ("calibrated": an unreliable softmax estimate is repeated once,
on the host in the summary, at the same draw rescaled layer by layer, with the
Jacobian's columns equilibrated per weight matrix, see
:func:`attnlab.geometry.estimator.calibrate_params`,
:func:`attnlab.geometry.estimator.equilibrate` and
:func:`attnlab.geometry.estimator.needs_second_attempt` and
:func:`attnlab.geometry.estimator.choose_attempt`;
"calibrated_unscaled": the same without the equilibration; "none": the spec's
procedure only; not in the spec) and ``calibrate_score_std`` (3.0).
The summaries record ``attempts_per_seed`` and the first attempt's rank.
``lightning_exact`` (True; not in the spec): for lightning networks the
reported ``estimated_dimension`` is the exact Jacobian rank over F_p
(:mod:`attnlab.geometry.exact`, a certified lower bound, computed on the host
in the summary), with ``estimate_method``, ``certified`` (it meets the
symmetry upper bound P - symmetry_dimension) and the float64 estimator's
``float64_rank_tol``, ``float64_reliable``, ``float64_agrees_with_exact``;
``rank_tol``/``rank_gap``/``gap_log10`` stay the float64 estimator's.
``softmax_certify`` (True; not in the spec): a float64 (``x64``) softmax row
inside (B1)-(B3) whose estimate (after the fallback) is unreliable or below the
symmetry bound is
passed to :func:`attnlab.geometry.certify.certify_dimension` (ball arithmetic
at the calibrated point of the first seed's draw, on the host in the summary);
if the determinant ball excludes 0, ``estimated_dimension`` is the proven
bound, ``reliable`` and ``certified`` are true, ``estimate_method`` is
``"certified_ball_arithmetic"``, and ``certificate`` records the target,
precision, determinant and seconds. A failed certificate changes nothing but
``certified`` (false) and ``certificate``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from attnlab.core import prng
from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import ConfigError, OneShot
from attnlab.geometry import critical as gc
from attnlab.geometry import dimension as gd
from attnlab.geometry import estimator as ge
from attnlab.geometry import exact as gexact
from attnlab.geometry import model as gm
from attnlab.geometry import symmetries as gs

ESTIMATOR_HPARAMS = ("init_std", "temperature", "min_gap", "calibrate_score_std")


def estimator_fields(**overrides) -> dict:
  """The shared estimator config fields with the spec's defaults (see module doc)."""
  fields = dict(kind="softmax", t=3, n_inputs=0, trials=1, init="fan_in", init_std=1.0, temperature=1.0,
                softmax_axis="key", row_normalize=True, min_gap=1e6, formula_gate=True,
                formula_effective_widths=False, x64=True, blas_threads=1, jacobian_mode="rev",
                fallback="calibrated", calibrate_score_std=3.0, lightning_exact=True, rank_method="qr",
                softmax_certify=True)
  fields.update(overrides)
  return fields


# ----------------------------------------------------------------------------
# Config resolution (shared by the factories and the summaries)


def _int_tuple(cfg, name: str) -> tuple:
  v = cfg[name]
  if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
    v = (v,)
  if not isinstance(v, (tuple, list)) or not v:
    raise ConfigError(name, f"must be a non-empty tuple of ints, got {v!r}")
  for x in v:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
      raise ConfigError(name, f"entries must be ints, got {v!r}")
    if x < 1:
      raise ConfigError(name, f"entries must be >= 1, got {tuple(v)!r}")
  return tuple(int(x) for x in v)


def _check_estimator_fields(cfg) -> None:
  check_choice(cfg, "kind", gm.KINDS)
  check_choice(cfg, "softmax_axis", gm.SOFTMAX_AXES)
  check_choice(cfg, "init", gm.INITS)
  check_choice(cfg, "jacobian_mode", ge.JACOBIAN_MODES)
  check_choice(cfg, "fallback", ge.FALLBACKS)
  check_choice(cfg, "rank_method", ge.RANK_METHODS)
  check_positive(cfg, "calibrate_score_std")
  check(isinstance(cfg.lightning_exact, bool), "lightning_exact", f"must be a bool, got {cfg.lightning_exact!r}")
  check(isinstance(cfg.softmax_certify, bool), "softmax_certify", f"must be a bool, got {cfg.softmax_certify!r}")
  check(isinstance(cfg.t, int) and cfg.t >= 1, "t", f"must be an int >= 1, got {cfg.t!r}")
  check(isinstance(cfg.n_inputs, int) and cfg.n_inputs >= 0, "n_inputs",
        f"must be an int >= 0 (0: auto), got {cfg.n_inputs!r}")
  check(isinstance(cfg.trials, int) and cfg.trials >= 1, "trials", f"must be an int >= 1, got {cfg.trials!r}")
  check_positive(cfg, "init_std", "temperature")
  check(cfg.min_gap > 1, "min_gap", f"must be > 1, got {cfg.min_gap!r}")
  check(isinstance(cfg.blas_threads, int) and cfg.blas_threads >= 0, "blas_threads",
        f"must be an int >= 0, got {cfg.blas_threads!r}")


def _arch(cfg, widths, attn_dims) -> gm.Arch:
  if len(widths) != len(attn_dims) + 1:
    raise ConfigError("attn_dims", f"has {len(attn_dims)} entries but widths {widths} has {len(widths)}; "
                      f"need len(attn_dims) == len(widths) - 1 = {len(widths) - 1}")
  kind = cfg.kind if isinstance(cfg.kind, str) else cfg.kind[0]
  return gm.Arch(widths, attn_dims, kind, cfg.t, cfg.softmax_axis)


def arch_of(cfg) -> gm.Arch:
  """The architecture of a :func:`dimension` or :func:`uniform` config (validated)."""
  _check_estimator_fields(cfg)
  if "widths" in cfg:
    return _arch(cfg, _int_tuple(cfg, "widths"), _int_tuple(cfg, "attn_dims"))
  check(isinstance(cfg.depth, int) and cfg.depth >= 1, "depth", f"must be an int >= 1, got {cfg.depth!r}")
  # The base config holds the whole tuple of a swept axis (each group gets one
  # value): validate every entry and describe the first.
  delta = _int_tuple(cfg, "delta")[0]
  a = _int_tuple(cfg, "a")[0]
  return _arch(cfg, (delta,) * (cfg.depth + 1), (a,) * cfg.depth)


def n_inputs_of(cfg, arch: gm.Arch) -> int:
  return cfg.n_inputs if cfg.n_inputs > 0 else ge.default_n_inputs(arch)


def _expected(cfg, arch: gm.Arch) -> gd.Expected:
  return gd.expected_dimension(arch.widths, arch.attn_dims, arch.kind, arch.t, gate=cfg.formula_gate,
                               use_effective_widths=cfg.formula_effective_widths)


def _coords_cfg(cfg, run: dict):
  from attnlab.engine.grid import with_fields
  return with_fields(cfg, dict(run.get("coords", {})))


def _settings(runs: list[dict]) -> list[list[dict]]:
  groups: dict[str, list] = {}
  for r in runs:
    groups.setdefault(json.dumps(r.get("coords", {}), sort_keys=True), []).append(r)
  return list(groups.values())


# ----------------------------------------------------------------------------
# Estimator experiments


def _estimator_experiment(cfg, summarize, figures) -> OneShot:
  arch = arch_of(cfg)
  n = n_inputs_of(cfg, arch)
  static = dict(arch=arch, n_inputs=n, trials=cfg.trials, init=cfg.init, row_normalize=cfg.row_normalize,
                jacobian_mode=cfg.jacobian_mode, rank_method=cfg.rank_method)
  ge.set_blas_threads(cfg.blas_threads)

  def compute(key, hp, data):
    del data
    return ge.estimate_run(key, hp["init_std"], hp["temperature"], hp["min_gap"], hp["calibrate_score_std"],
                           **static)

  return OneShot(compute=compute, jit=True, x64=cfg.x64, hparams=ESTIMATOR_HPARAMS, summarize=summarize,
                 figures=figures, compiler_options=ge.COMPILER_OPTIONS)


def _row(cfg, runs: list[dict]) -> dict:
  """One architecture's result over its seeds (max of rank_tol, as over trials)."""
  ccfg = _coords_cfg(cfg, runs[0])
  arch = arch_of(ccfg)
  exp = _expected(ccfg, arch)
  ok = [dict(r, final=_with_fallback(ccfg, arch, r)) for r in runs if r["status"] == "ok"]
  best = max(ok, key=lambda r: r["final"]["rank_tol"]) if ok else runs[0]
  f = best["final"]
  est = int(f["rank_tol"]) if ok else None  # a diverged (non-finite) run has no estimate
  ranks = [int(r["final"]["rank_tol"]) for r in ok]
  reliable = bool(ok) and len(ok) == len(runs) and all(r["final"]["reliable"] for r in ok) and len(set(ranks)) == 1
  exact = _exact_rank(arch) if (arch.kind == "lightning" and ccfg.lightning_exact) else None
  float_fields = {"float64_rank_tol": est, "float64_reliable": reliable,
                  "float64_agrees_with_exact": None if exact is None else (bool(ok) and est == exact)}
  if exact is not None:
    est, reliable = exact, True
  certificate = None
  if ccfg.softmax_certify and ccfg.x64 and ok and ge.needs_certificate(est, reliable, arch):
    certificate = _certificate(ccfg, arch, ok[0])
    if certificate["certified"]:
      est, reliable = certificate["target"], True
  if certificate is not None:
    float_fields["float64_agrees_with_certificate"] = (float_fields["float64_rank_tol"] == est
                                                       if certificate["certified"] else None)
  bound = arch.num_params - gd.symmetry_dimension(arch.widths, arch.attn_dims, arch.kind)
  if exact is not None:
    method, certified = "exact_mod_p", exact == bound
  elif certificate is not None:
    method = "certified_ball_arithmetic" if certificate["certified"] else "jacobian_svd"
    certified = bool(certificate["certified"])
  else:
    method, certified = "jacobian_svd", None
  return {
      "widths": list(arch.widths), "attn_dims": list(arch.attn_dims), "kind": arch.kind, "t": arch.t,
      "parameters": arch.num_params,
      "expected_dimension": exp.value, "formula_note": exp.note,
      "estimated_dimension": est, "rank_tol": int(f["rank_tol"]) if ok else None,
      "rank_gap": int(f["rank_gap"]) if ok else None,
      "gap_log10": None if f.get("gap_log10") is None else float(f["gap_log10"]), "reliable": reliable,
      "matches_formula": (exp.value == est) if exp.value is not None else None,
      "nullity": None if est is None else arch.num_params - est,
      "symmetry_dimension": gd.symmetry_dimension(arch.widths, arch.attn_dims, arch.kind),
      "seconds": None,
      "n_inputs": n_inputs_of(ccfg, arch), "jacobian_rows": n_inputs_of(ccfg, arch) * arch.out_size,
      "trials": int(ccfg.trials),
      "seeds": len(runs), "rank_tol_per_seed": ranks,
      "rank_tol_trials": [int(x) for x in np.atleast_1d(f["rank_tol_trials"])] if ok else [],
      "attempts_per_seed": [int(r["final"].get("attempts", 1)) for r in ok],
      "rank_tol_first_attempt_per_seed": [int(r["final"].get("rank_tol_first", r["final"]["rank_tol"])) for r in ok],
      "dtype": "float64" if ccfg.x64 else "float32",
      "estimate_method": method,
      "exact_rank_mod_p": exact,
      "certified": certified,
      "certificate": certificate,
      **float_fields,
  }


_FALLBACK_CACHE: dict = {}


def _with_fallback(ccfg, arch: gm.Arch, run: dict) -> dict:
  """The run's final values, after the calibrated second attempt where it applies.

  The engine's program makes the first attempt (the spec's procedure) for
  every run; a softmax run that is unreliable or below the symmetry bound
  (:func:`attnlab.geometry.estimator.needs_second_attempt`) is re-estimated
  here, on the host, at the same draw (the run's key) rescaled by
  :func:`attnlab.geometry.estimator.calibrate_params`, so the second program
  is compiled only when some run needs it (Figure 3 never does), and the
  reported attempt follows :func:`attnlab.geometry.estimator.choose_attempt`.
  Adds ``attempts`` and ``rank_tol_first``.
  """
  f = dict(run["final"], attempts=1, rank_tol_first=run["final"]["rank_tol"])
  if ccfg.fallback == "none" or not ge.needs_second_attempt(f, arch):
    return f
  hp = {k: float(ccfg[k]) for k in ESTIMATOR_HPARAMS}
  cache_key = (arch, int(ccfg.seed), int(run["seed"]), n_inputs_of(ccfg, arch), int(ccfg.trials), ccfg.init,
               bool(ccfg.x64), bool(ccfg.row_normalize), ccfg.jacobian_mode, tuple(sorted(hp.items())), ccfg.fallback,
               ccfg.rank_method)
  if cache_key not in _FALLBACK_CACHE:
    _FALLBACK_CACHE[cache_key] = ge.run_kernel(
        prng.run_key(int(ccfg.seed), int(run["seed"])), arch, calibrate=True, n_inputs=n_inputs_of(ccfg, arch),
        trials=int(ccfg.trials), x64=bool(ccfg.x64), init=ccfg.init, init_std=hp["init_std"],
        temperature=hp["temperature"], min_gap=hp["min_gap"], row_normalize=bool(ccfg.row_normalize),
        jacobian_mode=ccfg.jacobian_mode, score_std=hp["calibrate_score_std"], n_blas_threads=int(ccfg.blas_threads),
        equilibrate=ccfg.fallback == "calibrated", rank_method=ccfg.rank_method)
  second = {k: np.asarray(v).tolist() for k, v in _FALLBACK_CACHE[cache_key].items()}
  chosen, reliable = ge.choose_attempt(f, second)
  return {**f, **chosen, "reliable": reliable, "attempts": 2}


_CERTIFICATE_CACHE: dict = {}


def _certificate(ccfg, arch: gm.Arch, run: dict) -> dict:
  """:func:`attnlab.geometry.certify.certify_dimension` for ``run`` (cached per static set), as a dict."""
  from attnlab.geometry import certify as gcert  # needs python-flint; imported only when used

  hp = {k: float(ccfg[k]) for k in ESTIMATOR_HPARAMS}
  n = n_inputs_of(ccfg, arch)
  cache_key = (arch, int(ccfg.seed), int(run["seed"]), n, int(ccfg.trials), ccfg.init, tuple(sorted(hp.items())))
  if cache_key not in _CERTIFICATE_CACHE:
    print(f"attnlab: certifying the dimension of {arch} by ball arithmetic (target {ge.symmetry_bound(arch)}) ...",
          file=sys.stderr, flush=True)
    c = gcert.certify_dimension(prng.run_key(int(ccfg.seed), int(run["seed"])), arch, n_inputs=n,
                                trials=int(ccfg.trials), init=ccfg.init, init_std=hp["init_std"],
                                temperature=hp["temperature"], score_std=hp["calibrate_score_std"])
    print(f"attnlab: certified={c.certified} at {c.prec} bits, {c.n_inputs} inputs, {c.seconds:.1f} s",
          file=sys.stderr, flush=True)
    _CERTIFICATE_CACHE[cache_key] = dataclasses.asdict(c)
  return dict(_CERTIFICATE_CACHE[cache_key])


@functools.lru_cache(maxsize=64)
def _exact_rank(arch: gm.Arch) -> int:
  """:func:`attnlab.geometry.exact.lightning_rank` at seed 0 (cached: summaries and figures share it)."""
  return gexact.lightning_rank(arch, seed=0)


def _dimension_summary(cfg, runs):
  rows = [_row(cfg, rs) for rs in _settings(runs)]
  out = {"rows": rows}
  if len(rows) == 1:
    out.update(rows[0])
  return out


def _spectrum_figure(cfg, logs, outdir, name="spectrum.png"):
  from attnlab.engine import plotting
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5.0, 3.2))
  for r in logs.runs:
    sv = np.asarray(r["final"].get("sv", []), dtype=np.float64)
    if sv.size == 0 or not sv[0] > 0:
      continue
    rel = np.log10(np.maximum(sv / sv[0], 1e-300))
    label = ", ".join(f"{k}={v}" for k, v in r.get("coords", {}).items()) or "run"
    line, = ax.plot(np.arange(1, sv.size + 1), rel, lw=1.0, label=f"{label} (seed {r['seed']})")
    ax.axvline(r["final"]["rank_tol"] + 0.5, color=line.get_color(), ls=":", lw=0.8)
  ax.set_xlabel("k")
  ax.set_ylabel(r"$\log_{10}\,\sigma_k/\sigma_1$ (row-normalised J)")
  ax.set_title("Jacobian spectrum; dotted: estimated rank", fontsize=9)
  if len(logs.runs) <= 12:
    ax.legend(fontsize=6)
  return plotting.savefig(fig, outdir / name)


def _dimension_figures(cfg, logs, outdir):
  return [_spectrum_figure(cfg, logs, outdir)]


def dimension(cfg) -> OneShot:
  """Neuromanifold dimension of one architecture (``widths``, ``attn_dims``)."""
  return _estimator_experiment(cfg, _dimension_summary, _dimension_figures)


def _uniform_summary(cfg, runs):
  from attnlab.engine.grid import sweep_axes
  settings = _settings(runs)
  rows = [_row(cfg, rs) for rs in settings]
  axes = list(sweep_axes(cfg)) if "sweep" in cfg else []
  coords = [rs[0].get("coords", {}) for rs in settings]
  order = sorted(range(len(rows)), key=lambda i: tuple(str(coords[i].get(a)).zfill(6) for a in axes))
  out = {a: [coords[i].get(a) for i in order] for a in axes}
  for key, src in (("estimated", "estimated_dimension"), ("expected", "expected_dimension"),
                   ("reliable", "reliable"), ("rank_tol", "rank_tol"), ("rank_gap", "rank_gap"),
                   ("gap_log10", "gap_log10"), ("parameters", "parameters"), ("seconds", "seconds")):
    out[key] = [rows[i][src] for i in order]
  out["all_match"] = all(rows[i]["matches_formula"] for i in order)
  out["all_reliable"] = all(rows[i]["reliable"] for i in order)
  out["rows"] = [rows[i] for i in order]
  return out


def _uniform_figures(cfg, logs, outdir):
  from attnlab.engine import plotting
  import matplotlib.pyplot as plt
  summ = _uniform_summary(cfg, logs.runs)
  rows = summ["rows"]
  x_name = "delta" if len({r["widths"][0] for r in rows}) > 1 else "a"
  xs = [r["widths"][0] if x_name == "delta" else r["attn_dims"][0] for r in rows]
  fig, ax = plt.subplots(figsize=(4.6, 3.2))
  for kind in sorted({r["kind"] for r in rows}):
    idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
    x = np.array([xs[i] for i in idx])
    est = np.array([rows[i]["estimated_dimension"] for i in idx], dtype=float)
    expd = np.array([np.nan if rows[i]["expected_dimension"] is None else rows[i]["expected_dimension"]
                     for i in idx])
    line, = ax.plot(x, expd, "-", lw=1.2, label=f"Expected (formula), {kind}")
    ax.plot(x, est, "o", mfc="none", color=line.get_color(), label=f"Estimated (Jacobian rank), {kind}")
    bad = [j for j, i in enumerate(idx) if not rows[i]["reliable"]]
    if bad:
      ax.plot(x[bad], est[bad], "x", color="red", label="unreliable")
  ax.set_xlabel(r"$\delta$ (= $d_0$ = ... = $d_l$)" if x_name == "delta" else "Hidden dim. (a)")
  ax.set_ylabel("Neuromanifold dim.")
  r0 = rows[0]
  ax.set_title(f"l = {len(r0['attn_dims'])}, t = {r0['t']}, N = {r0['n_inputs']}, {r0['dtype']}", fontsize=9)
  ax.legend(fontsize=6)
  return [plotting.savefig(fig, outdir / "dimension.png"), _spectrum_figure(cfg, logs, outdir)]


def uniform(cfg) -> OneShot:
  """Equal widths ``delta`` and attention dims ``a`` over ``depth`` layers."""
  return _estimator_experiment(cfg, _uniform_summary, _uniform_figures)


# ----------------------------------------------------------------------------
# Critical points (single layer, structured weights)


def critical_run(key, point, init_std, temperature, min_gap, *, arch, n_inputs, trials, init="fan_in",
                 row_normalize=True, jacobian_mode="rev", rank_method="qr"):
  """:func:`attnlab.geometry.estimator.estimate_run` at the structured point
  ``POINT_NAMES[point]`` (``point`` may be traced: one program for the whole table)."""
  data = ge.draw(key, arch, n_inputs, trials, init, init_std)

  def structure(th):
    (layer,) = ravel_pytree(gm.zeros_params(arch, th.dtype))[1](th)
    return ravel_pytree((gc.structured_point_index(layer, point),))[0]

  data["theta"] = jax.vmap(structure)(data["theta"])
  out = ge.estimate_from_data(data, arch, temperature, min_gap, row_normalize, jacobian_mode,
                              rank_method=rank_method)
  return {k: out[k] for k in ("rank_tol", "rank_gap", "gap_log10", "reliable", "sv")}


def critical_points(cfg) -> OneShot:
  """Jacobian rank of one layer at the structured points of spec §3.2.

  ``point`` is a traced index into :data:`attnlab.geometry.critical.POINT_NAMES`
  (swept), so the whole table is one compiled program (:func:`critical_run`, run
  by the engine over points x seeds).
  """
  _check_estimator_fields(cfg)
  widths = _int_tuple(cfg, "widths")
  attn_dims = _int_tuple(cfg, "attn_dims")
  arch = _arch(cfg, widths, attn_dims)
  check(arch.depth == 1, "attn_dims", f"critical points are defined for one layer, got {attn_dims}")
  pts = cfg.point if isinstance(cfg.point, (tuple, list)) else (cfg.point,)
  for p in pts:
    check(isinstance(p, int) and 0 <= p < len(gc.POINT_NAMES), "point",
          f"must be an index into {gc.POINT_NAMES}, got {cfg.point!r}")
  n = n_inputs_of(cfg, arch)
  static = dict(arch=arch, n_inputs=n, trials=cfg.trials, init=cfg.init, row_normalize=cfg.row_normalize,
                jacobian_mode=cfg.jacobian_mode, rank_method=cfg.rank_method)

  ge.set_blas_threads(cfg.blas_threads)

  def compute(key, hp, data):
    del data
    return critical_run(key, hp["point"], hp["init_std"], hp["temperature"], hp["min_gap"], **static)

  def summarize(cfg, runs):
    rows = []
    for rs in _settings(runs):
      p = int(rs[0]["coords"].get("point", cfg.point if isinstance(cfg.point, int) else 0))
      name = gc.POINT_NAMES[p]
      desc, ref = gc.POINTS[name]
      ranks = [int(r["final"]["rank_tol"]) for r in rs]
      rows.append({"point": name, "description": desc, "rank": max(ranks), "rank_per_seed": ranks,
                   "rank_gap": int(rs[0]["final"]["rank_gap"]), "gap_log10": float(rs[0]["final"]["gap_log10"]),
                   "reliable": all(bool(r["final"]["reliable"]) for r in rs),
                   "spec_rank": ref})
    rows.sort(key=lambda r: gc.POINT_NAMES.index(r["point"]))
    generic = gd.expected_dimension(arch.widths, arch.attn_dims, arch.kind, arch.t).value
    return {"points": [r["point"] for r in rows], "ranks": [r["rank"] for r in rows],
            "spec_ranks": [r["spec_rank"] for r in rows], "generic_formula": generic,
            "all_match_spec": all(r["rank"] == r["spec_rank"] for r in rows), "rows": rows,
            "spec_table_applies": (arch.widths, arch.attn_dims, arch.kind, arch.t) == ((4, 3), (2,), "lightning", 3)}

  def figures(cfg, logs, outdir):
    from attnlab.engine import plotting
    import matplotlib.pyplot as plt
    s = summarize(cfg, logs.runs)
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    x = np.arange(len(s["points"]))
    ax.bar(x - 0.2, s["ranks"], 0.4, label="Jacobian rank (ours)")
    ax.bar(x + 0.2, s["spec_ranks"], 0.4, label="spec §3.2 table", alpha=0.6)
    ax.set_xticks(x, s["points"], rotation=30, fontsize=7)
    ax.set_ylabel("rank")
    ax.set_title(f"single layer d={arch.widths[0]}, d'={arch.widths[1]}, a={arch.attn_dims[0]}, "
                 f"{arch.kind}", fontsize=9)
    ax.legend(fontsize=6)
    return [plotting.savefig(fig, outdir / "critical_points.png")]

  return OneShot(compute=compute, jit=True, x64=cfg.x64, hparams=("point",) + ESTIMATOR_HPARAMS,
                 summarize=summarize, figures=figures, compiler_options=ge.COMPILER_OPTIONS)


# ----------------------------------------------------------------------------
# Symmetries


def _rel(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))


def symmetry_checks(key: jax.Array, X: jax.Array, arch: gm.Arch, init: str = "fan_in", init_std=1.0,
                    scale_c=1.7, temperature=1.0, min_gap=1e6) -> dict[str, jax.Array]:
  """Invariance errors, generator residuals, and nullity vs symmetry dimension (spec checks 2-3).

  Args:
    key: INIT-stream key (weights, group elements). X: ``(N, d_0, t)`` inputs.
  Returns 0-d arrays:
    ``gl_err``, ``pass_err``, ``scale_err`` (max over layers of the max-norm
    relative change of phi), ``swap_err`` (single layer ``(d_0 -> 1)``, a = 1);
    ``gen_gl``, ``gen_pass``, ``gen_scale``: max over generators of
    ``||J xi|| / (||J||_2 ||xi||)`` with J row-normalised (same kernel); ``rank``, ``nullity`` (row-normalised
    J), ``symmetry_dimension`` (the formula of
    :func:`attnlab.geometry.dimension.symmetry_dimension`); ``gap_log10``, ``reliable``.
  """
  kind, ax = arch.kind, arch.softmax_axis
  L = arch.depth
  single = gm.Arch((arch.widths[0], 1), (1,), kind, arch.t, ax)
  # One sampler call for everything (each threefry call site costs ~0.6 s of compile).
  sizes = dict(theta=arch.num_params, theta1=single.num_params,
               **{f"C{i}": arch.attn_dims[i] ** 2 for i in range(L)},
               **{f"M{i}": arch.widths[i + 1] ** 2 for i in range(L - 1)},
               **{f"X{i}": arch.attn_dims[i] ** 2 for i in range(L)},
               **{f"Y{i}": arch.widths[i + 1] ** 2 for i in range(L - 1)})
  z = jax.random.normal(key, (sum(sizes.values()),))
  parts, o = {}, 0
  for name, n in sizes.items():
    parts[name], o = z[o:o + n], o + n
  sq = lambda v: v.reshape(math.isqrt(v.size), -1)

  def weights(a, v):
    return ravel_pytree(gm.zeros_params(a, v.dtype))[1](v * init_std * jnp.asarray(gm.param_scales(a, init), v.dtype))

  params = weights(arch, parts["theta"])
  phi = lambda p, XX=X: gm.forward(p, XX, kind, temperature, ax)
  y = phi(params)
  gl = [_rel(phi(gs.gl_rotation(params, i, gs.conditioned(sq(parts[f"C{i}"])))), y) for i in range(L)]
  pt = [_rel(phi(gs.pass_through(params, i, gs.conditioned(sq(parts[f"M{i}"])))), y) for i in range(L - 1)]
  sc = [_rel(phi(gs.scaling(params, i, scale_c)), y) for i in range(L)]
  p1 = weights(single, parts["theta1"])
  swap = _rel(phi(gs.kv_swap(p1, 0)), phi(p1))

  theta, unravel = ravel_pytree(params)
  flat = lambda th: phi(unravel(th)).reshape(-1)
  J = jax.jacfwd(flat)(theta)
  # Row normalisation J_n = D J (D > 0 diagonal) keeps the kernel, so the
  # residuals are taken against J_n; its spectral norm is the top singular value.
  J_n = J / jnp.maximum(jnp.linalg.norm(J, axis=1, keepdims=True), jnp.finfo(J.dtype).tiny)
  stats = ge.rank_stats(J_n, min_gap, False)
  Jnorm = stats["sv"][0]

  def resid(tangent):
    xi = ravel_pytree(tangent)[0]
    return jnp.linalg.norm(jnp.matmul(J_n, xi, precision=jax.lax.Precision.HIGHEST)) / (Jnorm * jnp.linalg.norm(xi))

  gen_gl = [resid(gs.gl_generator(params, i, sq(parts[f"X{i}"]))) for i in range(L)]
  gen_pass = [resid(gs.pass_through_generator(params, i, sq(parts[f"Y{i}"]))) for i in range(L - 1)]
  gen_scale = [resid(gs.scaling_generator(params, i)) for i in range(L)]
  zero = jnp.zeros((), y.dtype)
  mx = lambda v: jnp.max(jnp.stack(v)) if v else zero
  return {"gl_err": mx(gl), "pass_err": mx(pt), "scale_err": mx(sc), "swap_err": swap,
          "gen_gl": mx(gen_gl), "gen_pass": mx(gen_pass), "gen_scale": mx(gen_scale),
          "rank": stats["rank_tol"], "nullity": arch.num_params - stats["rank_tol"],
          "symmetry_dimension": jnp.asarray(gd.symmetry_dimension(arch.widths, arch.attn_dims, kind)),
          "gap_log10": stats["gap_log10"], "reliable": stats["reliable"]}


symmetry_kernel = jax.jit(symmetry_checks, static_argnames=("arch", "init"),
                          compiler_options=ge.COMPILER_OPTIONS)
symmetry_kernel.__doc__ = "``jit(symmetry_checks)`` (``arch``, ``init`` static; LLVM opt level 0)."


def symmetry_run(key, init_std, scale_c, temperature, min_gap, *, arch, n_inputs, init="fan_in"):
  """:func:`symmetry_checks` from a run key: inputs from the DATA stream, the rest from INIT."""
  X = ge.draw_inputs(prng.stream(key, prng.DATA), arch, n_inputs, 1)[0]
  return symmetry_checks(prng.stream(key, prng.INIT), X, arch, init, init_std, scale_c, temperature, min_gap)


def symmetries(cfg) -> OneShot:
  """Invariance errors of every symmetry and the Jacobian kernel (sweep ``kind`` for both kinds)."""
  arch = arch_of(cfg)
  check(cfg.scale_c > 0 and cfg.scale_c != 1, "scale_c", f"must be > 0 and != 1, got {cfg.scale_c!r}")
  n = n_inputs_of(cfg, arch)

  ge.set_blas_threads(cfg.blas_threads)

  def compute(key, hp, data):
    del data
    return symmetry_run(key, hp["init_std"], hp["scale_c"], hp["temperature"], hp["min_gap"],
                        arch=arch, n_inputs=n, init=cfg.init)

  def summarize(cfg, runs):
    out = {}
    for rs in _settings(runs):
      kind = rs[0]["coords"].get("kind", cfg.kind if isinstance(cfg.kind, str) else None)
      f = {k: [r["final"][k] for r in rs] for k in rs[0]["final"]}
      worst = {k: float(np.max(v)) for k, v in f.items() if k.endswith("_err") or k.startswith("gen_")}
      invariant_expected = {"gl_err": True, "pass_err": True, "scale_err": kind == "lightning",
                            "swap_err": kind == "lightning"}
      verdict = {k: (worst[k] <= 1e-12) if inv else (worst[k] > 1e-3) for k, inv in invariant_expected.items()}
      gens = ["gen_gl", "gen_pass"] + (["gen_scale"] if kind == "lightning" else [])
      verdict.update({k: worst[k] <= 1e-10 for k in gens})
      out[kind] = {**worst, "nullity": [int(v) for v in f["nullity"]],
                   "symmetry_dimension": int(f["symmetry_dimension"][0]),
                   "nullity_matches": all(int(v) == int(f["symmetry_dimension"][0]) for v in f["nullity"]),
                   "reliable": all(bool(v) for v in f["reliable"]), "checks_pass": verdict,
                   "all_pass": all(verdict.values())}
    return {"by_kind": out, "all_pass": all(v["all_pass"] and v["nullity_matches"] for v in out.values())}

  def figures(cfg, logs, outdir):
    from attnlab.engine import plotting
    import matplotlib.pyplot as plt
    s = summarize(cfg, logs.runs)["by_kind"]
    names = ["gl_err", "pass_err", "scale_err", "swap_err", "gen_gl", "gen_pass", "gen_scale"]
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    x = np.arange(len(names))
    for j, (kind, v) in enumerate(sorted(s.items())):
      vals = [max(v[n], 1e-18) for n in names]
      ax.bar(x + (j - 0.5) * 0.4, np.log10(vals), 0.4, label=kind)
    ax.axhline(-12, color="k", ls=":", lw=0.8)
    ax.set_xticks(x, names, rotation=30, fontsize=7)
    ax.set_ylabel(r"$\log_{10}$ relative change / residual")
    ax.set_title(f"symmetries at widths={arch.widths}, a={arch.attn_dims}", fontsize=9)
    ax.legend(fontsize=6)
    return [plotting.savefig(fig, outdir / "symmetries.png")]

  return OneShot(compute=compute, jit=True, x64=cfg.x64,
                 hparams=("init_std", "scale_c", "temperature", "min_gap"), summarize=summarize, figures=figures,
                 compiler_options=ge.COMPILER_OPTIONS)
