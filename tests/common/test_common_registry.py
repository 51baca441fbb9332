import pytest

from reppo_common.errors import UserError
from reppo_common.registry import (REGISTRY, check_value_range, config_flags, list_envs,
                                   resolve_env, suggest_envs)
from spec import hyper
from spec.config import ReppoConfig
from spec.presets import preset_config


def test_counts_and_facts():
    assert len(list_envs("dmc")) == 25
    assert len(list_envs("maniskill")) == 9
    assert len(list_envs("minatar")) == 4
    assert len(list_envs("atari")) == 12
    assert len(list_envs("playground")) == 29
    e = resolve_env("dmc/CartpoleBalance")
    assert e.action_space == "continuous" and e.backends == ("jax", "torch")
    assert e.max_episode_steps == 1000 and e.reward_range == (0.0, 1.0) and e.default_preset == "cpu"
    p = resolve_env("maniskill/PickCube-v1")
    assert p.success_metric and p.backends == ("torch",) and p.max_episode_steps == 50
    assert resolve_env("atari/Pong").max_episode_steps == 27_000
    assert resolve_env("atari/Breakout").action_space == "discrete"
    assert resolve_env("minatar/Breakout").action_space == "discrete"


def test_case_insensitive():
    assert resolve_env("DMC/cartpolebalance").full_name == "dmc/CartpoleBalance"


def test_suggestions():
    with pytest.raises(UserError) as e:
        resolve_env("dmc/CartpoleBalanc")
    assert "dmc/CartpoleBalance" in str(e.value)
    with pytest.raises(UserError, match="--env dmc/CheetahRun"):
        resolve_env("CheetahRun")
    assert suggest_envs("cheetahrn")[0] == "dmc/CheetahRun"
    with pytest.raises(UserError, match="did you mean 'dmc'"):
        list_envs("dmcc")


def test_every_env_resolves_gamma_and_value_range():
    """Every listed env has the facts γ and the value support need: a reward range, or (for
    envs that declare it) an explicit support that reaches the config through config_flags."""
    for e in list_envs():
        if e.reward_range is None:
            check = preset_config(e.default_preset, config_flags(e))
            if e.v_min is None or e.v_max is None:  # gym/ ids without exact bounds
                with pytest.raises(UserError, match="--env.v_min=LO --env.v_max=HI"):
                    check_value_range(check, e.reward_range, e.full_name)
                continue
            assert (check.env.v_min, check.env.v_max) == (e.v_min, e.v_max), e.full_name
            continue
        cfg = ReppoConfig()
        facts = hyper.Facts(obs_dim=1, action_dim=1, max_episode_steps=e.max_episode_steps,
                            reward_range=e.reward_range)
        h = hyper.resolve(cfg, facts)
        assert 0 < h.gamma < 1 and h.v_min < h.v_max
