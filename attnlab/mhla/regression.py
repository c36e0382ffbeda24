"""Algorithm 1 of Yau et al. (MHLA learning via regression), streamed in ψ-space.

The paper's regression (Eq. 3) over the d^4 entries of W is exactly the
multi-output least-squares problem ``y ≈ p ℋ(Z)`` over ψ = d^2(d+1)/2
deduplicated features (spec §3.5), so this module never forms the d^4-sized
design nor the singular d^3 x d^3 Gram:

1. :func:`normal_equations` accumulates ``A = Σ ℋℋ^T`` (ψ, ψ) and
   ``B = Σ ℋ y^T`` (ψ, d_out) in a ``fori_loop`` over chunks of sequences
   (memory O(ψ^2 + chunk ψ^2/d^2)); run it under ``jax.enable_x64(True)``.
2. :func:`solve` solves ``A P = B`` (P = p^T, (ψ, d_out)) with one of
   ``cholesky`` (+ one refinement step; falls back to ``eigh_pinv`` if the
   factorisation is not finite), ``eigh_pinv`` (minimum-norm, relative cutoff),
   ``lstsq`` (on the explicit N x ψ design; small problems only), ``cg`` and
   ``gd`` (fixed budgets of iterations on the Gram, started at 0, step
   1/λ_max for gd). ``ridge`` adds ``ridge * I`` to A (default 0: plain OLS).
3. :func:`heads_from_W` folds ``Ŵ = W_from_p(p̂)`` into heads by SVD with √σ on
   each side (Alg. 1 steps 5-7); :func:`compress_heads` finds a rank-r
   representative by alternating projections.
4. :func:`certificate`: the spectrum of Λ_D (eigenvalues only, LAPACK
   ``syevd`` with ``jobz = 'N'`` on CPU), computed after the solve.

Every sequence contributes either its last-token label (``labels="last"``,
Ys: (N, d_out)) or all its prefixes (``labels="all"``, Ys: (N, d_out, n), the
Sec. 4.1 causal labels).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from attnlab.core.linalg import eigvalsh
from attnlab.mhla import features as F

_HI = jax.lax.Precision.HIGHEST
SOLVERS = ("cholesky", "eigh_pinv", "lstsq", "cg", "gd")
MAX_D = 32
MAX_D_LSTSQ = 16


def check_d(d: int) -> None:
  """Refuse d > 32: the ψ x ψ Gram would need ≥ 132 GiB in float64 at d = 64."""
  if d > MAX_D:
    psi = F.psi_dim(d)
    raise ValueError(f"d = {d} > {MAX_D} is refused: the psi x psi Gram (psi = {psi}) needs "
                     f"{psi * psi * 8 / 2**30:.0f} GiB in float64")


class NormalEquations(NamedTuple):
  """A = Σ ℋℋ^T: (ψ, ψ); B = Σ ℋ y^T: (ψ, d_out); yy = Σ ‖y‖^2; ysum = Σ y: (d_out,);
  count: the number of (sequence, position) samples."""
  A: jax.Array
  B: jax.Array
  yy: jax.Array
  ysum: jax.Array
  count: jax.Array


def _chunk_rows(Zc, Yc, Lc, labels: str):
  """Features and labels of a chunk: (m, ψ), (m, d_out)."""
  if labels == "last":
    H = F.features_H_batch(Zc, Lc)
    return H, Yc
  H = jax.vmap(F.prefix_features_H)(Zc)  # (c, n, ψ)
  H, Y = _mask_beyond_lengths(Lc, H, jnp.swapaxes(Yc, 1, 2))  # (c, n, ψ), (c, n, d_out)
  return H.reshape(-1, H.shape[-1]), Y.reshape(-1, Y.shape[-1])


def _mask_beyond_lengths(Lc, *xs):
  """Zero each (c, n, ...) array at prefix positions >= its sequence's length (Lc: (c,) or None)."""
  if Lc is None:
    return xs
  n = xs[0].shape[1]
  mask = (jnp.arange(n)[None, :] < Lc[:, None])[..., None]
  return tuple(x * mask.astype(x.dtype) for x in xs)


_PRODUCT_BYTES = 64 * 2**20


