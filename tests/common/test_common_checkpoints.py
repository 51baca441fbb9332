"""Framework-neutral checkpoint plumbing (reppo_common.checkpoints): atomic writes, checksums,
manifest validation, compatibility checks, pruning, metrics rewind, disk-full errors."""

import errno
import json
import os

import numpy as np
import pytest

from reppo_common import checkpoints as C
from reppo_common.errors import UserError
from reppo_common.runs import MetricsWriter
from spec.presets import preset_config

CFG = preset_config("tiny").to_dict()


def _write(d, steps, eval_return=None, backend="jax", config=CFG):
    return C.write_checkpoint(
        d, backend=backend, env_steps=steps, iteration=steps // 64, config=config,
        params={"w": np.arange(4, dtype=np.float32)},
        state={"opt/mu": np.full((3,), steps, np.float32), "key": np.array([1, 2], np.uint32)},
        wall_s=steps / 10, eval_return=eval_return, best_eval_return=eval_return,
        versions={"numpy": np.__version__})


def test_roundtrip_and_files(tmp_path):
    info = _write(tmp_path, 128, eval_return=3.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "params_000000000128.npz", "state_000000000128.json", "state_000000000128.npz"]
    again = C.read_manifest(info.manifest_path)
    assert again.env_steps == 128 and again.iteration == 2 and again.wall_s == 12.8
    assert again.eval_return == 3.5
    C.verify_files(again)
    arrays = C.load_state_arrays(again)
    assert arrays["opt/mu"].tolist() == [128.0] * 3 and arrays["key"].dtype == np.uint32
    from spec import params as P

    params, meta = P.load_params(info.params_path)  # the canonical file `reppo eval` reads
    assert params["w"].tolist() == [0, 1, 2, 3] and meta["env_steps"] == 128


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path):
    path = tmp_path / "f.bin"
    C.atomic_write(path, lambda f: f.write(b"old"))

    def boom(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        C.atomic_write(path, boom)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_disk_full_is_one_line_user_error_and_keeps_last(tmp_path, monkeypatch):
    first = _write(tmp_path, 64)

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C, "atomic_write", full)
    with pytest.raises(UserError) as e:
        _write(tmp_path, 128)
    msg = str(e.value)
    assert "No space left on device" in msg and "state_000000000064.json" in msg
    monkeypatch.undo()
    assert C.latest_checkpoint(tmp_path).env_steps == 64
    C.verify_files(first)


def test_unwritable_checkpoint_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the directory should be: fails even as root
    with pytest.raises(UserError, match="cannot write checkpoint .*last complete checkpoint: none"):
        _write(blocker / "checkpoints", 64)


def test_corruption_is_detected(tmp_path):
    info = _write(tmp_path, 64)
    data = bytearray(info.state_path.read_bytes())
    data[-10] ^= 0xFF
    info.state_path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="is corrupt: sha256"):
        C.load_state_arrays(info)
    info.state_path.write_bytes(bytes(data[:20]))
    with pytest.raises(UserError, match="truncated or corrupt: 20 bytes"):
        C.verify_files(info)
    info.params_path.unlink()
    with pytest.raises(UserError, match="incomplete: params file"):
        C.verify_files(info)


def test_manifest_checks(tmp_path):
    info = _write(tmp_path, 64)
    m = dict(info.manifest)
    m["format_version"] = 99
    C.write_manifest(info.manifest_path, m)
    with pytest.raises(UserError, match="checkpoint format version 99"):
        C.read_manifest(info.manifest_path)
    info.manifest_path.write_text("{not json")
    with pytest.raises(UserError, match="corrupt or truncated"):
        C.latest_checkpoint(tmp_path)
    assert C.latest_checkpoint(tmp_path, strict=False) is None  # housekeeping skips it


def test_no_checkpoint(tmp_path):
    with pytest.raises(UserError, match="no resumable checkpoint"):
        C.latest_checkpoint(tmp_path / "missing")
    (tmp_path / "params_000000000064.npz").write_bytes(b"")
    with pytest.raises(UserError, match="older reppo"):
        C.latest_checkpoint(tmp_path)


def test_latest_params_file(tmp_path):
    """The params file reppo eval reads: the newest by env steps, with or without a manifest."""
    with pytest.raises(FileNotFoundError, match="no checkpoints in"):
        C.latest_params_file(tmp_path / "missing")
    assert C.latest_params_file(tmp_path, required=False) is None
    _write(tmp_path, 64)
    _write(tmp_path, 128)
    assert C.latest_params_file(tmp_path) == C.latest_checkpoint(tmp_path).params_path
    (tmp_path / "params_000000001024.npz").write_bytes(b"")  # an older reppo's, no manifest
    assert C.latest_params_file(tmp_path).name == "params_000000001024.npz"


