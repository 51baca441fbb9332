"""spec.hyper.resolve: the one config + env facts → hyperparameter resolver of every backend."""

import math

import numpy as np
import pytest

from spec import derived, hyper
from spec.config import ConfigError, ReppoConfig, apply_overrides

CARTPOLE = hyper.Facts(obs_dim=5, action_dim=1, max_episode_steps=1000, reward_range=(0.0, 1.0))
BREAKOUT = hyper.Facts(obs_dim=400, action_dim=3, max_episode_steps=1000,
                       reward_range=(0.0, 1.0), num_actions=3)


def cfg(*overrides: str) -> ReppoConfig:
    return apply_overrides(ReppoConfig(), list(overrides))


def one_line_error(config: ReppoConfig, facts) -> str:
    with pytest.raises(ConfigError) as e:
        hyper.resolve(config, facts)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_defaults_derive_from_env_facts():
    h = hyper.resolve(ReppoConfig(), CARTPOLE)
    assert (h.obs_dim, h.action_dim) == (5, 1)
    assert h.gamma == pytest.approx(0.99)
    assert h.v_min == 0.0 and h.v_max == pytest.approx(100.0)
    assert h.num_bins == 151
    assert h.sigma == pytest.approx(0.75 * 100.0 / 150)
    assert h.entropy_target == -0.5
    assert (h.actor_lr, h.critic_lr, h.multiplier_lr) == (3e-4, 3e-4, 3e-4)
    assert (h.max_grad_norm, h.multiplier_max_grad_norm) == (0.5, 0.5)
    assert h.normalize_obs is True and h.kl_mode == "clipped"
    assert h.log_beta_min == -math.inf  # loss.beta_min = 0: no floor on β
    assert h.log_alpha_min == -math.inf  # loss.alpha_min = 0: no floor on α


def test_episode_length_sets_gamma_and_explicit_gamma_wins():
    short = hyper.Facts(obs_dim=5, action_dim=1, max_episode_steps=100, reward_range=(0.0, 1.0))
    assert hyper.resolve(ReppoConfig(), short).gamma == pytest.approx(0.9)
    h = hyper.resolve(cfg("env.gamma=0.97"), CARTPOLE)
    assert h.gamma == 0.97 and h.v_max == pytest.approx(1.0 / 0.03)


def test_explicit_value_bounds_win_one_at_a_time():
    h = hyper.resolve(cfg("env.v_max=150"), CARTPOLE)
    assert (h.v_min, h.v_max) == (0.0, 150.0)
    h = hyper.resolve(cfg("env.v_min=-5", "env.v_max=5"), CARTPOLE)
    assert (h.v_min, h.v_max) == (-5.0, 5.0)
    assert h.sigma == pytest.approx(derived.hlgauss_sigma(-5.0, 5.0, 151, 0.75))


def test_inverted_value_range_is_a_one_line_config_error():
    msg = one_line_error(cfg("env.v_min=200"), CARTPOLE)
    assert msg.startswith("env.v_min=200.0 is invalid: must be < env.v_max=99.9")


def test_short_episode_without_gamma_is_a_one_line_config_error():
    tiny = hyper.Facts(obs_dim=5, action_dim=1, max_episode_steps=10, reward_range=(0.0, 1.0))
    assert "set env.gamma" in one_line_error(ReppoConfig(), tiny)
    assert hyper.resolve(cfg("env.gamma=0.5"), tiny).gamma == 0.5


def test_learning_rate_and_clip_defaults_chain():
    h = hyper.resolve(cfg("actor.lr=1e-3"), CARTPOLE)
    assert (h.actor_lr, h.critic_lr, h.multiplier_lr) == (1e-3, 3e-4, 1e-3)
    h = hyper.resolve(cfg("rollout.lr=2e-4", "loss.multiplier_lr=5e-3", "critic.lr=1e-4",
                          "rollout.max_grad_norm=1.0", "loss.multiplier_max_grad_norm=2.0"),
                      CARTPOLE)
    assert (h.actor_lr, h.critic_lr, h.multiplier_lr) == (2e-4, 1e-4, 5e-3)
    assert (h.max_grad_norm, h.multiplier_max_grad_norm) == (1.0, 2.0)


def test_mse_critic_has_one_bin():
    assert hyper.resolve(cfg("critic.loss=mse"), CARTPOLE).num_bins == 1


