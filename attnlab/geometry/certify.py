"""Certified Jacobian-rank lower bounds by ball arithmetic (softmax and lightning).

Why this exists: the float64 estimator (:mod:`attnlab.geometry.estimator`)
decides the rank from a singular-value gap, and for deep narrow softmax stacks
(8-10 layers of width 2-5, several a_i = 1) the true trailing singular values
of J fall below float64 resolution at every point we tried: the estimate is
flagged unreliable with gaps of 1e1-1e5. Softmax networks are not polynomial,
so the exact modular rank of :mod:`attnlab.geometry.exact` does not apply.

What this computes: at one point (weights ``theta`` and inputs ``X``, float64
values, which are exact binary rationals), the Jacobian of the network is
computed in **ball arithmetic** (Arb, via ``python-flint``) at ``prec`` bits,
forward mode over all P tangent directions. Every entry is a ball that
provably contains the exact derivative (exp and the divisions included). With
integer matrices ``Omega_1: (r, R)`` and ``Omega_2: (P, r)`` drawn from a
seeded generator, ``D = det(Omega_1 J Omega_2)`` is a ball containing the exact
determinant; if it excludes 0, then ``rank J >= r`` at that point, so the
generic rank (the neuromanifold dimension, the maximum over points) is at
least r. That is a proof, not an estimate. With r = P - dim(symmetry group)
(:func:`attnlab.geometry.estimator.symmetry_bound`), which is also an upper
bound inside (B1)-(B3), the dimension is then certified.

If the ball contains 0, nothing is concluded: either the rank at the point is
below r, or the precision is too low; the precision is doubled up to
``max_prec`` bits and then the result is "not certified". Random integer
projections make a false "contains 0" at an exact rank >= r a probability-zero
event (Schwartz-Zippel), and they cannot produce a false certificate.

Conventions are those of :mod:`attnlab.geometry.model`: tokens are columns,
``S[s, j] = <K z_s, Q z_j>``, softmax over the key index s (each column sums to
1; ``softmax_axis="query"`` normalises rows), ``Z -> V Z A``; parameters
raveled per layer as Q, K, V, row-major. J's rows for one input are ordered
(output row, token), like :func:`attnlab.geometry.estimator.jacobian`.
Tangents are stored as ``(rows, P)`` matrices whose row index is the
row-major position in the value matrix.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from attnlab.geometry import model as gm

try:  # optional at import time so that the rest of the package works without it
  import flint
except ImportError:  # pragma: no cover - exercised only without the dependency
  flint = None

DEFAULT_PRECISIONS = (256, 1024, 2048)
_OMEGA_MAX = 1000


def _require_flint():
  if flint is None:
    raise ImportError("attnlab.geometry.certify needs python-flint (pip install python-flint)")


def _to_arb_mat(a: np.ndarray):
  """Exact conversion of a float64 matrix (every float64 is an exact binary rational)."""
  return flint.arb_mat([[flint.arb(float(x)) for x in row] for row in np.asarray(a, np.float64)])


def _zeros(rows: int, cols: int):
  return flint.arb_mat(rows, cols)


def _left_mult_operator(W, t: int):
  """``W: (r, d)`` -> the ``(r t, d t)`` operator of ``dZ -> W dZ`` on row-major tangents."""
  r, d = W.nrows(), W.ncols()
  M = _zeros(r * t, d * t)
  for p in range(r):
    for q in range(d):
      w = W[p, q]
      for j in range(t):
        M[p * t + j, q * t + j] = w
  return M


def _param_tangent(Z, offset: int, rows: int, n_params: int):
  """Tangent of ``W Z`` with respect to W's own entries (params ``offset ..``).

  Entry ``((p, j), offset + p d + q) = Z[q, j]``; ``W: (rows, d)``, ``Z: (d, t)``.
  """
  d, t = Z.nrows(), Z.ncols()
  T = _zeros(rows * t, n_params)
  for p in range(rows):
    for q in range(d):
      col = offset + p * d + q
      for j in range(t):
        T[p * t + j, col] = Z[q, j]
  return T


def _product_operators(B, C, b_transposed: bool = False):
  """Product rule for ``Y = B C`` (``B: (m, k)``, ``C: (k, n)``) on row-major tangents.

  Returns ``(op_b, op_c)`` with ``vec(dY) = op_b vec(dB) + op_c vec(dC)``;
  with ``b_transposed`` the tangent of B is given as that of ``B^T: (k, m)``
  (the scores ``S = (K Z)^T (Q Z)`` carry the tangent of ``K Z``).
  """
  m, k, n = B.nrows(), B.ncols(), C.ncols()
  op_b, op_c = _zeros(m * n, m * k), _zeros(m * n, k * n)
  for i in range(m):
    for j in range(n):
      for l in range(k):
        op_b[i * n + j, l * m + i if b_transposed else i * k + l] = C[l, j]
        op_c[i * n + j, l * n + j] = B[i, l]
  return op_b, op_c


def _softmax_with_derivative(S, over_keys: bool):
  """``A = softmax(S)`` over the key index s (each column sums to 1) or, with
  ``over_keys=False``, over the query index j; and ``M: (t^2, t^2)`` with
  ``vec(dA) = M vec(dS)`` (row-major vec, index ``s t + j``)."""
  t = S.nrows()
  E = [[S[s, j].exp() for j in range(t)] for s in range(t)]
  A, M = _zeros(t, t), _zeros(t * t, t * t)
  for u in range(t):  # one normalised group: column u (over keys) or row u (over queries)
    group = [(s, u) for s in range(t)] if over_keys else [(u, j) for j in range(t)]
    total = sum((E[s][j] for s, j in group[1:]), E[group[0][0]][group[0][1]])
    for s, j in group:
      A[s, j] = E[s][j] / total
    for s, j in group:
      for s2, j2 in group:
        M[s * t + j, s2 * t + j2] = A[s, j] * ((1 if (s, j) == (s2, j2) else 0) - A[s2, j2])
  return A, M


def _layer(Z, dZ, Q, K, V, offsets, n_params: int, kind: str, inv_temperature, softmax_axis: str):
  """One layer ``Z -> V Z A`` and its tangent; ``Z: (d, t)``, ``dZ: (d t, P)``."""
  t = Z.ncols()
  a, d_out = Q.nrows(), V.nrows()
  oq, ok, ov = offsets
  QZ, KZ, VZ = Q * Z, K * Z, V * Z
  dQZ = _param_tangent(Z, oq, a, n_params) + _left_mult_operator(Q, t) * dZ
  dKZ = _param_tangent(Z, ok, a, n_params) + _left_mult_operator(K, t) * dZ
  dVZ = _param_tangent(Z, ov, d_out, n_params) + _left_mult_operator(V, t) * dZ
  S = KZ.transpose() * QZ  # (t, t): S[s, j] = <K z_s, Q z_j>
  L_k, L_q = _product_operators(KZ.transpose(), QZ, b_transposed=True)
  dS = L_k * dKZ + L_q * dQZ
  if kind == "lightning":
    A, dA = S, dS
  else:
    S = S * inv_temperature
    dS = dS * inv_temperature
    A, M = _softmax_with_derivative(S, softmax_axis == "key")
    dA = M * dS
  N_v, N_a = _product_operators(VZ, A)
  return VZ * A, N_v * dVZ + N_a * dA


def _offsets(arch: gm.Arch) -> list[tuple[int, int, int]]:
  out, off = [], 0
  for (qs, ks, vs) in arch.layer_shapes():
    oq = off
    ok = oq + qs[0] * qs[1]
    ov = ok + ks[0] * ks[1]
    off = ov + vs[0] * vs[1]
    out.append((oq, ok, ov))
  return out


def jacobian_arb(theta: np.ndarray, X: np.ndarray, arch: gm.Arch, prec: int = 256, temperature: float = 1.0):
  """J at ``(theta, X)`` in ball arithmetic: one ``(d_l t, P)`` ``arb_mat`` per input.

  Args:
    theta: ``(P,)`` float64, raveled as in :mod:`attnlab.geometry.model`.
    X: ``(N, d_0, t)`` float64, tokens are columns.
    prec: working precision in bits (``flint.ctx.prec`` is restored afterwards).
  Returns:
    A list of N ``arb_mat``; stacking them gives the rows of
    :func:`attnlab.geometry.estimator.jacobian` in the same order.
  """
  _require_flint()
  theta = np.asarray(theta, np.float64)
  X = np.asarray(X, np.float64)
  if theta.shape != (arch.num_params,) or X.ndim != 3 or X.shape[1:] != (arch.widths[0], arch.t):
    raise ValueError(f"theta must be ({arch.num_params},) and X (N, {arch.widths[0]}, {arch.t}); "
                     f"got {theta.shape} and {X.shape}")
  old = flint.ctx.prec
  flint.ctx.prec = int(prec)
  try:
    P, t = arch.num_params, arch.t
    weights = []
    for (oq, ok, ov), (qs, ks, vs) in zip(_offsets(arch), arch.layer_shapes()):
      weights.append(tuple(_to_arb_mat(theta[o:o + s[0] * s[1]].reshape(s)) for o, s in
                           ((oq, qs), (ok, ks), (ov, vs))))
    inv_temperature = 1 / flint.arb(float(temperature))
    out = []
    for x in X:
      Z, dZ = _to_arb_mat(x), _zeros(arch.widths[0] * t, P)
      for (Q, K, V), offs in zip(weights, _offsets(arch)):
        Z, dZ = _layer(Z, dZ, Q, K, V, offs, P, arch.kind, inv_temperature, arch.softmax_axis)
      out.append(dZ)
    return out
  finally:
    flint.ctx.prec = old


@dataclasses.dataclass(frozen=True)
class Certificate:
  """Result of :func:`certify_rank`.

  ``certified``: the determinant ball excluded 0, so ``rank J >= target`` at
  the point (and the dimension is at least ``target``). ``det_log10``: log10 of
  the determinant's midpoint magnitude at the deciding precision (None when not
  certified); ``prec``: the bits used last; ``n_inputs``: inputs used.
  """
  target: int
  certified: bool
  prec: int
  det_log10: float | None
  n_inputs: int
  seconds: float


def certify_rank(theta: np.ndarray, X: np.ndarray, arch: gm.Arch, target: int, temperature: float = 1.0,
                 precisions=DEFAULT_PRECISIONS, seed: int = 0, n_inputs: int | None = None) -> Certificate:
  """Prove ``rank J(theta) >= target`` over the inputs ``X`` (or fail to).

  Uses the first ``n_inputs`` inputs of ``X`` (default: enough for
  ``2 target`` rows, at least 2), the seeded integer projections described in
  the module doc, and the precisions in order until the determinant ball
  excludes 0. ``target <= 0`` is trivially certified.
  """
  _require_flint()
  t0 = time.perf_counter()
  rows_per_input = arch.out_size
  if n_inputs is None:
    n_inputs = max(2, math.ceil(2 * target / rows_per_input))
  n_inputs = min(int(n_inputs), X.shape[0])
  if target <= 0:
    return Certificate(int(target), True, 0, None, 0, time.perf_counter() - t0)
  if target > min(arch.num_params, n_inputs * rows_per_input):
    return Certificate(int(target), False, 0, None, n_inputs, time.perf_counter() - t0)
  rng = np.random.default_rng(seed)
  omega_1 = rng.integers(-_OMEGA_MAX, _OMEGA_MAX + 1, size=(target, n_inputs * rows_per_input))
  omega_2 = rng.integers(-_OMEGA_MAX, _OMEGA_MAX + 1, size=(arch.num_params, target))
  prec = 0
  for prec in precisions:
    blocks = jacobian_arb(theta, X[:n_inputs], arch, prec, temperature)
    old = flint.ctx.prec
    flint.ctx.prec = int(prec)
    try:
      right = _to_arb_mat(omega_2.astype(np.float64))
      C = _zeros(target, target)
      for n, J_n in enumerate(blocks):
        left = _to_arb_mat(omega_1[:, n * rows_per_input:(n + 1) * rows_per_input].astype(np.float64))
        C = C + left * (J_n * right)
      det = C.det()
      if not det.contains(0):
        mid = abs(det.mid())
        return Certificate(int(target), True, int(prec), float(mid.log() / flint.arb(10).log()), n_inputs,
                           time.perf_counter() - t0)
    finally:
      flint.ctx.prec = old
  return Certificate(int(target), False, int(prec), None, n_inputs, time.perf_counter() - t0)


def certify_dimension(key, arch: gm.Arch, *, n_inputs: int, trials: int = 1, init: str = "fan_in",
                      init_std: float = 1.0, temperature: float = 1.0, score_std: float = 3.0,
                      precisions=DEFAULT_PRECISIONS, cert_inputs: int | None = None, seed: int = 0) -> Certificate:
  """Try to prove ``dimension >= symmetry_bound(arch)`` for one run.

  The point is the run's draw (trial 0 of
  :func:`attnlab.geometry.estimator.draw` with ``key``, ``n_inputs`` inputs)
  rescaled by :func:`attnlab.geometry.estimator.calibrate_params`: at the
  fan-in draw of deep narrow softmax stacks the certificate failed even at
  4096 bits ((3,)*10, a = (1,4,1,2,2,1,1,4,2), t = 3), while the calibrated
  point of the same draw certifies 71 = the formula at 1024 bits. Inside
  (B1)-(B3) the bound is also an upper bound, so a success proves the
  dimension. ``cert_inputs`` (default ``ceil(P / 2)``, at most ``n_inputs``):
  one input's block of J can have far fewer than ``d_l t`` independent rows in
  a deep stack (16 inputs did not reach rank 60 of 71 there; 60 inputs did).
  """
  import jax  # local: this module's flint half does not need JAX

  from attnlab.geometry import estimator as ge

  with jax.enable_x64(True):
    data = ge.draw(key, arch, n_inputs, trials, init, init_std)
    theta = ge.calibrate_params(data["theta"][0], data["X"][0], arch, score_std, temperature)
    theta, X = np.asarray(theta, np.float64), np.asarray(data["X"][0], np.float64)
  target = ge.symmetry_bound(arch)
  if cert_inputs is None:
    cert_inputs = max(math.ceil(arch.num_params / 2), math.ceil(2 * target / arch.out_size), 2)
  return certify_rank(theta, X, arch, target, temperature, precisions, seed, min(int(cert_inputs), n_inputs))
