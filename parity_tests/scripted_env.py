"""A deterministic scripted environment for layer 4, identical in numpy, JAX and torch.

Observations, true next observations, post-reset observations, terminations, truncations and a
per-step reward offset are drawn once in numpy (a :class:`Script`); every port replays the same
script, so the only inputs the rollouts differ in are their own arithmetic. The reward depends on
the executed action, ``r = base − mean((clip(a, −1, 1) − ½·tanh(obs[:A]))²)`` (a discrete action
j: ``r = base − 0.1·j``), so an error in the sampled action reaches the targets. Where an episode ends (terminated or truncated) the
auto-reset observation differs from the true final observation, so bootstrapping from the wrong
one shows. Episode return/length bookkeeping follows the VecEnv convention (the values include
the step; counters restart after it), starting from scripted partial episodes (episodes longer
than the rollout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spec.reference.rollout import EnvStep

FLAG_PATTERNS = ("mixed", "all_terminal", "all_truncated", "both", "none", "sparse")


@dataclass(frozen=True)
class Script:
    """S scripted steps of N envs with D-dim observations (S ≥ the steps any test runs)."""

    init_obs: np.ndarray     # (N, D)
    final_obs: np.ndarray    # (S, N, D) the transition's true next observation
    reset_obs: np.ndarray    # (S, N, D) the next episode's first observation (where done)
    terminated: np.ndarray   # (S, N) bool
    truncated: np.ndarray    # (S, N) bool
    base_reward: np.ndarray  # (S, N)
    init_return: np.ndarray  # (N,)
    init_length: np.ndarray  # (N,) int32

    def cast(self, dtype) -> "Script":
        f = {k: (np.asarray(v, dtype) if np.asarray(v).dtype.kind == "f" else v)
             for k, v in vars(self).items()}
        return Script(**f)


def draw_script(seed: int, pattern: str, steps: int, num_envs: int, obs_dim: int) -> Script:
    """A script whose flags follow ``pattern``: ``mixed`` (independent terminations and
    truncations, 30% each, both at once possible), ``sparse`` (10% each: mid-rollout resets
    among long episodes), ``all_terminal``, ``all_truncated``, ``both`` (every step both) or
    ``none`` (no episode ends: every episode is longer than the rollout). Observations have
    per-feature offsets and scales, so the running normalisation matters."""
    rng = np.random.default_rng(seed)
    loc = rng.uniform(-3.0, 3.0, obs_dim)
    scale = rng.uniform(0.5, 3.0, obs_dim)

    def obs(*shape):
        return loc + scale * rng.standard_normal(shape + (obs_dim,))

    shape = (steps, num_envs)
    if pattern in ("mixed", "sparse"):
        p = 0.3 if pattern == "mixed" else 0.1
        term, trunc = rng.random(shape) < p, rng.random(shape) < p
    else:
        term = np.full(shape, pattern in ("all_terminal", "both"))
        trunc = np.full(shape, pattern in ("all_truncated", "both"))
    return Script(init_obs=obs(num_envs), final_obs=obs(steps, num_envs),
                  reset_obs=obs(steps, num_envs), terminated=term, truncated=trunc,
                  base_reward=rng.uniform(-1.0, 1.0, shape),
                  init_return=rng.uniform(-5.0, 5.0, num_envs),
                  init_length=rng.integers(0, 30, num_envs).astype(np.int32))


def _next_obs(script: Script, t: int) -> np.ndarray:
    done = script.terminated[t] | script.truncated[t]
    return np.where(done[:, None], script.reset_obs[t], script.final_obs[t])


class NumpyScriptedEnv:
    """The reference replay: ``step(action) -> spec.reference.rollout.EnvStep``."""

    def __init__(self, script: Script, discrete: bool = False):
        self.s, self.t, self.obs, self.discrete = script, 0, script.init_obs, discrete
        self.ret, self.len = script.init_return.copy(), script.init_length.astype(np.int64)

    def step(self, action: np.ndarray) -> EnvStep:
        s, t = self.s, self.t
        if self.discrete:
            dt = s.base_reward.dtype
            reward = s.base_reward[t] - dt.type(0.1) * np.asarray(action).astype(dt)
        else:
            a = np.clip(action, -1.0, 1.0)
            target = 0.5 * np.tanh(self.obs[:, :a.shape[-1]])
            reward = s.base_reward[t] - np.mean((a - target) ** 2, axis=-1)
        done = s.terminated[t] | s.truncated[t]
        ret, length = self.ret + reward, self.len + 1
        self.ret = np.where(done, 0.0, ret).astype(reward.dtype)
        self.len = np.where(done, 0, length)
        self.t, self.obs = t + 1, _next_obs(s, t)
        return EnvStep(obs=self.obs, reward=reward, terminated=s.terminated[t],
                       truncated=s.truncated[t], final_obs=s.final_obs[t],
                       episode_return=ret, episode_length=length.astype(np.int32))


class JaxScriptedEnv:
    """A pure VecEnv (``step(state, action)``) replaying a script carried in its state, so one
    compilation serves every script of the same shape."""

    def __init__(self, num_envs: int, obs_dim: int, action_dim: int, max_episode_steps: int,
                 discrete: bool = False):
        self.num_envs, self.obs_dim, self.action_dim = num_envs, obs_dim, action_dim
        self.discrete = discrete
        self.num_actions = action_dim if discrete else None
        self.max_episode_steps = max_episode_steps
        self.reward_range = (-2.0, 1.0)

    @staticmethod
    def initial_state(script: Script):
        import jax.numpy as jnp

        arrays = {k: jnp.asarray(v) for k, v in vars(script).items()}
        state = {"t": jnp.zeros((), jnp.int32), "obs": arrays["init_obs"],
                 "ret": arrays["init_return"], "len": arrays["init_length"], "script": arrays}
        return state, arrays["init_obs"]

    def step(self, state, action, key=None):
        import jax.numpy as jnp

        from reppo_jax.envs.base import StepOutput

        s, t = state["script"], state["t"]
        base = s["base_reward"][t]
        if self.discrete:
            reward = base - jnp.asarray(0.1, base.dtype) * action.astype(base.dtype)
        else:
            a = jnp.clip(action, -1.0, 1.0)
            target = 0.5 * jnp.tanh(state["obs"][:, :a.shape[-1]])
            reward = base - jnp.mean((a - target) ** 2, axis=-1)
        term, trunc = s["terminated"][t], s["truncated"][t]
        done = term | trunc
        final = s["final_obs"][t]
        obs = jnp.where(done[:, None], s["reset_obs"][t], final)
        ret, length = state["ret"] + reward, state["len"] + 1
        new = {"t": t + 1, "obs": obs, "ret": jnp.where(done, 0.0, ret).astype(ret.dtype),
               "len": jnp.where(done, 0, length).astype(length.dtype), "script": s}
        info = {"episode_return": ret, "episode_length": length}
        return new, StepOutput(obs=obs, reward=reward, terminated=term, truncated=trunc,
                               final_obs=final, info=info)


class TorchScriptedEnv:
    """The stateful torch VecEnv replaying a script."""

    def __init__(self, script: Script, obs_dim: int, action_dim: int, max_episode_steps: int):
        import torch

        self.s = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in vars(script).items()}
        self.num_envs = script.init_obs.shape[0]
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.max_episode_steps = max_episode_steps
        self.reward_range = (-2.0, 1.0)
        self.t = 0
        self.obs = self.s["init_obs"]
        self.ret, self.len = self.s["init_return"].clone(), self.s["init_length"].clone()

    def step(self, action):
        import torch

        from reppo_torch.envs.base import StepOutput

        s, t = self.s, self.t
        a = torch.clamp(action, -1.0, 1.0)
        target = 0.5 * torch.tanh(self.obs[:, :a.shape[-1]])
        reward = s["base_reward"][t] - torch.mean((a - target) ** 2, dim=-1)
        term, trunc = s["terminated"][t], s["truncated"][t]
        done = term | trunc
        final = s["final_obs"][t]
        self.obs = torch.where(done[:, None], s["reset_obs"][t], final)
        ret, length = self.ret + reward, self.len + 1
        self.ret = torch.where(done, torch.zeros_like(ret), ret)
        self.len = torch.where(done, torch.zeros_like(length), length)
        self.t = t + 1
        return StepOutput(obs=self.obs, reward=reward, terminated=term, truncated=trunc,
                          final_obs=final, info={"episode_return": ret, "episode_length": length})
