import json
import os

import pytest

from reppo_common.errors import UserError
from reppo_common.runs import MetricsWriter, RunDir, default_run_dir, read_metrics
from reppo_common.seeding import stream_int, stream_rng
from spec.presets import preset_config


def test_create_load_and_refuse_reuse(tmp_path):
    cfg = preset_config("tiny")
    run = RunDir.create(tmp_path / "r", cfg, {"backend": "jax"})
    assert run.config_path.is_file() and run.checkpoints_dir.is_dir()
    assert run.load_config() == cfg and run.load_meta()["backend"] == "jax"
    with pytest.raises(UserError, match="in use by another reppo process"):
        RunDir.create(tmp_path / "r", cfg)  # the first one still holds the writer lock
    run.lock.release()
    (run.checkpoints_dir / "state_000000000064.json").write_text("{}")
    with pytest.raises(UserError, match="--resume"):
        RunDir.create(tmp_path / "r", cfg)
    assert RunDir.open_existing(tmp_path / "r").load_config() == cfg
    with pytest.raises(UserError, match="not a reppo run directory"):
        RunDir.open_existing(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(UserError, match="cannot write run directory"):
        RunDir.create(ro / "r", preset_config("tiny"))


def test_unwritable_parent_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError):
        RunDir.create(tmp_path / "f" / "r", preset_config("tiny"))


def test_default_run_dir():
    p = default_run_dir("dmc/CartpoleBalance", "jax", 3)
    assert p.parts[:2] == ("runs", "dmc_CartpoleBalance") and p.name.startswith("jax-seed3-")


def test_metrics_writer_and_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsWriter(path) as w:
        w.write({"env_steps": 10, "eval/return_mean": 1.5})
        w.write({"env_steps": 20, "train/kl": float("nan")})
    recs = read_metrics(path)
    assert [r["env_steps"] for r in recs] == [10, 20] and recs[1]["train/kl"] is None
    assert recs.truncated_line is None
    # crash mid-line, then resume: the tail is repaired and wall_s continues
    with open(path, "a") as fh:
        fh.write('{"env_steps": 30, "wall')
    assert read_metrics(path).truncated_line is not None
    last_wall = recs[-1]["wall_s"]
    with MetricsWriter(path) as w:
        out = w.write({"env_steps": 40})
    assert out["wall_s"] >= last_wall
    recs = read_metrics(path)
    assert [r["env_steps"] for r in recs] == [10, 20, 40] and recs.truncated_line is None
    for line in path.read_text().splitlines():
        json.loads(line)


def test_seeding_streams_independent_and_stable():
    a = stream_rng(0, "eval").integers(0, 2**31, 4)
    assert (a == stream_rng(0, "eval").integers(0, 2**31, 4)).all()
    assert not (a == stream_rng(0, "env_reset").integers(0, 2**31, 4)).all()
    assert not (a == stream_rng(1, "eval").integers(0, 2**31, 4)).all()
    assert 0 <= stream_int(5, "x") < 2**32
    with pytest.raises(ValueError):
        stream_rng(-1, "eval")
