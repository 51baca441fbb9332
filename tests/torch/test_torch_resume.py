"""Full-state checkpoints and ``reppo train --backend torch --resume`` (mirrors
tests/jax/test_jax_resume.py; the properties both ports share, run for each backend, are in
tests/ports/test_resume.py).

On CPU, with an env that exports its state (the toy env here, DMC through the JAX bridge), a run
killed and resumed from its last checkpoint writes exactly the same subsequent metrics as the
uninterrupted run. Envs without ``get_state`` (ManiSkill) restart from a fresh reset: tested
here with the toy env's state export hidden. Missing or misshapen state arrays are refused with
one line; the NaN guard names a non-finite parameter.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reppo_common import checkpoints as C  # noqa: E402
from reppo_common.errors import UserError  # noqa: E402
from reppo_torch import checkpoint as CK  # noqa: E402
from reppo_torch.envs.toy import ToyBanditEnv, make_toy_env  # noqa: E402
from reppo_torch.checkpoint import save_state  # noqa: E402
from reppo_torch.train import Trainer, train  # noqa: E402
from spec.backend import TrainHooks  # noqa: E402
from spec.config import apply_overrides  # noqa: E402
from spec.presets import preset_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "jax" / "toy_cli.py"  # the real CLI with toy/Bandit registered
STEPS_PER_ITER = 64  # tiny preset: 8 envs x 8 steps
from reppo_common.driver import TIMING_KEYS as TIMING  # noqa: E402


def toy_config(iters: int = 12, **extra):
    over = {"env.name": "toy/Bandit", "rollout.total_env_steps": iters * STEPS_PER_ITER,
            "run.eval_interval": 4 * STEPS_PER_ITER, "run.checkpoint_interval": 2 * STEPS_PER_ITER,
            "run.keep_checkpoints": 100, "run.device": "cpu"}
    over.update(extra)
    return apply_overrides(preset_config("tiny"), over)


def _strip(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in TIMING}


def _copy_checkpoint(src: Path, dst: Path, steps: int) -> None:
    (dst / "checkpoints").mkdir(parents=True)
    for p in (src / "checkpoints").glob(f"*_{steps:012d}.*"):
        shutil.copy(p, dst / "checkpoints" / p.name)


class NoStateEnv(ToyBanditEnv):
    """The toy env without get_state/set_state: stands in for ManiSkill's physx."""

    def __getattribute__(self, name):
        if name in ("get_state", "set_state"):
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_resume_without_env_state_resets_envs_and_continues(tmp_path):
    cfg = toy_config(iters=6)
    make = lambda: NoStateEnv(8, random_episode_offsets=True)  # noqa: E731
    seen: list[dict] = []
    train(cfg, tmp_path / "a", TrainHooks(on_train_metrics=seen.append),
          env=make(), eval_env=make_toy_env(8))
    info = C.latest_checkpoint(tmp_path / "a" / "checkpoints")
    assert info.manifest["extra"]["env_state"] is False
    assert not any(k.startswith("env/") for k in C.load_state_arrays(info))
    _copy_checkpoint(tmp_path / "a", tmp_path / "b", 4 * STEPS_PER_ITER)
    resumed: list[dict] = []
    train(cfg, tmp_path / "b", TrainHooks(on_train_metrics=resumed.append), env=make(),
          eval_env=make_toy_env(8), resume=True)
    assert [m["env_steps"] for m in resumed] == [5 * STEPS_PER_ITER, 6 * STEPS_PER_ITER]
    # fresh episodes: other data, so other (finite) metrics than the uninterrupted run
    assert resumed[0]["rollout/reward"] != seen[4]["rollout/reward"]
    assert all(np.isfinite(v) for m in resumed for k, v in m.items()
               if isinstance(v, float) and k != "train/sps")


def test_nan_in_parameters_is_named():
    cfg = toy_config()
    trainer = Trainer(cfg)
    carry = trainer.init(cfg.run.seed)
    with torch.no_grad():
        next(carry.agent.actor.parameters())[0, 0] = float("inf")
    from reppo_common.guard import first_nonfinite

    info = {"train/q": torch.tensor(1.0)}
    flags = CK.finite_flags(carry.agent, info)
    assert first_nonfinite(list(info), flags.numpy()) == "params/actor"


# --------------------------------------------------------------------------------------------
# Refusals (the ones both ports share: tests/ports/test_resume.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def init_ckpt(tmp_path):
    cfg = toy_config()
    trainer = Trainer(cfg)
    carry = trainer.init(cfg.run.seed)
    info = save_state(tmp_path, cfg, carry, trainer.env, iteration=1, env_steps=STEPS_PER_ITER,
                      wall_s=1.0, eval_return=None, best_eval_return=None, last_eval={},
                      evals_done=0)
    return tmp_path, cfg, info


