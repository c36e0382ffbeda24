"""Exact recovery (spec §3.2, checks B6-B8): the discrete block IS the river at h = 1.

For each ``arch`` in ``cfg.archs``: a random flax encoder (``layers`` blocks;
``FlaxEncoder`` from :mod:`attnlab.river.loading`) and the river integrated
with ``lax.scan`` at h = 1 over the loaded stacked weights:

* ``postln``: ``integrate(paper_step, h=1)`` (``literal`` substeps optional);
* ``preln``:  ``integrate(preln_step, h=1)``;
* ``vit``:    post-LN on ViT patch tokens (2-D token grid Omega_x, a class
  token, learned positional embeddings in the initial datum f).

Reported (per arch and the max over archs): max |river - flax| in float64
and float32 (whole stack), the layer-by-layer max in f64, and whether the
flax -> river -> flax round trip is bit-exact. In float32 each side is also
compared with the float64 flax forward pass on the same float32 weights
(``f32_error_river``, ``f32_error_flax``): |river - flax| in float32 is the
sum of two independent rounding errors of this size.
"""
from __future__ import annotations

import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core import prng
from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import OneShot
from attnlab.river import integrators as I
from attnlab.river import loading as LD

ARCHS = ("postln", "preln", "vit")


def patchify(img: jax.Array, patch: int) -> jax.Array:
  """(H, W, C) image -> (H/p * W/p, p*p*C) patch rows, row-major over the 2-D grid."""
  h, w, c = img.shape
  x = img.reshape(h // patch, patch, w // patch, patch, c).transpose(0, 2, 1, 3, 4)
  return x.reshape((h // patch) * (w // patch), patch * patch * c)


class _ViTEmbed(nn.Module):
  d: int
  dtype: object

  @nn.compact
  def __call__(self, patches):
    x = nn.Dense(self.d, dtype=self.dtype, param_dtype=self.dtype,
                 precision=jax.lax.Precision.HIGHEST, name="embed")(patches)
    cls = self.param("cls", nn.initializers.normal(1.0), (1, self.d), self.dtype)
    x = jnp.concatenate([cls, x], axis=0)
    pos = self.param("pos", nn.initializers.normal(0.5), x.shape, self.dtype)
    return x + pos


def _validate(cfg):
  check_positive(cfg, "layers", "d", "heads", "d_ff", "n_tokens", "image", "patch")
  check_choice(cfg, "archs", ARCHS)
  check_choice(cfg, "act", ("relu", "gelu", "tanh", "silu"))
  check_choice(cfg, "norm_mode", ("projection", "affine"))
  check(cfg.d % cfg.heads == 0, "heads", f"d={cfg.d} must be divisible by heads={cfg.heads}")
  check(cfg.eps >= 0, "eps", f"must be >= 0, got {cfg.eps}")
  check(cfg.image % cfg.patch == 0, "patch", f"image={cfg.image} must be divisible by patch={cfg.patch}")
  if cfg.paper_form:
    check(cfg.norm_mode == "projection", "norm_mode",
          "per-feature gamma/beta ('affine') cannot be written in paper form (LN with per-feature "
          "gain is not a projection onto S1, spec P5); use norm_mode=projection or paper_form=False")
    check(not cfg.use_bias, "use_bias", "Q/K biases have no paper-form counterpart (spec P7); "
          "use use_bias=False or paper_form=False")
  if cfg.literal:
    check(cfg.d_ff == cfg.d, "literal", f"the literal six substeps need d_ff = d (W_j' = W_j - I), "
          f"got d_ff={cfg.d_ff}, d={cfg.d}")
    check(cfg.paper_form, "literal", "literal substeps are the paper form; set paper_form=True")


def _set_ln(prm, key, mode, dtype):
  """Random LN parameters: scalar (constant over features) or per-feature."""
  def fix(path, x):
    names = [getattr(p, "key", "") for p in path]
    if not any(str(n).startswith("ln") for n in names):
      return x
    k = jax.random.fold_in(key, zlib.crc32("/".join(str(n) for n in names).encode()) % (2 ** 31))
    base = 1.0 if names[-1] == "scale" else 0.0
    if mode == "projection":
      return jnp.full(x.shape, base + 0.2 * jax.random.normal(k, ()), dtype)
    return (base + 0.2 * jax.random.normal(k, x.shape)).astype(dtype)
  return jax.tree_util.tree_map_with_path(fix, prm)


def run_arch(cfg, arch: str, key, dtype):
  """(river output, flax output, per-layer f64 diffs, round-trip exact, truth) for one arch.

  ``truth`` is the flax forward pass in float64 with the same (dtype) weights
  and input cast to float64: the rounding-free output that both the river and
  the flax reference approximate in float32.
  """
  base_arch = "preln" if arch == "preln" else "postln"
  enc = LD.FlaxEncoder(layers=cfg.layers, d=cfg.d, heads=cfg.heads, d_ff=cfg.d_ff, arch=base_arch,
                       act=cfg.act, use_bias=cfg.use_bias, eps=cfg.eps, dtype=dtype)
  k_in, k_p, k_ln, k_e = jax.random.split(key, 4)
  if arch == "vit":
    img = jax.random.normal(k_in, (cfg.image, cfg.image, 3), dtype)
    emb = _ViTEmbed(cfg.d, dtype)
    patches = patchify(img, cfg.patch)
    ep = emb.init(k_e, patches)
    x = jax.jit(emb.apply)(ep, patches)  # the initial datum f: patch tokens + class token + positions
  else:
    x = jax.random.normal(k_in, (cfg.n_tokens, cfg.d), dtype)
  prm = _set_ln(jax.jit(enc.init)(k_p, x)["params"], k_ln, cfg.norm_mode, dtype)
  ref = jax.jit(enc.apply)({"params": prm}, x)
  theta = LD.from_flax_encoder(prm, cfg.layers, heads=cfg.heads, act=cfg.act, eps=cfg.eps)
  if cfg.paper_form:
    theta = LD.to_projection_mode(theta)
    LD.to_paper_form(jax.tree.map(lambda a: a[0], theta), require_literal=cfg.literal)
  if base_arch == "preln":
    step = I.preln_step
  else:
    step = (lambda u, th, h: I.paper_step(u, th, h, literal=True)) if cfg.literal else I.paper_step
  uT, traj = jax.jit(lambda u, th: I.integrate(step, u, th, 1.0, save=True))(x, theta)
  # layer by layer against the flax blocks applied one at a time
  blk = LD.FlaxBlock(cfg.d, cfg.heads, cfg.d_ff, base_arch, cfg.act, cfg.use_bias, False, cfg.eps, dtype)
  apply_blk = jax.jit(blk.apply)
  v, per_layer = x, []
  for i in range(cfg.layers):  # host loop over layers only for the per-layer diagnostic
    v = apply_blk({"params": prm[f"block_{i}"]}, v)
    per_layer.append(float(jnp.max(jnp.abs(traj[i] - v))))
  back = LD.to_flax_encoder(LD.from_flax_encoder(prm, cfg.layers, heads=cfg.heads, act=cfg.act,
                                                 eps=cfg.eps), cfg.layers)
  exact = (jax.tree.structure(back) == jax.tree.structure(prm) and
           all(a.dtype == b.dtype and a.shape == b.shape and bool(jnp.all(a == b))
               for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(prm))))
  f64 = lambda t: jax.tree.map(lambda a: a.astype(jnp.float64), t)
  truth = jax.jit(enc.clone(dtype=jnp.float64).apply)({"params": f64(prm)}, f64(x))
  return uT, ref, per_layer, exact, truth


def experiment(cfg) -> OneShot:
  _validate(cfg)

  def compute(key, hp, data):
    key = prng.stream(jnp.asarray(key), prng.INIT)
    out = {}
    for arch in cfg.archs:  # static, at most 3 architectures
      k = jax.random.fold_in(key, ARCHS.index(arch))
      u64, r64, per_layer, exact, _ = run_arch(cfg, arch, k, jnp.float64)
      u32, r32, _, _, t32 = run_arch(cfg, arch, k, jnp.float32)
      out[arch] = {"max_abs_diff_f64": float(jnp.max(jnp.abs(u64 - r64))),
                   "max_abs_diff_f32": float(jnp.max(jnp.abs(u32 - r32))),
                   "max_rel_diff_f32": float(jnp.max(jnp.abs(u32 - r32)) / jnp.max(jnp.abs(r32))),
                   # each float32 forward pass against the float64 one (same weights)
                   "f32_error_river": float(jnp.max(jnp.abs(u32 - t32))),
                   "f32_error_flax": float(jnp.max(jnp.abs(r32 - t32))),
                   "per_layer_f64": per_layer, "roundtrip_bitexact": bool(exact),
                   "output_scale": float(jnp.max(jnp.abs(r64)))}
    return {"per_arch": out,
            "max_abs_diff_f64": max(v["max_abs_diff_f64"] for v in out.values()),
            "max_abs_diff_f32": max(v["max_abs_diff_f32"] for v in out.values()),
            "roundtrip_bitexact": float(all(v["roundtrip_bitexact"] for v in out.values()))}

  def summarize(cfg_, runs):
    ok = [r for r in runs if r["status"] == "ok"]
    return {"layers": cfg.layers,
            "max_abs_diff_f64": max(r["final"]["max_abs_diff_f64"] for r in ok),
            "max_abs_diff_f32": max(r["final"]["max_abs_diff_f32"] for r in ok),
            "roundtrip_bitexact": all(r["final"]["roundtrip_bitexact"] == 1.0 for r in ok),
            "per_arch": ok[0]["final"]["per_arch"],
            "tolerances": {"f64": 1e-12, "f32": 2e-6},
            "pass": all(r["final"]["max_abs_diff_f64"] <= 1e-12 and r["final"]["max_abs_diff_f32"] <= 2e-6
                        for r in ok)}

  def figures(cfg_, logs, outdir):
    import matplotlib.pyplot as plt
    from attnlab.engine import plotting
    r = logs.runs[0]["final"]["per_arch"]
    fig, ax = plt.subplots(figsize=(4.5, 3))
    for arch, v in r.items():
      ax.semilogy(np.arange(1, len(v["per_layer_f64"]) + 1),
                  np.maximum(v["per_layer_f64"], 1e-18), "o-", label=arch)
    ax.axhline(1e-12, color="k", ls="--", lw=0.8, label="tolerance 1e-12")
    ax.set_xlabel("layer"); ax.set_ylabel("max |river(h=1) - flax|  (f64)")
    ax.legend(); ax.set_title("exact recovery, layer by layer")
    return [plotting.savefig(fig, outdir / "recovery_layers.png")]

  return OneShot(compute=compute, jit=False, x64=True, summarize=summarize, figures=figures)
