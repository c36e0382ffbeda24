"""Spec checks 2-5 and 7-10 at reduced size: the float64 Jacobian-rank estimator.

Each architecture is one compiled program, so the list is a representative
subset of the spec's tables (the full tables are the configs' job).
"""
import warnings

import jax
import numpy as np
import pytest

from attnlab.geometry import dimension as gd
from attnlab.geometry import estimator as ge
from attnlab.geometry import experiments as gx
from attnlab.geometry import model as gm

KEY = jax.random.PRNGKey(42)


def _est(widths, attn_dims, kind, t=3, **kw):
  return ge.estimate(KEY, gm.Arch(widths, attn_dims, kind, t), **kw)


@pytest.mark.parametrize("kind,nullity", [("lightning", 19), ("softmax", 17)])
def test_symmetries_and_jacobian_kernel(kind, nullity):
  """Checks 2 and 3 at (4,3,3)/(2,2), weights N(0, 0.5^2)."""
  arch = gm.Arch((4, 3, 3), (2, 2), kind, 3)
  with jax.enable_x64(True):
    X = ge.draw_inputs(KEY, arch, ge.default_n_inputs(arch))[0]
    r = jax.device_get(gx.symmetry_kernel(KEY, X, arch=arch, init="normal", init_std=0.5, scale_c=1.7,
                                          temperature=1.0, min_gap=1e6))
  assert r["gl_err"] <= 1e-12 and r["pass_err"] <= 1e-12
  assert r["gen_gl"] <= 1e-10 and r["gen_pass"] <= 1e-10
  if kind == "lightning":
    assert r["scale_err"] <= 1e-12 and r["swap_err"] <= 1e-12 and r["gen_scale"] <= 1e-10
  else:  # softmax breaks the scaling and the swap
    assert r["scale_err"] > 1e-3 and r["swap_err"] > 1e-3 and r["gen_scale"] > 1e-3
  assert bool(r["reliable"])
  assert int(r["nullity"]) == int(r["symmetry_dimension"]) == nullity


@pytest.mark.parametrize("widths,attn_dims,kind,t,want", [
    ((3, 3), (2,), "lightning", 3, 16),
    ((3, 3), (2,), "softmax", 3, 17),
    ((3, 3), (4,), "lightning", 3, 17),  # a > d: capped
    ((4, 2), (2,), "softmax", 2, 20),  # t = 2 already matches
    ((3, 3, 3, 3), (2, 2, 2), "lightning", 3, 30),
    ((3, 2, 3), (2, 2), "softmax", 3, 20),  # d_l unconstrained by (B1)
    ((4, 4, 4, 4), (2, 2, 2), "lightning", 3, 49),  # NeuroDim sweep a = 2 (needs row normalisation)
])
def test_rank_equals_formula(widths, attn_dims, kind, t, want):
  """Checks 4, 5 and 7: single-layer and deep ranks equal the formula, reliably."""
  e = _est(widths, attn_dims, kind, t)
  assert gd.expected_dimension(widths, attn_dims, kind, t).value == want
  assert e.rank_tol == e.rank_gap == want, e
  assert e.reliable and e.gap_log10 >= 6
  assert e.dtype == "float64"


@pytest.mark.parametrize("widths,attn_dims,kind,t,want", [
    ((3, 3), (2,), "lightning", 1, 14),  # t = 1 (spec §4.5): 14 < 16
    ((3, 3), (2,), "softmax", 1, 9),  # softmax, t = 1: linear, d d' = 9 < 17
    ((2, 3, 2), (1, 1), "lightning", 3, 8),  # widening (B1): formula would say 9
    ((2, 2, 2), (1, 2), "lightning", 3, 8),  # (B3): formula would say 9
])
def test_degenerate_ranks(widths, attn_dims, kind, t, want):
  """Check 8: t = 1 and the §4.4 regression cases; the gate refuses the formula."""
  e = _est(widths, attn_dims, kind, t)
  assert e.rank_tol == want and e.reliable, e
  exp = gd.expected_dimension(widths, attn_dims, kind, t)
  assert exp.value is None and "not applicable" in exp.note
  assert gd.formula(widths, attn_dims, kind) > want  # the ungated formula over-counts


def test_precision_guard_float32():
  """Check 9: Figure 3 at delta = 10 in float32 with NeuroDim's N(0, 1) weights never
  silently under-counts: either it reports 172 or it is flagged (and warns)."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    e = _est((10, 10, 10), (2, 2), "softmax", 3, n_inputs=250, x64=False, init="normal", init_std=1.0)
  assert e.dtype == "float32"
  assert e.rank_tol == 172 or not e.reliable, e
  if e.reliable:
    assert e.rank_gap == 172
  else:
    assert any("unreliable" in str(w.message) for w in caught)


def test_deterministic_for_a_key():
  """Check 10: the same key gives bit-identical ranks and singular values; another key differs."""
  a = _est((3, 3), (2,), "lightning")
  b = _est((3, 3), (2,), "lightning")
  c = ge.estimate(jax.random.PRNGKey(7), gm.Arch((3, 3), (2,), "lightning", 3))
  assert a.rank_tol == b.rank_tol and np.array_equal(a.sv, b.sv)
  assert not np.array_equal(a.sv, c.sv) and c.rank_tol == a.rank_tol


def test_trials_take_the_max():
  e = _est((3, 3), (2,), "lightning", trials=3)
  assert len(e.rank_tol_trials) == 3 and e.rank_tol == max(e.rank_tol_trials) == 16 and e.reliable


def test_rank_stats_edge_cases():
  with jax.enable_x64(True):
    zero = jax.device_get(ge.rank_stats(np.zeros((6, 4))))
    assert zero["rank_tol"] == zero["rank_gap"] == 0 and zero["reliable"] and np.isfinite(zero["gap_log10"])
    full = jax.device_get(ge.rank_stats(np.eye(5, 3)))
    assert full["rank_tol"] == full["rank_gap"] == 3 and full["reliable"]
