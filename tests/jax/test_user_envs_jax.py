"""JAX port: a mujoco_playground ``MjxEnv`` a user defines, registered from outside the package
and vectorised by reppo (``wrap_env``), trains through the CLI; the playground locomotion suite
runs 2 iterations where its robot models are available; a registered ``VecEnv`` that breaks
the contract is a one-line error before anything is compiled."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reppo_common.driver import TIMING_KEYS

from reppo_common import cli, registry
from reppo_common.errors import UserError
from reppo_common.registry import register, resolve_env

SLIDER_MODULE = '''
"""A user-defined mujoco_playground MjxEnv: a 1-DoF slider that should move to x = 0.5."""
import jax
import jax.numpy as jp
import mujoco
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env

from reppo_common.registry import register

XML = """<mujoco><option timestep="0.01"/><worldbody><body name="cart">
<joint name="slide" type="slide" axis="1 0 0" damping="1"/>
<geom type="box" size="0.05 0.05 0.05" mass="0.1" contype="0" conaffinity="0"/></body>
</worldbody><actuator><motor joint="slide" ctrlrange="-1 1"/></actuator></mujoco>"""


class Slider(mjx_env.MjxEnv):
    def __init__(self):
        super().__init__(config_dict.create(ctrl_dt=0.02, sim_dt=0.01, episode_length=40))
        self._mj_model = mujoco.MjModel.from_xml_string(XML)
        self._mjx_model = mjx.put_model(self._mj_model, impl="jax")

    def reset(self, rng):
        qpos = jax.random.uniform(rng, (1,), minval=-0.5, maxval=0.5)
        data = mjx_env.make_data(self._mj_model, qpos=qpos, impl="jax")
        data = mjx.forward(self._mjx_model, data)
        return mjx_env.State(data, self._obs(data), jp.zeros(()), jp.zeros(()), {}, {})

    def step(self, state, action):
        data = mjx_env.step(self._mjx_model, state.data, action, self.n_substeps)
        reward = 1.0 - jp.minimum(jp.abs(data.qpos[0] - 0.5), 1.0)
        return state.replace(data=data, obs=self._obs(data), reward=reward)

    def _obs(self, data):
        return jp.concatenate([data.qpos, data.qvel])

    xml_path = ""
    action_size = property(lambda self: 1)
    mj_model = property(lambda self: self._mj_model)
    mjx_model = property(lambda self: self._mjx_model)


register("my/Slider", make_jax=lambda num_envs: Slider(), max_episode_steps=40,
         reward_range=(0.0, 1.0), default_preset="tiny")
'''


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    yield registry.REGISTRY
    sys.modules.pop("my_slider_envs", None)


def test_user_defined_mjx_env_trains_through_the_cli(tmp_path, monkeypatch, clean_registry):
    """A user's own ``MjxEnv`` subclass, registered in a module outside the package, is wrapped
    by reppo (auto-reset, time limit, final observation) and trains 2 iterations via the CLI;
    γ and the value support come from its declared facts."""
    pytest.importorskip("mujoco_playground")
    (tmp_path / "my_slider_envs.py").write_text(SLIDER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    rc = cli.main(["train", "--env", "my_slider_envs:my/Slider", "--steps", "128",
                   "--run-dir", str(run), "--no-progress", "--run.eval_interval=64"])
    assert rc == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["env"]["name"] == "my_slider_envs:my/Slider" and cfg["env"]["v_max"] is None
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [1, 2]
    assert all(np.isfinite(v) for r in train for v in r.values() if isinstance(v, float))
    ev = [r for r in recs if r["kind"] == "eval"][-1]
    assert ev["eval/length_mean"] == 40.0 and 0.0 <= ev["eval/return_mean"] <= 40.0


def test_wrapped_mjx_env_keeps_the_dmc_contract(tmp_path, monkeypatch, clean_registry):
    """Time limit -> truncated (not terminated), final_obs is the pre-reset observation, the
    obs after a truncation is a fresh reset; reward range and dims from the facts."""
    pytest.importorskip("mujoco_playground")
    (tmp_path / "my_slider_envs.py").write_text(SLIDER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from reppo_jax.envs import make_env

    env = make_env("my_slider_envs:my/Slider", 3, max_episode_steps=2,
                   random_episode_offsets=False)
    assert (env.obs_dim, env.action_dim, env.reward_range) == (2, 1, (0.0, 1.0))
    step = jax.jit(env.step)
    state, obs0 = env.reset(jax.random.PRNGKey(0))
    state, out1 = step(state, jnp.ones((3, 1)))
    state, out2 = step(state, jnp.ones((3, 1)))
    assert not out1.truncated.any() and out2.truncated.all() and not out2.terminated.any()
    assert (out2.final_obs[:, 0] > out1.obs[:, 0]).all()  # pushed right: x grew
    assert jnp.all(jnp.abs(out2.obs[:, 0]) <= 0.5) and jnp.all(out2.obs[:, 1] == 0.0)  # reset
    assert out2.info["episode_length"].tolist() == [2, 2, 2]


class _VecEnv:
    """A minimal reppo_jax VecEnv built on the toy env; ``bad`` breaks one part of it."""

    def __init__(self, num_envs, bad=None):
        from reppo_jax.envs.toy import make_toy_env

        self._env = make_toy_env(num_envs, max_episode_steps=50)
        self.num_envs, self.obs_dim, self.action_dim = num_envs, 2, 2
        self.max_episode_steps, self.reward_range = 50, (0.0, 1.0)
        self.bad = bad
        if bad == "bounds":
            self.action_low = -2.0
        if bad == "steps":
            self.max_episode_steps = 60

    def reset(self, key):
        return self._env.reset(key)

    def step(self, state, action, key=None):
        state, out = self._env.step(state, action, key)
        if self.bad == "reward":
            out = out._replace(reward=out.reward[:, None])
        if self.bad == "terminated":
            out = out._replace(terminated=out.terminated.astype(jnp.float32))
        if self.bad == "state":
            state = state._replace(step_count=state.step_count.astype(jnp.float32))
        return state, out


@pytest.mark.parametrize("bad,match", [
    (None, None),
    ("reward", r"step's reward is float32\[4, 1\], expected float\[4\]"),
    ("terminated", r"step's terminated is float32\[4\], expected bool\[4\]"),
    ("state", "same pytree type"),
    ("bounds", r"actions must lie in \[-1, 1\]"),
    ("steps", "max_episode_steps=60 differs from the declared/configured 50"),
])
def test_registered_vec_env_is_checked_against_its_facts(bad, match, clean_registry):
    from reppo_jax.envs import make_env

    register("my/Vec", make_jax=lambda n: _VecEnv(n, bad), max_episode_steps=50,
             reward_range=(0.0, 1.0))
    if match is None:
        assert make_env("my/Vec", 4).num_envs == 4
        return
    with pytest.raises(UserError, match=match) as e:
        make_env("my/Vec", 4)
    assert str(e.value).startswith("my/Vec: ") and "\n" not in str(e.value)


def _menagerie_available() -> bool:
    try:
        from mujoco_playground._src.mjx_env import MENAGERIE_PATH
    except ImportError:
        return False
    return (Path(MENAGERIE_PATH) / "unitree_go1").is_dir()


@pytest.mark.skipif(not _menagerie_available(),
                    reason="playground locomotion needs mujoco_menagerie's robot models, which "
                           "mujoco_playground downloads with git (not available offline)")
def test_playground_go1_runs_two_iterations(tmp_path):
    run = tmp_path / "go1"
    rc = cli.main(["train", "--env", "playground/Go1JoystickFlatTerrain", "--preset", "tiny",
                   "--steps", "128", "--run-dir", str(run), "--no-progress",
                   "--run.eval_episodes=2", "--env.max_episode_steps=32"])
    assert rc == 0
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in recs if r["kind"] == "train"] == [1, 2]


def test_playground_without_menagerie_is_a_one_line_error(monkeypatch, tmp_path):
    """Offline, the locomotion suite says what is missing and where to put it."""
    pytest.importorskip("mujoco_playground")
    if _menagerie_available():
        pytest.skip("mujoco_menagerie is installed here")
    import subprocess

    from mujoco_playground._src import mjx_env

    def no_clone(*a, **k):
        raise subprocess.CalledProcessError(128, ["git", "clone"])

    monkeypatch.setattr(mjx_env, "_clone_with_progress", no_clone)
    monkeypatch.setattr(mjx_env, "EXTERNAL_DEPS_PATH", tmp_path)
    monkeypatch.setattr(mjx_env, "MENAGERIE_PATH", tmp_path / "mujoco_menagerie")
    from reppo_jax.envs import make_env

    with pytest.raises(UserError, match="needs the robot models of mujoco_menagerie") as e:
        make_env("playground/Go1JoystickFlatTerrain", 2)
    assert "\n" not in str(e.value)
    assert resolve_env("playground/Go1JoystickFlatTerrain").backends == ("jax", "torch")


def test_user_env_resume_is_exact(tmp_path, monkeypatch, clean_registry):
    """A user env's state is a pytree in the checkpoint, so resuming from an intermediate
    checkpoint reproduces the uninterrupted run's metrics and final checkpoint bit for bit."""
    import shutil

    from reppo_common import checkpoints as C
    from reppo_jax.train import train
    from spec.backend import TrainHooks
    from spec.config import apply_overrides
    from spec.presets import preset_config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
    try:
        from test_user_envs import doc_example
    finally:
        sys.path.pop(0)
    (tmp_path / "my_jax_envs.py").write_text(doc_example("my_jax_envs.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = apply_overrides(preset_config("tiny"), {
        "env.name": "my_jax_envs:my/Match", "env.v_min": None, "env.v_max": None,
        "rollout.total_env_steps": 8 * 64, "run.eval_interval": 4 * 64,
        "run.checkpoint_interval": 2 * 64, "run.keep_checkpoints": 100})
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMING_KEYS}  # noqa
    full, seen = tmp_path / "full", []
    full.mkdir()
    result = train(cfg, full, TrainHooks(on_train_metrics=seen.append,
                                         on_eval_metrics=seen.append))
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    for p in (full / "checkpoints").glob(f"*_{4 * 64:012d}.*"):
        shutil.copy(p, part / "checkpoints" / p.name)
    resumed: list[dict] = []
    train(cfg, part, TrainHooks(on_train_metrics=resumed.append,
                                on_eval_metrics=resumed.append), resume=True)
    assert [strip(m) for m in resumed] == [strip(m) for m in seen if m["env_steps"] > 4 * 64]
    last = f"{result.env_steps:012d}"
    for name in (f"params_{last}.npz", f"state_{last}.npz"):
        assert C.sha256_file(full / "checkpoints" / name) == \
            C.sha256_file(part / "checkpoints" / name), name
