"""Local exponents of a superposition run's loss, per run, at chosen times.

Reads a finished workdir (``metrics.jsonl``, ``runs.jsonl``, ``config.json``)
and prints, for every run, gamma_loc(t) = -d log L / d log t from the
7-point local fit the automatic window uses (``fit.local_exponents``), either
on L or on L - L_inf with the ceiling L_inf taken as the spec does (mean over
the last 10% of the steps, ``fit.ceiling``). Time is t = lr * step for SGD
and t = step for Adam, as in the fits.

Use it to see whether a stretch of constant exponent exists at all, e.g. on
the `:long` bottleneck run whose K = N/16 and N/64 curves reach their plateau:

  python scripts/superposition_local_exponents.py --workdir /tmp/s4_bn_long --subtract_ceiling \\
      --times 10.5 31 91.5 268.5 789 2317.5
"""
from __future__ import annotations

import argparse

import numpy as np

from attnlab.engine.logs import Logs
from attnlab.superposition import fit


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", required=True)
  p.add_argument("--subtract_ceiling", action="store_true", help="exponents of L - L_inf instead of L")
  p.add_argument("--times", type=float, nargs="+", default=[1, 3, 10, 30, 100, 300, 1000, 3000, 10000])
  p.add_argument("--points", type=int, default=7, help="points of the local log-log fit")
  args = p.parse_args()
  logs = Logs(args.workdir)
  adam = logs.config.get("optimizer", "sgd") == "adam"
  what = "L - L_inf" if args.subtract_ceiling else "L"
  print(f"local exponent of {what} ({args.points}-point fit) at t = " + ", ".join(f"{t:g}" for t in args.times)
        + ("  (t = step)" if adam else "  (t = lr * step)"))
  for run in logs.runs:
    steps, L = logs.curve(run["run_id"], "loss")
    keep = (steps > 0) & np.isfinite(L)
    steps, L = steps[keep], L[keep]
    if len(steps) < args.points:
      continue
    t = steps * (1.0 if adam else float(run["coords"].get("lr", logs.config.get("lr"))))
    ceiling, noise = fit.ceiling(steps, L, logs.config.get("fit_ceiling_tail_frac", 0.1))
    y = L - ceiling if args.subtract_ceiling else L
    with np.errstate(invalid="ignore", divide="ignore"):
      g = fit.local_exponents(t, np.where(y > 0, y, np.nan), args.points)
    cols = []
    for tv in args.times:
      k = int(np.argmin(np.abs(np.log(t) - np.log(tv))))
      near = abs(np.log(t[k] / tv)) < 0.25
      cols.append(f"{g[k]:6.2f}" if near and np.isfinite(g[k]) else "     —")
    print(f"{run['name']:<60} L_inf {ceiling:.4g} (noise {noise:.1g}) | " + " ".join(cols))


if __name__ == "__main__":
  main()
