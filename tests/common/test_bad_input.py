"""Bad input of every kind gives a clear one-line error, not a traceback.

Each case runs the real command in a subprocess (``python -m reppo_common.cli ...`` or a
``reppo plot|aggregate|ablate`` tool) and asserts exit status 2, a single stderr line starting with
``error: `` that contains the expected words, and no ``Traceback``. ``--debug`` shows the
traceback instead. Cases cover the CLI (subcommands, flags, env names, presets, overrides,
config constraints), run directories and config files, checkpoints, the video option and the
plot/aggregate tools. None of them trains or imports a framework unless noted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reppo_common.runs import RunDir
from spec.params import load_params, save_params
from spec.presets import preset_config

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str] | None = None, timeout: int = 180
        ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def reppo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real command in a subprocess: real exit status, real stderr."""
    return run(["-m", "reppo_common.cli", *args], env)


def reppo_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """``reppo_common.cli.main(args)`` in this process (fast); an escaping exception fails the
    test just as a traceback would."""
    from reppo_common import cli

    capsys.readouterr()
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), rc, out.out, out.err)


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout[-500:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr
    lines = [l for l in p.stderr.strip().splitlines() if not l.startswith("note: ")]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> dict[str, Path]:
    """Run directories broken in different ways, plus a valid one with a params file."""
    root = tmp_path_factory.mktemp("bad")
    cfg = preset_config("tiny")
    meta = {"backend": "jax", "env": cfg.env.name}

    def make(name: str) -> Path:
        return RunDir.create(root / name, cfg, meta).path

    good = make("good")
    save_params(good / "checkpoints" / "params_000000000064.npz",
                {"actor/w": np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32)})
    params = (good / "checkpoints" / "params_000000000064.npz").read_bytes()

    d = make("malformed_config")
    (d / "config.json").write_text('{"schema_version": 1, "env": ')
    d = make("future_schema")
    data = json.loads((d / "config.json").read_text())
    data["schema_version"] = 99
    (d / "config.json").write_text(json.dumps(data))
    d = make("no_ckpt_dir")
    (d / "checkpoints").rmdir()
    d = make("corrupt_npz")
    (d / "checkpoints" / "params_000000000064.npz").write_bytes(b"this is not a zip file" * 50)
    d = make("truncated_npz")
    (d / "checkpoints" / "params_000000000064.npz").write_bytes(params[: len(params) // 2])
    d = make("not_params")  # a valid .npz that is not a reppo params file
    np.savez(d / "checkpoints" / "params_000000000064.npz", x=np.zeros(3))
    other = preset_config("tiny", ["env.name=dmc/CheetahRun"])
    d = make("other_env_params")  # another run's params: same widths, other env
    save_params(d / "checkpoints" / "params_000000000064.npz",
                {"actor/w": np.zeros((2, 2), np.float32)}, {"config": other.to_dict()})
    d = make("other_net_params")
    wide = preset_config("tiny", ["critic.hidden_dim=8"])
    save_params(d / "checkpoints" / "params_000000000064.npz",
                {"actor/w": np.zeros((2, 2), np.float32)}, {"config": wide.to_dict()})
    RunDir.create(root / "minatar", preset_config("tiny", ["env.name=minatar/Breakout"]), meta)
    save_params(root / "minatar" / "checkpoints" / "params_000000000064.npz",
                {"actor/w": np.zeros((2, 2), np.float32)})
    (root / "not_a_run").mkdir()
    (root / "a_file").write_text("x")

    # for the tools: a run whose metrics.jsonl has train lines only
    noeval = root / "noeval"
    noeval.mkdir()
    (noeval / "metrics.jsonl").write_text(
        json.dumps({"kind": "train", "env_steps": 64, "train/kl": 0.1, "wall_s": 1.0}) + "\n")
    garbled = root / "garbled"
    garbled.mkdir()
    (garbled / "metrics.jsonl").write_text("{not json\n" + json.dumps(
        {"kind": "eval", "env_steps": 64, "eval/return_mean": 1.0}) + "\n")
    return {p.name: p for p in root.iterdir()}


# ---- CLI: commands, flags, env names, presets, overrides, config constraints --------------

CLI_CASES = {
    "unknown_subcommand": (["frobnicate"], ["invalid choice", "'frobnicate'", "train"]),
    "unknown_flag": (["train", "--bogus"], ["'--bogus'"]),
    "steps_not_a_number": (["train", "--steps", "abc"], ["--steps", "'abc'"]),
    "steps_not_positive": (["train", "--steps", "0"], ["--steps", "positive integer"]),
    "steps_fractional": (["train", "--steps", "1.5"], ["--steps", "positive integer"]),
    "seed_not_int": (["train", "--seed", "x"], ["--seed", "'x'"]),
    "unknown_env_typo": (["train", "--env", "dmc/CartpoleBalanc"],
                         ["'dmc/CartpoleBalanc'", "dmc/CartpoleBalance"]),
    "env_without_suite": (["train", "--env", "CartpoleBalance"],
                          ["suite prefix", "dmc/CartpoleBalance"]),
    "suite_backend_mismatch": (["train", "--env", "maniskill/PickCube-v1"],
                               ["maniskill/PickCube-v1", "--backend torch"]),
    "discrete_suite_on_torch": (["train", "--backend", "torch", "--env", "minatar/Breakout"],
                                ["--backend jax"]),
    "unknown_backend": (["train", "--backend", "tf"], ["'tf'", "jax", "torch"]),
    "unknown_preset": (["train", "--preset", "nope"], ["unknown preset 'nope'", "cpu"]),
    "malformed_override_value": (["train", "--rollout.num_envs=abc"],
                                 ["rollout.num_envs", "integer"]),
    "unknown_override_key": (["train", "--rollout.num_env=3"], ["rollout.num_envs"]),
    "unknown_override_section": (["train", "--rollot.num_envs=3"], ["rollot"]),
    "value_out_of_range": (["train", "--rollout.num_envs=-3"], ["rollout.num_envs=-3", "integer in [1, 1048576]"]),
    "batch_not_divisible": (["train", "--rollout.num_envs=10", "--rollout.num_steps=3",
                             "--rollout.num_minibatches=4"], ["not divisible", "10*3"]),
    "override_without_value": (["train", "--loss.kl_target"], ["needs a value"]),
    "unknown_log_sink": (["train", "--run.log=foo"], ["run.log", "tensorboard"]),
    "unknown_suite": (["envs", "--suite", "dcm"], ["'dcm'", "'dmc'"]),
    "eval_without_run_dir": (["eval"], ["--run-dir"]),
    "eval_extra_argument": (["envs", "--loss.lam=0.5"], ["unrecognised"]),
    "env_name_override_unknown": (["train", "--env.name=dmc/NoSuch"],
                                  ["unknown environment 'dmc/NoSuch'"]),
    "env_name_override_disagrees": (["train", "--env", "dmc/CartpoleBalance",
                                     "--env.name=dmc/CheetahRun"], ["disagree"]),
    "env_empty": (["train", "--env", ""], ["--env is empty"]),
    "preset_empty": (["train", "--preset", ""], ["--preset is empty"]),
    "run_dir_empty": (["train", "--run-dir", ""], ["--run-dir is empty"]),
    "resume_empty": (["train", "--resume", ""], ["--resume is empty"]),
    "steps_huge": (["train", "--steps", "1e30"], ["--steps", "above the limit"]),
    "steps_negative": (["train", "--steps=-5"], ["--steps", "positive integer"]),
    "seed_negative": (["train", "--seed=-1"], ["--seed", "out of range"]),
    "seed_huge": (["train", "--seed", "99999999999999999999"], ["--seed", "out of range"]),
    "seed_override_huge": (["train", "--run.seed=4294967296"], ["run.seed=4294967296", "2147483647"]),
    "nan_override": (["train", "--loss.kl_target=nan"], ["loss.kl_target", "finite"]),
    "inf_override": (["train", "--rollout.lr=inf"], ["rollout.lr", "finite"]),
    "devices_zero": (["train", "--devices", "0"], ["run.devices=0"]),
    "log_empty_sink": (["train", "--log", "bogus"], ["run.log"]),
    "torch_compile_on_jax": (["train", "--run.torch_compile=true"],
                             ["run.torch_compile", "--backend torch"]),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input(case, capsys):
    args, needles = CLI_CASES[case]
    assert_one_line_error(reppo_in_process(capsys, *args), *needles)


@pytest.mark.parametrize("case", ["unknown_subcommand", "steps_not_positive",
                                  "malformed_override_value", "suite_backend_mismatch"])
def test_cli_bad_input_subprocess(case):
    """A sample of the cases through the real ``python -m reppo_common.cli`` process."""
    args, needles = CLI_CASES[case]
    assert_one_line_error(reppo(*args), *needles)


# ---- run directories, config files and checkpoints (reppo eval) --------------------------

EVAL_CASES = {
    "run_dir_missing": ("missing", [], ["does not exist"]),
    "not_a_run_dir": ("not_a_run", [], ["not a reppo run directory", "config.json"]),
    "malformed_config_json": ("malformed_config", [], ["config.json", "not valid JSON"]),
    "config_schema_mismatch": ("future_schema", [], ["schema_version", "99"]),
    "missing_checkpoints_dir": ("no_ckpt_dir", [], ["no checkpoints/ directory"]),
    "corrupt_npz": ("corrupt_npz", [], ["cannot read checkpoint", "truncated or corrupt"]),
    "truncated_npz": ("truncated_npz", [], ["cannot read checkpoint", "truncated or corrupt"]),
    "npz_not_reppo_params": ("not_params", [], ["not a reppo params file"]),
    "checkpoint_path_missing": ("good", ["--checkpoint", "/nonexistent/params.npz"],
                                ["does not exist"]),
    "checkpoint_is_directory": ("good", ["--checkpoint", "{good}/checkpoints"],
                                ["is a directory"]),
    "episodes_zero": ("good", ["--episodes", "0"], ["--episodes", "1 .. 10,000"]),
    "episodes_huge": ("good", ["--episodes", "99999999999"], ["--episodes", "1 .. 10,000"]),
    "episodes_not_int": ("good", ["--episodes", "1e3"], ["--episodes", "'1e3'"]),
    "run_dir_is_file": ("a_file", [], ["is a file, not a run directory"]),
    "run_dir_empty_string": ("good", ["--run-dir", ""], ["--run-dir is empty"]),
    "checkpoint_other_env": ("good", ["--checkpoint",
                                      "{root}/other_env_params/checkpoints/params_000000000064.npz"],
                             ["trained on dmc/CheetahRun", "dmc/CartpoleBalance"]),
    "checkpoint_other_network": ("good", ["--checkpoint",
                                          "{root}/other_net_params/checkpoints/"
                                          "params_000000000064.npz"],
                                 ["another network", "critic.hidden_dim"]),
    "video_not_mujoco": ("minatar", ["--video", "out.mp4"], ["MuJoCo", "minatar/Breakout"]),
    "video_dir_missing": ("good", ["--video", "/nonexistent-dir/out.mp4"],
                          ["--video", "does not exist"]),
    "video_is_directory": ("good", ["--video", "{root}/x.mp4"], ["is a directory"]),
    "video_not_mp4": ("good", ["--video", "out.avi"], ["--video", ".mp4"]),
    "video_wrong_backend": ("good", ["--backend", "torch", "--video", "out.mp4"],
                            ["--video", "jax"]),
}


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_eval_bad_input(case, run_dirs, tmp_path, capsys):
    name, extra, needles = EVAL_CASES[case]
    run_dir = run_dirs.get(name, tmp_path / name)
    extra = [e.format(good=run_dirs["good"], root=run_dirs["good"].parent) for e in extra]
    if case == "video_is_directory":
        (run_dirs["good"].parent / "x.mp4").mkdir(exist_ok=True)
    p = reppo_in_process(capsys, "eval", "--run-dir", str(run_dir), *extra)
    assert_one_line_error(p, *needles)


@pytest.mark.parametrize("case", ["malformed_config_json", "truncated_npz",
                                  "missing_checkpoints_dir"])
def test_eval_bad_input_subprocess(case, run_dirs):
    name, extra, needles = EVAL_CASES[case]
    assert_one_line_error(reppo("eval", "--run-dir", str(run_dirs[name]), *extra), *needles)


def test_eval_video_without_gl(run_dirs, tmp_path):
    """A GL backend that cannot work is reported in one line before anything is evaluated."""
    pytest.importorskip("jax")
    pytest.importorskip("mujoco")
    out = tmp_path / "v.mp4"
    p = reppo("eval", "--run-dir", str(run_dirs["good"]), "--video", str(out),
              env={"MUJOCO_GL": "nonsense"})
    assert_one_line_error(p, "cannot render", "MUJOCO_GL=nonsense", "MUJOCO_GL=egl")
    assert not out.exists()


def test_train_run_dir_is_a_file(run_dirs):
    pytest.importorskip("jax")  # the backend is loaded before the run directory is made
    assert_one_line_error(
        reppo("train", "--preset", "tiny", "--run-dir", str(run_dirs["a_file"]), "--no-progress"),
        "exists and is not a directory")


def test_load_params_messages(run_dirs, tmp_path):
    """spec.params.load_params: clear ValueError/FileNotFoundError messages naming the file."""
    for name in ("corrupt_npz", "truncated_npz"):
        path = run_dirs[name] / "checkpoints" / "params_000000000064.npz"
        with pytest.raises(ValueError, match="truncated or corrupt") as e:
            load_params(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_params(tmp_path / "nope.npz")


# ---- tools --------------------------------------------------------------------------------

TOOL_CASES = {
    "plot_missing_dir": ("plot", ["{root}/missing"], ["does not exist"]),
    "plot_not_a_run": ("plot", ["{root}/not_a_run"], ["holds no metrics.jsonl"]),
    "plot_no_eval_lines": ("plot", ["{root}/noeval"], ["no eval lines", "eval/return_mean"]),
    "plot_only_files": ("plot", ["{root}/a_file"], ["no run directories"]),
    "plot_garbled_metrics": ("plot", ["{root}/garbled"], ["line 1 is not a JSON object"]),
    "plot_out_not_png": ("plot", ["{root}/noeval", "--out", "x.pdf"], ["--out", ".png"]),
    "plot_unknown_metric": ("plot", ["{root}/good_eval", "--metric", "eval/nope"],
                            ["no eval lines", "'eval/nope'"]),
    "aggregate_missing_dir": ("aggregate", ["{root}/missing"], ["does not exist"]),
    "aggregate_no_eval_lines": ("aggregate", ["{root}/noeval"], ["no eval lines"]),
    "aggregate_bad_norm": ("aggregate", ["{root}/noeval", "--norm", "dmc=0"],
                           ["--norm", "TASK=LO:HI"]),
    "aggregate_bad_score": ("aggregate", ["{root}/good_eval", "--score", "last:x"],
                            ["last:x", "positive integer"]),
    "aggregate_bad_group_by": ("aggregate", ["{root}/good_eval", "--group-by", "loss.nope"],
                               ["group key 'loss.nope'"]),
}


@pytest.fixture(scope="module")
def good_eval(run_dirs) -> Path:
    d = run_dirs["good"].parent / "good_eval"
    d.mkdir()
    (d / "metrics.jsonl").write_text(json.dumps(
        {"kind": "eval", "env_steps": 64, "eval/return_mean": 1.0, "wall_s": 2.0}) + "\n")
    (d / "config.json").write_text(json.dumps({"env": {"name": "dmc/CartpoleBalance"},
                                               "loss": {"kl_target": 0.1}}))
    return d


@pytest.mark.parametrize("case", list(TOOL_CASES))
def test_tool_bad_input(case, run_dirs, good_eval, tmp_path):
    tool, args, needles = TOOL_CASES[case]
    root = run_dirs["good"].parent
    args = [a.format(root=root) for a in args]
    if tool == "plot" and "--out" not in args:
        args += ["--out", str(tmp_path / "x.png")]
    assert_one_line_error(reppo(tool, *args), *needles)
    assert not (tmp_path / "x.png").exists()


# ---- --debug ------------------------------------------------------------------------------


def test_debug_shows_traceback(run_dirs):
    p = reppo("train", "--backend", "tf", "--debug")
    assert p.returncode != 0 and "Traceback" in p.stderr and "UserError" in p.stderr
    p = reppo("eval", "--run-dir", str(run_dirs["corrupt_npz"]), "--debug")
    assert p.returncode != 0 and "Traceback" in p.stderr and "truncated or corrupt" in p.stderr
    p = reppo("frobnicate", "--debug")
    assert p.returncode != 0 and "Traceback" in p.stderr
    p = reppo("plot", str(run_dirs["noeval"]), "--out", "x.png", "--debug")
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_at_least_fifteen_kinds():
    assert len(CLI_CASES) + len(EVAL_CASES) + len(TOOL_CASES) + 3 >= 15
