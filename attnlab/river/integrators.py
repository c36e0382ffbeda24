"""Integrators (spec §3, §7.4). All pure JAX; depth loops are ``lax.scan`` or
``lax.fori_loop`` (never Python loops over steps).

A *field* is ``f(u, theta) -> du/dt``; a *projection* is ``P(u, theta)``; a
*step* is ``step(u, theta, h) -> u`` (one layer / time step of size h).

* :func:`euler_step`, :func:`heun_step`, :func:`rk4_step` and their projected
  variants (:func:`projected`: apply P after the step; :func:`heun_proj_step`
  projects the predictor too, spec Appendix A.2).
* :func:`sub_flow`: approximate the time-tau flow of one field with ``m``
  steps of a sub-solver ("euler" | "heun" | "rk4"), optionally projecting
  after each.
* :func:`lie_step`, :func:`strang_step`, :func:`parallel_step`: Lie
  (sequential), Strang (symmetric ``A_{h/2} B_h A_{h/2}``, first field
  outside) and parallel (additive, ``(1/K) sum_k phi^{K f_k}_h``) splitting.
* :func:`paper_step`: the paper's six substeps, h-scaled; at h = 1 it is the
  post-LN block. :func:`preln_step`: the pre-LN block, h-scaled.
* :func:`integrate`: ``lax.scan`` over layers (shared or stacked weights),
  ``substeps`` per layer, optional trajectory and ``jax.checkpoint``.
  :func:`integrate_n`: the same with a traced step count (one compile for
  every L; no trajectory).
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from attnlab.river import fields as F
from attnlab.river import operators as ops
from attnlab.river.params import BlockParams

Field = Callable
Step = Callable


def euler_step(f: Field, u, theta, h):
  """u + h f(u)."""
  return u + h * f(u, theta)


def heun_step(f: Field, u, theta, h):
  """Heun (explicit trapezoid): u + h/2 (f(u) + f(u + h f(u)))."""
  k1 = f(u, theta)
  k2 = f(u + h * k1, theta)
  return u + 0.5 * h * (k1 + k2)


def rk4_step(f: Field, u, theta, h):
  """Classical RK4."""
  k1 = f(u, theta)
  k2 = f(u + 0.5 * h * k1, theta)
  k3 = f(u + 0.5 * h * k2, theta)
  k4 = f(u + h * k3, theta)
  return u + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


SOLVERS = {"euler": euler_step, "heun": heun_step, "rk4": rk4_step}


def projected(step_fn, proj):
  """``(f, u, theta, h) -> P(step_fn(f, u, theta, h), theta)``."""
  return lambda f, u, theta, h: proj(step_fn(f, u, theta, h), theta)


def heun_proj_step(f: Field, proj, u, theta, h):
  """Projected Heun (Appendix A.2): u~ = P(u + h k1); u = P(u + h/2 (k1 + f(u~)))."""
  k1 = f(u, theta)
  ut = proj(u + h * k1, theta)
  return proj(u + 0.5 * h * (k1 + f(ut, theta)), theta)


def sub_flow(f: Field, u, theta, tau, solver: str = "rk4", m: int = 1, proj=None):
  """Approximate the time-``tau`` flow of ``f`` with ``m`` ``solver`` steps (static m)."""
  one = SOLVERS[solver]

  def sub(_, v):
    v = one(f, v, theta, tau / m)
    return v if proj is None else proj(v, theta)

  if m == 1:
    return sub(0, u)
  return jax.lax.fori_loop(0, m, sub, u)  # a loop, not an unrolled body: compile time O(1) in m


def lie_step(fields: Sequence[Field], u, theta, h, sub: str = "euler", m: int = 1, proj=None):
  """Lie (sequential) splitting: phi^{f_K}_h o ... o phi^{f_1}_h (first order)."""
  for f in fields:
    u = sub_flow(f, u, theta, h, sub, m, proj)
  return u


def strang_step(fields: Sequence[Field], u, theta, h, sub: str = "rk4", m: int = 1, proj=None):
  """Strang splitting phi^A_{h/2} o phi^B_h o phi^A_{h/2} with ``fields = (A, B)``.

  ``fields[0]`` is the outer field: (ffn, attn) with Euler sub-steps is Macaron.
  Second order only when the sub-flows are at least second order (spec P11).
  """
  a, b = fields
  u = sub_flow(a, u, theta, 0.5 * h, sub, m, proj)
  u = sub_flow(b, u, theta, h, sub, m, proj)
  return sub_flow(a, u, theta, 0.5 * h, sub, m, proj)


def parallel_step(fields: Sequence[Field], u, theta, h, sub: str = "euler", m: int = 1, proj=None):
  """Parallel (additive) splitting: (1/K) sum_k phi^{K f_k}_h(u) from the same start."""
  k = len(fields)
  outs = [sub_flow(lambda v, th, f=f: k * f(v, th), u, theta, h, sub, m, proj) for f in fields]
  out = sum(outs[1:], outs[0]) / k
  return out if proj is None else proj(out, theta)


def paper_step(u, theta: BlockParams, h=1.0, literal: bool = False):
  """The paper's six-substep Lie step (v1 eqs. (3.5)-(3.10)), h-scaled.

  ``literal=False`` (default, the 1/2 relaxation folded away):
  ``u1 = P1(u + h A(u)); u -> P2(u1 + h F(u1))``. At h = 1 this is the post-LN
  encoder block ``LN2(u' + FFN(u'))``, ``u' = LN1(u + Attn(u))``, bit for bit.

  ``literal=True`` writes the paper's substeps out (Delta t = 1 only, so ``h``
  must be 1; d_ff = d): substep 3 ``u3 = act(u2 + u2 W1' + b1)``, substep 4
  ``u4 = u3 + u3 W2' + b2`` with ``W_j' = W_j - I`` (the I + W_j reading),
  substep 5 ``u5 = (u4 + u2)/2`` and substep 6 ``P2(u5)`` with ``eps/4``
  (``LN_eps(v/2) = LN_{4 eps}(v)``, spec P4).
  """
  a, f1, f2 = theta.attn, theta.ffn, theta.ln2
  u1 = u + h * ops.attention(u, a)                               # substep 1
  u2 = ops.layernorm(u1, theta.ln1)                              # substep 2
  if not literal:
    return ops.layernorm(u2 + h * ops.ffn(u2, f1), f2)          # substeps 3-6
  if isinstance(h, (int, float)) and h != 1.0:
    raise ValueError("paper_step(literal=True) is the paper's Delta t = 1 step; got h != 1")
  d, dff = f1.w1.shape[-2:]
  if d != dff:
    raise ValueError(f"literal substeps need square W_j (d_ff = d); got d={d}, d_ff={dff}")
  eye = jnp.eye(d, dtype=u.dtype)
  w1p, w2p = f1.w1 - eye, f1.w2 - eye
  hi = jax.lax.Precision.HIGHEST
  u3 = ops.activation(f1.act)(u2 + jnp.einsum("nd,df->nf", u2, w1p, precision=hi) + f1.b1[None, :])
  u4 = u3 + jnp.einsum("nf,fd->nd", u3, w2p, precision=hi) + f1.b2[None, :]
  u5 = 0.5 * (u4 + u2)
  return ops.layernorm(u5, f2.replace(eps=f2.eps / 4.0))


def postln_block(u, theta: BlockParams):
  """The discrete post-LN encoder block (Vaswani et al.): paper_step at h = 1."""
  return paper_step(u, theta, 1.0)


def preln_step(u, theta: BlockParams, h=1.0):
  """Pre-LN block, h-scaled: u += h A(LN1 u); u += h F(LN2 u) (Lie-Euler for R-pre)."""
  u = u + h * F.attn_pre(u, theta)
  return u + h * F.ffn_pre(u, theta)


def scheme_step(name: str) -> tuple[Step, str]:
  """The depth-convergence schemes of spec §6a as ``(step(u, theta, h), model)``.

  R-pre: ``preln``, ``macaron_euler``, ``lie_rk4sub``, ``strang_rk4sub``, ``rk4``.
  R-post: ``postln``, ``heun_proj``, ``strang_proj``, ``rk4_proj``.
  Sub-flows of ``*_rk4sub``/``strang_proj`` are 4 RK4 steps each (Appendix A.1).
  """
  pre = (F.attn_pre, F.ffn_pre)
  post = (F.attn_post, F.ffn_post)
  P = F.project_post
  table = {
      "preln": (preln_step, "preln"),
      "macaron_euler": (lambda u, th, h: strang_step(pre[::-1], u, th, h, "euler", 1), "preln"),
      "lie_euler": (lambda u, th, h: lie_step(pre, u, th, h, "euler", 1), "preln"),
      "lie_rk4sub": (lambda u, th, h: lie_step(pre, u, th, h, "rk4", 4), "preln"),
      "strang_rk4sub": (lambda u, th, h: strang_step(pre[::-1], u, th, h, "rk4", 4), "preln"),
      "parallel_euler": (lambda u, th, h: parallel_step(pre, u, th, h, "euler", 1), "preln"),
      "rk4": (lambda u, th, h: rk4_step(F.preln_field, u, th, h), "preln"),
      "postln": (paper_step, "postln"),
      "euler_proj": (lambda u, th, h: P(euler_step(F.postln_field, u, th, h), th), "postln"),
      "heun_proj": (lambda u, th, h: heun_proj_step(F.postln_field, P, u, th, h), "postln"),
      "strang_proj": (lambda u, th, h: strang_step(post[::-1], u, th, h, "rk4", 4, P), "postln"),
      "rk4_proj": (lambda u, th, h: P(rk4_step(F.postln_field, u, th, h), th), "postln"),
  }
  if name not in table:
    raise KeyError(name)
  return table[name]


SCHEMES_PRE = ("preln", "macaron_euler", "lie_euler", "lie_rk4sub", "strang_rk4sub",
               "parallel_euler", "rk4")
SCHEMES_POST = ("postln", "euler_proj", "heun_proj", "strang_proj", "rk4_proj")
SCHEMES = SCHEMES_PRE + SCHEMES_POST


def integrate(step: Step, u0, theta, h, L: Optional[int] = None, *, substeps: int = 1,
              save: bool = False, remat: bool = False):
  """Integrate ``step`` over depth with ``lax.scan``.

  Args:
    step: ``step(u, theta, h) -> u``.
    u0: (N, d) initial datum.
    theta: shared parameters (then ``L`` is required: L layers of size h), or
      stacked parameters with a leading layer axis (``L=None``: one scan step
      per layer; piecewise-constant controls).
    h: the layer interval (the paper's Delta t; T = L h). Each layer applies
      ``substeps`` steps of size ``h / substeps`` (inner ``fori_loop``).
    save: also return the trajectory after every layer, (L, N, d).
    remat: wrap the layer in ``jax.checkpoint`` (memory O(L) -> recompute).

  Returns:
    ``(u_T, traj)`` with ``traj=None`` unless ``save``. Compile time does not
    depend on L.
  """
  m = int(substeps)

  def layer(u, th):
    if m == 1:
      return step(u, th, h)
    return jax.lax.fori_loop(0, m, lambda _, v: step(v, th, h / m), u)

  if remat:
    layer = jax.checkpoint(layer)

  def body(u, th):
    u = layer(u, theta if L is not None else th)
    return u, (u if save else None)

  xs = None if L is not None else theta
  uT, traj = jax.lax.scan(body, u0, xs, length=L)
  return uT, traj


def integrate_n(step: Step, u0, theta, h, n):
  """``n`` steps of ``step`` with shared ``theta`` and a (possibly traced) count n."""
  return jax.lax.fori_loop(0, n, lambda _, u: step(u, theta, h), u0)
