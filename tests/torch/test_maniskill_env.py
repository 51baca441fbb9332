"""ManiSkill3 adapter (``reppo_torch.envs.maniskill``): protocol conformance, auto-reset with the
true final observation, success bookkeeping and its bootstrap modes, action clipping, seeding,
and the CPU worker pool against the in-process loop.

Skipped (with the reason) when mani-skill is not installed or SAPIEN finds no usable Vulkan
device (run ``scripts/setup_vulkan.sh`` on a machine without GPU).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mani_skill", reason="mani-skill not installed (pip install -e '.[torch]')")

from reppo_common.errors import UserError  # noqa: E402
from reppo_torch.envs.base import StepOutput, VecEnv  # noqa: E402
from reppo_torch.envs import maniskill as ms  # noqa: E402

TASK = "maniskill/PushCube-v1"
T = 5  # short forced time limit


def _build(num_envs: int = 2, **kw) -> ms.ManiSkillVecEnv:
    kw.setdefault("vectorization", "inprocess")
    kw.setdefault("physics_impl", "physx_cpu")
    kw.setdefault("max_episode_steps", T)
    kw.setdefault("random_episode_offsets", False)
    try:
        return ms.make_maniskill_env(TASK, num_envs, **kw)
    except UserError as exc:
        if "Vulkan" in str(exc):
            pytest.skip(f"no usable Vulkan device for SAPIEN: {exc}")
        raise


@pytest.fixture(scope="module")
def env():
    e = _build(2)
    yield e
    e.close()


def _zeros(env) -> torch.Tensor:
    return torch.zeros(env.num_envs, env.action_dim)


def test_protocol_shapes_dtypes_device(env):
    assert isinstance(env, VecEnv)
    assert env.physics_impl == "physx_cpu" and env.device == torch.device("cpu")
    assert env.max_episode_steps == T and env.reward_range == (0.0, 1.0)
    assert (env.obs_dim, env.action_dim) == (35, 8)  # PushCube state obs, Panda joint deltas
    obs = env.reset(seed=0)
    assert obs.shape == (2, env.obs_dim) and obs.dtype == torch.float32
    out = env.step(torch.rand(2, env.action_dim) * 2 - 1)
    assert isinstance(out, StepOutput)
    n = env.num_envs
    assert out.obs.shape == out.final_obs.shape == (n, env.obs_dim)
    assert out.obs.dtype == out.final_obs.dtype == out.reward.dtype == torch.float32
    assert out.reward.shape == out.terminated.shape == out.truncated.shape == (n,)
    assert out.terminated.dtype == out.truncated.dtype == torch.bool
    assert out.info["episode_return"].dtype == torch.float32
    assert out.info["episode_length"].dtype == torch.int64
    assert out.info["success"].dtype == torch.bool and out.info["success"].shape == (n,)
    for t in (out.obs, out.reward, out.final_obs, out.info["success"]):
        assert t.device == env.device
    assert torch.all((out.reward >= 0) & (out.reward <= 1))


def test_autoreset_keeps_true_final_obs(env):
    """Truncation at step T: obs is the next episode's first obs, final_obs the obs the step
    produced, both equal to a bare ManiSkill env replayed with the same episode seeds."""
    seed = 3
    env.reset(seed=seed)
    rewards = []
    for t in range(T):
        out = env.step(_zeros(env))
        rewards.append(out.reward)
        if t < T - 1:
            assert not out.truncated.any() and not out.terminated.any()
            assert torch.equal(out.obs, out.final_obs)
    assert out.truncated.all() and not out.terminated.any()
    assert not torch.allclose(out.obs, out.final_obs)
    assert torch.equal(out.info["episode_length"], torch.full((2,), T))
    torch.testing.assert_close(out.info["episode_return"], torch.stack(rewards).sum(0))

    # replay env 1 by hand: its episode seeds come from SeedSequence([seed, 1])
    stream = ms._episode_seed_streams(seed, [1])[0]
    raw = ms._make_raw_env("PushCube-v1", 1, "physx_cpu", "pd_joint_delta_pos",
                           "normalized_dense", None)
    try:
        raw.reset(seed=int(stream.integers(2**31 - 1)))
        for _ in range(T):
            obs, *_ = raw.step(np.zeros((1, env.action_dim), np.float32))
        torch.testing.assert_close(out.final_obs[1], obs.reshape(-1), rtol=0, atol=0)
        first, _ = raw.reset(seed=int(stream.integers(2**31 - 1)))
        torch.testing.assert_close(out.obs[1], first.reshape(-1), rtol=0, atol=0)
    finally:
        raw.close()
    # counters restarted: the next step is step 1 of the new episode
    nxt = env.step(_zeros(env))
    assert torch.equal(nxt.info["episode_length"], torch.ones(2, dtype=torch.int64))


def test_seeding_and_action_clipping(env):
    o1 = env.reset(seed=7)
    a1 = env.step(torch.full((2, env.action_dim), 5.0)).obs
    o2 = env.reset(seed=7)
    a2 = env.step(torch.ones(2, env.action_dim)).obs  # 5.0 is clipped to the bound 1.0
    assert torch.equal(o1, o2) and torch.equal(a1, a2)
    assert not torch.equal(env.reset(seed=8), o1)
    assert not torch.equal(o1[0], o1[1])  # envs get different episodes


def test_success_bootstrap_modes(env, monkeypatch):
    """A success ends the episode: reported as truncated (bootstrapped, ManiSkill PPO's
    default), as terminated with bootstrap_at_done='truncated', or ignored until the time
    limit with ignore_terminations=True; info['success'] is the episode's success flag."""
    cls = type(env._group.envs[0])
    monkeypatch.setattr(cls, "evaluate", lambda self: {"success": torch.ones(self.num_envs,
                                                                             dtype=torch.bool)})
    try:
        env.reset(seed=0)
        out = env.step(_zeros(env))
        assert out.truncated.all() and not out.terminated.any() and out.info["success"].all()
        assert torch.equal(out.info["episode_length"], torch.ones(2, dtype=torch.int64))

        env.bootstrap_at_done = "truncated"
        env.reset(seed=0)
        out = env.step(_zeros(env))
        assert out.terminated.all() and not out.truncated.any() and out.info["success"].all()

        env._group.ignore_terminations = True
        env.reset(seed=0)
        for _ in range(T - 1):
            out = env.step(_zeros(env))
            assert not (out.terminated | out.truncated).any()
        out = env.step(_zeros(env))
        assert out.truncated.all() and out.info["success"].all()
    finally:
        env.bootstrap_at_done = "always"
        env._group.ignore_terminations = False
    monkeypatch.undo()
    env.reset(seed=0)
    out = env.step(_zeros(env))
    assert not out.info["success"].any()  # a standing robot does not push the cube


