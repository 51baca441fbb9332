"""CLI tests: subprocesses for the error paths (real exit codes, no traceback), in-process with a
fake backend for the train flow (run dir, metrics, summary)."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from reppo_common import cli
from spec.backend import TrainResult

ROOT = Path(__file__).resolve().parents[2]


def reppo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reppo_common.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_presets_lists_all():
    p = reppo("presets")
    assert p.returncode == 0, p.stderr
    for name in ["dmc", "dmc-large", "maniskill", "atari", "cpu", "cpu-discrete", "tiny"]:
        assert f"\n{name} " in "\n" + p.stdout


def test_envs():
    p = reppo("envs")
    assert p.returncode == 0 and "dmc/CartpoleBalance" in p.stdout and "atari/Pong" in p.stdout
    p = reppo("envs", "--suite", "maniskill")
    assert p.returncode == 0 and "dmc/" not in p.stdout and "PickCube-v1" in p.stdout


def test_unknown_backend():
    assert_one_line_error(reppo("train", "--backend", "nope"), "'nope'", "jax", "torch")


def test_env_typo_suggests():
    assert_one_line_error(reppo("train", "--env", "dmc/CartpoleBalanc"), "dmc/CartpoleBalance")


def test_invalid_override_names_field_and_range():
    assert_one_line_error(reppo("train", "--rollout.num_envs=-3"), "rollout.num_envs=-3", "[1, 1048576]")
    assert_one_line_error(reppo("train", "--rollout.num_env=3"), "rollout.num_envs")


def test_unknown_flag_and_backend_mismatch():
    assert_one_line_error(reppo("train", "--bogus"), "--bogus")
    assert_one_line_error(reppo("train", "--env", "maniskill/PickCube-v1"), "--backend torch")


def test_debug_shows_traceback():
    p = reppo("train", "--backend", "nope", "--debug")
    assert p.returncode != 0 and "Traceback" in p.stderr


# ---- in-process train/eval with a fake backend ---------------------------------------------


class FakeBackend:
    name = "fake"

    def __init__(self):
        self.calls = []

    def supports_env(self, env_name):
        return env_name.startswith("dmc/")

    def train(self, config, run_dir, hooks, resume=False):
        self.calls.append(("train", config, Path(run_dir), resume))
        steps = 0
        batch = config.rollout.num_envs * config.rollout.num_steps
        while steps < config.rollout.total_env_steps:
            steps += batch
            hooks.on_train_metrics({"env_steps": steps, "train/kl": 0.01, "train/alpha": 0.01})
            hooks.on_progress(steps, {})
            if hooks.should_stop():
                break
        hooks.on_eval_metrics({"env_steps": steps, "eval/return_mean": 12.5})
        # a checkpoint file: the run dir is then a started run (not a failed start)
        (Path(run_dir) / "checkpoints" / f"state_{steps:012d}.json").write_text("{}")
        return TrainResult(env_steps=steps, iterations=steps // batch, best_eval_return=12.5)

    def evaluate(self, config, run_dir, episodes, checkpoint=None):
        self.calls.append(("eval", episodes))
        self.eval_policy = config.run.eval_policy
        return {"eval/return_mean": 3.0, "eval/episodes": episodes}


@pytest.fixture
def fake(monkeypatch):
    fb = FakeBackend()
    monkeypatch.setattr(cli, "load_backend", lambda name: fb)
    return fb


def test_train_writes_run_dir(tmp_path, fake, capsys):
    run_dir = tmp_path / "run"
    rc = cli.main(["train", "--preset", "tiny", "--seed", "4", "--run-dir", str(run_dir),
                   "--no-progress", "--rollout.num_envs=16"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2,048 env steps" in out and "12.5" in out and str(run_dir) in out
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["run"]["seed"] == 4 and cfg["rollout"]["num_envs"] == 16
    assert cfg["env"]["name"] == "dmc/CartpoleBalance"
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("wall_s" in l and "env_steps" in l for l in lines)
    assert lines[-1]["kind"] == "eval" and lines[-1]["eval/return_mean"] == 12.5
    assert lines[0]["kind"] == "train"

    # the same dir again is refused; --resume continues it with a larger budget
    assert cli.main(["train", "--preset", "tiny", "--run-dir", str(run_dir), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(run_dir), "--steps", "4096", "--no-progress"]) == 0
    assert fake.calls[-1][3] is True and fake.calls[-1][1].rollout.total_env_steps == 4096
    assert cli.main(["train", "--resume", str(run_dir), "--loss.lam=0.5"]) == 2
    assert "cannot be changed when resuming" in capsys.readouterr().err

    assert cli.main(["eval", "--run-dir", str(run_dir), "--episodes", "3"]) == 0
    assert "eval/return_mean" in capsys.readouterr().out and fake.calls[-1] == ("eval", 3)
    assert fake.eval_policy == "mode"  # the run's run.eval_policy
    # --policy overrides the run's run.eval_policy for this evaluation only
    assert cli.main(["eval", "--run-dir", str(run_dir), "--policy", "sample"]) == 0
    assert "policy sample" in capsys.readouterr().out and fake.eval_policy == "sample"
    assert json.loads((run_dir / "config.json").read_text())["run"]["eval_policy"] == "mode"
    assert cli.main(["eval", "--run-dir", str(run_dir), "--policy", "greedy"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--policy" in err and "'greedy'" in err and "sample" in err


def test_load_backend_messages(monkeypatch):
    with pytest.raises(cli.UserError, match="unknown backend"):
        cli.load_backend("nope")

    def missing_module(name):
        if not name.startswith("reppo_"):  # the framework itself is installed
            return types.SimpleNamespace()
        raise ModuleNotFoundError(f"No module named '{name}'", name=name)

    monkeypatch.setattr(cli.importlib, "import_module", missing_module)
    with pytest.raises(cli.UserError, match="not available yet"):
        cli.load_backend("jax")

    def missing_framework(name):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(cli.importlib, "import_module", missing_framework)
    with pytest.raises(cli.UserError, match=r"pip install -e '\.\[torch\]'"):
        cli.load_backend("torch")
    monkeypatch.setattr(cli.importlib, "import_module", lambda n: types.SimpleNamespace())
    with pytest.raises(cli.UserError, match="get_backend"):
        cli.load_backend("jax")
