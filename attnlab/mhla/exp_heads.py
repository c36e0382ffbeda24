"""Do extra heads help optimisation? (Yau et al. Fig. 1 / Fig. 3; spec check C7)

A random ``heads_teacher``-head teacher (entries N(0, teacher_init_std²),
default d^-1/2) labels ``n_train`` sequences of ``n_tokens`` tokens,
Z ~ N(0, input_std²) (default n^-1/2), at the last token. Students:

* ``model = "mhla:H"``: single-layer MHLA with H heads;
* ``model = "stack:L"``: L single-head linear-attention layers (residual,
  attention readout);
* ``model = "tf"``: a small pre-LN softmax Transformer;

trained by AdamW (traced ``lr``, ``weight_decay``, ``init_std``) on minibatches
of ``batch`` sequences, float32.

Student initialisation (``init_rule``, static; [reconstructed]: the paper and
the spec give none): ``"fixed"``: every entry of V_h and Q_h (and of each
stacked layer) is N(0, init_std²); ``"fan_in"``: N(0, init_std² / d), i.e.
``init_std`` is a gain on 1/sqrt(fan-in) with fan-in d for both V_h: R^d ->
R^d_out (whatever d_out is) and Q_h: R^d -> R^d. Gain 1 is flax's
``lecun_normal`` applied per matrix and equals the teacher's default std
d^-1/2; it is the student init of the spec's own C8 runs ("init std 1/√d")
and the one that reproduces the spec's C7 reference numbers (see
experiments/mhla/README.md §3). The Transformer keeps flax's initialisers. The dataset is drawn by ``make_data`` outside
the vmapped trainer. Logged: the batch ``loss`` every step, and the full
training set ``train_mse`` and ``rel_mse`` (MSE / Var(y)) at logged steps.

``summarize`` adds, per (d, n_train, d_out), the relative train MSE of
Algorithm 1 (refit host-side in float64 on the very same float32 dataset; the
horizontal line of Fig. 1) and the C7 ratio relMSE(mhla:1) / relMSE(mhla:16).
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from attnlab.core import prng
from attnlab.engine.config import check, check_choice, check_positive
from attnlab.engine.experiment import ConfigError, Iterative
from attnlab.mhla import models
from attnlab.mhla import regression as R
from attnlab.mhla import tasks as T
from attnlab.mhla import train as TR
from attnlab.mhla.exp_fit import resolved_d_out


def _data(key, d, d_out, N, n, heads_teacher, t_std, z_std):
  V, Q = T.random_teacher(jax.random.fold_in(key, 0), d, heads_teacher, d_out, t_std)
  Z, Y = T.teacher_data(jax.random.fold_in(key, 1), V, Q, N, n, z_std)
  return {"Z": Z, "Y": Y, "yvar": TR.label_var(Y)}


def _stds(cfg):
  t = cfg.teacher_init_std if cfg.teacher_init_std is not None else cfg.d ** -0.5
  z = cfg.input_std if cfg.input_std is not None else cfg.n_tokens ** -0.5
  return t, z


def _model_kw(cfg) -> dict:
  return dict(name=cfg.model, residual=cfg.residual, readout=cfg.readout, tf_d_model=cfg.tf_d_model,
              tf_heads=cfg.tf_heads, tf_mlp_ratio=cfg.tf_mlp_ratio, tf_layers=cfg.tf_layers, tf_norm=cfg.tf_norm)


def experiment(cfg) -> Iterative:
  """The ``mhla_heads`` factory."""
  for f in ("d", "n_tokens", "n_train", "heads_teacher", "batch", "tf_d_model", "tf_heads", "tf_mlp_ratio",
            "tf_layers"):
    v = cfg[f]
    vals = v if isinstance(v, (tuple, list)) else (v,)
    check(all(isinstance(x, int) and x >= 1 for x in vals), f, f"must be an int >= 1, got {v!r}")
  check(cfg.d <= R.MAX_D, "d", f"must be <= {R.MAX_D}")
  check(cfg.d_out in (0, 1, cfg.d), "d_out", f"must be 1 or d = {cfg.d} (0 means d), got {cfg.d_out!r}")
  check_positive(cfg, "lr", "init_std")
  check_positive(cfg, "weight_decay", strict=False)
  check_choice(cfg, "readout", ("attn", "residual_stream"))
  check_choice(cfg, "init_rule", INIT_RULES)
  check_choice(cfg, "tf_norm", ("pre_ln", "post_ln"))
  check(cfg.tf_d_model % cfg.tf_heads == 0, "tf_heads", f"must divide tf_d_model = {cfg.tf_d_model}")
  for name in (cfg.model if isinstance(cfg.model, (tuple, list)) else (cfg.model,)):
    try:
      models.parse_model(name)
    except ValueError as e:
      raise ConfigError("model", str(e)) from None
  for f in ("teacher_init_std", "input_std"):
    check(cfg[f] is None or cfg[f] > 0, f, f"must be > 0 (or None for the default), got {cfg[f]!r}")
  d, n, N, Ht = cfg.d, cfg.n_tokens, cfg.n_train, cfg.heads_teacher
  d_out = resolved_d_out(cfg)
  t_std, z_std = _stds(cfg)
  mk = _model_kw(cfg)
  init0, step, evaluate = TR.make(mk, {k: v for k, v in mk.items() if k != "name"}, cfg.batch)
  gain_to_std = init_std_factor(cfg.init_rule, d)

  def init(key, hp, data):
    return init0(key, {**hp, "init_std": hp["init_std"] * gain_to_std}, data)

  def make_data(key, hp):
    return _data(key, d, d_out, N, n, Ht, t_std, z_std)

  return Iterative(init=init, step=step, evaluate=evaluate, make_data=make_data,
                   hparams=("lr", "init_std", "weight_decay"), summarize=summarize,
                   summarize_logs=summarize_logs, figures=figures,
                   plot_metrics=("rel_mse",), log_x=True)


INIT_RULES = ("fixed", "fan_in")


def init_std_factor(init_rule: str, d: int) -> float:
  """The student's entry std is ``init_std * init_std_factor(init_rule, d)``:
  1 for ``"fixed"``, d^-1/2 (1/sqrt(fan-in) of V_h and Q_h) for ``"fan_in"``."""
  return 1.0 if init_rule == "fixed" else d ** -0.5


def _coord(r, cfg, name):
  return r.get(name, cfg[name])


@functools.lru_cache(maxsize=64)
def _alg1_rel_mse(seed0, seed, d, d_out, N, n, Ht, t_std, z_std):
  """Algorithm 1's train relMSE (float64 fit of the float32 dataset of this seed)."""
  key = prng.stream(prng.run_key(seed0, seed), prng.DATA)
  data = jax.jit(_data, static_argnums=(1, 2, 3, 4, 5))(key, d, d_out, N, n, Ht, t_std, z_std)
  with jax.enable_x64(True):
    Z = jnp.asarray(np.asarray(data["Z"]), jnp.float64)
    Y = jnp.asarray(np.asarray(data["Y"]), jnp.float64)
    fit = jax.jit(lambda Z, Y: R.rel_mse(R.fit_p(Z, Y, solver="eigh_pinv").p, Z, Y))
    return float(fit(Z, Y))


