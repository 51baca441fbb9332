"""D-REPPO (discrete actions) in JAX: canonical layout, learning on an analytic discrete env,
MinAtar env conformance (auto-reset with the true final observation) and a CLI smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from reppo_jax.discrete import agent as DA  # noqa: E402
from reppo_jax.discrete.losses import discrete_soft_value  # noqa: E402
from reppo_jax.discrete.train import DiscreteTrainer  # noqa: E402
from reppo_jax.envs.toy_discrete import DiscreteBanditEnv  # noqa: E402
from reppo_jax.networks import flatten  # noqa: E402
from reppo_jax.train import make_trainer, train  # noqa: E402
from spec import params as P  # noqa: E402
from spec.config import apply_overrides  # noqa: E402
from spec.presets import preset_config  # noqa: E402


def _bandit_config(**extra):
    overrides = {
        "env.name": "toy/DiscreteBandit", "env.gamma": 0.5, "env.v_min": 0.0, "env.v_max": 4.0,
        "rollout.num_envs": 16, "rollout.num_steps": 16, "rollout.num_minibatches": 4,
        "rollout.num_epochs": 4, "rollout.total_env_steps": 16 * 16 * 80, "rollout.lr": 1e-3,
        "critic.hidden_dim": 32, "actor.hidden_dim": 32, "critic.num_bins": 51,
        "loss.lam": 0.65, "loss.multiplier_lr": 1e-2, "env.normalize_obs": False,
        "run.eval_interval": 10**9, "run.eval_episodes": 8,
    }
    overrides.update(extra)
    return apply_overrides(preset_config("tiny"), overrides)


# ---------------------------------------------------------------------------- layout / nets


def test_discrete_layout_matches_networks():
    """The canonical discrete layout (spec.params) is exactly the flax parameter tree, the
    Q head returns (|A|, bins) per state, and the logit prior makes every action's Q ≈ 0."""
    cfg = _bandit_config()
    env = DiscreteBanditEnv(4, num_contexts=5, num_actions=3)
    trainer = make_trainer(cfg, env, DiscreteBanditEnv(2, num_contexts=5, num_actions=3))
    assert isinstance(trainer, DiscreteTrainer)
    h = trainer.h
    layout = P.layout_from_config(cfg, h.obs_dim, h.action_dim, action_space="discrete")
    assert layout["actor/layers/2/kernel"] == (32, 3)
    assert layout["critic/encoder/0/kernel"] == (5, 32)
    assert layout["critic/q_head/1/kernel"] == (32, 3 * 51)
    assert layout["critic/predictor/0/kernel"] == (32 + 3, 32)
    carry = trainer.init(0)
    flat = {**flatten(carry.agent.actor, "actor"), **flatten(carry.agent.critic, "critic")}
    assert {k: v.shape for k, v in flat.items()} == {
        k: v for k, v in layout.items() if k.startswith(("actor/", "critic/"))}
    obs = jnp.eye(5)
    q_all, z = DA.q_all_of(trainer.nets, h, carry.agent.critic, obs)
    assert q_all.shape == (5, 3) and z.shape == (5, 32)
    assert float(jnp.max(jnp.abs(q_all))) < 0.05 * h.v_max
    logits = DA.logits_of(trainer.nets, carry.agent.actor, obs)
    assert logits.shape == (5, 3)
    assert h.entropy_target == pytest.approx(0.5 * np.log(3))


@pytest.mark.parametrize("gradient", ("score", "ppo"))
def test_sampled_estimators_are_refused_for_discrete_actions(gradient):
    """D-REPPO's actor loss is an exact expectation over the actions: the §4.1 estimators do
    not apply, and asking for them is a one-line ConfigError (spec.hyper.resolve)."""
    from spec.config import ConfigError

    cfg = _bandit_config(**{"actor.gradient": gradient})
    env = DiscreteBanditEnv(4, num_contexts=5, num_actions=3)
    with pytest.raises(ConfigError, match="closed-form expectation"):
        make_trainer(cfg, env, DiscreteBanditEnv(2, num_contexts=5, num_actions=3))


def test_discrete_layout_mse_has_no_prior():
    layout = P.param_layout(7, 4, critic_hidden=8, actor_hidden=8, num_encoder_layers=2,
                            num_head_layers=2, num_pred_layers=2, actor_layers=2, num_bins=1,
                            critic_norm="rms", actor_norm="rms", value_kind="mse",
                            action_space="discrete")
    assert layout["critic/q_head/1/kernel"] == (8, 4)
    p = P.init_params(np.random.default_rng(0), layout, v_min=0.0, v_max=1.0, sigma=0.1,
                      logit_prior_scale=40.0, alpha_init=0.01, beta_init=0.01, num_bins=1)
    assert not np.any(p["critic/q_head/1/bias"])
    with pytest.raises(ValueError):
        P.param_layout(7, 1, critic_hidden=8, actor_hidden=8, num_encoder_layers=2,
                       num_head_layers=2, num_pred_layers=2, actor_layers=2, num_bins=5,
                       critic_norm="rms", actor_norm="rms", action_space="discrete")


