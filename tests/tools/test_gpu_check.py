"""benchmarks/gpu_check.py: the CPU dry mode runs its sections end to end and writes the JSON
the docs describe; a section that fails, hangs or does not fit the budget is recorded as such
while the others still run."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")
pytest.importorskip("torch")

from benchmarks import gpu_check as G  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _check(args: list[str], tmp_path: Path, timeout: float) -> tuple[dict, str]:
    out = tmp_path / "report.json"
    p = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return json.loads(out.read_text()), p.stdout


def test_dry_run_trains_every_section_and_writes_the_report(tmp_path):
    sections = ["jax_dmc", "torch_dmc", "torch_maniskill", "atari_pong"]
    report, stdout = _check(["--dry-run", "--sections", ",".join(sections)], tmp_path, 900)
    assert report["schema_version"] == G.SCHEMA_VERSION and report["mode"] == "dry"
    assert list(report["sections"]) == sections  # run order, the subset only
    probe = report["probe"]
    assert probe["status"] == "ok" and probe["versions"]["jax"] and probe["versions"]["torch"]
    assert probe["jax"]["device_kind"] and "cuda" in probe["torch"]
    assert report["wall_s"] > 0

    for name, r in report["sections"].items():
        assert r["status"] in ("ok", "skipped"), (name, r)
        if r["status"] == "skipped":
            continue
        assert r["preset"] == "tiny" and r["device"]["platform"] == "cpu"
        # the fixed budget ran to its end (3 iterations), then the one final evaluation
        assert r["iterations"] == 3 and r["env_steps"] == r["budget_env_steps"]
        assert r["eval_env_steps"] == r["budget_env_steps"] and not r["stopped_early"]
        assert r["env_steps_per_s"] > 0 and r["compile_s"] > 0 and r["setup_s"] > 0
        assert math.isfinite(r["eval_return"]) and r["eval_length"] > 0
        assert r["wall_s"] >= r["train_s"] > 0 and r["cpu_s"] > 0

    jd, td = report["sections"]["jax_dmc"], report["sections"]["torch_dmc"]
    assert jd["status"] == td["status"] == "ok"
    assert (jd["backend"], jd["bridge"]) == ("jax", False)
    assert (td["backend"], td["bridge"]) == ("torch", True)  # torch through the JAX bridge

    ms = report["sections"]["torch_maniskill"]
    if ms["status"] == "ok":
        assert ms["device"]["physics_impl"] == "physx_cpu"
        assert 0.0 <= ms["eval_success"] <= 1.0
    else:
        assert "Vulkan" in ms["reason"] or "mani_skill" in ms["reason"]

    atari = report["sections"]["atari_pong"]
    if importlib.util.find_spec("envpool") is None:
        assert atari["status"] == "skipped" and "envpool" in atari["reason"]
    else:
        assert atari["status"] == "ok" and atari["env"] == "atari/Pong"
        assert atari["eval_success"] is None  # Atari has no success signal

    # the summary table: one row per section
    table = stdout[stdout.index("gpu_check (dry)"):]
    for name in sections:
        assert any(line.startswith(name + " ") for line in table.splitlines()), name


def test_full_mode_skips_what_the_budget_cannot_fit(tmp_path):
    """With 1 s for everything, every section is skipped with the reason (after the probe)."""
    report, stdout = _check(["--full", "--budget-s", "1", "--sections", "jax_dmc,atari_pong"],
                            tmp_path, 300)
    assert report["mode"] == "full" and report["budget_s"] == 1
    assert list(report["sections"]) == ["jax_dmc", "atari_pong"]
    for r in report["sections"].values():
        assert r["status"] == "skipped" and "budget" in r["reason"]
    assert "jax_dmc: the 1 s budget" in stdout


def test_a_crashing_or_hanging_section_is_recorded(tmp_path):
    # a crash: the exception's own line, not JAX's trailing note, and the output's tail
    path = tmp_path / "crash.json"
    rec, _ = G._run_child(["--section", "no_such_section", "--result", str(path)], 120,
                          G._child_env(True, None), path)
    assert rec["status"] == "error" and rec["error"].startswith("KeyError: 'no_such_section'")
    assert "Traceback" in rec["output_tail"]
    # a hang: the process group is killed at the limit
    path = tmp_path / "hang.json"
    rec, _ = G._run_child(["--section", "jax_dmc", "--dry-run", "--result", str(path)], 1,
                          G._child_env(True, None), path)
    assert rec["status"] == "timeout" and rec["error"] == "killed after 1 s"


def test_error_line_skips_trailing_notes():
    out = ("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
           "jax.errors.TracerArrayConversionError: traced array\n"
           "See https://docs.jax.dev/en/latest/errors.html\n----\n"
           "For simplicity, JAX has removed its internal frames.\n")
    assert G._error_line(out) == "jax.errors.TracerArrayConversionError: traced array"
    assert G._error_line("just a line\n") == "just a line"
    assert G._error_line("") is None


def test_unknown_section_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        G.main(["--sections", "jax_dmc,nope"])
    assert e.value.code == 2 and "unknown section(s) nope" in capsys.readouterr().err
