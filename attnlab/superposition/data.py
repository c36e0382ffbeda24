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

Sparse sampler (:func:`sample_events`, used for training and evaluation):
each feature of each sample fires ``N_bi ~ Poisson(q_i)`` times with
``q_i = -log(1 - p_i)``, so ``P(N_bi >= 1) = p_i`` and all (sample, feature)
pairs are independent (Poisson splitting). Equivalently, a batch of ``B``
samples has ``n ~ Poisson(B Q)`` events, ``Q = sum_i q_i`` (about 1.04 for
``sum1`` at a = 1.2), each on a uniformly drawn sample and on feature ``i``
with probability ``q_i / Q``; a (sample, feature) pair hit twice keeps one
value. The batch is a flat event list of static length ``capacity`` (about
``B Q``; see :func:`event_capacity`) instead of ``B x N`` entries, so the
input layer of a student costs ``O(B Q K)`` instead of ``O(B N K)``. The
sampler is exact up to truncation at ``capacity`` events per batch
(probability ``P(Poisson(B Q) > capacity)``, < 1e-9 by construction when
``capacity = event_capacity(B, Q_max)``) and the float32 resolution of the
uniforms (2^-24: features with ``q_i / Q`` below about 1e-7 are drawn at a
slightly wrong rate, as in the dense sampler). ``p_i = 1`` is clipped to
``1 - 2^-24``.

Importance ``I_i = i^-b`` enters in one of two places
(``importance_mode``):

* ``teacher_scale``: target ``y = A x`` with ``A = diag(I)``, unweighted loss;
* ``loss_weight``: target ``y = x``, the squared error of output ``i`` weighted
  by ``I_i``.
"""
from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

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


def feature_probs_np(n: int, freq_exp: float, p_norm: str = "sum1") -> np.ndarray:
  """:func:`feature_probs` on the host in float64 (for static sizes, e.g. the event capacity)."""
  w = np.arange(1, n + 1, dtype=np.float64) ** (-float(freq_exp))
  if p_norm == "sum1":
    return w / w.sum()
  if p_norm == "max1":
    return np.minimum(w, 1.0)
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


@functools.partial(jax.tree_util.register_dataclass, data_fields=["row", "feat", "val"], meta_fields=["batch"])
@dataclasses.dataclass(frozen=True)
class Events:
  """A sparse batch as a flat event list (length ``E = capacity``).

  ``x[row[e], feat[e]] = val[e]`` for every event with ``val[e] != 0``; all
  other entries of ``x: [batch, N]`` are 0. Dead (beyond the Poisson count)
  and duplicate events have ``val = 0`` (their ``row``/``feat`` are valid
  indices). Events are sorted by ``(row, feat)``, so ``row`` is
  non-decreasing. ``batch`` (B) is static.
  """
  row: jax.Array    # int32 [E], in [0, B)
  feat: jax.Array   # int32 [E], in [0, N)
  val: jax.Array    # float [E], in [0, 2)
  batch: int


def total_rate(p) -> float:
  """``Q = sum_i q_i`` (host-side NumPy, float64): the mean number of events per sample."""
  p = np.minimum(np.asarray(p, np.float64), 1.0 - 2.0 ** -24)
  return float(-np.sum(np.log1p(-p)))


def event_capacity(batch: int, rate: float, tol: float = 1e-9) -> int:
  """The smallest ``E`` with ``P(Poisson(batch * rate) > E) < tol`` (static event-list length).

  Exact Poisson tail in float64 on the host (pmf by log-factorials; the tail summed
  from the far end so that small tails keep their relative precision)."""
  mu = float(batch) * float(rate)
  k = np.arange(int(mu + 40.0 * np.sqrt(mu) + 60.0))
  log_fact = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
  pmf = np.exp(k * np.log(mu) - mu - log_fact) if mu > 0 else (k == 0).astype(np.float64)
  sf = np.cumsum(pmf[::-1])[::-1]                  # sf[j] = P(X >= j)
  above = np.concatenate([sf[1:], [0.0]])          # P(X > j)
  return int(np.argmax(above < tol))


def sample_events(key: jax.Array, p: jax.Array, batch: int, capacity: int) -> Events:
  """A batch of ``batch`` sparse inputs as an :class:`Events` list of ``capacity`` events.

  ``p: [N]`` may be traced. Cost ``O(capacity log capacity)``, independent of ``N``
  up to a binary search.
  """
  chex.assert_rank(p, 1)
  n = p.shape[0]
  if batch * n >= 2 ** 31 - 1:
    raise ValueError(f"batch * N = {batch * n} overflows the int32 event key")
  q = poisson_rates(p)
  Q = jnp.sum(q)
  # reverse cumulative mass, so rare (tail) features keep relative precision
  tail = jnp.cumsum(q[::-1])[::-1] / Q           # tail[i] = sum_{j >= i} q_j / Q, decreasing
  # one threefry call for all the randomness (each call site is a large program on CPU): 4 x 32 bits per event
  bits = jax.random.bits(key, (4, capacity), jnp.uint32)
  unif = (bits[1:] >> 8).astype(p.dtype) * (2.0 ** -24)          # [3, E], exact 24-bit uniforms in [0, 1)
  arrivals = jnp.cumsum(-jnp.log1p(-unif[0]))
  live = arrivals <= batch * Q                     # a rate-1 Poisson process on [0, B Q]
  row = (bits[0] % jnp.uint32(batch)).astype(jnp.int32)           # modulo bias <= batch / 2^32
  u = unif[1]
  # feature i is chosen when tail[i+1] <= u < tail[i]: count the tails strictly above u
  feat = jnp.clip(n - jnp.searchsorted(tail[::-1], u, side="right") - 1, 0, n - 1).astype(jnp.int32)
  sentinel = batch * n
  code = jnp.sort(jnp.where(live, row * n + feat, sentinel))   # sorted by (row, feat); dead events last
  keep = (code < sentinel) & jnp.concatenate([jnp.ones((1,), bool), code[1:] != code[:-1]])
  code = jnp.minimum(code, sentinel - 1)
  # the values are i.i.d. and independent of the events, so drawing them after the sort is exact
  val = jnp.where(keep, 2.0 * unif[2], 0.0)
  return Events(row=code // n, feat=code % n, val=val, batch=batch)


def densify(ev: Events, n: int) -> jax.Array:
  """The dense ``x: [B, n]`` of a sparse batch (tests and diagnostics only)."""
  return jnp.zeros((ev.batch, n), ev.val.dtype).at[ev.row, ev.feat].add(ev.val)
