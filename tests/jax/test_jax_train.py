"""End-to-end tests of the JAX trainer: learning on an analytic env (the CLI smoke run on DMC is
shared with torch: tests/ports/test_cli_smoke.py)."""

from __future__ import annotations

import math

import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from reppo_jax import agent as A  # noqa: E402
from reppo_jax.envs.toy import make_toy_env  # noqa: E402
from reppo_jax.train import make_trainer, train  # noqa: E402
from spec.backend import TrainHooks  # noqa: E402
from spec.config import apply_overrides  # noqa: E402
from spec.presets import preset_config  # noqa: E402


def _toy_config(**extra):
    overrides = {
        "env.name": "toy/Bandit", "env.v_min": 0.0, "env.v_max": 10.0,
        "rollout.num_envs": 16, "rollout.num_steps": 16, "rollout.num_minibatches": 4,
        "rollout.num_epochs": 4, "rollout.total_env_steps": 16 * 16 * 140,
        "critic.hidden_dim": 64, "actor.hidden_dim": 64, "critic.num_bins": 51,
        "run.eval_interval": 10**9, "run.eval_episodes": 8,
    }
    overrides.update(extra)
    return apply_overrides(preset_config("tiny"), overrides)


def test_toy_env_learns_optimal_policy_and_value():
    """On the contextual-bandit toy (a* = 0.75·c, V* = 1/(1−γ)), REPPO's deterministic policy
    approaches a* and its Q at (c, a*) approaches the known value."""
    cfg = _toy_config()
    env = make_toy_env(cfg.rollout.num_envs)
    eval_env = make_toy_env(cfg.run.eval_episodes)
    trainer = make_trainer(cfg, env, eval_env)
    carry = trainer.init(cfg.run.seed)
    for _ in range(cfg.rollout.total_env_steps // trainer.steps_per_iteration):
        carry, info = trainer.iteration(carry)
    assert all(np.isfinite(float(v)) for v in info.values())
    state = carry.agent
    obs = jax.random.uniform(jax.random.PRNGKey(7), (256, env.obs_dim), minval=-1, maxval=1)
    x = (obs - state.obs_stats.mean) / jnp.sqrt(state.obs_stats.var + 1e-2)
    mean, _ = A.policy(trainer.nets, trainer.h, state.actor, x)
    action_err = float(jnp.mean(jnp.abs(jnp.tanh(mean) - env.optimal_action(obs))))
    assert action_err < 0.1, action_err
    q_star, _ = A.q_of(trainer.nets, trainer.h, state.critic, x, env.optimal_action(obs))
    v_star = env.optimal_value(trainer.h.gamma)
    # the soft value adds a small entropy bonus (α ≈ 0.01), hence the tolerance
    assert abs(float(jnp.mean(q_star)) - v_star) < 0.1 * v_star, (float(jnp.mean(q_star)), v_star)
    ret = trainer.evaluate(state, jax.random.PRNGKey(3))["eval/return_mean"]
    assert ret > 0.97 * env.max_episode_steps, ret


@pytest.mark.parametrize("discrete", (False, True), ids=("continuous", "discrete"))
def test_iteration_and_evaluation_compile_once_per_run(tmp_path, discrete):
    """The carry the iteration returns has the type of the one it was given (avals and
    shardings), so a run builds one iteration program and one evaluation program — counted from
    JAX's backend-compile events over 3 iterations with an evaluation after each, then a resume
    from the checkpoint of iteration 2 with the same trainer. Only iterations that compiled are
    excluded from ``train/sps``; their time is ``compile_s``."""
    from reppo_jax.compile_log import COMPILES
    from reppo_jax.envs.toy_discrete import DiscreteBanditEnv

    per_iter = 16 * 16
    extra = {"rollout.total_env_steps": per_iter * 3, "run.eval_interval": per_iter,
             "run.checkpoint_interval": per_iter}
    if discrete:
        cfg = _toy_config(**{"env.name": "toy/DiscreteBandit", "env.gamma": 0.5,
                             "env.v_max": 4.0, **extra})
        trainer = make_trainer(cfg, DiscreteBanditEnv(16), DiscreteBanditEnv(8))
    else:
        cfg = _toy_config(**extra)
        trainer = make_trainer(cfg, make_toy_env(16), make_toy_env(8))
    # as in a mujoco_playground env, whose state holds arrays committed to a device by MJX: a
    # carry mixing committed and uncommitted arrays compiled a second program at iteration 2
    reset = trainer.env.reset
    trainer.env.reset = lambda key: jax.device_put(reset(key), jax.devices()[0])
    before = COMPILES.count("guarded"), COMPILES.count("evaluate")
    seen = []
    train(cfg, tmp_path / "run", TrainHooks(on_train_metrics=seen.append), trainer=trainer)
    assert (COMPILES.count("guarded") - before[0], COMPILES.count("evaluate") - before[1]) == (1, 1)
    assert math.isnan(seen[0]["train/sps"]) and seen[0]["compile_s"] > 0
    assert all(m["train/sps"] > 0 and m["compile_s"] == seen[0]["compile_s"] for m in seen[1:])
    # resuming (a carry restored from the last checkpoint) reuses both programs
    longer = apply_overrides(cfg, {"rollout.total_env_steps": per_iter * 4})
    train(longer, tmp_path / "run", TrainHooks(), resume=True, trainer=trainer)
    assert (COMPILES.count("guarded") - before[0], COMPILES.count("evaluate") - before[1]) == (1, 1)


def test_train_hooks_and_metrics_are_finite():
    seen = {"train": [], "eval": []}
    cfg = _toy_config(**{"rollout.total_env_steps": 16 * 16 * 4, "run.eval_interval": 16 * 16 * 2})
    result = train(cfg, None, TrainHooks(on_train_metrics=seen["train"].append,
                                         on_eval_metrics=seen["eval"].append),
                   env=make_toy_env(16), eval_env=make_toy_env(8))
    assert result.iterations == 4 and result.env_steps == 16 * 16 * 4
    assert [m["env_steps"] for m in seen["eval"]] == [512, 1024]
    for m in seen["train"]:
        assert all(math.isfinite(v) for k, v in m.items() if k != "train/sps")


@pytest.mark.parametrize("gradient", ("score", "ppo"))
def test_section_4_1_estimators_learn_the_toy_env(gradient):
    """actor.gradient=score / ppo (paper §4.1) train end to end with finite metrics, their own
    metric keys, and reach a near-optimal return on the toy bandit (max 50) in 60 iterations;
    the ppo state (with its value network) round-trips through the canonical layout."""
    from reppo_jax.train import state_from_canonical, state_to_canonical

    cfg = _toy_config(**{"actor.gradient": gradient, "rollout.total_env_steps": 16 * 16 * 60})
    trainer = make_trainer(cfg, make_toy_env(16), make_toy_env(8))
    carry = trainer.init(cfg.run.seed)
    for _ in range(60):
        carry, info = trainer.iteration(carry)
    info = {k: float(v) for k, v in info.items()}
    assert all(math.isfinite(v) for v in info.values()), info
    ppo_keys = {"train/v_loss", "train/v_grad_norm", "train/clip_frac", "train/ratio",
                "rollout/state_value"}
    assert (ppo_keys <= set(info)) == (gradient == "ppo")
    assert ("train/q" in info) == (gradient == "score")
    ret = trainer.evaluate(carry.agent, jax.random.PRNGKey(3))["eval/return_mean"]
    assert ret > 0.95 * 50, ret
    flat = state_to_canonical(carry.agent)
    assert any(k.startswith("value/") for k in flat) == (gradient == "ppo")
    again = state_to_canonical(state_from_canonical(trainer.h, flat))
    assert again.keys() == flat.keys()
    for k in flat:
        np.testing.assert_array_equal(again[k], flat[k], err_msg=k)


@pytest.mark.parametrize("discrete", (False, True), ids=("continuous", "discrete"))
def test_iteration_reduces_kl_max_by_max_and_kl_by_mean(monkeypatch, discrete):
    """An iteration's ``train/kl_max`` is the maximum of its updates' (epochs × minibatches)
    per-minibatch maxima and ``train/kl`` the mean of their means (``spec.backend.
    ITERATION_MAX_METRICS``). The updates' values are recorded from inside the compiled
    iteration (an ordered callback around ``minibatch_step``). The first update's policy is θ'
    itself (KL̂ = 0), so the maximum and the mean of the maxima differ: a mean would fail."""
    from reppo_jax.discrete import agent as DA
    from reppo_jax.envs.toy_discrete import DiscreteBanditEnv

    per_iter = 16 * 16
    extra = {"rollout.total_env_steps": per_iter * 2}
    if discrete:
        cfg = _toy_config(**{"env.name": "toy/DiscreteBandit", "env.gamma": 0.5,
                             "env.v_max": 4.0, **extra})
        trainer, module = make_trainer(cfg, DiscreteBanditEnv(16), DiscreteBanditEnv(8)), DA
    else:
        cfg = _toy_config(**extra)
        trainer, module = make_trainer(cfg, make_toy_env(16), make_toy_env(8)), A
    seen: list[tuple[float, float]] = []
    step = module.minibatch_step

    def recording(*args, **kwargs):
        state, info = step(*args, **kwargs)
        jax.debug.callback(lambda kl, top: seen.append((float(kl), float(top))),
                           info["train/kl"], info["train/kl_max"], ordered=True)
        return state, info

    monkeypatch.setattr(module, "minibatch_step", recording)
    updates = cfg.rollout.num_epochs * cfg.rollout.num_minibatches
    carry = trainer.init(cfg.run.seed)
    for _ in range(2):
        del seen[:]
        carry, info = trainer.iteration(carry)
        jax.effects_barrier()
        assert len(seen) == updates, len(seen)
        means, tops = np.array(seen, np.float32).T
        assert all(t >= m for m, t in seen)
        assert float(info["train/kl_max"]) == np.max(tops)
        assert float(info["train/kl"]) == pytest.approx(float(np.mean(means)), rel=1e-5)
        assert np.max(tops) > np.mean(tops) > 0.0


@pytest.mark.parametrize("discrete", [False, True])
def test_torch_compile_is_refused(discrete):
    """run.torch_compile is a torch-backend option: both JAX trainers refuse it with a one-line
    UserError before building anything."""
    from reppo_common.errors import UserError

    env = "toy/DiscreteBandit" if discrete else "toy/Bandit"
    cfg = apply_overrides(preset_config("tiny"), {"env.name": env, "run.torch_compile": True})
    with pytest.raises(UserError, match=r"run\.torch_compile is a torch-backend option"):
        make_trainer(cfg)
