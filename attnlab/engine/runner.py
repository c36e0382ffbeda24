"""The engine: runs a whole grid of experiment runs, logs, checkpoints, resumes.

``run(cfg, workdir)`` expands the config into static groups (see
:mod:`attnlab.engine.grid`). Each group's runs are stacked on a leading run
axis (split into batches of ``max_parallel_runs`` and padded to a multiple of
the device count) and executed as one ``jit(vmap(...))``:

* iterative experiments run a host loop over chunks of ``chunk_steps`` steps,
  each chunk one ``lax.scan``. After each chunk the metrics of the logged steps
  come to the host, are written to ``metrics.jsonl`` and TensorBoard, the
  progress line moves, and every ``ckpt_every`` chunks an orbax checkpoint of
  the whole stacked state is saved. The last chunk is padded with inactive
  steps, so every chunk reuses one compiled program.
* one-shot experiments run ``jit(vmap(compute))`` once per batch.

Compiled programs are cached in-process per (experiment, static config, batch
shape), and every hyperparameter in ``hparams`` is a traced argument, so a new
learning rate never retraces (guarded by ``chex.assert_max_traces``).

A run whose state or metrics become non-finite is frozen at its last finite
state, marked ``diverged`` at that step, and the other runs go on.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import shutil
import sys
import time
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from attnlab.core import prng
from attnlab.engine import grid as grid_lib
from attnlab.engine import writers
from attnlab.engine.experiment import Iterative, OneShot
from attnlab.engine.progress import Progress


class WorkdirError(RuntimeError):
  """The workdir holds a different config (and ``overwrite`` was not given)."""


# ----------------------------------------------------------------------------
# Schedules and helpers


def log_steps(cfg) -> np.ndarray:
  """Sorted logged steps in [1, steps]; always includes ``steps``."""
  steps = cfg.steps
  if cfg.log_spacing == "log":
    s = np.unique(np.round(np.geomspace(1, steps, cfg.n_log_points)).astype(np.int64))
  else:
    s = np.arange(cfg.log_every, steps + 1, cfg.log_every, dtype=np.int64)
  return np.unique(np.concatenate([s, [steps]]))


def _tree_all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _hp_array(values: list) -> np.ndarray:
  if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
    return np.asarray(values, dtype=np.int32)
  dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
  return np.asarray(values, dtype=dtype)


def _device_count() -> int:
  return jax.device_count()


def _sharding():
  """``NamedSharding`` over a 1-D ``'runs'`` mesh of all devices, or None."""
  if _device_count() == 1:
    return None
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("runs",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))


def _vmapped(fn, in_axes, lanes: int, compiler_options=None):
  """``jit`` of ``fn`` mapped over the leading run axis, bit-stable.

  XLA's CPU code for a vmapped function depends on the batch size (a run's
  floats can change in the last bit between a batch of 1 and of 4), but not on
  a run's position in the batch. So runs always execute in vmaps of exactly
  ``lanes`` runs, and ``lax.map`` walks over the groups of lanes; with several
  devices, each device does this for its share through ``shard_map``. Run i's
  results then do not depend on the grid, the batch or the device count.
  The leading axis must be a multiple of ``lanes`` x the device count.
  ``compiler_options`` go to ``jax.jit`` (see ``Iterative.compiler_options``).
  """
  v = jax.vmap(fn, in_axes=in_axes)

  def per_device(*args):
    mapped = [a for a, ax in zip(args, in_axes) if ax == 0]
    n = jax.tree.leaves(mapped)[0].shape[0] // lanes
    if n == 1:
      return v(*args)

    def one(chunk):
      it = iter(chunk)
      return v(*[next(it) if ax == 0 else a for a, ax in zip(args, in_axes)])

    split = jax.tree.map(lambda x: x.reshape((n, lanes) + x.shape[1:]), mapped)
    out = jax.lax.map(one, split)
    return jax.tree.map(lambda x: x.reshape((n * lanes,) + x.shape[2:]), out)

  jitted = jax.jit(per_device, compiler_options=dict(compiler_options) if compiler_options else None)
  sharding = _sharding()
  if sharding is None:
    return jitted
  return _PerShard(jitted, in_axes, sharding)


class _PerShard:
  """Run a jitted per-device program on every addressable shard of the run
  axis and reassemble the outputs as arrays sharded by ``NamedSharding``.

  Each device executes the very program a single device would (dispatch is
  asynchronous, so devices run concurrently). The SPMD partitioner
  (``shard_map`` or ``jit`` with shardings) compiles a different program whose
  floats can differ in the last bit, which would break "run i is identical
  alone, batched and sharded". In a multi-host run each process executes its
  addressable shards.
  """

  def __init__(self, jitted, in_axes, sharding):
    self.jitted, self.in_axes, self.sharding = jitted, in_axes, sharding

  def _shards(self, args):
    devices = [s.device for s in jax.tree.leaves([a for a, ax in zip(args, self.in_axes) if ax == 0])[0]
               .addressable_shards]
    per_dev = []
    for i, dev in enumerate(devices):
      local = []
      for a, ax in zip(args, self.in_axes):
        if ax == 0:
          local.append(jax.tree.map(lambda x: x.addressable_shards[i].data, a))
        else:
          local.append(jax.device_put(a, dev))
      per_dev.append(local)
    return devices, per_dev

  def __call__(self, *args):
    devices, per_dev = self._shards(args)
    outs = [self.jitted(*local) for local in per_dev]

    def assemble(*parts):
      n = sum(p.shape[0] for p in parts) * jax.process_count()
      shape = (n,) + parts[0].shape[1:]
      return jax.make_array_from_single_device_arrays(shape, self.sharding, list(parts))

    return jax.tree.map(assemble, *outs)

  def eval_shape(self, *args):
    devices, per_dev = self._shards(args)
    out = self.jitted.eval_shape(*per_dev[0])
    k = len(devices) * jax.process_count()
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct((s.shape[0] * k,) + s.shape[1:], s.dtype), out)


def _put(tree, sharding):
  """Place host arrays with a leading run axis on the devices (multi-host safe)."""
  if sharding is None:
    return jax.tree.map(jnp.asarray, tree)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(put, tree)


def _host(tree):
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


# ----------------------------------------------------------------------------
# Compiled programs, cached per static key

_PROGRAMS: dict[tuple, Any] = {}
TRACE_COUNTS: dict[str, int] = {}


def _static_key(group_cfg, hparams, batch: int, kind: str) -> tuple:
  plain = grid_lib.to_plain(group_cfg)
  for f in ("seed", "seeds", "steps", "log_every", "log_spacing", "n_log_points", "ckpt_every",
            "sweep", "max_parallel_runs", "lanes"):
    plain.pop(f, None)
  for h in hparams:
    plain.pop(h, None)
  return (kind, json.dumps(plain, sort_keys=True), batch, bool(jax.config.jax_enable_x64),
          _device_count())


def _count(name: str):
  TRACE_COUNTS[name] = TRACE_COUNTS.get(name, 0) + 1


class RetraceError(AssertionError):
  """A cached program was traced twice: some hyperparameter reached the HLO as a constant."""


def _guard(fn, name: str):
  """Allow one trace of this program object (``chex.assert_max_traces`` keys on
  the code object, which every group's closure shares, so count per object)."""
  traces = [0]

  def wrapped(*args):
    traces[0] += 1
    if traces[0] > 1:
      raise RetraceError(f"the compiled '{name}' program was traced {traces[0]} times")
    return fn(*args)

  return wrapped


def _make_data_program(exp, lanes: int):
  """The vmapped ``make_data`` on the DATA stream of each run key, or None."""
  if exp.make_data is None:
    return None
  return _vmapped(lambda k, hp: exp.make_data(prng.stream(k, prng.DATA), hp), (0, 0), lanes,
                  exp.compiler_options)


def _programs_iterative(exp: Iterative, key: tuple, lanes: int):
  if key in _PROGRAMS:
    return _PROGRAMS[key]
  has_data = exp.make_data is not None

  def init(k, hp, data):
    state = exp.init(k, hp, data)
    if exp.evaluate is not None:
      m0 = exp.evaluate(state, hp, data)
    else:
      m0 = {}
    return state, m0

  def chunk(carry, hp, data, ts, active, is_log):
    _count("chunk")

    def body(c, x):
      state, dead = c
      t, act, log = x
      new_state, m = exp.step(state, hp, data)
      m = dict(m)
      if exp.evaluate is not None:
        shapes = jax.eval_shape(lambda s: exp.evaluate(s, hp, data), new_state)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        m.update(jax.lax.cond(log, lambda s: dict(exp.evaluate(s, hp, data)), lambda s: dict(zeros),
                              new_state))
      finite = _tree_all_finite(new_state) & _tree_all_finite(m)
      live = act & (dead < 0)
      dead = jnp.where(live & ~finite, t, dead)
      keep = live & finite
      state = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_state, state)
      return (state, dead), m

    return jax.lax.scan(body, carry, (ts, active, is_log))

  data_axis = 0 if has_data else None
  progs = dict(
      make_data=_make_data_program(exp, lanes),
      init=_vmapped(init, (0, 0, data_axis), lanes, exp.compiler_options),
      chunk=_vmapped(_guard(chunk, "chunk"), (0, 0, data_axis, None, None, None), lanes,
                     exp.compiler_options),
  )
  _PROGRAMS[key] = progs
  return progs


