import pytest

from spec.config import ConfigError, ReppoConfig
from spec.presets import CPU_SIZES, DEFAULT_PRESET, PRESETS, get_preset, list_presets, preset_config


def test_list():
    names = list_presets()
    for n in ["dmc", "dmc-large", "maniskill", "atari", "cpu", "cpu-discrete", "tiny"]:
        assert n in names
    assert DEFAULT_PRESET == "cpu"
    for entry in PRESETS.values():
        assert entry["description"] and "\n" not in entry["description"]


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_valid_and_round_trips(name):
    c = preset_config(name)
    assert ReppoConfig.from_json(c.to_json()) == c
    assert ReppoConfig.from_dict(c.to_dict()) == c


def test_preset_values():
    d = preset_config("dmc")
    assert (d.rollout.num_envs, d.rollout.num_steps, d.rollout.num_minibatches) == (1024, 32, 16)
    assert (d.env.gamma, d.env.v_min, d.env.v_max) == (None, 0.0, 150.0)
    assert preset_config("dmc-large").rollout.num_steps == 128
    m = preset_config("maniskill")
    assert (m.env.v_min, m.env.v_max, m.env.gamma) == (-15.0, 15.0, None)
    assert preset_config("atari").loss.lam == 0.65
    c = preset_config("cpu")
    assert c.rollout.num_envs == CPU_SIZES["rollout"]["num_envs"]
    assert c.actor.hidden_dim == c.critic.hidden_dim == CPU_SIZES["critic"]["hidden_dim"]
    t = preset_config("tiny")
    assert (t.rollout.num_envs, t.rollout.num_steps, t.rollout.total_env_steps) == (8, 8, 2048)
    assert t.run.eval_episodes == 2


def test_preset_with_overrides_validated_together():
    c = preset_config("cpu", ["rollout.num_envs=16", "rollout.num_minibatches=16", "run.seed=3"])
    assert c.rollout.num_envs == 16 and c.run.seed == 3
    with pytest.raises(ConfigError, match="rollout.num_envs=-3"):
        preset_config("cpu", ["rollout.num_envs=-3"])


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="did you mean 'cpu'"):
        get_preset("cpux")
