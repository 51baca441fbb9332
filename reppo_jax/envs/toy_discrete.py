"""Analytic discrete-action toy env ("contextual bandit with episodes"), for D-REPPO tests.

Dynamics (per env, pure JAX):

* observation: a one-hot context c ∈ {0, …, K−1} (``obs_dim = K``), redrawn uniformly i.i.d.
  after every step, independently of the action;
* ``num_actions = A`` actions; the best action is ``a*(c) = c mod A``;
* reward ``r(c, a) = 1`` if ``a == a*(c)`` else ``0``;
* no termination; truncation at ``max_episode_steps`` (bootstrapped by the learner).

Known truths: because the next context does not depend on the action, for *any* policy
``Q(c, a*(c)) − Q(c, a) = 1`` for every other action a (soft or not), the greedy policy of any
learner that fits Q must pick ``a*``, and a random policy earns 1/A per step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reppo_jax.envs.base import (StepOutput, VecEnvState, episode_bookkeeping, initial_state,
                                  step_keys)


class DiscreteBanditEnv:
    """See module docstring. ``discrete = True``: actions are int32 indices."""

    discrete = True
    reward_range = (0.0, 1.0)

    def __init__(self, num_envs: int, *, num_contexts: int = 4, num_actions: int = 3,
                 max_episode_steps: int = 20, random_episode_offsets: bool = False):
        if num_actions < 2 or num_contexts < 1:
            raise ValueError("need num_actions >= 2 and num_contexts >= 1")
        self.num_envs = int(num_envs)
        self.obs_dim = int(num_contexts)
        self.num_actions = int(num_actions)
        self.action_dim = self.num_actions
        self.max_episode_steps = int(max_episode_steps)
        self.random_episode_offsets = bool(random_episode_offsets)

    def best_action(self, obs: jax.Array) -> jax.Array:
        """a*(c) = c mod A for one-hot contexts ``obs`` (…, K)."""
        return (jnp.argmax(obs, axis=-1) % self.num_actions).astype(jnp.int32)

    def _contexts(self, key):
        c = jax.random.randint(key, (self.num_envs,), 0, self.obs_dim)
        return jax.nn.one_hot(c, self.obs_dim, dtype=jnp.float32)

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
        action = jnp.asarray(action).astype(jnp.int32)
        reward = (action == self.best_action(state.sim)).astype(jnp.float32)
        final_obs = self._contexts(k_next)
        terminated = jnp.zeros((self.num_envs,), bool)
        terminated, truncated, done, step_count, ep_ret, ep_len, info = episode_bookkeeping(
            state, reward, terminated, self.max_episode_steps)
        obs = jnp.where(done[:, None], self._contexts(k_reset), final_obs)
        new_state = VecEnvState(sim=obs, key=next_key, step_count=step_count,
                                episode_return=ep_ret, episode_length=ep_len)
        return new_state, StepOutput(obs=obs, reward=reward, terminated=terminated,
                                     truncated=truncated, final_obs=final_obs, info=info)


def make_discrete_bandit(num_envs: int, **kwargs) -> DiscreteBanditEnv:
    return DiscreteBanditEnv(num_envs, **kwargs)
