"""reppo_torch.envs.gym.GymVecEnv: the DMC path's auto-reset / truncation / final-observation
contract for gymnasium vector envs in every autoreset mode, action rescaling and the one-line
errors for spaces it cannot serve."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from reppo_common.errors import UserError
from reppo_torch.envs.gym import GymVecEnv, make_gym_env

MODES = (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP,
         gym.vector.AutoresetMode.DISABLED)


class Counter(gym.Env):
    """obs = [t, last action]; reward = 1 + t; terminates when t reaches ``end``."""

    observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def __init__(self, end: int = 3):
        self.end = end

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.t, float(action[0])], np.float32)
        return obs, float(self.t), self.t >= self.end, False, {"is_success": self.t >= self.end}


def _vec(mode, n=2, cls=gym.vector.SyncVectorEnv, end=3):
    return cls([lambda: Counter(end)] * n, autoreset_mode=mode)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_termination_final_obs_and_no_dummy_steps(mode):
    env = GymVecEnv(_vec(mode), max_episode_steps=100, reward_range=(0.0, 10.0),
                    random_episode_offsets=False, success_key="is_success")
    obs = env.reset(seed=0)
    assert obs.shape == (2, 2) and obs.dtype == torch.float32
    rewards = []
    for t in range(1, 8):
        out = env.step(torch.full((2, 1), 0.5))
        rewards.append(float(out.reward[0]))
        ended = t % 3 == 0
        assert out.terminated.tolist() == [ended] * 2 and not out.truncated.any()
        assert out.final_obs[:, 0].tolist() == [float((t - 1) % 3 + 1)] * 2  # true x'
        assert out.obs[:, 0].tolist() == [0.0 if ended else float(t % 3)] * 2  # auto-reset
        assert out.info["success"].tolist() == [ended] * 2
        if ended:
            assert out.info["episode_return"].tolist() == [6.0, 6.0]
            assert out.info["episode_length"].tolist() == [3, 3]
    # NEXT_STEP's dummy transition (reward 0 after a reset) never reaches the learner
    assert rewards == [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
    assert out.final_obs[0, 1] == pytest.approx(1.0)  # policy 0.5 -> env 1.0 on [-2, 2]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_time_limit_is_a_truncation_with_final_obs(mode):
    env = GymVecEnv(_vec(mode, end=100), max_episode_steps=2, reward_range=(0.0, 10.0),
                    random_episode_offsets=False)
    env.reset(seed=1)
    env.step(torch.zeros(2, 1))
    out = env.step(torch.zeros(2, 1))
    assert out.truncated.all() and not out.terminated.any()
    assert out.final_obs[:, 0].tolist() == [2.0, 2.0] and out.obs[:, 0].tolist() == [0.0, 0.0]
    out = env.step(torch.zeros(2, 1))
    assert out.reward.tolist() == [1.0, 1.0]  # a fresh episode, not a dummy step


def test_async_vector_env_and_random_offsets():
    env = GymVecEnv(_vec(gym.vector.AutoresetMode.NEXT_STEP, n=3,
                         cls=gym.vector.AsyncVectorEnv, end=100),
                    max_episode_steps=4, reward_range=(0.0, 10.0), random_episode_offsets=True)
    try:
        env.reset(seed=3)
        first = [env.step(torch.zeros(3, 1)).truncated.numpy() for _ in range(4)]
        when = np.argmax(np.stack(first), axis=0)  # step of each env's first truncation
        assert np.stack(first).any(axis=0).all() and len(set(when.tolist())) > 1
    finally:
        env.close()


def test_actions_are_clipped_and_rescaled():
    env = GymVecEnv(_vec(gym.vector.AutoresetMode.NEXT_STEP), max_episode_steps=10,
                    reward_range=(0.0, 10.0), random_episode_offsets=False)
    env.reset(seed=0)
    out = env.step(torch.tensor([[-1.0], [3.0]]))
    assert out.final_obs[:, 1].tolist() == [-2.0, 2.0]


class BadSpaces(Counter):
    pass


@pytest.mark.parametrize("attr,space,match", [
    ("action_space", gym.spaces.Box(-np.inf, np.inf, (1,), np.float32), "must be finite"),
    ("action_space", gym.spaces.Discrete(3), "1-D gymnasium Box"),
    ("observation_space", gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (2,))}), "flat 1-D"),
])
def test_unsupported_spaces_are_one_line_errors(attr, space, match, monkeypatch):
    monkeypatch.setattr(BadSpaces, attr, space)
    vec = gym.vector.SyncVectorEnv([BadSpaces] * 2)
    with pytest.raises(UserError, match=match) as e:
        GymVecEnv(vec, max_episode_steps=10, reward_range=(0.0, 1.0), name="my/Bad")
    assert str(e.value).startswith("my/Bad: ") and "\n" not in str(e.value)


def test_pendulum_from_the_gym_suite():
    env = make_gym_env("gym/Pendulum-v1", 4, max_episode_steps=200,
                       reward_range=(-16.3, 0.0), random_episode_offsets=False)
    assert (env.obs_dim, env.action_dim, env.rescaled) == (3, 1, True)
    env.reset(seed=0)
    for _ in range(200):
        out = env.step(torch.zeros(4, 1))
    assert out.truncated.all() and out.info["episode_length"].tolist() == [200] * 4
    assert (out.info["episode_return"] < 0).all()
    with pytest.raises(UserError, match="gym/NoSuchEnv-v0: gymnasium cannot make it"):
        make_gym_env("NoSuchEnv-v0", 2, max_episode_steps=10, reward_range=None)


def test_registered_factories_are_checked(monkeypatch):
    """make_torch may return a gymnasium VectorEnv (wrapped with the declared facts) or a reppo
    VecEnv; anything else, or the wrong batch size, is a one-line error."""
    from reppo_common import registry
    from reppo_torch.envs import make_env
    from reppo_torch.envs.toy import make_toy_env

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    registry.register("my/Count", make_torch=lambda n: _vec(gym.vector.AutoresetMode.SAME_STEP, n),
                      max_episode_steps=7, reward_range=(0.0, 10.0), success_key="is_success")
    env = make_env("my/Count", 2)
    assert isinstance(env, GymVecEnv) and env.max_episode_steps == 7 and env.mode == "SameStep"
    assert env.success_key == "is_success" and env.reward_range == (0.0, 10.0)
    assert make_env("my/Count", 2, max_episode_steps=3).max_episode_steps == 3  # config wins
    cases = {"my/Single": (lambda n: Counter(), "neither a gymnasium VectorEnv nor"),
             "my/Short": (lambda n: _vec(gym.vector.AutoresetMode.NEXT_STEP, n - 1),
                          r"make_torch\(2\) built 1 envs"),
             "my/Toy": (lambda n: make_toy_env(n, max_episode_steps=50),
                        "max_episode_steps=50 differs from the declared/configured 7")}
    for name, (factory, match) in cases.items():
        registry.register(name, make_torch=factory, max_episode_steps=7, reward_range=(0.0, 1.0))
        with pytest.raises(UserError, match=match) as e:
            make_env(name, 2)
        assert str(e.value).startswith(f"{name}: ") and "\n" not in str(e.value)
