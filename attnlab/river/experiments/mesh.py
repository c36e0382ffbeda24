"""Mesh refinement in the token AND feature domains (spec §5 item 5, §3.1).

The continuous R-pre river on Omega_x = Omega_y = [0, 1] (measure
``unit_interval``), with smooth kernels

  W^Q(xi, y) = cos(pi (xi + 2y)),   W^K(xi, y) = sin(pi (2 xi - y)) + 1/2,
  W^V(xi, y) = exp(-(xi - y)^2 / 0.1),
  W_1(xi, eta) = cos(3 xi eta),     b_1(eta) = 0.1 sin(2 pi eta),
  W_2(eta, y) = sin(pi (eta + y)),  b_2(y) = 0.1 cos(pi y),
  f(x, y) = sin(2 pi x) cos(pi y) + 0.5 cos(3x + y),

score <Q(x,.), K(x~,.)>_{Omega_y} / sqrt|Omega_y| (= 1), softmax over x~,
FFN hidden variable eta in [0, 1] sampled like y, GELU, continuous LN (mean
and variance are integrals over y). Midpoint nodes (i + 1/2)/N with weights
1/N: the discrete matrices are W(xi_i, y_j) / N_y (the quadrature map of
:func:`attnlab.river.loading.kernels_to_matrices`) and the extra 1/N_y of the
score is the attention ``scale`` (the x-weights cancel in the softmax).

RK4 with ``L`` steps to T (the same time grid at every resolution). The
observables are J_k(u_T) = integral of u_T(x, y) phi_k(x, y) with
phi_k = cos(pi a x + 0.3) cos(pi b y + 0.7), a, b in {0, 1, 2}, by the same
midpoint rule; the error is max_k |J_k - J_k(ref)|. Errors against the finest
grid (N_max, N_max) for three refinements: both (N_x = N_y = N), tokens only
(N_y = N_max) and features only (N_x = N_max); rates are least-squares fits
over ``fit_Ns``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.engine.config import check
from attnlab.engine.experiment import ConfigError, OneShot
from attnlab.river import fields as F
from attnlab.river import integrators as I
from attnlab.river import metrics as M
from attnlab.river.loading import kernels_to_matrices
from attnlab.river.params import AttnParams, BlockParams, FFNParams, scalar_norm


def nodes(n):
  return (np.arange(n) + 0.5) / n


def discretise(nx: int, ny: int, act: str = "gelu"):
  """(theta, f, phi) on the (nx, ny) midpoint grid; theta: one head, d = d_h = d_ff = ny."""
  y = nodes(ny)
  xi, yy = np.meshgrid(y, y, indexing="ij")  # first index = input feature xi
  mat = lambda W: jnp.asarray(kernels_to_matrices(W, ny, "unit_interval"))
  wq = mat(np.cos(np.pi * (xi + 2 * yy)))
  wk = mat(np.sin(np.pi * (2 * xi - yy)) + 0.5)
  wv = mat(np.exp(-(xi - yy) ** 2 / 0.1))
  attn = AttnParams(wq=wq[None], wk=wk[None], wv=wv[None], wo=jnp.eye(ny)[None],
                    scale=jnp.asarray([1.0 / ny]))  # <.,.>_{Omega_y} = sum / ny; 1/sqrt|Omega_y| = 1
  ffn = FFNParams(w1=mat(np.cos(3 * xi * yy)), b1=jnp.asarray(0.1 * np.sin(2 * np.pi * y)),
                  w2=mat(np.sin(np.pi * (xi + yy))), b2=jnp.asarray(0.1 * np.cos(np.pi * y)), act=act)
  theta = BlockParams(attn=attn, ln1=scalar_norm(), ffn=ffn, ln2=scalar_norm())
  x = nodes(nx)
  X, Y = np.meshgrid(x, y, indexing="ij")
  f = jnp.asarray(np.sin(2 * np.pi * X) * np.cos(np.pi * Y) + 0.5 * np.cos(3 * X + Y))
  # 9 smooth test functions phi_k (the error is the max over k: robust to a zero crossing of one)
  phi = jnp.asarray(np.stack([np.cos(np.pi * a * X + 0.3) * np.cos(np.pi * b * Y + 0.7)
                              for a in range(3) for b in range(3)]))
  return theta, f, phi


def _Ns(cfg):
  return tuple(int(n) for n in (cfg.Ns if isinstance(cfg.Ns, (tuple, list)) else (cfg.Ns,)))


def experiment(cfg) -> OneShot:
  Ns = _Ns(cfg)
  check(len(Ns) >= 2 and all(n > 0 for n in Ns), "Ns", f"needs >= 2 positive resolutions, got {cfg.Ns!r}")
  check(cfg.T > 0, "T", f"must be > 0, got {cfg.T}")
  check(cfg.L > 0, "L", f"must be > 0, got {cfg.L}")
  fit = tuple(cfg.fit_Ns)
  if sum(n in Ns and n < max(Ns) for n in fit) < 2:
    raise ConfigError("fit_Ns", f"needs >= 2 entries of Ns below max(Ns)={max(Ns)}, got {cfg.fit_Ns!r}")
  nmax = max(Ns)

  @jax.jit
  def solve(theta, f, phi):
    rk4 = lambda u, th, h: I.rk4_step(F.preln_field, u, th, h)
    uT, _ = I.integrate(rk4, f, theta, cfg.T / cfg.L, cfg.L)
    return jnp.einsum("xy,kxy->k", uT, phi) / (phi.shape[1] * phi.shape[2])

  def J(nx, ny):
    return np.asarray(solve(*discretise(nx, ny, cfg.act)))

  def compute(key, hp, data):
    ref = J(nmax, nmax)
    out = {"J_ref": ref.tolist(), "N_max": nmax}
    for name, shape in (("both", lambda n: (n, n)), ("tokens", lambda n: (n, nmax)),
                        ("features", lambda n: (nmax, n))):
      errs = {}
      for n in Ns:  # host loop over resolutions (one compile per shape)
        if n == nmax:
          continue
        errs[str(n)] = float(np.max(np.abs(J(*shape(n)) - ref)))
      ns = [n for n in Ns if n != nmax]
      rate, window = M.fit_order(ns, [errs[str(n)] for n in ns], fit)
      out[name] = {"errors": errs, "rate": rate, "window": list(window)}
    return out

  def summarize(cfg_, runs):
    f = runs[0]["final"]
    return {"rate_both": f["both"]["rate"], "rate_tokens": f["tokens"]["rate"],
            "rate_features": f["features"]["rate"],
            "errors": {k: f[k]["errors"] for k in ("both", "tokens", "features")},
            "J_ref": f["J_ref"], "N_max": f["N_max"], "fit_Ns": list(fit)}

  def figures(cfg_, logs, outdir):
    import matplotlib.pyplot as plt
    from attnlab.engine import plotting
    f = logs.runs[0]["final"]
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for name in ("both", "tokens", "features"):
      e = f[name]["errors"]
      n = np.array(sorted(int(k) for k in e))
      ax.loglog(n, [e[str(k)] for k in n], "o-", label=f"{name} (rate {f[name]['rate']:.2f})")
    n = np.array(sorted(int(k) for k in f["both"]["errors"]))
    ax.loglog(n, f["both"]["errors"][str(n[0])] * (n / n[0]) ** -2.0, "k:", lw=0.8, label="N^-2")
    ax.set_xlabel("N"); ax.set_ylabel("max_k |J_k(N) - J_k(ref)|"); ax.legend(fontsize=7)
    ax.set_title("mesh refinement in x (tokens) and y (features)")
    return [plotting.savefig(fig, outdir / "mesh.png")]

  return OneShot(compute=compute, jit=False, x64=True, summarize=summarize, figures=figures)
