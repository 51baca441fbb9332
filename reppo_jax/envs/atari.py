"""Atari (ALE v5 protocol) through envpool: a *host-side* vectorised env for D-REPPO.

``make_atari_env("Pong", 8)`` wraps ``envpool.make("Pong-v5", env_type="gymnasium")`` with the
standard v5 protocol: frame skip 4 (max-pooled), 84×84 grayscale, frame stack 4, sticky actions
(repeat_action_probability 0.25), up to 30 no-op starts, the minimal action set, no life-loss
signal (``episodic_life=False``), full episodes up to 27,000 agent steps (108k frames). Rewards
are clipped to their sign for training (``clip_rewards=True``); evaluation envs report raw
rewards, and ``info['episode_return']`` is always the raw game score.

Host-side design. envpool steps C++ emulators on its own thread pool and returns numpy arrays,
so it cannot live inside ``jax.jit``: the D-REPPO trainer (``reppo_jax.discrete``) steps it
from Python, with one jitted call per env step for the policy (and bootstrap) and one jitted
update per iteration (see ``make_host_iteration`` there). ``host = True`` marks such envs, and
``step`` takes and returns numpy arrays (``StepOutput`` fields; there is no ``VecEnvState``:
the state lives in the envpool object, ``reset`` returns ``(None, obs)``).

Auto-reset. envpool resets an env on the step *after* its episode ended (the action of that
step is ignored and the reset observation comes back with reward 0). The step that ends an
episode reports the true final observation in both ``obs`` and ``final_obs``; the following
step is the envpool reset step, which this adapter reports as a zero-reward transition from the
final observation to the reset observation that is ``terminated`` (no bootstrap, value target
0). That costs one dummy transition per episode (episodes are thousands of steps long) and
never lets the reset frame leak into a real transition's bootstrap.

Observations: uint8 ``(N, 4·84·84)`` (flattened stack; the Nature-CNN torso reshapes it and
scales by 1/255; do not normalise it); ``pixels = True`` selects that torso.
"""

from __future__ import annotations

import numpy as np

from reppo_jax.envs.base import StepOutput

FRAME_STACK = 4
SIZE = 84


def atari_available() -> bool:
    try:
        import envpool  # noqa: F401
    except ImportError:
        return False
    return True


class AtariHostEnv:
    """See the module docstring."""

    discrete = True
    host = True
    pixels = True

    def __init__(self, game: str, num_envs: int, *, max_episode_steps: int | None = None,
                 clip_rewards: bool = True, seed: int = 0, num_threads: int = 0):
        try:
            import envpool
        except ImportError as e:  # pragma: no cover - depends on the installed extras
            raise ImportError(f"atari/{game} needs envpool: pip install -e '.[atari]' ({e})") from e
        if game.startswith("atari/"):
            game = game[len("atari/"):]
        self.game = game
        self.num_envs = int(num_envs)
        self.max_episode_steps = int(max_episode_steps or 27_000)
        self.clip_rewards = bool(clip_rewards)
        self.reward_range = (-1.0, 1.0) if clip_rewards else (-np.inf, np.inf)
        self.env = envpool.make(
            f"{game}-v5", env_type="gymnasium", num_envs=self.num_envs, batch_size=self.num_envs,
            num_threads=num_threads, seed=int(seed), max_episode_steps=self.max_episode_steps,
            img_height=SIZE, img_width=SIZE, stack_num=FRAME_STACK, gray_scale=True,
            frame_skip=4, noop_max=30, repeat_action_probability=0.25, episodic_life=False,
            reward_clip=False, full_action_space=False)
        self.num_actions = int(self.env.action_space.n)
        self.action_dim = self.num_actions
        self.obs_dim = FRAME_STACK * SIZE * SIZE
        self._pending = np.zeros(self.num_envs, bool)
        self._ret = np.zeros(self.num_envs, np.float32)
        self._len = np.zeros(self.num_envs, np.int32)

    def reset(self, key=None):
        obs, _ = self.env.reset()
        self._pending[:] = False
        self._ret[:] = 0.0
        self._len[:] = 0
        return None, obs.reshape(self.num_envs, -1)

    def step(self, state, action, key=None) -> tuple[None, StepOutput]:
        obs, reward, terminated, truncated, _ = self.env.step(np.asarray(action, np.int32))
        obs = obs.reshape(self.num_envs, -1)
        reward = np.asarray(reward, np.float32)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool) & ~terminated
        pending = self._pending.copy()
        # envpool's reset step of the envs whose episode ended last step: a dummy terminal
        # transition (final obs → reset obs, reward 0), not counted in any episode
        reward = np.where(pending, 0.0, reward).astype(np.float32)
        terminated = np.where(pending, True, terminated)
        truncated = np.where(pending, False, truncated)
        done = (terminated | truncated) & ~pending
        self._ret = np.where(pending, 0.0, self._ret + reward).astype(np.float32)
        self._len = np.where(pending, 0, self._len + 1).astype(np.int32)
        info = {"episode_return": self._ret.copy(), "episode_length": self._len.copy(),
                "episode_done": done}
        train_reward = np.sign(reward).astype(np.float32) if self.clip_rewards else reward
        self._pending = done
        self._ret = np.where(done, 0.0, self._ret).astype(np.float32)
        self._len = np.where(done, 0, self._len).astype(np.int32)
        return None, StepOutput(obs=obs, reward=train_reward, terminated=terminated,
                                truncated=truncated, final_obs=obs, info=info)


def make_atari_env(game: str, num_envs: int, *, max_episode_steps: int | None = None,
                   clip_rewards: bool = True, seed: int = 0) -> AtariHostEnv:
    return AtariHostEnv(game, num_envs, max_episode_steps=max_episode_steps,
                        clip_rewards=clip_rewards, seed=seed)