def _programs_oneshot(exp: OneShot, key: tuple, lanes: int):
  if key in _PROGRAMS:
    return _PROGRAMS[key]
  has_data = exp.make_data is not None

  def compute(k, hp, data):
    _count("compute")
    return exp.compute(k, hp, data)

  progs = dict(
      make_data=_make_data_program(exp, lanes),
      compute=_vmapped(_guard(compute, "compute"), (0, 0, 0 if has_data else None), lanes,
                       exp.compiler_options),
  )
  _PROGRAMS[key] = progs
  return progs


# ----------------------------------------------------------------------------
# One batch of runs


@dataclasses.dataclass
class _Batch:
  name: str
  group: Any
  runs: list  # grid Runs, real ones only
  size: int  # padded size


def _batches(grid) -> list[_Batch]:
  out = []
  for g in grid.groups:
    unit = _device_count() * _lanes(grid.cfg, g.experiment)
    cap = grid.cfg.max_parallel_runs or len(g.runs)
    cap = int(math.ceil(cap / unit) * unit)
    slices = [g.runs[i:i + cap] for i in range(0, len(g.runs), cap)]
    size = max(len(s) for s in slices)
    size = int(math.ceil(size / unit) * unit)
    for si, s in enumerate(slices):
      name = f"g{g.index:03d}" + (f"_b{si:03d}" if len(slices) > 1 else "")
      out.append(_Batch(name, g, s, size))
  return out


