"""Test-wide JAX settings: persistent compilation cache, rank promotion errors.

The cache lives in ``<repo>/.jax_cache`` (ignored by git) so that programs
compiled by one test are reused by the next and by the next run of the suite.
Multi-device tests start a subprocess with 4 simulated CPU devices instead of
setting them here, so every other test runs on the one default device.
"""
import os
import pathlib

import jax
import pytest

_REPO = pathlib.Path(__file__).resolve().parents[1]
jax.config.update("jax_compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR", str(_REPO / ".jax_cache")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey():
  """A fresh raw PRNG key per call, deterministic per test."""
  counter = iter(range(1 << 30))
  base = jax.random.PRNGKey(0)
  return lambda: jax.random.fold_in(base, next(counter))


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return _REPO
