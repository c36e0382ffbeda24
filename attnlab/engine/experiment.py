"""The contract between the engine and an experiment.

An experiment is a small set of pure functions. A config names it with
``config.experiment = "package.module:factory"``; the engine calls
``factory(cfg)`` once per *static group* (a group is one assignment of the
sweep axes that change shapes or control flow), with ``cfg`` the locked config
with that group's static values filled in. The factory returns an
:class:`Iterative` or a :class:`OneShot`.

Per-run inputs (all with no leading run axis; the engine vmaps):

* ``key``: the run key, a raw ``uint32[2]`` PRNG key,
  ``fold_in(PRNGKey(cfg.seed), seed_index)``. Derive streams with
  :func:`attnlab.core.prng.stream` (``INIT=0``, ``DATA=1``, ``NOISE=2``).
  Two runs with the same seed index share their key (and so their init and
  data) whatever their hyperparameters are.
* ``hp``: a dict from each name in ``hparams`` to a 0-d array (float for
  Python floats, int32 for ints). These are traced: changing them never
  recompiles. Their values come from the sweep if the name is swept, else from
  the config field of the same name.
* ``data``: whatever ``make_data(key, hp)`` returned for this run (``None`` if
  no ``make_data``). ``make_data`` is jitted and vmapped separately, outside
  the trainer, because drawing random data inside a vmapped scan compiles
  several times slower.

Hyperparameters that change shapes (``d``, the number of heads, a method name)
must *not* be listed in ``hparams``; sweeping them splits the grid into static
groups, each compiled once.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

PyTree = Any
Metrics = Mapping[str, Any]


class ConfigError(ValueError):
  """A bad config value. ``field`` is the dotted config path, e.g. ``steps``.

  The CLI prints ``error: config.<field>: <message>`` on one line and exits 2,
  before anything is written to the workdir.
  """

  def __init__(self, field: str, message: str | None = None):
    if message is None:  # re-raised with one argument (ml_collections does this)
      field, _, message = field.removeprefix("config.").partition(": ")
    self.field = field
    self.message = message
    super().__init__(f"config.{field}: {message}")


@dataclasses.dataclass(frozen=True)
class Iterative:
  """An iterative experiment: ``steps`` applications of ``step`` per run.

  Attributes:
    init: ``init(key, hp, data) -> state``. ``state`` is a pytree of arrays;
      use raw uint32 keys (``jax.random.PRNGKey``), not typed keys, so it
      checkpoints.
    step: ``step(state, hp, data) -> (state, metrics)``. ``metrics`` is a dict
      of 0-d arrays that describe the *returned* (updated) state, so the value
      logged at step t is the metric after t updates.
    evaluate: optional ``evaluate(state, hp, data) -> metrics`` for metrics that
      are too costly to compute every step. The engine calls it only at logged
      steps (a ``lax.cond`` on an unbatched predicate, so under vmap it stays a
      real branch) and at step 0, and merges its output into ``step``'s.
    make_data: optional ``make_data(key, hp) -> data``; see the module doc.
    hparams: config fields passed as traced scalars in ``hp``.
    summarize: optional ``summarize(cfg, runs) -> dict`` where ``runs`` is the
      list of ``runs.jsonl`` records (dicts with ``run_id``, ``seed``, the
      sweep coordinates, ``final`` metrics, ``status``) over *all* groups.
      Its output is merged into ``summary.json``.
    summarize_logs: optional ``summarize_logs(cfg, logs) -> dict`` for
      summaries that need the logged curves, not only the final metrics (fits
      of loss curves, first-crossing steps): it receives the
      :class:`attnlab.engine.logs.Logs` and its output is merged into
      ``summary.json`` after ``summarize``'s. Like ``figures`` it must read
      only the logs, so ``python -m attnlab.plot`` rewrites it.
    figures: optional ``figures(cfg, logs, outdir) -> list[str]`` that draws
      extra PNGs from an :class:`attnlab.engine.logs.Logs`. It must read only
      logs, so ``python -m attnlab.plot`` can redraw it.
    plot_metrics: metrics drawn by the default loss-curve figure.
    log_x: whether the default figure uses a log step axis (defaults to the
      config's ``log_spacing == "log"``).
    x64: run the group under ``jax.enable_x64(True)`` (also on when the
      config's ``x64`` field is True).
    compiler_options: optional XLA options for the group's compiled programs,
      passed to ``jax.jit(..., compiler_options=...)``, e.g.
      ``{"xla_backend_optimization_level": 0}`` when compile time dominates.
  """

  init: Callable[..., PyTree]
  step: Callable[..., tuple[PyTree, Metrics]]
  evaluate: Optional[Callable[..., Metrics]] = None
  make_data: Optional[Callable[..., PyTree]] = None
  hparams: Sequence[str] = ()
  summarize: Optional[Callable[..., dict]] = None
  summarize_logs: Optional[Callable[..., dict]] = None
  figures: Optional[Callable[..., list]] = None
  plot_metrics: Sequence[str] = ("loss",)
  log_x: Optional[bool] = None
  x64: bool = False
  compiler_options: Optional[Mapping[str, Any]] = None


@dataclasses.dataclass(frozen=True)
class OneShot:
  """A one-shot experiment: one ``compute`` per run (an analysis, a fit).

  Attributes:
    compute: ``compute(key, hp, data) -> metrics``; ``metrics`` is a dict of
      arrays (0-d arrays become numbers in ``runs.jsonl``, others lists).
    jit: if True (default) the engine runs ``jit(vmap(compute))`` over the runs
      of the group. If False, ``compute`` is called once per run from Python
      with NumPy ``hp`` values; use this only for analyses that are not
      traceable (host-side loops over shapes, timing), and keep their inner
      kernels jitted.
    x64: run the group with ``jax.enable_x64(True)`` (rank decisions,
      exact-recovery checks, convergence orders).
    make_data, hparams, summarize, summarize_logs, figures, compiler_options:
      as in :class:`Iterative`.
  """

  compute: Callable[..., Metrics]
  jit: bool = True
  x64: bool = False
  make_data: Optional[Callable[..., PyTree]] = None
  hparams: Sequence[str] = ()
  summarize: Optional[Callable[..., dict]] = None
  summarize_logs: Optional[Callable[..., dict]] = None
  figures: Optional[Callable[..., list]] = None
  compiler_options: Optional[Mapping[str, Any]] = None
