"""Tanh-squashed Gaussian policy math in JAX; mirrors ``spec.reference.distributions``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

LOG2 = math.log(2.0)  # a Python float: exact in float64, not a float32 constant


def policy_std(raw_std: jax.Array, min_std: float) -> jax.Array:
    """σ = exp(ρ) + min_std (min_std is honoured, unlike one public port)."""
    return jnp.exp(raw_std) + min_std


def tanh_gaussian_sample(
    mean: jax.Array, std: jax.Array, noise: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample: pre = μ + σ·ξ, a = tanh(pre). Returns (action, pre_tanh)."""
    pre = mean + std * noise
    return jnp.tanh(pre), pre


def tanh_log_det_jacobian(pre_tanh: jax.Array) -> jax.Array:
    """Σ log|d tanh(x)/dx| = Σ 2(log 2 − x − softplus(−2x)), stable in the tails."""
    return jnp.sum(2.0 * (LOG2 - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh)), axis=-1)


def gaussian_log_prob(mean: jax.Array, std: jax.Array, x: jax.Array) -> jax.Array:
    """Diagonal Gaussian log-density, summed over the action dimension."""
    z = (x - mean) / std
    return jnp.sum(-0.5 * z * z - jnp.log(std) - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def tanh_gaussian_log_prob(mean: jax.Array, std: jax.Array, pre_tanh: jax.Array) -> jax.Array:
    """log π(tanh(x)) = log N(x; μ, σ) − log|det J_tanh(x)|, evaluated at the pre-squash point."""
    return gaussian_log_prob(mean, std, pre_tanh) - tanh_log_det_jacobian(pre_tanh)


def entropy_estimate(log_prob: jax.Array) -> jax.Array:
    """Single-sample entropy estimate −log π(a|x)."""
    return -log_prob


def deterministic_action(mean: jax.Array) -> jax.Array:
    """Evaluation action tanh(μ)."""
    return jnp.tanh(mean)


def kl_estimate(
    old_mean: jax.Array, old_std: jax.Array, mean: jax.Array, std: jax.Array, noise: jax.Array
) -> jax.Array:
    """k-sample forward KL(π_old‖π) at the same pre-squash points x_j = μ_old + σ_old·ξ_j.

    ``noise`` has shape (k, *batch, A). The tanh Jacobians cancel exactly at a shared point,
    so only the Gaussian log-densities are needed.
    """
    x = old_mean + old_std * noise
    return jnp.mean(gaussian_log_prob(old_mean, old_std, x) - gaussian_log_prob(mean, std, x), axis=0)
