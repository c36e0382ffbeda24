"""The cubic feature lift of Yau et al. and the parameter polynomial p(Theta).

Conventions (spec ``linear_attention_poly.md`` §3):

* ``Z``: (d, n), tokens are columns; ``z_n = Z[:, n-1]`` is the last token
  (or ``Z[:, length-1]`` for a zero-padded sequence; zero padding columns is
  exact for the Gram ``G = Z Z^T``).
* ``V``: (H, d_out, d), ``Q``: (H, d, d) (the shared MHLA convention of
  :mod:`attnlab.core.linear_attention`).
* 𝒳(Z): (d, d^2), ``𝒳[j, k*d + l] = G[j, k] * z_n[l]`` (Alg. 8: row-major,
  l runs fastest).
* The lifted parameter matrix 𝒯_Θ = Σ_h flatten(V_h) flatten(Q_h)^T has
  shape (d_out*d, d^2); its rows are (a, j) = ``a*d + j`` and its columns
  (k, l) = ``k*d + l``. Reshaped as ``W[a, j, k, l]``, the model is
  ``y_a = Σ_{jkl} W[a,j,k,l] G[j,k] z_n[l]``.
* ℋ(Z): (ψ,) with ψ = d^2 (d+1) / 2, in Algorithm 2's order: first the
  distinct pairs j<k in ``triu_indices(d, 1)`` order, each with l = 0..d-1
  (index ``pair*d + l``), then the singles j = 0..d-1, each with
  l = 0..d-1 (index ``P*d + j*d + l`` with P = d(d-1)/2).
* p(Θ): (d_out, ψ), Eq. 41 with the head index, so that
  ``MHLA_Θ(Z)[a] = <p(Θ)[a], ℋ(Z)>`` (Eq. 45).
"""
from __future__ import annotations

from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core.linear_attention import gram, prefix_grams

_HI = jax.lax.Precision.HIGHEST


def psi_dim(d: int) -> int:
  """ψ = C(d, 2) d + d^2 = d^2 (d + 1) / 2, the dimension of ℋ."""
  return d * d * (d + 1) // 2


def pair_indices(d: int) -> tuple[np.ndarray, np.ndarray]:
  """The static (j, k) arrays of the distinct pairs j<k (``triu_indices(d, 1)``)."""
  return np.triu_indices(d, 1)


def last_token(Z: jax.Array, length: Optional[jax.Array] = None) -> jax.Array:
  """z_n: ``Z[:, length-1]`` (``Z[:, -1]`` if ``length`` is None); Z: (d, n) -> (d,)."""
  if length is None:
    return Z[:, -1]
  return jax.lax.dynamic_index_in_dim(Z, length - 1, axis=1, keepdims=False)


def features_X(Z: jax.Array, length: Optional[jax.Array] = None) -> jax.Array:
  """𝒳(Z): (d, d^2) with ``𝒳[j, k*d + l] = <z_j:, z_k:> z_{l n}`` (Alg. 8 order)."""
  chex.assert_rank(Z, 2)
  d = Z.shape[0]
  G = gram(Z)
  zn = last_token(Z, length)
  return jnp.reshape(G[:, :, None] * zn[None, None, :], (d, d * d))


def gram_factor(G: jax.Array) -> jax.Array:
  """The Gram half of ℋ: g = (G[j, k] for the pairs j<k in triu order, then
  G[j, j] for j in [d]) of length d(d+1)/2; G: (..., d, d) -> (..., d(d+1)/2).

  ℋ = g ⊗ z_n, row-major (index ``p * d + l``), see :func:`features_H_from_gram`.
  """
  d = G.shape[-1]
  iu0, iu1 = pair_indices(d)
  return jnp.concatenate([G[..., iu0, iu1], jnp.diagonal(G, axis1=-2, axis2=-1)], axis=-1)


def features_H_from_gram(G: jax.Array, zn: jax.Array) -> jax.Array:
  """ℋ from a Gram G: (d, d) and a last token zn: (d,); returns (ψ,):
  ``ℋ[p * d + l] = g[p] zn[l]`` with g = :func:`gram_factor` (Alg. 2's order:
  the pairs {j,k} x l, then the singles j x l)."""
  chex.assert_rank([G, zn], [2, 1])
  return (gram_factor(G)[:, None] * zn[None, :]).reshape(-1)


def features_H(Z: jax.Array, length: Optional[jax.Array] = None) -> jax.Array:
  """ℋ(Z): (ψ,) for one sequence Z: (d, n) (Alg. 2 order; see module doc).

  ``length`` (optional, int): the true length of a zero-padded sequence.
  """
  chex.assert_rank(Z, 2)
  return features_H_from_gram(gram(Z), last_token(Z, length))


