"""Sub-stepping a trained post-LN Transformer (spec §5 item 4, P10).

Task: sort ``n_tokens`` integers drawn uniformly from ``{0, ..., vocab-1}``
(per-position cross-entropy on the sorted sequence). Model: token + learned
positional embeddings (the initial datum f), ``layers`` post-LN blocks in the
paper's form (LN with sigma1 = 0, sigma2 = 1, no per-feature gain: with a
gain the post-LN step has no Delta t -> 0 limit, spec P5), a linear read-out.
The forward pass IS the river: ``integrate(paper_step, h = 1)`` over the
stacked per-layer controls.

Training runs in the engine (``Iterative``, Adam, vmapped over seeds). At every
logged step ``evaluate`` re-runs the network on a fixed evaluation batch with
each layer's unit interval refined into m sub-steps of size 1/m (controls
piecewise constant), m in ``ms``:

* ``d1_m{m}``: ||u_m - u_1|| / ||u_1|| (m = 1 is the trained network exactly);
* ``dinf_m{m}``: ||u_m - u_inf|| / ||u_inf||, with u_inf the R-post river with
  the same piecewise-constant controls (projected RK4, ``ref_substeps`` per
  layer): the m -> infinity limit;
* ``acc_m{m}``: token accuracy of the sub-stepped network.

d1_inf = dinf_m1 is the headline: how far the trained network is from its ODE
(small = "ODE-like", Sander et al. 2022).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attnlab.core import prng
from attnlab.engine.config import check, check_positive
from attnlab.engine.experiment import Iterative
from attnlab.river import fields as F
from attnlab.river import integrators as I
from attnlab.river import operators as O
from attnlab.river.params import (AttnParams, BlockParams, FFNParams, NormParams)

_HI = jax.lax.Precision.HIGHEST


def _ms(cfg):
  return tuple(int(m) for m in (cfg.ms if isinstance(cfg.ms, (tuple, list)) else (cfg.ms,)))


def init_params(key, cfg):
  """Embeddings, stacked per-layer BlockParams (trainable arrays only) and the read-out."""
  d, H, L, dff = cfg.d, cfg.heads, cfg.layers, cfg.d_ff
  dh = d // H
  ks = jax.random.split(key, 10)
  nrm = lambda k, shape, s: s * jax.random.normal(k, shape)
  attn = AttnParams(wq=nrm(ks[0], (L, H, d, dh), d ** -0.5), wk=nrm(ks[1], (L, H, d, dh), d ** -0.5),
                    wv=nrm(ks[2], (L, H, d, dh), d ** -0.5), wo=nrm(ks[3], (L, H, dh, d), d ** -0.5),
                    scale=jnp.full((L, H), dh ** -0.5, dtype=jnp.zeros(()).dtype))
  ffn = FFNParams(w1=nrm(ks[4], (L, d, dff), d ** -0.5), b1=jnp.zeros((L, dff)),
                  w2=nrm(ks[5], (L, dff, d), dff ** -0.5), b2=jnp.zeros((L, d)), act=cfg.act)
  return {"tok": nrm(ks[6], (cfg.vocab, d), 1.0), "pos": nrm(ks[7], (cfg.n_tokens, d), 1.0),
          "attn": attn, "ffn": ffn, "out": nrm(ks[8], (d, cfg.vocab), d ** -0.5)}


def blocks(params) -> BlockParams:
  """Stacked BlockParams with fixed paper-form LNs (sigma1 = 0, sigma2 = 1, eps = 0)."""
  L = params["attn"].wq.shape[0]
  ln = NormParams(jnp.zeros((L,)), jnp.ones((L,)), eps=0.0, mode="projection")
  attn = params["attn"].replace(scale=jax.lax.stop_gradient(params["attn"].scale))
  return BlockParams(attn=attn, ln1=ln, ffn=params["ffn"], ln2=ln)


def embed(params, x):
  """x: (B, n) int tokens -> f: (B, n, d) (token + position; then projected onto S1)."""
  f = params["tok"][x] + params["pos"][None]
  return O.layernorm_project(f)


def forward(params, x, m: int = 1, step=I.paper_step):
  """Final states (B, n, d): each layer = m sub-steps of size 1/m of ``step`` (static m)."""
  theta = blocks(params)
  run = lambda f: I.integrate(step, f, theta, 1.0, substeps=m)[0]
  return jax.vmap(run)(embed(params, x))


def forward_traced_m(params, x, m):
  """As :func:`forward` with ``paper_step`` but a traced sub-step count m (one compiled body
  for every m; under ``vmap`` over m every lane would run max(m) masked iterations, so
  :func:`experiment` maps over m sequentially)."""
  theta = blocks(params)

  def layer(u, th):
    return jax.lax.fori_loop(0, m, lambda _, v: I.paper_step(v, th, 1.0 / m), u), None

  run = lambda f: jax.lax.scan(layer, f, theta)[0]
  return jax.vmap(run)(embed(params, x))


def logits(params, u):
  return jnp.einsum("bnd,dv->bnv", u, params["out"], precision=_HI)


def sample(key, cfg, batch):
  x = jax.random.randint(key, (batch, cfg.n_tokens), 0, cfg.vocab)
  return x, jnp.sort(x, axis=1)


def experiment(cfg) -> Iterative:
  check_positive(cfg, "d", "heads", "layers", "d_ff", "vocab", "n_tokens", "batch", "eval_batch",
                 "ref_substeps", "lr")
  check(cfg.d % cfg.heads == 0, "heads", f"d={cfg.d} must be divisible by heads={cfg.heads}")
  ms = _ms(cfg)
  check(len(ms) > 0 and all(m >= 1 for m in ms) and ms[0] == 1, "ms",
        f"sub-step counts must be >= 1 and start with 1, got {cfg.ms!r}")
  check(cfg.act in ("relu", "gelu", "tanh", "silu"), "act", f"unknown activation {cfg.act!r}")
  opt = optax.adam

  def loss_fn(params, x, y):
    lg = logits(params, forward(params, x))
    ce = optax.softmax_cross_entropy_with_integer_labels(lg, y).mean()
    return ce, jnp.mean(jnp.argmax(lg, -1) == y)

  def make_data(key, hp):
    return {"eval": sample(jax.random.fold_in(key, 7), cfg, cfg.eval_batch)}

  def init(key, hp, data):
    params = init_params(prng.stream(key, prng.INIT), cfg)
    return {"params": params, "opt": opt(hp["lr"]).init(params), "t": jnp.zeros((), jnp.int32),
            "key": prng.stream(key, prng.NOISE)}

  def step(state, hp, data):
    x, y = sample(jax.random.fold_in(state["key"], state["t"]), cfg, cfg.batch)
    (loss, acc), g = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], x, y)
    tx = opt(hp["lr"])
    upd, o = tx.update(g, state["opt"], state["params"])
    return ({"params": optax.apply_updates(state["params"], upd), "opt": o, "t": state["t"] + 1,
             "key": state["key"]}, {"loss": loss, "acc": acc})

  def evaluate(state, hp, data):
    p = state["params"]
    x, y = data["eval"]
    post_rk4 = lambda u, th, h: F.project_post(I.rk4_step(F.postln_field, u, th, h), th)
    u_inf = forward(p, x, cfg.ref_substeps, post_rk4)
    u1 = forward(p, x, 1)
    nrm = lambda a: jnp.sqrt(jnp.sum(a * a))
    out = {"loss_eval": optax.softmax_cross_entropy_with_integer_labels(logits(p, u1), y).mean(),
           "acc_inf": jnp.mean(jnp.argmax(logits(p, u_inf), -1) == y)}
    # one m after the other (lax.map): sum(ms) sub-steps per layer; a vmap over ms would
    # run max(ms) masked sub-steps in every lane (7 x 64 instead of 127 for the default ms)
    U = jax.lax.map(lambda m: forward_traced_m(p, x, m), jnp.asarray(ms))  # (len(ms), B, n, d)
    for i, m in enumerate(ms):
      um = U[i]
      out[f"d1_m{m}"] = nrm(um - u1) / nrm(u1)
      out[f"dinf_m{m}"] = nrm(um - u_inf) / nrm(u_inf)
      out[f"acc_m{m}"] = jnp.mean(jnp.argmax(logits(p, um), -1) == y)
    return out

  def summarize(cfg_, runs):
    ok = [r for r in runs if r["status"] == "ok"]
    med = lambda k: float(np.median([r["final"][k] for r in ok]))
    dinf = {str(m): med(f"dinf_m{m}") for m in ms}
    from attnlab.river.metrics import fit_order
    big = [m for m in ms if m >= 4]
    order, window = fit_order(big, [dinf[str(m)] for m in big]) if len(big) >= 2 else (float("nan"), ())
    return {"final_acc": med("acc_m1"), "final_loss": med("loss"),
            "dist_to_m1": {str(m): med(f"d1_m{m}") for m in ms},
            "dist_to_limit": dinf, "acc_at_m": {str(m): med(f"acc_m{m}") for m in ms},
            "acc_limit": med("acc_inf"),
            "distance_m1_to_limit": dinf["1"],
            "order_in_m": order, "order_window": list(window)}

  def figures(cfg_, logs, outdir):
    import matplotlib.pyplot as plt
    from attnlab.engine import plotting
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for r in logs.runs:
      f = r["final"]
      axes[0].loglog(ms, [f[f"dinf_m{m}"] for m in ms], "o-", label=f"to m=inf (seed {r['seed']})")
      axes[0].loglog(ms[1:], [f[f"d1_m{m}"] for m in ms[1:]], "s--", label=f"to m=1 (seed {r['seed']})")
    axes[0].set_xlabel("sub-steps per layer m"); axes[0].set_ylabel("relative distance")
    axes[0].legend(fontsize=7); axes[0].set_title("trained net, sub-stepped")
    ids = [r["run_id"] for r in logs.runs]
    for m in (1, ms[len(ms) // 2], ms[-1]):
      steps, Y = logs.curves(ids, f"dinf_m{m}")
      if len(steps):
        plotting.band(axes[1], steps, Y, label=f"m={m}")
    axes[1].set_yscale("log"); axes[1].set_xlabel("training step"); axes[1].legend(fontsize=7)
    axes[1].set_title("distance to the river limit during training")
    return [plotting.savefig(fig, outdir / "substep.png")]

  return Iterative(init=init, step=step, evaluate=evaluate, make_data=make_data, hparams=("lr",),
                   summarize=summarize, figures=figures, plot_metrics=("loss", "acc", "dinf_m1"))
