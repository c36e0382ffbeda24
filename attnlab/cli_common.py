"""Helpers shared by the entry points (which alone define flags)."""
from __future__ import annotations

import ast
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def config_dirs() -> list[pathlib.Path]:
  dirs = [pathlib.Path.cwd() / "configs", REPO / "configs"]
  seen, out = set(), []
  for d in dirs:
    if d.is_dir() and d.resolve() not in seen:
      seen.add(d.resolve())
      out.append(d)
  return out


def list_configs() -> str:
  """One line per shipped config: its path and the first line of its docstring."""
  lines = []
  for d in config_dirs():
    for p in sorted(d.glob("*.py")):
      if p.name.startswith("_") or p.name == "common.py":
        continue
      try:
        doc = ast.get_docstring(ast.parse(p.read_text())) or ""
      except SyntaxError:
        doc = ""
      rel = os.path.relpath(p)
      lines.append(f"  {rel:<44} {doc.splitlines()[0] if doc else ''}")
  return "\n".join(lines) if lines else "  (no configs/ directory found)"


def fail(message: str, code: int = 2) -> None:
  """Print a one-line error on stderr and exit (status 2 by default)."""
  message = " ".join(str(message).split())
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def enable_compilation_cache(path: str | None) -> None:
  import jax
  if not path:
    return
  jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def parse_flags(argv, required: tuple[str, ...] = ()):
  """absl ``flags_parser``: flag errors become one line and exit status 2."""
  from absl import flags
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    msg = str(e)
    marker = "ConfigError: "  # a ConfigError raised by a config file's get_config
    fail(msg[msg.rindex(marker) + len(marker):] if marker in msg else msg)
  except Exception as e:  # config_flags raises plain exceptions for bad files
    fail(f"--config: {e}")
  for name in required:
    if not flags.FLAGS[name].value:
      fail(f"--{name} is required")
  return rest