def _lanes(cfg, exp) -> int:
  """``cfg.lanes``, or by default 8 for iterative and 1 for one-shot experiments."""
  return cfg.lanes or (8 if isinstance(exp, Iterative) else 1)


def _batch_inputs(cfg, exp, batch: _Batch):
  runs = batch.runs + [batch.runs[0]] * (batch.size - len(batch.runs))
  keys = np.stack([np.asarray(prng.run_key(cfg.seed, r.seed)) for r in runs])
  hp = {}
  for name in exp.hparams:
    hp[name] = _hp_array([r.coords[name] if name in r.coords else cfg[name] for r in runs])
  return keys, hp


def _record_base(run) -> dict:
  return {"run_id": run.run_id, "step": None, "seed": run.seed, **run.coords, "coords": run.coords}


def _metric_rows(batch: _Batch, steps: np.ndarray, metrics: dict, dead_at: np.ndarray, upto: int | None):
  """metrics.jsonl rows for the logged steps of a chunk (numpy inputs)."""
  rows = []
  for i, run in enumerate(batch.runs):
    for j, t in enumerate(steps):
      if dead_at[i] >= 0 and t > dead_at[i]:
        continue
      rec = _record_base(run)
      rec["step"] = int(t)
      for k, v in metrics.items():
        rec[k] = float(v[i, j]) if np.ndim(v[i, j]) == 0 else np.asarray(v[i, j]).tolist()
      rows.append(rec)
  return rows


class _Workdir:

  def __init__(self, path: pathlib.Path, tb: bool):
    self.path = path
    self.tb = tb
    self.metrics = path / "metrics.jsonl"
    self.runs = path / "runs.jsonl"


def _checkpointer(path: pathlib.Path):
  import orbax.checkpoint as ocp
  opts = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False)
  return ocp.CheckpointManager(path.resolve(), options=opts)