# ---------------------------------------------------------------------------- learning


def test_discrete_bandit_learns_best_action_and_q_gap():
    """Contextual bandit with one-hot contexts, a*(c) = c mod |A|: the greedy policy picks a*
    in every context, Q(c, a*) − Q(c, a) ≈ 1 (the reward gap, exact for any policy because
    the next context is independent of the action), and Q satisfies the soft Bellman equation
    Q(c, a) = r(c, a) + γ·mean_c′ Σ_j π_j(c′)(Q(c′, a_j) − α log π_j(c′)) of its own policy —
    the closed-form soft TD targets' fixed point."""
    cfg = _bandit_config()
    env = DiscreteBanditEnv(cfg.rollout.num_envs, num_contexts=4, num_actions=3)
    eval_env = DiscreteBanditEnv(cfg.run.eval_episodes, num_contexts=4, num_actions=3)
    result = train(cfg, None, env=env, eval_env=eval_env)
    assert result.final_eval["eval/return_mean"] == pytest.approx(env.max_episode_steps)
    trainer = make_trainer(cfg, env, eval_env)
    carry = trainer.init(cfg.run.seed)
    for _ in range(cfg.rollout.total_env_steps // trainer.steps_per_iteration):
        carry, info = trainer.iteration(carry)
    assert all(np.isfinite(float(v)) for v in info.values())
    state = carry.agent
    x = obs = jnp.eye(4)
    best = env.best_action(obs)
    logits = DA.logits_of(trainer.nets, state.actor, x)
    np.testing.assert_array_equal(np.asarray(jnp.argmax(logits, -1)), np.asarray(best))
    q_all, _ = DA.q_all_of(trainer.nets, trainer.h, state.critic, x)
    q_best = jnp.take_along_axis(q_all, best[:, None], 1)[:, 0]
    others = jnp.where(jax.nn.one_hot(best, 3, dtype=bool), jnp.nan, q_all)
    gap = np.asarray(q_best[:, None] - others)
    gap = gap[np.isfinite(gap)]
    assert np.all(np.abs(gap - 1.0) < 0.25), gap
    alpha = float(jnp.exp(state.log_alpha))
    v_soft = float(jnp.mean(discrete_soft_value(q_all, logits, alpha)))
    r = jax.nn.one_hot(best, 3)
    np.testing.assert_allclose(np.asarray(q_all), np.asarray(r + trainer.h.gamma * v_soft),
                               atol=0.15)
    # the entropy target is honoured: the entropy stays near 0.5·log 3 rather than collapsing
    assert 0.2 < float(info["train/entropy"]) < 0.9, float(info["train/entropy"])


# ---------------------------------------------------------------------------- MinAtar


def _minatar(num_envs, **kw):
    pytest.importorskip("gymnax")
    from reppo_jax.envs.minatar import make_minatar_env

    return make_minatar_env("Breakout", num_envs, **kw)


def test_minatar_breakout_autoreset_keeps_final_obs():
    env = _minatar(16, max_episode_steps=40)
    assert env.discrete and env.num_actions == 3 and env.obs_dim == 400
    state, obs = env.reset(jax.random.PRNGKey(0))
    assert obs.shape == (16, 400) and obs.dtype == jnp.float32

    @jax.jit
    def run(state, key):
        def body(s, k):
            a = jax.random.randint(k, (env.num_envs,), 0, env.num_actions)
            s2, out = env.step(s, a)
            return s2, out
        return jax.lax.scan(body, state, jax.random.split(key, 120))

    end, out = run(state, jax.random.PRNGKey(1))
    # carry-type stability: the scanned state has the reset state's exact structure and dtypes
    assert jax.tree.structure(end) == jax.tree.structure(state)
    assert all(a.dtype == b.dtype for a, b in zip(jax.tree.leaves(end), jax.tree.leaves(state)))
    done = np.asarray(out.terminated | out.truncated)
    term, trunc = np.asarray(out.terminated), np.asarray(out.truncated)
    assert term.any() and trunc.any()
    assert not np.any(term & trunc)
    o, fo = np.asarray(out.obs), np.asarray(out.final_obs)
    np.testing.assert_array_equal(o[~done], fo[~done])
    img = o.reshape(o.shape[:2] + (10, 10, 4))
    fimg = fo.reshape(fo.shape[:2] + (10, 10, 4))
    # after a reset: a full brick wall (rows 1–3) and the paddle in its start column
    assert np.all(img[done][:, 1:4, :, 3] == 1.0)
    assert np.all(img[done][:, 9, 4, 0] == 1.0)
    # a terminal Breakout frame has lost the ball below the paddle: it is not the reset frame
    assert np.any(fimg[term] != img[term])
    # truncation exactly at the time limit, with the episode's true length reported
    lengths = np.asarray(out.info["episode_length"])
    assert np.all(lengths[trunc] == 40)
    # returns reported at episode ends equal the summed rewards of that episode
    r = np.asarray(out.reward)
    for e in range(env.num_envs):
        start = 0
        for t in np.flatnonzero(done[:, e]):
            assert np.asarray(out.info["episode_return"])[t, e] == pytest.approx(
                r[start:t + 1, e].sum())
            start = t + 1


def test_minatar_random_offsets_desynchronise_truncation():
    env = _minatar(32, max_episode_steps=50, random_episode_offsets=True)
    state, _ = env.reset(jax.random.PRNGKey(3))
    assert len(set(np.asarray(state.step_count).tolist())) > 1


@pytest.mark.slow
def test_cli_smoke_minatar_breakout(tmp_path):
    """``reppo train --backend jax --env minatar/Breakout`` end to end on the tiny preset:
    run directory, metrics with train and eval records, a loadable checkpoint, ``reppo eval``;
    with ``loss.beta_min`` = ``loss.beta_init`` β never drops below the floor (D-REPPO shares the
    continuous agent's multiplier step and its projection)."""
    pytest.importorskip("gymnax")
    from reppo_common.cli import main

    run_dir = tmp_path / "run"
    rc = main(["train", "--backend", "jax", "--env", "minatar/Breakout", "--preset", "tiny",
               "--steps", "1024", "--no-progress", "--run-dir", str(run_dir),
               "--loss.lam=0.65", "--loss.beta_min=0.01"])
    assert rc == 0
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in recs}
    assert {"train", "eval"} <= kinds
    betas = [r["train/beta"] for r in recs if r["kind"] == "train"]
    assert min(betas) == pytest.approx(0.01, rel=1e-6), betas  # float32 exp(log 0.01)
    ev = [r for r in recs if r["kind"] == "eval"][-1]
    assert np.isfinite(ev["eval/return_mean"])
    assert json.loads((run_dir / "config.json").read_text())["env"]["name"] == "minatar/Breakout"
    assert main(["eval", "--run-dir", str(run_dir), "--episodes", "2"]) == 0


