import dataclasses
import json

import pytest

from spec.config import (EVAL_POLICIES, ConfigError, EnvConfig, LossConfig, ReppoConfig,
                         RolloutConfig, RunConfig, SECTIONS, apply_overrides, field_names,
                         parse_override)


def err(fn, *a, **k) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*a, **k)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_defaults_match_table2():
    c = ReppoConfig()
    r = c.rollout
    assert (r.num_envs, r.num_steps, r.num_minibatches, r.num_epochs) == (1024, 128, 64, 8)
    assert (r.lr, r.max_grad_norm, r.total_env_steps) == (3e-4, 0.5, 50_000_000)
    assert (c.loss.lam, c.loss.kl_target, c.loss.kl_samples) == (0.95, 0.1, 16)
    assert (c.loss.alpha_init, c.loss.beta_init, c.loss.entropy_target_mult) == (0.01, 0.01, 0.5)
    assert (c.critic.num_bins, c.critic.hidden_dim, c.actor.hidden_dim) == (151, 512, 512)
    assert (c.critic.num_encoder_layers, c.critic.num_head_layers, c.critic.num_pred_layers) == (2, 2, 2)
    assert c.actor.num_layers == 3 and c.critic.aux_loss_mult == 1.0
    assert c.schema_version == 1 and c.run.log == ("jsonl",)


def test_every_field_is_documented():
    import inspect

    import spec.config as mod

    src = inspect.getsource(mod)
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            i = src.index(f"    {f.name}: ", src.index(f"class {cls.__name__}"))
            after = src[i:].split("\n", 2)[1].strip()
            assert after.startswith('"""'), f"{section}.{f.name} has no docstring"


@pytest.mark.parametrize("make,needles", [
    (lambda: RolloutConfig(num_envs=-3), ["rollout.num_envs=-3", "[1, 1048576]"]),
    (lambda: LossConfig(lam=1.5), ["loss.lam=1.5", "[0, 1]"]),
    (lambda: apply_overrides(ReppoConfig(), ["critic.num_bins=1"]), ["critic.num_bins=1", "[2, 16384]"]),
    (lambda: EnvConfig(v_min=5.0, v_max=1.0), ["env.v_min=5.0", "env.v_max=1.0"]),
    (lambda: EnvConfig(v_min=1.0, v_max=1.0), ["env.v_min=1.0", "<"]),
    (lambda: LossConfig(kl_target=0.0), ["loss.kl_target=0.0", "> 0"]),
    (lambda: apply_overrides(ReppoConfig(), ["actor.min_std=-0.1"]), ["actor.min_std", ">= 0"]),
    (lambda: apply_overrides(ReppoConfig(), ["rollout.lr=0"]), ["rollout.lr=0.0", "> 0"]),
    (lambda: apply_overrides(ReppoConfig(), ["critic.norm=batch"]), ["critic.norm='batch'", "'rms'"]),
    (lambda: apply_overrides(ReppoConfig(), ["critic.loss=l1"]), ["critic.loss", "'hlgauss'"]),
    (lambda: apply_overrides(ReppoConfig(), ["loss.kl_mode=half"]), ["loss.kl_mode", "'clipped'"]),
    (lambda: apply_overrides(ReppoConfig(), ["actor.gradient=x"]), ["actor.gradient", "'pathwise'"]),
    (lambda: apply_overrides(ReppoConfig(), ["env.physics_impl=x"]), ["env.physics_impl", "'warp'"]),
    (lambda: apply_overrides(ReppoConfig(), ["run.device=tpu"]), ["run.device='tpu'", "'cuda'"]),
    (lambda: apply_overrides(ReppoConfig(), ["run.log=jsonl,csv"]), ["run.log", "'tensorboard'"]),
    (lambda: apply_overrides(ReppoConfig(), ["run.eval_policy=greedy"]),
     ["run.eval_policy='greedy'", "one of 'mode', 'sample'"]),
    (lambda: apply_overrides(ReppoConfig(), ["env.gamma=1"]), ["env.gamma=1.0", "[0, 1)"]),
    (lambda: apply_overrides(ReppoConfig(), ["env.name=CartpoleBalance"]), ["env.name", "suite/Name"]),
])
def test_validation_messages_name_field_value_range(make, needles):
    msg = err(make)
    for n in needles:
        assert n in msg, msg


