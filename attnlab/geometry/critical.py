"""Structured (non-generic) single-layer weights: the critical points of spec §3.2.

The spec's table is for lightning, d = 4, d' = 3, a = 2, t = 3 (generic rank 23).
:data:`POINTS` lists the points in the table's order with the spec's reported
Jacobian ranks (reference values to compare against, not used in any computation).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from attnlab.geometry.model import Layer

# name -> (description, Jacobian rank reported by the spec for d=4, d'=3, a=2, t=3, lightning)
POINTS = {
    "generic": ("generic", 23),
    "rank_q1": ("rank Q = 1 (so rank A = 1), K generic", 21),
    "rank_qk1": ("rank Q = rank K = 1", 18),
    "rank_v1": ("rank V = 1, A generic of rank 2", 23),
    "rank_v1_qk1": ("rank V = 1 and rank Q = rank K = 1", 18),
    "q0": ("Q = 0 (A = 0), K and V generic", 8),
    "qk0": ("Q = K = 0", 0),
    "v0": ("V = 0", 12),
}
POINT_NAMES = tuple(POINTS)


def _rank1(M: jax.Array) -> jax.Array:
  """A generic rank-1 matrix built from M: ``outer(M[:, 0], M[0, :])``-like, using
  the first column and the last row so that the factors are independent entries."""
  return jnp.outer(M[:, 0], M[-1, :])


def structured_point(layer: Layer, name: str) -> Layer:
  """Impose the structure ``name`` (a key of :data:`POINTS`) on generic weights ``layer``."""
  Q, K, V = layer
  z = jnp.zeros_like
  table = {
      "generic": lambda: (Q, K, V),
      "rank_q1": lambda: (_rank1(Q), K, V),
      "rank_qk1": lambda: (_rank1(Q), _rank1(K), V),
      "rank_v1": lambda: (Q, K, _rank1(V)),
      "rank_v1_qk1": lambda: (_rank1(Q), _rank1(K), _rank1(V)),
      "q0": lambda: (z(Q), K, V),
      "qk0": lambda: (z(Q), z(K), V),
      "v0": lambda: (Q, K, z(V)),
  }
  if name not in table:
    raise ValueError(f"unknown point {name!r}; known: {POINT_NAMES}")
  return Layer(*table[name]())


def structured_point_index(layer: Layer, index: jax.Array) -> Layer:
  """:func:`structured_point` with a (traceable) index into :data:`POINT_NAMES` (``lax.switch``)."""
  branches = [lambda l, n=n: structured_point(l, n) for n in POINT_NAMES]
  return jax.lax.switch(index, branches, layer)
