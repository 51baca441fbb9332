"""Vectorised environment interface used by the torch trainer (mirrors ``reppo_jax.envs.base``).

Torch simulators are stateful, so the interface is too. Every adapter (``dmc``, ``maniskill``,
``toy``) exposes

    env.obs_dim, env.action_dim, env.num_envs, env.max_episode_steps, env.reward_range, env.device
    env.reset(seed: int) -> obs                        (num_envs, obs_dim) float32 on env.device
    env.step(action)     -> StepOutput                 every tensor on env.device
    env.close()

and optionally ``env.get_state() -> dict[str, np.ndarray]`` / ``env.set_state(state)`` for
full-state checkpoints (``reppo_torch.checkpoint``): envs without them restart from a fresh reset
when a run is resumed.

Conventions (identical to the JAX port):
* Actions live in ``[-1, 1]^action_dim``; adapters clip to the simulator's bounds.
* Auto-reset: where ``terminated | truncated``, ``StepOutput.obs`` is already the first observation
  of the next episode and ``StepOutput.final_obs`` holds the true next observation x' of the
  transition; elsewhere ``final_obs`` equals ``obs``. Bootstrap from ``final_obs``; mask with
  ``terminated`` only.
* ``truncated`` is the time limit and is False where ``terminated`` is True.
* ``info['episode_return']`` / ``info['episode_length']`` (float32 / int64, shape (N,)) hold the
  return and length of the episode including this step; meaningful where the episode ended.
  Suites with a success signal add ``info['success']`` (bool, (N,)): the episode's success
  flag, meaningful where it ended.
* No per-step host round-trips: tensors stay on ``env.device``.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import torch


class StepOutput(NamedTuple):
    obs: torch.Tensor         # (N, obs_dim) float32, after auto-reset
    reward: torch.Tensor      # (N,) float32
    terminated: torch.Tensor  # (N,) bool
    truncated: torch.Tensor   # (N,) bool
    final_obs: torch.Tensor   # (N, obs_dim) float32, true next observation
    info: dict                # 'episode_return', 'episode_length', optionally 'success'


@runtime_checkable
class VecEnv(Protocol):
    obs_dim: int
    action_dim: int
    num_envs: int
    max_episode_steps: int
    reward_range: tuple[float, float]
    device: torch.device

    def reset(self, seed: int) -> torch.Tensor: ...

    def step(self, action: torch.Tensor) -> StepOutput: ...

    def close(self) -> None: ...