def test_random_offsets_shorten_first_episode_only():
    e = _build(3, random_episode_offsets=True, max_episode_steps=4)
    try:
        e.reset(seed=1)
        lengths = []
        for _ in range(8):
            out = e.step(_zeros(e))
            lengths += out.info["episode_length"][out.truncated].tolist()
        assert min(lengths) >= 1 and max(lengths) == 4
    finally:
        e.close()


def test_vulkan_error_is_one_line_with_fix():
    err = ms._vulkan_error(RuntimeError("failed to find a rendering device"))
    assert isinstance(err, UserError) and "scripts/setup_vulkan.sh" in str(err)
    assert "\n" not in str(err)
    err = ms._vulkan_error('Failed to find a supported physical device "cpu"')
    assert err is not None
    assert ms._vulkan_error(RuntimeError("something else")) is None


def test_physics_impl_choice():
    with pytest.raises(ValueError, match="physics_impl"):
        ms.ManiSkillVecEnv(TASK, 1, physics_impl="warp")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            ms.ManiSkillVecEnv(TASK, 1, physics_impl="physx_cuda")


@pytest.mark.slow  # starts 3 worker processes (each imports mani-skill): ~15 s idle, ~90 s loaded
def test_workers_match_inprocess():
    """The worker pool (2 processes, shared memory) and the hybrid (this process + 1 worker)
    step the same trajectories as the in-process loop."""
    seq = [torch.rand(3, 8, generator=torch.Generator().manual_seed(i)) * 2 - 1
           for i in range(T + 2)]
    outs = {}
    for vec, workers in (("inprocess", None), ("workers", 2), ("hybrid", 1)):
        e = _build(3, vectorization=vec, num_workers=workers, random_episode_offsets=True)
        try:
            assert e.vectorization == vec
            trace = [e.reset(seed=11)]
            for a in seq:
                o = e.step(a)
                trace += [o.obs, o.final_obs, o.reward, o.truncated.float()]
            outs[vec] = torch.cat([t.reshape(-1) for t in trace])
        finally:
            e.close()
    assert torch.equal(outs["inprocess"], outs["workers"])
    assert torch.equal(outs["inprocess"], outs["hybrid"])


@pytest.mark.slow
def test_missing_vulkan_driver_gives_user_error(tmp_path, repo_root):
    """With no Vulkan ICD visible, building the env fails with the one-line fix message."""
    code = ("from reppo_torch.envs.maniskill import make_maniskill_env\n"
            "from reppo_common.errors import UserError\n"
            "try:\n"
            "    make_maniskill_env('PushCube-v1', 1, physics_impl='physx_cpu')\n"
            "except UserError as e:\n"
            "    print('USERERROR', e)\n")
    env = dict(os.environ, VK_ICD_FILENAMES=str(tmp_path / "none.json"),
               VK_DRIVER_FILES=str(tmp_path / "none.json"), PYTHONPATH=str(repo_root))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600, cwd=str(tmp_path))
    assert "USERERROR" in res.stdout and "setup_vulkan.sh" in res.stdout, res.stderr[-2000:]


def test_vectorization_env_var_is_checked(monkeypatch):
    monkeypatch.setenv("REPPO_MANISKILL_VECTORIZATION", "threads")
    with pytest.raises(UserError, match="REPPO_MANISKILL_VECTORIZATION"):
        ms.ManiSkillVecEnv(TASK, 2, physics_impl="physx_cpu")
