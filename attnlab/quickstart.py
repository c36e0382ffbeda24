"""The quickstart experiment: do extra heads help optimisation? (a small S2, Fig. 1)

A random single-head linear-attention teacher labels N sequences
(last-token prediction); multi-head linear-attention students with H heads
are trained by full-batch Adam on the last-token MSE. Heads change shapes, so
each H is a static group; the learning rate is a traced hyperparameter, so all
learning rates and seeds of one H run in one compiled program.

Conventions: Z: (d, n) per sequence (tokens are columns); the dataset is
Zs: (N, d, n), ys: (N, d_out). The forward pass is
:func:`attnlab.core.linear_attention.mhla` with ``mode="last"``, evaluated
through the sufficient statistics (Z Z^T, z_n) precomputed in ``make_data``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from attnlab.core import linear_attention as la
from attnlab.core import prng
from attnlab.engine.config import check, check_positive
from attnlab.engine.experiment import Iterative


def relative_mse(pred: jax.Array, y: jax.Array) -> jax.Array:
  """sum ||pred - y||^2 / sum ||y||^2 over the batch."""
  return jnp.sum((pred - y) ** 2) / jnp.sum(y ** 2)


def experiment(cfg) -> Iterative:
  check_positive(cfg, "d", "n_tokens", "n_train", "heads", "lr", "teacher_init_std_scale",
                 "student_init_std")
  check(cfg.d_out in (1, cfg.d), "d_out", f"must be 1 or d={cfg.d}, got {cfg.d_out}")
  d, n, N, H, d_out = cfg.d, cfg.n_tokens, cfg.n_train, cfg.heads, cfg.d_out

  def make_data(key, hp):
    k_teacher, k_z = jax.random.split(key)
    V, Q = la.init_mhla(k_teacher, 1, d, d_out, std=cfg.teacher_init_std_scale / jnp.sqrt(d))
    Zs = prng.normal(k_z, (N, d, n)) / jnp.sqrt(n)
    ys = la.mhla_batch(V, Q, Zs, "last")
    # The last-token loss sees a sequence only through (Z Z^T, z_n).
    return {"G": jax.vmap(la.gram)(Zs), "z": Zs[:, :, -1], "y": ys}

  def loss(params, data):
    V, Q = params
    return relative_mse(la.mhla_last_from_stats(V, Q, data["G"], data["z"]), data["y"])

  def init(key, hp, data):
    params = la.init_mhla(prng.stream(key, prng.INIT), H, d, d_out, std=cfg.student_init_std)
    return {"params": params, "opt": optax.adam(hp["lr"]).init(params)}

  def step(state, hp, data):
    value, grads = jax.value_and_grad(loss)(state["params"], data)
    updates, opt = optax.adam(hp["lr"]).update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt": opt}, {"train_rel_mse": value}

  def evaluate(state, hp, data):
    return {"rel_mse": loss(state["params"], data)}

  def summarize(cfg, runs):
    return {"final_rel_mse_median": _median_table(cfg, runs, "rel_mse")}

  return Iterative(init=init, step=step, evaluate=evaluate, make_data=make_data, hparams=("lr",),
                   summarize=summarize, plot_metrics=("rel_mse",))


def _median_table(cfg, runs, metric):
  """{"heads=H": {"lr=x": median over seeds of the final metric}}."""
  import numpy as np
  table: dict = {}
  for r in runs:
    if r["status"] != "ok":
      continue
    h, lr = r.get("heads", cfg.heads), r.get("lr", cfg.lr)
    table.setdefault(f"heads={h}", {}).setdefault(f"lr={lr:g}", []).append(r["final"][metric])
  return {h: {lr: float(np.median(v)) for lr, v in row.items()} for h, row in table.items()}