def test_refuses_missing_or_misshapen_state_arrays(init_ckpt):
    _run_dir, cfg, info = init_ckpt
    trainer = Trainer(cfg)
    carry = trainer.init(cfg.run.seed)
    expected = CK.expected_shapes(carry, trainer.env)
    arrays = dict(C.load_state_arrays(info))
    CK.check_arrays(arrays, expected, source="ckpt")  # the valid one passes
    bad = dict(arrays)
    bad["obs"] = np.zeros((3, 2), np.float32)
    with pytest.raises(UserError, match=r"obs with shape \(3, 2\)"):
        CK.check_arrays(bad, expected, source="ckpt")
    bad = {k: v for k, v in arrays.items() if k != "streams/kl"}
    with pytest.raises(UserError, match="lacks state array 'streams/kl'"):
        CK.check_arrays(bad, expected, source="ckpt")
    bad = {**arrays, "opt/actor/99/step": np.zeros((), np.float32)}
    with pytest.raises(UserError, match="opt/actor/99/step"):
        CK.check_arrays(bad, expected, source="ckpt")


# --------------------------------------------------------------------------------------------
# The real CLI: SIGKILL, then --resume
# --------------------------------------------------------------------------------------------

CLI_ARGS = ["--backend", "torch", "--env", "toy/Bandit", "--preset", "tiny", "--steps",
            str(120 * STEPS_PER_ITER), "--no-progress", f"--run.eval_interval={30 * STEPS_PER_ITER}",
            f"--run.checkpoint_interval={10 * STEPS_PER_ITER}", "--run.device=cpu"]


def _env() -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _metrics(run_dir: Path) -> list[dict]:
    return [_strip(json.loads(x)) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cli_sigkill_then_resume_gives_identical_metrics(tmp_path):
    import time

    ref = tmp_path / "ref"
    p = subprocess.run([sys.executable, str(DRIVER), "train", *CLI_ARGS, "--run-dir", str(ref)],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(DRIVER), "train", *CLI_ARGS, "--run-dir",
                             str(run_dir)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not list((run_dir / "checkpoints").glob("state_*.json")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() - t0 < 600
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    last = C.latest_checkpoint(run_dir / "checkpoints")
    assert last.env_steps < 120 * STEPS_PER_ITER, "the run finished before it was killed"
    p = subprocess.run([sys.executable, str(DRIVER), "train", "--resume", str(run_dir),
                        "--no-progress"], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"resuming from {last.manifest_path.name}" in p.stderr
    assert _metrics(run_dir) == _metrics(ref)


@pytest.mark.slow
@pytest.mark.long
def test_resume_exact_on_dmc_through_the_jax_bridge(tmp_path):
    """DMC's whole VecEnvState travels through the bridge's get_state/set_state (~2 min)."""
    pytest.importorskip("mujoco_playground")
    cfg = apply_overrides(preset_config("tiny"), {
        "env.name": "dmc/CartpoleBalance", "rollout.total_env_steps": 6 * STEPS_PER_ITER,
        "run.eval_interval": 3 * STEPS_PER_ITER, "run.checkpoint_interval": 2 * STEPS_PER_ITER,
        "run.keep_checkpoints": 100, "run.device": "cpu", "run.eval_episodes": 2})
    seen: list[dict] = []
    train(cfg, tmp_path / "a", TrainHooks(on_train_metrics=seen.append,
                                          on_eval_metrics=seen.append))
    steps = 4 * STEPS_PER_ITER
    _copy_checkpoint(tmp_path / "a", tmp_path / "b", steps)
    assert any(k.startswith("env/") for k in C.load_state_arrays(
        C.latest_checkpoint(tmp_path / "b" / "checkpoints")))
    resumed: list[dict] = []
    train(cfg, tmp_path / "b", TrainHooks(on_train_metrics=resumed.append,
                                          on_eval_metrics=resumed.append), resume=True)
    assert [_strip(m) for m in resumed] == [_strip(m) for m in seen if m["env_steps"] > steps]


def test_resume_exact_with_the_ppo_value_network(tmp_path):
    """actor.gradient=ppo adds the state-value network and its Adam state to the checkpoint."""
    cfg = toy_config(iters=6, **{"actor.gradient": "ppo"})
    seen: list[dict] = []
    train(cfg, tmp_path / "a", TrainHooks(on_train_metrics=seen.append,
                                          on_eval_metrics=seen.append))
    steps = 4 * STEPS_PER_ITER
    _copy_checkpoint(tmp_path / "a", tmp_path / "b", steps)
    arrays = C.load_state_arrays(C.latest_checkpoint(tmp_path / "b" / "checkpoints"))
    assert "opt/value/0/exp_avg" in arrays
    resumed: list[dict] = []
    train(cfg, tmp_path / "b", TrainHooks(on_train_metrics=resumed.append,
                                          on_eval_metrics=resumed.append), resume=True)
    assert [_strip(m) for m in resumed] == [_strip(m) for m in seen if m["env_steps"] > steps]