def _run_iterative_batch(grid, batch: _Batch, wd: _Workdir, progress: Progress) -> list[dict]:
  cfg, exp = batch.group.cfg, batch.group.experiment
  progs = _programs_iterative(exp, _static_key(cfg, exp.hparams, batch.size, f"it:{cfg.experiment}")
                              + (cfg.chunk_steps,), _lanes(cfg, exp))
  sharding = _sharding()
  keys, hp = _batch_inputs(cfg, exp, batch)
  keys, hp = _put(keys, sharding), _put(hp, sharding)
  data = progs["make_data"](keys, hp) if progs["make_data"] else None
  state, m0 = progs["init"](keys, hp, data)
  dead = _put(np.full((batch.size,), -1, np.int32), sharding)
  C = cfg.chunk_steps
  logs = log_steps(cfg)
  n_chunks = int(math.ceil(cfg.steps / C))
  start_chunk = 0
  ts0 = np.arange(1, C + 1, dtype=np.int32)
  _, m_shapes = progs["chunk"].eval_shape((state, dead), hp, data, ts0, ts0 > 0, ts0 > 0)
  metric_names = sorted(k for k, v in m_shapes.items() if len(v.shape) == 2)
  last = {k: np.full(batch.size, np.nan, np.float64) for k in metric_names}
  last_step = np.zeros(batch.size, np.int64)

  ckpt_dir = wd.path / "checkpoints" / batch.name
  mngr = _checkpointer(ckpt_dir) if cfg.ckpt_every > 0 and writers.is_writer() else None
  if mngr is not None and mngr.latest_step() is not None:
    import orbax.checkpoint as ocp
    target = {"state": state, "dead": dead,
              "last": last,
              "last_step": last_step}
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(abstract))
    start_chunk = int(mngr.latest_step())
    state, dead = restored["state"], restored["dead"]
    last = {k: np.asarray(v) for k, v in restored["last"].items()}
    last_step = np.asarray(restored["last_step"])
    _truncate_metrics(wd, batch, start_chunk * C)
  else:
    _truncate_metrics(wd, batch, -1)
  names = {r.run_id: r.name for r in batch.runs}
  tb = writers.TensorBoard(wd.path / "tb", names, purge_step=start_chunk * C + 1 if start_chunk else None) \
      if wd.tb else None
  if start_chunk == 0 and m0:
    m0h = _host(m0)
    rows = _metric_rows(batch, np.array([0]), {k: v[:, None] for k, v in m0h.items()},
                        np.full(batch.size, -1), None)
    writers.append_jsonl(wd.metrics, rows)
    if tb:
      for r in rows:
        tb.scalars(r["run_id"], 0, {k: r[k] for k in m0h})
    for k, v in m0h.items():
      if k in last:
        last[k][:] = v
  progress.advance(start_chunk * C)
  for c in range(start_chunk, n_chunks):
    ts = np.arange(c * C + 1, c * C + C + 1, dtype=np.int32)
    active = ts <= cfg.steps
    is_log = np.isin(ts, logs)
    (state, dead), m = progs["chunk"]((state, dead), hp, data, ts, active, is_log)
    m = _host(m)
    dead_h = np.asarray(jax.device_get(dead))
    sel = np.nonzero(is_log & active)[0]
    if sel.size:
      msel = {k: v[:, sel] for k, v in m.items()}
      rows = _metric_rows(batch, ts[sel], msel, dead_h, None)
      writers.append_jsonl(wd.metrics, rows)
      if tb:
        for r in rows:
          tb.scalars(r["run_id"], r["step"], {k: r[k] for k in m})
      for i in range(batch.size):
        ok_cols = [j for j, t in enumerate(ts[sel]) if dead_h[i] < 0 or t <= dead_h[i]]
        if ok_cols:
          j = ok_cols[-1]
          for k, v in msel.items():
            if k in last:
              last[k][i] = np.asarray(v[i, j], np.float64)
          last_step[i] = ts[sel][j]
    progress.advance(int(active.sum()))
    done = c + 1
    if mngr is not None and done < n_chunks and done % cfg.ckpt_every == 0:
      import orbax.checkpoint as ocp
      mngr.save(done, args=ocp.args.StandardSave({"state": state, "dead": dead,
                                                    "last": {k: np.asarray(v) for k, v in last.items()},
                                                    "last_step": last_step}))
      mngr.wait_until_finished()
  if tb:
    tb.close()
  if mngr is not None:
    mngr.close()
  dead_h = np.asarray(jax.device_get(dead))
  records = []
  for i, run in enumerate(batch.runs):
    rec = {"run_id": run.run_id, "index": run.index, "group": run.group, "name": run.name, "seed": run.seed,
           **run.coords, "coords": run.coords,
           "final": {k: float(v[i]) for k, v in last.items()}, "final_step": int(last_step[i]),
           "status": "diverged" if dead_h[i] >= 0 else "ok",
           "diverged_step": int(dead_h[i]) if dead_h[i] >= 0 else None}
    records.append(rec)
  return records


