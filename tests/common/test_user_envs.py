"""Bring-your-own-env: registration from outside the package, the env facts it declares, and the
two complete examples of docs/envs.md run as written (copied out of the docs into files) until
they reach their known optimum."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from reppo_common import cli, registry
from reppo_common.errors import UserError
from reppo_common.registry import (EnvSpec, check_value_range, config_flags, list_envs, register,
                                   resolve_env)
from spec.presets import preset_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_registry(monkeypatch):
    """A private copy of the registry, and user modules forgotten afterwards."""
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    before = set(sys.modules)
    yield registry.REGISTRY
    for m in set(sys.modules) - before:
        if m.startswith("my_"):
            del sys.modules[m]


def doc_example(filename: str) -> str:
    """The ```python block of docs/envs.md that starts with ``# <filename>``."""
    text = (ROOT / "docs" / "envs.md").read_text()
    m = re.search(r"```python\n(# " + re.escape(filename) + r"\n.*?)```", text, re.S)
    assert m, f"docs/envs.md has no example {filename}"
    return m.group(1)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("backend,filename,env", [
    ("jax", "my_jax_envs.py", "my/Match"),
    ("torch", "my_gym_envs.py", "my/GymMatch"),
])
def test_docs_example_registers_from_outside_and_reaches_the_optimum(
        backend, filename, env, tmp_path, monkeypatch, clean_registry):
    """The docs example (≤ 30 lines) registered from a module outside the package trains with
    ``--env module:suite/Name`` to near its optimal return 50; the run's config keeps the module
    prefix and the declared facts (γ = 1 − 10/50, v from the reward range)."""
    pytest.importorskip(backend)
    code = doc_example(filename)
    assert code.count("\n") <= 30, "the docs promise examples of at most 30 lines"
    (tmp_path / filename).write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = filename[:-3]
    run = tmp_path / "run"
    rc = cli.main(["train", "--backend", backend, "--env", f"{module}:{env}", "--run-dir",
                   str(run), "--no-progress"])
    assert rc == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["env"]["name"] == f"{module}:{env}"
    assert cfg["env"]["v_min"] is None and cfg["env"]["v_max"] is None  # derived, not preset's
    evals = [r for r in _metrics(run) if r["kind"] == "eval"]
    assert evals[-1]["eval/return_mean"] > 48.0, evals[-1]
    assert evals[-1]["env_steps"] == preset_config("toy").rollout.total_env_steps
    if backend == "jax":  # eval in a fresh lookup: the module prefix resolves again
        sys.modules.pop(module)
        del registry.REGISTRY[env]
        assert cli.main(["eval", "--run-dir", str(run), "--episodes", "4"]) == 0


def _noop(num_envs):
    raise AssertionError("not built")


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "Task"}, "must look like 'suite/Name'"),
    ({"name": "dmc/Mine"}, "suite 'dmc' is built in"),
    ({"make_jax": None}, "give make_jax and/or make_torch"),
    ({"reward_range": None}, "declare reward_range=.* or both v_min and v_max"),
    ({"reward_range": None, "v_min": 1.0, "v_max": 1.0}, "v_min=1.0 must be < v_max=1.0"),
    ({"reward_range": (1.0, 0.0)}, "r_min < r_max"),
    ({"max_episode_steps": 0}, "max_episode_steps must be an integer >= 1"),
    ({"max_episode_steps": 10.5}, "max_episode_steps must be an integer >= 1"),
    ({"gamma": 1.0}, r"gamma must lie in \[0, 1\)"),
    ({"action_space": "box"}, "action_space must be"),
    ({"make_jax": 3}, "make_jax must be callable"),
    ({"default_preset": "cpu-gymm"}, "unknown default_preset 'cpu-gymm'; did you mean 'cpu-gym'"),
    ({"action_space": "discrete", "make_torch": _noop}, "discrete actions .* are JAX only"),
])
def test_register_rejects_bad_facts_in_one_line(kwargs, match, clean_registry):
    args = {"name": "my/Task", "make_jax": _noop, "max_episode_steps": 100,
            "reward_range": (0.0, 1.0)}
    args.update(kwargs)
    with pytest.raises(UserError, match=match) as e:
        register(args.pop("name"), **args)
    assert "\n" not in str(e.value)


def test_register_then_resolve_and_config_flags(clean_registry):
    spec = register("my/Task", make_torch=_noop, max_episode_steps=100, v_min=-5.0, v_max=5.0,
                    gamma=0.9, success_key="is_success")
    assert resolve_env("my/Task") is spec
    assert spec.backends == ("torch",) and spec.success_metric and spec.reward_range is None
    with pytest.raises(UserError, match="already registered"):
        register("my/Task", make_torch=_noop, max_episode_steps=100, reward_range=(0, 1))
    assert "my" in [s for s in registry._suites()]
    assert [e.full_name for e in list_envs("my")] == ["my/Task"]
    # declared facts replace the preset's value support; explicit overrides still win
    cfg = preset_config("cpu", config_flags(spec, "pkg.mod:my/Task"))
    assert (cfg.env.name, cfg.env.gamma, cfg.env.v_min, cfg.env.v_max) == (
        "pkg.mod:my/Task", 0.9, -5.0, 5.0)
    cfg = preset_config("cpu", config_flags(spec) + ["env.v_max=7"])
    assert (cfg.env.v_min, cfg.env.v_max) == (-5.0, 7.0)
    # built-in suites keep their presets' values (dmc: v in [0, 150])
    cfg = preset_config("cpu", config_flags(resolve_env("dmc/CartpoleBalance")))
    assert (cfg.env.v_min, cfg.env.v_max) == (0.0, 150.0)


