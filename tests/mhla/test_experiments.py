"""Config validation (bad input -> ConfigError / exit status 2) and CLI smoke runs."""
import importlib.util
import json
import subprocess
import sys

import pytest

from attnlab.engine import grid as grid_lib
from attnlab.engine import runner
from attnlab.engine.experiment import ConfigError


def _config(repo_root, name, arg=None):
  spec = importlib.util.spec_from_file_location(name, repo_root / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


@pytest.mark.parametrize("field,value,match", [
    ("d", 33, "must be <= 32"),
    ("n_train", 0, "must be an int >= 1"),
    ("d_out", 3, "must be 1 or d = 6"),
    ("solver", "qr", "must be one of"),
    ("ridge", -1.0, "must be >= 0"),
])
def test_fit_bad_input(repo_root, field, value, match):
  cfg = _config(repo_root, "mhla_fit")
  cfg.unlock()
  cfg[field] = value
  with pytest.raises(ConfigError, match=match) as e:
    grid_lib.build_grid(cfg)
  assert e.value.field == field


def test_other_configs_validate(repo_root):
  for name, arg in (("mhla_heads", None), ("mhla_heads", "c7"), ("mhla_assoc_memory", None),
                    ("mhla_assoc_memory", "sgd"), ("mhla_lookup", None)):
    grid = grid_lib.build_grid(_config(repo_root, name, arg))
    assert grid.runs
  cfg = _config(repo_root, "mhla_heads")
  cfg.unlock()
  cfg.model_values = ("mhla:0",)
  with pytest.raises(ConfigError, match="positive count"):
    grid_lib.build_grid(cfg)


def test_cli_bad_d_exits_2(repo_root, tmp_path):
  wd = tmp_path / "w"
  r = subprocess.run([sys.executable, "-m", "attnlab.run", "--config=configs/mhla_fit.py", f"--workdir={wd}",
                      "--config.d=40"], cwd=repo_root, capture_output=True, text=True, timeout=120)
  assert r.returncode == 2
  assert "config.d" in r.stderr and "GiB" in r.stderr
  assert not wd.exists()


def test_fit_smoke_cli_summary(repo_root, tmp_path):
  summary = runner.run(_config(repo_root, "mhla_fit", "smoke"), tmp_path / "fit", quiet=True, tb=False)
  for k in ("train_rel_mse", "test_rel_mse", "p_distance_rel", "heads_recovered", "lambda_min", "lambda_max",
            "psi", "seconds_fit"):
    assert k in summary, k
  assert summary["psi"] == 18
  assert summary["train_rel_mse"] < 1e-16 and summary["p_distance_rel"] < 1e-10
  assert set(summary["test_rel_mse"]) == {"2", "9"}
  runs = [json.loads(l) for l in (tmp_path / "fit" / "runs.jsonl").read_text().splitlines()]
  assert len(runs) == 1 and len(runs[0]["final"]["test_rel_mse"]) == 2
  assert (tmp_path / "fit" / "singular_values.png").stat().st_size > 0
