"""E5 (Goel, Soltanolkotabi & Bartlett): the renormalisation target beta
(spec §4.4, §11). "Self" mode, d = k = 5, sigma = 0.1, n in {500, 2000},
SA-PrecGD (eta = 0.2, delta = 1e-3) for 150 steps, 2 seeds, float32,
beta in {0.1, 0.2, 0.3, 0.45, 0.6, 1.0} (traced: one compiled
program per n).

Command:
  python -m attnlab.run --config=configs/softmax_beta.py --workdir=/tmp/sp_beta

Runtime: 4.4 min on the shared 2-core CPU.

Expected result (summary.json ``sa_precgd[n]["beta=<b>"]["test_mse"]`` and
finite_test_vs_beta.png): U-shaped in beta; measured minimum 0.0306 at
beta = 0.3 (n = 500) and 0.0308 at beta = 0.45 (n = 2000); spec §11: 0.0308 and
0.0289, both at beta = 0.3.
"""
import importlib.util
import pathlib

from attnlab.engine.config import parse_arg

_spec = importlib.util.spec_from_file_location("softmax_finite", pathlib.Path(__file__).with_name("softmax_finite.py"))
_finite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_finite)


def get_config(arg=None):
  a = parse_arg(arg, smoke=False)
  cfg = _finite.get_config("smoke" if a["smoke"] else None)
  cfg.methods = ("sa_precgd",)
  cfg.sweep.beta = (0.1, 0.2, 0.3, 0.45, 0.6, 1.0)
  if a["smoke"]:
    cfg.n_train = (64,)
    cfg.sweep.beta = (0.2, 0.6)
    return cfg
  cfg.n_train = (500, 2000)
  cfg.seeds = 2
  cfg.steps = 150
  cfg.log_every = 10
  cfg.chunk_steps = 50
  return cfg
