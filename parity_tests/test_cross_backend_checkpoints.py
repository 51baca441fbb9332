"""Cross-backend checkpoints: a run trained with one backend is evaluated with the other,
through the canonical ``.npz`` layout (``reppo eval --backend torch --run-dir <jax run>`` and
vice versa), and both backends' evaluations of the same checkpoint agree.

Both backends evaluate DMC episodes whose initial states come from the same key
(``run.seed + reppo_common.seeding.EVAL_RUN_SEED_OFFSET``; the torch DMC env is the JAX
playground adapter), and the policy is deterministic (tanh μ), so the two evaluations run the
same episodes; they can differ only by the float32 rounding of the two ports' policy forward
passes, amplified by the dynamics (see :func:`test_both_backends_evaluate_a_checkpoint_alike`
for the horizon).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from parity_tests.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
STEPS = 256
EPISODES = 2
HORIZON = 200

pytestmark = pytest.mark.slow


def _require_both():
    for name in ("jax", "torch"):
        if not BACKENDS[name].available():
            pytest.skip(BACKENDS[name].skip_reason())


def _cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "reppo_common.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"reppo {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny dmc/CartpoleBalance run per backend (checkpoint at STEPS env steps)."""
    _require_both()
    base = tmp_path_factory.mktemp("cross")
    out = {}
    for backend in ("jax", "torch"):
        run_dir = base / backend
        _cli("train", "--backend", backend, "--env", "dmc/CartpoleBalance", "--preset", "tiny",
             "--steps", str(STEPS), "--run-dir", str(run_dir), "--no-progress",
             f"--run.eval_interval={STEPS}", f"--run.checkpoint_interval={STEPS}")
        (ckpt,) = sorted((run_dir / "checkpoints").glob("params_*.npz"))
        out[backend] = run_dir
        assert json.loads((run_dir / "config.json").read_text())["env"]["name"] == \
            "dmc/CartpoleBalance"
    return out


def _return_mean(stdout: str) -> float:
    m = re.search(r"eval/return_mean\s+(\S+)", stdout)
    assert m, f"no eval/return_mean in:\n{stdout}"
    return float(m.group(1))


@pytest.mark.parametrize("trained,evaluated", [("jax", "torch"), ("torch", "jax")])
def test_cli_eval_with_the_other_backend(runs, trained, evaluated):
    proc = _cli("eval", "--backend", evaluated, "--run-dir", str(runs[trained]),
                "--episodes", str(EPISODES))
    assert f"({evaluated}, {EPISODES} episodes)" in proc.stdout
    assert math.isfinite(_return_mean(proc.stdout))


@pytest.mark.parametrize("trained", ["jax", "torch"])
def test_both_backends_evaluate_a_checkpoint_alike(runs, trained):
    """Same checkpoint, same episodes: the deterministic-policy returns agree to float32.

    Over HORIZON steps the two evaluations agree to ~1e-7 relative (measured: 43.904522 vs
    43.904526 over 50 steps, identical over 200). Over a full 1000-step episode a barely
    trained policy lets the pole fall and spin, and that chaotic phase amplifies the ports'
    float32 rounding of the policy forward to ~0.1% of the return (measured: 238.58 vs 238.32
    with identical episode lengths) — amplification by the dynamics, not a disagreement of the
    ports, so the tight comparison uses the shorter horizon."""
    from dataclasses import replace

    from reppo_common.runs import RunDir
    from reppo_jax.train import evaluate_run as jax_eval
    from reppo_torch.train import evaluate_run as torch_eval

    cfg = RunDir.open_existing(runs[trained]).load_config()
    cfg = replace(cfg, env=replace(cfg.env, max_episode_steps=HORIZON))
    rj = jax_eval(cfg, runs[trained], EPISODES)
    rt = torch_eval(cfg, runs[trained], EPISODES)
    assert rj["eval/episodes"] == rt["eval/episodes"] == EPISODES
    assert rj["eval/length_mean"] == rt["eval/length_mean"] == HORIZON
    for k in ("eval/return_mean", "eval/return_min", "eval/return_max"):
        # HORIZON rewards in [0, 1], each from float32 physics and a float32 policy
        assert abs(rj[k] - rt[k]) <= 1e-5 * max(1.0, abs(rj[k])), (k, rj[k], rt[k])
