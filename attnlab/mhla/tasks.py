"""Data for the MHLA experiments (spec §6): random teacher, associative memory.

All generators are pure functions of a key; shapes are static. Sequences are
(d, n) with tokens as columns (batched: (N, d, n)).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core.linear_attention import init_mhla, mhla, mhla_batch


# --- Sec. 4.1: random linear-attention teacher --------------------------------


def normals(key: jax.Array, shapes, dtype=jnp.float32) -> list:
  """Standard normal arrays of the given shapes, cut from one flat draw."""
  sizes = [int(np.prod(s)) for s in shapes]
  flat = jax.random.normal(key, (sum(sizes),), dtype)
  out, i = [], 0
  for s, k in zip(shapes, sizes):
    out.append(flat[i:i + k].reshape(s))
    i += k
  return out


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


# --- C11: next-state lookup tables (our extension) ------------------------------


def lookup_dim(n_states: int, n_symbols: int) -> int:
  """Embedding dimension D = Q*S (pair one-hot key/query slots) + Q (value slots)."""
  return n_states * n_symbols + n_states


def _lookup_token(s, w, nxt, n_states, n_symbols, dtype):
  """One column: pair one-hot e_{s*S + w} in slots [0, QS) (all zero if s < 0) and the
  next-state one-hot e_{nxt} in slots [QS, QS + Q) (all zero if nxt < 0)."""
  P = n_states * n_symbols
  pair = jax.nn.one_hot(jnp.where(s >= 0, s * n_symbols + w, -1), P, dtype=dtype)
  val = jax.nn.one_hot(nxt, n_states, dtype=dtype)  # one_hot(-1) = 0
  return jnp.concatenate([pair, val])


def lookup_sequence(delta, states, word, length, n_states, n_symbols, max_steps, perm, dtype=jnp.float32):
  """The (D, Q*S + max_steps) zero-padded sequence of one lookup sample.

  Columns 0..QS-1: the transition table, entry (s, w) -> δ(s, w) as the token
  [e_{(s,w)}; e_{δ(s,w)}], in the order ``perm``. Then one *query* token per
  step t < length: [e_{(states[t], word[t])}; 0]. The label of the sequence is
  e_{δ(states[length-1], word[length-1])} in the value slots: a single head with
  Q = [[I_QS, 0], [0, 0]] and V = [[0, 0], [0, I_Q]] computes it exactly
  (:func:`lookup_teacher`), since only the matching table entry has a nonzero
  score and query tokens carry no value.
  """
  Q, S = n_states, n_symbols
  ss = jnp.repeat(jnp.arange(Q), S)[perm]
  ws = jnp.tile(jnp.arange(S), Q)[perm]
  table = jax.vmap(lambda s, w: _lookup_token(s, w, delta[s, w], Q, S, dtype))(ss, ws)  # (QS, D)
  t = jnp.arange(max_steps)
  live = t < length
  queries = jax.vmap(lambda s, w, a: _lookup_token(jnp.where(a, s, -1), w, -1, Q, S, dtype))(states, word, live)
  return jnp.concatenate([table, queries], axis=0).T


def lookup_teacher(n_states: int, n_symbols: int, dtype=jnp.float32):
  """The exact one-head MHLA of the lookup task: V: (1, D, D), Q: (1, D, D)."""
  P = n_states * n_symbols
  D = P + n_states
  Vm = jnp.zeros((1, D, D), dtype).at[0, P:, P:].set(jnp.eye(n_states, dtype=dtype))
  Qm = jnp.zeros((1, D, D), dtype).at[0, :P, :P].set(jnp.eye(P, dtype=dtype))
  return Vm, Qm


def run_machine(delta, word, s0=0):
  """States s_0 = s0, s_{t+1} = δ(s_t, w_t): returns (states[0..L-1], next[0..L-1])."""
  def step(s, w):
    nxt = delta[s, w].astype(jnp.int32)
    return nxt, (s, nxt)
  _, (states, nxt) = jax.lax.scan(step, jnp.asarray(s0, jnp.int32), word)
  return states, nxt


def lookup_data(key, N: int, n_states: int, n_symbols: int, max_steps: int, dtype=jnp.float32):
  """N samples: a random machine δ (uniform next states), a random word, a random
  length ℓ in [1, max_steps], the table in random order. Returns Zs: (N, D, QS + max_steps),
  lengths: (N,) = QS + ℓ, Ys: (N, D) = [0; e_{s_ℓ}], the state after ℓ steps."""
  Q, S = n_states, n_symbols
  kd, kw, kl, kp = jax.random.split(key, 4)
  deltas = jax.random.randint(kd, (N, Q, S), 0, Q)
  words = jax.random.randint(kw, (N, max_steps), 0, S)
  ell = jax.random.randint(kl, (N,), 1, max_steps + 1)
  perms = jax.vmap(lambda k: jax.random.permutation(k, Q * S))(jax.random.split(kp, N))

  def one(delta, word, l, perm):
    states, nxt = run_machine(delta, word)
    Z = lookup_sequence(delta, states, word, l, Q, S, max_steps, perm, dtype)
    y = jnp.concatenate([jnp.zeros((Q * S,), dtype), jax.nn.one_hot(nxt[l - 1], Q, dtype=dtype)])
    return Z, y

  Zs, Ys = jax.vmap(one)(deltas, words, ell, perms)
  return Zs, Q * S + ell, Ys


# --- App. G.4: DFA execution traces (Fig. 4) ------------------------------------
#
# Token ids (vocabulary 4 + Q + V): 0 = "(", 1 = ")", 2 = "|", 3 = pad (unused),
# states 4 .. 4+Q-1, letters 4+Q .. 4+Q+V-1.

DFA_OPEN, DFA_CLOSE, DFA_SEP, DFA_PAD = 0, 1, 2, 3
DFA_SPECIAL = 4


def dfa_vocab(n_states: int, n_letters: int) -> int:
  """Vocabulary size: 4 specials + Q states + V letters."""
  return DFA_SPECIAL + n_states + n_letters


def dfa_length(n_states: int, n_letters: int, word_len: int) -> int:
  """Sequence length T = 5QV (table) + 1 + L (word) + 1 + 5L (history)."""
  return 5 * n_states * n_letters + 2 + 6 * word_len


def dfa_history_start(n_states: int, n_letters: int, word_len: int) -> int:
  """Index of the first history token (the ``(`` after the second ``|``)."""
  return 5 * n_states * n_letters + 2 + word_len


def dfa_sequence(delta: jax.Array, word: jax.Array, perm: jax.Array, s0=0) -> jax.Array:
  """One DFA trace in the schema of App. G.4, int32 of length :func:`dfa_length`.

  ``delta``: (Q, V) next-state table; ``word``: (L,) letters; ``perm``: (QV,)
  the order of the table entries (entry e is (s, w) = (e // V, e % V)).
  Layout: ``( s w δ(s,w) )`` for each entry in the order ``perm``; ``|``; the
  word w_0 .. w_{L-1}; ``|``; the history ``( s^{i-1} w_{i-1} s^i )`` for
  i = 1..L with s^0 = ``s0`` and s^i = δ(s^{i-1}, w_{i-1}).
  """
  Q, V = delta.shape
  L = word.shape[0]
  ss = perm // V
  ws = perm % V
  st = lambda s: DFA_SPECIAL + s
  lt = lambda w: DFA_SPECIAL + Q + w
  table = jnp.stack([jnp.full_like(ss, DFA_OPEN), st(ss), lt(ws), st(delta[ss, ws]),
                     jnp.full_like(ss, DFA_CLOSE)], axis=1).reshape(-1)
  states, nxt = run_machine(delta, word, s0)
  hist = jnp.stack([jnp.full((L,), DFA_OPEN, jnp.int32), st(states), lt(word), st(nxt),
                    jnp.full((L,), DFA_CLOSE, jnp.int32)], axis=1).reshape(-1)
  sep = jnp.array([DFA_SEP], jnp.int32)
  return jnp.concatenate([table.astype(jnp.int32), sep, lt(word).astype(jnp.int32), sep,
                          hist.astype(jnp.int32)])


def dfa_data(key: jax.Array, N: int, n_states: int, n_letters: int, word_len: int,
             table_order: str = "shuffled") -> jax.Array:
  """N traces of random DFAs: δ(s, w) uniform in [Q] for every entry, the word
  uniform in [V]^L, start state 0, table entries in random order
  (``table_order="shuffled"``) or sorted by (s, w) (``"sorted"``).

  Returns tokens: (N, T) int32. [reconstructed: the paper gives no sampling
  distribution, start state or table order.]
  """
  Q, V, L = n_states, n_letters, word_len
  # one uniform draw cut into pieces (one threefry program compiles much faster on CPU
  # than separate randint / permutation draws)
  u = jax.random.uniform(key, (N, 2 * Q * V + L))
  deltas = jnp.minimum(jnp.floor(u[:, : Q * V] * Q), Q - 1).astype(jnp.int32).reshape(N, Q, V)
  words = jnp.minimum(jnp.floor(u[:, Q * V: Q * V + L] * V), V - 1).astype(jnp.int32)
  if table_order == "shuffled":
    perms = jnp.argsort(u[:, Q * V + L:], axis=1).astype(jnp.int32)  # a uniform random permutation
  elif table_order == "sorted":
    perms = jnp.broadcast_to(jnp.arange(Q * V), (N, Q * V))
  else:
    raise ValueError(f"table_order must be 'shuffled' or 'sorted', got {table_order!r}")
  return jax.vmap(dfa_sequence)(deltas, words, perms)
