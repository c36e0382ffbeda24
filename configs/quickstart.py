"""Quickstart: do extra heads help optimisation? (a small S2 Fig. 1)

A random single-head linear-attention teacher (d = 4, n = 20 tokens,
N = 2048 sequences); students with H in {1, 2, 4, 16} heads trained by
full-batch Adam at lr in {1e-2, 1e-3}, 5 seeds each: 40 runs in 4 compiled
programs (one per H; learning rates and seeds are vmapped).

Command:
  python -m attnlab.run --config=configs/quickstart.py --workdir=runs/quickstart

Runtime: 23 s wall (32 s CPU) on the idle 2-core machine with a cold
compilation cache (``--compilation_cache_dir=``), compilation of the 4 static
groups included; 52 s while another job ran.

Measured result (summary.json ``final_rel_mse_median``, median of 5 seeds,
600 steps):

  heads    lr=1e-2    lr=1e-3
  1        1.8e-10    2.3e-1
  2        5.3e-05    8.5e-2
  4        2.0e-05    3.3e-2
  16       1.0e-07    2.1e-3

More heads descend much faster early on (at step 200, 3 seeds: 4.3e-5 for 16
heads vs 8.5e-2 for 1 head at lr = 1e-2; 7.4e-2 vs 0.52 at lr = 1e-3). At
lr = 1e-2 the single head catches up after about 400 steps and ends lowest:
as the S2 spec warns, one head also converges given enough steps, so the
claim to test is speed at a fixed budget (see loss_curves.png).

Argument: ``:smoke`` shrinks everything for tests (N = 64, 20 steps, 2 seeds).
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = base_config(
      "attnlab.quickstart:experiment",
      seeds=5,
      steps=600,
      lanes=10,  # 5 seeds x 2 learning rates per H: one vmap of 10 runs
      log_every=10,
      chunk_steps=100,
      ckpt_every=2,
      d=4,
      d_out=4,
      n_tokens=20,
      n_train=2048,
      heads=1,
      lr=1e-2,
      teacher_init_std_scale=1.0,  # teacher entries ~ N(0, scale^2 / d)  [reconstructed]
      student_init_std=0.1,  # student entries ~ N(0, std^2)  [reconstructed]
      sweep={"heads": (1, 2, 4, 16), "lr": (1e-2, 1e-3)},
  )
  if a["smoke"]:
    cfg.seeds = 2
    cfg.steps = 20
    cfg.log_every = 5
    cfg.chunk_steps = 10
    cfg.ckpt_every = 1
    cfg.n_train = 64
    cfg.n_tokens = 6
    cfg.d = 3
    cfg.d_out = 3
    cfg.sweep.heads = (1, 2)
  return cfg