# ---------------------------------------------------------------------------- Atari (envpool)


def test_atari_adapter_autoreset_protocol():
    """envpool's next-step auto-reset is reported as one zero-reward terminal transition after
    each episode end; episode returns/lengths count the real steps only."""
    pytest.importorskip("envpool")
    from reppo_jax.envs.atari import make_atari_env

    env = make_atari_env("Pong", 2, max_episode_steps=30)
    assert env.discrete and env.host and env.pixels and env.num_actions == 6
    _, obs = env.reset()
    assert obs.shape == (2, 4 * 84 * 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    outs = [env.step(None, rng.integers(0, 6, 2))[1] for _ in range(62)]
    done = np.stack([o.info["episode_done"] for o in outs])
    trunc = np.stack([o.truncated for o in outs])
    term = np.stack([o.terminated for o in outs])
    # time limit at agent step 30, then the dummy reset step, then a new 30-step episode
    assert done[29].all() and trunc[29].all() and not term[29].any()
    assert term[30].all() and not done[30].any() and not np.any(outs[30].reward)
    assert np.all(outs[29].info["episode_length"] == 30)
    assert done[60].all() and np.all(outs[60].info["episode_length"] == 30)
    np.testing.assert_array_equal(outs[29].final_obs, outs[29].obs)


@pytest.mark.slow
def test_atari_pong_trains_end_to_end():
    """atari/Pong through the host-side loop: one iteration (Nature-CNN torso, finite losses)
    and a greedy evaluation of short episodes."""
    pytest.importorskip("envpool")
    cfg = preset_config("atari", {
        "env.name": "atari/Pong", "env.max_episode_steps": 50, "rollout.num_envs": 4,
        "rollout.num_steps": 8, "rollout.num_minibatches": 2, "rollout.num_epochs": 1,
        "rollout.total_env_steps": 64, "critic.hidden_dim": 32, "actor.hidden_dim": 32,
        "critic.num_bins": 51, "run.eval_episodes": 2})
    trainer = make_trainer(cfg)
    assert isinstance(trainer, DiscreteTrainer) and trainer.torso == "nature_cnn"
    carry = trainer.init(0)
    carry, info = trainer.guarded_iteration(carry)
    assert bool(np.all(np.asarray(info.pop("guard/finite"))))
    assert all(np.isfinite(float(v)) for v in info.values())
    ev = trainer.evaluate(carry.agent, jax.random.PRNGKey(0))
    assert ev["eval/episodes"] == 2 and ev["eval/length_mean"] == 50
