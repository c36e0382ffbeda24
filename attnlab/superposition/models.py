"""Student models of the teacher-student toy model, their losses and diagnostics.

Shapes: ``N`` features, latent width ``K``, batch ``B``; ``x: [B, N]``.

==================  ===============================  =========================
student             forward  (rows are samples)       parameters
==================  ===============================  =========================
``tied_relu``       ``relu(x W^T W + c)``             ``W [K, N]``, ``c [N]``
``tied_relu_nobias````relu(x W^T W)``                 ``W [K, N]``
``tied_linear``     ``x W^T W``                       ``W [K, N]``
``untied_relu``     ``relu(x E^T D^T + c)``           ``E [K, N]``, ``D [N, K]``, ``c [N]``
``linear_full``     ``x S^T``                         ``S [N, N]``
==================  ===============================  =========================

Column ``w_i = W[:, i]`` is feature i's embedding. The effective diagonal
(what the per-feature theory calls ``s_i``) is ``||w_i||^2`` (tied),
``(D E)_ii`` (untied) or ``S_ii`` (full). The forward pass never forms the
``N x N`` matrix ``W^T W`` (memory ``O(B N + K N)``); only the diagnostics do.

Loss (per sample, averaged over the batch): ``sum_i w_i (yhat_i - y_i)^2`` with
``reduction='sum'``, divided by N with ``reduction='mean'`` (the sibling
code's ``nn.MSELoss``); ``(y_i, w_i) = (I_i x_i, 1)`` or ``(x_i, I_i)``.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from attnlab.superposition import data as sdata

STUDENTS = ("tied_relu", "tied_relu_nobias", "tied_linear", "untied_relu", "linear_full")
HAS_BIAS = {"tied_relu": True, "tied_relu_nobias": False, "tied_linear": False, "untied_relu": True,
            "linear_full": False}
LINEAR = ("tied_linear", "linear_full")  # students with a closed-form population loss
REDUCTIONS = ("sum", "mean")
INIT_DISTS = ("gaussian", "normalized", "orthogonal")


def _init_matrix(key: jax.Array, shape: tuple[int, int], sigma0, init_dist: str, dtype) -> jax.Array:
  """One ``[r, c]`` weight matrix whose entries have root-mean-square ``sigma0``.

  * ``gaussian`` (the spec's): i.i.d. ``N(0, sigma0^2)``; a column's squared norm
    is ``sigma0^2 chi^2_r`` (mean ``r sigma0^2``) and columns overlap by
    ``O(sigma0^2 sqrt(r))``.
  * ``normalized``: the same draw with every column rescaled to squared norm
    exactly ``r sigma0^2`` (no spread of ``s_i(0)``; overlaps kept).
  * ``orthogonal``: ``sigma0 sqrt(max(r, c))`` times the orthogonal factor of the
    same draw (orthonormal columns if ``r >= c``, rows otherwise): for ``r = c``
    every column has squared norm ``r sigma0^2`` and distinct columns are exactly
    orthogonal.
  """
  m = sigma0 * jax.random.normal(key, shape, dtype)
  if init_dist == "gaussian":
    return m
  r, c = shape
  if init_dist == "normalized":
    return m * (jnp.sqrt(jnp.asarray(r, dtype)) * sigma0 / jnp.linalg.norm(m, axis=0))[None, :]
  tall = m if r >= c else m.T
  q, rr = jnp.linalg.qr(tall)
  q = q * jnp.where(jnp.diag(rr) < 0, -1.0, 1.0).astype(dtype)[None, :]   # the unique Q with diag(R) > 0
  q = q if r >= c else q.T
  return jnp.sqrt(jnp.asarray(max(r, c), dtype)) * sigma0 * q


def init_params(key: jax.Array, student: str, n: int, k: int, sigma0, bias_init=0.0,
                dtype=jnp.float32, init_dist: str = "gaussian") -> dict:
  """Small random init: weights with entries of root-mean-square ``sigma0``, bias ``c = bias_init``.

  The default ``init_dist='gaussian'`` draws every weight i.i.d. ``N(0, sigma0^2)`` (the spec's init).

  ``sigma0`` and ``bias_init`` may be traced. With the tied students
  ``s_i(0) = ||w_i||^2 ~ K sigma0^2``. ``init_dist`` (see :func:`_init_matrix`)
  keeps that scale and changes only the spread and overlaps of the columns;
  the spec's init is ``gaussian``.
  """
  if init_dist not in INIT_DISTS:
    raise ValueError(f"init_dist must be one of {INIT_DISTS}, got {init_dist!r}")
  kw, kd = jax.random.split(key)
  sigma0 = jnp.asarray(sigma0, dtype)
  mat = lambda kk, shape: _init_matrix(kk, shape, sigma0, init_dist, dtype)
  if student == "linear_full":
    return {"S": mat(kw, (n, n))}
  params = {"W": mat(kw, (k, n))}
  if student == "untied_relu":
    params = {"E": params["W"], "D": mat(kd, (n, k))}
  if HAS_BIAS[student]:
    params["c"] = jnp.full((n,), bias_init, dtype)
  return params


def forward(params: dict, x: jax.Array, student: str) -> jax.Array:
  """``yhat: [B, N]`` for ``x: [B, N]`` (see the module table)."""
  chex.assert_rank(x, 2)
  if student == "linear_full":
    return x @ params["S"].T
  if student == "untied_relu":
    z = (x @ params["E"].T) @ params["D"].T
  else:
    W = params["W"]
    z = (x @ W.T) @ W
  if "c" in params:
    z = z + params["c"][None, :]
  if student in ("tied_relu", "tied_relu_nobias", "untied_relu"):
    z = jax.nn.relu(z)
  return z


def batch_loss(params: dict, x: jax.Array, imp: jax.Array, student: str, mode: str,
               reduction: str = "sum") -> jax.Array:
  """Monte-Carlo loss on a batch: mean over rows of ``sum_i w_i (yhat_i - y_i)^2``."""
  y_scale, w = sdata.targets_and_weights(imp, mode)
  err = forward(params, x, student) - x * y_scale[None, :]
  per_sample = jnp.sum(w[None, :] * err * err, axis=1)
  loss = jnp.mean(per_sample)
  return loss / x.shape[1] if reduction == "mean" else loss


def _gather_rows(mat_t: jax.Array, ev: sdata.Events) -> jax.Array:
  """``x @ mat_t`` for a sparse batch: ``[B, D]`` from ``mat_t: [N, D]``.

  A gather of the ``E`` event rows and a sorted segment sum (``O(E D)``);
  the backward pass is the matching scatter-add into ``mat_t``."""
  rows = ev.val[:, None] * mat_t[ev.feat]                          # [E, D]
  return jax.ops.segment_sum(rows, ev.row, num_segments=ev.batch, indices_are_sorted=True)


def forward_sparse(params: dict, ev: sdata.Events, student: str) -> jax.Array:
  """``yhat: [B, N]`` for a sparse batch ``ev`` (see ``data.sample_events``).

  Same model as :func:`forward`; the input layer is a gather of the ``E``
  event columns (``O(E K)``) instead of a ``B x N x K`` product. The output
  layer stays dense (``O(B K N)``): a ReLU output is not sparse.
  """
  if student == "linear_full":
    return _gather_rows(params["S"].T, ev)
  enc = params["E"] if student == "untied_relu" else params["W"]
  h = _gather_rows(enc.T, ev)                                      # [B, K]
  z = h @ (params["D"].T if student == "untied_relu" else params["W"])
  if "c" in params:
    z = z + params["c"][None, :]
  if student in ("tied_relu", "tied_relu_nobias", "untied_relu"):
    z = jax.nn.relu(z)
  return z


def batch_loss_sparse(params: dict, ev: sdata.Events, imp: jax.Array, student: str,
                      mode: str, reduction: str = "sum") -> jax.Array:
  """:func:`batch_loss` for a sparse batch, without forming the dense target:
  ``sum_i w_i (yhat_i - y_i)^2 = sum_i w_i yhat_i^2 + sum_{active j} w_j (y_j^2 - 2 yhat_j y_j)``."""
  y_scale, w = sdata.targets_and_weights(imp, mode)
  yhat = forward_sparse(params, ev, student)
  y = ev.val * y_scale[ev.feat]                    # [E]; 0 on dead/duplicate events
  yhat_act = yhat[ev.row, ev.feat]
  total = jnp.sum(w[None, :] * yhat * yhat) + jnp.sum(w[ev.feat] * (y * y - 2.0 * yhat_act * y))
  loss = total / ev.batch
  return loss / yhat.shape[1] if reduction == "mean" else loss


def effective_matrix(params: dict, student: str) -> jax.Array:
  """The linear map ``M: [N, N]`` (``yhat = x M^T`` before ReLU/bias). Materializes N x N."""
  if student == "linear_full":
    return params["S"]
  if student == "untied_relu":
    return params["D"] @ params["E"]
  W = params["W"]
  return W.T @ W


def effective_diag(params: dict, student: str) -> jax.Array:
  """``s_i``: ``||w_i||^2`` (tied), ``(D E)_ii`` (untied), ``S_ii`` (full). ``[N]``."""
  if student == "linear_full":
    return jnp.diagonal(params["S"])
  if student == "untied_relu":
    return jnp.sum(params["D"] * params["E"].T, axis=1)
  return jnp.sum(params["W"] ** 2, axis=0)


def population_loss_linear(M: jax.Array, p: jax.Array, imp: jax.Array, mode: str,
                           reduction: str = "sum") -> jax.Array:
  """Exact population loss of a linear student ``yhat = x M^T`` (spec §4).

  ``L = sum_i w_i [(M - T) C (M - T)^T]_ii`` with ``T = diag(y_scale)`` and
  ``C = diag(lambda - p^2) + p p^T``, evaluated without forming C:
  ``[(M-T) C (M-T)^T]_ii = sum_j (M-T)_ij^2 (lambda_j - p_j^2) + ((M-T) p)_i^2``.
  """
  chex.assert_rank(M, 2)
  y_scale, w = sdata.targets_and_weights(imp, mode)
  R = M - jnp.diag(y_scale)
  lam = sdata.second_moment(p)
  per_out = R ** 2 @ (lam - p ** 2) + (R @ p) ** 2
  loss = jnp.sum(w * per_out)
  return loss / M.shape[0] if reduction == "mean" else loss


def embeddings(params: dict, student: str) -> jax.Array:
  """Feature embeddings as columns ``[K, N]`` (W, E, or S for the full student)."""
  if student == "linear_full":
    return params["S"]
  if student == "untied_relu":
    return params["E"]
  return params["W"]


def diagnostics(params: dict, student: str, y_scale: jax.Array) -> dict:
  """Superposition diagnostics (spec §9 item 15), all 0-d.

  * ``represented``: ``#{i : s_i > 0.5 y_i}`` (the "features learned" count; also
    the traveling-wave front ``i*`` when learning is sequential);
  * ``interference``: mean over i of ``sum_{j != i} (w_i.w_j)^2 / (|w_i|^2 |w_j|^2)``;
  * ``dims_per_feature``: ``K / ||W||_F^2``;
  * ``dead``: fraction of features with ``c_i < 0`` and ``s_i < 1e-3`` (0 without bias).
  """
  s = effective_diag(params, student)
  E = embeddings(params, student)
  norms2 = jnp.sum(E ** 2, axis=0)
  # sum_{i != j} cos^2(w_i, w_j) = ||U U^T||_F^2 - sum_i ||u_i||^4 with u_i = w_i / |w_i|: a K x K
  # product instead of the N x N Gram matrix
  U = E / jnp.sqrt(norms2 + 1e-30)[None, :]
  G = U @ U.T
  interference = (jnp.sum(G * G) - jnp.sum(jnp.sum(U * U, axis=0) ** 2)) / E.shape[1]
  out = {
      "represented": jnp.sum(s > 0.5 * y_scale).astype(jnp.float32),
      "interference": interference,
      "dims_per_feature": E.shape[0] / jnp.sum(norms2),
      "dead": jnp.mean((params["c"] < 0) & (s < 1e-3)).astype(jnp.float32) if "c" in params
              else jnp.zeros((), jnp.float32),
  }
  if "c" in params:
    out["bias_mean"] = jnp.mean(params["c"])
  return out
