"""Deep single-head self-attention networks of Henry, Marchetti & Kohn (2025).

Conventions (spec ``lightning_geometry.md`` §2):

* Tokens are columns. One input is ``X: (d_0, t)``; a batch is ``(N, d_0, t)``
  (the paper's layout, batched on a leading axis; NeuroDim's ``(N, t, d)`` is
  its transpose on the last two axes).
* Layer ``i`` (0-based here, ``i = 0 .. l-1``; the paper's layer ``i + 1``)
  holds ``Q_i, K_i: (a_i, d_i)`` and ``V_i: (d_{i+1}, d_i)`` where
  ``widths = (d_0, ..., d_l)`` and ``attn_dims = (a_1, ..., a_l)``.
* Scores ``S[s, j] = <K z_s, Q z_j>``: the key index ``s`` is the row, the
  query index ``j`` the column. Lightning uses ``S`` as is; softmax
  normalises each column over the key index (``softmax_axis="key"``, the
  paper's and NeuroDim's choice) or, for the pitfall-10 comparison only, each
  row over the query index (``softmax_axis="query"``).
* Output column ``j`` is ``sum_s A[s, j] V z_s``; no biases, residuals, MLPs
  or output projection. ``temperature`` divides the scores (default 1: none).

The single attention layer is :func:`attnlab.core.attention.attend`; this
module only stacks it. :func:`virtual_forward` is the second implementation
through the virtual weights (Ã_i, Ṽ) of spec §2.3.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from attnlab.core import attention as core_attention

Kind = Literal["lightning", "softmax"]
SoftmaxAxis = Literal["key", "query"]
KINDS = ("lightning", "softmax")
SOFTMAX_AXES = ("key", "query")
INITS = ("fan_in", "normal")
_HI = jax.lax.Precision.HIGHEST


class Layer(NamedTuple):
  """One layer's weights: ``Q, K: (a, d_in)``, ``V: (d_out, d_in)``.

  Raveling a tuple of layers (``jax.flatten_util.ravel_pytree``) gives the
  spec's parameter order: per layer Q, then K, then V, each row-major.
  """
  Q: jax.Array
  K: jax.Array
  V: jax.Array


Params = tuple  # tuple[Layer, ...], one per layer


@dataclasses.dataclass(frozen=True)
class Arch:
  """A static architecture (hashable, so it can be a jit static argument).

  Attributes:
    widths: ``(d_0, ..., d_l)``, all >= 1.
    attn_dims: ``(a_1, ..., a_l)``, all >= 1, one per layer.
    kind: ``"lightning"`` or ``"softmax"``.
    t: sequence length (>= 1; the theory needs t >= 2).
    softmax_axis: ``"key"`` (default) or ``"query"``; ignored for lightning.
  """
  widths: tuple
  attn_dims: tuple
  kind: str = "lightning"
  t: int = 3
  softmax_axis: str = "key"

  def __post_init__(self):
    object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
    object.__setattr__(self, "attn_dims", tuple(int(a) for a in self.attn_dims))
    if len(self.widths) != len(self.attn_dims) + 1 or not self.attn_dims:
      raise ValueError(f"need len(widths) == len(attn_dims) + 1 >= 2, got {self.widths}, {self.attn_dims}")
    if min(self.widths) < 1 or min(self.attn_dims) < 1 or self.t < 1:
      raise ValueError(f"widths, attn_dims and t must be >= 1: {self}")
    if self.kind not in KINDS or self.softmax_axis not in SOFTMAX_AXES:
      raise ValueError(f"bad kind/softmax_axis: {self.kind!r}, {self.softmax_axis!r}")

  @property
  def depth(self) -> int:
    return len(self.attn_dims)

  @property
  def num_params(self) -> int:
    """P = sum_i (2 a_i d_{i-1} + d_i d_{i-1})."""
    return num_params(self.widths, self.attn_dims)

  @property
  def out_size(self) -> int:
    """Entries of one output, ``d_l * t``."""
    return self.widths[-1] * self.t

  def layer_shapes(self) -> list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
    return [((a, d), (a, d), (e, d)) for d, e, a in zip(self.widths[:-1], self.widths[1:], self.attn_dims)]


def num_params(widths: Sequence[int], attn_dims: Sequence[int]) -> int:
  """P = sum_i (2 a_i d_{i-1} + d_i d_{i-1})."""
  return sum(2 * a * d + e * d for d, e, a in zip(widths[:-1], widths[1:], attn_dims))


def zeros_params(arch: Arch, dtype=None) -> Params:
  """All-zero parameters of ``arch`` (a template for ``ravel_pytree``)."""
  return tuple(Layer(*(jnp.zeros(s, dtype) for s in shapes)) for shapes in arch.layer_shapes())


def param_scales(arch: Arch, init: str = "fan_in") -> np.ndarray:
  """Per-parameter standard deviations (before ``init_std``), raveled like ``ravel_pytree``.

  ``init="fan_in"``: layer i's entries get ``1 / sqrt(d_{i-1})`` (the spec's
  default sigma = 1/sqrt(d_in)); ``init="normal"``: all 1 (NeuroDim's
  ``torch.randn``; the spec's checks use ``init_std = 0.5``).
  """
  if init not in INITS:
    raise ValueError(f"init must be one of {INITS}, got {init!r}")
  out = []
  for shapes in arch.layer_shapes():
    d_in = shapes[0][1]
    size = sum(r * c for r, c in shapes)
    out.append(np.full(size, 1.0 / np.sqrt(d_in) if init == "fan_in" else 1.0))
  return np.concatenate(out)


def param_blocks(arch: Arch) -> np.ndarray:
  """The weight matrix of each raveled parameter: ``(P,)`` int, 0..3l-1 in the
  order Q_1, K_1, V_1, Q_2, ... (raveled like ``ravel_pytree``)."""
  return np.concatenate([np.full(r * c, 3 * i + j, np.int32)
                         for i, shapes in enumerate(arch.layer_shapes()) for j, (r, c) in enumerate(shapes)])


def init_params(key: jax.Array, arch: Arch, init: str = "fan_in", init_std: float | jax.Array = 1.0,
                dtype=None) -> Params:
  """I.i.d. Gaussian weights, entry std ``init_std * param_scales(arch, init)``.

  ``init_std`` may be traced. See :func:`param_scales`.
  """
  z = jax.random.normal(key, (arch.num_params,), dtype)
  _, unravel = ravel_pytree(zeros_params(arch, z.dtype))
  return unravel(z * init_std * jnp.asarray(param_scales(arch, init), z.dtype))


def _attend(queries, keys, values, kind: str, temperature, softmax_axis: str) -> jax.Array:
  """``attend`` from core, plus the query-axis softmax variant (pitfall 10)."""
  if kind == "lightning" or softmax_axis == "key":
    return core_attention.attend(queries, keys, values, kind, temperature=temperature)
  # Row s of the transposed scores is key s; core's softmax over axis 0 of S.T
  # therefore normalises each key's scores over the queries.
  A = core_attention.attention_matrix(core_attention.scores(queries, keys).T, "softmax",
                                      temperature=temperature).T
  return jnp.einsum("vs,st->vt", values, A, precision=_HI)


def layer_forward(layer: Layer, Z: jax.Array, kind: str = "lightning", temperature=1.0,
                  softmax_axis: str = "key") -> jax.Array:
  """One attention layer on ``Z: (d_in, t)`` -> ``(d_out, t)``.

  Column j is ``sum_s N(S)[s, j] V z_s`` with ``S[s, j] = <K z_s, Q z_j>``.
  """
  chex.assert_rank(Z, 2)
  chex.assert_equal(layer.Q.shape, layer.K.shape)
  chex.assert_equal(layer.Q.shape[1], Z.shape[0])
  chex.assert_equal(layer.V.shape[1], Z.shape[0])
  mm = lambda W: jnp.matmul(W, Z, precision=_HI)
  return _attend(mm(layer.Q), mm(layer.K), mm(layer.V), kind, temperature, softmax_axis)


def forward(params: Params, X: jax.Array, kind: str = "lightning", temperature=1.0,
            softmax_axis: str = "key") -> jax.Array:
  """The deep network phi_W(X) = phi_{W_l} o ... o phi_{W_1}(X).

  Args:
    params: tuple of :class:`Layer`, shapes as in the module doc.
    X: ``(d_0, t)`` (one input) or ``(N, d_0, t)`` (a batch).
  Returns:
    ``(d_l, t)`` or ``(N, d_l, t)``.
  """
  if X.ndim == 3:
    return jax.vmap(lambda x: forward(params, x, kind, temperature, softmax_axis))(X)
  chex.assert_rank(X, 2)
  Z = X
  for layer in params:
    Z = layer_forward(layer, Z, kind, temperature, softmax_axis)
  return Z


def virtual_weights(params: Params) -> tuple[tuple[jax.Array, ...], jax.Array]:
  """The virtual weights of spec §2.3.

  ``P_0 = I_{d_0}``, ``P_i = V_i P_{i-1}``, ``Ã_i = P_{i-1}^T K_i^T Q_i P_{i-1}``
  (``(d_0, d_0)``), ``Ṽ = P_l`` (``(d_l, d_0)``). All pass-through symmetries
  act trivially on them.

  Returns:
    ``(A_tilde, V_tilde)``: a tuple of l ``(d_0, d_0)`` arrays and ``(d_l, d_0)``.
  """
  d0 = params[0].Q.shape[1]
  P = jnp.eye(d0, dtype=params[0].Q.dtype)
  A_tilde = []
  for layer in params:
    KQ = jnp.matmul(layer.K.T, layer.Q, precision=_HI)
    A_tilde.append(jnp.linalg.multi_dot([P.T, KQ, P], precision=_HI))
    P = jnp.matmul(layer.V, P, precision=_HI)
  return tuple(A_tilde), P


def virtual_forward(A_tilde: Sequence[jax.Array], V_tilde: jax.Array, X: jax.Array,
                    kind: str = "lightning", temperature=1.0, softmax_axis: str = "key") -> jax.Array:
  """phi(X) = Ṽ U_l with U_0 = X, U_i = U_{i-1} N(U_{i-1}^T Ã_i U_{i-1}).

  ``(U^T Ã U)[s, j] = <u_s, Ã u_j>`` is ``scores(queries=Ã U, keys=U)``, so
  each step is ``attend(Ã U, U, U)``. ``X``: ``(d_0, t)`` or ``(N, d_0, t)``.
  """
  if X.ndim == 3:
    return jax.vmap(lambda x: virtual_forward(A_tilde, V_tilde, x, kind, temperature, softmax_axis))(X)
  chex.assert_rank(X, 2)
  U = X
  for A in A_tilde:
    chex.assert_shape(A, (X.shape[0], X.shape[0]))
    U = _attend(jnp.matmul(A, U, precision=_HI), U, U, kind, temperature, softmax_axis)
  return jnp.matmul(V_tilde, U, precision=_HI)
