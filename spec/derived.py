"""Derived hyperparameters (paper Table 2 and Appendix D.2/D.4); plain numpy + stdlib."""

from __future__ import annotations

import numpy as np


def discount_from_episode_steps(max_episode_steps: int) -> float:
    """γ = 1 − 10 / max_episode_steps (paper Table 2, "Problem Discount").

    Raises ValueError unless ``max_episode_steps`` is an integer > 10 (γ must lie in (0, 1)).
    """
    if isinstance(max_episode_steps, bool) or int(max_episode_steps) != max_episode_steps:
        raise ValueError(f"max_episode_steps must be an integer, got {max_episode_steps!r}")
    if max_episode_steps <= 10:
        raise ValueError(
            f"max_episode_steps must be > 10 for gamma = 1 - 10/steps to lie in (0, 1), "
            f"got {max_episode_steps}"
        )
    return 1.0 - 10.0 / float(max_episode_steps)


def value_range(reward_min: float, reward_max: float, gamma: float) -> tuple[float, float]:
    """(v_min, v_max) = (r_min / (1 − γ), r_max / (1 − γ)) (paper Table 2, "vmin"/"vmax")."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must lie in [0, 1), got {gamma}")
    if not reward_min <= reward_max:
        raise ValueError(f"reward_min ({reward_min}) must be <= reward_max ({reward_max})")
    return float(reward_min) / (1.0 - gamma), float(reward_max) / (1.0 - gamma)


def _check_support(v_min: float, v_max: float, num_bins: int) -> None:
    if isinstance(num_bins, bool) or int(num_bins) != num_bins or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    if not v_min < v_max:
        raise ValueError(f"v_min ({v_min}) must be < v_max ({v_max})")


def hlgauss_support(v_min: float, v_max: float, num_bins: int) -> np.ndarray:
    """Bin centres linspace(v_min, v_max, num_bins) (paper D.2, vec(min, max, h)); float64."""
    _check_support(v_min, v_max, num_bins)
    return np.linspace(v_min, v_max, int(num_bins), dtype=np.float64)


def hlgauss_bin_width(v_min: float, v_max: float, num_bins: int) -> float:
    """Distance between adjacent bin centres, (v_max − v_min) / (num_bins − 1)."""
    _check_support(v_min, v_max, num_bins)
    return (float(v_max) - float(v_min)) / (int(num_bins) - 1)


def hlgauss_sigma(v_min: float, v_max: float, num_bins: int, ratio: float = 0.75) -> float:
    """HL-Gauss smoothing σ = ratio × bin width (0.75 × bin width in the authors' runs; docs/design.md)."""
    if not ratio > 0.0:
        raise ValueError(f"sigma ratio must be > 0, got {ratio}")
    return float(ratio) * hlgauss_bin_width(v_min, v_max, num_bins)


def entropy_target(action_dim: int, mult: float = 0.5) -> float:
    """Continuous entropy target ε_H = −mult · |A| (paper Table 2 lists 0.5·dim A; the sign is
    negative as in the authors' code, whose loss is L_α = α·sg(H + 0.5·|A|); docs/design.md)."""
    if int(action_dim) != action_dim or action_dim < 1:
        raise ValueError(f"action_dim must be a positive integer, got {action_dim!r}")
    return -float(mult) * int(action_dim)


def minibatch_size(num_envs: int, num_steps: int, num_minibatches: int) -> int:
    """B = num_envs · num_steps / num_minibatches (paper Table 2, "batch size"); must divide."""
    for name, v in (("num_envs", num_envs), ("num_steps", num_steps),
                    ("num_minibatches", num_minibatches)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    total = int(num_envs) * int(num_steps)
    if total % int(num_minibatches):
        raise ValueError(
            f"num_envs*num_steps = {total} is not divisible by num_minibatches = {num_minibatches}"
        )
    return total // int(num_minibatches)


def env_steps_per_iteration(num_envs: int, num_steps: int, action_repeat: int = 1) -> int:
    """Simulator steps one iteration consumes: num_envs · num_steps · action_repeat.

    ``env_steps`` in metrics, ``--steps`` and every ``*_interval`` count *simulator* control
    steps, as Brax and the DMC literature do, so runs with different action repeats compare on
    the same axis (an agent decision with action repeat k costs k env steps)."""
    for name, v in (("num_envs", num_envs), ("num_steps", num_steps),
                    ("action_repeat", action_repeat)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(num_envs) * int(num_steps) * int(action_repeat)
