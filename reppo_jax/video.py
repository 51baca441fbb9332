"""MP4 videos of a run's deterministic policy on MuJoCo (``dmc/``) tasks: ``reppo eval --video``.

The policy tanh(μ) of a checkpoint is rolled out for one episode in a single jitted scan that
keeps only what drawing needs (qpos, qvel, mocap poses, applied forces per agent step); the
frames are then drawn on the CPU with MuJoCo's own renderer and piped as raw RGB into ffmpeg
(H.264, yuv420p, so ordinary players open it).

Rendering needs an OpenGL context without a display. ``MUJOCO_GL`` picks it and is read when
``mujoco`` is first imported, so this module sets it to ``egl`` if it is unset before importing
mujoco (EGL with Mesa's software rasteriser works on CPU-only machines; ``osmesa`` needs
libOSMesa). :func:`check_rendering` draws one tiny frame and turns any failure into a one-line
:class:`UserError` naming the GL backend and the fix. ffmpeg comes from ``PATH`` or the
``imageio-ffmpeg`` package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from reppo_common.errors import UserError  # noqa: E402

__all__ = ["check_rendering", "find_ffmpeg", "write_mp4", "rollout_qpos", "record_video"]

_PROBE_XML = ('<mujoco><worldbody><light pos="0 0 3"/><geom type="sphere" size=".1"/>'
              '</worldbody></mujoco>')


def _probe(mujoco: Any) -> None:
    model = mujoco.MjModel.from_xml_string(_PROBE_XML)
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, 16, 16)
    try:
        mujoco.mj_forward(model, data)
        renderer.update_scene(data)
        renderer.render()
    finally:
        renderer.close()


def check_rendering() -> str:
    """Draw one 16x16 frame of a trivial model; returns the GL backend in use.

    UserError (one line) if mujoco is missing or no OpenGL context can be made."""
    gl = os.environ.get("MUJOCO_GL", "")
    try:
        import warnings

        with warnings.catch_warnings():  # glfw warns per failed call; the error says it all
            warnings.simplefilter("ignore")
            import mujoco  # with a broken MUJOCO_GL the import itself fails (PyOpenGL)

            _probe(mujoco)
    except ModuleNotFoundError as e:
        if e.name != "mujoco":
            raise UserError(f"cannot render with MUJOCO_GL={gl or '(unset)'}: missing module "
                            f"{e.name!r}; try MUJOCO_GL=egl") from None
        raise UserError("--video needs mujoco: pip install -e '.[jax]'") from None
    except Exception as e:  # GL errors come as FatalError, AttributeError, RuntimeError ...
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise UserError(
            f"cannot render on this machine with MUJOCO_GL={gl or '(unset)'} "
            f"({type(e).__name__}: {reason}); try MUJOCO_GL=egl (Mesa EGL works without a "
            f"display) or MUJOCO_GL=osmesa with libOSMesa installed"
        ) from None
    return gl or "default"


def find_ffmpeg() -> str:
    """Path of an ffmpeg executable (PATH first, then imageio-ffmpeg's bundled binary)."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary is missing
        raise UserError("writing MP4 needs ffmpeg: pip install imageio-ffmpeg (or install "
                        "ffmpeg on PATH)") from None


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Encode RGB uint8 frames (H, W, 3; H and W even) to an H.264 MP4; returns the count.

    Written to a temporary name first and renamed, so a failed encode leaves no broken file."""
    out = Path(path)
    it = iter(frames)
    try:
        first = np.asarray(next(it))
    except StopIteration:
        raise UserError("no frames to write") from None
    h, w = first.shape[:2]
    tmp = out.with_name(out.name + ".part.mp4")
    cmd = [find_ffmpeg(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", f"{fps:.6g}", "-i", "-", "-an", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(tmp)]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        raise UserError(f"cannot start ffmpeg to write {str(out)!r}: {e.strerror or e}") from None
    n = 0
    try:
        for frame in (first, *it):
            proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
            n += 1
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise UserError(f"ffmpeg failed writing {str(out)!r}: "
                        f"{' '.join(err.split())[:200] or 'exit status ' + str(proc.returncode)}")
    os.replace(tmp, out)
    return n


def rollout_qpos(config: Any, checkpoint: str | Path, seed: int,
                 max_steps: int | None = None) -> dict[str, Any]:
    """One deterministic-policy episode of ``config.env.name`` from the params in ``checkpoint``.

    Returns the per-agent-step arrays the renderer needs (``qpos``, ``qvel``, ``mocap_pos``,
    ``mocap_quat``, ``xfrc_applied``, cut at the end of the episode), the episode ``return``,
    the playground env (for its ``mj_model``) and ``fps`` (1 / (ctrl_dt * action_repeat))."""
    import jax
    import jax.numpy as jnp

    from reppo_jax import agent as A
    from reppo_jax import distributions as D
    from reppo_jax.train import make_env, make_trainer, state_from_canonical
    from spec import params as P

    from dataclasses import replace

    env = make_env(config, 1, evaluation=True)
    trainer = make_trainer(replace(config, run=replace(config.run, devices=1)), env=env, eval_env=env)
    h, nets = trainer.h, trainer.nets
    try:
        flat, _meta = P.load_params(checkpoint)
    except (OSError, ValueError) as e:
        raise UserError(str(e)) from None
    state = state_from_canonical(h, flat)
    steps = int(max_steps or env.max_episode_steps)

    def pose(sim):
        d = sim.data
        return {k: getattr(d, k)[0] for k in ("qpos", "qvel", "mocap_pos", "mocap_quat",
                                              "xfrc_applied")}

    @jax.jit
    def run(actor, stats, key):
        env_state, obs = env.reset(key)
        first = pose(env_state.sim)

        def step(c, _):
            env_state, obs, alive, ret = c
            x = A._norm(h, stats, obs)  # the same normalisation as training/eval
            mean, _ = A.policy(nets, h, actor, x)
            env_state, out = env.step(env_state, D.deterministic_action(mean))
            ret = ret + alive * out.reward[0]
            # the frame after a terminal step still shows the final state (before auto-reset)
            frame = pose(env_state.sim)
            done = jnp.logical_or(out.terminated[0], out.truncated[0])
            return (env_state, out.obs, alive * (1.0 - done), ret), (frame, alive)

        init = (env_state, obs, jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32))
        (_, _, _, ret), (frames, alive) = jax.lax.scan(step, init, None, length=steps)
        return first, frames, alive, ret

    first, frames, alive, ret = jax.device_get(
        run(state.actor, state.obs_stats, jax.random.PRNGKey(seed)))
    n = int(np.sum(np.asarray(alive) > 0))
    traj = {k: np.concatenate([np.asarray(first[k])[None], np.asarray(v)[:n]])
            for k, v in frames.items()}
    playground_env = env.env
    fps = 1.0 / (float(playground_env.dt) * env.action_repeat)
    return {"traj": traj, "return": float(ret), "env": playground_env, "fps": fps,
            "steps": n}


def _render_frames(mj_model: Any, traj: dict[str, np.ndarray], height: int, width: int,
                   camera: int | str | None):
    import mujoco

    # the model's offscreen buffer bounds the frame size
    mj_model.vis.global_.offwidth = max(int(mj_model.vis.global_.offwidth), width)
    mj_model.vis.global_.offheight = max(int(mj_model.vis.global_.offheight), height)
    cam = (0 if mj_model.ncam > 0 else -1) if camera is None else camera
    renderer = mujoco.Renderer(mj_model, height, width)
    data = mujoco.MjData(mj_model)
    try:
        for i in range(traj["qpos"].shape[0]):
            data.qpos[:] = traj["qpos"][i]
            data.qvel[:] = traj["qvel"][i]
            if mj_model.nmocap:
                data.mocap_pos[:] = traj["mocap_pos"][i]
                data.mocap_quat[:] = traj["mocap_quat"][i]
            data.xfrc_applied[:] = traj["xfrc_applied"][i]
            mujoco.mj_forward(mj_model, data)
            renderer.update_scene(data, camera=cam)
            yield renderer.render()
    finally:
        renderer.close()


def record_video(config: Any, checkpoint: str | Path, out: str | Path, *, seed: int = 0,
                 height: int = 240, width: int = 320, camera: int | str | None = None,
                 max_steps: int | None = None) -> dict[str, Any]:
    """Roll out the deterministic policy of ``checkpoint`` for one episode and write ``out``
    (MP4). ``camera`` defaults to the model's first camera (the DMC tracking/fixed view).
    Returns ``{"path", "frames", "fps", "return"}``. Every failure is a one-line UserError."""
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise UserError(f"--video must name an .mp4 file, got {str(out)!r}")
    if not str(config.env.name).startswith("dmc/"):
        raise UserError(f"--video supports MuJoCo (dmc/) tasks only, not {config.env.name}")
    if height % 2 or width % 2:
        raise UserError(f"video size must be even for H.264, got {width}x{height}")
    check_rendering()
    find_ffmpeg()
    ro = rollout_qpos(config, checkpoint, seed, max_steps)
    frames = _render_frames(ro["env"].mj_model, ro["traj"], height, width, camera)
    n = write_mp4(out, frames, ro["fps"])
    return {"path": str(out), "frames": n, "fps": ro["fps"], "return": ro["return"]}
