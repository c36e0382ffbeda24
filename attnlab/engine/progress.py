"""A small progress line on stderr: a bar with ETA on a terminal, sparse lines otherwise."""
from __future__ import annotations

import sys
import time


class Progress:

  def __init__(self, total: int, unit: str = "steps", quiet: bool = False, label: str = ""):
    self.total = max(1, int(total))
    self.unit = unit
    self.done = 0
    self.quiet = quiet
    self.tty = sys.stderr.isatty()
    self.t0 = time.time()
    self.last_print = 0.0
    self.stage = ""
    self._started_at = None
    if not quiet and label:
      print(f"attnlab: {label}", file=sys.stderr)

  def set_stage(self, stage: str) -> None:
    self.stage = stage
    self._print(force=not self.tty)

  def advance(self, n: int) -> None:
    if n <= 0:
      return
    self.done += n
    if self._started_at is None:  # the first chunk includes compilation: rate from the second on
      self._started_at = (time.time(), self.done)
    self._print()

  def _eta(self) -> str:
    if self._started_at is None or self.done <= self._started_at[1]:
      return "?"
    t, d = self._started_at
    rate = (self.done - d) / max(1e-9, time.time() - t)
    return f"{(self.total - self.done) / max(rate, 1e-12):.0f}s"

  def _print(self, force: bool = False) -> None:
    if self.quiet:
      return
    now = time.time()
    frac = min(1.0, self.done / self.total)
    if self.tty:
      if not force and now - self.last_print < 0.1 and self.done < self.total:
        return
      bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
      sys.stderr.write(f"\r[{bar}] {100 * frac:5.1f}% {self.done}/{self.total} {self.unit} "
                       f"ETA {self._eta()} {self.stage[:40]:<40}")
      sys.stderr.flush()
    elif force or now - self.last_print > 10 or self.done >= self.total:
      print(f"attnlab: {100 * frac:5.1f}% ({self.done}/{self.total} {self.unit}, "
            f"{now - self.t0:.0f}s, ETA {self._eta()}) {self.stage}", file=sys.stderr)
    else:
      return
    self.last_print = now

  def close(self) -> None:
    if not self.quiet and self.tty:
      sys.stderr.write("\n")
