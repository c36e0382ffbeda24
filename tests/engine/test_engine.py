"""Engine tests: alone/batched/sharded equality, determinism, resume, the
recompile guard, divergence handling, one-shot experiments."""
import json
import os
import pathlib
import subprocess
import sys
import types

import chex
import numpy as np
import pytest

from attnlab.engine import grid as grid_lib
from attnlab.engine import runner, toy
from attnlab.engine.experiment import ConfigError
from attnlab.engine.logs import load


def _cfg(**overrides):
  cfg = toy.get_config()
  for k, v in overrides.items():
    if k == "sweep":
      for name, vals in v.items():
        cfg.sweep[name] = vals
    else:
      cfg[k] = v
  cfg.lock()
  return cfg


def _curves(workdir):
  logs = load(workdir)
  return {(m["run_id"], m["step"]): m["loss"] for m in logs.metrics}


def _finals(workdir):
  return {r["run_id"]: r["final"] for r in load(workdir).runs}


def test_run_writes_every_file(tmp_path):
  summary = runner.run(_cfg(), tmp_path, quiet=True)
  for f in ("config.json", "env.json", "runs.jsonl", "metrics.jsonl", "summary.json", "loss_curves.png"):
    assert (tmp_path / f).exists(), f
  assert len(list((tmp_path / "tb").iterdir())) == 4
  assert summary["n_runs"] == 4 and summary["n_diverged"] == 0
  logs = load(tmp_path)
  steps, loss = logs.curve(logs.runs[0]["run_id"], "loss")
  np.testing.assert_array_equal(steps, [0, 5, 10, 15, 20, 25, 30])
  # GD on a convex quadratic with lr < 2/a_max decreases the loss monotonically.
  assert np.all(np.diff(loss) < 0)
  # summarize_logs sees the curves: its per-run first halving step is in summary.json
  halved = json.loads((tmp_path / "summary.json").read_text())["first_step_loss_halved"]
  assert halved == summary["first_step_loss_halved"] and set(halved) == {r["run_id"] for r in logs.runs}
  first = halved[logs.runs[0]["run_id"]]
  assert first is not None and loss[list(steps).index(first)] <= 0.5 * loss[0]
  assert all(v > 0.5 * loss[0] for v in loss[steps < first])


def test_same_curve_alone_and_batched_and_deterministic(tmp_path):
  runner.run(_cfg(seeds=3, sweep={"lr": (0.1, 0.3, 0.5)}), tmp_path / "batch", quiet=True)
  runner.run(_cfg(seeds=3, sweep={"lr": (0.1, 0.3, 0.5)}), tmp_path / "again", quiet=True)
  assert _curves(tmp_path / "batch") == _curves(tmp_path / "again")
  # run (lr=0.3, seed=2) alone: a grid of one run with the same coordinates.
  runner.run(_cfg(seeds=3, max_parallel_runs=1, sweep={"lr": (0.3,)}), tmp_path / "alone", quiet=True)
  alone = _curves(tmp_path / "alone")
  batch = _curves(tmp_path / "batch")
  assert alone and all(batch[k] == v for k, v in alone.items())


