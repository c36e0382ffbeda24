"""Softmax self-attention for regression (Goel, Soltanolkotabi & Bartlett,
arXiv 2603.01514): the model, its losses and the matrix-factorisation view.

Conventions (as in :mod:`attnlab.core.attention`): **tokens are columns**.

* Context tokens ``X``: (d, N); queries ``Xq``: (d, t); targets ``Y``: (k, n).
  (The spec writes X as n x d rows; every formula here is its transpose.)
* Parameters ``params = {"A": (k, d), "B": (d, d)}``.
* The forward pass (spec §2.2, query on the left)::

      logit_j(x) = x^T B x_j,  p_j = softmax_j(logit),  f(x) = A sum_j p_j(x) x_j

  ``orientation="key_left"`` uses ``x_j^T B x`` instead (the §9.2 pitfall).
  The attention itself is :func:`attnlab.core.attention.bilinear_attention`.
* Population moments: ``Sigma`` (d, d) SPD; ``M`` (k, d); whitened target
  ``Mt = M Sigma^{1/2}`` (k, d); whitened factors ``U = A Sigma^{1/2}`` (k, d),
  ``V = Sigma^{1/2} B Sigma^{1/2}`` (d, d), so that ``A Sigma B^T Sigma^{1/2} =
  U V^T``.

All contractions use ``precision=HIGHEST``. Nothing here forms a matrix
inverse: inverse square roots come from a clipped ``eigh`` (spec §9.9) and
everything else from Cholesky solves.
"""
from __future__ import annotations

from typing import Literal, Optional

import chex
import jax
import jax.numpy as jnp

from attnlab.core.attention import bilinear_attention

_HI = jax.lax.Precision.HIGHEST
Orientation = Literal["query_left", "key_left"]
ContextMode = Literal["self", "prompt"]


def mm(*mats: jax.Array) -> jax.Array:
  """Left-to-right matrix product at HIGHEST precision."""
  out = mats[0]
  for m in mats[1:]:
    out = jnp.matmul(out, m, precision=_HI)
  return out


# ----------------------------------------------------------------------------
# Linear algebra helpers
# ----------------------------------------------------------------------------

def sqrtm_psd(S: jax.Array, clip: float = 1e-12) -> tuple[jax.Array, jax.Array]:
  """(S^{1/2}, S^{-1/2}) of a symmetric PSD (d, d) matrix via ``eigh``.

  ``S`` is symmetrised first and its eigenvalues are clipped at ``clip``
  (spec §9.9), so the inverse square root is finite for singular input.
  """
  chex.assert_rank(S, 2)
  S = 0.5 * (S + S.T)
  w, Q = jnp.linalg.eigh(S)
  w = jnp.maximum(w, clip)
  return mm(Q * jnp.sqrt(w)[None, :], Q.T), mm(Q / jnp.sqrt(w)[None, :], Q.T)


def spectral_norm(X: jax.Array) -> jax.Array:
  """Largest singular value of a matrix (LAPACK SVD)."""
  return jnp.linalg.svd(X, compute_uv=False)[0]


