"""The Figure 12a data-scaling presets (Appendix E.3): valid configs with the paper's sizes."""

import pytest

from spec.config import ReppoConfig
from spec.derived import minibatch_size
from spec.presets import PRESETS, list_presets, preset_config

# name -> (envs, steps, minibatches, epochs, batch, updates per batch) as printed in Fig. 12a.
PAPER = {
    "data-large": (1024, 128, 64, 8, 131_072, 512),
    "data-medium": (1024, 32, 16, 8, 32_768, 128),
    "data-small": (1024, 8, 4, 8, 8_192, 32),
    "data-tiny": (256, 8, 1, 8, 2_048, 8),
}


def test_registered_in_order_with_one_line_descriptions():
    names = list_presets()
    assert [n for n in names if n.startswith("data-")] == list(PAPER)
    for n in PAPER:
        assert PRESETS[n]["description"] and "\n" not in PRESETS[n]["description"]


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_sizes(name):
    envs, steps, mbs, epochs, batch, updates = PAPER[name]
    c = preset_config(name)
    r = c.rollout
    assert (r.num_envs, r.num_steps, r.num_minibatches, r.num_epochs) == (envs, steps, mbs, epochs)
    assert r.num_envs * r.num_steps == batch
    assert r.num_epochs * r.num_minibatches == updates
    # the experiment keeps the minibatch size fixed at 2,048
    assert minibatch_size(c.rollout.num_envs, c.rollout.num_steps, c.rollout.num_minibatches) == 2048 == batch // mbs
    assert r.total_env_steps == 50_000_000
    assert (c.env.gamma, c.env.v_min, c.env.v_max) == (None, 0.0, 150.0)
    assert ReppoConfig.from_json(c.to_json()) == c


def test_large_and_medium_match_existing_dmc_presets():
    assert preset_config("data-large").rollout == preset_config("dmc-large").rollout
    assert preset_config("data-medium").rollout == preset_config("dmc").rollout


@pytest.mark.parametrize("name", list(PAPER))
def test_cpu_scaled_variant_keeps_ratios(name):
    """Dividing num_envs by k = 16 (the CPU recipe in the module docstring) is a valid config
    with the paper's rollout length and updates per batch, and minibatch size 2,048 / 16."""
    envs, steps, mbs, epochs, batch, updates = PAPER[name]
    c = preset_config(name, [f"rollout.num_envs={envs // 16}"])
    assert c.rollout.num_steps == steps
    assert c.rollout.num_epochs * c.rollout.num_minibatches == updates
    assert minibatch_size(c.rollout.num_envs, c.rollout.num_steps, c.rollout.num_minibatches) == 128
