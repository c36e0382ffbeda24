"""Exponent fitting of logged loss curves (spec §6.2, §6.3), host-side float64 NumPy.

These run on logged data (``metrics.jsonl`` or theory curves), never inside a
training loop. Conventions: ``L ~ t^-gamma`` with ``gamma > 0`` reported;
``t`` is ``eta * step`` for SGD and ``step`` for Adam (``time_unit='auto'``).

The automatic window (``window='auto'``):

1. local exponents ``gamma_loc`` by a centred ``smooth_points``-point linear fit
   of ``log L`` against ``log t`` (``smoother='local_linear'``);
2. eligible points: after the transient (``L < start_frac * L_0``) and before
   the ceiling (``L - L_inf > ceiling_nsigma * sigma_noise``, with ``L_inf``
   and ``sigma_noise`` the mean and standard deviation of the last
   ``ceiling_tail_frac`` of the run's steps, at least 3 points);
3. the window is the longest run of consecutive eligible points whose
   ``gamma_loc`` stays within ``band`` of the median over the eligible
   points, and must span at least ``min_decades`` decades;
4. ``gamma`` is ``-slope`` of a least-squares fit of ``log L`` (or
   ``log(L - L_inf)`` with ``subtract_ceiling``) against ``log t`` there.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FitOptions:
  smooth_points: int = 7
  band: float = 0.1
  min_decades: float = 1.0
  start_frac: float = 0.5
  ceiling_nsigma: float = 3.0
  subtract_ceiling: bool = False
  ceiling_tail_frac: float = 0.1

  @classmethod
  def from_config(cls, cfg) -> "FitOptions":
    return cls(smooth_points=int(cfg.fit_smooth_points), band=float(cfg.fit_band),
               min_decades=float(cfg.fit_min_decades), start_frac=float(cfg.fit_start_frac),
               ceiling_nsigma=float(cfg.fit_ceiling_nsigma), subtract_ceiling=bool(cfg.fit_subtract_ceiling),
               ceiling_tail_frac=float(cfg.fit_ceiling_tail_frac))


def slope(x: np.ndarray, y: np.ndarray) -> float:
  """Least-squares slope of y against x."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  xm = x - x.mean()
  return float(np.sum(xm * (y - y.mean())) / np.sum(xm * xm))


def local_exponents(t: np.ndarray, L: np.ndarray, points: int = 7) -> np.ndarray:
  """``gamma_loc(t_k) = -d log L / d log t`` from a centred ``points``-point linear fit (NaN at the ends)."""
  lt, lL = np.log(np.asarray(t, np.float64)), np.log(np.asarray(L, np.float64))
  h = points // 2
  out = np.full(lt.shape, np.nan)
  for k in range(h, len(lt) - h):
    out[k] = -slope(lt[k - h:k + h + 1], lL[k - h:k + h + 1])
  return out


def ceiling(steps: np.ndarray, L: np.ndarray, tail_frac: float = 0.1) -> tuple[float, float]:
  """(L_inf, sigma_noise): mean and std of L over the last ``tail_frac`` of the steps (>= 3 points)."""
  steps = np.asarray(steps, np.float64)
  tail = steps >= steps[-1] - tail_frac * (steps[-1] - steps[0])
  idx = np.nonzero(tail)[0]
  if idx.size < 3:
    idx = np.arange(max(0, len(L) - 3), len(L))
  vals = np.asarray(L, np.float64)[idx]
  return float(vals.mean()), float(vals.std())


