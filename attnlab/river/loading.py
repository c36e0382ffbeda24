"""flax <-> river weight maps (spec §7.5) and the paper form.

Reference blocks in ``flax.linen`` (standard modules only):

* :class:`FlaxPostLN`: ``x = LN1(x + MHA(x)); x = LN2(x + Dense2(act(Dense1 x)))``.
* :class:`FlaxPreLN`:  ``x = x + MHA(LN1 x); x = x + Dense2(act(Dense1(LN2 x)))``.
* :class:`FlaxEncoder`: a stack of blocks (``nn.scan`` is avoided to keep the
  param tree plain: ``block_0, block_1, ...``), optional final LN for pre-LN.

flax conventions (checked against the installed flax 0.12.8):
``MultiHeadDotProductAttention`` has ``query/key/value`` DenseGeneral kernels
(d, H, d_h) with biases (H, d_h), ``out`` kernel (H, d_h, d) with bias (d,);
``dot_product_attention`` scales the query by 1/sqrt(d_h); ``LayerNorm`` has
``scale`` and ``bias`` of shape (d,) and ``epsilon`` (default 1e-6).

The river stores q/k/v kernels as (H, d, d_h): the map is a transpose, so the
round trip flax -> river -> flax is bit-exact (only axis permutations and
copies; no arithmetic).

Measure map (spec §3.1, P9): ``measure="unit"`` (default) is the identity;
``"unit_interval"`` (Omega = [0, 1], h_y = 1/d) relates the continuous kernels
to the matrices by W_ij = W(xi_i, y_j) h_y and an extra sqrt(h_y) in the score;
see :func:`kernels_to_matrices`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attnlab.river.params import (AttnParams, BlockParams, FFNParams, NormParams,
                                  absorbed_value, stack)

_ACTS = {"relu": nn.relu, "gelu": lambda x: nn.gelu(x, approximate=True), "tanh": jnp.tanh,
         "silu": nn.silu}


class _MHA(nn.Module):
  heads: int
  use_bias: bool
  causal: bool
  dtype: Any

  @nn.compact
  def __call__(self, x):
    mask = nn.make_causal_mask(jnp.ones(x.shape[:-1])) if self.causal else None
    return nn.MultiHeadDotProductAttention(
        num_heads=self.heads, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.dtype,
        precision=jax.lax.Precision.HIGHEST, name="mha")(x, x, mask=mask)


class FlaxBlock(nn.Module):
  """One encoder block; ``arch`` in {"postln", "preln"}. Input (N, d) or (B, N, d)."""
  d: int
  heads: int
  d_ff: int
  arch: str = "postln"
  act: str = "relu"
  use_bias: bool = False
  causal: bool = False
  eps: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    hi = jax.lax.Precision.HIGHEST
    ln = lambda name: nn.LayerNorm(epsilon=self.eps, dtype=self.dtype, param_dtype=self.dtype,
                                   use_fast_variance=False, name=name)
    dense = lambda f, name: nn.Dense(f, dtype=self.dtype, param_dtype=self.dtype, precision=hi,
                                     name=name)
    attn = _MHA(self.heads, self.use_bias, self.causal, self.dtype, name="attn")
    ffn = lambda y: dense(self.d, "ffn_out")(_ACTS[self.act](dense(self.d_ff, "ffn_in")(y)))
    if self.arch == "postln":
      x = ln("ln1")(x + attn(x))
      return ln("ln2")(x + ffn(x))
    if self.arch == "preln":
      x = x + attn(ln("ln1")(x))
      return x + ffn(ln("ln2")(x))
    raise ValueError(f"arch must be 'postln' or 'preln', got {self.arch!r}")


class FlaxEncoder(nn.Module):
  """``layers`` blocks ``block_0 ... block_{L-1}``; ``final_ln`` adds a read-out LN."""
  layers: int
  d: int
  heads: int
  d_ff: int
  arch: str = "postln"
  act: str = "relu"
  use_bias: bool = False
  causal: bool = False
  eps: float = 0.0
  final_ln: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i in range(self.layers):
      x = FlaxBlock(self.d, self.heads, self.d_ff, self.arch, self.act, self.use_bias, self.causal,
                    self.eps, self.dtype, name=f"block_{i}")(x)
    if self.final_ln:
      x = nn.LayerNorm(epsilon=self.eps, dtype=self.dtype, param_dtype=self.dtype,
                       use_fast_variance=False, name="ln_f")(x)
    return x


def from_flax_block(p: dict, *, heads: int, act: str = "relu", causal: bool = False,
                    eps: float = 0.0) -> BlockParams:
  """flax :class:`FlaxBlock` params -> :class:`BlockParams` (affine-mode LNs).

  ``scale`` of the river = 1/sqrt(d_h) (flax scales the query by it).
  """
  m = p["attn"]["mha"]
  t = lambda k: jnp.transpose(k, (1, 0, 2))  # (d, H, d_h) -> (H, d, d_h)
  dh = m["query"]["kernel"].shape[-1]
  dtype = m["query"]["kernel"].dtype
  bias = lambda name: m[name].get("bias") if "bias" in m[name] else None
  attn = AttnParams(wq=t(m["query"]["kernel"]), wk=t(m["key"]["kernel"]),
                    wv=t(m["value"]["kernel"]), wo=m["out"]["kernel"],
                    scale=jnp.full((heads,), dh ** -0.5, dtype),
                    bq=bias("query"), bk=bias("key"), bv=bias("value"), bo=bias("out"),
                    causal=causal)
  ffn = FFNParams(w1=p["ffn_in"]["kernel"], b1=p["ffn_in"]["bias"], w2=p["ffn_out"]["kernel"],
                  b2=p["ffn_out"]["bias"], act=act)
  ln = lambda q: NormParams(sigma1=q["bias"], sigma2=q["scale"], eps=float(eps), mode="affine")
  return BlockParams(attn=attn, ln1=ln(p["ln1"]), ffn=ffn, ln2=ln(p["ln2"]))


def to_flax_block(b: BlockParams) -> dict:
  """:class:`BlockParams` -> flax :class:`FlaxBlock` params (inverse of :func:`from_flax_block`).

  Projection-mode (scalar) LNs are broadcast to (d,) scale/bias.
  """
  a = b.attn
  t = lambda k: jnp.transpose(k, (1, 0, 2))
  dense = lambda k, bias: {"kernel": k} if bias is None else {"kernel": k, "bias": bias}
  mha = {"query": dense(t(a.wq), a.bq), "key": dense(t(a.wk), a.bk),
         "value": dense(t(a.wv), a.bv), "out": dense(a.wo, a.bo)}
  d = a.wq.shape[1]
  ln = lambda q: {"scale": jnp.broadcast_to(q.sigma2, (d,)), "bias": jnp.broadcast_to(q.sigma1, (d,))}
  return {"attn": {"mha": mha}, "ln1": ln(b.ln1), "ln2": ln(b.ln2),
          "ffn_in": {"kernel": b.ffn.w1, "bias": b.ffn.b1},
          "ffn_out": {"kernel": b.ffn.w2, "bias": b.ffn.b2}}


def from_flax_encoder(p: dict, layers: int, **kw) -> BlockParams:
  """Encoder params -> stacked :class:`BlockParams` (leading layer axis)."""
  return stack([from_flax_block(p[f"block_{i}"], **kw) for i in range(layers)])


def to_flax_encoder(theta: BlockParams, layers: int) -> dict:
  """Stacked :class:`BlockParams` -> encoder params (inverse of :func:`from_flax_encoder`)."""
  return {f"block_{i}": to_flax_block(jax.tree.map(lambda x: x[i], theta)) for i in range(layers)}


class PaperFormError(ValueError):
  """The block cannot be written in the paper's form (spec P5/P6)."""


