"""The simulation configs (E1-E8) end to end through the runner, at their ``:smoke`` sizes.

Checks the summary's structure (the issue's per-setting keys, the S/P checks),
the figures, and the local-exponent script on a finished workdir.
"""
import contextlib
import importlib.util
import io
import json
import math
import sys

import pytest

from attnlab.engine import runner

CASES = {
    "superposition_no_sup.py": (["S1_ode_ratio", "S5_front_slope"], ["superposition_no_sup_curves.png",
                                                                      "superposition_wave.png"]),
    "superposition_bottleneck.py": (["P1_universal_gamma", "P2_monotone_transition", "P3_acceleration",
                                     "P4_ceiling"], ["superposition_bottleneck.png",
                                                     "superposition_bottleneck_curves.png"]),
    "superposition_robustness.py": ([], ["superposition_robustness.png"]),
}


def _load(repo_root, name):
  spec = importlib.util.spec_from_file_location(name.replace(".py", "_cfg"), repo_root / "configs" / name)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulation_config_smoke_through_runner(tmp_path, repo_root, name):
  cfg = _load(repo_root, name).get_config("smoke")
  cfg.lock()
  wd = tmp_path / "wd"
  summary = runner.run(cfg, wd, quiet=True, tb=False)
  checks, figures = CASES[name]
  assert summary["n_diverged"] == 0
  assert set(checks) <= set(summary["checks"])
  n = int(cfg.n_features)
  assert len(summary["settings_fit"]) >= 1
  for row in summary["settings_fit"]:
    assert {"gamma", "fit_window", "plateau_loss", "represented_features"} <= set(row)   # the keys
    assert math.isfinite(row["plateau_loss"]) and row["plateau_loss"] > 0
    assert 0 <= row["represented_features"] <= n
  assert json.loads((wd / "summary.json").read_text())["settings_fit"] == summary["settings_fit"]
  for fig in figures:
    assert (wd / fig).stat().st_size > 0, fig
  if name == "superposition_bottleneck.py":
    sys.path.insert(0, str(repo_root / "scripts"))
    try:
      import superposition_local_exponents as script
    finally:
      sys.path.pop(0)
    out = io.StringIO()
    argv = ["superposition_local_exponents.py", "--workdir", str(wd), "--subtract_ceiling", "--times", "1", "5"]
    with contextlib.redirect_stdout(out), pytest.MonkeyPatch.context() as mp:
      mp.setattr(sys, "argv", argv)
      script.main()
    lines = out.getvalue().strip().splitlines()
    assert lines[0].startswith("local exponent of L - L_inf")
    assert len(lines) == 1 + summary["n_runs"]
