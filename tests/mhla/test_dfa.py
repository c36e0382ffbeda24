"""Fig. 4 (App. G.4) pieces: the DFA trace schema, the Llama-style model's
causality, tokens-to-target from logged curves, config validation."""
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.engine import grid as grid_lib
from attnlab.engine.experiment import ConfigError
from attnlab.mhla import exp_dfa
from attnlab.mhla import models
from attnlab.mhla import tasks as T


def test_dfa_trace_schema():
  """Every trace follows App. G.4: QV table triplets that define a function δ,
  ``|``, the word, ``|``, and a history that runs δ from state 0 over the word."""
  Q, L, V, N, order = 3, 5, 2, 40, "shuffled"
  toks = np.asarray(jax.jit(T.dfa_data, static_argnums=(1, 2, 3, 4, 5))(jax.random.PRNGKey(1), N, Q, V, L, order))
  Tn = T.dfa_length(Q, V, L)
  h0 = T.dfa_history_start(Q, V, L)
  assert toks.shape == (N, Tn) and Tn == 5 * Q * V + 2 + 6 * L
  st = lambda t: t - T.DFA_SPECIAL
  lt = lambda t: t - T.DFA_SPECIAL - Q
  hist_mask, state_mask = (np.asarray(m) for m in exp_dfa.masks(Q, L, V))
  n_diff_orders = 0
  for seq in toks:
    table = seq[: 5 * Q * V].reshape(Q * V, 5)
    assert (table[:, 0] == T.DFA_OPEN).all() and (table[:, 4] == T.DFA_CLOSE).all()
    pairs = [(st(a), lt(b)) for a, b in table[:, 1:3]]
    assert sorted(pairs) == [(s, w) for s in range(Q) for w in range(V)]  # each entry exactly once
    n_diff_orders += pairs != sorted(pairs)
    delta = {(st(a), lt(b)): st(c) for a, b, c in table[:, 1:4]}
    assert all(0 <= v < Q for v in delta.values())
    assert seq[5 * Q * V] == T.DFA_SEP and seq[h0 - 1] == T.DFA_SEP
    word = [lt(t) for t in seq[5 * Q * V + 1: h0 - 1]]
    assert len(word) == L and all(0 <= w < V for w in word)
    hist = seq[h0:].reshape(L, 5)
    s = 0
    for i, (o, a, b, c, cl) in enumerate(hist):
      assert (o, cl) == (T.DFA_OPEN, T.DFA_CLOSE)
      assert (st(a), lt(b)) == (s, word[i])
      s = delta[(s, word[i])]
      assert st(c) == s
    # the state mask marks exactly the looked-up states s^i among the targets seq[1:]
    assert [st(t) for t in seq[1:][state_mask]] == [st(c) for c in hist[:, 3]]
    assert hist_mask.sum() == 5 * L and (np.flatnonzero(hist_mask) + 1 == np.arange(h0, Tn)).all()
  assert n_diff_orders > 0  # shuffled tables


def test_llama_is_causal():
  """Logits at position t do not depend on tokens after t (and do on tokens before)."""
  m = models.LlamaLM(vocab=11, hidden=8, heads=2, layers=1, mlp_hidden=8, positions="rope", max_len=12)
  toks = jnp.arange(12, dtype=jnp.int32) % 11
  other = toks.at[7:].set(3)
  def f(key, ab):  # one compiled program (eager flax init compiles op by op)
    params = m.init(key, ab[0])
    return jax.vmap(lambda t: m.apply(params, t))(ab)
  la, lb = np.asarray(jax.jit(f)(jax.random.PRNGKey(0), jnp.stack([toks, other])))
  assert la.shape == (12, 11)
  np.testing.assert_array_equal(la[:7], lb[:7])
  assert np.abs(la[7:] - lb[7:]).max() > 1e-6


def test_rotary_is_relative():
  """<rot(q)_s, rot(k)_t> depends only on t - s."""
  rng = np.random.default_rng(0)
  q1, k1 = rng.normal(size=(2, 8)).astype(np.float32)
  Xq = jnp.asarray(np.tile(q1, (10, 1)))
  Xk = jnp.asarray(np.tile(k1, (10, 1)))
  S = np.asarray(jax.jit(lambda a, b: models.rotary(a) @ models.rotary(b).T)(Xq, Xk))
  for off in (0, 3, -2):
    diag = np.diagonal(S, off)
    np.testing.assert_allclose(diag, diag[0], rtol=1e-4, atol=1e-4)


class _FakeLogs:
  def __init__(self, curves):
    self._c = curves

  def settings(self):
    return {(("qlv", "2,2,2"),): list(self._c)}

  def curve(self, rid, metric):
    return self._c[rid]


def test_tokens_to_target_from_logs(repo_root):
  spec = importlib.util.spec_from_file_location("c", repo_root / "configs" / "mhla_dfa.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config("smoke")
  steps = np.array([0, 10, 20, 30])
  logs = _FakeLogs({"a": (steps, np.array([0.1, 0.5, 0.995, 1.0])),
                    "b": (steps, np.array([0.1, np.nan, 0.9, 0.991])),
                    "c": (steps, np.array([0.1, 0.2, 0.3, 0.4]))})
  out = exp_dfa.tokens_to_target(cfg, logs)["2,2,2"]
  Tn = T.dfa_length(2, 2, 2)
  assert out["steps_per_seed"] == [20, 30, None]
  assert out["tokens_per_seed"] == [20 * cfg.batch * Tn, 30 * cfg.batch * Tn, None]
  assert out["tokens_median"] == 30 * cfg.batch * Tn  # median of (20, 30, inf)
  logs = _FakeLogs({"a": (steps, np.array([0.1, 0.5, 0.995, 1.0])), "c": (steps, np.zeros(4)),
                    "d": (steps, np.zeros(4))})
  assert exp_dfa.tokens_to_target(cfg, logs)["2,2,2"]["tokens_median"] is None
  hook = exp_dfa.summarize_logs(cfg, logs)  # the engine merges this into summary.json
  assert hook["tokens_to_target"] == exp_dfa.tokens_to_target(cfg, logs)
  assert hook["acc_target"] == cfg.acc_target
  assert hook["token_budget_per_point"]["2,2,2"] == cfg.steps * cfg.batch * Tn


def test_dfa_config_validates(repo_root):
  spec = importlib.util.spec_from_file_location("c", repo_root / "configs" / "mhla_dfa.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  assert len(grid_lib.build_grid(mod.get_config()).runs) == 7 * 3
  for field, value, match in (("qlv_values", ("4,4",), "Q,L,V"), ("dfa_heads", 3, "must divide"),
                              ("dfa_positions", "alibi", "must be one of")):
    cfg = mod.get_config()
    cfg.unlock()
    cfg[field] = value
    with pytest.raises(ConfigError, match=match):
      grid_lib.build_grid(cfg)
