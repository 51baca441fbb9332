"""End-to-end tests of the torch trainer: learning on the analytic toy env, the train loop's
hooks and checkpoints and the env adapters (the CLI smoke run on DMC is shared with JAX:
tests/ports/test_cli_smoke.py)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import numpy as np  # noqa: E402

from reppo_torch import agent as A  # noqa: E402
from reppo_torch.envs.toy import make_toy_env  # noqa: E402
from reppo_torch.normalization import normalize  # noqa: E402
from reppo_torch.train import Trainer, state_from_canonical, state_to_canonical, train  # noqa: E402
from spec import params as P  # noqa: E402
from spec.backend import TrainHooks  # noqa: E402
from spec.config import apply_overrides  # noqa: E402
from spec.presets import preset_config  # noqa: E402


def _toy_config(**extra):
    overrides = {
        "env.name": "toy/Bandit", "env.v_min": 0.0, "env.v_max": 10.0,
        "rollout.num_envs": 16, "rollout.num_steps": 16, "rollout.num_minibatches": 4,
        "rollout.num_epochs": 4, "rollout.total_env_steps": 16 * 16 * 140,
        "critic.hidden_dim": 64, "actor.hidden_dim": 64, "critic.num_bins": 51,
        "run.eval_interval": 10**9, "run.eval_episodes": 8, "run.device": "cpu",
    }
    overrides.update(extra)
    return apply_overrides(preset_config("tiny"), overrides)


def test_toy_env_learns_optimal_policy_and_value():
    """On the contextual-bandit toy (a* = 0.75·c, V* = 1/(1−γ)), the torch port's deterministic
    policy approaches a* and its Q at (c, a*) approaches the known value."""
    cfg = _toy_config()
    env = make_toy_env(cfg.rollout.num_envs)
    trainer = Trainer(cfg, env, make_toy_env(cfg.run.eval_episodes))
    carry = trainer.init(cfg.run.seed)
    for _ in range(cfg.rollout.total_env_steps // trainer.steps_per_iteration):
        carry, info = trainer.iteration(carry)
    assert all(math.isfinite(float(v)) for v in info.values())
    state = carry.agent
    obs = torch.rand((256, env.obs_dim), generator=torch.Generator().manual_seed(7)) * 2 - 1
    x = normalize(obs, state.obs_stats)
    with torch.no_grad():
        mean, _ = A.policy(trainer.h, state.actor, x)
        action_err = float(torch.mean(torch.abs(torch.tanh(mean) - env.optimal_action(obs))))
        q_star, _ = A.q_of(trainer.h, state.critic, x, env.optimal_action(obs))
    assert action_err < 0.1, action_err
    v_star = env.optimal_value(trainer.h.gamma)
    # the soft value adds a small entropy bonus (α ≈ 0.01), hence the tolerance
    assert abs(float(q_star.mean()) - v_star) < 0.1 * v_star, (float(q_star.mean()), v_star)
    ret = trainer.evaluate(state, 3)["eval/return_mean"]
    assert ret > 0.97 * env.max_episode_steps, ret


def test_train_hooks_metrics_and_checkpoints(tmp_path):
    seen = {"train": [], "eval": []}
    cfg = _toy_config(**{"rollout.total_env_steps": 16 * 16 * 4,
                         "run.eval_interval": 16 * 16 * 2, "run.checkpoint_interval": 16 * 16,
                         "run.keep_checkpoints": 2})
    result = train(cfg, tmp_path, TrainHooks(on_train_metrics=seen["train"].append,
                                             on_eval_metrics=seen["eval"].append),
                   env=make_toy_env(16), eval_env=make_toy_env(8))
    assert result.iterations == 4 and result.env_steps == 16 * 16 * 4
    assert [m["env_steps"] for m in seen["eval"]] == [512, 1024]
    assert len(seen["train"]) == 4
    for m in seen["train"]:
        assert all(math.isfinite(v) for k, v in m.items() if k != "train/sps")
        assert {"train/critic_loss", "train/actor_loss", "train/alpha", "train/beta",
                "rollout/reward"} <= set(m)
    ckpts = sorted((tmp_path / "checkpoints").glob("params_*.npz"))
    assert [p.name for p in ckpts] == ["params_000000000768.npz", "params_000000001024.npz"]
    flat, meta = P.load_params(ckpts[-1])
    assert meta["backend"] == "torch" and meta["env_steps"] == 1024
    layout = P.layout_from_config(cfg, 2, 2)
    P.check_params(flat, layout)
    # canonical round trip through a fresh state is exact
    trainer = Trainer(cfg, make_toy_env(16), make_toy_env(2))
    again = state_to_canonical(state_from_canonical(cfg, trainer.h, flat))
    for k in flat:
        np.testing.assert_array_equal(np.asarray(again[k], flat[k].dtype), flat[k], err_msg=k)


@pytest.mark.parametrize("gradient", ("score", "ppo"))
def test_section_4_1_estimators_learn_the_toy_env(gradient, tmp_path):
    """actor.gradient=score / ppo (paper §4.1) train end to end in the torch port with finite
    metrics and the same metric keys as JAX, reach a near-optimal return on the toy bandit
    (max 50) in 60 iterations, and checkpoint the ppo value network canonically."""
    cfg = _toy_config(**{"actor.gradient": gradient, "rollout.total_env_steps": 16 * 16 * 60})
    seen: list = []
    result = train(cfg, tmp_path, TrainHooks(on_train_metrics=seen.append),
                   env=make_toy_env(16), eval_env=make_toy_env(8))
    info = seen[-1]
    assert all(math.isfinite(v) for k, v in info.items() if k != "train/sps"), info
    ppo_keys = {"train/v_loss", "train/v_grad_norm", "train/clip_frac", "train/ratio",
                "rollout/state_value"}
    assert (ppo_keys <= set(info)) == (gradient == "ppo")
    assert ("train/q" in info) == (gradient == "score")
    assert result.final_eval["eval/return_mean"] > 0.95 * 50, result.final_eval
    flat, _ = P.load_params(sorted((tmp_path / "checkpoints").glob("params_*.npz"))[-1])
    P.check_params(flat, P.layout_from_config(cfg, 2, 2))
    assert any(k.startswith("value/") for k in flat) == (gradient == "ppo")
    trainer = Trainer(cfg, make_toy_env(16), make_toy_env(2))
    again = state_to_canonical(state_from_canonical(cfg, trainer.h, flat))
    for k in flat:
        np.testing.assert_array_equal(np.asarray(again[k], flat[k].dtype), flat[k], err_msg=k)


def test_random_streams_are_independent_and_seeded():
    s1 = A.Streams.from_seed(3, torch.device("cpu"))
    s2 = A.Streams.from_seed(3, torch.device("cpu"))
    draws1 = [torch.randn(4, generator=g) for g in s1]
    draws2 = [torch.randn(4, generator=g) for g in s2]
    for a, b in zip(draws1, draws2):
        assert torch.equal(a, b)
    for i in range(len(draws1)):
        for j in range(i + 1, len(draws1)):
            assert not torch.equal(draws1[i], draws1[j])


def test_toy_env_auto_reset_contract():
    env = make_toy_env(4, max_episode_steps=3, terminate_prob=0.3)
    obs = env.reset(0)
    for _ in range(10):
        out = env.step(torch.zeros_like(obs))
        assert not bool((out.terminated & out.truncated).any())
        done = out.terminated | out.truncated
        assert torch.equal(out.final_obs[~done], out.obs[~done])
        assert torch.equal(out.terminated, out.final_obs[:, 0] > env.terminal_threshold)
        assert bool((out.info["episode_length"] <= 3).all())
        obs = out.obs


@pytest.mark.slow
def test_dmc_bridge_matches_the_jax_env():
    """The torch DMC env is the JAX adapter: same seed → same observations and rewards."""
    jax = pytest.importorskip("jax")
    from reppo_jax.envs.dmc import make_dmc_env as make_jax
    from reppo_torch.envs.dmc import make_dmc_env

    tenv = make_dmc_env("CartpoleBalance", 4, max_episode_steps=5)
    jenv = make_jax("CartpoleBalance", 4, max_episode_steps=5)
    obs = tenv.reset(11)
    jstate, jobs = jax.jit(jenv.reset)(jax.random.PRNGKey(11))
    np.testing.assert_array_equal(obs.numpy(), np.asarray(jobs))
    step = jax.jit(jenv.step)
    rng = np.random.default_rng(0)
    for _ in range(7):
        a = rng.uniform(-1, 1, (4, tenv.action_dim)).astype(np.float32)
        out = tenv.step(torch.from_numpy(a))
        jstate, jout = step(jstate, jax.numpy.asarray(a))
        np.testing.assert_array_equal(out.obs.numpy(), np.asarray(jout.obs))
        np.testing.assert_array_equal(out.final_obs.numpy(), np.asarray(jout.final_obs))
        np.testing.assert_array_equal(out.reward.numpy(), np.asarray(jout.reward))
        np.testing.assert_array_equal(out.truncated.numpy(), np.asarray(jout.truncated))
        np.testing.assert_array_equal(out.terminated.numpy(), np.asarray(jout.terminated))
        np.testing.assert_array_equal(out.info["episode_length"].numpy(),
                                      np.asarray(jout.info["episode_length"]))


def test_beta_floor_holds_in_training():
    """``loss.beta_min`` = ``loss.beta_init``: the toy's KL stays below ε_KL, so every multiplier
    step pushes log β down and the projection puts it back on the floor, through the trainer's
    whole iteration (the per-step agreement with JAX is parity layer 3)."""
    cfg = _toy_config(**{"rollout.total_env_steps": 16 * 16 * 2, "loss.beta_min": 0.01})
    trainer = Trainer(cfg, make_toy_env(16), make_toy_env(2))
    floor = np.float32(math.log(0.01))
    assert trainer.h.log_beta_min == math.log(0.01)
    carry = trainer.init(cfg.run.seed)
    for _ in range(2):
        carry, info = trainer.iteration(carry)
        assert float(info["train/kl"]) < cfg.loss.kl_target, float(info["train/kl"])
        assert carry.agent.log_beta.item() == floor, (carry.agent.log_beta.item(), floor)
        assert float(info["train/beta"]) == pytest.approx(0.01, rel=1e-6)


def test_iteration_reduces_kl_max_by_max_and_kl_by_mean(monkeypatch):
    """An iteration's ``train/kl_max`` is the maximum of its updates' (epochs × minibatches)
    per-minibatch maxima and ``train/kl`` the mean of their means (``spec.backend.
    ITERATION_MAX_METRICS``), recorded around ``minibatch_step``. The first update's policy is
    θ' itself (KL̂ = 0), so the maximum and the mean of the maxima differ: a mean would fail."""
    cfg = _toy_config(**{"rollout.total_env_steps": 16 * 16 * 2})
    trainer = Trainer(cfg, make_toy_env(16), make_toy_env(2))
    seen: list[tuple[float, float]] = []
    step = A.minibatch_step

    def recording(*args, **kwargs):
        state, info = step(*args, **kwargs)
        seen.append((float(info["train/kl"]), float(info["train/kl_max"])))
        return state, info

    monkeypatch.setattr(A, "minibatch_step", recording)
    carry = trainer.init(cfg.run.seed)
    for _ in range(2):
        del seen[:]
        carry, info = trainer.iteration(carry)
        assert len(seen) == cfg.rollout.num_epochs * cfg.rollout.num_minibatches, len(seen)
        means, tops = np.array(seen, np.float32).T
        assert all(t >= m for m, t in seen)
        assert float(info["train/kl_max"]) == np.max(tops)
        assert float(info["train/kl"]) == pytest.approx(float(np.mean(means)), rel=1e-5)
        assert np.max(tops) > np.mean(tops) > 0.0


