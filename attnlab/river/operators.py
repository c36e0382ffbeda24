"""Operators of the river (spec §2.2, §7.2). ``u``: (N, d), tokens are rows.

* :func:`attention`: multi-head attention, the discretised term (I)
  ``sum_m softmax_rows(s_m Q_m K_m^T) V_m Wo_m (+ bo)``. Each head is the shared
  :func:`attnlab.core.attention.attend` (tokens-as-columns; we transpose at
  the boundary) vmapped over heads, with ``temperature = 1 / scale_m``.
* :func:`attention_absorbed`: the paper's form with W^O absorbed,
  ``sum_m softmax_m(u) u W~V_m`` with W~V_m = Wv_m Wo_m (eq. (5.7)).
* :func:`ffn`: ``act(u W1 + b1) W2 + b2`` (the whole FFN as one local operator,
  spec §2.4 / P6).
* :func:`layernorm_project`: Theorem 3.1, the projection onto
  S1(sigma1, sigma2) row-wise; degenerate rows (Var + eps = 0) map to
  sigma1 * 1 (spec P3; counted by :func:`degenerate_rows`).
* :func:`layernorm`: a :class:`NormParams` LN (projection, or projection
  followed by the per-feature affine map in ``"affine"`` mode).
* :func:`tangent_project`: Pi_T at u, ``g - mean(g) 1 - (<c,g>/<c,c>) c`` with
  ``c = u - mean(u)`` (row-wise; an orthogonal projector even off S1).
* :func:`relu_project`: the projection onto S2 = {u >= 0}.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp

from attnlab.core.attention import attend, causal_mask
from attnlab.river.params import AttnParams, FFNParams, NormParams, absorbed_value

_HI = jax.lax.Precision.HIGHEST


def _act(name: str):
  if name == "relu":
    return relu_project
  if name == "gelu":
    return functools.partial(jax.nn.gelu, approximate=True)
  if name == "tanh":
    return jnp.tanh
  if name == "silu":
    return jax.nn.silu
  raise ValueError(f"unknown activation {name!r}")


def activation(name: str):
  """The activation function named ``name`` (relu|gelu|tanh|silu; gelu is the tanh form)."""
  return _act(name)


def _heads_attend(q, k, v, scale, causal: bool):
  """q, k: (H, d_h, N); v: (H, d_v, N); scale: (H,) -> (H, d_v, N)."""
  n = q.shape[-1]
  mask = causal_mask(n) if causal else None
  head = lambda qm, km, vm, sm: attend(qm, km, vm, "softmax", mask, 1.0 / sm)
  return jax.vmap(head)(q, k, v, scale)


def _proj(u, w, b):
  """(N, d), (H, d, e), (H, e)|None -> (H, e, N)."""
  out = jnp.einsum("nd,hde->hen", u, w, precision=_HI)
  return out if b is None else out + b[:, :, None]


def attention(u: jax.Array, p: AttnParams) -> jax.Array:
  """Multi-head attention A(u): (N, d) -> (N, d). See module doc."""
  chex.assert_rank(u, 2)
  chex.assert_equal(u.shape[1], p.wq.shape[1])
  q, k, v = _proj(u, p.wq, p.bq), _proj(u, p.wk, p.bk), _proj(u, p.wv, p.bv)
  heads = _heads_attend(q, k, v, p.scale, p.causal)  # (H, d_h, N)
  out = jnp.einsum("hen,hef->nf", heads, p.wo, precision=_HI)
  return out if p.bo is None else out + _row(p.bo, out)


def attention_matrices(u: jax.Array, p: AttnParams) -> jax.Array:
  """The row-stochastic attention kernels gamma_m: (H, N_query, N_key)."""
  from attnlab.core.attention import attention_matrix, scores
  q, k = _proj(u, p.wq, p.bq), _proj(u, p.wk, p.bk)
  mask = causal_mask(u.shape[0]) if p.causal else None
  f = lambda qm, km, sm: attention_matrix(scores(qm, km), "softmax", mask, 1.0 / sm).T
  return jax.vmap(f)(q, k, p.scale)


def attention_absorbed(u: jax.Array, p: AttnParams) -> jax.Array:
  """Paper form sum_m softmax_m(u) u W~V_m (+ the constant V/O bias). (N, d) -> (N, d).

  Equals :func:`attention` (rows of each softmax sum to 1, so a V-bias passes
  through as ``sum_m bv_m Wo_m``).
  """
  chex.assert_rank(u, 2)
  q, k = _proj(u, p.wq, p.bq), _proj(u, p.wk, p.bk)
  v = jnp.einsum("nd,hdf->hfn", u, absorbed_value(p), precision=_HI)
  out = _heads_attend(q, k, v, p.scale, p.causal).sum(0).T
  if p.bv is not None:
    out = out + _row(jnp.einsum("he,hef->f", p.bv, p.wo, precision=_HI), out)
  return out if p.bo is None else out + _row(p.bo, out)


def ffn(u: jax.Array, p: FFNParams) -> jax.Array:
  """F(u) = act(u W1 + b1) W2 + b2: (N, d) -> (N, d)."""
  chex.assert_rank(u, 2)
  pre = jnp.einsum("nd,df->nf", u, p.w1, precision=_HI)
  hidden = _act(p.act)(pre + _row(p.b1, pre))
  out = jnp.einsum("nf,fd->nd", hidden, p.w2, precision=_HI)
  return out + _row(p.b2, out)


def _row(v, u):
  """Broadcast a per-feature vector (d,) (or a scalar) against u: (..., d) explicitly."""
  v = jnp.asarray(v)
  return v if v.ndim == 0 else v.reshape((1,) * (u.ndim - 1) + v.shape)


def _moments(u):
  mean = jnp.mean(u, axis=-1, keepdims=True)
  c = u - mean
  var = jnp.mean(c * c, axis=-1, keepdims=True)
  return mean, c, var


def normalize(u: jax.Array, eps: float = 0.0) -> jax.Array:
  """(u - mean) / sqrt(Var + eps) row-wise; degenerate rows (Var + eps = 0) -> 0."""
  _, c, var = _moments(u)
  v = var + eps
  deg = v <= 0
  return jnp.where(deg, 0.0, c / jnp.sqrt(jnp.where(deg, 1.0, v)))


def layernorm_project(u: jax.Array, sigma1=0.0, sigma2=1.0, eps: float = 0.0) -> jax.Array:
  """P_S1: sigma2 (u - mean)/sqrt(Var + eps) + sigma1, row-wise over the last axis.

  With ``eps = 0`` this is the projection onto S1(sigma1, sigma2)
  (Theorem 3.1). Rows with Var + eps = 0 map to ``sigma1 * 1`` (spec P3), and
  the ``jnp.where`` guards keep gradients finite there.
  """
  return sigma2 * normalize(u, eps) + sigma1


def degenerate_rows(u: jax.Array, eps: float = 0.0) -> jax.Array:
  """Number of rows with Var + eps = 0 (the P3 diagnostic), an int32 scalar."""
  _, _, var = _moments(u)
  return jnp.sum(var[..., 0] + eps <= 0).astype(jnp.int32)


def layernorm(u: jax.Array, p: NormParams) -> jax.Array:
  """LN with :class:`NormParams`: projection (scalar sigmas) or affine (gamma, beta)."""
  if p.mode == "projection":
    chex.assert_rank([p.sigma1, p.sigma2], 0)
    return layernorm_project(u, p.sigma1, p.sigma2, p.eps)
  if p.mode == "affine":
    return _row(p.sigma2, u) * normalize(u, p.eps) + _row(p.sigma1, u)
  raise ValueError(f"unknown norm mode {p.mode!r}")


def tangent_project(u: jax.Array, g: jax.Array) -> jax.Array:
  """Pi_{T_u S1}(g) = g - mean(g) 1 - (<c, g>/<c, c>) c, c = u - mean(u), row-wise.

  ``u, g``: (..., d). On S1(sigma1, sigma2) ``<c, c> = d sigma2^2`` and
  ``c = u - sigma1``; we compute ``<c, c>`` from u (spec §7.2) so the map stays
  an orthogonal projector (onto span{1, c}^perp) slightly off S1. Rows with
  c = 0 only lose their mean.
  """
  chex.assert_equal_shape([u, g])
  _, c, _ = _moments(u)
  gc = g - jnp.mean(g, axis=-1, keepdims=True)
  cc = jnp.sum(c * c, axis=-1, keepdims=True)
  cg = jnp.sum(c * gc, axis=-1, keepdims=True)
  deg = cc <= 0
  return gc - jnp.where(deg, 0.0, cg / jnp.where(deg, 1.0, cc)) * c


def relu_project(u: jax.Array) -> jax.Array:
  """P_S2(u) = argmin_{w >= 0} ||w - u||^2 = max(u, 0) (eqs. (3.25)-(3.26))."""
  return jnp.maximum(u, 0)
