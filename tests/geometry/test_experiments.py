"""The geometry configs through the engine: Figure 3 (smoke), critical points, bad input."""
import json
import subprocess
import sys

import pytest

from attnlab.engine import grid as grid_lib
from attnlab.engine import runner
from attnlab.engine.experiment import ConfigError


def _load(repo_root, name, arg=None):
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, repo_root / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


def test_figure3_smoke_through_runner(repo_root, tmp_path):
  """Check 6 at delta = 3 (N = 250, one float64 trial per seed; the full sweep is the config).

  Two seeds: the engine runs them as one vmapped program (``lanes = seeds``),
  each with its own key (different spectra), both giving 25."""
  cfg = _load(repo_root, "geometry_figure3", "smoke")
  with cfg.unlocked():
    cfg.delta = (3,)
    cfg.seeds = 2
  assert cfg.lanes == 2  # follows seeds
  runner.TRACE_COUNTS.clear()
  summary = runner.run(cfg, tmp_path / "fig3", quiet=True, tb=False)
  assert runner.TRACE_COUNTS.get("compute") == 1  # one compiled program for both seeds
  assert summary["delta"] == [3]
  assert summary["estimated"] == summary["expected"] == [25]
  assert summary["reliable"] == [True] and min(summary["gap_log10"]) >= 6
  assert summary["rows"][0]["rank_tol_per_seed"] == [25, 25]
  runs = [json.loads(line) for line in (tmp_path / "fig3" / "runs.jsonl").read_text().splitlines()]
  assert sorted(r["seed"] for r in runs) == [0, 1] and runs[0]["final"]["sv"] != runs[1]["final"]["sv"]
  assert (tmp_path / "fig3" / "dimension.png").stat().st_size > 0
  assert json.loads((tmp_path / "fig3" / "summary.json").read_text())["estimated"] == [25]


def test_dimension_fallback_and_exact_through_runner(repo_root, tmp_path):
  """Acceptance 3 at two architectures where the spec's float64 procedure alone fails.

  Softmax (4,)*6, a = 2: the engine's attempt is unreliable, the calibrated
  second attempt (host side, same draw) gives the formula. Lightning
  (2,2,2,2,1,1), a = (5,3,4,2,4), t = 2: the float64 gap test is confidently
  wrong (rank 2); the reported estimate is the exact F_p rank, certified by
  the symmetry upper bound."""
  cfg = _load(repo_root, "geometry_dimension")
  with cfg.unlocked():
    cfg.widths, cfg.attn_dims = (4,) * 6, (2,) * 5
  s = runner.run(cfg, tmp_path / "softmax", quiet=True, tb=False)
  assert s["estimated_dimension"] == s["expected_dimension"] == 76 and s["reliable"]
  assert s["attempts_per_seed"] == [2] and s["rank_tol_first_attempt_per_seed"][0] < 76
  assert s["estimate_method"] == "jacobian_svd" and s["nullity"] == s["symmetry_dimension"]
  with cfg.unlocked():
    cfg.kind, cfg.t = "lightning", 2
    cfg.widths, cfg.attn_dims = (2, 2, 2, 2, 1, 1), (5, 3, 4, 2, 4)
  s = runner.run(cfg, tmp_path / "lightning", quiet=True, tb=False)
  assert s["estimate_method"] == "exact_mod_p" and s["certified"] and s["reliable"]
  assert s["estimated_dimension"] == s["expected_dimension"] == s["exact_rank_mod_p"] == 14
  assert s["float64_rank_tol"] < 14 and not s["float64_agrees_with_exact"]


def test_critical_points_through_runner(repo_root, tmp_path):
  """Check 8: the §3.2 table, 8 structured points in one compiled program."""
  cfg = _load(repo_root, "geometry_critical_points")
  summary = runner.run(cfg, tmp_path / "crit", quiet=True, tb=False)
  assert summary["points"][0] == "generic" and summary["ranks"][0] == summary["generic_formula"] == 23
  assert summary["ranks"] == [23, 21, 18, 23, 18, 8, 0, 12]
  assert summary["all_match_spec"]




@pytest.mark.parametrize("fields,field", [
    (dict(widths=(4, 3, 3), attn_dims=(2,)), "attn_dims"),
    (dict(t=0), "t"),
    (dict(widths=(4, 0, 3)), "widths"),
    (dict(kind="relu"), "kind"),
    (dict(jacobian_mode="central"), "jacobian_mode"),
    (dict(n_inputs=-1), "n_inputs"),
])
def test_bad_input_is_a_config_error(repo_root, fields, field):
  cfg = _load(repo_root, "geometry_dimension")
  with cfg.unlocked():
    for k, v in fields.items():
      cfg[k] = v
  with pytest.raises(ConfigError) as e:
    grid_lib.build_grid(cfg)
  assert e.value.field == field


def test_bad_input_cli_exit_status(repo_root, tmp_path):
  """Acceptance 4: one line on stderr, exit status 2, nothing written."""
  wd = tmp_path / "bad"
  p = subprocess.run([sys.executable, "-m", "attnlab.run", "--config=configs/geometry_dimension.py",
                      f"--workdir={wd}", "--config.widths=(6,5,4)", "--config.attn_dims=(3,2,1)"],
                     cwd=repo_root, capture_output=True, text=True, timeout=120)
  assert p.returncode == 2, p.stderr
  lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and "attn_dims" in lines[0], p.stderr
  assert not wd.exists()


def test_uniform_delta_tuple_validated(repo_root):
  cfg = _load(repo_root, "geometry_figure3")
  with cfg.unlocked():
    cfg.delta = (3, 0)
  with pytest.raises(ConfigError) as e:
    grid_lib.build_grid(cfg)
  assert e.value.field == "delta"
