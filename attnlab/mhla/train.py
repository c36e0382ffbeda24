"""Pure Adam(W) trainers for the models of :mod:`attnlab.mhla.models`.

The training set is ``data = {"Z": (N, d, n), "Y": (N, d_out), "yvar": ()}``
(drawn once by the experiment's ``make_data``, outside the vmapped trainer).
Each step draws a minibatch of indices (uniform, with replacement) from the
run's NOISE stream folded with the step counter, so no data is drawn inside the
scan. The loss is Eq. 28: mean over the batch of ‖ŷ − y‖² (summed over output
coordinates); ``rel_mse`` divides the full-training-set MSE by ``yvar``, the
mean of Σ_a (y_a − ȳ_a)² over the training set.

Learning rate and weight decay are traced (``hp["lr"]``, ``hp["weight_decay"]``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from attnlab.core import prng
from attnlab.mhla import models


def optimizer(hp) -> optax.GradientTransformation:
  """AdamW with traced lr and weight decay (spec §9.A6; decay defaults to 0)."""
  return optax.adamw(hp["lr"], weight_decay=hp["weight_decay"])


def label_var(Y: jax.Array) -> jax.Array:
  """Mean over samples of Σ_a (y_a − ȳ_a)², Y: (N, d_out)."""
  return jnp.mean(jnp.sum((Y - jnp.mean(Y, axis=0)) ** 2, axis=-1))


def mse(params, Z, Y, model_kw) -> jax.Array:
  """Mean over the batch of ‖ŷ − y‖²; Z: (B, d, n), Y: (B, d_out)."""
  pred = models.apply_model(params, Z, **model_kw)
  return jnp.mean(jnp.sum((pred - Y) ** 2, axis=-1))


def init(key, hp, data, *, model_kw, init_kw):
  """The train state: params, optimizer state, step counter and the NOISE key."""
  d, n = data["Z"].shape[1:]
  d_out = data["Y"].shape[1]
  params = models.init_model(prng.stream(key, prng.INIT), model_kw["name"], d, d_out, n,
                             hp["init_std"], **init_kw)
  return {"params": params, "opt": optimizer(hp).init(params), "step": jnp.zeros((), jnp.int32),
          "key": prng.stream(key, prng.NOISE)}


def step(state, hp, data, *, model_kw, batch: int):
  """One AdamW step on a minibatch of ``batch`` sequences (0: the full training set);
  metrics: ``loss`` (batch MSE)."""
  N = data["Z"].shape[0]
  if batch == 0:  # full batch (deterministic Adam)
    Zb, Yb = data["Z"], data["Y"]
  else:
    idx = jax.random.randint(jax.random.fold_in(state["key"], state["step"]), (batch,), 0, N)
    Zb, Yb = data["Z"][idx], data["Y"][idx]
  loss, g = jax.value_and_grad(mse)(state["params"], Zb, Yb, model_kw)
  upd, opt = optimizer(hp).update(g, state["opt"], state["params"])
  params = optax.apply_updates(state["params"], upd)
  return {**state, "params": params, "opt": opt, "step": state["step"] + 1}, {"loss": loss}


def evaluate(state, hp, data, *, model_kw, eval_chunk: int = 1024):
  """Full-training-set ``train_mse`` and ``rel_mse`` (MSE / yvar), chunked over sequences."""
  Z, Y = data["Z"], data["Y"]
  N = Z.shape[0]
  c = min(eval_chunk, N)
  nc = N // c
  Zc = Z[: nc * c].reshape((nc, c) + Z.shape[1:])
  Yc = Y[: nc * c].reshape((nc, c) + Y.shape[1:])
  sums = jax.lax.map(lambda zy: mse(state["params"], zy[0], zy[1], model_kw) * c, (Zc, Yc))
  total = jnp.sum(sums)
  if nc * c < N:
    total = total + mse(state["params"], Z[nc * c:], Y[nc * c:], model_kw) * (N - nc * c)
  m = total / N
  return {"train_mse": m, "rel_mse": m / data["yvar"]}


def make(model_kw: dict, init_kw: dict, batch: int):
  """(init, step, evaluate) closed over the static model and batch settings."""
  return (functools.partial(init, model_kw=model_kw, init_kw=init_kw),
          functools.partial(step, model_kw=model_kw, batch=batch),
          functools.partial(evaluate, model_kw=model_kw))
