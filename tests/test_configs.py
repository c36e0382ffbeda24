"""Every config file, with every argument it accepts, expands into a valid run grid.

``build_grid`` validates every field and calls the experiment factories but
compiles nothing, so this catches config rot (a renamed field, a bad default,
an argument that no longer validates) in a few seconds. Each config's
docstring must also give its command and its expected result (big_vision
style).
"""
import ast
import importlib.util
import pathlib
import re

import pytest

from attnlab.engine import grid as grid_lib

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py"))


def _arguments(source: str) -> list:
  """``None`` plus the keyword names of the config's ``parse_arg(arg, name=default, ...)`` call."""
  m = re.search(r"parse_arg\(arg,([^)]*)\)", source)
  return [None] + (re.findall(r"(\w+)\s*=", m.group(1)) if m else [])


def _load(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(f"cfg_{path.stem}", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_and_every_argument_build_a_valid_grid(path):
  source = path.read_text()
  mod = _load(path)
  for arg in _arguments(source):
    cfg = mod.get_config(arg)
    cfg.lock()
    grid = grid_lib.build_grid(cfg)
    assert len(grid.runs) >= 1, (path.name, arg)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_docstring_gives_command_and_expected_result(path):
  doc = ast.get_docstring(ast.parse(path.read_text())) or ""
  assert f"--config=configs/{path.name}" in doc, f"{path.name}: no command in the docstring"
  assert "xpect" in doc or "easured" in doc, f"{path.name}: no expected result in the docstring"
