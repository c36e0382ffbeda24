"""Config helpers shared by every ``configs/*.py``.

A config file defines ``get_config(arg=None) -> ConfigDict`` built on
:func:`base_config`, which adds the engine's fields:

==================  =========  ===============================================
field               default    meaning
==================  =========  ===============================================
experiment          (given)    ``"package.module:factory"``
seed                0          base seed; run i uses ``fold_in(PRNGKey(seed), i)``
seeds               1          number of seeds (a count)
sweep               {}         field name -> tuple of values; the run grid is
                               product(sweep) x seeds
steps               1          iterations per run (iterative experiments)
log_every           10         log every k steps (``log_spacing="linear"``)
log_spacing         "linear"   ``"linear"`` or ``"log"``
n_log_points        50         number of log-spaced points (``"log"``)
chunk_steps         100        steps per compiled ``lax.scan`` chunk; metrics
                               reach the host (and the progress bar) once a chunk
ckpt_every          5          checkpoint every k chunks (0: never)
x64                 False      run in float64 (``jax.enable_x64``)
max_parallel_runs   0          runs per compiled batch (0: all runs of a group)
lanes               0          runs vmapped in lockstep (per device); 0 means 8
                               for iterative and 1 for one-shot experiments. Batches are
                               padded to a multiple of lanes x devices. Run i is
                               bit-identical for any grid, batch and device count
                               with the same lanes (raise it on GPUs)
==================  =========  ===============================================

Experiment fields are added next to these at the top level (flat configs keep
``--config.<field>=...`` overrides short).
"""
from __future__ import annotations

from typing import Any

import ml_collections

from attnlab.engine.experiment import ConfigError

ENGINE_FIELDS = ("experiment", "seed", "seeds", "sweep", "steps", "log_every", "log_spacing",
                 "n_log_points", "chunk_steps", "ckpt_every", "x64", "max_parallel_runs", "lanes")


def base_config(experiment: str, **fields: Any) -> ml_collections.ConfigDict:
  """A ConfigDict with the engine fields' defaults, updated with ``fields``.

  ``sweep`` may be given as a plain dict of tuples.
  """
  cfg = ml_collections.ConfigDict()
  cfg.experiment = experiment
  cfg.seed = 0
  cfg.seeds = 1
  cfg.sweep = ml_collections.ConfigDict()
  cfg.steps = 1
  cfg.log_every = 10
  cfg.log_spacing = "linear"
  cfg.n_log_points = 50
  cfg.chunk_steps = 100
  cfg.ckpt_every = 5
  cfg.x64 = False
  cfg.max_parallel_runs = 0
  cfg.lanes = 0
  sweep = fields.pop("sweep", None)
  for k, v in fields.items():
    setattr(cfg, k, v)
  if sweep:
    cfg.sweep = ml_collections.ConfigDict({k: tuple(v) for k, v in sweep.items()})
  return cfg


def parse_arg(arg: str | None, **spec: Any) -> dict:
  """big_vision-style ``path.py:a=1,b=x,flag`` argument parsing.

  ``spec`` gives each known name's default (its type is taken from it); a bare
  name sets a bool to True. Unknown names raise :class:`ConfigError`.
  """
  out = dict(spec)
  if not arg:
    return out
  for part in arg.split(","):
    if not part:
      continue
    name, _, value = part.partition("=")
    if name not in spec:
      raise ConfigError(f"<arg>.{name}", f"unknown config argument; known: {sorted(spec)}")
    default = spec[name]
    if isinstance(default, bool):
      out[name] = value.lower() in ("", "1", "true", "yes")
    elif value == "":
      raise ConfigError(f"<arg>.{name}", "needs a value")
    else:
      try:
        out[name] = type(default)(value) if default is not None else value
      except ValueError:
        raise ConfigError(f"<arg>.{name}", f"expected {type(default).__name__}, got {value!r}") from None
  return out


def check(ok: bool, field: str, message: str) -> None:
  """Raise :class:`ConfigError` for ``field`` unless ``ok``."""
  if not ok:
    raise ConfigError(field, message)


def check_positive(cfg, *names: str, strict: bool = True) -> None:
  """Every named field is > 0 (``strict``) or >= 0; tuples are checked per entry."""
  for name in names:
    value = cfg[name]
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
      if strict and not v > 0:
        raise ConfigError(name, f"must be > 0, got {value!r}")
      if not strict and not v >= 0:
        raise ConfigError(name, f"must be >= 0, got {value!r}")


def check_choice(cfg, name: str, choices) -> None:
  """``cfg[name]`` (or every entry of a tuple) is one of ``choices``."""
  value = cfg[name]
  values = value if isinstance(value, (tuple, list)) else (value,)
  for v in values:
    if v not in choices:
      raise ConfigError(name, f"must be one of {sorted(choices)}, got {v!r}")


def load_config(path: str, arg: str | None = None, lock: bool = True) -> ml_collections.ConfigDict:
  """Load ``get_config(arg)`` from a config file (for notebooks, tests and scripts).

  ``path`` may carry the argument as ``"configs/x.py:arg"``.
  """
  import importlib.util
  import pathlib
  if arg is None and ":" in pathlib.Path(path).name:
    path, _, arg = path.rpartition(":")
  spec = importlib.util.spec_from_file_location(f"attnlab_config_{pathlib.Path(path).stem}", path)
  if spec is None or not pathlib.Path(path).exists():
    raise FileNotFoundError(f"no config file at {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config(arg) if arg is not None else module.get_config()
  if lock:
    cfg.lock()
  return cfg
