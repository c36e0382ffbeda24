"""Redraw the figures and summary of a finished or running workdir from its logs.

  python -m attnlab.plot --workdir=DIR
"""
from __future__ import annotations

import pathlib

from absl import app, flags, logging

from attnlab import cli_common

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by attnlab.run.")


def _parse(argv):
  return cli_common.parse_flags(argv, required=("workdir",))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  from attnlab.engine import runner
  from attnlab.engine.experiment import ConfigError
  workdir = pathlib.Path(_WORKDIR.value)
  if not (workdir / "config.json").exists():
    cli_common.fail(f"--workdir: {workdir} has no config.json (not an attnlab workdir)")
  try:
    out = runner.write_outputs(workdir)
  except ConfigError as e:
    cli_common.fail(e)
  for f in out["figures"]:
    print(f)
  print(workdir / "summary.json")


def cli():
  app.run(main, flags_parser=_parse)


if __name__ == "__main__":
  cli()
