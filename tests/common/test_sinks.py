"""Optional metric sinks (reppo_common.sinks): TensorBoard event files and W&B offline mode.

The train flow runs in-process with a fake backend (no framework), so these tests check the
CLI wiring (``--log tensorboard``) and the sink classes themselves. Real packages are used
where installed; otherwise the test is skipped with the reason, and the W&B wiring is also
checked against a stand-in ``wandb`` module.
"""

from __future__ import annotations

import json
import sys
import types

import pytest

from reppo_common import cli
from reppo_common.errors import UserError
from reppo_common.sinks import open_sinks
from spec.backend import TrainResult


class _FakeBackend:
    name = "fake"

    def supports_env(self, env_name):
        return True

    def train(self, config, run_dir, hooks, resume=False):
        batch = config.rollout.num_envs * config.rollout.num_steps
        steps = 0
        while steps < config.rollout.total_env_steps:
            steps += batch
            hooks.on_train_metrics({"env_steps": steps, "train/kl": 0.01 * steps,
                                    "train/alpha": 0.5, "train/sps": None})
        hooks.on_eval_metrics({"env_steps": steps, "eval/return_mean": 7.0})
        return TrainResult(env_steps=steps, iterations=steps // batch, best_eval_return=7.0)


def _tensorboard_writer_available() -> str | None:
    try:
        import tensorboardX  # noqa: F401

        return None
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401

        return None
    except ImportError:
        return "neither tensorboardX nor torch.utils.tensorboard is installed"


def test_cli_log_tensorboard_writes_event_files(tmp_path, monkeypatch):
    reason = _tensorboard_writer_available()
    if reason:
        pytest.skip(reason)
    monkeypatch.setattr(cli, "load_backend", lambda name: _FakeBackend())
    run_dir = tmp_path / "run"
    rc = cli.main(["train", "--preset", "tiny", "--run-dir", str(run_dir), "--no-progress",
                   "--log", "tensorboard", "--steps", "256"])
    assert rc == 0
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events, list(run_dir.rglob("*"))
    data = b"".join(p.read_bytes() for p in events)
    for tag in (b"train/kl", b"train/alpha", b"eval/return_mean"):
        assert tag in data, tag
    assert b"train/sps" not in data  # null values are not logged as scalars
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["run"]["log"] == ["jsonl", "tensorboard"]
    assert (run_dir / "metrics.jsonl").read_text().count("\n") >= 2  # jsonl is always written


def test_tensorboard_sink_values_and_steps(tmp_path):
    reason = _tensorboard_writer_available()
    if reason:
        pytest.skip(reason)
    (sink,) = open_sinks(("jsonl", "tensorboard"), tmp_path, {})
    sink.write({"env_steps": 128, "kind": "train", "train/kl": 0.25, "flag": True})
    sink.close()
    data = b"".join(p.read_bytes() for p in (tmp_path / "tensorboard").glob("events.*"))
    assert b"train/kl" in data and b"kind" not in data and b"flag" not in data


class _FakeRun:
    def __init__(self):
        self.logged, self.finished = [], False

    def log(self, data, step):
        self.logged.append((step, data))

    def finish(self):
        self.finished = True


def test_wandb_sink_wiring_with_stand_in(tmp_path, monkeypatch):
    """Without touching the network: the sink calls wandb.init without forcing a mode, so
    WANDB_MODE=offline (read by wandb itself) decides; logs use env_steps as the step."""
    calls = {}
    run = _FakeRun()

    def init(**kwargs):
        calls.update(kwargs)
        return run

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    (sink,) = open_sinks(("wandb",), tmp_path, {"run": {"seed": 1}})
    sink.write({"env_steps": 64, "train/kl": 0.5, "kind": "train"})
    sink.close()
    assert "mode" not in calls and calls["dir"] == str(tmp_path) and calls["config"]
    assert run.logged == [(64, {"env_steps": 64, "train/kl": 0.5})] and run.finished


def test_wandb_offline_mode_real_package(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (optional; not installed in "
                                        "this environment because it is heavy)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (sink,) = open_sinks(("wandb",), tmp_path, {"a": 1})
    sink.write({"env_steps": 1, "train/kl": 0.1})
    sink.close()
    assert list(tmp_path.rglob("offline-run-*")), list(tmp_path.rglob("*"))


def test_missing_sink_package_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(UserError, match="pip install wandb"):
        open_sinks(("wandb",), tmp_path, {})
