"""DFA data requirements (Yau et al. App. G.4, Fig. 4; spec C10), scaled down to CPU.

Random DFAs (Q states, V letters, uniform transitions, start state 0) and
random words of L letters, written as ``( s w δ(s,w) )`` x QV (random order),
``|``, word, ``|``, history ``( s^{i-1} w_{i-1} s^i )`` x L (T = 5QV + 2 + 6L
tokens; T = 106 at (4, 4, 4)). A small Llama-style model (2 layers, 4 heads,
hidden 32, SwiGLU 64, RMSNorm, rotary positions) is trained by AdamW (lr 3e-3,
batch 16) with cross-entropy on the history tokens, from a pool of 2048 traces
per run; held-out next-token accuracy on 128 fresh traces every 50 steps. One
of Q, L, V is varied at a time around (4, 4, 4) (``qlv`` in 4,4,4 / 2,4,4 /
8,4,4 / 4,2,4 / 4,8,4 / 4,4,2 / 4,4,8), 3 seeds vmapped, a fixed budget of
2000 steps x 16 traces per point (3.4M tokens at (4, 4, 4)).

  python -m attnlab.run --config=configs/mhla_dfa.py --workdir=/tmp/mhla_dfa
  # one point:  "--config.qlv_values=('4,4,4',)"
Runtime (measured): 0.65-1.0 s per step for the 3 seeds of (4, 4, 4) on the
shared, busy 2-core CPU (niced), i.e. ~25-35 min per point and several hours
for all 7 points; this does NOT meet the 10-minute target (see
experiments/mhla/README.md).
Expected (measured at (4, 4, 4), stopped at step 1100 of 2000): held-out
accuracy 0.85-0.86 over all history tokens and 0.35-0.39 on the looked-up states
(chance 0.25); 99% not reached, so ``tokens_to_target`` is null (summary.json);
fig4_dfa.png, dfa_accuracy.png.

Sizes are our scale-down [reconstructed]: the paper's model is a 4-layer,
16-head, hidden-2048 Llama trained at lr 2.5e-4 for 100 epochs on datasets of
16 .. 65536 examples. The spec (C10) suggests hidden 256; we use 32 to fit the
2-core CPU (``--config.dfa_hidden=256 --config.dfa_mlp_hidden=512`` restores it).

``:smoke``: one point (2,2,2), 1 seed, 20 steps, hidden 16 (for tests).
"""
from attnlab.engine.config import base_config, parse_arg


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = base_config(
      "attnlab.mhla.exp_dfa:experiment",
      seeds=3,
      steps=2000,
      log_every=50,
      chunk_steps=250,
      ckpt_every=0,
      qlv="4,4,4",  # "Q,L,V": states, word length, letters
      dfa_base="4,4,4",  # the point the figure's three panels go through
      dfa_table_order="shuffled",  # shuffled | sorted table entries  [reconstructed]
      n_train=2048,  # training traces per run (pool)  [reconstructed]
      n_eval=128,  # held-out traces (fresh DFAs and words)  [reconstructed]
      batch=16,
      lr=3e-3,  # paper: 2.5e-4 for its hidden-2048 model  [reconstructed for our size]
      weight_decay=0.0,  # AdamW decay (not given)  [reconstructed]
      dfa_layers=2,  # spec C10 scale-down
      dfa_heads=4,  # spec C10 scale-down
      dfa_hidden=32,  # spec C10 suggests 256; 32 fits the 2-core CPU  [reconstructed]
      dfa_mlp_hidden=64,  # SwiGLU width  [reconstructed]
      dfa_positions="rope",  # rope | learned  [reconstructed]
      acc_target=0.99,  # the paper's 99% next-token accuracy
  )
  cfg.qlv_values = ("4,4,4", "2,4,4", "8,4,4", "4,2,4", "4,8,4", "4,4,2", "4,4,8")
  if a["smoke"]:
    cfg.seeds = 1
    cfg.steps = 20
    cfg.log_every = 10
    cfg.chunk_steps = 10
    cfg.n_train = 64
    cfg.n_eval = 16
    cfg.batch = 8
    cfg.dfa_hidden = 16
    cfg.dfa_mlp_hidden = 16
    cfg.dfa_heads = 2
    cfg.dfa_layers = 1
    cfg.qlv_values = ("2,2,2",)
    cfg.dfa_base = "2,2,2"
  cfg.sweep.qlv = cfg.get_ref("qlv_values")
  return cfg
