"""Figure 3 of Henry, Marchetti & Kohn (ICLR 2025): softmax neuromanifold dimension vs delta.

Softmax attention, l = 2 layers, t = 3, a_1 = a_2 = 2, d_0 = d_1 = d_2 = delta
for delta = 3..10, N = 250 Gaussian inputs, a single float64 trial per delta
(the paper took the max over 5-8 float32 trials). "Estimated" is the Jacobian
rank, "Expected" is Eq. 16 = delta^2 + 8 delta - 8.

Command:
  python -m attnlab.run --config=configs/geometry_figure3.py --workdir=/tmp/geo_fig3

Runtime: 17.6 s wall (22 s CPU) on the idle 2-core machine with a cold
compilation cache (``--compilation_cache_dir=``), compilation included: 8
compiled programs (one per delta, vmapped over the seeds, LLVM opt level 0 via
``OneShot.compiler_options``); the run itself is under 1 s. On the shared
machine at load 7-8: about 57 s wall. ``:smoke`` runs delta = 3, 4 only.

Expected result (summary.json): ``delta = [3..10]``,
``estimated == expected == [25, 40, 57, 76, 97, 120, 145, 172]``,
``all_reliable = true`` (every trial: rank_tol == rank_gap, gap 1e10.9-1e14.3).
Figures: ``dimension.png`` (estimated vs expected), ``spectrum.png``.

Override the deltas with ``--config.delta='(3,4,5)'`` (a tuple: it is the sweep).
"""
from attnlab.engine.config import base_config, parse_arg
from attnlab.geometry.experiments import estimator_fields


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = base_config(
      "attnlab.geometry.experiments:uniform",
      delta=(3, 4) if a["smoke"] else tuple(range(3, 11)),
      depth=2,
      a=2,
      **estimator_fields(kind="softmax", t=3, n_inputs=250, trials=1),
  )
  cfg.sweep.delta = cfg.get_ref("delta")
  cfg.lanes = cfg.get_ref("seeds")  # the engine vmaps all seeds of a setting in lockstep
  cfg.lock()
  return cfg
