"""diffrax backend (spec §6d, §7.6-7.7): adaptive reference solves, layer
boundaries as ``jump_ts``, and a choice of adjoint.

The hand-written ``lax.scan`` integrators are primary; this backend gives
adaptive references (Tsit5/Dopri5/Dopri8 + PID control) and continuous-adjoint
comparisons. Fields are ``f(u, theta)`` as in :mod:`attnlab.river.fields`.
"""
from __future__ import annotations

from typing import Optional

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from attnlab.river.fields import as_diffrax

SOLVERS = {"euler": diffrax.Euler, "heun": diffrax.Heun, "midpoint": diffrax.Midpoint,
           "bosh3": diffrax.Bosh3, "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5,
           "dopri8": diffrax.Dopri8}
ADJOINTS = ("recursive", "backsolve", "direct", "forward")


def make_adjoint(name: str):
  """``recursive`` (default, discretise-then-optimise), ``backsolve`` (continuous
  adjoint; unreliable for contracting dynamics, spec P14), ``direct``, ``forward``."""
  if name == "recursive":
    return diffrax.RecursiveCheckpointAdjoint()
  if name == "backsolve":
    return diffrax.BacksolveAdjoint()
  if name == "direct":
    return diffrax.DirectAdjoint()
  if name == "forward":
    return diffrax.ForwardMode()
  raise ValueError(f"adjoint must be one of {ADJOINTS}, got {name!r}")


def theta_at(thetas, t, *, t0: float = 0.0, layer_dt: float = 1.0, controls: str = "piecewise_constant"):
  """The control at time t from stacked per-layer parameters (leading axis L).

  ``piecewise_constant``: layer n on [t0 + n dt, t0 + (n+1) dt) (floor);
  ``linear``: linear interpolation between layer values placed at the
  interval midpoints (smooth-in-depth controls, spec P10).
  """
  L = jax.tree.leaves(thetas)[0].shape[0]
  s = (t - t0) / layer_dt
  if controls == "piecewise_constant":
    i = jnp.clip(jnp.floor(s).astype(jnp.int32), 0, L - 1)
    return jax.tree.map(lambda x: x[i], thetas)
  if controls == "linear":
    pos = jnp.clip(s - 0.5, 0.0, L - 1.0)
    i = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, max(L - 2, 0))
    w = pos - i
    j = jnp.minimum(i + 1, L - 1)
    return jax.tree.map(lambda x: (1 - w) * x[i] + w * x[j], thetas)
  raise ValueError(f"controls must be 'piecewise_constant' or 'linear', got {controls!r}")


def solve(field, u0, theta, t1: float, *, t0: float = 0.0, solver: str = "tsit5",
          rtol: float = 1e-10, atol: float = 1e-10, dt0: Optional[float] = None,
          stacked: bool = False, layer_dt: float = 1.0, controls: str = "piecewise_constant",
          adjoint: str = "recursive", max_steps: int = 100_000, ts=None):
  """Adaptive (or fixed, if ``rtol`` is None) diffrax solve of ``du/dt = field(u, theta)``.

  Args:
    field: ``f(u, theta)``.
    u0: (N, d).
    theta: shared parameters, or stacked per-layer parameters (``stacked=True``;
      then the layer boundaries t0 + k layer_dt are passed as ``jump_ts`` to a
      :class:`diffrax.ClipStepSizeController`, spec P15).
    rtol, atol: PID tolerances; ``rtol=None`` means constant steps of ``dt0``.
    ts: optional save times; default saves only t1.
  Returns:
    ``(y, num_accepted_steps)``: y is u(t1) (N, d), or (len(ts), N, d).
  """
  if solver not in SOLVERS:
    raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
  if stacked:
    f = as_diffrax(field, lambda th, t: theta_at(th, t, t0=t0, layer_dt=layer_dt,
                                                  controls=controls))
  else:
    f = as_diffrax(field)
  if rtol is None:
    controller = diffrax.ConstantStepSize()
  else:
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    if stacked:
      L = jax.tree.leaves(theta)[0].shape[0]
      jumps = t0 + layer_dt * np.arange(1, L)
      controller = diffrax.ClipStepSizeController(controller, jump_ts=jnp.asarray(jumps))
  saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=jnp.asarray(ts))
  sol = diffrax.diffeqsolve(diffrax.ODETerm(f), SOLVERS[solver](), t0, t1, dt0, u0, theta,
                            saveat=saveat, stepsize_controller=controller,
                            adjoint=make_adjoint(adjoint), max_steps=max_steps)
  y = sol.ys[0] if ts is None else sol.ys
  return y, sol.stats["num_accepted_steps"]