def test_eval_policy_choices_and_default():
    """``run.eval_policy`` takes its choices from EVAL_POLICIES; the default is the mode (the
    evaluation of every run before the field existed: an old config.json reads as 'mode')."""
    assert EVAL_POLICIES == ("mode", "sample")
    assert ReppoConfig().run.eval_policy == "mode"
    assert ReppoConfig.from_dict({"run": {"seed": 3}}).run.eval_policy == "mode"
    for policy in EVAL_POLICIES:
        cfg = apply_overrides(ReppoConfig(), [f"run.eval_policy={policy}"])
        assert cfg.run.eval_policy == policy
    assert "run.eval_policy=''" in err(RunConfig, eval_policy="")


def test_minibatch_divisibility_names_batch_and_suggests():
    msg = err(apply_overrides, ReppoConfig(), ["rollout.num_envs=10", "rollout.num_steps=10",
                                               "rollout.num_minibatches=7"])
    assert "rollout.num_minibatches=7" in msg and "100" in msg
    assert "5" in msg.split("near it:")[1] and "10" in msg.split("near it:")[1]


def test_type_checks():
    assert "rollout.num_envs=True" in err(RolloutConfig, num_envs=True)
    assert "rollout.num_envs=2.0" in err(RolloutConfig, num_envs=2.0)
    assert "env.normalize_obs=1" in err(EnvConfig, normalize_obs=1)
    assert RolloutConfig(lr=1).lr == 1.0 and isinstance(RolloutConfig(lr=1).lr, float)
    assert "rollout.lr=nan" in err(RolloutConfig, lr=float("nan"))
    assert RunConfig(log=["jsonl", "wandb"]).log == ("jsonl", "wandb")


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ReppoConfig().rollout.num_envs = 3  # type: ignore[misc]


def test_json_round_trip_lossless():
    c = apply_overrides(ReppoConfig(), ["env.v_min=-1", "env.v_max=2.5", "run.log=jsonl,wandb",
                                        "critic.lr=1e-4", "env.max_episode_steps=500"])
    d = c.to_dict()
    assert json.loads(c.to_json()) == d
    c2 = ReppoConfig.from_json(c.to_json())
    assert c2 == c and c2.run.log == ("jsonl", "wandb") and c2.env.gamma is None
    assert isinstance(c2.env.v_min, float)


def test_from_dict_unknown_and_schema():
    assert "did you mean 'rollout.num_envs'" in err(ReppoConfig.from_dict, {"rollout": {"num_env": 3}})
    assert "did you mean 'rollout" in err(ReppoConfig.from_dict, {"rollot": {"num_envs": 3}})
    msg = err(ReppoConfig.from_dict, {"schema_version": 99})
    assert "schema_version=99" in msg and "1" in msg
    assert "JSON" in err(ReppoConfig.from_json, "{not json")


def test_override_parsing_types():
    c = apply_overrides(ReppoConfig(), [
        "rollout.lr=3e-4", "rollout.total_env_steps=5e6", "rollout.num_envs=32",
        "rollout.num_minibatches=8", "env.normalize_obs=no", "env.gamma=0.97", "env.gamma=none",
        "env.v_max=null", "env.v_min=-10", "run.log=jsonl, tensorboard", "--run.seed=7",
        "env.name=dmc/WalkerRun",
    ])
    assert c.rollout.lr == 3e-4 and c.rollout.total_env_steps == 5_000_000
    assert c.env.normalize_obs is False and c.env.gamma is None and c.env.v_max is None
    assert c.env.v_min == -10.0 and c.run.log == ("jsonl", "tensorboard") and c.run.seed == 7
    for word, value in [("true", True), ("1", True), ("yes", True), ("False", False), ("0", False)]:
        assert parse_override(f"env.normalize_obs={word}") == ("env.normalize_obs", value)


