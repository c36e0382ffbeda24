"""Read a workdir's logs back: the only data source for figures and summaries."""
from __future__ import annotations

import collections
import json
import pathlib
from typing import Any

import ml_collections
import numpy as np

from attnlab.engine.writers import read_jsonl


class Logs:
  """The logs of one workdir.

  Attributes:
    workdir: the directory.
    config: the resolved config (a locked ConfigDict, type-unsafe so tuple
      fields read back as tuples).
    runs: the ``runs.jsonl`` records, in grid order: ``run_id``, ``index``,
      ``group``, ``seed``, ``name``, the sweep coordinates under ``coords``
      (and flattened at top level), ``final`` (dict), ``status``,
      ``diverged_step``.
    metrics: the ``metrics.jsonl`` records: ``run_id``, ``step``, ``seed``,
      coordinates and metric values (``None`` where non-finite).
  """

  def __init__(self, workdir: str | pathlib.Path):
    self.workdir = pathlib.Path(workdir)
    cfg_path = self.workdir / "config.json"
    if not cfg_path.exists():
      raise FileNotFoundError(f"{self.workdir} has no config.json: not an attnlab workdir")
    plain = json.loads(cfg_path.read_text())
    self.config = ml_collections.ConfigDict(_tuples(plain), type_safe=False)
    self.runs = sorted(read_jsonl(self.workdir / "runs.jsonl"), key=lambda r: r.get("index", 0))
    self.metrics = read_jsonl(self.workdir / "metrics.jsonl")
    self._by_run = collections.defaultdict(list)
    for m in self.metrics:
      self._by_run[m["run_id"]].append(m)
    for v in self._by_run.values():
      v.sort(key=lambda m: m["step"])

  def run_ids(self) -> list[str]:
    """Run ids with metrics (also of runs still in progress)."""
    return list(self._by_run)

  def curve(self, run_id: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one run's metric; missing/non-finite values are NaN."""
    rows = [m for m in self._by_run.get(run_id, []) if metric in m]
    steps = np.array([m["step"] for m in rows], dtype=np.int64)
    vals = np.array([np.nan if m[metric] is None else m[metric] for m in rows], dtype=np.float64)
    return steps, vals

  def settings(self) -> dict[tuple, list[str]]:
    """Sweep setting (tuple of (name, value)) -> run ids, over runs that logged metrics."""
    out: dict[tuple, list[str]] = collections.OrderedDict()
    seen = set()
    for m in self.metrics:
      if m["run_id"] in seen:
        continue
      seen.add(m["run_id"])
      out.setdefault(tuple(sorted(m.get("coords", {}).items())), []).append(m["run_id"])
    return out

  def curves(self, run_ids: list[str], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Stack curves of several runs on their common steps: (steps, Y[runs, steps])."""
    curves = [self.curve(r, metric) for r in run_ids]
    curves = [c for c in curves if len(c[0])]
    if not curves:
      return np.zeros(0, np.int64), np.zeros((0, 0))
    common = curves[0][0]
    for s, _ in curves[1:]:
      common = np.intersect1d(common, s)
    Y = np.stack([v[np.isin(s, common)] for s, v in curves])
    return common, Y


def _tuples(obj: Any) -> Any:
  if isinstance(obj, dict):
    return {k: _tuples(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return tuple(_tuples(v) for v in obj)
  return obj


def load(workdir: str | pathlib.Path) -> Logs:
  """Load a workdir's logs."""
  return Logs(workdir)
