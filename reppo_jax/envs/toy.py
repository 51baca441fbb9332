"""Analytic toy env ("contextual bandit with episodes") implementing the VecEnv interface.

Dynamics (per env, all pure JAX, no physics):

* observation: a context ``c ~ U[-1, 1]^d`` (``d = obs_dim = action_dim``), redrawn i.i.d. after
  every step, independently of the action;
* target action ``a*(c) = TARGET_SCALE * c`` (``TARGET_SCALE = 0.75``, inside ``(-1, 1)``);
* reward ``r(c, a) = 1 - mean(((clip(a, -1, 1) - a*(c)) / REWARD_SCALE)^2)`` with
  ``REWARD_SCALE = 1 + TARGET_SCALE``, so ``r`` lies in ``[0, 1]`` and equals 1 iff ``a = a*(c)``;
* termination (``terminate_prob = p > 0``): the transition terminates iff the *next* context
  lands in the terminal region ``c'[0] > 1 - 2p`` (probability ``p``, independent of the action);
  ``final_obs`` is that terminal context (so ``terminated == final_obs[:, 0] > 1 - 2p``);
* truncation at ``max_episode_steps`` (time limit, bootstrapped by the learner).

Known truths (infinite-horizon discounted values, i.e. time limits are bootstrapped through,
as REPPO does):

* optimal policy: ``optimal_action(obs) = 0.75 * obs`` (deterministic, reward 1 every step);
* ``Q*(c, a) = r(c, a) + gamma * (1 - p) * V*`` for the *non-terminal* continuation, and
  ``V* = optimal_value(gamma) = 1 / (1 - gamma * (1 - p))`` for every context (because contexts are
  i.i.d. and the termination event is action independent);
* the optimal action is also optimal for the greedy one-step problem, so any learner that maximises
  Q must converge to ``a*``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reppo_jax.envs.base import (StepOutput, VecEnvState, episode_bookkeeping, initial_state,
                                  step_keys)

TARGET_SCALE = 0.75
REWARD_SCALE = 1.0 + TARGET_SCALE


class ToyBanditEnv:
    """See module docstring. Construct via :func:`make_toy_env`."""

    reward_range = (0.0, 1.0)

    def __init__(self, num_envs: int, *, obs_dim: int = 2, max_episode_steps: int = 50,
                 terminate_prob: float = 0.0, random_episode_offsets: bool = False):
        if not 0.0 <= terminate_prob < 1.0:
            raise ValueError(f"terminate_prob must lie in [0, 1), got {terminate_prob}")
        self.num_envs = int(num_envs)
        self.obs_dim = int(obs_dim)
        self.action_dim = int(obs_dim)
        self.max_episode_steps = int(max_episode_steps)
        self.terminate_prob = float(terminate_prob)
        self.terminal_threshold = 1.0 - 2.0 * self.terminate_prob
        self.random_episode_offsets = bool(random_episode_offsets)

    # -- analytic truths ------------------------------------------------------------------
    @staticmethod
    def optimal_action(obs: jax.Array) -> jax.Array:
        return TARGET_SCALE * obs

    def optimal_value(self, gamma: float) -> float:
        """V* = Q*(c, a*) = 1 / (1 - gamma (1 - p)) (time limits bootstrapped)."""
        return 1.0 / (1.0 - gamma * (1.0 - self.terminate_prob))

    @staticmethod
    def reward_fn(obs: jax.Array, action: jax.Array) -> jax.Array:
        a = jnp.clip(action, -1.0, 1.0)
        err = (a - TARGET_SCALE * obs) / REWARD_SCALE
        return 1.0 - jnp.mean(err * err, axis=-1)

    # -- VecEnv API -------------------------------------------------------------------------
    def _contexts(self, key):
        return jax.random.uniform(key, (self.num_envs, self.obs_dim), jnp.float32, -1.0, 1.0)

    def reset(self, key: jax.Array) -> tuple[VecEnvState, jax.Array]:
        k_ctx, k_off, k_next = jax.random.split(key, 3)
        obs = self._contexts(k_ctx)
        state = initial_state(obs, k_next, k_off, self.num_envs, self.max_episode_steps,
                              self.random_episode_offsets)
        return state, obs

    def step(self, state: VecEnvState, action: jax.Array, key: jax.Array | None = None
             ) -> tuple[VecEnvState, StepOutput]:
        next_key, key = step_keys(state, key)
        k_next, k_reset = jax.random.split(key)
        reward = self.reward_fn(state.sim, jnp.asarray(action, jnp.float32)).astype(jnp.float32)
        final_obs = self._contexts(k_next)
        if self.terminate_prob > 0.0:
            terminated = final_obs[:, 0] > self.terminal_threshold
        else:
            terminated = jnp.zeros((self.num_envs,), bool)
        terminated, truncated, done, step_count, ep_ret, ep_len, info = episode_bookkeeping(
            state, reward, terminated, self.max_episode_steps
        )
        obs = jnp.where(done[:, None], self._contexts(k_reset), final_obs)
        new_state = VecEnvState(sim=obs, key=next_key, step_count=step_count,
                                episode_return=ep_ret, episode_length=ep_len)
        return new_state, StepOutput(obs=obs, reward=reward, terminated=terminated,
                                     truncated=truncated, final_obs=final_obs, info=info)


def make_toy_env(num_envs: int, *, obs_dim: int = 2, max_episode_steps: int = 50,
                 terminate_prob: float = 0.0, random_episode_offsets: bool = False) -> ToyBanditEnv:
    return ToyBanditEnv(num_envs, obs_dim=obs_dim, max_episode_steps=max_episode_steps,
                        terminate_prob=terminate_prob,
                        random_episode_offsets=random_episode_offsets)