def spectral_norm_certified(X: jax.Array, v0: jax.Array, *, inner: int = 8, tol=None
                            ) -> tuple[jax.Array, jax.Array]:
  """Largest singular value of X (m, n) by a warm-started, certified power iteration.

  ``inner`` power steps ``v <- G v / ||G v||`` on ``G = X^T X`` (n, n) from
  ``v0`` (n,) give the Rayleigh quotient ``lam = v^T G v``, a lower bound of
  ||X||_2^2. It is certified from above by a Cholesky factorisation of
  ``lam (1 + tol) I - G``: if that succeeds (is finite), ``||X||_2^2 <=
  lam (1 + tol)`` up to the factorisation's own backward error O(n eps ||G||).
  ``tol`` defaults to ``4 n eps`` of X's dtype, the order of LAPACK's own SVD
  error bound, so the result equals :func:`spectral_norm` to rounding
  (relative difference ~n eps). If the certificate fails (a cold or stale
  ``v0``, a tiny spectral gap), the value and the vector come from the LAPACK
  SVD instead. The fallback is a ``lax.while_loop`` of at most one iteration
  whose operand depends on the loop state, so XLA can neither hoist it nor,
  under ``vmap``, run it when every run is certified (a ``lax.cond`` would
  become a select that always runs the SVD). A non-finite X returns NaN.

  Carry ``v`` between calls on slowly changing X (an optimiser's iterates):
  from a warm start the first certificate succeeds.

  Returns (s, v): s = ||X||_2 (scalar), v (n,) the unit-norm top right
  singular vector estimate.
  """
  chex.assert_rank(X, 2)
  chex.assert_shape(v0, (X.shape[1],))
  n = X.shape[1]
  dt = X.dtype
  tol = 4 * n * jnp.finfo(dt).eps if tol is None else tol
  G = jnp.matmul(X.T, X, precision=_HI)
  bad = ~jnp.all(jnp.isfinite(G))

  def power_step(_, v):
    w = jnp.matmul(G, v, precision=_HI)
    return w / jnp.linalg.norm(w)

  v = jax.lax.fori_loop(0, inner, power_step, v0)
  lam = jnp.dot(v, jnp.matmul(G, v, precision=_HI), precision=_HI)
  ok = jnp.all(jnp.isfinite(jnp.linalg.cholesky(lam * (1 + tol) * jnp.eye(n, dtype=dt) - G))) | bad

  def svd(c):
    _, S, Vt = jnp.linalg.svd(jnp.where(c[2], jnp.zeros_like(X), X), full_matrices=False)
    return S[0] ** 2, Vt[0], jnp.ones((), bool)

  lam, v, _ = jax.lax.while_loop(lambda c: ~c[2], svd, (lam, v, ok))
  return jnp.where(bad, jnp.nan, jnp.sqrt(lam)), v


# ----------------------------------------------------------------------------
# Forward pass
# ----------------------------------------------------------------------------

def _logit_matrix(B: jax.Array, orientation: Orientation) -> jax.Array:
  if orientation == "query_left":
    return B
  if orientation == "key_left":
    return B.T  # x_j^T B x = x^T B^T x_j
  raise ValueError(f"orientation must be 'query_left' or 'key_left', got {orientation!r}")


def attention_features(B: jax.Array, Xq: jax.Array, X: jax.Array, mask: Optional[jax.Array] = None,
                       orientation: Orientation = "query_left") -> jax.Array:
  """sum_j softmax_j(x_q^T B x_j) x_j for every query column.

  Args:
    B: (d, d). Xq: (d, t) queries. X: (d, N) context tokens.
    mask: optional boolean (N, t); ``mask[j, q]`` says token j is visible to q.
  Returns:
    (d, t).
  """
  chex.assert_rank([B, Xq, X], 2)
  return bilinear_attention(_logit_matrix(B, orientation), Xq, X, X, kind="softmax", mask=mask)


def forward(params: dict, Xq: jax.Array, X: jax.Array, mask: Optional[jax.Array] = None,
            orientation: Orientation = "query_left") -> jax.Array:
  """f(x) = A sum_j softmax_j(x^T B x_j) x_j; Xq: (d, t), X: (d, N) -> (k, t)."""
  return mm(params["A"], attention_features(params["B"], Xq, X, mask, orientation))


def limit_forward(params: dict, Xq: jax.Array, Sigma: jax.Array) -> jax.Array:
  """The N -> infinity limit f_inf(x) = A Sigma B^T x; Xq: (d, t) -> (k, t)."""
  return mm(params["A"], Sigma, params["B"].T, Xq)


def finite_context_mse(params: dict, x: jax.Array, Sigma: jax.Array, N) -> jax.Array:
  """Spec §4.4: E||f_N(x) - A Sigma B^T x||^2 ~ e^s tr(A(Sigma + Sigma v v^T Sigma)A^T) / N.

  With v = B^T x and s = v^T Sigma v (the logit variance). x: (d,).
  """
  chex.assert_rank(x, 1)
  A, B = params["A"], params["B"]
  v = mm(B.T, x[:, None])  # (d, 1)
  Sv = mm(Sigma, v)
  s = jnp.sum(v * Sv)
  inner = Sigma + mm(Sv, Sv.T)
  return jnp.exp(s) * jnp.trace(mm(A, inner, A.T)) / N


# ----------------------------------------------------------------------------
# Population loss (Theorem 1) and the factorisation view
# ----------------------------------------------------------------------------

