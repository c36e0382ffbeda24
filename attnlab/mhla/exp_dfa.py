"""DFA data requirements (Yau et al. App. G.4, Fig. 4; spec §6.3, C10), scaled to CPU.

A random DFA with Q states over V letters and a random word of L letters are
written as one token sequence (:func:`attnlab.mhla.tasks.dfa_sequence`):
the transition table as ``( s w δ(s,w) )`` triplets, ``|``, the word, ``|``,
then the computation history ``( s^{i-1} w_{i-1} s^i )``. A small Llama-style
softmax Transformer (:class:`attnlab.mhla.models.LlamaLM`) is trained by
AdamW with next-token cross-entropy on the history tokens only (input = table
+ word, target = history).

One static group per point ``qlv = "Q,L,V"``. Per run, ``make_data`` draws a
pool of ``n_train`` training traces and ``n_eval`` held-out traces (fresh
DFAs and words) outside the vmapped trainer; each step samples a minibatch of
``batch`` traces from the pool (uniform, with replacement).

Metrics: ``loss`` (batch cross-entropy, every step); at logged steps
``acc`` (next-token accuracy over all history tokens of the held-out set),
``acc_state`` (over the looked-up states s^i only: the tokens that need the
table) and ``eval_loss``.

Tokens-to-target: the number of training tokens processed (steps x batch x T,
T the sequence length) at the first logged step where the held-out ``acc``
reaches ``acc_target`` (0.99); null if it never does within the budget. The
paper's measure is the size of a training set (L x #examples, 100 epochs); ours
is the token count of a single training run on a pool of ``n_train`` traces
[reconstructed]. The engine's ``summarize_logs`` hook computes it from the
logs and puts ``tokens_to_target`` (per point: per seed and the median, where a
seed that never reaches the target counts as +inf, and an infinite median is
null) into ``summary.json``; ``figures`` draws ``fig4_dfa.png`` and
``dfa_accuracy.png``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attnlab.core import prng
from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import ConfigError, Iterative
from attnlab.mhla import models
from attnlab.mhla import tasks as T


def parse_qlv(s) -> tuple[int, int, int]:
  """``"4,4,4"`` -> (Q, L, V) = (4, 4, 4)."""
  try:
    q, l, v = (int(x) for x in str(s).split(","))
  except ValueError:
    raise ConfigError("qlv", f"must be 'Q,L,V' with three ints, got {s!r}") from None
  if min(q, l, v) < 1:
    raise ConfigError("qlv", f"Q, L and V must be >= 1, got {s!r}")
  return q, l, v


def _model(cfg, vocab: int, T_len: int) -> models.LlamaLM:
  return models.LlamaLM(vocab=vocab, hidden=cfg.dfa_hidden, heads=cfg.dfa_heads, layers=cfg.dfa_layers,
                        mlp_hidden=cfg.dfa_mlp_hidden, positions=cfg.dfa_positions, max_len=T_len)


def masks(Q: int, L: int, V: int):
  """Boolean masks over the T-1 next-token targets (target t+1 predicted at t):
  ``hist`` (every history token) and ``state`` (the looked-up states s^i)."""
  T_len = T.dfa_length(Q, V, L)
  h0 = T.dfa_history_start(Q, V, L)
  tgt = np.arange(1, T_len)
  hist = tgt >= h0
  state = hist & ((tgt - h0) % 5 == 3)
  return jnp.asarray(hist), jnp.asarray(state)


def experiment(cfg) -> Iterative:
  """The ``mhla_dfa`` factory (one static group per ``qlv`` point)."""
  Q, L, V = parse_qlv(cfg.qlv)
  for f in ("n_train", "n_eval", "batch", "dfa_hidden", "dfa_heads", "dfa_layers", "dfa_mlp_hidden"):
    check(isinstance(cfg[f], int) and cfg[f] >= 1, f, f"must be an int >= 1, got {cfg[f]!r}")
  check(cfg.dfa_hidden % cfg.dfa_heads == 0, "dfa_heads", f"must divide dfa_hidden = {cfg.dfa_hidden}")
  check((cfg.dfa_hidden // cfg.dfa_heads) % 2 == 0 or cfg.dfa_positions != "rope", "dfa_heads",
        "rotary positions need an even head dimension dfa_hidden / dfa_heads")
  check_choice(cfg, "dfa_positions", ("rope", "learned"))
  check_choice(cfg, "dfa_table_order", ("shuffled", "sorted"))
  check_positive(cfg, "lr")
  check_positive(cfg, "weight_decay", strict=False)
  check(0 < cfg.acc_target <= 1, "acc_target", f"must be in (0, 1], got {cfg.acc_target!r}")
  vocab = T.dfa_vocab(Q, V)
  T_len = T.dfa_length(Q, V, L)
  model = _model(cfg, vocab, T_len)
  hist_mask, state_mask = masks(Q, L, V)
  N, Ne, B, order = cfg.n_train, cfg.n_eval, cfg.batch, cfg.dfa_table_order

  def make_data(key, hp):
    toks = T.dfa_data(key, N + Ne, Q, V, L, order)
    return {"train": toks[:N], "eval": toks[N:]}

  def opt(hp):
    return optax.adamw(hp["lr"], weight_decay=hp["weight_decay"])

  def logits_fn(params, toks):
    return jax.vmap(lambda t: model.apply(params, t[:-1]))(toks)  # (B, T-1, vocab)

  def ce(params, toks):
    lg = logits_fn(params, toks)
    nll = optax.softmax_cross_entropy_with_integer_labels(lg, toks[:, 1:])
    return jnp.sum(nll * hist_mask[None, :]) / (toks.shape[0] * jnp.sum(hist_mask)), lg

  def init(key, hp, data):
    params = model.init(prng.stream(key, prng.INIT), jnp.zeros((T_len - 1,), jnp.int32))
    return {"params": params, "opt": opt(hp).init(params), "step": jnp.zeros((), jnp.int32),
            "key": prng.stream(key, prng.NOISE)}

  def step(state, hp, data):
    idx = jax.random.randint(jax.random.fold_in(state["key"], state["step"]), (B,), 0, N)
    (loss, _), g = jax.value_and_grad(ce, has_aux=True)(state["params"], data["train"][idx])
    upd, o = opt(hp).update(g, state["opt"], state["params"])
    return ({**state, "params": optax.apply_updates(state["params"], upd), "opt": o, "step": state["step"] + 1},
            {"loss": loss})

  def evaluate(state, hp, data):
    loss, lg = ce(state["params"], data["eval"])
    hit = (jnp.argmax(lg, axis=-1) == data["eval"][:, 1:])
    acc = jnp.sum(hit * hist_mask[None, :]) / (Ne * jnp.sum(hist_mask))
    acc_state = jnp.sum(hit * state_mask[None, :]) / (Ne * jnp.sum(state_mask))
    return {"acc": acc, "acc_state": acc_state, "eval_loss": loss}

  return Iterative(init=init, step=step, evaluate=evaluate, make_data=make_data,
                   hparams=("lr", "weight_decay"), summarize=summarize, summarize_logs=summarize_logs,
                   figures=figures,
                   plot_metrics=("loss", "acc"), log_x=False)


def summarize(cfg, runs):
  """Final held-out accuracy medians per point (tokens-to-target: see :func:`summarize_logs`)."""
  out: dict = {}
  for r in runs:
    if r["status"] == "ok":
      p = out.setdefault(str(r.get("qlv", cfg.qlv)), {"acc": [], "acc_state": []})
      p["acc"].append(r["final"]["acc"])
      p["acc_state"].append(r["final"]["acc_state"])
  return {"final_acc_median": {k: {m: float(np.median(v)) for m, v in d.items()} for k, d in out.items()}}


def tokens_to_target(cfg, logs) -> dict:
  """Per point ``"Q,L,V"``: the sequence length, the training tokens (and examples)
  seen at the first logged step with held-out ``acc >= acc_target`` per seed
  (None: never), and their median (never = +inf; an infinite median is None)."""
  out: dict = {}
  for s, ids in logs.settings().items():
    c = dict(s)
    qlv = str(c.get("qlv", cfg.qlv))
    Q, L, V = parse_qlv(qlv)
    T_len = T.dfa_length(Q, V, L)
    per_seed = []
    for rid in ids:
      steps, acc = logs.curve(rid, "acc")
      hit = steps[np.nan_to_num(acc, nan=0.0) >= cfg.acc_target]
      per_seed.append(int(hit[0]) if len(hit) else None)
    ex = [None if t is None else t * cfg.batch for t in per_seed]
    tok = [None if e is None else e * T_len for e in ex]
    med = float(np.median([np.inf if t is None else t for t in tok])) if tok else np.inf
    out[qlv] = {"Q": Q, "L": L, "V": V, "seq_len": T_len, "steps_per_seed": per_seed, "examples_per_seed": ex,
                "tokens_per_seed": tok, "tokens_median": None if not np.isfinite(med) else med}
  return out


def summarize_logs(cfg, logs) -> dict:
  """The engine's ``summarize_logs`` hook: :func:`tokens_to_target`, the target
  and the token budget per point."""
  ttt = tokens_to_target(cfg, logs)
  return {"tokens_to_target": ttt, "acc_target": cfg.acc_target,
          "token_budget_per_point": {k: cfg.steps * cfg.batch * v["seq_len"] for k, v in ttt.items()}}


def figures(cfg, logs, outdir):
  """fig4_dfa.png (tokens to ``acc_target`` against Q, L and V around the base point,
  per seed and median; never-reached seeds drawn as open markers at the budget)
  and dfa_accuracy.png (held-out accuracy curves)."""
  import matplotlib.pyplot as plt
  from attnlab.engine import plotting
  if not logs.settings():
    return []
  ttt = tokens_to_target(cfg, logs)
  base = tuple(int(x) for x in str(cfg.dfa_base).split(","))
  figs = []
  fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
  for ax, (axis, name) in zip(axes, enumerate(("Q (states)", "L (word length)", "V (letters)"))):
    pts = sorted((v for v in ttt.values()
                  if all(x == b for j, (x, b) in enumerate(zip((v["Q"], v["L"], v["V"]), base)) if j != axis)),
                 key=lambda v: (v["Q"], v["L"], v["V"])[axis])
    xs = [(v["Q"], v["L"], v["V"])[axis] for v in pts]
    for x, v in zip(xs, pts):
      budget = cfg.steps * cfg.batch * v["seq_len"]
      for t in v["tokens_per_seed"]:
        ax.plot(x, t if t is not None else budget, "o" if t is not None else "x", color="C0", alpha=0.6)
    med = [v["tokens_median"] for v in pts]
    ax.plot([x for x, m in zip(xs, med) if m is not None], [m for m in med if m is not None], "-", color="C0",
            label="median over seeds")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(name)
    ax.set_title(f"others at {cfg.dfa_base}", fontsize=8)
  axes[0].set_ylabel(f"training tokens to {cfg.acc_target:.0%} acc (x: not reached)")
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  figs.append(plotting.savefig(fig, f"{outdir}/fig4_dfa.png"))
  fig, ax = plt.subplots(figsize=(5, 3.4))
  for i, (s, ids) in enumerate(logs.settings().items()):
    steps, Y = logs.curves(ids, "acc")
    if len(steps):
      plotting.band(ax, steps, Y, label=str(dict(s).get("qlv", cfg.qlv)), color=f"C{i % 10}")
  ax.axhline(cfg.acc_target, color="k", ls="--", lw=1)
  ax.set_xlabel("step")
  ax.set_ylabel("held-out next-token accuracy (history)")
  ax.legend(fontsize=6, title="Q,L,V", title_fontsize=6)
  fig.tight_layout()
  figs.append(plotting.savefig(fig, f"{outdir}/dfa_accuracy.png"))
  return figs
