"""Dot-product attention, the one shared forward pass for softmax and
lightning (unnormalised) attention.

Conventions: tokens are columns.

* ``queries``: (a, t_q), ``keys``: (a, t_k), ``values``: (d_v, t_k).
* Scores ``S[s, t] = <keys[:, s], queries[:, t]>``: shape (t_k, t_q), the key
  index first, so that column t holds the scores of query t.
* ``kind="softmax"`` normalises over the key index (each column of the
  attention matrix sums to 1); ``kind="lightning"`` uses the raw scores
  (Henry, Marchetti & Kohn's "lightning" attention); ``kind="linear"`` is an
  alias of lightning.
* Output ``values @ A``: (d_v, t_q); column t is ``sum_s A[s, t] values[:, s]``.

A fused bilinear form ``x_q^T W x_k`` (query on the left) is
``attend(W.T @ Xq, Xk, Xv)``; see :func:`bilinear_attention`.
"""
from __future__ import annotations

from typing import Literal, Optional

import chex
import jax
import jax.numpy as jnp

Kind = Literal["softmax", "lightning", "linear"]
_HI = jax.lax.Precision.HIGHEST


def scores(queries: jax.Array, keys: jax.Array) -> jax.Array:
  """S[s, t] = <keys[:, s], queries[:, t]>; (a, t_q), (a, t_k) -> (t_k, t_q)."""
  return jnp.einsum("as,at->st", keys, queries, precision=_HI)


def causal_mask(t: int) -> jax.Array:
  """Boolean (t, t) mask, ``mask[s, t] = s <= t`` (key s visible to query t)."""
  idx = jnp.arange(t)
  return idx[:, None] <= idx[None, :]


def attention_matrix(S: jax.Array, kind: Kind = "softmax", mask: Optional[jax.Array] = None,
                     temperature: float | jax.Array = 1.0) -> jax.Array:
  """Normalise scores S: (t_k, t_q) into the attention matrix (t_k, t_q).

  ``softmax`` is over the key axis 0 (columns sum to 1) after dividing by
  ``temperature``; masked entries get weight 0. ``lightning``/``linear``
  return ``S / temperature`` with masked entries zeroed.
  """
  chex.assert_rank(S, 2)
  S = S / temperature
  if kind == "softmax":
    if mask is not None:
      S = jnp.where(mask, S, -jnp.inf)
    return jax.nn.softmax(S, axis=0)
  if kind in ("lightning", "linear"):
    return S if mask is None else jnp.where(mask, S, 0.0)
  raise ValueError(f"kind must be 'softmax', 'lightning' or 'linear', got {kind!r}")


def attend(queries: jax.Array, keys: jax.Array, values: jax.Array, kind: Kind = "softmax",
           mask: Optional[jax.Array] = None, temperature: float | jax.Array = 1.0) -> jax.Array:
  """Single-head attention; returns ``values @ A``: (d_v, t_q). See module doc."""
  chex.assert_rank([queries, keys, values], 2)
  chex.assert_equal_shape_prefix([queries, keys], 1)
  chex.assert_equal(keys.shape[1], values.shape[1])
  A = attention_matrix(scores(queries, keys), kind, mask, temperature)
  return jnp.einsum("vs,st->vt", values, A, precision=_HI)


def bilinear_attention(W: jax.Array, Xq: jax.Array, Xk: jax.Array, Xv: jax.Array,
                       kind: Kind = "softmax", mask: Optional[jax.Array] = None) -> jax.Array:
  """Attention with a fused key-query matrix, query on the left.

  Column t of the output is ``sum_s A[s, t] Xv[:, s]`` with
  ``A[:, t] = softmax_s(Xq[:, t]^T W Xk[:, s])`` (or the raw scores).

  Args:
    W: (d_q, d_k). Xq: (d_q, t_q). Xk: (d_k, t_k). Xv: (d_v, t_k).
  Returns:
    (d_v, t_q).
  """
  chex.assert_rank(W, 2)
  return attend(jnp.einsum("qk,qt->kt", W, Xq, precision=_HI), Xk, Xv, kind, mask)
