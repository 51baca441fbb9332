"""Any ``gymnasium.vector.VectorEnv`` as a torch :class:`~reppo_torch.envs.base.VecEnv`.

``GymVecEnv(vec_env, max_episode_steps=..., reward_range=...)`` gives a gymnasium vector env
(``SyncVectorEnv``, ``AsyncVectorEnv``, ``gymnasium.make_vec(...)``) the semantics of the DMC
path, so the trainer sees the same contract whatever the simulator:

* Actions: the policy's ``[-1, 1]^d`` actions are clipped to ``[-1, 1]`` and mapped affinely
  onto the env's finite ``Box`` bounds (gymnasium's own ``RescaleAction`` wrapper; e.g.
  Pendulum's ``[-2, 2]``). Unbounded or non-``Box`` action spaces are a one-line error.
* Observations: a flat ``Box`` of shape ``(obs_dim,)``; cast to float32.
* Termination is the env's ``terminated``. Truncation is the time limit: this adapter counts
  agent steps itself (``max_episode_steps``, random first-episode offsets on training envs,
  exactly as ``reppo_jax.envs.base.episode_bookkeeping``) and also honours a ``truncated`` the
  env reports earlier (e.g. gymnasium's ``TimeLimit``); truncated is False where terminated.
* Auto-reset with the true final observation, in every gymnasium 1.x autoreset mode:

  - ``SAME_STEP``: the env already reset the done sub-envs; their final observation is taken
    from ``info["final_obs"]`` (masked by ``info["_final_obs"]``);
  - ``NEXT_STEP`` (gymnasium's default) and ``DISABLED``: the returned observation of a done
    sub-env is its final observation; the adapter resets exactly those sub-envs at once with
    ``reset(options={"reset_mask": done})``, which also clears NEXT_STEP's pending reset, so no
    dummy transition (zero reward, ignored action) ever reaches the learner;
  - a time-limit truncation by the adapter's own counter resets the sub-env the same way.

* ``success_key``: if given, ``info[success_key]`` of the episode's last step (in SAME_STEP
  mode read from ``info["final_info"]``) is reported as ``info["success"]``.

Gymnasium envs cannot export their simulator state in general, so this adapter has no
``get_state``: a resumed run restarts the envs from a fresh reset (learner state, RNG and
metrics are still restored exactly).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reppo_common.errors import UserError
from reppo_torch.envs.base import StepOutput


def _autoreset_mode(vec_env: Any) -> str:
    mode = vec_env.metadata.get("autoreset_mode", "NextStep")
    return getattr(mode, "value", str(mode))


class GymVecEnv:
    """See module docstring; implements :class:`reppo_torch.envs.base.VecEnv` (CPU tensors)."""

    def __init__(self, vec_env: Any, *, max_episode_steps: int,
                 reward_range: tuple[float, float] | None, name: str = "gymnasium env",
                 success_key: str | None = None, random_episode_offsets: bool = True,
                 device: str | torch.device | None = None):
        import gymnasium
        from gymnasium.spaces import Box
        from gymnasium.wrappers.vector import RescaleAction

        if not isinstance(vec_env, gymnasium.vector.VectorEnv):
            raise UserError(f"{name}: expected a gymnasium.vector.VectorEnv, got "
                            f"{type(vec_env).__name__} (wrap a single env with "
                            f"gymnasium.vector.SyncVectorEnv)")
        act, obs = vec_env.single_action_space, vec_env.single_observation_space
        if not isinstance(act, Box) or len(act.shape) != 1:
            raise UserError(f"{name}: the action space must be a 1-D gymnasium Box, got {act}")
        if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
            raise UserError(f"{name}: action bounds must be finite to map [-1, 1] onto them, "
                            f"got low={act.low}, high={act.high}")
        if not isinstance(obs, Box) or len(obs.shape) != 1:
            raise UserError(f"{name}: the observation space must be a flat 1-D gymnasium Box, "
                            f"got {obs} (flatten it with gymnasium.wrappers.vector."
                            f"FlattenObservation)")
        if not np.issubdtype(obs.dtype, np.floating) and not np.issubdtype(obs.dtype, np.integer):
            raise UserError(f"{name}: observation dtype {obs.dtype} is not numeric")
        if max_episode_steps is None or int(max_episode_steps) < 1:
            raise UserError(f"{name}: max_episode_steps must be an integer >= 1, got "
                            f"{max_episode_steps!r}")
        self.rescaled = not (np.all(act.low == -1.0) and np.all(act.high == 1.0))
        if self.rescaled:
            vec_env = RescaleAction(vec_env, min_action=-1.0, max_action=1.0)
        self.env = vec_env
        self.name = name
        self.mode = _autoreset_mode(vec_env)
        self.num_envs = int(vec_env.num_envs)
        self.obs_dim = int(obs.shape[0])
        self.action_dim = int(act.shape[0])
        self.max_episode_steps = int(max_episode_steps)
        self.reward_range = None if reward_range is None else tuple(float(r) for r in reward_range)
        self.success_key = success_key
        self.random_episode_offsets = bool(random_episode_offsets)
        self.device = torch.device(device or "cpu")
        n = self.num_envs
        self._obs = np.zeros((n, self.obs_dim), np.float32)
        self._step_count = np.zeros(n, np.int64)
        self._ep_return = np.zeros(n, np.float64)
        self._ep_length = np.zeros(n, np.int64)

    def _t(self, x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A copy (the adapter's numpy counters are reset in place after they are reported)."""
        return torch.tensor(np.asarray(x), dtype=dtype, device=self.device)

    def _check_obs(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.shape != (self.num_envs, self.obs_dim):
            raise UserError(f"{self.name}: observation batch has shape {obs.shape}, expected "
                            f"({self.num_envs}, {self.obs_dim}) from its observation space")
        return obs.astype(np.float32)

    def reset(self, seed: int) -> torch.Tensor:
        """Reset every sub-env (gymnasium seeds sub-env i with ``seed + i``)."""
        obs, _ = self.env.reset(seed=int(seed))
        self._obs = self._check_obs(obs)
        rng = np.random.default_rng(int(seed))
        self._step_count = (rng.integers(0, self.max_episode_steps, self.num_envs)
                            if self.random_episode_offsets else np.zeros(self.num_envs, np.int64))
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        return self._t(self._obs)

    def step(self, action: torch.Tensor) -> StepOutput:
        a = torch.clamp(action.detach().to(torch.float32), -1.0, 1.0).cpu().numpy()
        obs, reward, terminated, truncated, info = self.env.step(a)
        obs = self._check_obs(obs)
        reward = np.asarray(reward, np.float64).reshape(self.num_envs)
        terminated = np.asarray(terminated, bool).reshape(self.num_envs)
        env_truncated = np.asarray(truncated, bool).reshape(self.num_envs)
        final_obs = obs.copy()
        success = None
        if self.mode == "SameStep" and "_final_obs" in info:
            where = np.asarray(info["_final_obs"], bool)
            for i in np.flatnonzero(where):
                final_obs[i] = np.asarray(info["final_obs"][i], np.float32)
        if self.success_key is not None:
            success = self._success(info, terminated | env_truncated)
        self._step_count += 1
        self._ep_return += reward
        self._ep_length += 1
        truncated = ((self._step_count >= self.max_episode_steps) | env_truncated) & ~terminated
        done = terminated | truncated
        ep_info = {"episode_return": self._t(self._ep_return),
                   "episode_length": self._t(self._ep_length, torch.int64)}
        if success is not None:
            ep_info["success"] = self._t(success, torch.bool)
        # sub-envs the vector env has not reset itself: every done one outside SAME_STEP, and in
        # SAME_STEP those ended by this adapter's own time limit only
        pending = done & ~(terminated | env_truncated) if self.mode == "SameStep" else done
        if pending.any():
            fresh, _ = self.env.reset(options={"reset_mask": pending})
            obs[pending] = self._check_obs(fresh)[pending]
        self._step_count[done] = 0
        self._ep_return[done] = 0.0
        self._ep_length[done] = 0
        self._obs = obs
        return StepOutput(obs=self._t(obs), reward=self._t(reward),
                          terminated=self._t(terminated, torch.bool),
                          truncated=self._t(truncated, torch.bool), final_obs=self._t(final_obs),
                          info=ep_info)

    def _success(self, info: dict, ended: np.ndarray) -> np.ndarray:
        """``info[success_key]`` per sub-env (the final step's info for SAME_STEP resets)."""
        out = np.zeros(self.num_envs, bool)
        key = self.success_key
        if key in info:
            out |= np.asarray(info[key], bool).reshape(self.num_envs) & np.asarray(
                info.get("_" + key, np.ones(self.num_envs, bool)), bool)
        final = info.get("final_info")
        if self.mode == "SameStep" and isinstance(final, dict) and key in final:
            mask = np.asarray(final.get("_" + key, ended), bool)
            out = np.where(mask, np.asarray(final[key], bool), out)
        return out

    def close(self) -> None:
        self.env.close()


def make_gym_env(env_id: str, num_envs: int, *, max_episode_steps: int,
                 reward_range: tuple[float, float] | None, random_episode_offsets: bool = True,
                 device: str | torch.device | None = None,
                 vectorization_mode: str = "sync") -> GymVecEnv:
    """``gymnasium.make_vec(env_id, num_envs)`` wrapped in :class:`GymVecEnv`."""
    import gymnasium

    if env_id.startswith("gym/"):
        env_id = env_id[len("gym/"):]
    try:
        vec = gymnasium.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode)
    except gymnasium.error.Error as e:
        raise UserError(f"gym/{env_id}: gymnasium cannot make it: {e}") from None
    except ImportError as e:
        raise UserError(f"gym/{env_id} needs a missing package ({e}); e.g. pip install "
                        f"'gymnasium[mujoco]'") from None
    return GymVecEnv(vec, max_episode_steps=max_episode_steps, reward_range=reward_range,
                     name=f"gym/{env_id}", random_episode_offsets=random_episode_offsets,
                     device=device)