@dataclasses.dataclass(frozen=True)
class PaperForm:
  """The paper's parametrisation of one block.

  ``wv_abs``: (H, d, d) absorbed value maps W~V_m = Wv_m Wo_m; ``wq, wk``:
  (H, d, d_h); ``scale``: (H,); ``sigma1_*``, ``sigma2_*``: scalar LN controls;
  ``w1p, w2p``: W_j' = W_j - I (the I + W_j reading; ``None`` unless
  d_ff = d); ``b1, b2``; ``measure``: the quadrature map.
  """
  wq: Any
  wk: Any
  wv_abs: Any
  scale: Any
  sigma1_1: Any
  sigma2_1: Any
  sigma1_2: Any
  sigma2_2: Any
  b1: Any
  b2: Any
  w1p: Any = None
  w2p: Any = None
  measure: str = "unit"


def _scalar(x, what):
  """A per-feature vector (..., d) that is constant along d -> (...) (leading layer axes kept)."""
  x = jnp.asarray(x)
  if x.ndim == 0:
    return x
  if bool(jnp.all(x == x[..., :1])):
    return x[..., 0]
  raise PaperFormError(f"{what} is per-feature (not constant); the paper form needs scalar "
                       f"sigma1/sigma2 (LN with per-feature gamma/beta is not a projection onto "
                       f"S1, spec P5)")


