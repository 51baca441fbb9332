"""Build a user env registered with ``reppo_common.registry.register`` (``make_torch``) and check
it against its declared facts (mirrors ``reppo_jax.envs.registered``).

``make_torch(num_envs)`` may return

* a ``gymnasium.vector.VectorEnv`` (sync or async, any autoreset mode): wrapped in
  :class:`reppo_torch.envs.gym.GymVecEnv` with the declared time limit, reward range and success
  key; or
* a :class:`reppo_torch.envs.base.VecEnv` that keeps the contract itself (used as it is).

Mismatches between the facts and the env (batch size, episode length, reward range, action
bounds other than [-1, 1]) are one-line ``UserError``s.
"""

from __future__ import annotations

from typing import Any

import torch

from reppo_common.errors import UserError
from reppo_common.registry import EnvSpec, check_declared_facts


def check_vec_env(env: Any, spec: EnvSpec, num_envs: int, max_episode_steps: int) -> None:
    """Validate a ready-made torch VecEnv against the declared facts (one-line UserError)."""
    name = spec.full_name
    check_declared_facts(env, spec, num_envs, max_episode_steps, factory="make_torch",
                         accepted="a gymnasium VectorEnv nor a reppo_torch VecEnv",
                         attrs=("obs_dim", "action_dim", "num_envs", "max_episode_steps",
                                "reward_range", "device", "reset", "step", "close"))
    low, high = getattr(env, "action_low", -1.0), getattr(env, "action_high", 1.0)
    if float(torch.as_tensor(low).min()) != -1.0 or float(torch.as_tensor(high).max()) != 1.0:
        raise UserError(f"{name}: actions must lie in [-1, 1] (the tanh policy's range), the env "
                        f"declares [{low}, {high}]; rescale inside the env")


def make_registered_env(spec: EnvSpec, num_envs: int, *, max_episode_steps: int | None = None,
                        random_episode_offsets: bool = True,
                        device: str | torch.device | None = None) -> Any:
    """The torch VecEnv of the registered env ``spec``, checked against its facts."""
    import gymnasium

    from reppo_torch.envs.gym import GymVecEnv

    factory = spec.factories.get("torch")
    if factory is None:
        raise UserError(f"{spec.full_name} has no torch factory (register it with make_torch=...)")
    steps = int(max_episode_steps or spec.max_episode_steps)
    env = factory(num_envs)
    if isinstance(env, gymnasium.vector.VectorEnv):
        if env.num_envs != num_envs:
            raise UserError(f"{spec.full_name}: make_torch({num_envs}) built {env.num_envs} envs")
        return GymVecEnv(env, max_episode_steps=steps, reward_range=spec.reward_range,
                         name=spec.full_name, success_key=spec.success_key,
                         random_episode_offsets=random_episode_offsets, device=device)
    check_vec_env(env, spec, num_envs, steps)
    return env