def auto_window(t, L, L0: float, opts: FitOptions = FitOptions(), steps=None) -> tuple[int, int] | None:
  """Indices ``(lo, hi)`` (inclusive) of the automatic window, or None if none qualifies."""
  t = np.asarray(t, np.float64)
  L = np.asarray(L, np.float64)
  steps = t if steps is None else np.asarray(steps, np.float64)
  ok = np.isfinite(L) & (L > 0) & (t > 0)
  if ok.sum() < opts.smooth_points:
    return None
  gl = np.full(t.shape, np.nan)
  gl[ok] = local_exponents(t[ok], L[ok], opts.smooth_points)
  L_inf, sig = ceiling(steps[ok], L[ok], opts.ceiling_tail_frac)
  elig = ok & np.isfinite(gl) & (L < opts.start_frac * L0) & (L - L_inf > opts.ceiling_nsigma * sig)
  if elig.sum() < 3:
    return None
  med = np.median(gl[elig])
  inb = elig & (np.abs(gl - med) <= opts.band)
  best, best_span = None, -1.0
  k = 0
  while k < len(t):
    if not inb[k]:
      k += 1
      continue
    j = k
    while j + 1 < len(t) and inb[j + 1]:
      j += 1
    span = np.log10(t[j] / t[k])
    if span > best_span:
      best, best_span = (k, j), span
    k = j + 1
  if best is None or best_span < opts.min_decades:
    return None
  return best


def fit_gamma(t, L, L0: float | None = None, opts: FitOptions = FitOptions(), steps=None) -> dict:
  """The global exponent over the automatic window.

  Returns ``gamma`` (NaN when no window qualifies), ``fit_window`` ``[t_lo, t_hi]``
  (or None), ``window_decades``, ``L_inf`` and ``sigma_noise``.
  """
  t = np.asarray(t, np.float64)
  L = np.asarray(L, np.float64)
  L0 = float(L[0]) if L0 is None else float(L0)
  win = auto_window(t, L, L0, opts, steps)
  ok = np.isfinite(L) & (L > 0)
  L_inf, sig = ceiling((t if steps is None else np.asarray(steps, np.float64))[ok], L[ok], opts.ceiling_tail_frac)
  out = {"gamma": float("nan"), "fit_window": None, "window_decades": 0.0, "L_inf": L_inf, "sigma_noise": sig}
  if win is None:
    return out
  lo, hi = win
  y = L[lo:hi + 1] - (L_inf if opts.subtract_ceiling else 0.0)
  good = y > 0
  if good.sum() < 3:
    return out
  out["gamma"] = -slope(np.log(t[lo:hi + 1][good]), np.log(y[good]))
  out["fit_window"] = [float(t[lo]), float(t[hi])]
  out["window_decades"] = float(np.log10(t[hi] / t[lo]))
  return out


def fit_gamma_on_window(t, L, window) -> float:
  """``-slope(log L, log t)`` over ``window = [t_lo, t_hi]`` (e.g. the simulation's window)."""
  t = np.asarray(t, np.float64)
  L = np.asarray(L, np.float64)
  if window is None:
    return float("nan")
  m = (t >= window[0] * (1 - 1e-9)) & (t <= window[1] * (1 + 1e-9)) & (L > 0) & np.isfinite(L)
  if m.sum() < 3:
    return float("nan")
  return -slope(np.log(t[m]), np.log(L[m]))


def time_to_target(t, L, target: float) -> float:
  """First ``t`` with ``L <= target`` (log-log interpolation); inf if never reached."""
  t = np.asarray(t, np.float64)
  L = np.asarray(L, np.float64)
  below = np.nonzero(L <= target)[0]
  if below.size == 0:
    return float("inf")
  k = below[0]
  if k == 0:
    return float(t[0])
  x0, x1 = np.log(t[k - 1]), np.log(t[k])
  y0, y1 = np.log(L[k - 1]), np.log(L[k])
  frac = (np.log(target) - y0) / (y1 - y0) if y1 != y0 else 1.0
  return float(np.exp(x0 + frac * (x1 - x0)))


def front_slope(t, front, n: int, lo_frac: float = 4.0, hi_frac: float = 0.25) -> float:
  """Slope of ``log i*(t)`` against ``log t`` over the points with ``lo_frac <= i* <= hi_frac * n``."""
  t = np.asarray(t, np.float64)
  f = np.asarray(front, np.float64)
  m = (f >= lo_frac) & (f <= hi_frac * n) & (t > 0)
  if m.sum() < 3:
    return float("nan")
  return slope(np.log(t[m]), np.log(f[m]))