def test_quickstart_alone_batched_and_sharded_identical(tmp_path, repo_root):
  """The real (MHLA + Adam) experiment: run i alone, in a batch, and sharded
  over 4 simulated CPU devices gives a bit-identical curve."""
  from jax import config as jax_config
  args = ["--config=configs/quickstart.py:smoke", "--quiet", "--notb",
          f"--compilation_cache_dir={jax_config.jax_compilation_cache_dir or ''}", "--config.sweep.heads=(2,)"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  sharded = subprocess.Popen([sys.executable, "-m", "attnlab.run", *args, f"--workdir={tmp_path / 'sharded'}"],
                             cwd=repo_root, env=env, stderr=subprocess.PIPE, text=True)
  from attnlab.engine.config import load_config
  cfg = load_config(str(repo_root / "configs/quickstart.py"), "smoke", lock=False)
  cfg.sweep.heads = (2,)
  cfg.lock()
  runner.run(cfg, tmp_path / "batch", quiet=True, tb=False)
  with cfg.unlocked():
    cfg.sweep.heads = (2,)
    cfg.sweep.lr = (1e-3,)
    cfg.seeds = 2
    cfg.max_parallel_runs = 1
  runner.run(cfg, tmp_path / "alone", quiet=True, tb=False)
  assert sharded.wait(timeout=300) == 0, sharded.stderr.read()
  batch, alone = load(tmp_path / "batch"), load(tmp_path / "alone")
  sharded_logs = load(tmp_path / "sharded")
  assert json.loads((tmp_path / "sharded/env.json").read_text())["devices"].__len__() == 4
  key = lambda logs: {(m["run_id"], m["step"]): m["rel_mse"] for m in logs.metrics}
  b, a, s = key(batch), key(alone), key(sharded_logs)
  assert len(a) == 2 * 5 and all(b[k] == v for k, v in a.items())
  assert b == s


def test_resume_after_interrupt_matches_uninterrupted(tmp_path, monkeypatch):
  cfg = _cfg(steps=60, chunk_steps=10, ckpt_every=2, sweep={"lr": (0.1, 0.5)})
  runner.run(cfg, tmp_path / "full", quiet=True)

  calls = {"n": 0}
  real = runner.Progress.advance

  def interrupt(self, n):
    real(self, n)
    calls["n"] += 1
    if calls["n"] == 5:  # after chunk 5 of 6: the last checkpoint is at chunk 4
      raise KeyboardInterrupt

  monkeypatch.setattr(runner.Progress, "advance", interrupt)
  with pytest.raises(KeyboardInterrupt):
    runner.run(cfg, tmp_path / "cut", quiet=True)
  monkeypatch.setattr(runner.Progress, "advance", real)
  assert not (tmp_path / "cut/runs.jsonl").exists()
  runner.run(cfg, tmp_path / "cut", quiet=True)
  assert _finals(tmp_path / "full") == _finals(tmp_path / "cut")
  assert _curves(tmp_path / "full") == _curves(tmp_path / "cut")


def test_different_config_refused_unless_overwrite(tmp_path):
  runner.run(_cfg(), tmp_path, quiet=True)
  with pytest.raises(runner.WorkdirError, match="config.dim"):
    runner.run(_cfg(dim=4), tmp_path, quiet=True)
  runner.run(_cfg(dim=4), tmp_path, quiet=True, overwrite=True)
  assert load(tmp_path).config.dim == 4


def test_no_recompile_across_learning_rates(tmp_path):
  """A new learning rate reuses the compiled program: the step function is
  traced once (``chex.assert_max_traces``) across two runs of the engine."""
  chex.clear_trace_counter()
  module = types.ModuleType("attnlab_test_guarded_toy")
  module.experiment = lambda cfg: toy.experiment(cfg, step_wrapper=chex.assert_max_traces(n=1))
  sys.modules[module.__name__] = module
  try:
    cfg = _cfg(experiment="attnlab_test_guarded_toy:experiment", sweep={"lr": (0.1, 0.2)})
    runner.run(cfg, tmp_path / "a", quiet=True)
    traces = dict(runner.TRACE_COUNTS)
    cfg2 = _cfg(experiment="attnlab_test_guarded_toy:experiment", lr=0.7, sweep={"lr": (0.3, 0.4)})
    runner.run(cfg2, tmp_path / "b", quiet=True)
    assert runner.TRACE_COUNTS == traces
  finally:
    del sys.modules[module.__name__]


def test_diverged_run_is_marked_and_others_continue(tmp_path):
  summary = runner.run(_cfg(steps=200, chunk_steps=50, log_every=10, seeds=1, sweep={"lr": (0.1, 50.0)}),
                       tmp_path, quiet=True)
  runs = {r["lr"]: r for r in load(tmp_path).runs}
  assert runs[0.1]["status"] == "ok" and runs[0.1]["final_step"] == 200
  assert runs[50.0]["status"] == "diverged"
  first_bad = runs[50.0]["diverged_step"]
  assert 1 <= first_bad < 200
  steps, vals = load(tmp_path).curve(runs[50.0]["run_id"], "loss")
  assert steps.max() <= first_bad  # nothing logged after the divergence
  assert summary["n_diverged"] == 1


def test_oneshot_matches_closed_form(tmp_path):
  cfg = toy.get_config("oneshot")
  cfg.lock()
  runner.run(cfg, tmp_path, quiet=True)
  runs = load(tmp_path).runs
  assert len(runs) == 4 and all(r["status"] == "ok" for r in runs)
  assert all(len(r["final"]["x"]) == 3 for r in runs)


@pytest.mark.parametrize("overrides, field", [
    ({"steps": 0}, "steps"), ({"seeds": 0}, "seeds"), ({"dim": 0}, "dim"),
    ({"sweep": {"lr": ()}}, "sweep.lr"), ({"sweep": {"lr": (-0.1,)}}, "lr"),
    ({"log_spacing": "cubic"}, "log_spacing"), ({"sweep": {"nope": (1,)}}, "sweep.nope"),
])
def test_bad_values_name_the_field(overrides, field, tmp_path):
  with pytest.raises(ConfigError) as e:
    grid_lib.build_grid(_cfg(**overrides))
  assert e.value.field == field
  assert not tmp_path.joinpath("config.json").exists()