def summarize(cfg, runs):
  """Final rel_mse medians per setting, Algorithm 1's line, the C7 ratios and,
  with more than 3 seeds, the fraction of seed triples on which C7 passes."""
  groups: dict = {}
  alg1: dict = {}
  for r in runs:
    d, N, d_out_f = _coord(r, cfg, "d"), _coord(r, cfg, "n_train"), _coord(r, cfg, "d_out")
    d_out = d if d_out_f in (0, None) else d_out_f
    lr = _coord(r, cfg, "lr")
    key = f"d={d},N={N},d_out={d_out}"
    hkey = _hkey(lr, _coord(r, cfg, "init_std"), _coord(r, cfg, "init_rule"))
    groups.setdefault(key, {}).setdefault(hkey, {}).setdefault(_coord(r, cfg, "model"), []).append(
        (r["seed"], r["final"]["rel_mse"] if r["status"] == "ok" else float("nan")))
    t_std = cfg.teacher_init_std if cfg.teacher_init_std is not None else d ** -0.5
    z_std = cfg.input_std if cfg.input_std is not None else cfg.n_tokens ** -0.5
    alg1.setdefault(key, []).append(_alg1_rel_mse(cfg.seed, r["seed"], d, d_out, N, cfg.n_tokens,
                                                  cfg.heads_teacher, float(t_std), float(z_std)))
  final = {k: {lr: {m: float(np.nanmedian([v for _, v in sv])) for m, sv in ms.items()} for lr, ms in lrs.items()}
           for k, lrs in groups.items()}
  ratios, triples = {}, {}
  for k, lrs in groups.items():
    for lr, ms in lrs.items():
      if "mhla:1" in ms and "mhla:16" in ms:
        ratios[f"{k},{lr}"] = final[k][lr]["mhla:1"] / final[k][lr]["mhla:16"]
        h1, h16 = dict(ms["mhla:1"]), dict(ms["mhla:16"])
        seeds = sorted(set(h1) & set(h16))
        if len(seeds) > 3:
          triples[f"{k},{lr}"] = triple_pass_fraction([h1[t] for t in seeds], [h16[t] for t in seeds])
  out = {"final_rel_mse_median": final, "alg1_rel_mse_median": {k: float(np.median(v)) for k, v in alg1.items()},
         "c7_ratio_h1_over_h16": ratios}
  if triples:
    out["c7_fraction_of_seed_triples_ge_100"] = triples
  return out


def _hkey(lr, init_std, init_rule) -> str:
  return f"lr={lr:g},init_std={init_std:g},init_rule={init_rule}"


