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


# --- Fig. 4: a small Llama-style language model (App. G.4) ----------------------


def rotary(x: jax.Array, base: float = 10000.0) -> jax.Array:
  """Rotary position embedding of x: (n, dh) (rows are positions, dh even):
  coordinate pairs (i, i + dh/2) are rotated by the angle t * base^(-2i/dh)."""
  n, dh = x.shape
  half = dh // 2
  freqs = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  ang = jnp.arange(n, dtype=jnp.float32)[:, None] * freqs[None, :]
  cos, sin = jnp.cos(ang).astype(x.dtype), jnp.sin(ang).astype(x.dtype)
  x1, x2 = x[:, :half], x[:, half:]
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


class LlamaLM(nn.Module):
  """A small Llama-style decoder: token embedding, ``layers`` pre-norm blocks of
  causal multi-head softmax attention (the shared
  :func:`attnlab.core.attention.attend`, scores / sqrt(dh)) with rotary or
  learned absolute positions, and a SwiGLU MLP (hidden ``mlp_hidden``); RMSNorm
  everywhere, no biases, a final RMSNorm and an untied LM head.

  Input tokens: (n,) int; output logits: (n, vocab), row t predicting token t+1.
  [reconstructed: the paper's model is "the Llama variant, 4 layers, 16 heads,
  hidden size 2048"; the sizes here are config fields.]
  """

  vocab: int
  hidden: int = 64
  heads: int = 4
  layers: int = 2
  mlp_hidden: int = 128
  positions: str = "rope"  # rope | learned
  max_len: int = 512

  @nn.compact
  def __call__(self, tokens):
    n = tokens.shape[0]
    x = nn.Embed(self.vocab, self.hidden, name="embed")(tokens)  # (n, hidden)
    if self.positions == "learned":
      pos = self.param("pos", nn.initializers.normal(0.02), (self.max_len, self.hidden))
      x = x + pos[:n]
    dh = self.hidden // self.heads
    mask = causal_mask(n)
    dense = lambda f, name: nn.Dense(f, use_bias=False, name=name)
    for i in range(self.layers):
      h = nn.RMSNorm(name=f"norm_attn_{i}")(x)
      q, k, v = (dense(self.hidden, f"{w}_{i}")(h).reshape(n, self.heads, dh).transpose(1, 0, 2)
                 for w in ("wq", "wk", "wv"))  # (heads, n, dh)
      if self.positions == "rope":
        q, k = jax.vmap(rotary)(q), jax.vmap(rotary)(k)
      o = jax.vmap(lambda q, k, v: attend(q.T, k.T, v.T, "softmax", mask, math.sqrt(dh)))(q, k, v)  # (heads, dh, n)
      x = x + dense(self.hidden, f"wo_{i}")(jnp.transpose(o, (2, 0, 1)).reshape(n, self.hidden))
      h = nn.RMSNorm(name=f"norm_mlp_{i}")(x)
      g = dense(self.mlp_hidden, f"w_gate_{i}")(h)
      u = dense(self.mlp_hidden, f"w_up_{i}")(h)
      x = x + dense(self.hidden, f"w_down_{i}")(nn.silu(g) * u)
    x = nn.RMSNorm(name="norm_f")(x)
    return dense(self.vocab, "lm_head")(x)
