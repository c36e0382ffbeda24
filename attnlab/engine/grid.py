"""The run grid: sweep axes x seeds, split into static groups.

A config's ``sweep`` maps config field names to tuples of values. Every swept
name listed in the experiment's ``hparams`` is *dynamic*: its value travels
per run as a traced scalar, so all its values share one compiled program.
Every other swept name is *static*: each distinct assignment of the static
axes is a group, whose config has those fields set and which is compiled once.

Runs are enumerated in the order product(sweep axes, in config order) x seeds,
and each gets a stable ``run_id`` (a hash of its coordinates and seed index),
so chunking, padding and sharding never change a run's id or its key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
from typing import Any, Callable

import ml_collections

from attnlab.engine.experiment import ConfigError, Iterative, OneShot
from attnlab.engine.config import ENGINE_FIELDS

_ENGINE_REQUIRED = {"experiment": str, "seed": int, "seeds": int, "steps": int, "log_every": int,
                    "log_spacing": str, "n_log_points": int, "chunk_steps": int, "ckpt_every": int,
                    "x64": bool, "max_parallel_runs": int, "lanes": int}


@dataclasses.dataclass(frozen=True)
class Run:
  """One run: its index in the grid, id, seed index, coordinates and group."""
  index: int
  run_id: str
  seed: int
  coords: dict
  group: int

  @property
  def name(self) -> str:
    parts = [f"{k}={_fmt(v)}" for k, v in self.coords.items()] + [f"seed={self.seed}"]
    return "_".join(parts)


@dataclasses.dataclass
class Group:
  """A static group: its config, experiment and runs."""
  index: int
  static: dict
  cfg: ml_collections.ConfigDict
  experiment: Any
  runs: list


@dataclasses.dataclass
class Grid:
  cfg: ml_collections.ConfigDict
  experiment: Any  # built from the base config; gives summarize/figures/hparams
  axes: dict
  dynamic: tuple
  static: tuple
  groups: list

  @property
  def runs(self) -> list:
    return sorted((r for g in self.groups for r in g.runs), key=lambda r: r.index)


def _fmt(v: Any) -> str:
  return f"{v:g}" if isinstance(v, float) else str(v)


def load_factory(spec: str) -> Callable:
  """Import ``"package.module:factory"``."""
  module, _, attr = spec.partition(":")
  if not module or not attr:
    raise ConfigError("experiment", f"must look like 'package.module:factory', got {spec!r}")
  try:
    mod = importlib.import_module(module)
  except ImportError as e:
    raise ConfigError("experiment", f"cannot import {module!r}: {e}") from None
  if not hasattr(mod, attr):
    raise ConfigError("experiment", f"{module!r} has no attribute {attr!r}")
  return getattr(mod, attr)


def to_plain(cfg: ml_collections.ConfigDict) -> dict:
  """The resolved config as plain JSON-able Python (tuples become lists)."""
  return json.loads(json.dumps(cfg.to_dict(), default=_json_default))


def _json_default(o):
  if isinstance(o, tuple):
    return list(o)
  if isinstance(o, ml_collections.FieldReference):
    return o.get()
  return str(o)


def with_fields(cfg: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  """A locked copy of ``cfg`` (references resolved) with ``values`` set.

  Set type-unsafely, so a tuple field may receive one of its entries.
  """
  out = ml_collections.ConfigDict(cfg.to_dict(), type_safe=False)
  for k, v in values.items():
    out[k] = v
  out.lock()
  return out


def check_engine_fields(cfg: ml_collections.ConfigDict) -> None:
  for name, typ in _ENGINE_REQUIRED.items():
    if name not in cfg:
      raise ConfigError(name, "missing (build configs with attnlab.engine.config.base_config)")
    v = cfg[name]
    if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
      raise ConfigError(name, f"must be an int, got {v!r}")
    if typ is not int and not isinstance(v, typ):
      raise ConfigError(name, f"must be a {typ.__name__}, got {v!r}")
  for name, lowest, note in _ENGINE_MINIMUMS:
    if cfg[name] < lowest:
      raise ConfigError(name, f"must be >= {lowest}{note}, got {cfg[name]}")
  if cfg.log_spacing not in ("linear", "log"):
    raise ConfigError("log_spacing", f"must be 'linear' or 'log', got {cfg.log_spacing!r}")


# (field, smallest allowed value, remark) for the integer engine fields.
_ENGINE_MINIMUMS = (
    ("seeds", 1, ""),
    ("steps", 1, ""),
    ("log_every", 1, ""),
    ("n_log_points", 2, ""),
    ("chunk_steps", 1, ""),
    ("ckpt_every", 0, ""),
    ("lanes", 0, " (0: automatic)"),
    ("max_parallel_runs", 0, ""),
)


def sweep_axes(cfg: ml_collections.ConfigDict) -> dict:
  axes = {}
  sweep = cfg.sweep
  for name in sweep.keys():
    values = sweep[name]
    if isinstance(values, ml_collections.FieldReference):
      values = values.get()
    if not isinstance(values, (tuple, list)):
      values = (values,)
    if len(values) == 0:
      raise ConfigError(f"sweep.{name}", "empty sweep: give at least one value")
    if name in ENGINE_FIELDS:
      raise ConfigError(f"sweep.{name}", "engine fields cannot be swept")
    if name not in cfg:
      raise ConfigError(f"sweep.{name}", "not a config field")
    axes[name] = tuple(values)
  return axes


def _build(factory: Callable, cfg) -> Any:
  exp = factory(cfg)
  if not isinstance(exp, (Iterative, OneShot)):
    raise TypeError(f"experiment factory must return Iterative or OneShot, got {type(exp).__name__}")
  return exp


def run_id(coords: dict, seed: int) -> str:
  blob = json.dumps({"coords": coords, "seed": seed}, sort_keys=True, default=str)
  return hashlib.sha1(blob.encode()).hexdigest()[:10]


def build_grid(cfg: ml_collections.ConfigDict) -> Grid:
  """Validate ``cfg`` and expand it into static groups of runs.

  Raises :class:`ConfigError` on any bad field. Calls the experiment factory
  for the base config, for every static group, and once per dynamic value (to
  validate it), but compiles nothing.
  """
  check_engine_fields(cfg)
  factory = load_factory(cfg.experiment)
  axes = sweep_axes(cfg)
  base = _build(factory, with_fields(cfg, {}))
  hparams = tuple(base.hparams)
  for name in hparams:
    if name not in cfg:
      raise ConfigError(name, "listed in the experiment's hparams but not a config field")
    if name not in axes:
      v = cfg[name]
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(name, f"a traced hyperparameter must be a number, got {v!r}")
  dynamic = tuple(a for a in axes if a in hparams)
  static = tuple(a for a in axes if a not in hparams)
  for name in dynamic:
    for v in axes[name]:
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"sweep.{name}", f"a traced hyperparameter must be a number, got {v!r}")
      _build(factory, with_fields(cfg, {name: v}))
  groups = []
  static_combos = list(itertools.product(*(axes[a] for a in static)))
  group_of = {}
  for gi, combo in enumerate(static_combos):
    assign = dict(zip(static, combo))
    gcfg = with_fields(cfg, assign)
    groups.append(Group(gi, assign, gcfg, _build(factory, gcfg), []))
    group_of[combo] = gi
  index = 0
  names = tuple(axes)
  for combo in itertools.product(*(axes[a] for a in names)):
    coords = dict(zip(names, combo))
    g = group_of[tuple(coords[a] for a in static)]
    for s in range(cfg.seeds):
      groups[g].runs.append(Run(index, run_id(coords, s), s, coords, g))
      index += 1
  return Grid(cfg, base, axes, dynamic, static, groups)
