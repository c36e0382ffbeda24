"""Figures drawn from logs: a fixed style, median + IQR bands over seeds."""
from __future__ import annotations

import pathlib
import warnings
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 7,
    "legend.frameon": False,
}
plt.rcParams.update(STYLE)


def band(ax, steps: np.ndarray, Y: np.ndarray, label: str | None = None, color=None, alpha: float = 0.2):
  """Plot the median over rows of Y: (seeds, steps) with an interquartile band."""
  Y = np.asarray(Y, dtype=np.float64)
  if Y.ndim == 1:
    Y = Y[None]
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns after a divergence
    med = np.nanmedian(Y, axis=0)
    lo, hi = np.nanpercentile(Y, 25, axis=0), np.nanpercentile(Y, 75, axis=0)
  (line,) = ax.plot(steps, med, label=label, color=color, lw=1.4)
  if Y.shape[0] > 1:
    ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=alpha, lw=0)
  return line


def savefig(fig, path: str | pathlib.Path) -> str:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, bbox_inches="tight")
  plt.close(fig)
  return str(path)


def _label(setting: dict, skip: Sequence[str] = ()) -> str:
  parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items() if k not in skip]
  return ", ".join(parts) or "all runs"


def _positive(Y: np.ndarray) -> bool:
  finite = Y[np.isfinite(Y)]
  return finite.size > 0 and bool(np.all(finite > 0))


def loss_curves(logs, metrics: Sequence[str], path: str | pathlib.Path, log_x: bool = False) -> str | None:
  """The default figure: one row per metric; one column per value of the last
  sweep axis (when there are two or more axes); one median + IQR line per
  remaining sweep setting. Log y where the values are positive."""
  settings = logs.settings()
  if not settings:
    return None
  keys = [dict(k) for k in settings]
  axis_names = list(keys[0].keys())
  facet = axis_names[-1] if len(axis_names) >= 2 else None
  facet_values = list(dict.fromkeys(k[facet] for k in keys)) if facet else [None]
  metrics = [m for m in metrics if any(m in r for r in logs.metrics)]
  if not metrics:
    return None
  fig, axes = plt.subplots(len(metrics), len(facet_values), squeeze=False,
                           figsize=(3.4 * len(facet_values), 2.6 * len(metrics)))
  for i, metric in enumerate(metrics):
    for j, fv in enumerate(facet_values):
      ax = axes[i, j]
      cmap = plt.get_cmap("viridis")
      members = [(s, ids) for s, ids in settings.items() if facet is None or dict(s)[facet] == fv]
      for c, (s, ids) in enumerate(members):
        steps, Y = logs.curves(ids, metric)
        if not len(steps):
          continue
        if log_x and steps.size and steps[0] == 0:
          steps, Y = steps[1:], Y[:, 1:]
        band(ax, steps, Y, label=_label(dict(s), skip=(facet,) if facet else ()),
             color=cmap(c / max(1, len(members) - 1)) if len(members) > 1 else None)
        if _positive(Y):
          ax.set_yscale("log")
      if log_x:
        ax.set_xscale("log")
      ax.set_xlabel("step")
      ax.set_ylabel(metric)
      title = f"{facet}={fv:g}" if isinstance(fv, float) else (f"{facet}={fv}" if facet else metric)
      ax.set_title(title)
      ax.legend(loc="best")
  fig.suptitle(f"{logs.config.get('experiment', '')}: median and IQR over seeds", fontsize=9, y=1.02)
  return savefig(fig, path)
