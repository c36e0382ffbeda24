"""The command line: a smoke run, plot redraw, TensorBoard files, bad input."""
import json
import os
import subprocess
import sys

import pytest


def _popen(args, cwd, **kw):
  return subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory, repo_root):
  wd = tmp_path_factory.mktemp("cli") / "smoke"
  p = _popen(["attnlab.run", "--config=configs/quickstart.py:smoke", f"--workdir={wd}",
              "--config.steps=10", "--config.sweep.heads=(1,)"], repo_root)
  out, err = p.communicate(timeout=300)
  assert p.returncode == 0, err
  return wd


def test_cli_smoke_writes_all_outputs(smoke_workdir):
  for f in ("config.json", "env.json", "runs.jsonl", "metrics.jsonl", "summary.json", "loss_curves.png"):
    assert (smoke_workdir / f).stat().st_size > 0, f
  env = json.loads((smoke_workdir / "env.json").read_text())
  assert env["versions"]["jax"] and env["argv"][0].endswith("run.py")
  summary = json.loads((smoke_workdir / "summary.json").read_text())
  assert summary["n_runs"] == 4 and summary["n_diverged"] == 0
  assert set(summary["final_rel_mse_median"]["heads=1"]) == {"lr=0.01", "lr=0.001"}


def test_tensorboard_files_are_readable(smoke_workdir):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  run_dirs = sorted((smoke_workdir / "tb").iterdir())
  assert len(run_dirs) == 4
  acc = EventAccumulator(str(run_dirs[0]))
  acc.Reload()
  events = acc.Scalars("rel_mse")
  assert [e.step for e in events] == [0, 5, 10]


def test_plot_redraws_figures(smoke_workdir, repo_root):
  (smoke_workdir / "loss_curves.png").unlink()
  p = _popen(["attnlab.plot", f"--workdir={smoke_workdir}"], repo_root)
  out, err = p.communicate(timeout=120)
  assert p.returncode == 0, err
  assert (smoke_workdir / "loss_curves.png").stat().st_size > 1000
  assert "summary.json" in out


def test_rerun_of_finished_workdir_resumes_without_work(smoke_workdir, repo_root):
  before = (smoke_workdir / "runs.jsonl").read_text()
  p = _popen(["attnlab.run", "--config=configs/quickstart.py:smoke", f"--workdir={smoke_workdir}",
              "--config.steps=10", "--config.sweep.heads=(1,)"], repo_root)
  _, err = p.communicate(timeout=120)
  assert p.returncode == 0, err
  assert (smoke_workdir / "runs.jsonl").read_text() == before


BAD = [
    (["--config.nonexistent=1"], "nonexistent"),
    (["--config.steps=abc"], "steps"),
    (["--config.steps=0"], "config.steps"),
    (["--config.sweep.lr=()"], "config.sweep.lr"),
    (["--config.d=0"], "config.d"),
    (["--config.sweep.lr=(-0.01,)"], "config.lr"),
    (["--config.d_out=2"], "config.d_out"),
]


def test_bad_input_one_line_exit_2(tmp_path, repo_root):
  procs = []
  for i, (extra, field) in enumerate(BAD):
    wd = tmp_path / f"w{i}"
    procs.append((_popen(["attnlab.run", "--config=configs/quickstart.py:smoke", f"--workdir={wd}", *extra],
                         repo_root), wd, field))
  missing = tmp_path / "missing"
  procs.append((_popen(["attnlab.run", "--config=configs/no_such_config.py", f"--workdir={missing}"], repo_root),
                missing, "no_such_config.py"))
  for p, wd, field in procs:
    out, err = p.communicate(timeout=120)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert p.returncode == 2, (field, err)
    assert len(lines) == 1 and lines[0].startswith("error:") and field in lines[0], (field, err)
    assert not wd.exists(), field


def test_other_config_on_workdir_refused(smoke_workdir, repo_root):
  p = _popen(["attnlab.run", "--config=configs/quickstart.py:smoke", f"--workdir={smoke_workdir}",
              "--config.steps=12", "--config.sweep.heads=(1,)"], repo_root)
  _, err = p.communicate(timeout=120)
  assert p.returncode == 2 and "--overwrite" in err and "config.steps" in err


def test_help_lists_configs(repo_root):
  p = _popen(["attnlab.run", "--help"], repo_root)
  out, err = p.communicate(timeout=60)
  assert "configs/quickstart.py" in out + err