def population_residual(params: dict, Sigma: jax.Array, Sigma_half: jax.Array, M: jax.Array) -> jax.Array:
  """A Sigma B^T Sigma^{1/2} - M Sigma^{1/2}: (k, d)."""
  return mm(params["A"], Sigma, params["B"].T, Sigma_half) - mm(M, Sigma_half)


def population_loss(params: dict, Sigma: jax.Array, Sigma_half: jax.Array, M: jax.Array,
                    sigma_noise=0.0) -> jax.Array:
  """Theorem 1: 1/2 ||A Sigma B^T Sigma^{1/2} - M Sigma^{1/2}||_F^2 + 1/2 k sigma^2."""
  R = population_residual(params, Sigma, Sigma_half, M)
  k = M.shape[0]
  return 0.5 * jnp.sum(R * R) + 0.5 * k * sigma_noise ** 2


def population_grads_closed_form(params: dict, Sigma: jax.Array, M: jax.Array) -> dict:
  """Spec §4.1 (for tests): grad_A = (A S B^T - M) S B S, grad_B = S (A S B^T - M)^T A S."""
  A, B = params["A"], params["B"]
  E = mm(A, Sigma, B.T) - M
  return {"A": mm(E, Sigma, B, Sigma), "B": mm(Sigma, E.T, A, Sigma)}


def population_loss_mc(key: jax.Array, params: dict, Sigma_half: jax.Array, M: jax.Array, sigma_noise,
                       n_samples: int, batch: int = 100_000) -> tuple[jax.Array, jax.Array]:
  """Monte-Carlo estimate of 1/2 E||y - A Sigma B^T x||^2, y = Mx + eps.

  Draws x ~ N(0, Sigma) (as Sigma^{1/2} g) and eps ~ N(0, sigma^2 I_k) in
  ``n_samples // batch`` batches. Returns (mean, standard error).
  """
  Sigma = mm(Sigma_half, Sigma_half)
  W = mm(params["A"], Sigma, params["B"].T) - M  # prediction error map
  d, k = Sigma.shape[0], M.shape[0]
  n_batches = n_samples // batch

  def one(kk):
    kx, ke = jax.random.split(kk)
    x = mm(Sigma_half, jax.random.normal(kx, (d, batch), Sigma.dtype))
    r = mm(W, x) - sigma_noise * jax.random.normal(ke, (k, batch), Sigma.dtype)
    l = 0.5 * jnp.sum(r * r, axis=0)
    return jnp.stack([jnp.mean(l), jnp.mean(l * l)])

  m = jax.lax.map(one, jax.random.split(key, n_batches))
  mean, second = jnp.mean(m[:, 0]), jnp.mean(m[:, 1])
  return mean, jnp.sqrt(jnp.maximum(second - mean ** 2, 0.0) / (n_batches * batch))


