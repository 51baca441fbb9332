"""Tanh-squashed diagonal Gaussian policy (paper §3.2, eq. 13; docs/design.md).

Conventions: leading batch dims are free, the action dim is last, every log-probability sums over
the action dim. Computation stays in the inputs' floating dtype (float32 stays float32).
"""

from __future__ import annotations

import math

import numpy as np

from spec.reference._common import (
    as_float,
    broadcast_shape,
    check_last_dims_match,
    float_dtype,
    softplus,
)

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def policy_std(raw_std: np.ndarray, min_std: float) -> np.ndarray:
    """σ = exp(ρ) + min_std (the authors' parameterisation; min_std 0.1 in the paper runs)."""
    dt = float_dtype(raw_std)
    if min_std < 0:
        raise ValueError(f"min_std must be >= 0, got {min_std}")
    return np.exp(as_float(raw_std, dt)) + dt.type(min_std)


def tanh_gaussian_sample(
    mean: np.ndarray, std: np.ndarray, noise: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reparameterised sample: u = μ + σ·ξ, a = tanh(u). Returns (action, pre_tanh).

    ``noise`` may carry extra leading sample dims that broadcast against (μ, σ).
    """
    dt = float_dtype(mean, std, noise)
    mean, std, noise = (as_float(v, dt) for v in (mean, std, noise))
    check_last_dims_match("mean", mean, "std", std)
    check_last_dims_match("mean", mean, "noise", noise)
    broadcast_shape(mean=mean, std=std, noise=noise)
    pre = mean + std * noise
    return np.tanh(pre), pre


def tanh_log_det_jacobian(pre_tanh: np.ndarray) -> np.ndarray:
    """Σ_dims log(1 − tanh²(u)) = Σ 2(log 2 − u − softplus(−2u)), stable for |u| large.

    (1 − tanh² u = 4/(eᵘ + e⁻ᵘ)², so log = 2 log 2 − 2u − 2 log(1 + e⁻²ᵘ).)
    """
    dt = float_dtype(pre_tanh)
    u = as_float(pre_tanh, dt)
    if u.ndim == 0:
        raise ValueError("pre_tanh needs a trailing action dim, got a scalar")
    return np.sum(2.0 * (dt.type(_LOG2) - u - softplus(-2.0 * u)), axis=-1)


def gaussian_log_prob(mean: np.ndarray, std: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Diagonal Gaussian log-density Σ_dims [−½((x−μ)/σ)² − log σ − ½ log 2π]."""
    dt = float_dtype(mean, std, x)
    mean, std, x = (as_float(v, dt) for v in (mean, std, x))
    check_last_dims_match("mean", mean, "std", std)
    check_last_dims_match("mean", mean, "x", x)
    broadcast_shape(mean=mean, std=std, x=x)
    z = (x - mean) / std
    return np.sum(-0.5 * z * z - np.log(std) - dt.type(_HALF_LOG_2PI), axis=-1)


def tanh_gaussian_log_prob(mean: np.ndarray, std: np.ndarray, pre_tanh: np.ndarray) -> np.ndarray:
    """log π(a|x) for a = tanh(u): log N(u; μ, σ) − Σ log(1 − tanh² u) (change of variables).

    Takes the pre-squash point u, never atanh(a): atanh of a float-rounded |a| ≈ 1 is ±inf.
    """
    return gaussian_log_prob(mean, std, pre_tanh) - tanh_log_det_jacobian(
        as_float(pre_tanh, float_dtype(mean, std, pre_tanh))
    )


def entropy_estimate(log_prob: np.ndarray) -> np.ndarray:
    """Single-sample entropy estimate Ĥ = −log π(a|x) with a ~ π (the estimate the authors' L_α uses)."""
    dt = float_dtype(log_prob)
    return -as_float(log_prob, dt)


def deterministic_action(mean: np.ndarray) -> np.ndarray:
    """Evaluation action tanh(μ)."""
    dt = float_dtype(mean)
    return np.tanh(as_float(mean, dt))


def kl_estimate(
    old_mean: np.ndarray,
    old_std: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    noise: np.ndarray,
) -> np.ndarray:
    """k-sample estimate of the forward KL(π_old ‖ π) per state (eq. 9 and 13).

    x_j = μ_old + σ_old·ξ_j with noise ξ of shape (k, *batch, |A|); returns
    (1/k) Σ_j [log N(x_j; μ_old, σ_old) − log N(x_j; μ, σ)], shape (*batch,).

    Both densities are evaluated at the *same* pre-squash point x_j, so the tanh Jacobian terms
    of log π_old(tanh x_j) and log π(tanh x_j) are identical and cancel exactly: the Gaussian
    log-ratio equals the tanh-Gaussian log-ratio, and KL is invariant under the bijection tanh.
    """
    dt = float_dtype(old_mean, old_std, mean, std, noise)
    old_mean, old_std, mean, std, noise = (
        as_float(v, dt) for v in (old_mean, old_std, mean, std, noise)
    )
    batch = broadcast_shape(old_mean=old_mean, old_std=old_std, mean=mean, std=std)
    if len(batch) == 0:
        raise ValueError("kl_estimate needs a trailing action dim on the policy parameters")
    if noise.ndim != len(batch) + 1:
        raise ValueError(
            f"noise must have shape (k, *batch, action_dim) = (k, {', '.join(map(str, batch))}); "
            f"got {noise.shape}"
        )
    if noise.shape[0] < 1:
        raise ValueError("kl_estimate needs at least one sample (k >= 1)")
    broadcast_shape(noise=noise, policy=np.empty((1,) + batch))
    x = old_mean + old_std * noise
    lp_old = gaussian_log_prob(old_mean, old_std, x)
    lp_new = gaussian_log_prob(mean, std, x)
    return np.mean(lp_old - lp_new, axis=0)