def features_H_batch(Zs: jax.Array, lengths: Optional[jax.Array] = None) -> jax.Array:
  """ℋ over a batch Zs: (B, d, n) (optional lengths: (B,)); returns (B, ψ)."""
  chex.assert_rank(Zs, 3)
  if lengths is None:
    return jax.vmap(features_H)(Zs)
  return jax.vmap(features_H)(Zs, lengths)


def prefix_features_H(Z: jax.Array) -> jax.Array:
  """ℋ of every prefix ``Z[:, :t+1]``, t = 0..n-1; Z: (d, n) -> (n, ψ).

  Uses the prefix Gram cumsum, O(n d^3); row t is the feature of the causal
  label ``y_t`` (the Sec. 4.1 teacher's autoregressive labels).
  """
  chex.assert_rank(Z, 2)
  S = prefix_grams(Z)  # (n, d, d)
  return jax.vmap(features_H_from_gram)(S, Z.T)


# --- parameters <-> p ---------------------------------------------------------


def lifted_params(V: jax.Array, Q: jax.Array) -> jax.Array:
  """𝒯_Θ = Σ_h flatten(V_h) flatten(Q_h)^T: (d_out*d, d^2) (Eq. 8, row-major)."""
  chex.assert_rank([V, Q], [3, 3])
  H, d_out, d = V.shape
  chex.assert_shape(Q, (H, d, d))
  return jnp.einsum("ha,hb->ab", V.reshape(H, d_out * d), Q.reshape(H, d * d), precision=_HI)


def _p_from_tensor(T: jax.Array) -> jax.Array:
  """p from a 4-tensor T[a, j, k, l]: pairs T[a,j,k,l] + T[a,k,j,l] (j<k), singles T[a,j,j,l]."""
  d_out, d = T.shape[0], T.shape[1]
  iu0, iu1 = pair_indices(d)
  pairs = T[:, iu0, iu1, :] + T[:, iu1, iu0, :]  # (d_out, P, d)
  diag = jnp.arange(d)
  singles = T[:, diag, diag, :]  # (d_out, d, d)
  return jnp.concatenate([pairs.reshape(d_out, -1), singles.reshape(d_out, -1)], axis=1)


def p_of_params(V: jax.Array, Q: jax.Array) -> jax.Array:
  """p(Θ): (d_out, ψ), Eq. 41 (with the head index h)."""
  chex.assert_rank([V, Q], [3, 3])
  T = jnp.einsum("haj,hkl->ajkl", V, Q, precision=_HI)
  return _p_from_tensor(T)


def p_from_W(W: jax.Array, d: int) -> jax.Array:
  """p of a lifted matrix W: (d_out*d, d^2) -> (d_out, ψ)."""
  chex.assert_rank(W, 2)
  d_out = W.shape[0] // d
  chex.assert_shape(W, (d_out * d, d * d))
  return _p_from_tensor(W.reshape(d_out, d, d, d))


def W_from_p(p: jax.Array, d: int) -> jax.Array:
  """The minimum-norm W with ``p_from_W(W) == p``; p: (d_out, ψ) -> (d_out*d, d^2).

  ``W[a,j,k,l] = W[a,k,j,l] = p/2`` for j != k and ``W[a,j,j,l] = p``.
  """
  chex.assert_rank(p, 2)
  d_out = p.shape[0]
  chex.assert_shape(p, (d_out, psi_dim(d)))
  iu0, iu1 = pair_indices(d)
  P = len(iu0)
  pairs = p[:, : P * d].reshape(d_out, P, d)
  singles = p[:, P * d:].reshape(d_out, d, d)
  T = jnp.zeros((d_out, d, d, d), p.dtype)
  T = T.at[:, iu0, iu1, :].set(pairs / 2).at[:, iu1, iu0, :].set(pairs / 2)
  diag = jnp.arange(d)
  T = T.at[:, diag, diag, :].set(singles)
  return T.reshape(d_out * d, d * d)


def sym_W(W: jax.Array, d: int) -> jax.Array:
  """The partial symmetrisation ½(W[a,j,k,l] + W[a,k,j,l]); (d_out*d, d^2) -> same.

  An orthogonal projector; only ``sym(W)`` affects the model's output.
  """
  d_out = W.shape[0] // d
  T = W.reshape(d_out, d, d, d)
  return (0.5 * (T + jnp.swapaxes(T, 1, 2))).reshape(d_out * d, d * d)


def predict_p(p: jax.Array, feats: jax.Array) -> jax.Array:
  """Model outputs from p: (d_out, ψ) and features: (..., ψ) -> (..., d_out)."""
  return jnp.einsum("ap,...p->...a", p, feats, precision=_HI)


def p_distance(p1: jax.Array, p2: jax.Array) -> jax.Array:
  """d(Θ, Θ') = ‖p(Θ) − p(Θ')‖_F (Eq. 15); both (d_out, ψ)."""
  chex.assert_equal_shape([p1, p2])
  return jnp.sqrt(jnp.sum((p1 - p2) ** 2))
