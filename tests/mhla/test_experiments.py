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
  for name, arg in (("mhla_heads", None), ("mhla_heads", "c7"), ("mhla_heads", "c7seeds"), ("mhla_assoc_memory", None),
                    ("mhla_assoc_memory", "sgd"), ("mhla_lookup", None)):
    grid = grid_lib.build_grid(_config(repo_root, name, arg))
    assert grid.runs
  cfg = _config(repo_root, "mhla_heads")
  cfg.unlock()
  cfg.model_values = ("mhla:0",)
  with pytest.raises(ConfigError, match="positive count"):
    grid_lib.build_grid(cfg)
  cfg = _config(repo_root, "mhla_heads", "c7")
  cfg.unlock()
  cfg.init_rule = "xavier"
  with pytest.raises(ConfigError, match="must be one of") as e:
    grid_lib.build_grid(cfg)
  assert e.value.field == "init_rule"


def test_heads_init_rule_fan_in_scales_by_inverse_sqrt_d(repo_root):
  """init_rule="fan_in" draws the same normals as "fixed", scaled by d^-1/2
  (the 1/sqrt(fan-in) of V_h: R^d -> R^d_out and Q_h: R^d -> R^d)."""
  import jax
  import jax.numpy as jnp
  from attnlab.mhla import exp_heads
  d, d_out = 4, 1
  data = {"Z": jnp.zeros((2, d, 3)), "Y": jnp.zeros((2, d_out)), "yvar": jnp.ones(())}
  hp = {"lr": jnp.asarray(1e-2), "init_std": jnp.asarray(1.0), "weight_decay": jnp.asarray(0.0)}
  params = {}
  for rule in ("fixed", "fan_in"):
    cfg = _config(repo_root, "mhla_heads", "c7")
    cfg.unlock()
    cfg.model, cfg.d, cfg.d_out, cfg.n_train, cfg.init_rule = "mhla:2", d, d_out, 2, rule
    params[rule] = exp_heads.experiment(cfg).init(jax.random.PRNGKey(3), hp, data)["params"]
  for fixed, fan_in in zip(params["fixed"], params["fan_in"]):
    assert fixed.shape[0] == 2 and fixed.shape[-1] == d
    assert jnp.allclose(fan_in, fixed * d ** -0.5, rtol=1e-6, atol=0)
    assert float(jnp.max(jnp.abs(fixed))) > 0


def test_c7_triple_pass_fraction():
  """Of the 4 triples of 4 seeds, exactly the two containing both seeds with
  H16 = 1e-3 have a median ratio 1 / 1e-3 >= 100; the other two have ratio 1."""
  from attnlab.mhla.exp_heads import triple_pass_fraction
  assert triple_pass_fraction([1.0, 1.0, 1.0, 1.0], [1e-3, 1e-3, 1.0, 1.0]) == 0.5
  assert triple_pass_fraction([1.0] * 3, [1e-3] * 3) == 1.0
  assert triple_pass_fraction([1.0] * 3, [2e-2] * 3) == 0.0


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


def test_heads_summarize_logs_c7_ratio_by_step(repo_root):
  """The summarize_logs hook pairs H = 1 and H = 16 curves by seed and reports the
  seed-median ratio at every common positive step (step 0 is skipped)."""
  import numpy as np
  from attnlab.mhla import exp_heads
  cfg = _config(repo_root, "mhla_heads", "c7")
  steps = np.array([0, 10, 20])
  curves = {"a0": [1.0, 1.0, 0.5], "a1": [1.0, 1.0, 0.7], "b0": [1.0, 1e-2, 1e-3], "b1": [1.0, 1e-2, 1e-4]}

  class Logs:
    runs = [{"run_id": r, "seed": int(r[1])} for r in ("a0", "a1", "b0", "b1")]

    def settings(self):
      return {(("model", "mhla:1"),): ["a1", "a0"], (("model", "mhla:16"),): ["b0", "b1"]}

    def curves(self, ids, metric):
      assert metric == "rel_mse"
      return steps, np.array([curves[i] for i in ids])

  out = exp_heads.summarize_logs(cfg, Logs())["c7_ratio_by_step"]
  (panel,) = out.values()
  assert sorted(panel) == ["10", "20"]
  assert panel["10"]["ratio"] == pytest.approx(100.0)
  assert panel["20"]["h1"] == pytest.approx(0.6) and panel["20"]["h16"] == pytest.approx(5.5e-4)
