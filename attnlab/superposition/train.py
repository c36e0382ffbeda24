"""Online training of a student on fresh sparse batches (pure functions).

One run's state (no leading run axis; the engine vmaps over runs)::

  {"params": {...},          # see models.init_params
   "opt":    adam moments or (),
   "key":    uint32[2],      # NOISE stream: one fresh batch per step
   "eval_key": uint32[2],    # DATA stream: the fixed evaluation set of the seed
   "step":   int32}

Hyperparameters ``hp`` (all traced 0-d arrays): ``lr``, ``freq_exp`` (a),
``imp_exp`` (b), ``sigma0``, ``bias_init``, ``bias_lr_scale``,
``bias_freeze_steps``, ``weight_decay``. Static choices live in :class:`Spec`.

Update rule, per parameter leaf ``P`` with gradient ``g`` of the batch loss:

* ``sgd``:  ``P <- P - lr_P (g + wd P)``  (L2 on the weights, never on ``c``);
* ``adam``: ``P <- P - lr_P (adam(g) + wd P)`` (decoupled, AdamW-style; ``wd``
  may be negative, as in the sibling code);
* ``lr_P = lr`` for weights and ``lr * bias_lr_scale * [step >= bias_freeze_steps]``
  for the bias ``c``. The learning rate is constant.
"""
from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import optax

from attnlab.core import prng
from attnlab.superposition import data as sdata
from attnlab.superposition import models

HPARAMS = ("lr", "freq_exp", "imp_exp", "sigma0", "bias_init", "bias_lr_scale", "bias_freeze_steps",
           "weight_decay")
OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class Spec:
  """Static (shape / control-flow) choices of a training run."""
  n: int
  k: int
  student: str = "tied_relu"
  optimizer: str = "sgd"
  batch: int = 1024
  importance_mode: str = "teacher_scale"
  p_norm: str = "sum1"
  reduction: str = "sum"
  eval_size: int = 32768
  eval_chunk: int = 4096
  eval_mode: str = "auto"  # 'population' for linear students, Monte Carlo otherwise
  rate_bound: float = 3.0  # an upper bound on Q = sum_i -log(1 - p_i) over the runs (data.sample_events);
                           # 3.0 covers sum1 up to a ~ 4.5; the factories set it from the swept freq_exp
  n_probes: int = 16       # features whose s_i / y_i is logged (log-spaced indices)
  init_dist: str = "gaussian"  # models.INIT_DISTS; the spec's W_ij ~ N(0, sigma0^2) is 'gaussian'

  @property
  def population_eval(self) -> bool:
    if self.eval_mode == "auto":
      return self.student in models.LINEAR
    return self.eval_mode == "population"

  @property
  def train_events(self) -> int:
    """Static event-list length of a training batch (overflow probability < 1e-9)."""
    return sdata.event_capacity(self.batch, self.rate_bound)

  @property
  def eval_events(self) -> int:
    return sdata.event_capacity(self.eval_chunk, self.rate_bound)

  def probes(self) -> list[int]:
    """0-based feature indices of the logged probes (log-spaced, unique)."""
    import numpy as np
    idx = np.unique(np.round(np.logspace(0, np.log10(self.n), self.n_probes)).astype(int)) - 1
    return [int(i) for i in idx]


def _adam():
  return optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)


def _features(hp, spec: Spec):
  p = sdata.feature_probs(spec.n, hp["freq_exp"], spec.p_norm)
  imp = sdata.importance(spec.n, hp["imp_exp"])
  return p, imp


def init_state(key: jax.Array, hp: dict, spec: Spec) -> dict:
  """The initial state of one run from its run key (INIT, DATA and NOISE streams)."""
  params = models.init_params(prng.stream(key, prng.INIT), spec.student, spec.n, spec.k, hp["sigma0"],
                              hp["bias_init"], init_dist=spec.init_dist)
  opt = _adam().init(params) if spec.optimizer == "adam" else ()
  return {"params": params, "opt": opt, "key": prng.stream(key, prng.NOISE),
          "eval_key": prng.stream(key, prng.DATA), "step": jnp.zeros((), jnp.int32)}


