"""Sparse power-law features, the teacher, and their moments.

Index convention: features are ``i = 1..N`` in the formulas and ``0..N-1`` in
arrays (feature ``i`` lives at array index ``i - 1``). Samples are rows:
a batch is ``x: [B, N]``.

Generator (spec §3, the sibling code's ``(rand < p) * rand * 2``):
``x_i = z_i u_i`` with ``z_i ~ Bernoulli(p_i)`` and ``u_i ~ U[0, 2]``, all
independent. We draw *one* uniform ``r_i ~ U[0, 1)`` per entry and set
``x_i = 1[r_i < p_i] * 2 r_i / p_i``: given ``r_i < p_i``, ``r_i / p_i`` is
``U[0, 1)`` and independent of the event, so this is the same distribution at
half the random bits.

Moments: ``mu_i = E[x_i] = p_i`` and ``lambda_i = E[x_i^2] = (4/3) p_i``;
``C = E[x x^T]`` has ``C_ii = lambda_i`` and ``C_ij = p_i p_j`` (i != j).

Importance ``I_i = i^-b`` enters in one of two places
(``importance_mode``):

* ``teacher_scale``: target ``y = A x`` with ``A = diag(I)``, unweighted loss;
* ``loss_weight``: target ``y = x``, the squared error of output ``i`` weighted
  by ``I_i``.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

P_NORMS = ("sum1", "max1")
IMPORTANCE_MODES = ("teacher_scale", "loss_weight")
VALUE_M2 = 4.0 / 3.0  # E[u^2] for u ~ U[0, 2]


def feature_probs(n: int, freq_exp, p_norm: str = "sum1", dtype=jnp.float32) -> jax.Array:
  """p_i for i = 1..n: ``i^-a / sum_j j^-a`` (``sum1``) or ``min(1, i^-a)`` (``max1``).

  ``freq_exp`` (a) may be traced. Returns ``[n]``.
  """
  i = jnp.arange(1, n + 1, dtype=dtype)
  w = i ** (-jnp.asarray(freq_exp, dtype))
  if p_norm == "sum1":
    return w / jnp.sum(w)
  if p_norm == "max1":
    return jnp.minimum(w, 1.0)
  raise ValueError(f"p_norm must be one of {P_NORMS}, got {p_norm!r}")


def importance(n: int, imp_exp, dtype=jnp.float32) -> jax.Array:
  """Channel importance ``I_i = i^-b`` for i = 1..n (so ``I_1 = 1``). ``[n]``."""
  i = jnp.arange(1, n + 1, dtype=dtype)
  return i ** (-jnp.asarray(imp_exp, dtype))


def second_moment(p: jax.Array) -> jax.Array:
  """``lambda_i = E[x_i^2] = (4/3) p_i``."""
  return VALUE_M2 * p


def targets_and_weights(imp: jax.Array, mode: str) -> tuple[jax.Array, jax.Array]:
  """Per-feature (target scale y_i, loss weight w_i): (I, 1) or (1, I)."""
  ones = jnp.ones_like(imp)
  if mode == "teacher_scale":
    return imp, ones
  if mode == "loss_weight":
    return ones, imp
  raise ValueError(f"importance_mode must be one of {IMPORTANCE_MODES}, got {mode!r}")


def sample_inputs(key: jax.Array, p: jax.Array, batch: int) -> jax.Array:
  """A batch ``x: [batch, N]`` of sparse inputs ``Bernoulli(p_i) * U[0, 2]``."""
  chex.assert_rank(p, 1)
  r = jax.random.uniform(key, (batch, p.shape[0]), dtype=p.dtype)
  return jnp.where(r < p[None, :], 2.0 * r / p[None, :], 0.0)
