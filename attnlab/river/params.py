"""Parameter pytrees of the river (spec §7.1).

All array shapes are for one layer; a *stacked* parameter set has an extra
leading axis (one entry per layer / control interval) on every array leaf and
is consumed by :func:`attnlab.river.integrators.integrate` with ``lax.scan``.
Static choices are ``pytree_node=False`` fields (they survive ``tree_map``,
``vmap`` and ``scan`` unchanged and never become tracers).

* :class:`AttnParams`: ``wq, wk, wv``: (H, d, d_h); ``wo``: (H, d_h, d);
  optional biases ``bq, bk, bv``: (H, d_h) and ``bo``: (d,) (``None`` when
  absent, the paper form; spec P7); ``scale``: (H,) per-head temperature
  multiplying the scores (default 1/sqrt(d_h); spec P8); static ``causal``.
* :class:`FFNParams`: ``w1`` (d, d_ff), ``b1`` (d_ff,), ``w2`` (d_ff, d),
  ``b2`` (d,); static ``act`` in ``ACTIVATIONS``.
* :class:`NormParams`: static ``mode``: ``"projection"`` (paper-faithful,
  scalar ``sigma1`` = target mean, ``sigma2`` = target std: the projection
  onto S1(sigma1, sigma2), Theorem 3.1) or ``"affine"`` (standard LayerNorm:
  ``sigma1`` = beta (d,), ``sigma2`` = gamma (d,); *not* a projection, spec
  P5). ``eps`` is a static float (0.0 for projections and manifold tests).
* :class:`BlockParams`: ``attn, ln1, ffn, ln2``. Post-LN block:
  ``u -> LN2(u' + F(u'))`` with ``u' = LN1(u + A(u))``; pre-LN block:
  ``u -> u' + F(LN2 u')`` with ``u' = u + A(LN1 u)``.
"""
from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = ("relu", "gelu", "tanh", "silu")
NORM_MODES = ("projection", "affine")


@flax.struct.dataclass
class AttnParams:
  wq: jax.Array
  wk: jax.Array
  wv: jax.Array
  wo: jax.Array
  scale: jax.Array
  bq: Optional[jax.Array] = None
  bk: Optional[jax.Array] = None
  bv: Optional[jax.Array] = None
  bo: Optional[jax.Array] = None
  causal: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def heads(self) -> int:
    return self.wq.shape[-3]


@flax.struct.dataclass
class FFNParams:
  w1: jax.Array
  b1: jax.Array
  w2: jax.Array
  b2: jax.Array
  act: str = flax.struct.field(pytree_node=False, default="relu")


@flax.struct.dataclass
class NormParams:
  sigma1: jax.Array
  sigma2: jax.Array
  eps: float = flax.struct.field(pytree_node=False, default=0.0)
  mode: str = flax.struct.field(pytree_node=False, default="projection")

  @property
  def gamma(self) -> jax.Array:
    """Per-feature gain (affine mode); the scalar sigma2 in projection mode."""
    return self.sigma2

  @property
  def beta(self) -> jax.Array:
    """Per-feature shift (affine mode); the scalar sigma1 in projection mode."""
    return self.sigma1


@flax.struct.dataclass
class BlockParams:
  attn: AttnParams
  ln1: NormParams
  ffn: FFNParams
  ln2: NormParams


def absorbed_value(p: AttnParams) -> jax.Array:
  """The paper's per-head value maps W~V_m = Wv_m Wo_m: (H, d, d) (rank <= d_h)."""
  return jnp.einsum("hde,hef->hdf", p.wv, p.wo, precision=jax.lax.Precision.HIGHEST)


def scalar_norm(sigma1=0.0, sigma2=1.0, eps: float = 0.0, dtype=None) -> NormParams:
  """A paper-form (projection) LayerNorm onto S1(sigma1, sigma2)."""
  return NormParams(jnp.asarray(sigma1, dtype), jnp.asarray(sigma2, dtype), eps=float(eps),
                    mode="projection")


