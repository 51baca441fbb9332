"""D-REPPO (discrete actions) in JAX: canonical layout, learning on an analytic discrete env,
MinAtar env conformance (auto-reset with the true final observation) and a CLI smoke run."""

from __future__ import annotations

import json
import re
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
from reppo_jax.discrete.networks import canonical_init  # noqa: E402
from reppo_jax.train import make_trainer, state_from_canonical, train  # noqa: E402
from reppo_common.driver import TIMING_KEYS  # noqa: E402
from spec.backend import TrainHooks  # noqa: E402
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


# ---------------------------------------------------------------------------- evaluation policy


class _HostBandit:
    """The discrete bandit stepped from Python with numpy outputs, as a host env (``env.host``,
    e.g. Atari via envpool) is: for :func:`reppo_jax.discrete.agent.make_host_evaluate`."""

    host = True

    def __init__(self, env: DiscreteBanditEnv) -> None:
        self.num_envs, self._reset, self._step = env.num_envs, jax.jit(env.reset), jax.jit(env.step)

    def reset(self, key):
        self.state, obs = self._reset(key)
        return None, np.asarray(obs)

    def step(self, _, action):
        self.state, out = self._step(self.state, jnp.asarray(action))
        info = {"episode_done": np.asarray(out.terminated | out.truncated),
                "episode_return": np.asarray(out.info["episode_return"]),
                "episode_length": np.asarray(out.info["episode_length"])}
        return None, out._replace(obs=np.asarray(out.obs), info=info)


def test_eval_policy_sample_draws_from_pi_in_jitted_and_host_loops():
    """With the actor's logits fixed at (0.5, 0, 0) in every context (4 contexts, a* = c mod 3):
    'mode' always plays action 0, right in contexts 0 and 3, so it earns 1/2 per step; 'sample'
    earns E_c π(a*(c)) = (2·π_0 + π_1 + π_2) / 4 ≈ 0.36. The host-env loop plays exactly the
    jitted loop's actions for the same key, and a sampled evaluation is a function of its key."""
    episodes, logits = 256, np.array([0.5, 0.0, 0.0], np.float32)
    cfg = _bandit_config(**{"run.eval_episodes": episodes})
    env = DiscreteBanditEnv(episodes, num_contexts=4, num_actions=3)
    trainer = make_trainer(cfg, DiscreteBanditEnv(16, num_contexts=4, num_actions=3), env)
    flat = dict(canonical_init(cfg, trainer.h, 0))
    last = max(int(k.split("/")[2]) for k in flat if k.startswith("actor/layers/"))
    flat[f"actor/layers/{last}/kernel"] = np.zeros_like(flat[f"actor/layers/{last}/kernel"])
    flat[f"actor/layers/{last}/bias"] = logits
    state = state_from_canonical(trainer.h, flat)
    pi = np.exp(logits) / np.exp(logits).sum()
    expected = {"mode": 0.5, "sample": (2 * pi[0] + pi[1] + pi[2]) / 4}
    steps = env.max_episode_steps
    for policy in ("mode", "sample"):
        jitted = jax.jit(DA.make_evaluate(trainer.nets, trainer.h, env, steps,
                                          eval_policy=policy))
        host = DA.make_host_evaluate(trainer.nets, trainer.h, _HostBandit(env), steps,
                                     eval_policy=policy)
        key = jax.random.PRNGKey(5)
        ret, length = (np.asarray(x) for x in jitted(state.actor, state.obs_stats, key))
        # 256 episodes x 20 steps: the standard error of the mean reward is < 0.01
        assert ret.mean() / steps == pytest.approx(expected[policy], abs=0.04), policy
        assert np.all(length == steps)
        host_ret, host_length = host(state.actor, state.obs_stats, key)
        np.testing.assert_array_equal(host_ret, ret)
        np.testing.assert_array_equal(host_length, length)
        again = np.asarray(jitted(state.actor, state.obs_stats, key)[0])
        np.testing.assert_array_equal(again, ret)
        if policy == "sample":
            other = np.asarray(jitted(state.actor, state.obs_stats, jax.random.PRNGKey(6))[0])
            assert not np.array_equal(other, ret)


