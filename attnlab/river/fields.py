"""Vector fields of the rivers (spec §2.4, §7.3).

Every field has the signature ``f(u, theta) -> du/dt`` with ``u``: (N, d)
(tokens are rows) and ``theta`` one layer's :class:`BlockParams` (the control
on the current time interval). :func:`as_diffrax` turns one into diffrax's
``f(t, y, args)``.

* R-post (paper-faithful, post-LN): ``Pi_T(u)[A(u) + F(u)]`` on
  M = S1(sigma1, sigma2)^N; per-operator fields ``attn_post``, ``ffn_post``.
* R-pre (pre-LN): ``A(LN1 u) + F(LN2 u)``; ``attn_pre``, ``ffn_pre``.
* SA / USA (Geshkovski et al.), ``z``: (n, d) unit rows:
  ``SA:  z_i' = P_perp_{z_i}( sum_j softmax_j(beta <z_i, z_j>) z_j )``,
  ``USA: z_i' = P_perp_{z_i}( (1/n) sum_j exp(beta <z_i, z_j>) z_j )``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from attnlab.river import operators as ops
from attnlab.river.params import BlockParams

_HI = jax.lax.Precision.HIGHEST


def attn_post(u: jax.Array, theta: BlockParams) -> jax.Array:
  """Pi_T(u) A(u): the attention part of R-post."""
  return ops.tangent_project(u, ops.attention(u, theta.attn))


def ffn_post(u: jax.Array, theta: BlockParams) -> jax.Array:
  """Pi_T(u) F(u): the FFN part of R-post."""
  return ops.tangent_project(u, ops.ffn(u, theta.ffn))


def postln_field(u: jax.Array, theta: BlockParams) -> jax.Array:
  """R-post: Pi_T(u) [A(u) + F(u)]."""
  return ops.tangent_project(u, ops.attention(u, theta.attn) + ops.ffn(u, theta.ffn))


def attn_pre(u: jax.Array, theta: BlockParams) -> jax.Array:
  """A(LN1 u): the attention part of R-pre."""
  return ops.attention(ops.layernorm(u, theta.ln1), theta.attn)


def ffn_pre(u: jax.Array, theta: BlockParams) -> jax.Array:
  """F(LN2 u): the FFN part of R-pre."""
  return ops.ffn(ops.layernorm(u, theta.ln2), theta.ffn)


def preln_field(u: jax.Array, theta: BlockParams) -> jax.Array:
  """R-pre: A(LN1 u) + F(LN2 u)."""
  return attn_pre(u, theta) + ffn_pre(u, theta)


def project_post(u: jax.Array, theta: BlockParams) -> jax.Array:
  """P_M for R-post: the projection onto S1 of ``theta.ln2`` (row-wise)."""
  return ops.layernorm(u, theta.ln2)


def _sphere_perp(z, g):
  return g - jnp.sum(z * g, axis=-1, keepdims=True) * z


def sa_field(z: jax.Array, beta) -> jax.Array:
  """SA (softmax-normalised) self-attention dynamics on the unit sphere; z: (n, d)."""
  g = jnp.einsum("id,jd->ij", z, z, precision=_HI)
  w = jax.nn.softmax(beta * g, axis=-1)
  return _sphere_perp(z, jnp.einsum("ij,jd->id", w, z, precision=_HI))


def usa_field(z: jax.Array, beta) -> jax.Array:
  """USA (unnormalised, 1/n) self-attention dynamics on the unit sphere; z: (n, d)."""
  n = z.shape[0]
  g = jnp.einsum("id,jd->ij", z, z, precision=_HI)
  w = jnp.exp(beta * g) / n
  return _sphere_perp(z, jnp.einsum("ij,jd->id", w, z, precision=_HI))


def sphere_project(z: jax.Array, _=None) -> jax.Array:
  """Row-wise normalisation onto the unit sphere."""
  return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


FIELDS = {"postln": postln_field, "preln": preln_field}


def as_diffrax(field, theta_at=None):
  """Wrap ``field(u, theta)`` as diffrax's ``f(t, y, args)``.

  ``args`` is the parameter pytree; ``theta_at(args, t)`` selects the control
  at time t (piecewise constant or interpolated, see
  :func:`attnlab.river.diffrax_backend.theta_at`); without it ``args`` is used
  as is (shared weights).
  """
  if theta_at is None:
    return lambda t, y, args: field(y, args)
  return lambda t, y, args: field(y, theta_at(args, t))
