"""Data-parallel JAX training (``reppo_jax.distributed``) on two virtual CPU devices.

The checks that need two devices run ``tests/jax/multidevice_check.py`` in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (the flag must be set before jax is
imported). Input errors (``run.devices`` that does not divide the batch, more devices than
visible) are checked in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

from reppo_common.errors import UserError  # noqa: E402
from spec.config import ConfigError, apply_overrides  # noqa: E402
from spec.presets import preset_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHECK = Path(__file__).with_name("multidevice_check.py")


def _run_check(name: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "")
                         + " --xla_force_host_platform_device_count=2").strip(),
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(CHECK), name], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_devices_equal_one_device():
    """One iteration on 2 devices (envs and minibatches split, gradients all-reduced) gives the
    1-device parameters, optimiser states, log α/β, observation statistics and metrics to float32
    reduction-order tolerance; replicated values are bit-identical on both devices."""
    r = _run_check("equivalence")
    assert r["layout"] == {"obs": "P('envs',)", "obs_shard_rows": [8, 8],
                           "log_alpha_replicated": True}
    assert r["out_obs_spec"] == "P('envs',)"  # the layout survives the iteration
    # update() splits each minibatch array (obs, action, reward, target, next_emb) over the
    # devices on 2 devices; 1 device has no hint at all
    assert r["minibatch_constraints"] == [0, 5], r
    assert r["worst_rel"] <= r["tolerance"], r
    assert r["info_rel"] <= r["tolerance"], r
    # not vacuous: the iteration moved the parameters far beyond the tolerance
    assert r["max_param_move"] > 10 * r["tolerance"], r
    assert r["replicas_identical"]


def test_two_device_training_evaluates_checkpoints_and_resumes_exactly():
    """``train()`` on 2 devices: evaluation, per-iteration checkpoints of the sharded carry, and a
    resume into the 2-device layout that continues bit-identically; the iteration and the
    evaluation each compile once for all three runs."""
    r = _run_check("train")
    assert r["iterations"] == 4 and r["finite"], r
    # one program each for the iteration and the evaluation, across fresh, short and resumed runs
    assert (r["iteration_compiles"], r["evaluate_compiles"]) == (1, 1), r
    assert r["resumed_iterations"] == [4]
    assert r["resume_exact"], r
    assert r["final_eval"]["eval/episodes"] == 4


def _cfg(**kw):
    base = {"env.name": "toy/Bandit", "rollout.num_envs": 16, "rollout.num_steps": 8,
            "rollout.num_minibatches": 4, "rollout.total_env_steps": 1024}
    return apply_overrides(preset_config("tiny"), {**base, **kw})


def test_devices_must_divide_envs_and_minibatches():
    assert _cfg(**{"run.devices": 2}).run.devices == 2
    assert _cfg().run.devices is None
    with pytest.raises(ConfigError, match=r"run.devices=3 is invalid: must divide "
                                          r"rollout.num_envs=16 .*valid counts near it: .*2, 4"):
        _cfg(**{"run.devices": 3})
    # 16 envs x 8 steps / 64 minibatches = 2 samples per minibatch: not splittable over 4
    with pytest.raises(ConfigError, match=r"run.devices=4 is invalid: each minibatch of .* = 2 "
                                          r"samples must split evenly"):
        _cfg(**{"run.devices": 4, "rollout.num_minibatches": 64})
    with pytest.raises(ConfigError, match=r"run.devices=0 is invalid"):
        _cfg(**{"run.devices": 0})


def test_more_devices_than_visible_is_one_line_error():
    from reppo_jax.distributed import select_devices

    import jax

    n = len(jax.devices())
    with pytest.raises(UserError, match=rf"run.devices={n + 1} but JAX sees only {n} "):
        select_devices(n + 1)
    assert len(select_devices(None)) == n


def test_cli_devices_alias_sets_run_devices():
    from reppo_common import cli

    parser = cli._build_parser()
    args, extras = parser.parse_known_args(["train", "--env", "dmc/CartpoleBalance",
                                            "--devices", "2"])
    cfg, _env = cli._build_train_config(args, cli._collect_overrides(extras))
    assert cfg.run.devices == 2
    args, extras = parser.parse_known_args(["train", "--run.devices=4"])
    cfg, _env = cli._build_train_config(args, cli._collect_overrides(extras))
    assert cfg.run.devices == 4


def test_discrete_host_env_refuses_several_devices():
    """A host-stepped env (``env.host``: Atari via envpool, not installed in CI) cannot be split
    over devices; the refusal comes before the trainer uses the env (a stand-in object with
    only the flags ``make_trainer`` and the check read)."""
    from types import SimpleNamespace

    from reppo_jax.envs.toy_discrete import make_discrete_bandit
    from reppo_jax.train import make_trainer

    cfg = apply_overrides(preset_config("tiny"), {"env.name": "toy/DiscreteBandit",
                                                  "run.devices": 2})
    with pytest.raises(UserError, match=r"^run.devices=2: toy/DiscreteBandit is stepped on the "
                                        r"host .*cannot be split over devices; use --devices 1$"):
        make_trainer(cfg, SimpleNamespace(discrete=True, host=True, num_envs=8),
                     make_discrete_bandit(2))


@pytest.fixture(scope="module")
def discrete_check() -> dict:
    """The D-REPPO checks of ``multidevice_check.py discrete`` (one subprocess for both tests)."""
    return _run_check("discrete")


def test_discrete_two_devices_equal_one_device(discrete_check):
    """D-REPPO: one iteration on 2 devices equals the 1-device iteration to the same float32
    reduction-order tolerance as the continuous agent (1e-4 of each leaf's magnitude; see
    ``multidevice_check.RELATIVE_TOLERANCE``): the categorical actions are sampled per env from
    replicated parameters, so both runs see the same batch, and only the cross-device sums of
    the minibatch gradients, the α/β inputs and the metrics are ordered differently."""
    r = discrete_check
    assert r["trainer"] == "DiscreteTrainer"
    assert r["layout"] == {"obs": "P('envs',)", "obs_shard_rows": [8, 8],
                           "log_alpha_replicated": True}
    assert r["out_obs_spec"] == "P('envs',)"
    assert r["minibatch_constraints"] == [0, 5], r  # as for the continuous agent
    assert r["worst_rel"] <= r["tolerance"], r
    assert r["info_rel"] <= r["tolerance"], r
    assert r["max_param_move"] > 10 * r["tolerance"], r
    assert r["replicas_identical"]


def test_discrete_two_device_training_compiles_once_and_resumes_exactly(discrete_check):
    """D-REPPO ``train()`` on 2 devices: one iteration program and one evaluation program over a
    fresh, a short and a resumed run; checkpoints of the sharded carry resume bit-identically."""
    r = discrete_check["train"]
    assert r["iterations"] == 4 and r["finite"], r
    assert (r["iteration_compiles"], r["evaluate_compiles"]) == (1, 1), r
    assert r["resumed_iterations"] == [4]
    assert r["resume_exact"], r
    assert r["final_eval"]["eval/episodes"] == 4


def test_cli_refuses_devices_that_do_not_split_the_batch_before_writing(tmp_path):
    """With all devices (the default ``run.devices``) on 2 virtual devices and 3 envs, the
    trainer refuses the setup; the CLI asks it before creating the run directory, so the
    one-line error leaves nothing behind and the suggested ``--devices 1`` then trains into
    the same ``--run-dir`` (a directory holding the failed start's config.json would have
    refused the changed config)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "")
                         + " --xla_force_host_platform_device_count=2").strip()}
    run_dir = tmp_path / "run"
    argv = [sys.executable, str(ROOT / "tests" / "jax" / "toy_cli.py"), "train", "--env",
            "toy/Bandit", "--preset", "tiny", "--steps", "48", "--run-dir", str(run_dir),
            "--rollout.num_envs=3", "--rollout.num_steps=16", "--rollout.num_minibatches=1",
            "--no-progress"]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "2 devices cannot split rollout.num_envs=3" in err[0], err
    assert not run_dir.exists()
    proc = subprocess.run(argv + ["--devices", "1"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "metrics.jsonl").read_text().strip()