def to_whitened(params: dict, Sigma_half: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(A, B) -> (U, V) = (A Sigma^{1/2}, Sigma^{1/2} B Sigma^{1/2})."""
  return mm(params["A"], Sigma_half), mm(Sigma_half, params["B"], Sigma_half)


def from_whitened(U: jax.Array, V: jax.Array, Sigma_half_inv: jax.Array) -> dict:
  """(U, V) -> (A, B) = (U Sigma^{-1/2}, Sigma^{-1/2} V Sigma^{-1/2})."""
  return {"A": mm(U, Sigma_half_inv), "B": mm(Sigma_half_inv, V, Sigma_half_inv)}


def factorization_loss(U: jax.Array, V: jax.Array, Mt: jax.Array) -> jax.Array:
  """1/2 ||U V^T - Mt||_F^2 (the whitened matrix-factorisation objective)."""
  R = mm(U, V.T) - Mt
  return 0.5 * jnp.sum(R * R)


def relative_population_loss(params: dict, Sigma: jax.Array, Sigma_half: jax.Array, M: jax.Array) -> jax.Array:
  """||A Sigma B^T Sigma^{1/2} - Mt||_F^2 / ||Mt||_F^2 (the E2 y-axis)."""
  R = population_residual(params, Sigma, Sigma_half, M)
  Mt = mm(M, Sigma_half)
  return jnp.sum(R * R) / jnp.sum(Mt * Mt)


# ----------------------------------------------------------------------------
# Empirical losses
# ----------------------------------------------------------------------------

def _chunked_queries(fn, Xq: jax.Array, extra: jax.Array, chunk: int) -> jax.Array:
  """Apply ``fn(Xq_chunk (d, c), extra_chunk (c, ...)) -> (k, c)`` to the
  query columns ``chunk`` at a time (padding the last chunk) under
  ``lax.map``, rematerialising each chunk in the backward pass. Returns (k, t).
  """
  d, t = Xq.shape
  c = max(1, min(chunk, t))
  n_chunks = -(-t // c)
  pad = n_chunks * c - t
  Xp = jnp.pad(Xq, ((0, 0), (0, pad))).reshape(d, n_chunks, c).transpose(1, 0, 2)  # (n_chunks, d, c)
  Ep = jnp.pad(extra, ((0, pad),) + ((0, 0),) * (extra.ndim - 1))
  Ep = Ep.reshape((n_chunks, c) + extra.shape[1:])
  out = jax.lax.map(jax.checkpoint(lambda a: fn(*a)), (Xp, Ep))  # (n_chunks, k, c)
  k = out.shape[1]
  return out.transpose(1, 0, 2).reshape(k, n_chunks * c)[:, :t]


def self_mode_predictions(params: dict, Xq: jax.Array, X: jax.Array, query_index: Optional[jax.Array] = None,
                          exclude_self_token: bool = False, orientation: Orientation = "query_left",
                          chunk: int = 256) -> jax.Array:
  """Predictions of queries ``Xq`` (d, t) attending over the training set X (d, n).

  Queries are processed ``chunk`` at a time (a ``lax.map`` over chunks, each
  chunk one (chunk, n) attention matrix) and each chunk is rematerialised in
  the backward pass, so memory is O(chunk * n), never n x n. With
  ``exclude_self_token``, query q does not see token ``query_index[q]`` (its
  own index in X; -1 for a fresh query). Returns (k, t).
  """
  chex.assert_rank([Xq, X], 2)
  t, n = Xq.shape[1], X.shape[1]
  if query_index is None:
    query_index = jnp.full((t,), -1, jnp.int32)
  keys = jnp.arange(n)

  def one(xq, qi):  # xq: (d, c), qi: (c,)
    mask = keys[:, None] != qi[None, :] if exclude_self_token else None
    return forward(params, xq, X, mask, orientation)

  return _chunked_queries(one, Xq, query_index, chunk)


def prompt_mode_predictions(params: dict, Xq: jax.Array, contexts: jax.Array, orientation: Orientation = "query_left",
                            chunk: int = 256) -> jax.Array:
  """"prompt" mode: query i (column i of Xq: (d, n)) attends over its own
  context ``contexts[i]`` (n, d, N). Returns (k, n)."""
  chex.assert_rank(contexts, 3)

  def one(xq, ctx):  # xq: (d, c), ctx: (c, d, N)
    f = jax.vmap(lambda x, C: forward(params, x[:, None], C, None, orientation)[:, 0])(xq.T, ctx)
    return f.T

  return _chunked_queries(one, Xq, contexts, chunk)


def half_mse(pred: jax.Array, Y: jax.Array) -> jax.Array:
  """(1 / 2n) sum_i ||y_i - pred_i||^2 for (k, n) arrays."""
  chex.assert_equal_shape([pred, Y])
  r = pred - Y
  return 0.5 * jnp.sum(r * r) / Y.shape[1]


def empirical_loss(params: dict, X: jax.Array, Y: jax.Array, context_mode: ContextMode = "self",
                   contexts: Optional[jax.Array] = None, exclude_self_token: bool = False,
                   orientation: Orientation = "query_left", chunk: int = 256) -> jax.Array:
  """Spec §4.3: L_n = (1/2n) sum_i ||y_i - f(x_i)||^2.

  ``"self"``: the context of every query is the whole training set X (d, n),
  the query itself included unless ``exclude_self_token``.
  ``"prompt"``: query i attends over ``contexts[i]`` (n, d, N).
  """
  if context_mode == "self":
    pred = self_mode_predictions(params, X, X, jnp.arange(X.shape[1]), exclude_self_token, orientation, chunk)
  elif context_mode == "prompt":
    pred = prompt_mode_predictions(params, X, contexts, orientation, chunk)
  else:
    raise ValueError(f"context_mode must be 'self' or 'prompt', got {context_mode!r}")
  return half_mse(pred, Y)


def empirical_moments(X: jax.Array, Y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Sigma_hat = X X^T / n (d, d) and C_hat = Y X^T / n (k, d)."""
  n = X.shape[1]
  return mm(X, X.T) / n, mm(Y, X.T) / n


def linearized_loss(params: dict, Sigma_hat: jax.Array, C_hat: jax.Array) -> jax.Array:
  """Spec §4.3 surrogate: 1/2 ||A S B^T S^{1/2} - C S^{-1/2}||_F^2 with S = Sigma_hat."""
  Sh, Shi = sqrtm_psd(Sigma_hat)
  R = mm(params["A"], Sigma_hat, params["B"].T, Sh) - mm(C_hat, Shi)
  return 0.5 * jnp.sum(R * R)


def self_mode_grads_closed_form(params: dict, X: jax.Array, Y: jax.Array) -> dict:
  """Spec §4.3 closed-form gradients of L_n in "self" mode (for tests only).

  In the spec's row convention (X: n x d): Lg = X B X^T, P = row-softmax,
  Z = P X, R = Z A^T - Y, G = R A / n, grad_A = R^T Z / n,
  H = P * (G X^T - rowsum(Z * G) 1^T), grad_B = X^T H X.
  """
  Xr, Yr = X.T, Y.T
  n = Xr.shape[0]
  A, B = params["A"], params["B"]
  P = jax.nn.softmax(mm(Xr, B, Xr.T), axis=1)
  Z = mm(P, Xr)
  R = mm(Z, A.T) - Yr
  G = mm(R, A) / n
  H = P * (mm(G, Xr.T) - jnp.sum(Z * G, axis=1, keepdims=True))
  return {"A": mm(R.T, Z) / n, "B": mm(Xr.T, H, Xr)}


# ----------------------------------------------------------------------------
# Synthetic task (spec §3, §7.2)
# ----------------------------------------------------------------------------

def random_orthogonal(key: jax.Array, d: int, dtype=None) -> jax.Array:
  """A Haar-random (d, d) orthogonal matrix (QR with sign correction)."""
  G = jax.random.normal(key, (d, d), dtype or jnp.result_type(float))
  Q, R = jnp.linalg.qr(G)
  return Q * jnp.sign(jnp.diagonal(R))[None, :]


def make_sigma(key: jax.Array, d: int, lo, hi) -> jax.Array:
  """Sigma = O diag(linspace(lo, hi, d)) O^T with a random rotation O."""
  O = random_orthogonal(key, d)
  w = jnp.linspace(lo, hi, d) if d > 1 else jnp.full((1,), hi)
  return mm(O * w[None, :], O.T)


def make_target(key: jax.Array, k: int, d: int, kappa, rank: Optional[int] = None) -> jax.Array:
  """M = P diag(geomspace(1, 1/kappa, r)) R^T (k, d); r = rank or min(k, d).

  ``kappa`` may be traced (the spectrum is kappa^{-i/(r-1)}).
  """
  r = min(k, d) if rank is None else rank
  kp, kr = jax.random.split(key)
  P = random_orthogonal(kp, k)[:, :r]
  R = random_orthogonal(kr, d)[:, :r]
  expo = jnp.arange(r) / max(r - 1, 1)
  s = jnp.asarray(kappa, P.dtype) ** (-expo)
  return mm(P * s[None, :], R.T)


def sample_regression(key: jax.Array, Sigma_half: jax.Array, M: jax.Array, sigma_noise, n: int
                      ) -> tuple[jax.Array, jax.Array]:
  """x ~ N(0, Sigma), y = M x + eps with eps ~ N(0, sigma^2 I): X (d, n), Y (k, n)."""
  kx, ke = jax.random.split(key)
  d, k = Sigma_half.shape[0], M.shape[0]
  X = mm(Sigma_half, jax.random.normal(kx, (d, n), Sigma_half.dtype))
  Y = mm(M, X) + sigma_noise * jax.random.normal(ke, (k, n), Sigma_half.dtype)
  return X, Y
