"""Symmetries of deep attention parameters (spec §3.1, §3.3) and their generators.

Layers are 0-based (``params[i]`` is the paper's layer i + 1). Each group
action maps parameters to parameters; each generator returns a tangent vector
(a pytree shaped like ``params``) of the one-parameter subgroup at the identity.

==================  =======================================  ==============================
symmetry            action                                   leaves phi invariant for
==================  =======================================  ==============================
GL_{a_i}            Q_i -> C Q_i, K_i -> C^{-T} K_i           lightning and softmax
pass-through M_i    V_i -> M V_i; Q,K,V_{i+1} -> (.) M^{-1}   lightning and softmax
scaling c_i         Q_i -> c Q_i, V_i -> V_i / c              lightning only
K<->V swap          swap the rows of K_i and V_i (a_i = d_i   lightning only (single layer,
                    = 1 output)                              or a final a = d' = 1 layer)
==================  =======================================  ==============================

The dimension of the orbit of the continuous symmetries at generic weights is
:func:`attnlab.geometry.dimension.symmetry_dimension`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from attnlab.geometry.model import Layer, Params

_HI = jax.lax.Precision.HIGHEST


def _mm(a, b):
  return jnp.matmul(a, b, precision=_HI)


def _replace(params: Params, i: int, layer: Layer) -> Params:
  return tuple(layer if j == i else p for j, p in enumerate(params))


def gl_rotation(params: Params, i: int, C: jax.Array) -> Params:
  """GL_{a_i} on layer i: ``Q_i -> C Q_i``, ``K_i -> C^{-T} K_i`` (C: (a_i, a_i))."""
  L = params[i]
  return _replace(params, i, Layer(_mm(C, L.Q), jnp.linalg.solve(C.T, L.K), L.V))


def pass_through(params: Params, i: int, M: jax.Array) -> Params:
  """Pass-through between layers i and i+1 (M: (d_{i+1}, d_{i+1}), i < l - 1).

  ``V_i -> M V_i`` and ``Q_{i+1}, K_{i+1}, V_{i+1} -> (.) M^{-1}``.
  """
  if not 0 <= i < len(params) - 1:
    raise ValueError(f"pass-through needs 0 <= i < depth - 1, got {i}")
  Minv = jnp.linalg.inv(M)
  L, N = params[i], params[i + 1]
  out = _replace(params, i, Layer(L.Q, L.K, _mm(M, L.V)))
  return _replace(out, i + 1, Layer(_mm(N.Q, Minv), _mm(N.K, Minv), _mm(N.V, Minv)))


def scaling(params: Params, i: int, c) -> Params:
  """Per-layer scaling ``(Q_i, V_i) -> (c Q_i, V_i / c)`` (A_i -> c A_i)."""
  L = params[i]
  return _replace(params, i, Layer(c * L.Q, L.K, L.V / c))


def kv_swap(params: Params, i: int = 0) -> Params:
  """The rank-1 swap: exchange the single row of K_i with the single row of V_i.

  Needs ``a_i = 1`` and ``d_{i+1} = 1`` (K_i and V_i are both ``(1, d_i)``).
  With A = p q^T, V = u v^T, phi = u (v^T X X^T p)(q^T X) is symmetric in v <-> p.
  """
  L = params[i]
  if L.K.shape != L.V.shape or L.K.shape[0] != 1:
    raise ValueError(f"kv_swap needs K_i and V_i of shape (1, d); got {L.K.shape}, {L.V.shape}")
  return _replace(params, i, Layer(L.Q, L.V, L.K))


def _zero_tangent(params: Params) -> Params:
  return jax.tree.map(jnp.zeros_like, params)


def gl_generator(params: Params, i: int, X: jax.Array) -> Params:
  """d/dε of ``gl_rotation(params, i, exp(εX))``: δQ_i = X Q_i, δK_i = -X^T K_i."""
  L = params[i]
  return _replace(_zero_tangent(params), i, Layer(_mm(X, L.Q), -_mm(X.T, L.K), jnp.zeros_like(L.V)))


def pass_through_generator(params: Params, i: int, Y: jax.Array) -> Params:
  """d/dε of ``pass_through(params, i, exp(εY))``.

  δV_i = Y V_i; δQ_{i+1} = -Q_{i+1} Y, δK_{i+1} = -K_{i+1} Y, δV_{i+1} = -V_{i+1} Y.
  """
  L, N = params[i], params[i + 1]
  out = _replace(_zero_tangent(params), i, Layer(jnp.zeros_like(L.Q), jnp.zeros_like(L.K), _mm(Y, L.V)))
  return _replace(out, i + 1, Layer(-_mm(N.Q, Y), -_mm(N.K, Y), -_mm(N.V, Y)))


def scaling_generator(params: Params, i: int) -> Params:
  """d/dε of ``scaling(params, i, exp(ε))``: δQ_i = Q_i, δV_i = -V_i."""
  L = params[i]
  return _replace(_zero_tangent(params), i, Layer(L.Q, jnp.zeros_like(L.K), -L.V))


def conditioned(G: jax.Array) -> jax.Array:
  """A well-conditioned group element from a Gaussian ``G: (n, n)``: ``G / sqrt(n) + 2 I``."""
  n = G.shape[0]
  return G / jnp.sqrt(float(n)) + 2.0 * jnp.eye(n, dtype=G.dtype)


def random_conditioned(key: jax.Array, n: int, dtype=None) -> jax.Array:
  """A random well-conditioned ``(n, n)`` matrix: N(0, 1) entries / sqrt(n) + 2 I."""
  return conditioned(jax.random.normal(key, (n, n), dtype))
