"""Env adapter tests: playground DMC (CartpoleBalance, impl='jax') and the analytic toy env.

JIT work is kept minimal: one DMC env (4 envs, max_episode_steps=10, random offsets) with three
compiled functions (reset, a scan over ``step``, the raw vmapped playground step), shared by
module-scoped fixtures.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from reppo_jax.envs.base import StepOutput, VecEnv, VecEnvState  # noqa: E402
from reppo_jax.envs.toy import make_toy_env  # noqa: E402

N, MAX_STEPS, T = 4, 10, 24
TRACES = {"scan": 0}


@pytest.fixture(scope="module")
def dmc():
    pytest.importorskip("mujoco_playground")
    from reppo_jax.envs.dmc import make_dmc_env

    env = make_dmc_env("dmc/CartpoleBalance", N, impl="jax", max_episode_steps=MAX_STEPS,
                       random_episode_offsets=True)

    @jax.jit
    def scan_steps(state, actions):
        TRACES["scan"] += 1

        def body(s, a):
            s2, out = env.step(s, a)
            return s2, (out, s.sim)

        return jax.lax.scan(body, state, actions)

    state0, obs0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
    actions = jax.random.uniform(jax.random.PRNGKey(1), (T, N, env.action_dim), minval=-1.0,
                                 maxval=1.0)
    state1, (outs, sims) = scan_steps(state0, actions)
    return dict(env=env, scan=scan_steps, state0=state0, obs0=obs0, actions=actions,
                state1=state1, outs=outs, sims=sims)


def test_dmc_loads_offline():
    pytest.importorskip("mujoco_playground")
    from reppo_jax.envs.dmc import dmc_task_names, make_dmc_env

    assert len(dmc_task_names()) == 25
    for task, obs_dim, act_dim in [("PendulumSwingup", 3, 1), ("CheetahRun", 17, 6)]:
        env = make_dmc_env(task, 2)
        assert isinstance(env, VecEnv)
        assert (env.obs_dim, env.action_dim, env.max_episode_steps) == (obs_dim, act_dim, 1000)
        assert env.env.mjx_model.impl.value == "jax"
        assert env.reward_range == (0.0, 1.0)


def test_shapes_and_dtypes(dmc):
    env, outs, state0 = dmc["env"], dmc["outs"], dmc["state0"]
    assert (env.obs_dim, env.action_dim, env.num_envs) == (5, 1, N)
    assert isinstance(state0, VecEnvState) and isinstance(outs, StepOutput)
    assert dmc["obs0"].shape == (N, 5) and dmc["obs0"].dtype == jnp.float32
    assert outs.obs.shape == outs.final_obs.shape == (T, N, 5)
    assert outs.obs.dtype == outs.final_obs.dtype == jnp.float32
    assert outs.reward.shape == (T, N) and outs.reward.dtype == jnp.float32
    assert outs.terminated.dtype == outs.truncated.dtype == jnp.bool_
    assert outs.info["episode_return"].shape == (T, N)
    assert outs.info["episode_length"].dtype == jnp.int32
    r = np.asarray(outs.reward)
    assert np.all((r >= 0.0) & (r <= 1.0))


def test_single_compile_of_scan(dmc):
    scan = dmc["scan"]
    state2, _ = scan(dmc["state1"], dmc["actions"])  # carry produced by step, fed back
    jax.block_until_ready(state2)
    assert TRACES["scan"] == 1
    assert scan._cache_size() == 1
    s1 = jax.tree.map(lambda x: (x.dtype, x.shape, x.weak_type), dmc["state1"])
    s0 = jax.tree.map(lambda x: (x.dtype, x.shape, x.weak_type), dmc["state0"])
    assert s0 == s1


def test_action_clipping(dmc):
    # a=2 behaves exactly like a=1 (adapter clips to [-1, 1]).
    ones = jnp.ones((T, N, 1))
    _, (o1, _) = dmc["scan"](dmc["state0"], ones)
    _, (o2, _) = dmc["scan"](dmc["state0"], 2.0 * ones)
    for a, b in zip(jax.tree.leaves(o1), jax.tree.leaves(o2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_truncation_auto_reset_and_final_obs(dmc):
    env, outs, sims, state0 = dmc["env"], dmc["outs"], dmc["sims"], dmc["state0"]
    offsets = np.asarray(state0.step_count)
    term, trunc = np.asarray(outs.terminated), np.asarray(outs.truncated)
    assert not term.any()
    obs, fobs, rew = map(np.asarray, (outs.obs, outs.final_obs, outs.reward))
    ep_ret, ep_len = np.asarray(outs.info["episode_return"]), np.asarray(outs.info["episode_length"])
    times = np.asarray(sims.data.time)  # sim time of the state *before* each step
    for i in range(N):
        done_t = np.flatnonzero(trunc[:, i])
        # first episode shortened by the random offset, then every MAX_STEPS steps
        expected = np.arange(MAX_STEPS - offsets[i] - 1, T, MAX_STEPS)
        np.testing.assert_array_equal(done_t, expected)
        start = 0
        for t in done_t:
            np.testing.assert_allclose(ep_ret[t, i], rew[start:t + 1, i].sum(), rtol=1e-5)
            assert ep_len[t, i] == t + 1 - start
            if t + 1 < T:  # obs after done is a reset observation: the sim restarted at time 0
                assert times[t + 1, i] == 0.0
                np.testing.assert_array_equal(np.asarray(sims.obs[t + 1, i]), obs[t, i])
            assert not np.allclose(fobs[t, i], obs[t, i])
            start = t + 1
        not_done = ~trunc[:, i]
        np.testing.assert_array_equal(fobs[not_done, i], obs[not_done, i])
    # final_obs equals a manual, non-resetting step of the pre-step state: replay the same
    # compiled scan from that state with the time-limit counter cleared.
    t = int(np.flatnonzero(trunc.any(axis=1))[0])
    pre = jax.tree.map(lambda x: x[t], sims)
    replay = state0._replace(sim=pre, step_count=jnp.zeros_like(state0.step_count))
    _, (out_m, _) = dmc["scan"](replay, jnp.roll(dmc["actions"], -t, axis=0))
    assert not np.asarray(out_m.truncated[0]).any()
    np.testing.assert_allclose(np.asarray(out_m.obs[0]), fobs[t], rtol=1e-6, atol=1e-6)
    # the reset obs lies in CartpoleBalance's initial distribution: |cart| <= 0.1, cos ~ 1
    reset_obs = obs[trunc]
    assert np.all(np.abs(reset_obs[:, 0]) <= 0.1) and np.all(reset_obs[:, 1] > 0.99)


def test_random_offsets_desynchronise(dmc):
    offsets = np.asarray(dmc["state0"].step_count)
    assert np.all((offsets >= 0) & (offsets < MAX_STEPS))
    assert len(set(offsets.tolist())) > 1
    first_trunc = np.argmax(np.asarray(dmc["outs"].truncated), axis=0)
    assert len(set(first_trunc.tolist())) > 1


# ---------------------------------------------------------------------------- toy env


def _toy_rollout(env, policy, steps, seed=0):
    state, obs = env.reset(jax.random.PRNGKey(seed))

    def body(carry, _):
        s, o = carry
        a = policy(o)
        s, out = env.step(s, a)
        return (s, out.obs), (out, o, a)

    return jax.jit(lambda s, o: jax.lax.scan(body, (s, o), None, length=steps))(state, obs)


def test_toy_optimal_action_max_reward():
    env = make_toy_env(8, obs_dim=3, max_episode_steps=5)
    assert isinstance(env, VecEnv)
    _, (out, _, _) = _toy_rollout(env, env.optimal_action, 12)
    np.testing.assert_allclose(np.asarray(out.reward), 1.0, atol=1e-6)
    _, (out2, _, _) = _toy_rollout(env, lambda o: env.optimal_action(o) + 0.3, 12)
    assert np.all(np.asarray(out2.reward) < 1.0 - 1e-3)
    # clipping: 2 behaves like 1
    o = jnp.full((1, 3), 0.5)
    assert float(env.reward_fn(o, jnp.full((1, 3), 2.0))[0]) == float(
        env.reward_fn(o, jnp.ones((1, 3)))[0])
    assert env.optimal_value(0.9) == pytest.approx(10.0)


def test_toy_truncation_vs_termination():
    env = make_toy_env(16, obs_dim=2, max_episode_steps=5)
    _, (out, _, _) = _toy_rollout(env, env.optimal_action, 10)
    trunc = np.asarray(out.truncated)
    assert not np.asarray(out.terminated).any()
    assert trunc[4].all() and trunc[9].all() and trunc.sum() == 32
    np.testing.assert_allclose(np.asarray(out.info["episode_return"])[4], 5.0, rtol=1e-5)

    env_t = make_toy_env(64, obs_dim=2, max_episode_steps=5, terminate_prob=0.2)
    assert env_t.optimal_value(0.9) == pytest.approx(1.0 / (1.0 - 0.9 * 0.8))
    _, (out, _, _) = _toy_rollout(env_t, env_t.optimal_action, 20)
    term, trunc = np.asarray(out.terminated), np.asarray(out.truncated)
    fobs, obs = np.asarray(out.final_obs), np.asarray(out.obs)
    assert term.any() and trunc.any() and not (term & trunc).any()
    np.testing.assert_array_equal(term, fobs[..., 0] > env_t.terminal_threshold)
    done = term | trunc
    np.testing.assert_array_equal(fobs[~done], obs[~done])
    assert not np.allclose(fobs[done], obs[done])
    ep_len = np.asarray(out.info["episode_length"])
    assert np.all(ep_len[done] <= 5) and np.all(ep_len[trunc] == 5)
