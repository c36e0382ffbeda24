"""Exact Jacobian rank of a lightning network over the prime field F_p.

A lightning network is a polynomial map of its weights, so its Jacobian at an
integer point can be computed exactly in modular arithmetic. For weights and
inputs drawn uniformly from F_p:

* ``rank_p(J mod p) <= rank_Q(J)`` at that integer point (a minor that is
  non-zero mod p is non-zero), and ``rank_Q(J)`` at any point is at most the
  generic rank, i.e. the neuromanifold dimension. So the result is a
  **certified lower bound**, and it equals the dimension unless the random
  point hits a proper algebraic subset mod p (probability ``O(deg / p)``).
* The continuous symmetries give the upper bound ``P - symmetry_dimension``
  inside (B1)-(B3) (their generators lie in the Jacobian kernel at every point).
  When the two bounds meet, the dimension is proven for that architecture.

Why this exists: the float64 estimator (:mod:`attnlab.geometry.estimator`)
decides the rank from a singular-value gap. For deep, narrow lightning stacks
the token matrix's condition number is cubed at every layer, the true trailing
singular values of J fall below float64 resolution altogether, and the gap test
can then be confidently wrong: at widths (2,2,2,2,1,1), a = (5,3,4,2,4), t = 2
it returned rank 2 with a gap of 1e10 ("reliable"), while the exact rank here
is 14 (= the formula). Softmax networks are not polynomial; this does not apply
to them.

Forward mode over all ``P`` tangent directions at once, vectorised in NumPy
``int64`` with ``p = 2^26 - 5``: every product of two residues is below 2^52,
and the matmul sums have at most ``max(d, a) <= 2^11`` terms, so nothing
overflows. Cost: ``O(N P (a + d) d t)`` for J and ``O(m P^2)`` for the
elimination; about a second at P = 300.
"""
from __future__ import annotations

import math

import numpy as np

from attnlab.geometry import model as gm

PRIME = 2 ** 26 - 5
_MAX_TERMS = 2 ** 11


def _mm(A: np.ndarray, B: np.ndarray, p: int) -> np.ndarray:
  """Batched ``A @ B mod p`` on residues (int64)."""
  return np.matmul(A, B) % p


def jacobian_mod_p(layers: list[tuple[np.ndarray, np.ndarray, np.ndarray]], X: np.ndarray,
                   p: int = PRIME) -> np.ndarray:
  """Exact Jacobian of the lightning network modulo ``p``.

  Args:
    layers: per layer ``(Q, K, V)`` residues, ``Q, K: (a, d_in)``, ``V: (d_out, d_in)``.
    X: ``(N, d_0, t)`` residues, tokens are columns.
    p: a prime with ``max(d, a) * p^2 < 2^63``.
  Returns:
    ``(N d_l t, P)`` int64 residues; rows ordered (n, output row, token), columns
    in the raveled parameter order of :mod:`attnlab.geometry.model` (per layer
    Q, K, V, row-major), like :func:`attnlab.geometry.estimator.jacobian`.
    Layer map: ``Z -> V Z S`` with ``S = (K Z)^T (Q Z)`` (``S[s, j] = <K z_s, Q z_j>``).
  """
  sizes = [q.size + k.size + v.size for q, k, v in layers]
  P = sum(sizes)
  widest = max(max(q.shape + v.shape) for q, _, v in layers)
  if widest > _MAX_TERMS or p >= 2 ** 26:
    raise ValueError(f"widths up to {_MAX_TERMS} and p < 2^26 keep int64 exact; got {widest}, {p}")
  Z = np.asarray(X, np.int64) % p  # (N, d, t)
  dZ = np.zeros((Z.shape[0], P) + Z.shape[1:], np.int64)  # (N, P, d, t)
  offset = 0
  for Q, K, V in layers:
    tangents = []
    for M in (Q, K, V):  # one-hot tangents of this block: (P, rows, cols)
      T = np.zeros((P,) + M.shape, np.int64)
      T[offset + np.arange(M.size), *np.unravel_index(np.arange(M.size), M.shape)] = 1
      tangents.append(T)
      offset += M.size
    dQ, dK, dV = tangents
    QZ, KZ, VZ = (_mm(M, Z, p) for M in (Q, K, V))  # (N, a|a|e, t)
    dQZ = (_mm(dQ[None], Z[:, None], p) + _mm(Q, dZ, p)) % p  # (N, P, a, t)
    dKZ = (_mm(dK[None], Z[:, None], p) + _mm(K, dZ, p)) % p
    dVZ = (_mm(dV[None], Z[:, None], p) + _mm(V, dZ, p)) % p
    S = _mm(np.swapaxes(KZ, -1, -2), QZ, p)  # (N, t, t)
    dS = (_mm(np.swapaxes(dKZ, -1, -2), QZ[:, None], p) + _mm(np.swapaxes(KZ, -1, -2)[:, None], dQZ, p)) % p
    dZ = (_mm(dVZ, S[:, None], p) + _mm(VZ[:, None], dS, p)) % p
    Z = _mm(VZ, S, p)
  N, _, d_l, t = dZ.shape
  return np.moveaxis(dZ, 1, -1).reshape(N * d_l * t, P)


