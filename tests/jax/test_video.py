"""``reppo eval --video``: MP4 writing, the rendering probe and its one-line failure, and a short
end-to-end recording of an untrained CartpoleBalance policy (skipped where this machine cannot
render or has no ffmpeg)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("mujoco")

from reppo_common.errors import UserError  # noqa: E402
from reppo_jax import video as V  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _ffmpeg_or_skip() -> None:
    try:
        V.find_ffmpeg()
    except UserError as e:
        pytest.skip(str(e))


def _rendering_or_skip() -> None:
    try:
        V.check_rendering()
    except UserError as e:
        pytest.skip(f"no OpenGL rendering on this machine: {e}")


def test_write_mp4_synthetic_frames(tmp_path):
    _ffmpeg_or_skip()
    frames = [np.full((32, 48, 3), i * 20, np.uint8) for i in range(10)]
    out = tmp_path / "sub" / "a.mp4"
    assert V.write_mp4(out, frames, fps=10) == 10
    data = out.read_bytes()
    assert len(data) > 500 and b"ftyp" in data[:64]  # an MP4 container
    assert not list(tmp_path.rglob("*.part.mp4"))
    with pytest.raises(UserError, match="no frames"):
        V.write_mp4(tmp_path / "b.mp4", [], fps=10)
    with pytest.raises(UserError, match="ffmpeg failed"):  # odd size: H.264 refuses
        V.write_mp4(tmp_path / "c.mp4", [np.zeros((33, 47, 3), np.uint8)], fps=10)
    assert not (tmp_path / "c.mp4").exists()


def test_rendering_failure_is_one_line(tmp_path):
    code = ("from reppo_jax.video import check_rendering\n"
            "from reppo_common.errors import UserError\n"
            "try:\n    check_rendering()\nexcept UserError as e:\n    print('USERERROR', e)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "nonsense"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip()
    assert line.startswith("USERERROR cannot render") and "MUJOCO_GL=nonsense" in line
    assert "\n" not in line


def test_record_video_input_checks(tmp_path):
    from spec.presets import preset_config
    from spec.config import apply_overrides

    cfg = preset_config("tiny")
    with pytest.raises(UserError, match=".mp4"):
        V.record_video(cfg, tmp_path / "p.npz", tmp_path / "v.gif")
    toy = apply_overrides(cfg, {"env.name": "minatar/Breakout"})
    with pytest.raises(UserError, match="dmc/"):
        V.record_video(toy, tmp_path / "p.npz", tmp_path / "v.mp4")


_E2E = """
import json, sys
from pathlib import Path
from reppo_common.errors import UserError
from reppo_jax import video as V
try:
    V.check_rendering(); V.find_ffmpeg()
except UserError as e:
    print(json.dumps({"skip": str(e)})); sys.exit(0)
from reppo_jax.train import Trainer, canonical_init, make_env
from spec import params as P
from spec.presets import preset_config
tmp = Path(sys.argv[1])
cfg = preset_config("tiny")
env = make_env(cfg, 1, evaluation=True)
trainer = Trainer(cfg, env=env, eval_env=env)
P.save_params(tmp / "params.npz", canonical_init(cfg, trainer.h, 0))
res = V.record_video(cfg, tmp / "params.npz", tmp / "v.mp4", max_steps=12, height=64, width=96)
print(json.dumps(res))
"""


@pytest.mark.slow
def test_record_video_end_to_end(tmp_path):
    """An untrained policy's first 12 steps of CartpoleBalance -> 13 frames of MP4. Runs in a
    fresh process because MUJOCO_GL only takes effect before mujoco's first import."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": os.environ.get("MUJOCO_GL",
                                                                               "egl")}
    p = subprocess.run([sys.executable, "-c", _E2E, str(tmp_path)], capture_output=True,
                       text=True, env=env, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if "skip" in res:
        pytest.skip(f"cannot record here: {res['skip']}")
    assert res["frames"] == 13 and res["fps"] > 0 and np.isfinite(res["return"])
    assert (tmp_path / "v.mp4").stat().st_size > 500