def test_discrete_action_space():
    h = hyper.resolve(ReppoConfig(), BREAKOUT)
    assert h.entropy_target == pytest.approx(0.5 * math.log(3)) and h.action_dim == 3
    assert h.normalize_obs is True
    pixels = hyper.Facts(obs_dim=28_224, action_dim=6, max_episode_steps=27_000,
                         reward_range=(-1.0, 1.0), num_actions=6, pixels=True)
    assert hyper.resolve(ReppoConfig(), pixels).normalize_obs is False
    assert "actor.gradient=pathwise" in one_line_error(cfg("actor.gradient=score"), BREAKOUT)
    assert "[0, 1]" in one_line_error(cfg("loss.entropy_target_mult=2"), BREAKOUT)
    # the continuous rule has no such bound
    assert hyper.resolve(cfg("loss.entropy_target_mult=2"), CARTPOLE).entropy_target == -2.0


def test_beta_floor_resolves_to_its_log_and_never_moves_a_frozen_beta():
    import numpy as np

    from spec.params import init_params_from_config
    from spec.reference.losses import project_log_multiplier

    assert hyper.resolve(cfg("loss.beta_min=1e-3"), CARTPOLE).log_beta_min == math.log(1e-3)
    # kl_mode=none freezes β at beta_init; the floor (<= beta_init) must leave it there in the
    # ports' float32, also when it equals beta_init
    for beta_init, beta_min in ((0.01, 0.01), (0.3, 0.3 * (1 - 1e-9)), (1e-5, 1e-6)):
        c = cfg("loss.kl_mode=none", f"loss.beta_init={beta_init!r}",
                f"loss.beta_min={beta_min!r}", "critic.hidden_dim=4", "actor.hidden_dim=4")
        h = hyper.resolve(c, CARTPOLE)
        start = init_params_from_config(np.random.default_rng(0), c, 5, 1, v_min=h.v_min,
                                        v_max=h.v_max)["multipliers/log_beta"]
        assert start.dtype == np.float32
        assert project_log_multiplier(start, h.log_beta_min) == start, (beta_init, beta_min)


def test_alpha_floor_resolves_to_its_log_and_lifts_alpha_onto_it():
    import numpy as np

    from spec.params import init_params_from_config
    from spec.reference.losses import project_log_multiplier

    h = hyper.resolve(cfg("loss.alpha_min=0.03"), CARTPOLE)
    assert h.log_alpha_min == math.log(0.03) and h.log_beta_min == -math.inf
    # α is trained in every kl_mode, so a floor above alpha_init is valid everywhere: the first
    # multiplier step lifts log α (float32, as the ports hold it) onto float32(log alpha_min);
    # a floor at alpha_init leaves the start where it is
    for mode in ("clipped", "none"):
        for alpha_min in (0.03, 0.01):
            c = cfg(f"loss.kl_mode={mode}", "loss.alpha_init=0.01", f"loss.alpha_min={alpha_min}",
                    "critic.hidden_dim=4", "actor.hidden_dim=4")
            h = hyper.resolve(c, CARTPOLE)
            start = init_params_from_config(np.random.default_rng(0), c, 5, 1, v_min=h.v_min,
                                            v_max=h.v_max)["multipliers/log_alpha"]
            assert start.dtype == np.float32
            got = project_log_multiplier(start, h.log_alpha_min)
            want = np.float32(math.log(alpha_min)) if alpha_min > 0.01 else start
            assert got.dtype == np.float32 and got == want, (mode, alpha_min, got, want)


def test_alpha_floor_fade_resolves_to_iterations_and_needs_a_floor():
    from spec.config import ConfigError
    from spec.reference.losses import faded_log_floor

    assert hyper.resolve(cfg("loss.alpha_min=0.03"), CARTPOLE).alpha_min_fade_iterations == 0.0
    c = cfg("loss.alpha_min=0.03", "loss.alpha_min_fade_steps=1000000", "rollout.num_envs=128",
            "rollout.num_steps=16", "env.action_repeat=2")
    h = hyper.resolve(c, CARTPOLE)
    assert h.alpha_min_fade_iterations == 1_000_000 / (128 * 16 * 2)
    # iteration i starts after i·4096 env steps: α_min·(1 − i·4096/1e6), −inf from 1e6 on
    assert faded_log_floor(h.log_alpha_min, 0, h.alpha_min_fade_iterations) == np.float32(
        math.log(0.03))
    assert faded_log_floor(h.log_alpha_min, 122, h.alpha_min_fade_iterations) == pytest.approx(
        math.log(0.03 * (1 - 122 * 4096 / 1e6)), abs=1e-6)
    assert faded_log_floor(h.log_alpha_min, 245, h.alpha_min_fade_iterations) == -np.inf
    with pytest.raises(ConfigError, match=r"loss.alpha_min_fade_steps=1000 fades the floor "
                                          r"loss.alpha_min, which is 0 .*--loss.alpha_min"):
        cfg("loss.alpha_min_fade_steps=1000")