def _reduce(basis: np.ndarray, pivots: list[int], rows: np.ndarray, p: int) -> np.ndarray:
  """Rows minus their components along the echelon ``basis`` (pivot entries 1), mod p."""
  for b, c in zip(basis, pivots):
    rows = (rows - rows[:, c:c + 1] * b) % p
  return rows


def rank_mod_p(M: np.ndarray, p: int = PRIME, chunk: int | None = None) -> int:
  """Rank of an int64 residue matrix ``(m, P)`` over F_p.

  Gaussian elimination, vectorised per pivot, over row chunks of size
  ``chunk`` (default ``2P``): each chunk is reduced against the echelon basis
  found so far and then eliminated, so memory is O(P^2) beyond M and the cost
  O(m P r) for rank r.
  """
  M = np.asarray(M, np.int64) % p
  P = M.shape[1]
  chunk = chunk or max(2 * P, 1)
  basis, pivots = np.zeros((0, P), np.int64), []
  for start in range(0, M.shape[0], chunk):
    rows = _reduce(basis, pivots, M[start:start + chunk].copy(), p)
    new = []
    for c in range(P):
      if len(pivots) + len(new) == P:
        break
      nz = np.nonzero(rows[:, c])[0]
      if c in pivots or nz.size == 0:
        continue
      pivot_row = rows[nz[0]] * pow(int(rows[nz[0], c]), p - 2, p) % p
      rows = np.delete(rows, nz[0], axis=0)
      rows = (rows - rows[:, c:c + 1] * pivot_row) % p
      new.append((pivot_row, c))
    if new:
      # keep the basis fully reduced on its pivots so _reduce stays one pass
      new_rows = np.stack([r for r, _ in new])
      new_cols = [c for _, c in new]
      basis = np.concatenate([_reduce(new_rows, new_cols, basis, p), new_rows]) if len(basis) else new_rows
      pivots = pivots + new_cols
    if len(pivots) == P:
      break
  return len(pivots)


def lightning_rank(arch: gm.Arch, seed: int = 0, n_inputs: int | None = None, p: int = PRIME) -> int:
  """Exact rank over F_p of the Jacobian of lightning ``arch`` at a uniform random point of F_p.

  A certified lower bound on the neuromanifold dimension, equal to it with
  probability ``1 - O(deg / p)`` (module doc). ``n_inputs`` defaults to
  ``max(P, ceil(2P / (d_l t)))``: enough rows is not enough, since one input's
  block of J can have rank far below ``d_l t`` (3 of 15 at (3,3,3,3), a = 1,
  t = 5, where ``ceil(2P / (d_l t))`` = 6 inputs gave 18 instead of 21).
  Deterministic for a given ``seed``.
  """
  if arch.kind != "lightning":
    raise ValueError(f"exact ranks need a polynomial network (kind='lightning'), got {arch.kind!r}")
  n = max(arch.num_params, math.ceil(2 * arch.num_params / arch.out_size)) if n_inputs is None else int(n_inputs)
  rng = np.random.default_rng(seed)
  layers = [tuple(rng.integers(0, p, shape, dtype=np.int64) for shape in shapes) for shapes in arch.layer_shapes()]
  X = rng.integers(0, p, (n, arch.widths[0], arch.t), dtype=np.int64)
  return rank_mod_p(jacobian_mod_p(layers, X, p), p)
