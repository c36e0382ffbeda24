"""Multi-head linear attention (MHLA), the shared forward pass.

Conventions (Yau et al., Def. 2.1):

* ``Z``: (d, n). Columns are tokens, rows are embedding coordinates.
* ``V``: (H, d_out, d), the value matrices; ``d_out`` is 1 or d.
* ``Q``: (H, d, d), the fused key-query matrices (``K^T Q`` in one matrix).

The model has no softmax, bias, normalisation or residual:

* ``mode="full"`` (Eq. 4):   Y = sum_h V_h Z (Z^T Q_h Z),             (d_out, n)
* ``mode="causal"``:         y_t = sum_h V_h S_t Q_h z_t,             (d_out, n)
  with the prefix Gram S_t = sum_{s<=t} z_s z_s^T (a cumulative sum, so the
  cost is O(n d^2 H), never an n x n matrix);
* ``mode="last"`` (Eq. 5):   y = sum_h V_h (Z Z^T) Q_h z_n,           (d_out,)
  the prediction at the last token, which is where causal and full agree.

All contractions use ``precision=HIGHEST`` so float32 results on GPU/TPU are
not silently computed in bf16.
"""
from __future__ import annotations

from typing import Literal

import chex
import jax
import jax.numpy as jnp

from attnlab.core import prng

Mode = Literal["last", "causal", "full"]
_HI = jax.lax.Precision.HIGHEST


def gram(Z: jax.Array) -> jax.Array:
  """Z Z^T for Z: (d, n); returns (d, d)."""
  return jnp.einsum("in,jn->ij", Z, Z, precision=_HI)


def prefix_grams(Z: jax.Array) -> jax.Array:
  """S_t = sum_{s<=t} z_s z_s^T for every t; Z: (d, n) -> (n, d, d)."""
  outer = jnp.einsum("it,jt->tij", Z, Z, precision=_HI)
  return jnp.cumsum(outer, axis=0)


def mhla(V: jax.Array, Q: jax.Array, Z: jax.Array, mode: Mode = "last") -> jax.Array:
  """Multi-head linear attention on one sequence.

  Args:
    V: (H, d_out, d) value matrices.
    Q: (H, d, d) fused key-query matrices.
    Z: (d, n) input sequence, tokens are columns.
    mode: ``"last"`` -> (d_out,); ``"causal"`` or ``"full"`` -> (d_out, n).

  Returns:
    The attention output as described in the module docstring.
  """
  chex.assert_rank([V, Q, Z], [3, 3, 2])
  H, d_out, d = V.shape
  chex.assert_shape(Q, (H, d, d))
  chex.assert_shape(Z, (d, None))
  if mode == "last":
    G = gram(Z)
    q = jnp.einsum("hij,j->hi", Q, Z[:, -1], precision=_HI)  # (H, d)
    Gq = jnp.einsum("ij,hj->hi", G, q, precision=_HI)  # (H, d)
    return jnp.einsum("hoi,hi->o", V, Gq, precision=_HI)
  if mode == "full":
    G = gram(Z)
    QZ = jnp.einsum("hij,jn->hin", Q, Z, precision=_HI)  # (H, d, n)
    GQZ = jnp.einsum("ij,hjn->hin", G, QZ, precision=_HI)
    return jnp.einsum("hoi,hin->on", V, GQZ, precision=_HI)
  if mode == "causal":
    S = prefix_grams(Z)  # (n, d, d)
    QZ = jnp.einsum("hij,jn->hni", Q, Z, precision=_HI)  # (H, n, d)
    SQZ = jnp.einsum("nij,hnj->hni", S, QZ, precision=_HI)  # (H, n, d)
    return jnp.einsum("hoi,hni->on", V, SQZ, precision=_HI)
  raise ValueError(f"mode must be 'last', 'causal' or 'full', got {mode!r}")


def mhla_batch(V: jax.Array, Q: jax.Array, Zs: jax.Array, mode: Mode = "last") -> jax.Array:
  """:func:`mhla` over a batch Zs: (B, d, n); returns (B, d_out) or (B, d_out, n)."""
  return jax.vmap(lambda Z: mhla(V, Q, Z, mode))(Zs)


def init_mhla(key: jax.Array, heads: int, d: int, d_out: int, std: float | jax.Array = 1.0,
              dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """Gaussian (V, Q) with entries N(0, std^2); shapes (H, d_out, d), (H, d, d)."""
  kv, kq = jax.random.split(key)
  V = std * prng.normal(kv, (heads, d_out, d), dtype)
  Q = std * prng.normal(kq, (heads, d, d), dtype)
  return V, Q


def mhla_last_from_stats(V: jax.Array, Q: jax.Array, G: jax.Array, z_last: jax.Array) -> jax.Array:
  """Batched ``mode="last"`` MHLA from sufficient statistics.

  The last-token output depends on a sequence only through its Gram matrix
  G = Z Z^T and its last token z_n: y = sum_h V_h G Q_h z_n. Written in the
  lifted form y_o = sum_{i,k,l} M[o,i,k,l] G[i,k] z_l with
  M = sum_h V_h (x) Q_h (Yau et al., Eq. 8), one step costs O(B d_out d^3)
  as a single matmul, about 16x faster on CPU than the head-by-head
  contractions, whose tiny batched dots XLA runs poorly.

  Args:
    V: (H, d_out, d). Q: (H, d, d). G: (B, d, d) Gram matrices. z_last: (B, d).
  Returns:
    (B, d_out), equal to ``mhla_batch(V, Q, Zs, "last")``.
  """
  chex.assert_rank([V, Q, G, z_last], [3, 3, 3, 2])
  M = jnp.einsum("hoi,hkl->oikl", V, Q, precision=_HI)  # (d_out, d, d, d)
  features = (G[:, :, :, None] * z_last[:, None, None, :]).reshape(G.shape[0], -1)  # (B, d^3)
  return jnp.einsum("bf,of->bo", features, M.reshape(M.shape[0], -1), precision=_HI)
