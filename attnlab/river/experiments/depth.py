"""Depth convergence (spec §6a, checks C9-C11): error at time T against L.

One block with **shared** weights (spec P10: i.i.d. per-layer weights have no
ODE limit), Appendix A.1 sizes and scalings (JAX random generator, so the
absolute errors are re-baselined; the slopes are the contract). For each
scheme (``attnlab.river.integrators.scheme_step``) and each L in ``Ls``, the
state after L steps of size h = T/L is compared with a reference: RK4 of the
same river (projected RK4 for R-post) at ``ref_factor * max(Ls)`` steps. The
order is the least-squares slope of -log(err) vs log(L) over ``fit_Ls``.

R-pre starts from u0 ~ N(0, 1); R-post from P_S1(u0) on S1(0, 1). Manifold
residuals (max |mean|, |Var - 1| over rows and over every L) are reported for
the R-post schemes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core import prng
from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import ConfigError, OneShot
from attnlab.river import integrators as I
from attnlab.river import metrics as M
from attnlab.river import operators as O
from attnlab.river.params import init_block

# Expected slopes (spec §9 C9/C10) for smooth activations: (centre, half-width).
BANDS = {"preln": (1.0, 0.05), "macaron_euler": (1.0, 0.05), "lie_euler": (1.0, 0.05),
         "lie_rk4sub": (1.0, 0.05), "strang_rk4sub": (2.0, 0.05), "parallel_euler": (1.0, 0.05),
         "rk4": (4.0, 0.1), "postln": (1.0, 0.05), "euler_proj": (1.0, 0.05),
         "heun_proj": (2.0, 0.05), "strang_proj": (2.0, 0.05), "rk4_proj": (4.0, 0.1)}
# C11: with a ReLU FFN Lie/Strang keep 1 and 2 (+-0.15); RK4 is not required to reach 4.
RELU_BANDS = {k: (c, 0.15) for k, (c, _) in BANDS.items() if c < 4}


def validate(cfg):
  check_positive(cfg, "d", "n_tokens", "d_ff", "heads", "ref_factor")
  check(cfg.T > 0, "T", f"must be > 0, got {cfg.T}")
  Ls = tuple(cfg.Ls) if isinstance(cfg.Ls, (tuple, list)) else (cfg.Ls,)
  check(len(Ls) > 0, "Ls", "needs at least one L")
  for L in Ls:
    check(isinstance(L, (int, np.integer)) and not isinstance(L, bool) and L > 0, "Ls",
          f"every L must be a positive integer, got {cfg.Ls!r}")
  check_choice(cfg, "schemes", I.SCHEMES)
  check_choice(cfg, "act", ("relu", "gelu", "tanh", "silu"))
  check(cfg.d % cfg.heads == 0, "heads", f"d={cfg.d} must be divisible by heads={cfg.heads}")
  fit = tuple(cfg.fit_Ls) if isinstance(cfg.fit_Ls, (tuple, list)) else (cfg.fit_Ls,)
  if sum(L in Ls for L in fit) < 2:
    raise ConfigError("fit_Ls", f"needs at least two entries of Ls={Ls}, got {cfg.fit_Ls!r}")


def setup(cfg, key):
  """(theta, u0) from the run key (INIT stream: weights; DATA stream: u0)."""
  theta = init_block(prng.stream(key, prng.INIT), cfg.d, cfg.heads, cfg.d_ff, act=cfg.act)
  u0 = jax.random.normal(prng.stream(key, prng.DATA), (cfg.n_tokens, cfg.d))
  return theta, u0


def _runner(scheme):
  step, model = I.scheme_step(scheme)
  return jax.jit(lambda u, th, h, n: I.integrate_n(step, u, th, h, n)), model


def experiment(cfg) -> OneShot:
  validate(cfg)
  Ls = [int(L) for L in (cfg.Ls if isinstance(cfg.Ls, (tuple, list)) else (cfg.Ls,))]
  schemes = tuple(cfg.schemes) if isinstance(cfg.schemes, (tuple, list)) else (cfg.schemes,)
  fit_Ls = tuple(cfg.fit_Ls)
  T = float(cfg.T)

  def compute(key, hp, data):
    theta, u0 = setup(cfg, jnp.asarray(key))
    starts = {"preln": u0, "postln": O.layernorm_project(u0)}
    refs, ref_err = {}, {}
    L_ref = cfg.ref_factor * max(Ls)
    for model in sorted({I.scheme_step(s)[1] for s in schemes}):
      run, _ = _runner("rk4" if model == "preln" else "rk4_proj")
      refs[model] = run(starts[model], theta, T / L_ref, L_ref)
      half = run(starts[model], theta, 2 * T / L_ref, L_ref // 2)
      ref_err[model] = float(M.max_abs_err(half, refs[model]) / 15.0)  # Richardson, RK4
    out = {"order": {}, "error_at_L": {}, "manifold_residual": {}, "fit_window": {},
           "ref_err_estimate": ref_err, "L_ref": L_ref}
    for s in schemes:  # host loop over schemes and L: one compile per scheme (traced h, n)
      run, model = _runner(s)
      errs, resid = [], 0.0
      for L in Ls:
        uL = run(starts[model], theta, T / L, L)
        errs.append(float(M.max_abs_err(uL, refs[model])))
        if model == "postln":
          resid = max(resid, float(M.manifold_residual(uL, 0.0, 1.0)))
      order, window = M.fit_order(Ls, errs, fit_Ls)
      out["order"][s] = order
      out["fit_window"][s] = list(window)
      out["error_at_L"][s] = {str(L): e for L, e in zip(Ls, errs)}
      if model == "postln":
        out["manifold_residual"][s] = resid
    return out

  def summarize(cfg_, runs):
    ok = [r["final"] for r in runs if r["status"] == "ok"]
    first = ok[0]
    order = {s: float(np.median([f["order"][s] for f in ok])) for s in schemes}
    bands = RELU_BANDS if cfg.act == "relu" else BANDS
    within = {s: (abs(order[s] - bands[s][0]) <= bands[s][1]) for s in schemes if s in bands}
    post = [s for s in schemes if I.scheme_step(s)[1] == "postln" and s != "postln"]
    resid_ok = all(max(f["manifold_residual"][s] for f in ok) <= 1e-14 for s in post)
    return {"order": order,
            "order_per_seed": {s: [f["order"][s] for f in ok] for s in schemes},
            "error_at_L": first["error_at_L"],
            "manifold_residual": {s: max(f["manifold_residual"][s] for f in ok)
                                  for s in first["manifold_residual"]},
            "fit_window": list(fit_Ls), "ref_err_estimate": first["ref_err_estimate"],
            "L_ref": first["L_ref"],
            "bands": {s: list(bands[s]) for s in schemes if s in bands},
            "within_band": within,
            "manifold_residual_ok": resid_ok,
            "pass": bool(all(within.values()) and resid_ok)}

  def figures(cfg_, logs, outdir):
    import matplotlib.pyplot as plt
    from attnlab.engine import plotting
    f = logs.runs[0]["final"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for s in schemes:
      model = I.scheme_step(s)[1]
      ax = axes[0 if model == "preln" else 1]
      e = f["error_at_L"][s]
      Lx = np.array(sorted(int(k) for k in e)); ev = np.array([e[str(k)] for k in Lx])
      ax.loglog(Lx, ev, "o-", label=f"{s}  (slope {f['order'][s]:.2f})")
    for ax, title in zip(axes, ("R-pre", "R-post")):
      ax.set_xlabel("L (h = T/L)"); ax.set_title(title); ax.legend(fontsize=7)
    axes[0].set_ylabel("max |u_L - u_ref| at T")
    return [plotting.savefig(fig, outdir / "depth_convergence.png")]

  return OneShot(compute=compute, jit=False, x64=True, summarize=summarize, figures=figures)