def _truncate_metrics(wd: _Workdir, batch: _Batch, upto: int) -> None:
  """Drop this batch's metric lines past step ``upto`` (all of them if -1)."""
  if not wd.metrics.exists():
    return
  ids = {r.run_id for r in batch.runs}
  rows = writers.read_jsonl(wd.metrics)
  kept = [r for r in rows if r.get("run_id") not in ids or (upto >= 0 and r.get("step", 0) <= upto)]
  if len(kept) != len(rows) or wd.metrics.read_text().count("\n") != len(rows):
    writers.rewrite_jsonl(wd.metrics, kept)


def _run_oneshot_batch(grid, batch: _Batch, wd: _Workdir, progress: Progress) -> list[dict]:
  cfg, exp = batch.group.cfg, batch.group.experiment
  keys, hp = _batch_inputs(cfg, exp, batch)
  n = len(batch.runs)
  if exp.jit:
    progs = _programs_oneshot(exp, _static_key(cfg, exp.hparams, batch.size, f"os:{cfg.experiment}"),
                              _lanes(cfg, exp))
    sharding = _sharding()
    keys_d, hp_d = _put(keys, sharding), _put(hp, sharding)
    data = progs["make_data"](keys_d, hp_d) if progs["make_data"] else None
    out = _host(progs["compute"](keys_d, hp_d, data))
    per_run = [{k: v[i] for k, v in out.items()} for i in range(n)]
    progress.advance(n)
  else:
    per_run = []
    for i in range(n):
      k = jnp.asarray(keys[i])
      h = {name: v[i] for name, v in hp.items()}
      d = exp.make_data(prng.stream(k, prng.DATA), h) if exp.make_data else None
      per_run.append(_host(dict(exp.compute(k, h, d))))
      progress.advance(1)
  records = []
  for i, run in enumerate(batch.runs):
    final = {k: (float(v) if np.ndim(v) == 0 and np.asarray(v).dtype.kind in "fiub" else
                 writers.clean(np.asarray(v).tolist()) if hasattr(v, "tolist") or isinstance(v, np.ndarray) else v)
             for k, v in per_run[i].items()}
    finite = all(not isinstance(v, float) or math.isfinite(v) for v in final.values())
    records.append({"run_id": run.run_id, "index": run.index, "group": run.group, "name": run.name,
                    "seed": run.seed, **run.coords, "coords": run.coords, "final": final,
                    "status": "ok" if finite else "diverged", "diverged_step": None if finite else 0})
  return records


# ----------------------------------------------------------------------------
# Summary and figures


def default_summary(grid_cfg, runs: list[dict]) -> dict:
  """Per sweep setting: the median over seeds of every final scalar metric
  (over runs that did not diverge), and the run counts."""
  settings: dict[str, dict] = {}
  for r in runs:
    key = json.dumps(r["coords"], sort_keys=True)
    s = settings.setdefault(key, {**r["coords"], "n_runs": 0, "n_diverged": 0, "final_median": {}, "_v": {}})
    s["n_runs"] += 1
    if r["status"] != "ok":
      s["n_diverged"] += 1
      continue
    for k, v in r["final"].items():
      if isinstance(v, (int, float)) and v is not None:
        s["_v"].setdefault(k, []).append(v)
  out = []
  for s in settings.values():
    vals = s.pop("_v")
    s["final_median"] = {k: float(np.median(v)) for k, v in vals.items()}
    out.append(s)
  return {"experiment": grid_cfg.experiment, "n_runs": len(runs),
          "n_diverged": sum(r["status"] != "ok" for r in runs), "settings": out}


def write_outputs(workdir: pathlib.Path, exp=None, cfg=None) -> dict:
  """(Re)write summary.json and the figures from the workdir's logs."""
  from attnlab.engine import logs as logs_lib
  from attnlab.engine import plotting
  logs = logs_lib.load(workdir)
  if exp is None or cfg is None:
    cfg = logs.config
    exp = grid_lib.build_grid(_lockable(cfg)).experiment
  summary = default_summary(cfg, logs.runs)
  if exp.summarize is not None and logs.runs:
    summary.update(exp.summarize(cfg, logs.runs))
  if exp.summarize_logs is not None and logs.runs:
    summary.update(exp.summarize_logs(cfg, logs))
  writers.write_json(workdir / "summary.json", summary)
  figs = []
  if isinstance(exp, Iterative) and logs.metrics:
    log_x = exp.log_x if exp.log_x is not None else cfg.log_spacing == "log"
    p = plotting.loss_curves(logs, list(exp.plot_metrics), workdir / "loss_curves.png", log_x=log_x)
    if p:
      figs.append(p)
  if exp.figures is not None:
    figs += list(exp.figures(cfg, logs, workdir) or [])
  return {"summary": summary, "figures": figs}