def to_paper_form(b: BlockParams, *, require_literal: bool = False,
                  measure: str = "unit") -> PaperForm:
  """The paper form of a block, or :class:`PaperFormError` with a clear message.

  Refuses per-feature gamma/beta, attention biases on Q/K (spec P7) and, with
  ``require_literal=True``, d_ff != d (the W_j' = W_j - I reading needs square
  W_j, spec P6).
  """
  if measure not in ("unit", "unit_interval"):
    raise PaperFormError(f"measure must be 'unit' or 'unit_interval', got {measure!r}")
  a = b.attn
  if a.bq is not None or a.bk is not None:
    raise PaperFormError("Q/K biases have no counterpart in the bilinear score of the paper "
                         "(spec P7); use use_bias=False")
  s11, s21 = _scalar(b.ln1.sigma1, "ln1 beta"), _scalar(b.ln1.sigma2, "ln1 gamma")
  s12, s22 = _scalar(b.ln2.sigma1, "ln2 beta"), _scalar(b.ln2.sigma2, "ln2 gamma")
  d, dff = b.ffn.w1.shape
  w1p = w2p = None
  if dff == d:
    eye = jnp.eye(d, dtype=b.ffn.w1.dtype)
    w1p, w2p = b.ffn.w1 - eye, b.ffn.w2 - eye
  elif require_literal:
    raise PaperFormError(f"d_ff={dff} != d={d}: the paper's FFN substeps read the weights as "
                         f"I + W_j with square W_j (spec P6); treat the FFN as one operator")
  return PaperForm(wq=a.wq, wk=a.wk, wv_abs=absorbed_value(a), scale=a.scale, sigma1_1=s11,
                   sigma2_1=s21, sigma1_2=s12, sigma2_2=s22, b1=b.ffn.b1, b2=b.ffn.b2,
                   w1p=w1p, w2p=w2p, measure=measure)


def to_projection_mode(b: BlockParams) -> BlockParams:
  """Affine (per-feature) LNs with constant gamma/beta -> scalar projection LNs (stacked ok)."""
  pf = lambda q, name: NormParams(_scalar(q.sigma1, name + " beta"), _scalar(q.sigma2, name + " gamma"),
                                  eps=q.eps, mode="projection")
  return b.replace(ln1=pf(b.ln1, "ln1"), ln2=pf(b.ln2, "ln2"))


def kernels_to_matrices(W_cont: jax.Array, n: int, measure: str = "unit") -> jax.Array:
  """Quadrature map for a sampled continuous kernel W(xi_i, y_j): (n, n) -> matrix.

  ``unit``: the sample itself (h_y = 1). ``unit_interval``: times h_y = 1/n.
  """
  if measure == "unit":
    return W_cont
  if measure == "unit_interval":
    return W_cont / n
  raise ValueError(f"measure must be 'unit' or 'unit_interval', got {measure!r}")
