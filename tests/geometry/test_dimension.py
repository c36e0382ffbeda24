"""The dimension formulas against the spec's tables (§4.1-§4.4) and the (B1)-(B3) gates."""
import pytest

from attnlab.geometry import dimension as gd
from attnlab.geometry.model import num_params

# spec §4.1: (d, d', a, t, lightning, softmax)
SINGLE = [(2, 1, 1, 3, 4, 5), (2, 2, 1, 3, 6, 7), (2, 2, 2, 3, 7, 8), (3, 1, 1, 3, 7, 8), (3, 3, 1, 3, 13, 14),
          (3, 3, 2, 3, 16, 17), (3, 3, 3, 3, 17, 18), (3, 3, 4, 3, 17, 18), (3, 3, 5, 3, 17, 18),
          (4, 2, 2, 2, 19, 20), (4, 3, 2, 3, 23, 24), (4, 4, 2, 3, 27, 28), (5, 3, 2, 3, 30, 31)]
# spec §4.2: (widths, attn_dims, P, lightning, softmax)
DEEP = [((3, 3, 3), (1, 1), 30, 17, 19), ((3, 3, 3), (2, 2), 42, 23, 25), ((3, 3, 3), (3, 3), 54, 25, 27),
        ((3, 3, 3), (4, 1), 48, 21, 23), ((4, 4, 4), (2, 2), 64, 38, 40), ((4, 4, 4), (2, 4), 80, 42, 44),
        ((4, 3, 2), (2, 2), 46, 27, 29), ((4, 3, 2), (3, 2), 54, 30, 32), ((5, 4, 3), (2, 3), 76, 45, 47),
        ((3, 2, 3), (2, 2), 32, 18, 20), ((4, 2, 4), (2, 2), 40, 26, 28), ((3, 3, 1), (2, 1), 30, 14, 16),
        ((3, 3, 3, 3), (2, 2, 2), 63, 30, 33), ((4, 4, 4, 4), (2, 2, 2), 96, 49, 52),
        ((4, 4, 4, 4), (4, 4, 4), 144, 61, 64), ((4, 3, 3, 2), (2, 3, 2), 73, 35, 38)]
# spec §4.4: (widths, attn_dims, kinds whose formula must be refused)
OUTSIDE = [((2, 3, 2), (1, 1), ("lightning", "softmax")), ((2, 3, 4), (1, 1), ("lightning", "softmax")),
           ((2, 4, 2), (2, 2), ("lightning", "softmax")), ((3, 4, 4, 3), (2, 2, 2), ("lightning", "softmax")),
           ((3, 2, 3, 3), (2, 2, 2), ("lightning", "softmax")), ((4, 2, 3, 2), (2, 2, 2), ("lightning", "softmax")),
           ((2, 2, 2), (1, 2), ("lightning",)), ((3, 3, 3), (1, 3), ("lightning",)),
           ((4, 4, 4), (1, 4), ("lightning",)), ((3, 3, 3, 3), (1, 2, 2), ("lightning",)),
           ((2, 2, 2, 2), (2, 1, 2), ("lightning",)), ((3, 3, 3, 3), (3, 1, 3), ("lightning",))]


@pytest.mark.parametrize("d,dp,a,t,light,soft", SINGLE)
def test_single_layer_table(d, dp, a, t, light, soft):
  assert gd.single_layer_dimension(d, dp, a, "lightning") == light
  assert gd.single_layer_dimension(d, dp, a, "softmax") == soft
  assert gd.expected_dimension((d, dp), (a,), "lightning", t).value == light


@pytest.mark.parametrize("widths,attn_dims,P,light,soft", DEEP)
def test_deep_table(widths, attn_dims, P, light, soft):
  assert num_params(widths, attn_dims) == P
  for kind, want in (("lightning", light), ("softmax", soft)):
    e = gd.expected_dimension(widths, attn_dims, kind, 3)
    assert e.applicable and e.value == want, e
    assert gd.symmetry_dimension(widths, attn_dims, kind) == P - want


def test_figure3_is_eq16():
  assert [gd.formula((d,) * 3, (2, 2), "softmax") for d in range(3, 11)] == [25, 40, 57, 76, 97, 120, 145, 172]
  assert all(gd.formula((d,) * 3, (2, 2), "softmax") == d * d + 8 * d - 8 for d in range(3, 11))


@pytest.mark.parametrize("widths,attn_dims,refused", OUTSIDE)
def test_gate_refuses_outside_domain(widths, attn_dims, refused):
  for kind in ("lightning", "softmax"):
    e = gd.expected_dimension(widths, attn_dims, kind, 3)
    if kind in refused:
      assert e.value is None and "not applicable" in e.note and "(B" in e.note
      assert gd.expected_dimension(widths, attn_dims, kind, 3, gate=False).value is not None
    else:
      assert e.value == gd.formula(widths, attn_dims, kind)


def test_gate_t1_and_effective_widths():
  e = gd.expected_dimension((3, 3), (2,), "softmax", 1)
  assert e.value is None and "(B2)" in e.note
  # widening: effective widths e_i = min(d_0..d_i); spec §3.3 (softmax cases all matched)
  assert gd.effective_widths((2, 3, 4)) == (2, 2, 4)
  assert gd.expected_dimension((2, 3, 2), (1, 1), "softmax", 3, use_effective_widths=True).value == \
      gd.formula((2, 2, 2), (1, 1), "softmax")
  # consecutive a_i = 1 are fine (spec §4.4)
  assert gd.expected_dimension((3, 3, 3, 3), (1, 1, 1), "lightning", 3).value == 21