def _lockable(cfg):
  out = ml_collections.ConfigDict(cfg.to_dict())
  out.lock()
  return out


# ----------------------------------------------------------------------------
# Entry point


def prepare_workdir(cfg, workdir: pathlib.Path, overwrite: bool) -> bool:
  """Create or validate the workdir. Returns True when resuming."""
  cfg_json = json.dumps(grid_lib.to_plain(cfg), sort_keys=True)
  cfg_path = workdir / "config.json"
  if cfg_path.exists():
    old = json.dumps(json.loads(cfg_path.read_text()), sort_keys=True)
    if old == cfg_json and not overwrite:
      return True
    if not overwrite:
      diff = _first_diff(json.loads(old), json.loads(cfg_json))
      raise WorkdirError(f"workdir {workdir} holds a run of a different config ({diff}); "
                         f"pass --overwrite to replace it, or use another --workdir")
  if overwrite and workdir.exists():
    for child in workdir.iterdir():
      shutil.rmtree(child) if child.is_dir() else child.unlink()
  return False


def _first_diff(a: dict, b: dict, prefix: str = "") -> str:
  for k in sorted(set(a) | set(b)):
    if a.get(k) != b.get(k):
      if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
        return _first_diff(a[k], b[k], prefix + k + ".")
      return f"config.{prefix}{k}: {a.get(k)!r} there, {b.get(k)!r} now"
  return "unknown difference"


def run(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, overwrite: bool = False,
        tb: bool = True, quiet: bool = False, argv: list[str] | None = None, grid=None) -> dict:
  """Run (or resume) every run of ``cfg`` into ``workdir``; return the summary.

  Raises :class:`~attnlab.engine.experiment.ConfigError` on a bad config and
  :class:`WorkdirError` on a workdir of another config, both before anything
  is written.
  """
  workdir = pathlib.Path(workdir)
  grid = grid if grid is not None else grid_lib.build_grid(cfg)
  resuming = prepare_workdir(cfg, workdir, overwrite)
  workdir.mkdir(parents=True, exist_ok=True)
  if not resuming:
    writers.write_json(workdir / "config.json", grid_lib.to_plain(cfg))
  writers.write_json(workdir / "env.json", writers.env_info(argv))
  wd = _Workdir(workdir, tb)
  done_ids = {r["run_id"] for r in writers.read_jsonl(wd.runs)}
  batches = _batches(grid)
  todo = [b for b in batches if not {r.run_id for r in b.runs} <= done_ids]
  if any({r.run_id for r in b.runs} & done_ids for b in todo):  # a torn batch: redo it whole
    ids = {r.run_id for b in todo for r in b.runs}
    writers.rewrite_jsonl(wd.runs, [r for r in writers.read_jsonl(wd.runs) if r["run_id"] not in ids])
  iterative = isinstance(grid.experiment, Iterative)
  unit = "steps" if iterative else "runs"
  total = sum(grid.cfg.steps if iterative else len(b.runs) for b in todo)
  progress = Progress(total, unit=unit, quiet=quiet,
                      label=f"{len(grid.runs)} runs in {len(batches)} batch(es)")
  t0 = time.time()
  for b in todo:
    exp = b.group.experiment
    use_x64 = bool(getattr(exp, "x64", False) or grid.cfg.x64)
    ctx = jax.enable_x64(True) if use_x64 else contextlib.nullcontext()
    progress.set_stage(f"{b.name} ({len(b.runs)} runs" + (f", {b.group.static}" if b.group.static else "") + ")")
    with ctx:
      if isinstance(exp, Iterative):
        records = _run_iterative_batch(grid, b, wd, progress)
      else:
        records = _run_oneshot_batch(grid, b, wd, progress)
    writers.append_jsonl(wd.runs, records)
  progress.close()
  out = write_outputs(workdir, grid.experiment, grid.cfg)
  if not quiet:
    print(f"attnlab: {len(grid.runs)} runs ({out['summary']['n_diverged']} diverged) "
          f"in {time.time() - t0:.1f}s; results in {workdir}", file=sys.stderr)
  return out["summary"]