def test_eval_policy_changes_the_eval_lines_only():
    """D-REPPO's training metrics are identical whichever policy its evaluations (here after
    every iteration) play; the eval lines differ."""
    per_iter = 16 * 16
    runs = {}
    for policy in ("mode", "sample"):
        cfg = _bandit_config(**{"rollout.total_env_steps": 3 * per_iter,
                                "run.eval_interval": per_iter, "run.eval_policy": policy})
        seen: list[dict] = []
        train(cfg, None, TrainHooks(on_train_metrics=seen.append, on_eval_metrics=seen.append),
              env=DiscreteBanditEnv(16, num_contexts=4, num_actions=3),
              eval_env=DiscreteBanditEnv(8, num_contexts=4, num_actions=3))
        runs[policy] = [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in seen]

    def kind(lines, prefix):
        return [m for m in lines if any(k.startswith(prefix) for k in m)]

    assert kind(runs["mode"], "train/") == kind(runs["sample"], "train/")
    assert len(kind(runs["mode"], "train/")) == 3
    ev_mode, ev_sample = kind(runs["mode"], "eval/"), kind(runs["sample"], "eval/")
    assert [m["env_steps"] for m in ev_mode] == [m["env_steps"] for m in ev_sample]
    assert len(ev_mode) == 3 and ev_mode != ev_sample


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
def test_cli_smoke_minatar_breakout(tmp_path, capsys):
    """``reppo train --backend jax --env minatar/Breakout`` end to end on the tiny preset:
    run directory, metrics with train and eval records, a loadable checkpoint, ``reppo eval``;
    ``--resume`` from the intermediate checkpoint writes the uninterrupted run's metrics and a
    bit-identical final checkpoint; ``reppo plot`` and ``reppo aggregate`` read the run dirs;
    with ``loss.beta_min`` = ``loss.beta_init`` β never drops below the floor, and with
    ``loss.alpha_min`` = ``loss.alpha_init`` neither does α (D-REPPO shares the continuous
    agent's multiplier step and its projections)."""
    import shutil

    pytest.importorskip("gymnax")
    from reppo_common import checkpoints as C
    from reppo_common.cli import main
    from reppo_common.driver import TIMING_KEYS

    run_dir = tmp_path / "run"
    rc = main(["train", "--backend", "jax", "--env", "minatar/Breakout", "--preset", "tiny",
               "--steps", "1024", "--no-progress", "--run-dir", str(run_dir),
               "--loss.lam=0.65", "--run.checkpoint_interval=512", "--loss.beta_min=0.01",
               "--loss.alpha_min=0.01"])
    assert rc == 0
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    kinds = {r["kind"] for r in recs}
    assert {"train", "eval"} <= kinds
    betas = [r["train/beta"] for r in recs if r["kind"] == "train"]
    assert min(betas) == pytest.approx(0.01, rel=1e-6), betas  # float32 exp(log 0.01)
    alphas = [r["train/alpha"] for r in recs if r["kind"] == "train"]
    assert min(alphas) == pytest.approx(0.01, rel=1e-6), alphas
    ev = [r for r in recs if r["kind"] == "eval"][-1]
    assert np.isfinite(ev["eval/return_mean"])
    assert json.loads((run_dir / "config.json").read_text())["env"]["name"] == "minatar/Breakout"
    assert main(["eval", "--run-dir", str(run_dir), "--episodes", "2"]) == 0

    # a copy stopped at the checkpoint of env step 512, resumed to the end
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    for p in (resumed / "checkpoints").glob("*_000000001024.*"):
        p.unlink()
    (resumed / "metrics.jsonl").write_text(
        "".join(f"{line}\n" for line, r in zip(lines, recs) if r["env_steps"] <= 512))
    assert main(["train", "--resume", str(resumed), "--no-progress"]) == 0

    def strip(path):
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
                for line in path.read_text().splitlines()]

    assert strip(resumed / "metrics.jsonl") == strip(run_dir / "metrics.jsonl")
    for name in ("params_000000001024.npz", "state_000000001024.npz"):
        assert (C.sha256_file(resumed / "checkpoints" / name)
                == C.sha256_file(run_dir / "checkpoints" / name)), name

    capsys.readouterr()
    png = tmp_path / "curves.png"
    assert main(["plot", str(run_dir), str(resumed), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["aggregate", str(run_dir), str(resumed), "--reps", "50"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^jax\s+1\s+2\s", out, re.M), out  # 1 task, 2 runs


def test_nan_guard_stops_discrete_run_and_keeps_last_good_checkpoint(tmp_path):
    """The NaN guard on a D-REPPO run: a reward that turns NaN in iteration 3 stops the run
    with one line naming it, and only the checkpoints of the good iterations exist."""
    from reppo_common import checkpoints as C
    from reppo_common.errors import TrainingDiverged

    class NanAfterBandit(DiscreteBanditEnv):
        def step(self, state, action, key=None):
            bad = state.step_count >= 16
            new_state, out = super().step(state, action, key)
            return new_state, out._replace(reward=jnp.where(bad, jnp.nan, out.reward))

    cfg = _bandit_config(**{"rollout.num_envs": 8, "rollout.num_steps": 8,
                            "rollout.num_minibatches": 2, "rollout.num_epochs": 1,
                            "rollout.total_env_steps": 6 * 64, "run.checkpoint_interval": 64})
    with pytest.raises(TrainingDiverged) as e:
        train(cfg, tmp_path, env=NanAfterBandit(8, max_episode_steps=40),
              eval_env=DiscreteBanditEnv(2))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("non-finite rollout/reward at iteration 3 (env_steps 192)"), msg
    assert [c.env_steps for c in C.list_checkpoints(tmp_path / "checkpoints")] == [64, 128]


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