def test_alpha_floor_holds_in_training():
    """``loss.alpha_min`` = ``loss.alpha_init`` with an entropy target far below the toy
    policy's entropy (ε_H = −10): every multiplier step pushes log α down and the projection
    puts it back on the floor, through the trainer's whole iteration (parity layer 3 holds the
    step itself to JAX's)."""
    cfg = _toy_config(**{"rollout.total_env_steps": 16 * 16 * 2, "loss.alpha_min": 0.01,
                         "loss.entropy_target_mult": 10.0})
    trainer = Trainer(cfg, make_toy_env(16), make_toy_env(2))
    floor = np.float32(math.log(0.01))
    assert trainer.h.log_alpha_min == math.log(0.01)
    carry = trainer.init(cfg.run.seed)
    for _ in range(2):
        carry, info = trainer.iteration(carry)
        assert float(info["train/entropy"]) > trainer.h.entropy_target
        assert carry.agent.log_alpha.item() == floor, (carry.agent.log_alpha.item(), floor)
        assert float(info["train/alpha"]) == pytest.approx(0.01, rel=1e-6)


def test_adam_step_equals_torch_optim_adam_step_bit_for_bit():
    """``agent.adam_step_`` (the fused kernel on ``opt.state`` with the gradients passed in, as
    the update runs it) = ``torch.optim.Adam(fused=True).step()`` with ``.grad`` set, bit for bit:
    from a fresh state, then both continued after a ``state_dict`` round trip (what a resume
    does)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (3,), (2,)]
    ref = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    ours = [torch.nn.Parameter(p.detach().clone()) for p in ref]

    def adam(params):
        return torch.optim.Adam(params, lr=1e-2, betas=A.ADAM_BETAS, eps=A.ADAM_EPS,
                                weight_decay=0.0, fused=True)

    opt_ref, opt_ours = adam(ref), adam(ours)
    for k in range(6):
        if k == 3:  # resume: fresh optimisers loaded from the saved states
            sd_ref, sd_ours = opt_ref.state_dict(), opt_ours.state_dict()
            opt_ref, opt_ours = adam(ref), adam(ours)
            opt_ref.load_state_dict(sd_ref)
            opt_ours.load_state_dict(sd_ours)
        grads = [torch.randn(s, generator=gen) * 10.0 ** (k - 3) for s in shapes]
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        opt_ref.step()
        A.adam_step_(opt_ours, ours, [g.clone() for g in grads])
        for p, q in zip(ref, ours):
            assert torch.equal(p, q)
            for f in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(opt_ref.state[p][f], opt_ours.state[q][f]), f
    assert all(p.grad is None for p in ours)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kl_mode", ["clipped", "full", "none"])
def test_multiplier_grad_is_autograds_gradient_bit_for_bit(dtype, kl_mode):
    """``losses.multiplier_grad`` (the update's closed-form ∂/∂[log α, log β]) = autograd's
    gradient of ``losses.multiplier_loss``, compared as raw bits (the sign of a zero too), over
    random magnitudes and the signed-zero corner (Ĥ = −0 with ε_H = 0)."""
    from reppo_torch.losses import multiplier_grad, multiplier_loss

    int_view = torch.int32 if dtype == torch.float32 else torch.int64
    gen = torch.Generator().manual_seed(1)
    cases = [(torch.randn(2, generator=gen, dtype=dtype) * 3,
              torch.randn(64, generator=gen, dtype=dtype) * 10.0 ** k,
              torch.rand(64, generator=gen, dtype=dtype) * 10.0 ** k, -0.7, 0.05)
             for k in range(-3, 4)]
    cases.append((torch.zeros(2, dtype=dtype), torch.full((8,), -0.0, dtype=dtype),
                  torch.full((8,), -0.0, dtype=dtype), 0.0, 0.0))
    for logs0, entropy, kl, entropy_target, kl_target in cases:
        logs = logs0.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(
            multiplier_loss(logs, entropy, kl, entropy_target, kl_target, kl_mode), logs)
        got = multiplier_grad(torch.exp(logs.detach()[0]), torch.exp(logs.detach()[1]),
                              entropy, kl, entropy_target, kl_target, kl_mode)
        assert got.dtype == expected.dtype
        assert torch.equal(got.view(int_view), expected.view(int_view)), (got, expected)
