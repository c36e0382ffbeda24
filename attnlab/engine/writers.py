"""Workdir files: atomic JSON, append-only JSONL, TensorBoard mirrors, env.

Only process 0 writes (multi-host runs).
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import platform
import subprocess
import sys
from typing import Any, Iterable

import jax


def is_writer() -> bool:
  return jax.process_index() == 0


def clean(value: Any) -> Any:
  """JSON-safe value: numpy scalars to Python, non-finite floats to None."""
  if hasattr(value, "tolist"):
    value = value.tolist()
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [clean(v) for v in value]
  return value


def write_json(path: pathlib.Path, obj: Any) -> None:
  """Write JSON atomically (temp file + rename), so a kill never leaves half a file."""
  if not is_writer():
    return
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(clean(obj), indent=2, sort_keys=False) + "\n")
  os.replace(tmp, path)


def append_jsonl(path: pathlib.Path, records: Iterable[dict]) -> None:
  """Append records, one JSON object per line, flushed and fsynced."""
  if not is_writer():
    return
  lines = "".join(json.dumps(clean(r)) + "\n" for r in records)
  if not lines:
    return
  with open(path, "a") as f:
    f.write(lines)
    f.flush()
    os.fsync(f.fileno())


def read_jsonl(path: pathlib.Path) -> list[dict]:
  """Read a JSONL file, dropping a torn last line (a kill mid-write)."""
  if not path.exists():
    return []
  out = []
  for line in path.read_text().splitlines():
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return out


def rewrite_jsonl(path: pathlib.Path, records: list[dict]) -> None:
  if not is_writer():
    return
  tmp = path.with_suffix(".tmp")
  tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
  os.replace(tmp, path)


def env_info(argv: list[str] | None = None) -> dict:
  """Package versions, devices, git SHA, argv, host."""
  import importlib.metadata as md
  versions = {}
  for pkg in ("jax", "jaxlib", "flax", "optax", "chex", "ml-collections", "absl-py", "orbax-checkpoint",
              "diffrax", "equinox", "numpy", "scipy", "tensorboardX", "matplotlib", "attnlab"):
    try:
      versions[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      versions[pkg] = None
  repo = pathlib.Path(__file__).resolve().parents[2]
  try:
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         timeout=5).stdout.strip() or None
  except Exception:  # git missing or not a checkout
    sha = None
  return {
      "versions": versions,
      "python": sys.version.split()[0],
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
      "process_index": jax.process_index(),
      "process_count": jax.process_count(),
      "x64_default": bool(jax.config.jax_enable_x64),
      "git_sha": sha,
      "argv": list(argv if argv is not None else sys.argv),
      "hostname": platform.node(),
  }


class TensorBoard:
  """One tensorboardX writer per run, in ``workdir/tb/<run name>/``."""

  def __init__(self, root: pathlib.Path, names: dict[str, str], purge_step: int | None = None,
               hparams: dict[str, dict] | None = None):
    self._writers = {}
    if not is_writer():
      return
    from tensorboardX import SummaryWriter
    for run_id, name in names.items():
      self._writers[run_id] = SummaryWriter(logdir=str(root / name), purge_step=purge_step,
                                            flush_secs=30)

  def scalars(self, run_id: str, step: int, metrics: dict) -> None:
    w = self._writers.get(run_id)
    if w is None:
      return
    for k, v in metrics.items():
      if isinstance(v, (int, float)) and v is not None:
        w.add_scalar(k, v, step)

  def close(self) -> None:
    for w in self._writers.values():
      w.close()
    self._writers = {}
