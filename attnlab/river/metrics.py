"""Metrics (spec §7, item 6): errors, order fits, manifold residuals, and the
clustering quantities of Geshkovski et al.

Token states are ``(n, d)`` with tokens as rows. The sphere quantities take
either unit vectors (SA/USA) or LN states, which they centre and normalise
first (:func:`directions`), so rho of an R-post state is the rho of its SA
particles z_i (spec §2.4).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_HI = jax.lax.Precision.HIGHEST


def max_abs_err(u, ref) -> jax.Array:
  """max |u - ref| (the spec's error against a reference)."""
  return jnp.max(jnp.abs(u - ref))


def fit_order(Ls, errs, window=None) -> tuple[float, tuple]:
  """Least-squares slope of -log(err) against log(L) over ``window``.

  Args:
    Ls, errs: sequences of equal length (host values).
    window: the L values to fit (default: all). Entries not in ``Ls`` are
      ignored.
  Returns:
    ``(order, window_used)``; order = nan when fewer than two usable points.
  """
  Ls = np.asarray(Ls, float)
  errs = np.asarray(errs, float)
  sel = np.ones_like(Ls, bool) if window is None else np.isin(Ls, np.asarray(window, float))
  sel &= np.isfinite(errs) & (errs > 0)
  if sel.sum() < 2:
    return float("nan"), tuple(Ls[sel].astype(int).tolist())
  slope = np.polyfit(np.log(Ls[sel]), np.log(errs[sel]), 1)[0]
  return float(-slope), tuple(Ls[sel].astype(int).tolist())


def manifold_residual(u, sigma1=0.0, sigma2=1.0) -> jax.Array:
  """max over rows of max(|mean - sigma1|, |Var - sigma2^2|): distance from S1."""
  mean = jnp.mean(u, axis=-1)
  var = jnp.mean((u - mean[..., None]) ** 2, axis=-1)
  return jnp.maximum(jnp.max(jnp.abs(mean - sigma1)), jnp.max(jnp.abs(var - sigma2 ** 2)))


def directions(u, center: bool = False) -> jax.Array:
  """Unit row directions; ``center=True`` subtracts each row's mean first (LN states)."""
  if center:
    u = u - jnp.mean(u, axis=-1, keepdims=True)
  return u / jnp.linalg.norm(u, axis=-1, keepdims=True)


def cosines(u, center: bool = False) -> jax.Array:
  """Pairwise cosine matrix (n, n)."""
  z = directions(u, center)
  return jnp.einsum("id,jd->ij", z, z, precision=_HI)


def _offdiag(n):
  return ~jnp.eye(n, dtype=bool)


def rho(u, center: bool = False) -> jax.Array:
  """rho(t): the mean pairwise cosine over i != j."""
  g = cosines(u, center)
  n = g.shape[0]
  return jnp.sum(jnp.where(_offdiag(n), g, 0.0)) / (n * (n - 1))


def min_cosine(u, center: bool = False) -> jax.Array:
  """The smallest pairwise cosine (-> 1 under clustering)."""
  g = cosines(u, center)
  return jnp.min(jnp.where(_offdiag(g.shape[0]), g, jnp.inf))


def offdiag_spread(u, center: bool = False) -> jax.Array:
  """max - min of the off-diagonal cosines (0 for an equiangular configuration)."""
  g = cosines(u, center)
  off = _offdiag(g.shape[0])
  return jnp.max(jnp.where(off, g, -jnp.inf)) - jnp.min(jnp.where(off, g, jnp.inf))


def energy(z, beta) -> jax.Array:
  """E_beta(z) = 1/(2 beta n^2) sum_{i,j} exp(beta <z_i, z_j>) (T9); beta -> 0 limit
  uses the (beta-independent-derivative) form (1/(2 n^2)) sum <z_i, z_j> + const."""
  n = z.shape[0]
  g = jnp.einsum("id,jd->ij", z, z, precision=_HI)
  safe = jnp.where(beta == 0, 1.0, beta)
  e = jnp.sum(jnp.exp(safe * g)) / (2 * safe * n * n)
  e0 = jnp.sum(g) / (2 * n * n)
  return jnp.where(beta == 0, e0, e)


def n_clusters(u, tol: float = 1e-3, center: bool = False) -> jax.Array:
  """Number of connected components of the graph {cos(z_i, z_j) > 1 - tol}.

  Transitive closure by repeated squaring (log2(n) boolean matrix products);
  the count is the number of tokens that are the smallest index of their
  component. Traceable (int32 scalar).
  """
  g = cosines(u, center) > 1 - tol
  n = g.shape[0]
  r = g | jnp.eye(n, dtype=bool)
  for _ in range(max(1, int(np.ceil(np.log2(max(n, 2)))))):
    r = (r.astype(jnp.float32) @ r.astype(jnp.float32)) > 0
  first = jnp.argmax(r, axis=1)  # smallest index reachable from i
  return jnp.sum(first == jnp.arange(n)).astype(jnp.int32)


# Equiangular reduction (T8, Appendix A.3) -----------------------------------

def rho_ode_rhs(rho_, beta, n, model: str = "sa"):
  """rho' of the equiangular reduction: SA 2e^{b r}(1-r)((n-1)r+1)/(e^b+(n-1)e^{b r});
  USA (2/n) e^{b r}(1-r)((n-1)r+1)."""
  core = 2 * jnp.exp(beta * rho_) * (1 - rho_) * ((n - 1) * rho_ + 1)
  if model == "sa":
    return core / (jnp.exp(beta) + (n - 1) * jnp.exp(beta * rho_))
  if model == "usa":
    return core / n
  raise ValueError(model)


def rho_equiangular(times, beta, n, model: str = "sa", rho0: float = 0.0, h: float = 1e-4):
  """rho(t) of the scalar equiangular ODE by RK4 with step <= h, at sorted ``times``.

  Returns a float array like ``times``. Uses ``lax.scan`` over a fixed grid.
  """
  times = np.asarray(times, float)
  tmax = float(times.max())
  steps = int(np.ceil(tmax / h))
  hh = tmax / steps
  f = lambda r: rho_ode_rhs(r, beta, n, model)

  def body(r, _):
    k1 = f(r); k2 = f(r + 0.5 * hh * k1); k3 = f(r + 0.5 * hh * k2); k4 = f(r + hh * k3)
    r = r + hh / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return r, r

  r0 = jnp.asarray(rho0, jnp.zeros(()).dtype)
  _, traj = jax.lax.scan(body, r0, None, length=steps)
  traj = jnp.concatenate([r0[None], traj])
  # times need not be on the grid: cubic-free approach - redo exact grid hits
  idx = np.rint(times / hh).astype(int)
  if not np.allclose(idx * hh, times, rtol=0, atol=1e-12 * max(1.0, tmax)):
    raise ValueError("times must be multiples of the RK4 step; pick h dividing every time")
  return traj[idx]


def rho_closed_form_beta0(t, n, rho0: float = 0.0):
  """beta = 0 closed form (T8): (K e^{2t} - 1)/(K e^{2t} + n - 1), K = (1+(n-1)rho0)/(1-rho0)."""
  K = (1 + (n - 1) * rho0) / (1 - rho0)
  e = K * np.exp(2 * np.asarray(t, float))
  return (e - 1) / (e + n - 1)