def init_block(key: jax.Array, d: int, heads: int, d_ff: int, *, act: str = "gelu",
               use_bias: bool = False, causal: bool = False, norm_mode: str = "projection",
               eps: float = 0.0, ffn_bias_scale: float = 0.1, dtype=None) -> BlockParams:
  """Random block in the spec's Appendix A.1 scaling.

  ``key``: a JAX PRNG key, or a ``numpy.random.Generator`` (host draw).

  ``wq, wk, wv ~ N(0, 1/d)``, ``wo ~ N(0, 1/d_h)``, ``w1 ~ N(0, 1/d)``,
  ``w2 ~ N(0, 1/d_ff)``, ``b1, b2 ~ ffn_bias_scale * N(0, 1)``; attention
  biases (if ``use_bias``) ``~ 0.1 N(0, 1)``. With ``heads = 1`` and
  ``wo = I``-like scaling this is the A.1 setup up to the random generator
  (JAX here, NumPy there). ``norm_mode="affine"`` draws gamma = 1 + 0.1 N,
  beta = 0.1 N; ``"projection"`` uses sigma1 = 0, sigma2 = 1.
  """
  if d % heads:
    raise ValueError(f"d={d} is not divisible by heads={heads}")
  if act not in ACTIVATIONS:
    raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
  dtype = dtype or jnp.zeros(()).dtype
  dh = d // heads
  shapes = {"wq": (heads, d, dh), "wk": (heads, d, dh), "wv": (heads, d, dh), "wo": (heads, dh, d),
            "w1": (d, d_ff), "b1": (d_ff,), "w2": (d_ff, d), "b2": (d,), "bq": (heads, dh),
            "bk": (heads, dh), "bv": (heads, dh), "bo": (d,), "g1": (d,), "s1": (d,), "g2": (d,),
            "s2": (d,)}
  sizes = [int(np.prod(v)) for v in shapes.values()]
  # one normal draw sliced into pieces: a single threefry call compiles fast
  host = isinstance(key, np.random.Generator)  # host draw: no threefry / eager-op compiles
  flat = key.normal(size=sum(sizes)) if host else jax.random.normal(key, (sum(sizes),), dtype)
  offs = np.cumsum([0] + sizes)
  z = {k: flat[offs[i]:offs[i + 1]].reshape(v) for i, (k, v) in enumerate(shapes.items())}
  n = lambda name, s: jnp.asarray(s * z[name], dtype)
  if heads == 1 and dh == d:
    wo = jnp.asarray(np.eye(d)[None], dtype)
  else:
    wo = n("wo", dh ** -0.5)
  biases = {}
  if use_bias:
    biases = dict(bq=n("bq", 0.1), bk=n("bk", 0.1), bv=n("bv", 0.1), bo=n("bo", 0.1))
  attn = AttnParams(wq=n("wq", d ** -0.5), wk=n("wk", d ** -0.5), wv=n("wv", d ** -0.5), wo=wo,
                    scale=jnp.asarray(np.full((heads,), dh ** -0.5), dtype), causal=causal, **biases)
  ffn = FFNParams(w1=n("w1", d ** -0.5), b1=n("b1", ffn_bias_scale), w2=n("w2", d_ff ** -0.5),
                  b2=n("b2", ffn_bias_scale), act=act)
  if norm_mode == "projection":
    ln1 = scalar_norm(0.0, 1.0, eps, dtype)
    ln2 = scalar_norm(0.0, 1.0, eps, dtype)
  elif norm_mode == "affine":
    ln1 = NormParams(n("s1", 0.1), 1 + n("g1", 0.1), eps=float(eps), mode="affine")
    ln2 = NormParams(n("s2", 0.1), 1 + n("g2", 0.1), eps=float(eps), mode="affine")
  else:
    raise ValueError(f"norm_mode must be one of {NORM_MODES}, got {norm_mode!r}")
  return BlockParams(attn=attn, ln1=ln1, ffn=ffn, ln2=ln2)


def identity_block(d: int, sigma2: float = 1.0, dtype=None) -> BlockParams:
  """The R-sphere block: Wq = Wk = Wv = Wo = I (one head), scale 1/sqrt(d), no FFN.

  With LN onto S1(0, sigma2) the post-LN river of this block is exactly the
  SA model with beta = sqrt(d) * sigma2**2 (spec §2.4).
  """
  dtype = dtype or jnp.zeros(()).dtype
  eye = jnp.eye(d, dtype=dtype)[None]
  attn = AttnParams(wq=eye, wk=eye, wv=eye, wo=eye, scale=jnp.full((1,), d ** -0.5, dtype))
  z = jnp.zeros
  ffn = FFNParams(w1=z((d, 1), dtype), b1=z((1,), dtype), w2=z((1, d), dtype), b2=z((d,), dtype),
                  act="relu")
  ln = scalar_norm(0.0, sigma2, 0.0, dtype)
  return BlockParams(attn=attn, ln1=ln, ffn=ffn, ln2=ln)


def stack(blocks) -> BlockParams:
  """Stack a list of same-structure blocks along a new leading (layer) axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)


def layer(theta: BlockParams, i) -> BlockParams:
  """Entry ``i`` of a stacked parameter set."""
  return jax.tree.map(lambda x: x[i], theta)
