"""Analytic toy env ("contextual bandit with episodes") in pure torch; the same task as
``reppo_jax.envs.toy`` with the same analytic truths (its random draws come from a
``torch.Generator``, so episodes differ from the JAX env's for the same seed).

Per env: the observation is a context ``c ~ U[-1, 1]^d`` (``d = obs_dim = action_dim``),
redrawn i.i.d. after every step; the reward is ``1 - mean(((clip(a, -1, 1) - 0.75·c) / 1.75)²)``;
with ``terminate_prob = p > 0`` a transition terminates iff the next context has
``c'[0] > 1 - 2p``; episodes are truncated at ``max_episode_steps``.

Known truths (time limits bootstrapped through): ``optimal_action(c) = 0.75·c`` and
``V* = optimal_value(γ) = 1 / (1 - γ(1 - p))``.
"""

from __future__ import annotations

import numpy as np
import torch

from reppo_torch.envs.base import StepOutput

TARGET_SCALE = 0.75
REWARD_SCALE = 1.0 + TARGET_SCALE


class ToyBanditEnv:
    """See module docstring; implements :class:`reppo_torch.envs.base.VecEnv`."""

    reward_range = (0.0, 1.0)

    def __init__(self, num_envs: int, *, obs_dim: int = 2, max_episode_steps: int = 50,
                 terminate_prob: float = 0.0, random_episode_offsets: bool = False,
                 device: str | torch.device = "cpu"):
        if not 0.0 <= terminate_prob < 1.0:
            raise ValueError(f"terminate_prob must lie in [0, 1), got {terminate_prob}")
        self.num_envs = int(num_envs)
        self.obs_dim = int(obs_dim)
        self.action_dim = int(obs_dim)
        self.max_episode_steps = int(max_episode_steps)
        self.terminate_prob = float(terminate_prob)
        self.terminal_threshold = 1.0 - 2.0 * self.terminate_prob
        self.random_episode_offsets = bool(random_episode_offsets)
        self.device = torch.device(device)
        self._gen = torch.Generator(device=self.device)
        n = self.num_envs
        self._obs = torch.zeros((n, self.obs_dim), device=self.device)
        self._step_count = torch.zeros((n,), dtype=torch.int64, device=self.device)
        self._ep_return = torch.zeros((n,), device=self.device)
        self._ep_length = torch.zeros((n,), dtype=torch.int64, device=self.device)

    # -- analytic truths ------------------------------------------------------------------
    @staticmethod
    def optimal_action(obs: torch.Tensor) -> torch.Tensor:
        return TARGET_SCALE * obs

    def optimal_value(self, gamma: float) -> float:
        """V* = Q*(c, a*) = 1 / (1 - gamma (1 - p)) (time limits bootstrapped)."""
        return 1.0 / (1.0 - gamma * (1.0 - self.terminate_prob))

    @staticmethod
    def reward_fn(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        err = (torch.clamp(action, -1.0, 1.0) - TARGET_SCALE * obs) / REWARD_SCALE
        return 1.0 - torch.mean(err * err, dim=-1)

    # -- VecEnv API -------------------------------------------------------------------------
    def _contexts(self) -> torch.Tensor:
        u = torch.rand((self.num_envs, self.obs_dim), generator=self._gen, device=self.device)
        return 2.0 * u - 1.0

    def reset(self, seed: int) -> torch.Tensor:
        self._gen.manual_seed(int(seed))
        self._obs = self._contexts()
        if self.random_episode_offsets:
            self._step_count = torch.randint(0, self.max_episode_steps, (self.num_envs,),
                                             generator=self._gen, device=self.device)
        else:
            self._step_count.zero_()
        self._ep_return.zero_()
        self._ep_length.zero_()
        return self._obs

    def step(self, action: torch.Tensor) -> StepOutput:
        reward = self.reward_fn(self._obs, action.to(torch.float32))
        final_obs = self._contexts()
        if self.terminate_prob > 0.0:
            terminated = final_obs[:, 0] > self.terminal_threshold
        else:
            terminated = torch.zeros((self.num_envs,), dtype=torch.bool, device=self.device)
        self._step_count += 1
        self._ep_return += reward
        self._ep_length += 1
        truncated = (self._step_count >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        info = {"episode_return": self._ep_return.clone(),
                "episode_length": self._ep_length.clone()}
        self._step_count.masked_fill_(done, 0)
        self._ep_return.masked_fill_(done, 0.0)
        self._ep_length.masked_fill_(done, 0)
        self._obs = torch.where(done[:, None], self._contexts(), final_obs)
        return StepOutput(obs=self._obs, reward=reward, terminated=terminated,
                          truncated=truncated, final_obs=final_obs, info=info)

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything :meth:`step` reads, as numpy arrays (for full-state checkpoints)."""
        return {"generator": self._gen.get_state().cpu().numpy(),
                "obs": self._obs.cpu().numpy(), "step_count": self._step_count.cpu().numpy(),
                "episode_return": self._ep_return.cpu().numpy(),
                "episode_length": self._ep_length.cpu().numpy()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`get_state` (arrays validated by the caller)."""
        self._gen.set_state(torch.as_tensor(np.asarray(state["generator"], np.uint8)))

        def t(name: str) -> torch.Tensor:
            return torch.as_tensor(np.asarray(state[name])).to(self.device)

        self._obs, self._step_count = t("obs"), t("step_count")
        self._ep_return, self._ep_length = t("episode_return"), t("episode_length")

    def close(self) -> None:
        pass


def make_toy_env(num_envs: int, *, obs_dim: int = 2, max_episode_steps: int = 50,
                 terminate_prob: float = 0.0, random_episode_offsets: bool = False,
                 device: str | torch.device = "cpu") -> ToyBanditEnv:
    return ToyBanditEnv(num_envs, obs_dim=obs_dim, max_episode_steps=max_episode_steps,
                        terminate_prob=terminate_prob,
                        random_episode_offsets=random_episode_offsets, device=device)
