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

Sparse sampler (:func:`sample_sparse`, used for training and evaluation):
each feature fires ``N_i ~ Poisson(q_i)`` times with ``q_i = -log(1 - p_i)``,
so ``P(N_i >= 1) = p_i`` and the features are independent (Poisson
splitting). Equivalently, a sample has ``n ~ Poisson(Q)`` events,
``Q = sum_i q_i``, each on feature ``i`` with probability ``q_i / Q``; a
feature hit twice keeps one value. This draws ``O(max_active)`` random numbers
per sample instead of ``N``, and is exact up to truncation at ``max_active``
events per sample (probability ``P(Poisson(Q) > max_active)``; < 1e-9 for
``sum1`` with the default 16, checked by the experiment factories) and the
float32 resolution of the uniforms (2^-24: features with ``p_i`` below about
1e-7 are drawn at a slightly wrong rate, as in the dense sampler). ``p_i = 1``
is clipped to ``1 - 2^-24``.

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


def poisson_rates(p: jax.Array) -> jax.Array:
  """``q_i = -log(1 - p_i)`` (``p_i`` clipped below 1), so ``1 - exp(-q_i) = p_i``."""
  return -jnp.log1p(-jnp.minimum(p, 1.0 - 2.0 ** -24))


def sample_sparse(key: jax.Array, p: jax.Array, batch: int, max_active: int = 16):
  """A batch of sparse inputs: ``(idx [batch, M] int32, val [batch, M])``.

  Sample ``b`` has ``x[b, idx[b, m]] = val[b, m]`` for every slot with
  ``val[b, m] != 0`` and ``x = 0`` elsewhere; unused and duplicate slots have
  ``val = 0`` (their ``idx`` is arbitrary). ``M = max_active``.
  """
  chex.assert_rank(p, 1)
  n = p.shape[0]
  q = poisson_rates(p)
  Q = jnp.sum(q)
  # reverse cumulative mass, so rare (tail) features keep relative precision
  tail = jnp.cumsum(q[::-1])[::-1] / Q           # tail[i] = sum_{j >= i} q_j / Q, decreasing
  k_arr, k_idx, k_val = jax.random.split(key, 3)
  arrivals = jnp.cumsum(jax.random.exponential(k_arr, (batch, max_active), dtype=p.dtype), axis=1)
  live = arrivals <= Q                             # a rate-Q Poisson process on [0, 1] (time scaled by Q)
  u = jax.random.uniform(k_idx, (batch, max_active), dtype=p.dtype)
  # feature i is chosen when tail[i+1] <= u < tail[i]: count the tails strictly above u
  idx = jnp.clip(jnp.sum(tail[None, None, :] > u[:, :, None], axis=-1) - 1, 0, n - 1).astype(jnp.int32) \
      if n <= 64 else jnp.clip(n - jnp.searchsorted(tail[::-1], u, side="right") - 1, 0, n - 1).astype(jnp.int32)
  earlier = jnp.tril(jnp.ones((max_active, max_active), bool), k=-1)   # [m, m'] : m' < m
  dup = jnp.any((idx[:, :, None] == idx[:, None, :]) & live[:, None, :] & earlier[None, :, :], axis=2)
  keep = live & ~dup
  val = jnp.where(keep, jax.random.uniform(k_val, (batch, max_active), dtype=p.dtype, maxval=2.0), 0.0)
  return idx, val


def densify(idx: jax.Array, val: jax.Array, n: int) -> jax.Array:
  """The dense ``x: [B, n]`` of a sparse batch (tests and diagnostics only)."""
  B = idx.shape[0]
  return jnp.zeros((B, n), val.dtype).at[jnp.arange(B)[:, None], idx].add(val)
