"""Acceptance 3 of issue 4 on random architectures: estimate vs formula.

Draws architectures inside (B1)-(B3) with at most ``--max_params`` parameters
(1-5 layers, widths non-increasing from d_0 in [2, 10], a_i in [1, 5],
t in {2, 3, 4}, both kinds), and for each prints the formula, the float64
estimator (with the calibrated fallback, :func:`attnlab.geometry.estimator.estimate`)
and, for lightning, the exact F_p rank (:mod:`attnlab.geometry.exact`).

  python scripts/check_geometry_random.py [--count 40] [--seed 2026] [--max_params 400]
  python scripts/check_geometry_random.py --deep --count 16 [--fallback calibrated_unscaled]
  python scripts/check_geometry_random.py ... --rank_method lu_rows

``--deep`` draws softmax stacks of 6-10 layers of constant width 2-5 instead
(where float64 runs out of precision); ``--deep --decreasing`` draws
non-increasing widths from d_0 in 3..7. A softmax line is "BAD" when it is
reliable and wrong (never seen so far), "unreliable" when flagged.

A line is OK when the reported estimate (the exact rank for lightning, the
float64 one for softmax) equals the formula and is reliable; the float64
column shows where the float64 estimator alone would have failed.
"""
from __future__ import annotations

import argparse
import random
import time
import warnings

import jax

from attnlab.geometry import dimension as gd
from attnlab.geometry import estimator as ge
from attnlab.geometry import exact as gexact
from attnlab.geometry import model as gm


def draw_arch(rng: random.Random, max_params: int, deep: bool = False, decreasing: bool = False):
  while True:
    if deep:  # deep softmax stacks of constant (or non-increasing) width
      depth = rng.randint(6, 10)
      widths = [rng.randint(2, 5)] * (depth + 1)
      if decreasing:
        widths = [rng.randint(3, 7)]
        for _ in range(depth):
          widths.append(rng.randint(max(1, widths[-1] - 1), widths[-1]))
      attn = [rng.randint(1, 4) for _ in range(depth)]
      kind = "softmax"
      t = rng.choice([2, 3])
    else:
      depth = rng.choice([1, 1, 2, 2, 2, 3, 3, 4, 5])
      widths = [rng.randint(2, 10)]
      for _ in range(depth):
        widths.append(rng.randint(1, widths[-1]))
      attn = [rng.randint(1, 5) for _ in range(depth)]
      kind = rng.choice(["softmax", "lightning"])
      t = rng.choice([2, 3, 3, 4])
    if gm.num_params(widths, attn) > max_params:
      continue
    exp = gd.expected_dimension(widths, attn, kind, t)
    if exp.value is not None:
      return gm.Arch(widths, attn, kind, t), exp.value


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--count", type=int, default=40)
  p.add_argument("--seed", type=int, default=2026)
  p.add_argument("--max_params", type=int, default=400)
  p.add_argument("--deep", action="store_true", help="deep softmax stacks instead: 6-10 layers, width 2-5")
  p.add_argument("--decreasing", action="store_true",
                 help="with --deep: non-increasing widths from d_0 in 3..7 (each step -1 or 0)")
  p.add_argument("--fallback", default="calibrated", choices=ge.FALLBACKS)
  p.add_argument("--rank_method", default="qr", choices=ge.RANK_METHODS)
  p.add_argument("--no_certify", action="store_true", help="skip the ball-arithmetic certificate (softmax)")
  args = p.parse_args()
  rng = random.Random(args.seed)
  warnings.simplefilter("ignore", RuntimeWarning)
  ok_total = float_ok_total = bad_total = certified_total = 0
  for i in range(args.count):
    arch, want = draw_arch(rng, args.max_params, args.deep, args.decreasing)
    t0 = time.perf_counter()
    e = ge.estimate(jax.random.PRNGKey(i), arch, warn=False, fallback=args.fallback,
                    rank_method=args.rank_method, certify=not args.no_certify)
    float_ok = e.rank_tol == want and e.reliable
    exact = gexact.lightning_rank(arch) if arch.kind == "lightning" else None
    ok = (exact == want) if exact is not None else (e.dimension == want and (e.reliable or bool(e.certified)))
    certified_total += bool(e.certified)
    ok_total += ok
    float_ok_total += float_ok
    verdict = "OK " if ok else ("unreliable" if exact is None and not e.reliable and not e.certified else "BAD")
    bad_total += verdict == "BAD"
    print(f"{verdict} {arch.kind:9s} widths={arch.widths} a={arch.attn_dims} t={arch.t} "
          f"P={arch.num_params} formula={want} float64={e.rank_tol}/{e.rank_gap} gap=1e{e.gap_log10:.1f} "
          f"reliable={e.reliable} attempts={e.attempts} exact={exact} certified={e.certified}"
          f"{'' if e.certificate is None else f' ({e.certificate.prec} bits)'} {time.perf_counter() - t0:.1f}s",
          flush=True)
  print(f"reported estimate == formula (and reliable): {ok_total}/{args.count}; "
        f"float64 estimator alone: {float_ok_total}/{args.count}; certified by ball arithmetic: {certified_total}; "
        f"reliable but wrong: {bad_total}")


if __name__ == "__main__":
  main()
