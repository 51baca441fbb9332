"""Seeding policy: one integer seed (``run.seed``) determines every random stream of a run.

- numpy-side streams (environment reset seeds, evaluation episodes, shuffling done on the host)
  come from ``numpy.random.SeedSequence(seed).spawn``-style children keyed by a *name*, so
  adding a new stream never shifts the others: the child for name ``n`` is
  ``SeedSequence(seed, spawn_key=(crc32(n),))``.
- each backend derives its framework key from ``run.seed`` itself (``jax.random.key(seed)``
  then explicit splits; ``torch.Generator().manual_seed(seed)``), once per run, and threads it
  explicitly; no global RNG state is used for algorithmic randomness.
- a resumed run restores its key/generator state from the checkpoint, so resuming continues the
  same streams rather than reseeding.
"""

import zlib

import numpy as np

__all__ = ["EVAL_SEED_OFFSET", "EVAL_RUN_SEED_OFFSET", "VIDEO_SEED_OFFSET",
           "stream_seed_sequence", "stream_rng", "stream_int"]

# Evaluation episodes are drawn from seeds offset from ``run.seed`` (so they never replay the
# training streams); they are fixed because changing one changes every logged eval number.
EVAL_SEED_OFFSET = 1_000_003
"""Evaluations during training: JAX's eval key stream starts at ``PRNGKey(run.seed + this)``;
torch's evaluation k draws its episodes from seed ``run.seed + this + k``."""
EVAL_RUN_SEED_OFFSET = 2_000_003
"""``reppo eval``: episodes from ``run.seed + this`` in both backends (on DMC both evaluate the
same episodes)."""
VIDEO_SEED_OFFSET = 3_000_017
"""``reppo eval --video``: the recorded episode's seed is ``run.seed + this``."""


def _key(name: str) -> int:
    if not name:
        raise ValueError("stream name must be non-empty")
    return zlib.crc32(name.encode("utf-8"))


def stream_seed_sequence(seed: int, name: str) -> np.random.SeedSequence:
    """The independent SeedSequence for stream ``name`` of run seed ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(_key(name),))


def stream_rng(seed: int, name: str) -> np.random.Generator:
    """A numpy Generator for stream ``name`` (e.g. 'eval', 'env_reset')."""
    return np.random.default_rng(stream_seed_sequence(seed, name))


def stream_int(seed: int, name: str, bits: int = 32) -> int:
    """An integer seed for a library that wants one (e.g. an env's reset seed), ``< 2**bits``."""
    if bits not in (32, 63, 64):
        raise ValueError("bits must be 32, 63 or 64")
    word = stream_seed_sequence(seed, name).generate_state(2, np.uint32)
    value = (int(word[0]) << 32) | int(word[1])
    return value % (1 << bits)