def test_check_compatible(tmp_path):
    info = _write(tmp_path, 64)
    C.check_compatible(info, backend="jax", config=CFG)
    with pytest.raises(UserError, match="backend 'jax', not 'torch'"):
        C.check_compatible(info, backend="torch", config=CFG)
    other = json.loads(json.dumps(CFG))
    other["rollout"]["total_env_steps"] = 10**6  # changeable on resume
    other["run"]["eval_interval"] = 5
    C.check_compatible(info, backend="jax", config=other)
    other["actor"]["hidden_dim"] = 7
    with pytest.raises(UserError, match=r"actor\.hidden_dim=32 in the checkpoint, "
                                        r"actor\.hidden_dim=7 in config\.json"):
        C.check_compatible(info, backend="jax", config=other)
    newer = dict(CFG, schema_version=CFG["schema_version"] + 1)
    with pytest.raises(UserError, match="config schema_version"):
        C.check_compatible(info, backend="jax", config=newer)
    m = dict(info.manifest, params_schema_version=0)
    C.write_manifest(info.manifest_path, m)
    with pytest.raises(UserError, match="params schema version 0"):
        C.check_compatible(C.read_manifest(info.manifest_path), backend="jax", config=CFG)


def test_fields_added_after_the_checkpoint_match_at_their_default(tmp_path):
    """A checkpoint written before a config field existed (e.g. loss.ppo_clip) resumes when the
    run uses that field's default, and is refused when it does not."""
    older = json.loads(json.dumps(CFG))
    del older["loss"]["ppo_clip"]
    info = _write(tmp_path, 64, config=older)
    C.check_compatible(info, backend="jax", config=CFG)
    changed = json.loads(json.dumps(CFG))
    changed["loss"]["ppo_clip"] = 0.3
    with pytest.raises(UserError, match=r"loss\.ppo_clip='<absent>' in the checkpoint"):
        C.check_compatible(info, backend="jax", config=changed)


def test_version_notes(tmp_path):
    info = _write(tmp_path, 64)
    assert C.version_notes(info, {"numpy": np.__version__}) == []
    assert C.version_notes(info, {"numpy": "0.0"}) == [f"numpy {np.__version__} -> 0.0"]
    v = C.package_versions(["numpy", "surely-not-installed-pkg"])
    assert v["numpy"] == np.__version__ and v["surely-not-installed-pkg"] is None
    assert v["reppo"] and v["python"]


def test_prune_keeps_last_n_plus_best(tmp_path):
    returns = {64: 1.0, 128: 9.0, 192: None, 256: 2.0, 320: 3.0, 384: None}
    for steps, r in returns.items():
        _write(tmp_path, steps, eval_return=r)
    (tmp_path / "params_000000000448.npz").write_bytes(b"orphan of a killed write")
    C.prune(tmp_path, keep=2)
    assert [c.env_steps for c in C.list_checkpoints(tmp_path)] == [128, 320, 384]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 9 and all(("128" in n or "320" in n or "384" in n) for n in names)


def test_rewind_metrics(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"kind": "train", "env_steps": s, "wall_s": s / 10} for s in (64, 128, 192, 256)]
    lines.insert(2, {"kind": "eval", "env_steps": 128, "wall_s": 13})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"kind": "tr')
    assert C.rewind_metrics(path, 128) == 3
    kept = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(r["kind"], r["env_steps"]) for r in kept] == [("train", 64), ("train", 128),
                                                          ("eval", 128)]
    assert C.rewind_metrics(path, 128) == 0
    assert C.rewind_metrics(tmp_path / "none.jsonl", 0) == 0


def test_metrics_writer_wall_offset_and_disk_full(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"env_steps": 64, "wall_s": 99.0}\n')
    w = MetricsWriter(path, wall_offset=12.5)
    rec = w.write({"env_steps": 128})
    assert 12.5 <= rec["wall_s"] < 99.0

    class Full:
        closed = False

        def write(self, _):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    w._fh.close()
    w._fh = Full()
    with pytest.raises(UserError, match="cannot write .*metrics.jsonl: No space left on device"):
        w.write({"env_steps": 192})


def test_remove_temp_files(tmp_path):
    (tmp_path / ".tmp-abc-state_000000000064.npz").write_bytes(b"x")
    _write(tmp_path, 64)
    assert len(C.remove_temp_files(tmp_path)) == 1
    assert C.latest_checkpoint(tmp_path).env_steps == 64


def test_files_get_normal_permissions(tmp_path):
    info = _write(tmp_path, 64)
    umask = os.umask(0)
    os.umask(umask)
    for p in (info.params_path, info.state_path, info.manifest_path):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p
