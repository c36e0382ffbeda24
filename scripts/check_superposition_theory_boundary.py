"""How far the §11b fit sits from (a + 2b - 1)/a near the boundary a + 2b = 2.

Acceptance 1 of the S4 issue asks for fitted exponents within the spec's
tolerance (T1: 0.01, 0.02 at (a, b) = (2, 0)) of the asymptotic formula at
N = 1e5 for any a > 1, b >= 0, a + 2b >= 2. This script fits the linear,
``teacher_scale`` ODE loss with the spec's own recipe (window
[1/r_4, 1/r_{N/4}], 800 log-spaced t in [1e-2, 1e14], float64) on a grid of a
and a + 2b, at N = 1e5 and 1e6, and prints the deviation from the formula.
A deviation that shrinks with N is the finite-N bias of the recipe, not an
error of the fit: the window ends at the front i* = N/4, where the cut-off
at N still removes part of the not-yet-learned tail.

  python scripts/check_superposition_theory_boundary.py [--sums 2 2.25 2.5 3 5] [--a 1.01 1.05 1.1 1.2 1.5 2]
"""
from __future__ import annotations

import argparse

from attnlab.superposition import theory as th


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--a", type=float, nargs="+", default=[1.01, 1.05, 1.1, 1.2, 1.5, 2.0])
  p.add_argument("--sums", type=float, nargs="+", default=[2.0, 2.25, 2.5, 3.0, 5.0], help="values of a + 2b")
  p.add_argument("--n", type=int, nargs="+", default=[10 ** 5, 10 ** 6])
  args = p.parse_args()
  head = "  ".join(f"dev N={n:.0e}" for n in args.n)
  print(f"{'a':>5} {'b':>6} {'a+2b':>5} {'formula':>8}  {head}   T1 tolerance at N = 1e5")
  for s in args.sums:
    for a in args.a:
      b = (s - a) / 2
      if b < 0:
        continue
      ga = th.asymptotic_gamma(a, b, "linear", "teacher_scale")
      dev = [th.theory_gamma(n, a, b, "linear", "teacher_scale")["gamma_fit"] - ga for n in args.n]
      tol = 0.02 if abs(s - 2.0) < 1e-9 else 0.01
      ok = "ok" if abs(dev[0]) <= tol else f"EXCEEDS {tol}"
      cols = "  ".join(f"{d:+11.4f}" for d in dev)
      print(f"{a:>5} {b:>6.3f} {s:>5} {ga:>8.4f}  {cols}   {ok}")


if __name__ == "__main__":
  main()
