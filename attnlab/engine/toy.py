"""A toy experiment for engine tests and benchmarks: gradient descent on a
random diagonal quadratic. It knows nothing about attention.

loss(x) = 0.5 * sum_i a_i x_i^2 with a_i ~ U[0.5, 1.5] (DATA stream) and
x_0 ~ N(0, I) (INIT stream), x: (dim,). GD with step size ``lr`` diverges
(to inf, then NaN) when lr > 2 / max(a), which the engine must mark as
diverged without stopping the other runs.

``toy:oneshot`` computes the exact minimiser distance after ``steps`` GD steps
in closed form, a one-shot analogue.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from attnlab.core import prng
from attnlab.engine.config import base_config, check_positive
from attnlab.engine.experiment import Iterative, OneShot


def make_data(key, hp, dim):
  return {"a": jax.random.uniform(key, (dim,), minval=0.5, maxval=1.5)}


def loss(x, a):
  return 0.5 * jnp.sum(a * x ** 2)


def experiment(cfg, step_wrapper=lambda f: f) -> Iterative:
  check_positive(cfg, "dim", "lr")
  dim = cfg.dim

  def init(key, hp, data):
    return {"x": jax.random.normal(prng.stream(key, prng.INIT), (dim,))}

  @step_wrapper
  def step(state, hp, data):
    x = state["x"] - hp["lr"] * jax.grad(loss)(state["x"], data["a"])
    return {"x": x}, {"loss": loss(x, data["a"])}

  def evaluate(state, hp, data):
    return {"loss": loss(state["x"], data["a"])}

  return Iterative(init=init, step=step, evaluate=evaluate, summarize_logs=halving_steps,
                   make_data=lambda k, hp: make_data(k, hp, dim), hparams=("lr",))


def halving_steps(cfg, logs) -> dict:
  """``summarize_logs`` hook: per run, the first logged step whose loss is at
  most half the step-0 loss (None if never), from the logged curves."""
  out = {}
  for r in logs.runs:
    steps, loss_values = logs.curve(r["run_id"], "loss")
    below = [int(s) for s, v in zip(steps, loss_values) if v <= 0.5 * loss_values[0]]
    out[r["run_id"]] = below[0] if below else None
  return {"first_step_loss_halved": out}


def oneshot(cfg) -> OneShot:
  check_positive(cfg, "dim", "lr")
  dim, steps = cfg.dim, cfg.steps

  def compute(key, hp, data):
    x0 = jax.random.normal(prng.stream(key, prng.INIT), (dim,))
    x = x0 * (1 - hp["lr"] * data["a"]) ** steps
    return {"loss": loss(x, data["a"]), "x": x}

  return OneShot(compute=compute, make_data=lambda k, hp: make_data(k, hp, dim), hparams=("lr",))


def get_config(kind: str = "iterative"):
  """A tiny toy config (used by tests and scripts/bench_engine.py)."""
  return base_config(f"attnlab.engine.toy:{'experiment' if kind == 'iterative' else 'oneshot'}",
                     seeds=2, steps=30, log_every=5, chunk_steps=10, ckpt_every=1, dim=3, lr=0.1,
                     sweep={"lr": (0.1, 0.5)})
