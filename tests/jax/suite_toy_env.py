"""``bench/Bandit``: the analytic toy bandit (``reppo_jax.envs.toy``) registered as a user env,
so that ``benchmarks.suite`` can run REPPO jobs on it through the real ``reppo train`` command
(``--tasks suite_toy_env:bench/Bandit`` with this directory on PYTHONPATH) in seconds."""

from reppo_common.registry import REGISTRY, register


def _make(num_envs: int):
    from reppo_jax.envs.toy import make_toy_env

    return make_toy_env(num_envs, max_episode_steps=50)


if "bench/Bandit" not in REGISTRY:
    register("bench/Bandit", make_jax=_make, max_episode_steps=50, reward_range=(0.0, 1.0),
             default_preset="tiny")
