"""Ball-arithmetic Jacobians and rank certificates (attnlab.geometry.certify)."""
import json

import jax
import numpy as np
import pytest

from attnlab.engine import runner
from attnlab.geometry import certify as gcert
from attnlab.geometry import estimator as ge
from attnlab.geometry import model as gm


def _mid(blocks) -> np.ndarray:
  return np.vstack([[[float(b[i, j].mid()) for j in range(b.ncols())] for i in range(b.nrows())] for b in blocks])


@pytest.mark.parametrize("arch,temperature", [
    (gm.Arch((3, 3, 2), (2, 1), "softmax", 3), 1.3),
    (gm.Arch((3, 2), (2,), "softmax", 3, "query"), 1.0),
    (gm.Arch((3, 3, 2), (2, 1), "lightning", 2), 1.0),
])
def test_arb_jacobian_matches_autodiff(arch, temperature):
  """The ball-arithmetic forward mode is the same J as jax.jacrev (rows (n, output row, token))."""
  with jax.enable_x64(True):
    d = ge.draw(jax.random.PRNGKey(1), arch, 4)
    J = np.asarray(ge.jacobian(d["theta"][0], d["X"][0], arch, temperature))
  blocks = gcert.jacobian_arb(np.asarray(d["theta"][0]), np.asarray(d["X"][0]), arch, 128, temperature)
  assert len(blocks) == 4 and (blocks[0].nrows(), blocks[0].ncols()) == (arch.out_size, arch.num_params)
  np.testing.assert_allclose(_mid(blocks), J, rtol=0, atol=1e-13 * np.abs(J).max())
  # every ball is tight at 128 bits
  assert max(float(b[i, j].rad()) for b in blocks for i in range(b.nrows()) for j in range(b.ncols())) < 1e-25


def test_certificate_proves_the_bound_and_nothing_above():
  """rank >= P - dim(symmetries) is proven at a random point; one more is refused
  at every precision (the symmetry generators are in the kernel everywhere)."""
  arch = gm.Arch((3, 3, 2), (2, 1), "softmax", 3)
  with jax.enable_x64(True):
    d = ge.draw(jax.random.PRNGKey(2), arch, 30)
  theta, X = np.asarray(d["theta"][0]), np.asarray(d["X"][0])
  bound = ge.symmetry_bound(arch)
  ok = gcert.certify_rank(theta, X, arch, bound)
  assert bound == 19 and ok.certified and ok.prec == gcert.DEFAULT_PRECISIONS[0] and ok.det_log10 is not None
  above = gcert.certify_rank(theta, X, arch, bound + 1)
  assert not above.certified and above.prec == gcert.DEFAULT_PRECISIONS[-1] and above.det_log10 is None
  # too few rows for the target: refused without computing
  assert not gcert.certify_rank(theta, X, arch, bound, n_inputs=1).certified


def test_deep_softmax_certified_through_runner(repo_root, tmp_path):
  """Acceptance 3 for a deep narrow softmax stack that float64 cannot resolve:
  (3,)*10, a = (3,4,4,1,3,1,2,2,1), t = 2. The float64 estimate (with the
  calibrated fallback) is 69 and flagged unreliable (gap ~1e2); the certificate
  proves the formula's 76 by ball arithmetic."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("gd", repo_root / "configs" / "geometry_dimension.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config(None)
  with cfg.unlocked():
    cfg.widths, cfg.attn_dims, cfg.t = (3,) * 10, (3, 4, 4, 1, 3, 1, 2, 2, 1), 2
  s = runner.run(cfg, tmp_path / "deep", quiet=True, tb=False)
  assert not s["float64_reliable"] and s["float64_rank_tol"] < 76
  assert s["estimate_method"] == "certified_ball_arithmetic" and s["certified"] and s["reliable"]
  assert s["estimated_dimension"] == s["expected_dimension"] == s["certificate"]["target"] == 76
  assert json.loads((tmp_path / "deep" / "summary.json").read_text())["certified"] is True


def test_host_estimate_certifies_an_unreliable_softmax_estimate():
  """The host API: (2,)*11, a = (3,3,2,1,3,4,2,2,4,2), t = 3 at key 9 is unreliable in
  float64 (gap ~1e4, with the fallback); ``Estimate.dimension`` is then the
  certified 43 = formula, and ``certify=False`` leaves the float64 value alone."""
  import warnings
  arch = gm.Arch((2,) * 11, (3, 3, 2, 1, 3, 4, 2, 2, 4, 2), "softmax", 3)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    plain = ge.estimate(jax.random.PRNGKey(9), arch, certify=False)
  e = ge.estimate(jax.random.PRNGKey(9), arch)
  assert not plain.reliable and plain.certified is None and plain.dimension == plain.rank_tol
  assert not e.reliable and e.certified and e.certificate.target == 43 == e.dimension
  assert e.certificate.prec == gcert.DEFAULT_PRECISIONS[0] and e.certificate.det_log10 is not None
