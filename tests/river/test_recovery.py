"""Spec checks B6-B8: the river at h = 1 IS the post-/pre-LN encoder (flax), and the
flax -> river -> flax weight round trip is bit-exact."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnlab.river import integrators as I
from attnlab.river import loading as LD
from attnlab.river import params as P

L, D, H, N = 2, 32, 4, 9  # the spec uses 4 layers; configs/river_recovery.py runs those


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def _encoder_params(rng, d_ff, *, scalar_ln=True, use_bias=False):
  """flax-layout encoder params drawn in NumPy (no flax-init or eager-op compiles)."""
  dh = D // H
  nrm = lambda *shape, s=1.0: s * rng.normal(size=shape)
  out = {}
  for i in range(L):
    dense = lambda k, b: {"kernel": k, "bias": b} if use_bias else {"kernel": k}
    mha = {"query": dense(nrm(D, H, dh, s=D ** -0.5), nrm(H, dh, s=0.1)),
           "key": dense(nrm(D, H, dh, s=D ** -0.5), nrm(H, dh, s=0.1)),
           "value": dense(nrm(D, H, dh, s=D ** -0.5), nrm(H, dh, s=0.1)),
           "out": dense(nrm(H, dh, D, s=dh ** -0.5), nrm(D, s=0.1))}
    if scalar_ln:  # a random scalar gain / shift per LN (paper form)
      ln = lambda: {"scale": np.full(D, 1 + 0.2 * rng.normal()), "bias": np.full(D, 0.2 * rng.normal())}
    else:
      ln = lambda: {"scale": 1 + nrm(D, s=0.2), "bias": nrm(D, s=0.2)}
    out[f"block_{i}"] = {"attn": {"mha": mha}, "ln1": ln(), "ln2": ln(),
                         "ffn_in": {"kernel": nrm(D, d_ff, s=D ** -0.5), "bias": nrm(d_ff, s=0.1)},
                         "ffn_out": {"kernel": nrm(d_ff, D, s=d_ff ** -0.5), "bias": nrm(D, s=0.1)}}
  return out


def _scalar_lns(theta):
  """Constant per-feature gamma/beta -> scalar projection LNs (traceable)."""
  pf = lambda q: P.NormParams(q.sigma1[..., 0], q.sigma2[..., 0], eps=q.eps, mode="projection")
  return theta.replace(ln1=pf(theta.ln1), ln2=pf(theta.ln2))


def _compare(arch, d_ff, dtype, *, eps=0.0, literal=False, seed=0):
  """max |river(h = 1) - flax encoder| in ``dtype``; one compiled program."""
  rng = np.random.default_rng(seed)
  prm = jax.tree.map(lambda a: np.asarray(a, dtype), _encoder_params(rng, d_ff))
  x = np.asarray(rng.normal(size=(N, D)), dtype)
  enc = LD.FlaxEncoder(layers=L, d=D, heads=H, d_ff=d_ff, arch=arch, eps=eps, dtype=dtype)
  if arch == "preln":
    step = I.preln_step
  elif literal:
    step = lambda u, th, h: I.paper_step(u, th, h, literal=True)
  else:
    step = I.paper_step

  @jax.jit
  def diff(prm, x):
    ref = enc.apply({"params": prm}, x)
    theta = _scalar_lns(LD.from_flax_encoder(prm, L, heads=H, eps=eps))
    uT, _ = I.integrate(step, x, theta, 1.0)
    return jnp.max(jnp.abs(uT - ref))

  return float(diff(prm, x))


def test_b6_paper_step_equals_postln_encoder_f64():
  """d_ff = 128 here; d_ff = d = 32 is covered by the literal-substep test below."""
  assert _compare("postln", 128, jnp.float64) <= 1e-12


def test_b6_f32():
  assert _compare("postln", 128, jnp.float32) <= 2e-6


def test_b6_literal_substeps_eps_rule():
  """Literal six substeps (W_j' = W_j - I, 1/2 relaxation), d_ff = d, eps = 1e-5:
  with eps_split = eps/4 exact; with the same eps the relaxation shows at O(eps/Var) (P4)."""
  rng = np.random.default_rng(3)
  prm = _encoder_params(rng, D)
  x = rng.normal(size=(N, D))
  eps = 1e-5
  enc = LD.FlaxEncoder(layers=L, d=D, heads=H, d_ff=D, arch="postln", eps=eps, dtype=jnp.float64)
  lit = lambda u, th, h: I.paper_step(u, th, h, literal=True)
  same_eps = lambda u, th, h: I.paper_step(u, th.replace(ln2=th.ln2.replace(eps=4 * eps)), h, literal=True)

  @jax.jit
  def diffs(prm, x):
    ref = enc.apply({"params": prm}, x)
    theta = _scalar_lns(LD.from_flax_encoder(prm, L, heads=H, eps=eps))
    a, _ = I.integrate(lit, x, theta, 1.0)
    b, _ = I.integrate(same_eps, x, theta, 1.0)
    return jnp.max(jnp.abs(a - ref)), jnp.max(jnp.abs(b - ref))

  exact, uncorrected = map(float, diffs(prm, x))
  assert exact <= 1e-12
  assert 1e-7 < uncorrected < 1e-3


def test_b7_preln_step_equals_preln_encoder():
  assert _compare("preln", 128, jnp.float64) <= 1e-12


def test_b8_flax_river_flax_round_trip_is_bit_exact():
  rng = np.random.default_rng(1)
  prm = _encoder_params(rng, 64, scalar_ln=False, use_bias=True)
  enc = LD.FlaxEncoder(layers=L, d=D, heads=H, d_ff=64, use_bias=True, dtype=jnp.float64)
  shapes = jax.eval_shape(enc.init, jax.random.PRNGKey(0), jnp.zeros((N, D)))["params"]
  assert jax.tree.structure(shapes) == jax.tree.structure(prm)  # the real flax layout
  assert all(s.shape == a.shape for s, a in zip(jax.tree.leaves(shapes), jax.tree.leaves(prm)))
  prm = jax.tree.map(jnp.asarray, prm)
  back = jax.jit(lambda p: LD.to_flax_encoder(LD.from_flax_encoder(p, L, heads=H), L))(prm)
  assert jax.tree.structure(back) == jax.tree.structure(prm)
  for a, b in zip(jax.tree.leaves(prm), jax.tree.leaves(back)):
    assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))


def test_to_paper_form_refuses_per_feature_gamma_and_nonsquare_ffn():
  rng = np.random.default_rng(2)
  b = P.init_block(rng, 8, 2, 16, norm_mode="affine")
  with pytest.raises(LD.PaperFormError, match="per-feature"):
    LD.to_paper_form(b)
  scalar = b.replace(ln1=P.scalar_norm(0.1, 1.2), ln2=P.scalar_norm())
  pf = LD.to_paper_form(scalar)
  assert pf.w1p is None and pf.wv_abs.shape == (2, 8, 8)
  with pytest.raises(LD.PaperFormError, match="d_ff=16 != d=8"):
    LD.to_paper_form(scalar, require_literal=True)
  sq = P.init_block(rng, 8, 2, 8)
  pf = LD.to_paper_form(sq, require_literal=True)
  assert np.array_equal(np.asarray(pf.w1p), np.asarray(sq.ffn.w1 - jnp.eye(8)))
