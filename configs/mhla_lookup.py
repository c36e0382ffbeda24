"""C11 (our extension): Algorithm 1 learns next-state lookup tables; exact rollouts.

Q = 3 states, S = 2 letters (embedding D = Q*S + Q = 9, psi = 405); training
words of 1..4 letters on random machines (N = 4000); held-out machines with
8-letter words (longer than in training), 500 machines, 2 seeds. Algorithm 1
with the minimum-norm solver (``eigh_pinv``), float64.

Command:
  python -m attnlab.run --config=configs/mhla_lookup.py --workdir=/tmp/mhla_lookup
Runtime: 5 s wall on 2 CPU cores at load ~1 (35 s on busy cores).

Expected result (summary.json, measured): lambda_min ~ 0 (null space 291 of
psi = 405: one-hot data are rank-deficient), train_rel_mse ~ 6e-28,
p_distance_rel ~ 0.65 (not identifiable), yet rollout_exact = 1.0 and
step_accuracy = 1.0 on held-out machines with 8-letter words, min_margin ~ 1.0;
the teacher itself rolls out exactly (teacher_rollout_exact = 1).
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = base_config(
      "attnlab.mhla.exp_lookup:experiment",
      seeds=2,
      n_states=3,
      n_symbols=2,
      max_steps=4,  # training words have 1..max_steps letters
      n_train=4000,
      n_test_machines=500,
      test_steps=8,  # held-out words (longer than in training)
      solver="eigh_pinv",  # minimum-norm: one-hot data may be rank-deficient  [reconstructed]
      solver_iters=2000,
      pinv_rtol=1e-12,
      certificate_tol=1e-10,
  )
  if a["smoke"]:
    cfg.seeds = 1
    cfg.n_states = 2
    cfg.n_train = 300
    cfg.n_test_machines = 20
    cfg.test_steps = 5
  return cfg
