"""Tanh-squashed Gaussian policy math in PyTorch; mirrors ``spec.reference.distributions``.

Tensors in, tensors out, in the inputs' dtype; every function is differentiable and stays on the
inputs' device (no host round-trips).
"""

from __future__ import annotations

import math

import torch

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + eˣ) = logaddexp(0, x), exact in the tails (``F.softplus`` switches to the identity
    above its threshold, an O(e⁻²⁰) error visible in float64)."""
    return torch.logaddexp(torch.zeros_like(x), x)


def policy_std(raw_std: torch.Tensor, min_std: float) -> torch.Tensor:
    """σ = exp(ρ) + min_std."""
    if min_std < 0:
        raise ValueError(f"min_std must be >= 0, got {min_std}")
    return torch.exp(raw_std) + min_std


def tanh_gaussian_sample(
    mean: torch.Tensor, std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample: u = μ + σ·ξ, a = tanh(u). Returns (action, pre_tanh)."""
    pre = mean + std * noise
    return torch.tanh(pre), pre


def tanh_log_det_jacobian(pre_tanh: torch.Tensor) -> torch.Tensor:
    """Σ_dims log(1 − tanh² u) = Σ 2(log 2 − u − softplus(−2u)), stable for |u| large."""
    if pre_tanh.dim() == 0:
        raise ValueError("pre_tanh needs a trailing action dim, got a scalar")
    u = pre_tanh
    return torch.sum(2.0 * (_LOG2 - u - _softplus(-2.0 * u)), dim=-1)


def gaussian_log_prob(mean: torch.Tensor, std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density Σ_dims [−½((x−μ)/σ)² − log σ − ½ log 2π]."""
    z = (x - mean) / std
    return torch.sum(-0.5 * z * z - torch.log(std) - _HALF_LOG_2PI, dim=-1)


def tanh_gaussian_log_prob(
    mean: torch.Tensor, std: torch.Tensor, pre_tanh: torch.Tensor
) -> torch.Tensor:
    """log π(tanh u) = log N(u; μ, σ) − Σ log(1 − tanh² u), at the pre-squash point u."""
    return gaussian_log_prob(mean, std, pre_tanh) - tanh_log_det_jacobian(pre_tanh)


def entropy_estimate(log_prob: torch.Tensor) -> torch.Tensor:
    """Single-sample entropy estimate Ĥ = −log π(a|x)."""
    return -log_prob


def deterministic_action(mean: torch.Tensor) -> torch.Tensor:
    """Evaluation action tanh(μ)."""
    return torch.tanh(mean)


def kl_estimate(
    old_mean: torch.Tensor,
    old_std: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """k-sample forward KL(π_old ‖ π) per state; noise (k, *batch, |A|).

    x_j = μ_old + σ_old·ξ_j; KL̂ = mean_j [log N(x_j; μ_old, σ_old) − log N(x_j; μ, σ)]. The tanh
    Jacobians cancel at the shared pre-squash point.
    """
    batch = mean.shape  # the common case without broadcasting skips broadcast_shapes (Python)
    if not old_mean.shape == old_std.shape == batch == std.shape:
        batch = torch.broadcast_shapes(old_mean.shape, old_std.shape, mean.shape, std.shape)
    if len(batch) == 0:
        raise ValueError("kl_estimate needs a trailing action dim on the policy parameters")
    if noise.dim() != len(batch) + 1 or noise.shape[0] < 1:
        raise ValueError(f"noise must have shape (k >= 1, *{tuple(batch)}), got {tuple(noise.shape)}")
    x = old_mean + old_std * noise
    return torch.mean(gaussian_log_prob(old_mean, old_std, x) - gaussian_log_prob(mean, std, x),
                      dim=0)
