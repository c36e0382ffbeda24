"""Run an experiment config into a workdir.

  python -m attnlab.run --config=configs/<name>.py[:arg] --workdir=DIR \
      [--config.<field>=<value> ...] [--overwrite] [--notb] [--distributed]

Re-running the same command on the same workdir resumes from the last
checkpoint. A different config on an existing workdir is refused unless
``--overwrite`` is given. Bad input (an unknown field, a wrong type, an
impossible value, a missing config file) prints one line naming the field and
exits with status 2, before anything is written.

Multi-host (TPU pods, multi-node Slurm): start the same command on every host
with ``--distributed``; ``jax.distributed.initialize()`` auto-detects the
cluster, the run axis is sharded over all global devices, and only process 0
writes to the workdir.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from attnlab import cli_common

_CONFIG = config_flags.DEFINE_config_file(
    "config", None,
    "Path to a config file, optionally with ':arg'. Shipped configs:\n" + cli_common.list_configs(),
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for logs, checkpoints, summary and figures.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a workdir that holds another config.")
_TB = flags.DEFINE_bool("tb", True, "Mirror metrics to TensorBoard event files under workdir/tb/.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host).")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress output.")
_CACHE = flags.DEFINE_string("compilation_cache_dir", "~/.cache/attnlab/jax",
                             "JAX persistent compilation cache ('' to disable).")


def _parse(argv):
  return cli_common.parse_flags(argv, required=("config", "workdir"))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  import jax
  from attnlab.engine import grid as grid_lib
  from attnlab.engine import runner
  from attnlab.engine.experiment import ConfigError

  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  cli_common.enable_compilation_cache(_CACHE.value)
  try:
    cfg = _CONFIG.value
    cfg.get("experiment")  # config files load lazily: surface a bad file here
  except ConfigError as e:
    cli_common.fail(e)
  except Exception as e:  # a missing file, a syntax error, a failing get_config
    cause = e.__cause__ or e
    cli_common.fail(f"--config: cannot load {flags.FLAGS['config'].config_filename}: "
                    f"{type(cause).__name__}: {cause}")
  try:
    grid = grid_lib.build_grid(cfg)
    runner.run(cfg, _WORKDIR.value, overwrite=_OVERWRITE.value, tb=_TB.value, quiet=_QUIET.value,
               argv=sys.argv, grid=grid)
  except (ConfigError, runner.WorkdirError) as e:
    cli_common.fail(e)


def cli():
  app.run(main, flags_parser=_parse)


if __name__ == "__main__":
  cli()
