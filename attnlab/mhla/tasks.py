"""Data for the MHLA experiments (spec §6): random teacher, associative memory.

All generators are pure functions of a key; shapes are static. Sequences are
(d, n) with tokens as columns (batched: (N, d, n)).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from attnlab.core.linear_attention import init_mhla, mhla, mhla_batch


# --- Sec. 4.1: random linear-attention teacher --------------------------------


def random_teacher(key: jax.Array, d: int, heads: int, d_out: int, std, dtype=jnp.float32):
  """A random H-head teacher, entries N(0, std^2): V (H, d_out, d), Q (H, d, d)."""
  return init_mhla(key, heads, d, d_out, std, dtype)


def teacher_data(key: jax.Array, V: jax.Array, Q: jax.Array, N: int, n: int, input_std,
                 labels: str = "last", dtype=None):
  """N sequences Z ~ N(0, input_std^2) of length n, labelled by the teacher.

  Returns Zs: (N, d, n) and Ys: (N, d_out) (``labels="last"``, Eq. 5) or
  (N, d_out, n) (``labels="all"``: the autoregressive labels of Sec. 4.1,
  ``y_t = Σ_h V_h Z_{:, :t} Z_{:, :t}^T Q_h z_t``).
  """
  d = Q.shape[-1]
  dtype = dtype or V.dtype
  Zs = input_std * jax.random.normal(key, (N, d, n), dtype)
  mode = "last" if labels == "last" else "causal"
  return Zs, mhla_batch(V.astype(dtype), Q.astype(dtype), Zs, mode)


# --- Sec. 4.2: associative memory ---------------------------------------------


def assoc_memory_teacher(d: int, dtype=jnp.float32):
  """The one-head ground truth in dimension D = 2d: V = [[0,0],[0,I]], Q = [[I,0],[0,0]].

  Returns V: (1, D, D), Q: (1, D, D).
  """
  D = 2 * d
  I = jnp.eye(d, dtype=dtype)
  V = jnp.zeros((1, D, D), dtype).at[0, d:, d:].set(I)
  Q = jnp.zeros((1, D, D), dtype).at[0, :d, :d].set(I)
  return V, Q


def random_orthogonal_batch(key, N: int, d: int, dtype=jnp.float32) -> jax.Array:
  """N Haar-random orthogonal d x d matrices: (N, d, d).

  Gram-Schmidt on the columns of a Gaussian matrix (= QR with a positive
  diagonal R, hence Haar), written as d static steps of batched vector ops: a
  batched ``jnp.linalg.qr`` over 2^14 small matrices stalled on CPU.
  """
  A = jax.random.normal(key, (N, d, d), dtype)
  cols = []
  for j in range(d):
    v = A[:, :, j]
    for q in cols:
      v = v - jnp.sum(q * v, axis=1, keepdims=True) * q
    cols.append(v / jnp.linalg.norm(v, axis=1, keepdims=True))
  return jnp.stack(cols, axis=2)


def assoc_memory_data(key: jax.Array, d: int, N: int, frac_unident, am_label: str = "exact",
                      dtype=jnp.float32):
  """The mixture of Eqs. 13-14: N sequences Z = [[k_1..k_d, q], [v_1..v_d, ζ]].

  Each sample is "unidentifiable" (keys and values the columns of two fresh
  Haar-orthogonal matrices) iff ``u_i < frac_unident`` for a per-sample
  uniform ``u_i``, and "identifiable" (k_j, v_j ~ N(0, I)) otherwise; both
  versions are drawn from the same key, so with a fixed key the unidentifiable
  set grows monotonically with ``frac_unident`` (which may be traced). q is a
  uniformly chosen key, ζ ~ N(0, I).

  Labels: ``am_label="exact"``: y = MHLA_Θ(Z) = [0; Σ_j <q,k_j> v_j + ‖q‖² ζ]
  (realisable); ``"printed"``: y = [0; Σ_j <q,k_j> v_j] (the paper's formula,
  not realisable).

  Returns Zs: (N, 2d, d+1), Ys: (N, 2d).
  """
  kk, kv, ko1, ko2, kq, kz, ku = jax.random.split(key, 7)
  Kg = jax.random.normal(kk, (N, d, d), dtype)
  Vg = jax.random.normal(kv, (N, d, d), dtype)
  Ko = random_orthogonal_batch(ko1, N, d, dtype)
  Vo = random_orthogonal_batch(ko2, N, d, dtype)
  unident = jax.random.uniform(ku, (N,)) < frac_unident
  K = jnp.where(unident[:, None, None], Ko, Kg)
  Vals = jnp.where(unident[:, None, None], Vo, Vg)
  j = jax.random.randint(kq, (N,), 0, d)
  q = jnp.take_along_axis(K, j[:, None, None], axis=2)[..., 0]  # (N, d)
  zeta = jax.random.normal(kz, (N, d), dtype)
  top = jnp.concatenate([K, q[:, :, None]], axis=2)
  bottom = jnp.concatenate([Vals, zeta[:, :, None]], axis=2)
  Zs = jnp.concatenate([top, bottom], axis=1)  # (N, 2d, d+1)
  if am_label == "exact":
    V, Q = assoc_memory_teacher(d, dtype)
    Ys = mhla_batch(V, Q, Zs, "last")
  elif am_label == "printed":
    scores = jnp.einsum("nij,ni->nj", K, q)
    Ys = jnp.concatenate([jnp.zeros((N, d), dtype), jnp.einsum("nij,nj->ni", Vals, scores)], axis=1)
  else:
    raise ValueError(f"am_label must be 'exact' or 'printed', got {am_label!r}")
  return Zs, Ys
