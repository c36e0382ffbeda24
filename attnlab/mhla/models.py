"""Trainable models for the MHLA experiments (spec §2.3, §9.A4).

All models map a batch of sequences Zs: (B, d, n) (tokens are columns) to the
prediction at the last token, (B, d_out). Parameters are plain pytrees so the
trainers vmap over runs without any flax RNG plumbing.

* ``mhla``: single-layer MHLA with H heads, ``V: (H, d_out, d)``,
  ``Q: (H, d, d)`` (the shared forward pass of
  :mod:`attnlab.core.linear_attention`, ``mode="last"``).
* ``stack``: L single-head linear-attention layers composed as
  ``Z <- Z + MHLA_l(Z)`` (causal; ``residual=False`` drops the ``Z +``) for
  l < L; the prediction is the last layer's attention output at the last
  position (``readout="attn"``) or that plus the residual stream's last token
  (``readout="residual_stream"``; its first d_out coordinates). [reconstructed]
* ``tf``: a small pre-LN GPT-style softmax Transformer (flax linen): a linear
  embedding d -> d_model, ``layers`` blocks of causal multi-head softmax
  attention (the shared :func:`attnlab.core.attention.attend`) and a GELU MLP of
  width ``mlp_ratio * d_model``, a final LayerNorm and a linear readout of the
  last token to d_out. [reconstructed: our choice, spec §9.A4]
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attnlab.core.attention import attend, causal_mask
from attnlab.core.linear_attention import init_mhla, mhla

MODEL_KINDS = ("mhla", "stack", "tf")


def parse_model(name: str) -> tuple[str, int]:
  """``"mhla:16"`` -> ("mhla", 16 heads); ``"stack:4"`` -> ("stack", 4 layers); ``"tf"`` -> ("tf", 0)."""
  kind, _, num = name.partition(":")
  if kind not in MODEL_KINDS:
    raise ValueError(f"unknown model kind {kind!r} in {name!r}; use mhla:H, stack:L or tf")
  if kind == "tf":
    if num:
      raise ValueError(f"model 'tf' takes no count, got {name!r}")
    return kind, 0
  if not num.isdigit() or int(num) < 1:
    raise ValueError(f"model {name!r} needs a positive count, e.g. {kind}:4")
  return kind, int(num)


class TinyTransformer(nn.Module):
  """Pre-LN softmax Transformer; input Z: (d, n) -> (d_out,) at the last token."""

  d_model: int = 64
  heads: int = 4
  mlp_ratio: int = 4
  layers: int = 1
  d_out: int = 1
  norm: str = "pre_ln"

  @nn.compact
  def __call__(self, Z):
    d, n = Z.shape
    x = nn.Dense(self.d_model, name="embed")(Z.T)  # (n, d_model)
    dh = self.d_model // self.heads
    mask = causal_mask(n)
    for i in range(self.layers):
      h = nn.LayerNorm(name=f"ln_attn_{i}")(x) if self.norm == "pre_ln" else x
      qkv = nn.Dense(3 * self.d_model, name=f"qkv_{i}")(h).reshape(n, 3, self.heads, dh)
      q, k, v = (jnp.transpose(qkv[:, j], (1, 2, 0)) for j in range(3))  # (heads, dh, n)
      o = jax.vmap(lambda q, k, v: attend(q, k, v, "softmax", mask, math.sqrt(dh)))(q, k, v)
      x = x + nn.Dense(self.d_model, name=f"proj_{i}")(jnp.transpose(o, (2, 0, 1)).reshape(n, -1))
      if self.norm == "post_ln":
        x = nn.LayerNorm(name=f"ln_attn_{i}")(x)
      h = nn.LayerNorm(name=f"ln_mlp_{i}")(x) if self.norm == "pre_ln" else x
      h = nn.Dense(self.mlp_ratio * self.d_model, name=f"mlp_in_{i}")(h)
      x = x + nn.Dense(self.d_model, name=f"mlp_out_{i}")(nn.gelu(h))
      if self.norm == "post_ln":
        x = nn.LayerNorm(name=f"ln_mlp_{i}")(x)
    x = nn.LayerNorm(name="ln_f")(x[-1])
    return nn.Dense(self.d_out, name="readout")(x)


def stacked_forward(layers, Z: jax.Array, residual: bool = True, readout: str = "attn") -> jax.Array:
  """Stacked single-head linear attention on one sequence Z: (d, n) -> (d_out,).

  ``layers``: a tuple of (V_l, Q_l); V_l: (1, d, d) for l < L, V_L: (1, d_out, d);
  Q_l: (1, d, d).
  """
  for V, Q in layers[:-1]:
    A = mhla(V, Q, Z, "causal")
    Z = Z + A if residual else A
  V, Q = layers[-1]
  out = mhla(V, Q, Z, "last")
  if readout == "residual_stream":
    out = out + Z[: out.shape[0], -1]
  return out


def init_model(key: jax.Array, name: str, d: int, d_out: int, n: int, std, *, residual=True, readout="attn",
               tf_d_model=64, tf_heads=4, tf_mlp_ratio=4, tf_layers=1, tf_norm="pre_ln") -> Any:
  """Initial parameters of model ``name`` (see :func:`parse_model`).

  MHLA and stacked weights are N(0, std^2) (std may be traced); the Transformer
  uses flax's default initialisers.
  """
  kind, num = parse_model(name)
  if kind == "mhla":
    return init_mhla(key, num, d, d_out, std)
  if kind == "stack":
    keys = jax.random.split(key, num)
    return tuple(init_mhla(keys[l], 1, d, d if l < num - 1 else d_out, std) for l in range(num))
  model = TinyTransformer(tf_d_model, tf_heads, tf_mlp_ratio, tf_layers, d_out, tf_norm)
  return model.init(key, jnp.zeros((d, n), jnp.float32))


def apply_model(params, Zs: jax.Array, name: str, *, residual=True, readout="attn", tf_d_model=64,
                tf_heads=4, tf_mlp_ratio=4, tf_layers=1, tf_norm="pre_ln") -> jax.Array:
  """Predictions at the last token for Zs: (B, d, n) -> (B, d_out)."""
  kind, _ = parse_model(name)
  if kind == "mhla":
    V, Q = params
    return jax.vmap(lambda Z: mhla(V, Q, Z, "last"))(Zs)
  if kind == "stack":
    return jax.vmap(lambda Z: stacked_forward(params, Z, residual, readout))(Zs)
  d_out = params["params"]["readout"]["kernel"].shape[1]
  model = TinyTransformer(tf_d_model, tf_heads, tf_mlp_ratio, tf_layers, d_out, tf_norm)
  return jax.vmap(lambda Z: model.apply(params, Z))(Zs)
