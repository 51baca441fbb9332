"""benchmarks/memory.py: the byte accounting, checked by hand and against the JAX batch's real
shapes and dtypes (``jax.eval_shape`` of the rollout on the toy env)."""

from __future__ import annotations

import pytest

from benchmarks import memory as M


def test_cartpole_dmc_preset_by_hand():
    # obs 5, action 1, critic width 512: floats 5 + 1 + reward + next_value + next_log_prob
    # + 512 + target = 522 -> 2,088 B, plus two 1-byte flags = 2,090 B per transition.
    b = M.onpolicy_batch_bytes(1024, 32, 5, 1, 512)
    assert b["transitions"] == 32_768
    assert b["bytes_per_transition"] == 2_090
    assert b["total"] == 2_090 * 32_768 == 68_485_120
    assert b["fields"]["next_emb"] == 512 * 4 * 32_768
    assert b["fields"]["terminated"] == b["fields"]["truncated"] == 32_768
    # shuffled copy: obs, action, reward, target, next_emb = (5 + 1 + 1 + 1 + 512) * 4 B
    assert b["peak"] == b["total"] + 2_080 * 32_768
    nb = M.onpolicy_batch_bytes(1024, 32, 5, 1, 512, include_embeddings=False)
    assert nb["bytes_per_transition"] == 42 and nb["total"] == 42 * 32_768
    assert nb["peak"] is None


def test_replay_buffer_by_hand():
    # (s, a, r, s', done, truncated): (5 + 1 + 1 + 5) * 4 + 2 = 50 B; 10,485,760 * 50 = 500 MiB
    r = M.replay_buffer_bytes(M.FASTTD3_DEFAULT_BUFFER, 5, 1)
    assert r["bytes_per_transition"] == 50
    assert r["total"] == 524_288_000 == 500 * 2 ** 20
    # CheetahRun: (17 + 6 + 1 + 17) * 4 + 2 = 166 B
    assert M.replay_buffer_bytes(M.SMALL_BUFFER, 17, 6)["total"] == 166 * 32_768


def test_report_ratios_and_table():
    rep = M.report("dmc/CheetahRun", ["dmc", "cpu"], 17, 6)
    rows = {r["store"]: r for r in rep["rows"]}
    dmc = rows["REPPO batch, preset dmc"]
    assert dmc["bytes_per_transition"] == 4 * (17 + 6 + 4 + 512) + 2 == 2_158
    assert dmc["ratio_default_buffer"] == pytest.approx(166 * 10_485_760 / (2_158 * 32_768))
    no_emb = rows["REPPO batch, preset dmc (no next_emb)"]
    assert no_emb["ratio_default_buffer"] == pytest.approx(166 * 320 / 110)
    cpu = rows["REPPO batch, preset cpu"]
    assert cpu["transitions"] == 64 * 32 and cpu["bytes_per_transition"] == 4 * (27 + 128) + 2
    text = M.format_report(rep)
    assert "FastTD3 default buffer" in text and "10,485,760" in text


def test_human():
    assert M.human(512) == "512 B" and M.human(500 * 2 ** 20) == "500.0 MiB"
    assert M.human(1.5 * 2 ** 30) == "1.5 GiB"


def test_accounting_matches_the_real_jax_batch():
    """Sum of nbytes of the rollout's Transition + targets (abstract evaluation, no compute)
    equals the formula, field by field."""
    jax = pytest.importorskip("jax")
    from reppo_jax import agent as A
    from reppo_jax.envs import make_toy_env
    from reppo_jax.train import make_trainer
    from spec.config import apply_overrides
    from spec.presets import preset_config

    cfg = apply_overrides(preset_config("tiny"), {
        "env.name": "toy/Bandit", "env.v_min": 0.0, "env.v_max": 10.0,
        "rollout.num_envs": 4, "rollout.num_steps": 3, "rollout.num_minibatches": 1,
        "critic.hidden_dim": 24, "actor.hidden_dim": 16})
    trainer = make_trainer(cfg, make_toy_env(4), make_toy_env(1))
    carry = trainer.init(0)

    def batch_and_targets(c):
        c, batch, _ = A.rollout(trainer.nets, trainer.h, trainer.env, c)
        return batch, A.compute_targets(trainer.h, c.agent, batch)

    batch, targets = jax.eval_shape(batch_and_targets, carry)
    # fields of other estimators (actor.gradient=ppo) are None here and hold nothing
    real = {name: arr.size * arr.dtype.itemsize for name, arr in batch._asdict().items()
            if arr is not None}
    real["target"] = targets.size * targets.dtype.itemsize
    want = M.onpolicy_batch_bytes(4, 3, trainer.h.obs_dim, trainer.h.action_dim, 24)
    assert real == want["fields"]
    assert sum(real.values()) == want["total"]