def test_override_errors():
    assert "did you mean 'rollout.num_envs'" in err(apply_overrides, ReppoConfig(), ["rollout.num_env=3"])
    assert "'rollout.num_envs'" in err(apply_overrides, ReppoConfig(), ["num_envs=3"])
    assert "unknown config section 'rollot'" in err(apply_overrides, ReppoConfig(), ["rollot.num_envs=3"])
    msg = err(apply_overrides, ReppoConfig(), ["rollout.num_envs=abc"])
    assert "rollout.num_envs='abc'" in msg and "integer" in msg
    assert "integer" in err(apply_overrides, ReppoConfig(), ["rollout.num_envs=1.5"])
    assert "boolean" in err(apply_overrides, ReppoConfig(), ["env.normalize_obs=maybe"])
    assert "section.field=value" in err(apply_overrides, ReppoConfig(), ["rollout.num_envs"])
    assert "rollout.num_envs='none'" in err(apply_overrides, ReppoConfig(), ["rollout.num_envs=none"])


def test_overrides_mapping_and_immutability():
    base = ReppoConfig()
    c = apply_overrides(base, {"rollout": {"num_envs": 64, "num_minibatches": 8},
                               "loss.lam": "0.5"})
    assert c.rollout.num_envs == 64 and c.loss.lam == 0.5 and base.rollout.num_envs == 1024
    # intermediate states need not be valid: only the final config is checked
    c = apply_overrides(base, ["rollout.num_envs=10", "rollout.num_steps=10",
                               "rollout.num_minibatches=5", "rollout.total_env_steps=1000"])
    assert c.rollout.num_minibatches == 5


def test_field_names_cover_readme():
    names = set(field_names())
    for n in ["env.physics_impl", "env.action_repeat", "critic.logit_prior_scale",
              "loss.multiplier_max_grad_norm", "loss.beta_min", "loss.alpha_min",
              "run.keep_checkpoints",
              "actor.gradient"]:
        assert n in names


def test_alpha_min_is_an_optional_floor():
    assert LossConfig().alpha_min == 0.0  # unbounded: the paper's rule
    assert apply_overrides(ReppoConfig(), ["loss.alpha_min=0.03"]).loss.alpha_min == 0.03
    assert err(LossConfig, alpha_min=-1e-3).startswith("loss.alpha_min=-0.001 is invalid: must be")
    assert "(finite)" in err(LossConfig, alpha_min=float("inf"))
    assert "(finite)" in err(LossConfig, alpha_min=float("nan"))
    # above alpha_init, in every kl_mode: α is never frozen, it is lifted onto the floor at the
    # first multiplier step (tests/spec/test_hyper.py)
    for mode in ("clipped", "full", "none"):
        c = apply_overrides(ReppoConfig(), [f"loss.kl_mode={mode}", "loss.alpha_min=1.0"])
        assert (c.loss.alpha_min, c.loss.alpha_init) == (1.0, 0.01)


def test_beta_min_is_an_optional_floor():
    assert LossConfig().beta_min == 0.0  # unbounded: the paper's rule
    assert LossConfig(beta_min=0.01, beta_init=0.01).beta_min == 0.01
    assert apply_overrides(ReppoConfig(), ["loss.beta_min=1e-3"]).loss.beta_min == 1e-3
    assert err(LossConfig, beta_min=-1e-3).startswith("loss.beta_min=-0.001 is invalid: must be")
    assert "(finite)" in err(LossConfig, beta_min=float("inf"))
    assert "(finite)" in err(LossConfig, beta_min=float("nan"))
    # above beta_init: β is lifted onto the floor at the first multiplier step ...
    assert apply_overrides(ReppoConfig(), ["loss.beta_min=0.1"]).loss.beta_min == 0.1
    # ... except with kl_mode=none, where β is frozen at beta_init
    msg = err(apply_overrides, ReppoConfig(), ["loss.kl_mode=none", "loss.beta_min=0.1"])
    assert msg.startswith("loss.beta_min=0.1 is invalid with loss.kl_mode='none'")
    assert "lower loss.beta_min or raise loss.beta_init" in msg
