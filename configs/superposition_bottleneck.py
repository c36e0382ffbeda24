"""Superposition S4, E4-E7 (checks P1-P4) and the bottleneck exploration: K < N.

Student ``tied_relu`` (ReLU(W^T W x + c), W: K x N, bias c from 0) trained
online on fresh sparse batches (p_i ~ i^-a, sum p = 1, teacher diag(i^-b));
K = round(k_ratio * N). Seeds, lr and (a, b) are vmapped; each k_ratio is one
compiled program. gamma is fitted on the fixed-eval-set loss against
t = lr * step (SGD) or t = step (Adam) over the automatic window (spec §6.2);
the K = N reference exponent is the per-feature ODE's on the same N
(``gamma0_ode``, the finite-N no-superposition value, e.g. 0.27 for a = 1.2
tied/logistic). ``gamma_late`` (the slope over the last half decade) shows
whether the plateau is reached (about 0).

Base setting (no argument; checks P1-P4): N = 1024, K/N in {1/4, 1/16, 1/64}
(K = 256, 64, 16), a in {1.2, 2.0}, b = 0, SGD lr 0.25, B = 256, sigma0 = 1e-2,
3 seeds, 4000 steps (t = 1000), eval set 4096 per seed.

Exploration (one factor at a time around the base, N = 1024, K/N in
{1/16, 1/64}, a = 1.2, 3 seeds); each argument is one row group of the
README's exploration table:

  :adam     Adam, lr in {1e-3, 3e-3, 1e-2} (t = step), 2000 steps
  :b1024    batch 1024 (base: 256), K/N = 1/64 only, 2000 steps
  :lr       SGD lr in {0.1, 0.5} (base: 0.25), 4000 steps
  :nobias   tied_relu_nobias, 4000 steps
  :long     the plateaus: a = 1.2, all three K/N, lr 0.5, 40000 steps (t = 20000,
            20x the base run's t); for a = 2.0 add --config.freq_exp="(2.0,)"
            --config.lr="(0.25,)" (lr 0.5 diverges at a = 2)
  :smoke    tiny (tests)

Commands:
  python -m attnlab.run --config=configs/superposition_bottleneck.py --workdir=/tmp/s4_bn_base
  python -m attnlab.run --config=configs/superposition_bottleneck.py:adam --workdir=/tmp/s4_bn_adam
  python -m attnlab.run --config=configs/superposition_bottleneck.py:b1024 --workdir=/tmp/s4_bn_b1024
  python -m attnlab.run --config=configs/superposition_bottleneck.py:lr --workdir=/tmp/s4_bn_lr
  python -m attnlab.run --config=configs/superposition_bottleneck.py:nobias --workdir=/tmp/s4_bn_nobias
  python -m attnlab.run --config=configs/superposition_bottleneck.py:long --workdir=/tmp/s4_bn_long

Runtime measured on 2 CPU cores shared with other jobs (load 7-8): base 23.5 min
(the K = 256 group 16 min), :adam 13.3 min, :lr 8.9 min, :nobias 7.9 min,
:b1024 3.4 min.

Expected result (summary.json ``settings_fit``: gamma, fit_window,
plateau_loss, represented_features, gamma_late per setting; ``checks``:
P1-P4 pass/fail). The paper claims gamma ~ 1 for K <= N/4 independent of
(a, b). Measured (base, 3 seeds): gamma = 0.320 / 0.293 / 0.204 (a = 1.2)
and 0.493 / 0.484 / 0.464 (a = 2.0) at K = 256 / 64 / 16, i.e. the K = N ODE
values (0.30, 0.51) or below; P1-P4 fail (plateau slope -0.34, not -1; only
K = 16 reaches its plateau by t = 1000). The exploration rows give 0.19-0.29
(SGD, any lr / batch / bias) and no power-law window with Adam (transient
local exponents up to 0.7-0.9). ``:long`` (27 min on one idle core): all
three plateaus reached, L_inf = 0.0025 / 0.179 / 0.372 for K = 256 / 64 / 16
(P4 slope -1.80); K = 256 ends with all 1024 features represented after a
late collapse (local exponent up to 2.6 at t ~ 7000), K = 64 and 16
saturate at 173 and 37 features. At a = 2.0 use ``--config.lr="(0.25,)"``
(lr 0.5 diverges there): gamma 0.52 / 0.49 / 0.42, P4 slope -0.90 with
K = 256 and 64 still falling (23 min). Details: experiments/superposition/README.md.
"""
from attnlab.engine.config import base_config, parse_arg
from attnlab.superposition.experiment import SIM_FIELDS


def get_config(arg=None):
  a = parse_arg(arg, smoke=False, nobias=False, adam=False, b1024=False, lr=False, long=False)
  f = dict(SIM_FIELDS)
  f.update(student="tied_relu", n_features=1024, k_ratio=(0.25, 0.0625, 0.015625), batch=256, lr=(0.25,),
           freq_exp=(1.2, 2.0), imp_exp=(0.0,), sigma0=1e-2, eval_size=4096, eval_chunk=4096, n_probes=12)
  eng = dict(seeds=3, steps=4000, log_spacing="log", n_log_points=40, chunk_steps=1000, ckpt_every=0)
  explore = dict(k_ratio=(0.0625, 0.015625), freq_exp=(1.2,))
  if a["adam"]:
    f.update(explore, optimizer="adam", lr=(0.001, 0.003, 0.01))
    eng.update(steps=2000)
  if a["b1024"]:
    f.update(explore, batch=1024, k_ratio=(0.015625,))
    eng.update(steps=2000)
  if a["lr"]:
    f.update(explore, lr=(0.1, 0.5))
  if a["nobias"]:
    f.update(explore, student="tied_relu_nobias")
  if a["long"]:
    f.update(freq_exp=(1.2,), lr=(0.5,))
    eng.update(steps=40000, n_log_points=60, chunk_steps=5000)
  if a["smoke"]:
    f.update(n_features=32, k_ratio=(0.25, 0.125), freq_exp=(1.2,), batch=64, eval_size=256, eval_chunk=256,
             n_probes=4)
    eng.update(seeds=2, steps=60, n_log_points=20, chunk_steps=60)
  cfg = base_config("attnlab.superposition.experiment:bottleneck", **eng, **f)
  for name in ("k_ratio", "lr", "freq_exp", "imp_exp"):
    cfg.sweep[name] = cfg.get_ref(name)
  return cfg