def test_module_lookup_errors(tmp_path, monkeypatch, clean_registry):
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="cannot import module 'my_missing_mod'"):
        resolve_env("my_missing_mod:my/Task")
    (tmp_path / "my_empty_mod.py").write_text("x = 1\n")
    with pytest.raises(UserError, match="registers no env 'my/Task'"):
        resolve_env("my_empty_mod:my/Task")
    (tmp_path / "my_attr_mod.py").write_text(
        "from reppo_common.registry import register\n"
        "TASK = register('my/Attr', make_jax=print, max_episode_steps=5, reward_range=(0, 1))\n")
    spec = resolve_env("my_attr_mod:TASK")  # module attribute holding the spec, too
    assert spec.full_name == "my/Attr" and spec.source == "my_attr_mod"
    assert config_flags(spec, "my_attr_mod:TASK")[0] == "env.name=my_attr_mod:my/Attr"


def test_gym_suite_facts_and_missing_value_support():
    pytest.importorskip("gymnasium")
    p = resolve_env("gym/Pendulum-v1")
    assert p.backends == ("torch",) and p.max_episode_steps == 200
    assert p.reward_range[1] == 0.0 and p.reward_range[0] == pytest.approx(-16.2736044)
    assert p.default_preset == "cpu-gym"
    h = resolve_env("gym/HalfCheetah-v5")
    assert h.reward_range is None and h.max_episode_steps == 1000
    cfg = preset_config("cpu-gym", config_flags(h))
    with pytest.raises(UserError, match="--env.v_min=LO --env.v_max=HI"):
        check_value_range(cfg, h.reward_range, h.full_name)
    check_value_range(preset_config("cpu-gym", config_flags(h) + ["env.v_min=-10",
                                                                  "env.v_max=100"]),
                      h.reward_range, h.full_name)
    with pytest.raises(UserError, match="did you mean gym/Pendulum-v1"):
        resolve_env("gym/Pendulum-v2")
    names = [e.full_name for e in list_envs("gym")]
    assert "gym/Pendulum-v1" in names and "gym/HalfCheetah-v5" in names


def test_cli_envs_lists_the_open_suites(capsys):
    pytest.importorskip("gymnasium")
    assert cli.main(["envs", "--suite", "gym"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("gym/Pendulum-v1 "))
    assert "torch" in line and "200" in line and "[-16.2736, 0]" in line
    assert "give v_min/v_max" in next(x for x in out.splitlines()
                                      if x.startswith("gym/HalfCheetah-v5 "))


def test_cli_train_stops_on_a_missing_value_support(capsys, tmp_path):
    pytest.importorskip("gymnasium")
    rc = cli.main(["train", "--backend", "torch", "--env", "gym/HalfCheetah-v5",
                   "--run-dir", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "declares no reward range" in err[0]
    assert not (tmp_path / "r").exists()


def test_playground_suite_facts():
    pytest.importorskip("mujoco_playground")
    g = resolve_env("playground/Go1JoystickFlatTerrain")
    assert g.backends == ("jax", "torch") and g.max_episode_steps == 1000
    assert (g.v_min, g.v_max) == (-10.0, 10.0) and g.reward_range is None
    p = resolve_env("playground/PandaPickCube")
    assert p.max_episode_steps == 150 and (p.v_min, p.v_max) == (-100.0, 100.0)
    names = {e.full_name for e in list_envs("playground")}
    assert {"playground/G1JoystickFlatTerrain", "playground/T1JoystickFlatTerrain"} <= names
    with pytest.raises(UserError, match="did you mean playground/Go1JoystickFlatTerrain"):
        resolve_env("playground/Go1JoystickFlatTerain")


def test_playground_table_matches_the_installed_playground():
    """The static playground list (so `reppo envs` imports no simulator) is the installed
    mujoco_playground's locomotion + manipulation registry, with its episode lengths."""
    pytest.importorskip("mujoco_playground")
    from mujoco_playground import registry as pg

    names = list(pg.locomotion.ALL_ENVS) + list(pg.manipulation.ALL_ENVS)
    listed = {e.name: e.max_episode_steps for e in list_envs("playground")}
    assert sorted(listed) == sorted(names)
    for n in names:
        assert listed[n] == pg.get_default_config(n).episode_length, n


def test_unlisted_maniskill_ids_resolve_from_maniskill():
    pytest.importorskip("mani_skill")
    spec = resolve_env("maniskill/PushCube-v1")
    assert spec.full_name in registry.REGISTRY  # listed
    other = resolve_env("maniskill/PlaceSphere-v1")  # registered by ManiSkill, not listed
    assert other.backends == ("torch",) and other.success_metric
    assert other.default_preset == "cpu-maniskill" and other.max_episode_steps > 0
    with pytest.raises(UserError, match="unknown environment 'maniskill/NoSuchTask-v1'"):
        resolve_env("maniskill/NoSuchTask-v1")


def test_one_source_for_discrete_detection():
    assert registry.is_discrete_env("minatar/Breakout")
    assert not registry.is_discrete_env("dmc/CartpoleBalance")
    assert not registry.is_discrete_env("nope/Nothing")
    assert isinstance(resolve_env("atari/Pong"), EnvSpec)