def _chunk_factors(Zc, Yc, Lc, labels: str):
  """The Kronecker factors of a chunk's feature rows, ℋ_r = g_r ⊗ z_r:
  g (m, d(d+1)/2) (:func:`features.gram_factor`), z (m, d), and labels (m, d_out).
  Masked positions (``labels="all"`` beyond a length) get z = 0 and y = 0."""
  if labels == "last":
    zn = jax.vmap(F.last_token)(Zc) if Lc is None else jax.vmap(F.last_token)(Zc, Lc)
    return F.gram_factor(jnp.einsum("cin,cjn->cij", Zc, Zc, precision=_HI)), zn, Yc
  S = jax.vmap(F.prefix_grams)(Zc)  # (c, n, d, d)
  z, Y = _mask_beyond_lengths(Lc, jnp.swapaxes(Zc, 1, 2), jnp.swapaxes(Yc, 1, 2))  # (c, n, d), (c, n, d_out)
  g = F.gram_factor(S)
  return g.reshape(-1, g.shape[-1]), z.reshape(-1, z.shape[-1]), Y.reshape(-1, Y.shape[-1])


def _gram_from_products(M: jax.Array, P: int, d: int) -> jax.Array:
  """A = Σ ℋℋ^T (ψ, ψ) from M[(p<=q), (l<=m)] = Σ g_p g_q z_l z_m (triu orders)."""
  ip = np.zeros((P, P), np.int32)
  ip[np.triu_indices(P)] = np.arange(P * (P + 1) // 2)
  ip = np.maximum(ip, ip.T)
  il = np.zeros((d, d), np.int32)
  il[np.triu_indices(d)] = np.arange(d * (d + 1) // 2)
  il = np.maximum(il, il.T)
  A = M[ip[:, None, :, None], il[None, :, None, :]]  # (P, d, P, d)
  return A.reshape(P * d, P * d)


def _scan_chunks(body, init, Zs: jax.Array, Ys: jax.Array, lengths: Optional[jax.Array], chunk: int):
  """Fold ``body(carry, (Z, Y, L)) -> carry`` over consecutive chunks of ``chunk`` sequences.

  The full chunks are cut from the inputs inside the loop (``dynamic_slice``),
  so no padded copy of Zs is made. A last partial chunk is the final ``chunk``
  sequences with the ones already counted zeroed: a zero sequence has zero
  features and a zero label, so it adds nothing (L is kept >= 1).
  """
  N = Zs.shape[0]
  Ys = Ys.astype(Zs.dtype)
  L = None if lengths is None else jnp.maximum(lengths, 1)
  n_full, rem = divmod(N, chunk)

  def cut(start):
    sl = lambda x: None if x is None else jax.lax.dynamic_slice_in_dim(x, start, chunk)
    return sl(Zs), sl(Ys), sl(L)

  carry = jax.lax.fori_loop(0, n_full, lambda i, c: body(c, cut(i * chunk)), init)
  if rem:
    Z, Y, Lc = cut(N - chunk)
    keep = jnp.arange(chunk) >= chunk - rem
    Z = Z * keep[:, None, None].astype(Z.dtype)
    Y = Y * keep.reshape((chunk,) + (1,) * (Y.ndim - 1)).astype(Y.dtype)
    carry = body(carry, (Z, Y, Lc))
  return carry


def normal_equations(Zs: jax.Array, Ys: jax.Array, lengths: Optional[jax.Array] = None,
                     labels: str = "last", chunk: int = 256) -> NormalEquations:
  """Stream the normal equations over chunks of sequences (a ``fori_loop``).

  Args:
    Zs: (N, d, n) sequences (zero-padded beyond ``lengths``).
    Ys: (N, d_out) last-token labels (``labels="last"``) or (N, d_out, n)
      labels of every prefix (``labels="all"``).
    lengths: optional (N,) int true lengths.
    labels: ``"last"`` or ``"all"``.
    chunk: sequences per loop step (a last partial chunk is handled exactly,
      see :func:`_scan_chunks`); capped so that one chunk's products g_p g_q
      take at most 64 MiB.

  The Gram is accumulated through the Kronecker structure of ℋ: with
  g = (G[j<k], diag G) ∈ R^P (P = d(d+1)/2) and z the last token, ℋ = g ⊗ z
  (row-major, Alg. 2's order), so A[(p,l),(q,m)] = Σ g_p g_q z_l z_m. Only the
  distinct products are summed, M = Σ (g_p g_q)_{p<=q} (z_l z_m)_{l<=m}^T, a
  (P(P+1)/2) x (d(d+1)/2) matrix (about ψ²/4 entries and 2N·ψ²/4 flops
  instead of 2N·ψ²), and A is gathered from M; it is exactly symmetric.
  """
  chex.assert_rank(Zs, 3)
  N, d, n = Zs.shape
  chex.assert_rank(Ys, 2 if labels == "last" else 3)
  psi = F.psi_dim(d)
  d_out = Ys.shape[1]
  rows = 1 if labels == "last" else n  # feature rows per sequence
  P = d * (d + 1) // 2
  chunk = max(1, min(chunk, N, _PRODUCT_BYTES // (rows * (P * (P + 1) // 2) * Zs.dtype.itemsize)))
  pu, pv = np.triu_indices(P)  # the distinct products g_p g_q, p <= q
  lu, lv = np.triu_indices(d)  # the distinct products z_l z_m, l <= m

  def body(carry, xs):
    M, B, yy, ys = carry
    Z, Y, L = xs
    g, z, Yr = _chunk_factors(Z, Y, L, labels)
    M = M + jnp.einsum("mi,mj->ij", g[:, pu] * g[:, pv], z[:, lu] * z[:, lv], precision=_HI)
    B = B + jnp.einsum("mp,ml,ma->pla", g, z, Yr, precision=_HI).reshape(psi, -1)
    return M, B, yy + jnp.sum(Yr * Yr), ys + jnp.sum(Yr, axis=0)

  dt = Zs.dtype
  init = (jnp.zeros((len(pu), len(lu)), dt), jnp.zeros((psi, d_out), dt), jnp.zeros((), dt),
          jnp.zeros((d_out,), dt))
  M, B, yy, ys = _scan_chunks(body, init, Zs, Ys, lengths, chunk)
  A = _gram_from_products(M, P, d)
  if labels == "last":
    count = jnp.asarray(N, dt)
  else:
    count = jnp.asarray(N * n, dt) if lengths is None else jnp.sum(lengths).astype(dt)
  return NormalEquations(A, B, yy, ys, count)


def design(Zs: jax.Array, Ys: jax.Array, lengths: Optional[jax.Array] = None,
           labels: str = "last") -> tuple[jax.Array, jax.Array]:
  """The explicit (M, ψ) design and (M, d_out) targets (for ``lstsq`` only)."""
  return _chunk_rows(Zs, Ys.astype(Zs.dtype), lengths, labels)


# --- solvers ------------------------------------------------------------------


def _eigh_pinv(A: jax.Array, B: jax.Array, rtol: float) -> jax.Array:
  """Minimum-norm solution via eigh with eigenvalues <= rtol * λ_max dropped."""
  w, U = jnp.linalg.eigh(A)
  keep = w > rtol * w[-1]
  winv = jnp.where(keep, 1.0 / jnp.where(keep, w, 1.0), 0.0)
  UtB = jnp.einsum("pi,pa->ia", U, B, precision=_HI)
  return jnp.einsum("pi,ia->pa", U, winv[:, None] * UtB, precision=_HI)


def _matmul(A, P):
  return jnp.einsum("pq,qa->pa", A, P, precision=_HI)


def solve(A: jax.Array, B: jax.Array, solver: str = "cholesky", ridge=0.0, iters: int = 2000,
          pinv_rtol: float = 1e-12, lam_max: Optional[jax.Array] = None) -> jax.Array:
  """Solve ``(A + ridge I) P = B``; A: (ψ, ψ) SPD(-ish), B: (ψ, d_out) -> P: (ψ, d_out).

  ``solver``: ``cholesky`` (one refinement step; eigh_pinv fallback if not
  finite), ``eigh_pinv``, ``cg`` (``iters`` iterations per output column),
  ``gd`` (``iters`` steps of size 1/λ_max(A) from 0). For ``lstsq`` use
  :func:`fit_p` (it needs the design). ``ridge`` may be traced.
  """
  chex.assert_rank([A, B], 2)
  psi = A.shape[0]
  Ar = A + ridge * jnp.eye(psi, dtype=A.dtype)
  if solver == "cholesky":
    c = jsl.cho_factor(Ar, lower=True)
    P = jsl.cho_solve(c, B)
    P = P + jsl.cho_solve(c, B - _matmul(Ar, P))
    ok = jnp.all(jnp.isfinite(P))
    return jax.lax.cond(ok, lambda: P, lambda: _eigh_pinv(Ar, B, pinv_rtol))
  if solver == "eigh_pinv":
    return _eigh_pinv(Ar, B, pinv_rtol)
  if solver == "gd":
    lm = eigvalsh(Ar)[-1] if lam_max is None else lam_max + ridge
    step = 1.0 / lm

    def body(_, P):
      return P - step * (_matmul(Ar, P) - B)

    return jax.lax.fori_loop(0, iters, body, jnp.zeros_like(B))
  if solver == "cg":
    def one(b):
      x, _ = jax.scipy.sparse.linalg.cg(lambda v: jnp.dot(Ar, v, precision=_HI), b,
                                        x0=jnp.zeros_like(b), tol=1e-15, maxiter=iters)
      return x

    return jax.vmap(one, in_axes=1, out_axes=1)(B)
  raise ValueError(f"solver must be one of {SOLVERS} (lstsq needs fit_p), got {solver!r}")


class Certificate(NamedTuple):
  """λ_min, λ_max of Λ_D = A / count (built from ℋ), their ratio, N/ψ, the verdict,
  and the null-space dimension (eigenvalues <= tol * λ_max)."""
  lambda_min: jax.Array
  lambda_max: jax.Array
  ratio: jax.Array
  n_over_psi: jax.Array
  identifiable: jax.Array
  null_dim: jax.Array


def certificate(A: jax.Array, count, tol: float = 1e-10) -> Certificate:
  """The identifiability certificate of Lemma 2.3 from the ℋ Gram A: (ψ, ψ).

  Λ_D = A / count; identifiable iff λ_min > tol * λ_max (the spectrum comes
  from :func:`attnlab.core.linalg.eigvalsh`, eigenvalues only; it returns
  ~-1e-15 for a singular Λ, hence the relative test).
  """
  chex.assert_rank(A, 2)
  psi = A.shape[0]
  lam = eigvalsh(A / count)
  lmin, lmax = lam[0], lam[-1]
  return Certificate(lmin, lmax, lmin / lmax, jnp.asarray(count, A.dtype) / psi, lmin > tol * lmax,
                     jnp.sum(lam <= tol * lmax))


class Fit(NamedTuple):
  """The output of :func:`fit_p`: p̂: (d_out, ψ), the normal equations, the certificate."""
  p: jax.Array
  neq: NormalEquations
  cert: Certificate


def fit_p(Zs: jax.Array, Ys: jax.Array, lengths: Optional[jax.Array] = None, *, labels: str = "last",
          solver: str = "cholesky", ridge=0.0, iters: int = 2000, pinv_rtol: float = 1e-12,
          certificate_tol: float = 1e-10, chunk: int = 256) -> Fit:
  """Algorithm 1 steps 2-4 in ψ-space: returns p̂ (d_out, ψ) and the certificate.

  Run under ``jax.enable_x64(True)`` with float64 inputs for exact recovery.
  """
  d = Zs.shape[1]
  check_d(d)
  neq = normal_equations(Zs, Ys, lengths, labels, chunk)
  if solver == "gd":  # its step size needs λ_max first
    cert = certificate(neq.A, neq.count, certificate_tol)
    P = solve(neq.A, neq.B, solver, ridge, iters, pinv_rtol, lam_max=cert.lambda_max * neq.count)
    return Fit(P.T, neq, cert)
  if solver == "lstsq":
    if d > MAX_D_LSTSQ:
      raise ValueError(f"solver 'lstsq' builds the N x psi design; refused for d > {MAX_D_LSTSQ}")
    Hd, Yd = design(Zs, Ys, lengths, labels)
    P = jnp.linalg.lstsq(Hd, Yd, rcond=pinv_rtol)[0]  # ridge is not applied on this path
  else:
    P = solve(neq.A, neq.B, solver, ridge, iters, pinv_rtol)
  # XLA would run the solve's and the certificate's LAPACK calls concurrently;
  # each already uses every core, and together they oversubscribe the CPU
  # (measured 2x slower at d = 12 on 2 cores). The barrier orders them.
  P, A = jax.lax.optimization_barrier((P, neq.A))
  cert = certificate(A, neq.count, certificate_tol)
  return Fit(P.T, neq, cert)


# --- heads --------------------------------------------------------------------


def heads_from_W(W: jax.Array, d: int, rtol: float = 1e-10):
  """Alg. 1 steps 5-7: SVD ``W = Σ σ_h u_h v_h^T``, A_h = √σ_h u_h, B_h = √σ_h v_h,
  V̂_h = Fold(A_h) (d_out, d), Q̂_h = Fold(B_h) (d, d), row-major.

  Shapes are static: returns V: (K, d_out, d), Q: (K, d, d) with
  K = min(d_out d, d^2), heads with σ_h <= rtol σ_1 zeroed, and Ĥ (the count
  of kept heads).
  """
  chex.assert_rank(W, 2)
  d_out = W.shape[0] // d
  U, s, Vt = jnp.linalg.svd(W, full_matrices=False)
  keep = s > rtol * s[0]
  r = jnp.sqrt(jnp.where(keep, s, 0.0))
  K = s.shape[0]
  V = (U * r[None, :]).T.reshape(K, d_out, d)
  Q = (Vt * r[:, None]).reshape(K, d, d)
  return V, Q, jnp.sum(keep)


def _rank_project(X: jax.Array, r: int) -> jax.Array:
  U, s, Vt = jnp.linalg.svd(X, full_matrices=False)
  return jnp.einsum("ih,h,hj->ij", U[:, :r], s[:r], Vt[:r], precision=_HI)


@functools.partial(jax.jit, static_argnames=("d", "r", "iters"))
def compress_heads(W: jax.Array, d: int, r: int, iters: int = 500):
  """A rank-r W_r with sym(W_r) ≈ sym(W), by alternating projections.

  Repeats ``X <- P_rank-r(X); X <- X - sym(X) + sym(W)`` (the second step is
  the orthogonal projection onto the affine set {sym(X) = sym(W)}). A heuristic
  (spec §3.4), not in the paper. Returns ``(W_r, residual)`` with W_r exactly of
  rank ≤ r and ``residual = ‖sym(W_r) − sym(W)‖_F`` (the affine residual).
  The heads of W_r are ``heads_from_W(W_r, d)``.
  """
  S = F.sym_W(W, d)

  def body(_, X):
    X = _rank_project(X, r)
    return X - F.sym_W(X, d) + S

  X = jax.lax.fori_loop(0, iters, body, W)
  Wr = _rank_project(X, r)
  return Wr, jnp.sqrt(jnp.sum((F.sym_W(Wr, d) - S) ** 2))


def streamed_sse(p: jax.Array, Zs: jax.Array, Ys: jax.Array, lengths: Optional[jax.Array] = None,
                 labels: str = "last", chunk: int = 256):
  """Σ ‖p ℋ − y‖^2, Σ ‖y − ȳ‖^2 (centred per output coordinate) and the sample count,
  computed directly from the residuals (no cancellation), streamed over chunks."""
  N = Zs.shape[0]
  chunk = max(1, min(chunk, N))

  def body(carry, xs):
    sse, ys, yy = carry
    H, Yr = _chunk_rows(*xs, labels)
    R = F.predict_p(p, H) - Yr
    return sse + jnp.sum(R * R), ys + jnp.sum(Yr, 0), yy + jnp.sum(Yr * Yr)

  dt = Zs.dtype
  d_out = p.shape[0]
  sse, ys, yy = _scan_chunks(body, (jnp.zeros((), dt), jnp.zeros((d_out,), dt), jnp.zeros((), dt)),
                             Zs, Ys, lengths, chunk)
  if labels == "last":
    count = jnp.asarray(N, dt)
  else:
    count = jnp.asarray(N * Zs.shape[2], dt) if lengths is None else jnp.sum(lengths).astype(dt)
  var = yy - jnp.sum(ys * ys) / count
  return sse, var, count


def rel_mse(p, Zs, Ys, lengths=None, labels="last", chunk=256):
  """Σ‖p ℋ − y‖² / Σ‖y − ȳ‖² (MSE normalised by Var(y), spec §9.A3)."""
  sse, var, _ = streamed_sse(p, Zs, Ys, lengths, labels, chunk)
  return sse / var
