"""Names and order of the NaN/inf guard's checks, shared by every backend.

Each backend computes one finiteness flag per quantity (inside the jitted step for JAX, in the
iteration's one host sync for torch) in the order :func:`guard_names` gives, and the trainer
reports the first False one with :func:`first_nonfinite`: bad data first, then losses, then
gradients, then the new parameters, so the message names the cause rather than a consequence.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["GUARD_KEY", "INFO_ORDER", "STATE_GROUPS", "guard_names", "first_nonfinite"]

GUARD_KEY = "guard/finite"
"""Info-dict key of the per-quantity finiteness flags."""

INFO_ORDER = ("rollout/reward", "rollout/value", "rollout/target", "train/critic_loss",
              "train/value_loss", "train/aux_loss", "train/critic_grad_norm",
              "train/actor_loss", "train/actor_grad_norm")
"""Causal order in which non-finite metrics are reported; the remaining info keys follow
alphabetically, then :data:`STATE_GROUPS`."""

STATE_GROUPS = ("params/critic", "params/actor", "params/log_alpha", "params/log_beta",
                "params/obs_norm", "params/value", "optimizer_state")
"""The agent-state groups checked after the metrics, in this order (``params/value``: the
state-value network of ``actor.gradient=ppo``; always finite when absent)."""


def guard_names(info_keys: Sequence[str]) -> tuple[str, ...]:
    """The order of the flags for an info dict with these keys (``GUARD_KEY`` excluded)."""
    keys = [k for k in info_keys if k != GUARD_KEY]
    ordered = [k for k in INFO_ORDER if k in keys]
    ordered += sorted(k for k in keys if k not in ordered)
    return tuple(ordered) + STATE_GROUPS


def first_nonfinite(info_keys: Sequence[str], flags: Any) -> str | None:
    """Name of the first quantity whose flag is False, or None if all are finite."""
    names = guard_names(tuple(info_keys))
    flags = np.asarray(flags, dtype=bool)
    if flags.shape != (len(names),):
        raise ValueError(f"{flags.shape[0] if flags.ndim else 0} guard flags for "
                         f"{len(names)} guarded quantities")
    bad = np.flatnonzero(~flags)
    return names[int(bad[0])] if bad.size else None
