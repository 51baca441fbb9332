"""HL-Gauss histogram loss (Appendix D.2) in JAX; mirrors ``spec.reference.hlgauss``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erf


def hlgauss_target(
    y: jax.Array, v_min: float, v_max: float, num_bins: int, sigma: float
) -> jax.Array:
    """Histogram of N(clip(y), σ²) over bins centred on linspace(v_min, v_max, n), renormalised."""
    width = (v_max - v_min) / (num_bins - 1)
    edges = jnp.linspace(v_min - width / 2, v_max + width / 2, num_bins + 1, dtype=y.dtype)
    y = jnp.clip(y, v_min, v_max)[..., None]
    cdf = erf((edges - y) / (math.sqrt(2.0) * sigma))
    probs = cdf[..., 1:] - cdf[..., :-1]
    return probs / (cdf[..., -1:] - cdf[..., :1])


def hlgauss_loss(logits: jax.Array, target_probs: jax.Array) -> jax.Array:
    """Per-sample cross-entropy −Σ p·log softmax(logits)."""
    return -jnp.sum(target_probs * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def hlgauss_decode(logits: jax.Array, v_min: float, v_max: float, num_bins: int) -> jax.Array:
    """Expected value ⟨softmax(logits), bin centres⟩."""
    centres = jnp.linspace(v_min, v_max, num_bins, dtype=logits.dtype)
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * centres, axis=-1)
