"""Per-feature ODE theory of the no-superposition regime (spec §5, §11b), float64.

Per feature ``i`` with rate ``r_i``, target ``y_i`` and loss weight ``w_i``
(``(y_i, w_i) = (I_i, 1)`` in ``teacher_scale`` mode, ``(1, I_i)`` in
``loss_weight`` mode, ``I_i = i^-b``, ``lambda_i = (4/3) p_i``), with time
``t`` in units of ``eta * step``:

* ``linear``:   ``ds/dt = r (y - s)``, ``r_i = c_lin w_i lambda_i``;
  ``s_i(t) = y_i - (y_i - s0) exp(-r_i t)``  (``s0 = 0`` in the tables);
  ``c_lin = 1`` is the secondary summary's convention, ``c_lin = 2`` is SGD
  on the summed MSE of the ``linear_full`` student.
* ``logistic``: ``ds/dt = r s (y - s) / y``, ``r_i = 8 w_i lambda_i y_i``
  (the tied ``W^T W`` student under the summed MSE);
  ``s_i(t) = y_i / (1 + (y_i / s0 - 1) exp(-r_i t))``.

Loss: ``L(t) = sum_i w_i lambda_i (y_i - s_i(t))^2`` (divide by N for the
``mean`` reduction). Asymptotic exponents (``L ~ t^-gamma``):
``(a + 2b - 1)/a`` (linear, teacher_scale), ``(a + 2b - 1)/(a + b)``
(logistic, teacher_scale), ``1 - 1/(a + b)`` (loss_weight, either).

Everything here must run under ``jax.enable_x64(True)``; :func:`loss_curve`
and :func:`fit_fixed_window` check it.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from attnlab.superposition import data as sdata

DYNAMICS = ("linear", "logistic")


def asymptotic_gamma(a: float, b: float, dynamics: str, mode: str) -> float:
  """The N -> infinity exponent of the per-feature ODE loss (spec §5)."""
  if mode == "loss_weight":
    return 1.0 - 1.0 / (a + b)
  if dynamics == "linear":
    return (a + 2 * b - 1) / a
  return (a + 2 * b - 1) / (a + b)


def feature_constants(n: int, a, b, mode: str, p_norm: str = "sum1"):
  """(lambda, y, w) in float64, each ``[n]``."""
  p = sdata.feature_probs(n, a, p_norm, dtype=jnp.float64)
  imp = sdata.importance(n, b, dtype=jnp.float64)
  y, w = sdata.targets_and_weights(imp, mode)
  return sdata.second_moment(p), y, w


def rates(lam: jax.Array, y: jax.Array, w: jax.Array, dynamics: str, linear_factor=1.0) -> jax.Array:
  """Per-feature rates ``r_i`` (per unit of ``t = eta * step``)."""
  if dynamics == "linear":
    return linear_factor * w * lam
  if dynamics == "logistic":
    return 8.0 * w * lam * y
  raise ValueError(f"dynamics must be one of {DYNAMICS}, got {dynamics!r}")


def per_feature_curve(t: jax.Array, r: jax.Array, y: jax.Array, dynamics: str, s0) -> jax.Array:
  """``s_i(t)``: ``[T, N]`` for times ``t: [T]`` (closed forms in the module doc)."""
  chex.assert_rank([t, r, y], 1)
  e = jnp.exp(-r[None, :] * t[:, None])
  if dynamics == "linear":
    return y[None, :] - (y[None, :] - s0) * e
  return y[None, :] / (1.0 + (y[None, :] / s0 - 1.0) * e)


@functools.partial(jax.jit, static_argnames=("dynamics", "chunk"))
def _loss_curve(t, r, y, w, lam, s0, *, dynamics, chunk):
  def one(tc):
    s = per_feature_curve(tc, r, y, dynamics, s0)
    return jnp.sum((w * lam)[None, :] * (y[None, :] - s) ** 2, axis=1)
  T = t.shape[0]
  pad = (-T) % chunk
  tp = jnp.concatenate([t, jnp.full((pad,), t[-1], t.dtype)]).reshape(-1, chunk)
  return jax.lax.map(one, tp).reshape(-1)[:T]


def loss_curve(t, r, y, w, lam, s0, dynamics: str, chunk: int = 16) -> jax.Array:
  """``L(t) = sum_i w_i lambda_i (y_i - s_i(t))^2`` at ``t: [T]`` (memory ``O(chunk N)``)."""
  if not jax.config.jax_enable_x64:
    raise RuntimeError("theory.loss_curve must run under jax.enable_x64(True)")
  t = jnp.asarray(t, jnp.float64)
  T = t.shape[0]
  bucket = 128 * (-(-T // 128))  # pad T to a multiple of 128: few distinct compiled shapes
  t = jnp.concatenate([t, jnp.full((bucket - T,), t[-1], t.dtype)])
  return _loss_curve(t, r, y, w, lam, jnp.asarray(s0, jnp.float64), dynamics=dynamics, chunk=chunk)[:T]


def lstsq_slope(x: np.ndarray, y: np.ndarray) -> float:
  """Least-squares slope of y against x (float64)."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  xm = x - x.mean()
  return float(np.sum(xm * (y - y.mean())) / np.sum(xm * xm))


