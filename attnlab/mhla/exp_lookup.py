"""C11 (our extension, not in the paper): learn a next-state lookup table with Algorithm 1
and check rounding-exact autoregressive rollouts on held-out machines and words.

Task (:func:`attnlab.mhla.tasks.lookup_data`): a random machine δ: [Q] x [S] -> [Q]
(uniform next states) is written in the context as Q*S table tokens
[e_{(s,w)}; e_{δ(s,w)}] (random order), followed by query tokens
[e_{(s_t, w_t)}; 0] for the steps of a random word run from state 0; the label is
the next state's one-hot in the value slots. One MHLA head realises it exactly
(the Lookup primitive of Alg. 3). Embeddings are one-hot (Def. G.1).

Algorithm 1 (float64; ``solver`` default ``eigh_pinv``, the minimum-norm
minimiser, because one-hot data can be rank-deficient) is fitted on
``n_train`` samples; the certificate is reported. Rollouts (Def. C.1 with the
rounding decoder of Def. G.2): on ``n_test_machines`` held-out machines with
words of ``test_steps`` letters (longer than the training words when
``test_steps > max_steps``), the model's output is rounded,
``s_{t+1} = argmax`` over the value slots, and the next query token is built
from the rounded state and the next letter [reconstructed: the re-embedding
of the rounded output is our choice]. ``rollout_exact`` is the fraction of
(machine, word) pairs whose every step is correct.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.engine.config import check, check_choice
from attnlab.engine.experiment import OneShot
from attnlab.mhla import features as F
from attnlab.mhla import regression as R
from attnlab.mhla import tasks as T


def rollout(p, delta, word, perm, n_states, n_symbols):
  """Autoregressive rollout of the lifted model p: (D, ψ) on machine δ and word (L,).

  Returns (correct: (L,) bool per step, margin: the smallest gap between the true
  next state's output and the largest other value slot).
  """
  Q, S = n_states, n_symbols
  P = Q * S
  L = word.shape[0]
  true_states, true_next = T.run_machine(delta, word)
  # The table part, with empty query slots; queries are written as the rollout goes.
  Z0 = T.lookup_sequence(delta, true_states, word, 0, Q, S, L, perm, p.dtype)

  def step(carry, t):
    Z, s = carry
    tok = jnp.concatenate([jax.nn.one_hot(s * S + word[t], P, dtype=p.dtype), jnp.zeros((Q,), p.dtype)])
    Z = Z.at[:, P + t].set(tok)
    y = F.predict_p(p, F.features_H(Z, P + t + 1))[P:]
    nxt = jnp.argmax(y).astype(jnp.int32)
    others = jnp.where(jnp.arange(Q) == true_next[t], -jnp.inf, y)
    return (Z, nxt), (nxt == true_next[t], y[true_next[t]] - jnp.max(others))

  # The true state feeds step t only through the rollout's own predictions (s starts at 0).
  (_, _), (ok, margin) = jax.lax.scan(step, (Z0, jnp.asarray(0, jnp.int32)), jnp.arange(L))
  return ok, jnp.min(margin)


def experiment(cfg) -> OneShot:
  """The ``mhla_lookup`` factory."""
  for f in ("n_states", "n_symbols", "max_steps", "n_train", "n_test_machines", "test_steps"):
    check(isinstance(cfg[f], int) and cfg[f] >= 1, f, f"must be an int >= 1, got {cfg[f]!r}")
  check_choice(cfg, "solver", R.SOLVERS)
  Q, S, Lmax, N = cfg.n_states, cfg.n_symbols, cfg.max_steps, cfg.n_train
  D = T.lookup_dim(Q, S)
  check(D <= R.MAX_D, "n_states", f"the embedding dimension Q*S + Q = {D} must be <= {R.MAX_D}")
  M, Lt = cfg.n_test_machines, cfg.test_steps
  kw = dict(solver=cfg.solver, pinv_rtol=cfg.pinv_rtol, certificate_tol=cfg.certificate_tol,
            iters=cfg.solver_iters)

  @jax.jit
  def make_data(key, hp):
    Zs, lengths, Ys = T.lookup_data(jax.random.fold_in(key, 0), N, Q, S, Lmax, jnp.float64)
    kd, kw_, kp = jax.random.split(jax.random.fold_in(key, 1), 3)
    test = {"delta": jax.random.randint(kd, (M, Q, S), 0, Q), "word": jax.random.randint(kw_, (M, Lt), 0, S),
            "perm": jax.vmap(lambda k: jax.random.permutation(k, Q * S))(jax.random.split(kp, M))}
    return {"Z": Zs, "lengths": lengths, "Y": Ys, "test": test}

  @jax.jit
  def compute(key, hp, data):
    fit = R.fit_p(data["Z"], data["Y"], data["lengths"], **kw)
    Vt, Qt = T.lookup_teacher(Q, S, jnp.float64)
    p_true = F.p_of_params(Vt, Qt)
    te = data["test"]
    ok, margin = jax.vmap(lambda d, w, pm: rollout(fit.p, d, w, pm, Q, S))(te["delta"], te["word"], te["perm"])
    ok_true, _ = jax.vmap(lambda d, w, pm: rollout(p_true, d, w, pm, Q, S))(te["delta"], te["word"], te["perm"])
    return {"lambda_min": fit.cert.lambda_min, "lambda_max": fit.cert.lambda_max, "lambda_ratio": fit.cert.ratio,
            "null_dim": fit.cert.null_dim, "identifiable": fit.cert.identifiable,
            "psi": jnp.asarray(F.psi_dim(D)), "n_over_psi": fit.cert.n_over_psi,
            "train_rel_mse": R.rel_mse(fit.p, data["Z"], data["Y"], data["lengths"]),
            "p_distance_rel": F.p_distance(fit.p, p_true) / jnp.linalg.norm(p_true),
            "rollout_exact": jnp.mean(jnp.all(ok, axis=1)), "step_accuracy": jnp.mean(ok),
            "min_margin": jnp.min(margin), "teacher_rollout_exact": jnp.mean(jnp.all(ok_true, axis=1))}

  return OneShot(compute=compute, jit=False, x64=True, make_data=make_data, summarize=summarize)


def summarize(cfg, runs):
  ok = [r for r in runs if r["status"] == "ok"]
  keys = ("lambda_min", "lambda_ratio", "null_dim", "psi", "train_rel_mse", "p_distance_rel", "rollout_exact",
          "step_accuracy", "min_margin", "teacher_rollout_exact")
  return {k: float(np.median([r["final"][k] for r in ok])) for k in keys} if ok else {}
