"""Tests that both framework ports must pass in the same way, parametrised by backend (one
test instead of a copy per port): a CLI smoke run on dmc/CartpoleBalance."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("jax", "torch")


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_smoke_run_on_cartpole(backend, tmp_path):
    """`reppo train --backend <b>` on dmc/CartpoleBalance for a few tiny iterations writes the
    run directory with finite metrics, evaluations and checkpoints at the intervals, and
    `reppo eval` reads it back (with sampled actions: ``--policy sample``; the mode is what the
    run's own evaluations played)."""
    pytest.importorskip(backend)
    pytest.importorskip("jax")  # DMC is mujoco_playground (JAX) in both ports
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "reppo_common.cli", "train", "--backend", backend, "--env",
           "dmc/CartpoleBalance", "--preset", "tiny", "--steps", "512", "--run-dir",
           str(run_dir), "--no-progress", "--run.eval_interval=256",
           "--run.checkpoint_interval=256"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "config.json").is_file()
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [m for m in lines if m.get("kind") == "train"]
    assert len(train_lines) == 8
    for m in train_lines:
        assert all(math.isfinite(v) for k, v in m.items()
                   if isinstance(v, float) and k != "train/sps")
    evals = [m for m in lines if "eval/return_mean" in m]
    assert [m["env_steps"] for m in evals] == [256, 512]
    for m in evals:
        assert math.isfinite(m["eval/return_mean"]) and m["wall_s"] >= 0
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("params_*.npz")) == [
        "params_000000000256.npz", "params_000000000512.npz"]
    proc = subprocess.run([sys.executable, "-m", "reppo_common.cli", "eval", "--run-dir",
                           str(run_dir), "--episodes", "2", "--policy", "sample"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "return" in proc.stdout and "policy sample" in proc.stdout
