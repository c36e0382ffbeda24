"""Bad input: every river config's factory rejects wrong values with ConfigError (the CLI
turns it into a one-line error and exit status 2). No compilation happens here."""
import importlib

import pytest

from attnlab.engine.experiment import ConfigError

CASES = [
    ("river_depth", {"T": 0.0}, "T"),
    ("river_depth", {"T": -1.0}, "T"),
    ("river_depth", {"Ls": (0, 8, 16)}, "Ls"),
    ("river_depth", {"schemes": ("preln", "leapfrog")}, "schemes"),
    ("river_depth", {"fit_Ls": (1024,)}, "fit_Ls"),
    ("river_recovery", {"norm_mode": "affine"}, "norm_mode"),
    ("river_recovery", {"literal": True}, "literal"),  # d_ff = 128 != d = 32
    ("river_recovery", {"heads": 5}, "heads"),
    ("river_clustering", {"T": 0.0}, "T"),
    ("river_clustering", {"beta": -1.0}, "beta"),
    ("river_clustering", {"model": "sinkhorn"}, "model"),
    ("river_clustering", {"n": 12, "d": 8}, "d"),  # equiangular start needs d >= n
    ("river_clustering", {"times": (0.5, 7.0)}, "times"),
    ("river_solvers", {"T": 0.0}, "T"),
    ("river_mesh", {"Ns": (16,)}, "Ns"),
    ("river_substep", {"ms": (2, 4)}, "ms"),
]


def _factory(cfg):
  mod, fn = cfg.experiment.split(":")
  return getattr(importlib.import_module(mod), fn)


@pytest.mark.parametrize("name,override,field", CASES)
def test_bad_input_raises_config_error(name, override, field):
  cfg = importlib.import_module(f"configs.{name}").get_config()
  for k, v in override.items():
    setattr(cfg, k, v)
  with pytest.raises(ConfigError) as e:
    _factory(cfg)(cfg)
  assert e.value.field == field and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["river_depth", "river_recovery", "river_clustering", "river_solvers",
                                  "river_mesh", "river_substep"])
def test_default_configs_validate(name):
  cfg = importlib.import_module(f"configs.{name}").get_config()
  _factory(cfg)(cfg)  # cheap: no compilation in the factories
