"""The exact F_p Jacobian rank of lightning networks (attnlab.geometry.exact)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from attnlab.geometry import dimension as gd
from attnlab.geometry import estimator as ge
from attnlab.geometry import exact as gexact
from attnlab.geometry import model as gm

P_ = gexact.PRIME


@pytest.mark.parametrize("m,P,r,chunk", [(50, 30, 12, None), (90, 60, 25, 7), (200, 40, 40, 33)])
def test_rank_mod_p_of_a_product(m, P, r, chunk):
  """A product of uniform (m, r) and (r, P) residue matrices has rank r (w.h.p.), whatever the chunking."""
  rng = np.random.default_rng(m)
  A, B = rng.integers(0, P_, (m, r)), rng.integers(0, P_, (r, P))
  M = np.zeros((m, P), np.int64)
  for k in range(r):  # exact: each term < 2^52, reduced before the next
    M = (M + A[:, k:k + 1] * B[k]) % P_
  assert gexact.rank_mod_p(M, chunk=chunk) == r


def test_jacobian_mod_p_matches_autodiff_at_an_integer_point():
  """At small integers the float64 Jacobian (jax.jacrev) is exact, so it must equal the F_p one mod p."""
  arch = gm.Arch((3, 2, 2), (2, 1), "lightning", 3)
  rng = np.random.default_rng(0)
  layers = [tuple(rng.integers(-2, 3, s) for s in shapes) for shapes in arch.layer_shapes()]
  X = rng.integers(-2, 3, (4, 3, 3))
  with jax.enable_x64(True):
    theta = ravel_pytree(tuple(gm.Layer(*(jnp.asarray(w, jnp.float64) for w in l)) for l in layers))[0]
    J = np.asarray(ge.jacobian(theta, jnp.asarray(X, jnp.float64), arch))
  assert np.abs(J).max() < 2 ** 52 and np.all(J == np.round(J))
  got = gexact.jacobian_mod_p([tuple(w % P_ for w in l) for l in layers], X % P_)
  np.testing.assert_array_equal(got, np.round(J).astype(np.int64) % P_)


@pytest.mark.parametrize("widths,attn_dims,t,want", [
    ((4, 3, 3), (2, 2), 3, 30),  # the deep formula (also the float64 estimate, test_estimator)
    ((2, 2, 2, 2, 1, 1), (5, 3, 4, 2, 4), 2, 14),  # float64 said 2 with a 1e10 gap here
    ((3, 3, 3, 3), (1, 1, 1), 5, 21),  # one input's block has rank 3 of 15: needs N >= P inputs
    ((2, 3, 2), (1, 1), 3, 8),  # outside (B1): no formula; the float64 estimate is 8 too
])
def test_lightning_rank(widths, attn_dims, t, want):
  arch = gm.Arch(widths, attn_dims, "lightning", t)
  got = gexact.lightning_rank(arch)
  assert got == want
  exp = gd.expected_dimension(widths, attn_dims, "lightning", t).value
  if exp is not None:  # inside the domain the certified lower bound meets the symmetry upper bound
    assert got == exp == arch.num_params - gd.symmetry_dimension(widths, attn_dims, "lightning")


def test_softmax_is_refused():
  with pytest.raises(ValueError, match="polynomial"):
    gexact.lightning_rank(gm.Arch((3, 3), (2,), "softmax", 3))
