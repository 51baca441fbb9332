"""The ``atari`` preset end to end through envpool and the CLI: ``reppo train`` on atari/Pong
for two tiny iterations (the preset's gamma, lambda and epochs; sizes shrunk), metrics, a
checkpoint, then ``reppo eval`` of the saved run.

Skipped when envpool is absent: CI installs neither it nor the ROMs it ships
(``pip install -e '.[atari]'`` does, on Python >= 3.11)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("jax")
pytest.importorskip("envpool", reason="envpool not installed (pip install -e '.[atari]'); "
                                      "CI does not install it")

from reppo_common.cli import main  # noqa: E402

TINY = ["--rollout.num_envs=4", "--rollout.num_steps=16", "--rollout.num_minibatches=2",
        "--critic.hidden_dim=32", "--actor.hidden_dim=32", "--critic.num_bins=51",
        "--env.max_episode_steps=40", "--run.eval_interval=64", "--run.eval_episodes=2",
        "--run.checkpoint_interval=64"]


@pytest.mark.slow
def test_atari_preset_trains_and_evaluates_pong_through_the_cli(tmp_path, capsys):
    run_dir = tmp_path / "run"
    rc = main(["train", "--env", "atari/Pong", "--preset", "atari", "--steps", "128",
               "--no-progress", "--run-dir", str(run_dir), *TINY])
    assert rc == 0
    cfg = json.loads((run_dir / "config.json").read_text())
    # the preset's algorithmic values survive the size overrides
    assert cfg["env"]["gamma"] == 0.99 and cfg["loss"]["lam"] == 0.65
    assert cfg["rollout"]["num_epochs"] == 2
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert [r["env_steps"] for r in train] == [64, 128]
    assert [r["env_steps"] for r in evals] == [64, 128]
    for r in train:
        losses = [r["train/critic_loss"], r["train/actor_loss"], r["train/value_loss"]]
        assert all(math.isfinite(v) for v in losses), r
    for r in evals:
        # greedy episodes capped at 40 agent steps; Pong's raw score lies in [-21, 21]
        assert r["eval/episodes"] == 2 and r["eval/length_mean"] == 40
        assert -21 <= r["eval/return_mean"] <= 21
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("params_*.npz"))
    capsys.readouterr()
    assert main(["eval", "--run-dir", str(run_dir), "--episodes", "2"]) == 0
    assert "return" in capsys.readouterr().out