def fit_fixed_window(t: np.ndarray, L: np.ndarray, lo: float, hi: float) -> float:
  """``gamma = -slope(log L, log t)`` over ``lo <= t <= hi``."""
  t = np.asarray(t, np.float64)
  L = np.asarray(L, np.float64)
  m = (t >= lo) & (t <= hi) & (L > 0)
  if m.sum() < 3:
    return float("nan")
  return -lstsq_slope(np.log(t[m]), np.log(L[m]))


def theory_gamma(n: int, a: float, b: float, dynamics: str, mode: str, *, s0: float = 1e-3,
                 n_t: int = 800, t_range=(1e-2, 1e14), p_norm: str = "sum1") -> dict:
  """The §11b recipe: fit the ODE loss over the window ``[1/r_4, 1/r_{N/4}]``.

  Returns ``gamma_fit``, ``gamma_asymptotic`` and ``fit_window`` (t_lo, t_hi).
  The linear dynamics start from ``s_i(0) = 0`` (the §11b recipe), the
  logistic ones from ``s0``. Runs in float64 (enables x64 for its own scope).
  """
  with jax.enable_x64(True):
    lam, y, w = feature_constants(n, a, b, mode, p_norm)
    r = rates(lam, y, w, dynamics)
    r_np = np.asarray(r)
    lo, hi = 1.0 / r_np[3], 1.0 / r_np[n // 4 - 1]
    t = np.logspace(np.log10(t_range[0]), np.log10(t_range[1]), n_t)
    t = t[(t >= lo) & (t <= hi)]  # only the window enters the fit: evaluate L there only
    if t.size < 3:
      return {"gamma_fit": float("nan"), "gamma_asymptotic": asymptotic_gamma(a, b, dynamics, mode),
              "fit_window": [float(lo), float(hi)]}
    L = np.asarray(loss_curve(t, r, y, w, lam, s0 if dynamics == "logistic" else 0.0, dynamics))
  return {"gamma_fit": fit_fixed_window(t, L, lo, hi),
          "gamma_asymptotic": asymptotic_gamma(a, b, dynamics, mode),
          "fit_window": [float(lo), float(hi)]}


def front(t: jax.Array, r: jax.Array, y: jax.Array, dynamics: str, s0) -> jax.Array:
  """Theory traveling-wave front: ``i*(t) = #{i : s_i(t) > y_i / 2}``, ``[T]``."""
  s = per_feature_curve(t, r, y, dynamics, s0)
  return jnp.sum(s > 0.5 * y[None, :], axis=1)


def linear_full_mean_fraction(n: int, a: float, b: float, mode: str, lr: float, steps: np.ndarray,
                              p_norm: str = "sum1", discrete: bool = True) -> np.ndarray:
  """Expected learned fraction ``E[S_ii] / y_i`` of a ``linear_full`` student under SGD (S2 comparator).

  The SGD step on the summed MSE, ``S <- S - 2 lr diag(w) (S - T) X^T X / B``, is
  linear in ``S`` and the batch is independent of ``S``, so its mean obeys
  exactly ``E[S_{n+1}] = E[S_n] - 2 lr diag(w) (E[S_n] - T) C`` with
  ``C = E[x x^T] = diag(lambda - p^2) + p p^T``. From ``E[S_0] = 0``, row i is
  ``y_i e_i^T (1 - (I - 2 lr w_i C)^n)``, so

  ``E[S_ii(n)] / y_i = 1 - [(I - 2 lr w_i C)^n]_ii``        (``discrete=True``)
  ``               = 1 - [exp(-2 lr w_i C n)]_ii``          (gradient flow).

  The spec's S2 comparator ``1 - exp(-2 lambda_i lr n)`` drops the off-diagonal
  ``p_i p_j`` of C (the inputs have nonzero means) and the Euler step. Host
  float64 (NumPy eigendecomposition of the N x N matrix C). ``steps: [T]``;
  returns ``[T, N]``.
  """
  i = np.arange(1, n + 1, dtype=np.float64)
  p = i ** (-a)
  p = p / p.sum() if p_norm == "sum1" else np.minimum(p, 1.0)
  w = np.ones(n) if mode == "teacher_scale" else i ** (-b)
  C = np.diag(sdata.VALUE_M2 * p - p ** 2) + np.outer(p, p)
  ev, V = np.linalg.eigh(C)
  steps = np.asarray(steps, np.float64)
  if discrete:
    decay = (1.0 - 2.0 * lr * w[None, :, None] * ev[None, None, :]) ** steps[:, None, None]   # [T, N(i), N(k)]
  else:
    decay = np.exp(-2.0 * lr * w[None, :, None] * ev[None, None, :] * steps[:, None, None])
  return 1.0 - np.einsum("ik,tik->ti", V ** 2, decay)