def triple_pass_fraction(h1, h16, factor: float = 100.0) -> float:
  """Fraction of the 3-subsets of seeds (paired by seed) on which C7's statistic,
  median(relMSE H=1) / median(relMSE H=16) over the 3 seeds, is >= ``factor``.

  ``h1``, ``h16``: per-seed relMSE, aligned by seed (length S >= 3). This is
  the probability that a 3-seed C7 check drawn from these S seeds passes.
  """
  h1, h16 = np.asarray(h1, float), np.asarray(h16, float)
  idx = np.array(list(itertools.combinations(range(len(h1)), 3)))
  return float(np.mean(np.median(h1[idx], 1) / np.median(h16[idx], 1) >= factor))


def _panels(cfg, logs) -> dict:
  """Runs grouped by panel: (d, n_train, d_out, lr, init_std, init_rule) -> [(model, run ids)]."""
  panels: dict = {}
  for s, ids in logs.settings().items():
    c = dict(s)
    d = c.get("d", cfg.d)
    d_out_f = c.get("d_out", cfg.d_out)
    d_out = d if d_out_f in (0, None) else d_out_f
    key = (d, c.get("n_train", cfg.n_train), d_out, c.get("lr", cfg.lr), c.get("init_std", cfg.init_std),
           c.get("init_rule", cfg.init_rule))
    panels.setdefault(key, []).append((c.get("model", cfg.model), ids))
  return panels


def summarize_logs(cfg, logs) -> dict:
  """The engine's ``summarize_logs`` hook: ``c7_ratio_by_step``.

  Per panel with both mhla:1 and mhla:16, the seed-median relMSE of each and
  their ratio at every common logged step, and (with more than 3 seeds) the
  fraction of seed triples on which the 3-seed C7 check passes
  (:func:`triple_pass_fraction`)."""
  by_step = {}
  for key, models in sorted(_panels(cfg, logs).items()):
    ms = dict(models)
    if "mhla:1" in ms and "mhla:16" in ms:
      s1, Y1 = logs.curves(_by_seed(logs, ms["mhla:1"]), "rel_mse")
      s16, Y16 = logs.curves(_by_seed(logs, ms["mhla:16"]), "rel_mse")
      common = np.intersect1d(s1, s16)
      Y1, Y16 = Y1[:, np.isin(s1, common)], Y16[:, np.isin(s16, common)]
      m1, m16 = np.nanmedian(Y1, axis=0), np.nanmedian(Y16, axis=0)
      entry = {}
      for j, (t, a, b) in enumerate(zip(common, m1, m16)):
        if t > 0:
          entry[str(int(t))] = {"h1": float(a), "h16": float(b), "ratio": float(a / b)}
          if Y1.shape[0] == Y16.shape[0] > 3:  # seeds aligned by _by_seed
            entry[str(int(t))]["fraction_of_seed_triples_ge_100"] = triple_pass_fraction(Y1[:, j], Y16[:, j])
      by_step[f"d={key[0]},N={key[1]},d_out={key[2]},{_hkey(key[3], key[4], key[5])}"] = entry
  return {"c7_ratio_by_step": by_step} if by_step else {}


def figures(cfg, logs, outdir):
  """fig1_heads.png: rel_mse against step per model (median + IQR over seeds), one
  panel per (d, n_train, d_out, lr, init_std, init_rule), with Algorithm 1's
  relMSE (from summary.json) as a dashed line."""
  import json
  import pathlib
  import matplotlib.pyplot as plt
  from attnlab.engine import plotting
  panels = _panels(cfg, logs)
  if not panels:
    return []
  summ = {}
  p = pathlib.Path(outdir) / "summary.json"
  if p.exists():
    summ = json.loads(p.read_text()).get("alg1_rel_mse_median", {})
  keys = sorted(panels)
  ncol = min(4, len(keys))
  nrow = -(-len(keys) // ncol)
  fig, axes = plt.subplots(nrow, ncol, squeeze=False, figsize=(3.8 * ncol, 3.0 * nrow))
  for ax, key in zip(axes.flat, keys):
    for i, (model, ids) in enumerate(sorted(panels[key], key=lambda t: _model_order(t[0]))):
      steps, Y = logs.curves(ids, "rel_mse")
      if len(steps):
        m = steps > 0
        plotting.band(ax, steps[m], Y[:, m], label=model, color=f"C{i}")
    a1 = summ.get(f"d={key[0]},N={key[1]},d_out={key[2]}")
    if a1 is not None:
      ax.axhline(max(a1, 1e-30), color="k", ls="--", lw=1, label="Algorithm 1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"d={key[0]}, N={key[1]}, d_out={key[2]}, lr={key[3]:g}, init={key[4]:g} ({key[5]})", fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("train MSE / Var(y)")
  axes.flat[0].legend(fontsize=6)
  for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
  fig.tight_layout()
  return [plotting.savefig(fig, f"{outdir}/fig1_heads.png")]


def _by_seed(logs, ids):
  """Run ids sorted by seed index (so H = 1 and H = 16 rows pair up by seed)."""
  seed = {r["run_id"]: r["seed"] for r in logs.runs}
  return sorted(ids, key=lambda i: seed.get(i, 0))


def _model_order(name):
  kind, num = models.parse_model(name)
  return (models.MODEL_KINDS.index(kind), num)
