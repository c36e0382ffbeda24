"""Numerical neuromanifold dimension: the generic rank of the parameter Jacobian.

Procedure (spec §5.3; every choice is an argument with the spec's default):

1. Float64 (the caller's ``jax.enable_x64(True)`` scope; float32 exists only
   to demonstrate the precision guard).
2. ``theta`` = the raveled parameters (``ravel_pytree``: per layer Q, K, V,
   row-major); ``f(theta) = concat_n phi_theta(X^(n)).ravel()`` of length
   ``N d_l t``; ``J = df/dtheta``: ``(N d_l t, P)``, by autodiff only (no
   finite differences), in one of two modes (:data:`JACOBIAN_MODES`, the
   config field ``jacobian_mode``):

   * ``"rev"`` (default; the spec says ``jacfwd``): per input, reverse mode, vmapped over the N inputs:
     ``J = vmap_n(jax.jacrev(f_n))(theta)`` with ``f_n = phi_theta(X^(n)).ravel()``.
     Each input has only ``d_l t`` outputs (30 in Figure 3) against ``P``
     parameters (up to 280), so this takes ``N d_l t`` reverse sweeps of one
     input instead of ``P`` forward sweeps of all N inputs: measured 7-11x
     faster than ``"fwd"`` at delta = 10 (``scripts/bench_geometry.py``).
   * ``"fwd"``: the spec's literal ``J = jax.jacfwd(f)(theta)``.

   Both give the same J up to rounding (about 1e-14; tested).
3. ``theta`` Gaussian (:func:`attnlab.geometry.model.init_params`), ``X^(n) ~ N(0, I)``.
4. Row-normalise J (each row divided by its 2-norm, floored at the dtype's
   smallest normal number); the rank is unchanged.
5. Singular values ``s_1 >= ... >= s_n`` (``n = min(m, P)``) and two ranks:
   ``rank_tol = #{s_k > s_1 max(m, P) eps}``; ``rank_gap = argmax_k
   log(s_k / s_{k+1}) + 1`` where ``s_{n+1}`` is the tolerance ``s_1 max(m, P) eps``
   (so a full-rank J gets ``rank_gap = n`` when it is well above the noise),
   every ``s_k`` is floored at the rounding level ``s_1 eps`` (exact zeros would
   make noise/0 the largest ratio), and ``gap = max_k s_k / s_{k+1}`` (so at
   most about ``1 / eps``). If ``s_1 = 0`` both ranks are 0 and the gap is
   reported as ``-log10(tiny)`` (effectively infinite, but finite). The estimate is **reliable** iff ``rank_tol == rank_gap`` and
   ``gap >= min_gap``.
6. Several trials (fresh weights and inputs each): the reported estimate is the
   max of ``rank_tol`` over trials (as the paper did); the reported gap and
   ``rank_gap`` are that trial's, and ``reliable`` also requires every trial
   to be reliable and to agree.

The estimate is ``rank_tol``; it is never silently returned when unreliable:
:func:`estimate` warns, and the experiment records ``reliable = false``.

Cost (measured, ``scripts/bench_geometry.py``; Figure 3 at delta = 10, J of
7500 x 280, one CPU core): the "rev" Jacobian 0.04-0.06 s, the Householder QR
of the row-normalised J 0.1-0.2 s (about 1.2 GFlop; it dominates), the SVD of
R 0.015 s. The QR is the same for any way of building J.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import math
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from attnlab.core import prng
from attnlab.geometry import dimension as gdim
from attnlab.geometry import model as gm


@functools.lru_cache(maxsize=1)
def _openblas():
  """The OpenBLAS behind jaxlib's CPU LAPACK kernels (scipy's), or None."""
  try:
    from scipy.linalg import cython_lapack
    lib = ctypes.CDLL(cython_lapack.__file__)
    lib.scipy_openblas_get_num_threads.restype = ctypes.c_int
    lib.scipy_openblas_set_num_threads.argtypes = [ctypes.c_int]
    return lib
  except (ImportError, OSError, AttributeError):
    return None


@contextlib.contextmanager
def blas_threads(n: int):
  """Scope OpenBLAS (used by jaxlib's CPU QR/SVD) to ``n`` threads; 0 leaves it alone.

  On a shared, oversubscribed CPU the multithreaded OpenBLAS QR of a 7500 x 280
  Jacobian took 3-19 s; with one thread 0.4 s (measured). Restores the old
  setting on exit; a no-op where scipy's OpenBLAS is not found.
  """
  lib = _openblas() if n else None
  if lib is None:
    yield
    return
  old = lib.scipy_openblas_get_num_threads()
  lib.scipy_openblas_set_num_threads(int(n))
  try:
    yield
  finally:
    lib.scipy_openblas_set_num_threads(old)


def default_n_inputs(arch: gm.Arch, factor: int = 3, minimum: int = 250) -> int:
  """The spec's default N = max(250, ceil(3P / (d_l t))) (§5.3 step 3).

  ``N d_l t >= 3P`` is enough for the rank of most networks; the floor of 250
  (the paper's N) is what keeps deep softmax networks reliable: at widths
  (4,4,4,4,4), a = 2, fan-in weights, N = 32 gave rank 62 of 64 with a gap of
  only 1e1.6 (flagged unreliable), N = 250 gives 64 with a gap of 1e6.2.
  """
  return max(minimum, math.ceil(factor * arch.num_params / arch.out_size))


def flat_forward(theta: jax.Array, X: jax.Array, arch: gm.Arch, temperature=1.0) -> jax.Array:
  """``f(theta)``: the network on every input, raveled. theta: (P,), X: (N, d_0, t) -> (N d_l t,)."""
  chex.assert_shape(theta, (arch.num_params,))
  chex.assert_shape(X, (None, arch.widths[0], arch.t))
  _, unravel = ravel_pytree(gm.zeros_params(arch, theta.dtype))
  out = gm.forward(unravel(theta), X, arch.kind, temperature, arch.softmax_axis)
  return out.reshape(-1)


JACOBIAN_MODES = ("rev", "fwd")


def jacobian(theta: jax.Array, X: jax.Array, arch: gm.Arch, temperature=1.0, mode: str = "rev") -> jax.Array:
  """``J = df/dtheta``: ``(N d_l t, P)``; row index = (n, output row, token) row-major.

  ``mode="rev"``: ``vmap`` over the N inputs of ``jax.jacrev`` of one input's
  outputs (``d_l t`` reverse sweeps per input); ``mode="fwd"``:
  ``jax.jacfwd(f)(theta)`` (``P`` forward sweeps over all inputs). Same J up
  to rounding; see the module doc for which is faster.
  """
  chex.assert_rank(X, 3)
  if mode == "fwd":
    return jax.jacfwd(lambda th: flat_forward(th, X, arch, temperature))(theta)
  if mode != "rev":
    raise ValueError(f"mode must be one of {JACOBIAN_MODES}, got {mode!r}")
  per_input = jax.vmap(lambda x: jax.jacrev(lambda th: flat_forward(th, x[None], arch, temperature))(theta))(X)
  return per_input.reshape(X.shape[0] * arch.out_size, arch.num_params)


def _normalize_rows(J: jax.Array) -> jax.Array:
  norms = jnp.linalg.norm(J, axis=1, keepdims=True)
  return J / jnp.maximum(norms, jnp.finfo(J.dtype).tiny)


EQUILIBRATE_ROUNDS = 4


def equilibrate(J: jax.Array, col_blocks: np.ndarray, rounds: int = EQUILIBRATE_ROUNDS) -> jax.Array:
  """Row-normalise J, then ``rounds`` times rescale its columns block by block
  and row-normalise again; ``J: (m, P)``, ``col_blocks: (P,)`` static ints
  (:func:`attnlab.geometry.model.param_blocks`: one block per weight matrix).

  Each block of columns is multiplied by the power of two nearest to the
  inverse of its RMS column norm, so J -> J D with D diagonal and exact in
  floating point: the rank is unchanged, and so is each entry's relative
  rounding error. Deep softmax stacks need it because an early layer's
  influence on the output shrinks or grows geometrically with depth, which
  spreads the singular values over many decades without changing the rank;
  one scale per weight matrix (not per column) cannot blow a column of pure
  rounding noise up to unit size. Not in the spec (its procedure normalises
  rows only); used by the calibrated fallback (:func:`choose_attempt`).
  """
  chex.assert_rank(J, 2)
  col_blocks = np.asarray(col_blocks)
  chex.assert_shape(col_blocks, (J.shape[1],))
  n_blocks = int(col_blocks.max()) + 1
  count = jnp.asarray(np.maximum(np.bincount(col_blocks, minlength=n_blocks), 1), J.dtype)
  tiny = jnp.finfo(J.dtype).tiny
  J = _normalize_rows(J)
  for _ in range(rounds):
    rms = jnp.sqrt(jax.ops.segment_sum(jnp.sum(J * J, axis=0), col_blocks, n_blocks) / count)
    scale = jnp.where(rms > tiny, jnp.exp2(-jnp.round(jnp.log2(jnp.maximum(rms, tiny)))), 1.0)
    J = _normalize_rows(J * scale[col_blocks][None, :])
  return J


RANK_METHODS = ("qr", "lu_rows")


def rank_stats(J: jax.Array, min_gap=1e6, row_normalize: bool = True,
               col_blocks: np.ndarray | None = None, rank_method: str = "qr") -> dict[str, jax.Array]:
  """Step 4-5 on one Jacobian ``J: (m, P)``.

  ``col_blocks`` (static, optional): equilibrate rows and column blocks first
  (:func:`equilibrate`; rows are then normalised whatever ``row_normalize``).

  ``rank_method`` (static, :data:`RANK_METHODS`) says how a tall J (m > P) is
  reduced to P rows before the SVD:

  * ``"qr"`` (default; the spec's SVD of J): the Householder R factor, with
    the singular values of J up to eps ||J|| (backward stable);
  * ``"lu_rows"`` (ours, not in the spec): the P rows of J that LU with
    partial pivoting selects as pivots, i.e. a P x P submatrix of J itself.
    In exact arithmetic the first rank(J) pivot rows span J's row space, so
    the rank is J's; in floating point a row subset's singular values
    interlace, sigma_i(J_sel) <= sigma_i(J), so noise cannot be promoted
    above the tolerance (no over-count), and an under-count needs a pivot
    choice that misses a direction, which shows as a small gap. LU costs
    m P^2 flops against 2 m P^2 for QR and runs at GEMM speed: 0.018 s
    against 0.042 s for the 7500 x 280 J of Figure 3 at delta = 10 (one
    thread). ``sv`` are then the singular values of J_sel.

  Returns a dict of arrays: ``rank_tol``, ``rank_gap`` (int32), ``gap_log10``
  (float; ``-log10(tiny)``, about 308 in float64, when J = 0, so that
  the engine does not read an exact zero Jacobian as a non-finite run), ``reliable`` (bool), ``sv`` (the n singular
  values of the (row-normalised) J, or of its selected rows for ``"lu_rows"``,
  descending), ``tol`` (the threshold).
  """
  if rank_method not in RANK_METHODS:
    raise ValueError(f"rank_method must be one of {RANK_METHODS}, got {rank_method!r}")
  chex.assert_rank(J, 2)
  m, p = J.shape
  if col_blocks is not None:
    J = equilibrate(J, col_blocks)
  elif row_normalize:
    J = _normalize_rows(J)
  # A tall J (m >> P, e.g. 7500 x 280 in Figure 3) is first reduced to P rows;
  # the SVD of the P x P result is then cheap.
  if m <= p:
    R = J
  elif rank_method == "qr":
    R = jnp.linalg.qr(J, mode="r")
  else:
    R = J[jax.lax.linalg.lu(J)[2][:p]]
  s = jnp.linalg.svd(R, compute_uv=False)
  eps = jnp.finfo(J.dtype).eps
  tol = s[0] * max(m, p) * eps
  rank_tol = jnp.sum(s > tol).astype(jnp.int32)
  tiny = jnp.finfo(J.dtype).tiny
  # Floor every singular value at the rounding level s_1 eps: exact zeros (e.g.
  # parameters that provably do not act, as Q, K at t = 1 with softmax) would
  # otherwise make noise / 0 the "largest gap".
  floor = jnp.maximum(s[0] * eps, tiny)
  s_ext = jnp.maximum(jnp.concatenate([s, tol[None]]), floor)
  log_ratio = jnp.log(s_ext[:-1]) - jnp.log(s_ext[1:])
  k = jnp.argmax(log_ratio)
  zero = s[0] <= tiny
  rank_gap = jnp.where(zero, 0, k + 1).astype(jnp.int32)
  gap_log10 = jnp.where(zero, -jnp.log10(tiny), log_ratio[k] / jnp.log(10.0))
  reliable = (rank_tol == rank_gap) & (gap_log10 >= jnp.log10(min_gap))
  return dict(rank_tol=rank_tol, rank_gap=rank_gap, gap_log10=gap_log10, reliable=reliable, sv=s, tol=tol)


def draw_params(init_key: jax.Array, arch: gm.Arch, trials: int = 1, init: str = "fan_in",
                init_std=1.0) -> jax.Array:
  """Raveled weights for ``trials`` trials: ``(trials, P)``, entry std
  ``init_std * param_scales(arch, init)``."""
  z = jax.random.normal(init_key, (trials * arch.num_params,)).reshape(trials, arch.num_params)
  return z * (init_std * jnp.asarray(gm.param_scales(arch, init), z.dtype))[None, :]


def draw_inputs(data_key: jax.Array, arch: gm.Arch, n_inputs: int, trials: int = 1) -> jax.Array:
  """Standard Gaussian inputs ``(trials, N, d_0, t)``."""
  shape = (trials, n_inputs, arch.widths[0], arch.t)
  return jax.random.normal(data_key, (math.prod(shape),)).reshape(shape)


def draw(key: jax.Array, arch: gm.Arch, n_inputs: int, trials: int = 1, init: str = "fan_in",
         init_std=1.0) -> dict[str, jax.Array]:
  """Weights (INIT stream) and inputs (DATA stream, :mod:`attnlab.core.prng`) from a run key.

  Returns ``{"theta": (trials, P), "X": (trials, N, d_0, t)}`` in the default
  float dtype, identical to :func:`draw_params` and :func:`draw_inputs` on the
  two streams. Both come from one sampler call site, vmapped over the two
  stream keys (threefry is vmap-invariant; each call site costs about 0.3-0.6 s
  of CPU compile time, which matters for the Figure 3 budget).
  """
  n_theta = trials * arch.num_params
  n_x = trials * n_inputs * arch.widths[0] * arch.t
  keys = jnp.stack([prng.stream(key, prng.INIT), prng.stream(key, prng.DATA)])
  z = jax.vmap(lambda k: jax.random.normal(k, (max(n_theta, n_x),)))(keys)
  theta = z[0, :n_theta].reshape(trials, arch.num_params)
  theta = theta * (init_std * jnp.asarray(gm.param_scales(arch, init), theta.dtype))[None, :]
  return {"theta": theta, "X": z[1, :n_x].reshape(trials, n_inputs, arch.widths[0], arch.t)}


def estimate_from_data(data: dict[str, jax.Array], arch: gm.Arch, temperature=1.0, min_gap=1e6,
                       row_normalize: bool = True, jacobian_mode: str = "rev",
                       equilibrate: bool = False, rank_method: str = "qr") -> dict[str, jax.Array]:
  """Steps 2-6 over the trials in ``data`` (from :func:`draw`); jittable.

  ``equilibrate`` (static): rescale J's column blocks, one per weight matrix,
  before the rank (:func:`equilibrate`; not in the spec). ``rank_method``
  (static): see :func:`rank_stats`.

  Returns the :func:`rank_stats` keys for the selected trial (the one with the
  largest ``rank_tol``, the first on ties), ``reliable`` over all trials, and
  per-trial ``rank_tol_trials``, ``rank_gap_trials``, ``gap_log10_trials``.
  """
  chex.assert_rank(data["theta"], 2)
  col_blocks = gm.param_blocks(arch) if equilibrate else None
  one = lambda th, X: rank_stats(jacobian(th, X, arch, temperature, jacobian_mode), min_gap, row_normalize,
                                 col_blocks, rank_method)
  if data["theta"].shape[0] == 1:  # no vmap: batched QR/SVD cost ~0.4 s more to compile
    stats = jax.tree.map(lambda v: v[None], one(data["theta"][0], data["X"][0]))
  else:
    stats = jax.vmap(one)(data["theta"], data["X"])
  best = jnp.argmax(stats["rank_tol"])
  out = {k: v[best] for k, v in stats.items()}
  agree = jnp.all(stats["rank_tol"] == stats["rank_tol"][0])
  out["reliable"] = jnp.all(stats["reliable"]) & agree
  out["rank_tol_trials"] = stats["rank_tol"]
  out["rank_gap_trials"] = stats["rank_gap"]
  out["gap_log10_trials"] = stats["gap_log10"]
  return out


# LLVM optimisation level 0 halves the compile time of the host-API program
# (about 4 s -> 2 s of CPU per architecture) at some cost in run time (the
# Jacobian about 2x slower; the LAPACK QR/SVD calls are not touched). The
# engine experiments pass it as ``OneShot.compiler_options``.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def calibrate_params(theta: jax.Array, X: jax.Array, arch: gm.Arch, score_std=3.0, temperature=1.0) -> jax.Array:
  """Rescale one weight draw layer by layer to a well-conditioned generic point.

  Args:
    theta: ``(P,)`` raveled weights (a Gaussian draw).
    X: ``(N, d_0, t)`` the estimator's inputs.
    arch: the architecture.
    score_std: target RMS of each layer's attention scores, centred over the
      normalised axis (keys; queries for ``softmax_axis="query"``), on that
      layer's actual inputs. May be traced.
  Returns:
    ``(P,)``: layer i's ``Q_i`` and ``K_i`` multiplied by one positive factor
    ``c_i`` (so the centred scores have RMS ``score_std``) and ``V_i`` by
    ``v_i`` (so the layer's outputs, centred over tokens, have RMS 1), the
    factors computed in order i = 1..l on the rescaled network. A factor whose
    statistic is zero (t = 1) is 1.

  Why: in a deep softmax stack at the fan-in scale the attention of the later
  layers is close to uniform, the tokens collapse towards their mean (rank
  collapse), and the trailing non-zero singular values of J fall below float64
  resolution; the estimate is then flagged unreliable (e.g. (4,)*6, a = 2:
  rank 66-67 of 76 with a gap of 1e1.6-1e2.4). Positive per-layer rescalings
  of an i.i.d. Gaussian draw are still a random point of the parameter space,
  so the generic rank is unchanged; only the conditioning of J is.
  """
  chex.assert_shape(theta, (arch.num_params,))
  chex.assert_shape(X, (None, arch.widths[0], arch.t))
  _, unravel = ravel_pytree(gm.zeros_params(arch, theta.dtype))
  tiny = jnp.finfo(theta.dtype).tiny
  safe_inv_rms = lambda v: jnp.where(jnp.mean(v ** 2) > tiny, jax.lax.rsqrt(jnp.maximum(jnp.mean(v ** 2), tiny)), 1.0)
  centre_axis = 2 if arch.softmax_axis == "query" else 1  # S: (N, keys, queries)
  layers, Z = [], X
  for layer in unravel(theta):
    q = jnp.einsum("ad,ndt->nat", layer.Q, Z, precision=gm._HI)
    k = jnp.einsum("ad,ndt->nat", layer.K, Z, precision=gm._HI)
    S = jnp.einsum("nas,nat->nst", k, q, precision=gm._HI)
    S = S - jnp.mean(S, axis=centre_axis, keepdims=True)
    c = jnp.sqrt(score_std * safe_inv_rms(S))
    layer = gm.Layer(layer.Q * c, layer.K * c, layer.V)
    Z = jax.vmap(lambda z: gm.layer_forward(layer, z, arch.kind, temperature, arch.softmax_axis))(Z)
    v = safe_inv_rms(Z - jnp.mean(Z, axis=2, keepdims=True))
    layers.append(gm.Layer(layer.Q, layer.K, layer.V * v))
    Z = Z * v
  return ravel_pytree(tuple(layers))[0]


def estimate_run(key, init_std, temperature, min_gap, score_std=3.0, *, arch, n_inputs, trials, init="fan_in",
                 row_normalize=True, jacobian_mode="rev", calibrate=False, equilibrate=False, rank_method="qr"):
  """One run: :func:`draw` + :func:`estimate_from_data` (traceable, vmappable over runs).

  ``key`` is a run key; ``init_std``, ``temperature``, ``min_gap`` and
  ``score_std`` may be traced. The engine experiments vmap this over seeds
  (:class:`attnlab.engine.experiment.OneShot` with ``jit=True``); the trials
  are vmapped inside :func:`estimate_from_data`. ``calibrate=True`` (static)
  estimates at the same draw rescaled by :func:`calibrate_params`
  (``score_std``): the second attempt of the fallback (:func:`choose_attempt`),
  which also passes ``equilibrate=True`` (static; :func:`equilibrate`).
  """
  data = draw(key, arch, n_inputs, trials, init, init_std)
  if calibrate:
    data["theta"] = jax.vmap(lambda th, X: calibrate_params(th, X, arch, score_std, temperature))(data["theta"],
                                                                                                data["X"])
  return estimate_from_data(data, arch, temperature, min_gap, row_normalize, jacobian_mode, equilibrate,
                            rank_method)


estimate_kernel = jax.jit(estimate_run, static_argnames=("arch", "n_inputs", "trials", "init", "row_normalize",
                                                         "jacobian_mode", "calibrate", "equilibrate",
                                                         "rank_method"),
                          compiler_options=COMPILER_OPTIONS)
estimate_kernel.__doc__ = """``jit(estimate_run)`` (static: ``arch, n_inputs, trials, init, row_normalize,
jacobian_mode, calibrate, equilibrate, rank_method``; LLVM opt level 0): the host API :func:`estimate` and the benchmark."""


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Host-side result of :func:`estimate`."""
  rank_tol: int
  rank_gap: int
  gap_log10: float
  reliable: bool
  sv: np.ndarray
  rank_tol_trials: tuple
  dtype: str
  attempts: int = 1
  rank_tol_first: int | None = None
  certificate: object | None = None  # attnlab.geometry.certify.Certificate, when one was attempted

  @property
  def certified(self) -> bool | None:
    """Whether a ball-arithmetic certificate proved the symmetry bound (None: none attempted)."""
    return None if self.certificate is None else bool(self.certificate.certified)

  @property
  def dimension(self) -> int:
    """The certified rank where a certificate succeeded, else the float64 ``rank_tol``."""
    return self.certificate.target if self.certified else self.rank_tol


def run_kernel(key: jax.Array, arch: gm.Arch, *, calibrate: bool, n_inputs: int, trials: int = 1, x64: bool = True,
               init: str = "fan_in", init_std=1.0, temperature=1.0, min_gap=1e6, row_normalize: bool = True,
               jacobian_mode: str = "rev", score_std=3.0, n_blas_threads: int = 1,
               equilibrate: bool = False, rank_method: str = "qr") -> dict:
  """:data:`estimate_kernel` on the host (scoped x64 and BLAS threads); returns NumPy values."""
  with jax.enable_x64(x64), blas_threads(n_blas_threads):
    r = estimate_kernel(key, init_std, temperature, min_gap, score_std, arch=arch, n_inputs=int(n_inputs),
                        trials=int(trials), init=init, row_normalize=row_normalize, jacobian_mode=jacobian_mode,
                        calibrate=calibrate, equilibrate=equilibrate, rank_method=rank_method)
    return dict(jax.device_get(r))


def estimate(key: jax.Array, arch: gm.Arch, n_inputs: int | None = None, trials: int = 1,
             x64: bool = True, init: str = "fan_in", init_std: float = 1.0, temperature: float = 1.0,
             min_gap: float = 1e6, row_normalize: bool = True, jacobian_mode: str = "rev", warn: bool = True,
             n_blas_threads: int = 1, fallback: str = "calibrated", score_std: float = 3.0,
             rank_method: str = "qr", certify: bool = True) -> Estimate:
  """Estimate the neuromanifold dimension of ``arch`` (host API; compiled once per static set).

  Deterministic for a given key. ``x64=False`` runs in float32 (the precision
  guard demo); an unreliable estimate triggers a ``RuntimeWarning``.
  ``fallback``: see :func:`needs_second_attempt` and :func:`choose_attempt`
  (``"none"``: the spec's procedure only). ``n_blas_threads``: see :func:`blas_threads` (0:
  leave OpenBLAS alone). ``rank_method``: see :func:`rank_stats`. ``certify``:
  for softmax, when the float64 result (after the fallback) is unreliable or
  below :func:`symmetry_bound`, try to prove the bound by ball arithmetic
  (float64 runs only: a float32 run is the precision-guard demonstration)
  (:func:`attnlab.geometry.certify.certify_dimension`; ``Estimate.certified``,
  ``Estimate.dimension``).
  """
  if fallback not in FALLBACKS:
    raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
  if rank_method not in RANK_METHODS:
    raise ValueError(f"rank_method must be one of {RANK_METHODS}, got {rank_method!r}")
  n = default_n_inputs(arch) if n_inputs is None else int(n_inputs)
  kw = dict(n_inputs=n, trials=int(trials), x64=x64, init=init, init_std=init_std, temperature=temperature,
            min_gap=min_gap, row_normalize=row_normalize, jacobian_mode=jacobian_mode, score_std=score_std,
            n_blas_threads=n_blas_threads, rank_method=rank_method)
  r = run_kernel(key, arch, calibrate=False, **kw)
  first, attempts = int(r["rank_tol"]), 1
  if fallback != "none" and needs_second_attempt(r, arch):
    second = run_kernel(key, arch, calibrate=True, equilibrate=fallback == "calibrated", **kw)
    chosen, reliable = choose_attempt(r, second)
    r, attempts = dict(chosen, reliable=reliable), 2
  est = Estimate(int(r["rank_tol"]), int(r["rank_gap"]), float(r["gap_log10"]), bool(r["reliable"]),
                 np.asarray(r["sv"]), tuple(int(x) for x in r["rank_tol_trials"]),
                 str(np.asarray(r["sv"]).dtype), attempts, first)
  if certify and x64 and needs_certificate(est.rank_tol, est.reliable, arch):  # float32: the guard demo
    from attnlab.geometry import certify as gcert  # needs python-flint; imported only when used
    cert = gcert.certify_dimension(key, arch, n_inputs=n, trials=int(trials), init=init, init_std=init_std,
                                   temperature=temperature, score_std=score_std)
    est = dataclasses.replace(est, certificate=cert)
  if warn and not est.reliable and not est.certified:
    warnings.warn(f"unreliable rank estimate for {arch}: rank_tol={est.rank_tol}, rank_gap={est.rank_gap}, "
                  f"gap=1e{est.gap_log10:.1f} (< min_gap={min_gap:g} or disagreeing; dtype {est.dtype}; "
                  f"attempts {est.attempts})", RuntimeWarning, stacklevel=2)
  return est


FALLBACKS = ("calibrated", "calibrated_unscaled", "none")


def symmetry_bound(arch: gm.Arch) -> int:
  """``P`` minus the dimension of the continuous symmetry group
  (:func:`attnlab.geometry.dimension.symmetry_dimension`): the Jacobian rank
  at any point where the group's generic orbit has full dimension (inside
  (B1)-(B3); equal to the formula's value there)."""
  return arch.num_params - gdim.symmetry_dimension(arch.widths, arch.attn_dims, arch.kind)


def needs_certificate(rank_tol: int, reliable: bool, arch: gm.Arch) -> bool:
  """Whether a softmax estimate should go to :func:`attnlab.geometry.certify.certify_dimension`:
  inside (B1)-(B3) only (there :func:`symmetry_bound` is also an upper bound,
  so proving it proves the dimension), and only when the float64 estimate
  (after the fallback) is unreliable or below the bound."""
  return (arch.kind == "softmax" and not gdim.violations(arch.widths, arch.attn_dims, arch.kind, arch.t)
          and (not reliable or rank_tol < symmetry_bound(arch)))


def needs_second_attempt(first: dict, arch: gm.Arch) -> bool:
  """Whether the fallback re-estimates a softmax network at the calibrated point:
  when the first attempt (the spec's procedure) is unreliable, **or** its rank
  is below :func:`symmetry_bound`. The second condition catches deep narrow
  stacks where the drawn point is so degenerate that float64 sees a clean but
  wrong gap: (2,)*8, a = (4,4,3,4,3,4,4), t = 3 gave 16 of 32 with a gap of
  1e6.4 ("reliable"); the calibrated point gives 32 with a gap of 1e11. A
  first rank at the bound cannot be raised, so Figure 3 never re-estimates.
  Lightning networks never do (see :func:`choose_attempt`)."""
  return arch.kind == "softmax" and (not bool(first["reliable"]) or int(first["rank_tol"]) < symmetry_bound(arch))


def choose_attempt(first: dict, second: dict) -> tuple[dict, bool]:
  """The attempt to report and its reliability, from the two attempts' rank stats.

  The fallback (``fallback="calibrated"``, softmax only, when
  :func:`needs_second_attempt`): the estimate is repeated once at the same draw
  rescaled by :func:`calibrate_params`, with the Jacobian's column blocks
  equilibrated (:func:`equilibrate`); ``"calibrated_unscaled"`` is the same
  without equilibration (the fallback before 2026-12; it leaves deep stacks
  such as (4,)*8, a = 2, unreliable at gaps of 1e5-1e6 where equilibration
  gives 1e7-1e9). The generic rank is the largest rank over points, and a
  ``rank_tol`` counts only singular values above the rounding level, so:

  * the second attempt is reported as reliable if it passes the gap test and
    its ``rank_tol`` is at least the first's;
  * otherwise the first is reported as reliable if it passed the gap test and
    the second found no higher ``rank_tol``;
  * otherwise the higher of the two is reported, unreliable (a reliable first
    attempt contradicted by a higher second ``rank_tol`` is not trusted).

  Lightning networks never fall back: there a per-layer rescaling only
  rescales the output (each layer is homogeneous in its weights), and deep
  lightning stacks at calibrated scales gave confidently wrong ranks in our
  tests (12 of 93 with a gap of 1e8 at (4,)*8, a = 2);
  :mod:`attnlab.geometry.exact` is their remedy. The second attempt is a
  second compiled program, built only when needed.
  """
  r1, r2 = int(first["rank_tol"]), int(second["rank_tol"])
  if bool(second["reliable"]) and r2 >= r1:
    return second, True
  if bool(first["reliable"]) and r2 <= r1:
    return first, True
  return (second if r2 >= r1 else first), False


def set_blas_threads(n: int) -> None:
  """Set OpenBLAS (jaxlib's CPU QR/SVD) to ``n`` threads for the rest of the process; 0: leave it.

  The engine experiments call this from their factories (their programs run
  inside the engine, so :func:`blas_threads` cannot scope them). A no-op where
  scipy's OpenBLAS is not found.
  """
  lib = _openblas() if n else None
  if lib is not None:
    lib.scipy_openblas_set_num_threads(int(n))
