"""Documented PRNG streams.

Every run has one key, ``run_key = fold_in(PRNGKey(cfg.seed), seed_index)``
(see :func:`run_key`). Named streams are derived from it with ``fold_in`` and
fixed ids, so adding a stream never changes the others:

==========  ==  ===========================================
stream      id  used for
==========  ==  ===========================================
``INIT``     0  parameter initialisation
``DATA``     1  training / evaluation data
``NOISE``    2  per-step randomness (SGD batches, label noise)
==========  ==  ===========================================

Keys are raw ``uint32[2]`` arrays so that states holding them checkpoint.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

INIT = 0
DATA = 1
NOISE = 2


def run_key(seed: int, seed_index) -> jax.Array:
  """The key of run ``seed_index`` (traceable in ``seed_index``): uint32[2]."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), jnp.asarray(seed_index, jnp.uint32))


def stream(key: jax.Array, stream_id: int) -> jax.Array:
  """The ``stream_id`` stream (``INIT``, ``DATA``, ``NOISE``) of a run key."""
  return jax.random.fold_in(key, stream_id)