def train_step(state: dict, hp: dict, spec: Spec) -> tuple[dict, dict]:
  """One online step on a fresh batch. Metrics: ``batch_loss`` (before the update)."""
  p, imp = _features(hp, spec)
  key, sub = jax.random.split(state["key"])
  ev = sdata.sample_events(sub, p, spec.batch, spec.train_events)
  params = state["params"]
  loss, g = jax.value_and_grad(models.batch_loss_sparse)(params, ev, imp, spec.student,
                                                         spec.importance_mode, spec.reduction)
  if spec.optimizer == "adam":
    d, opt = _adam().update(g, state["opt"], params)
  else:
    d, opt = g, state["opt"]
  lr = hp["lr"]
  bias_on = (state["step"] >= hp["bias_freeze_steps"]).astype(lr.dtype)
  new = {}
  for name, P in params.items():
    if name == "c":
      new[name] = P - lr * hp["bias_lr_scale"] * bias_on * d[name]
    else:
      new[name] = P - lr * (d[name] + hp["weight_decay"] * P)
  state = {"params": new, "opt": opt, "key": key, "eval_key": state["eval_key"], "step": state["step"] + 1}
  return state, {"batch_loss": loss}


def eval_loss(params: dict, eval_key: jax.Array, hp: dict, spec: Spec) -> jax.Array:
  """The loss used for fits: exact population loss (linear students) or the MC loss
  on the seed's fixed evaluation set (``eval_size`` samples, regenerated from
  ``eval_key`` in chunks of ``eval_chunk``, so it never sits in memory)."""
  p, imp = _features(hp, spec)
  if spec.population_eval:
    M = models.effective_matrix(params, spec.student)
    return models.population_loss_linear(M, p, imp, spec.importance_mode, spec.reduction)
  n_chunks = spec.eval_size // spec.eval_chunk

  def body(acc, i):
    ev = sdata.sample_events(jax.random.fold_in(eval_key, i), p, spec.eval_chunk, spec.eval_events)
    return acc + models.batch_loss_sparse(params, ev, imp, spec.student, spec.importance_mode,
                                          spec.reduction), None

  total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), jnp.arange(n_chunks))
  return total / n_chunks


def evaluate(state: dict, hp: dict, spec: Spec) -> dict:
  """Metrics at logged steps: ``loss``, the superposition diagnostics, and
  ``s_i / y_i`` at the probe features (``frac_<i>``, i 1-based)."""
  params = state["params"]
  p, imp = _features(hp, spec)
  y_scale, _ = sdata.targets_and_weights(imp, spec.importance_mode)
  out = {"loss": eval_loss(params, state["eval_key"], hp, spec)}
  out.update(models.diagnostics(params, spec.student, y_scale))
  s = models.effective_diag(params, spec.student)
  for i in spec.probes():
    out[f"frac_{i + 1}"] = s[i] / y_scale[i]
  return out


def simulate(key: jax.Array, hp: dict, spec: Spec, eval_mask) -> tuple[dict, dict]:
  """Train one run for ``len(eval_mask)`` steps in one ``lax.scan`` (tests, benchmark).

  ``eval_mask: bool[steps]`` (a NumPy constant, so the ``lax.cond`` predicate is
  never batched, also under ``vmap``) marks the steps after which the loss
  and ``s_i`` are evaluated. Returns ``(final state, {"loss0": L(0),
  "loss": [steps], "s": [steps, N]})`` with zeros at steps not evaluated.
  Configs run through the engine instead, which does the same per chunk.
  """
  state = init_state(key, hp, spec)
  zeros = (jnp.zeros((), jnp.float32), jnp.zeros((spec.n,), jnp.float32))

  def measure(st):
    return eval_loss(st["params"], st["eval_key"], hp, spec), models.effective_diag(st["params"], spec.student)

  def body(st, do_eval):
    st, _ = train_step(st, hp, spec)
    out = jax.lax.cond(do_eval, measure, lambda _: zeros, st)
    return st, out

  loss0 = measure(state)[0]
  state, (loss, s) = jax.lax.scan(body, state, jnp.asarray(eval_mask))
  return state, {"loss0": loss0, "loss": loss, "s": s}
