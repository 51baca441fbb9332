"""Memory held by REPPO's on-policy batch vs an off-policy replay buffer (paper Appendix E.2).

    python -m benchmarks.memory --env dmc/CheetahRun --preset dmc,cpu [--obs-dim N --action-dim N]
        [--measure-run [--iterations 3]] [--json PATH]

Byte accounting (:func:`onpolicy_batch_bytes`): one iteration of the JAX backend keeps the
rollout ``reppo_jax.agent.Transition`` for all ``num_envs × num_steps`` transitions plus the TD(λ)
targets computed from it:

===============  ======================  =======
field            per transition          dtype
===============  ======================  =======
obs              obs_dim                 float32
action           action_dim              float32
reward           1                       float32
terminated       1                       bool
truncated        1                       bool
next_value       1                       float32
next_log_prob    1                       float32
next_emb         critic.hidden_dim       float32
target           1                       float32
===============  ======================  =======

``next_emb`` is the auxiliary-loss target z(x_{t+1}, a′), as wide as the critic (512 in the
paper), so for low-dimensional DMC observations it dominates the batch. The update also makes
one shuffled copy per epoch of the fields it trains on (obs, action, reward, target, next_emb);
that transient is reported separately as ``peak``.

Off-policy buffer (:func:`replay_buffer_bytes`): a transition store of (s, a, r, s′, done,
truncated) with float32 arrays and 1-byte flags, the fields an off-policy learner such as FastTD3
keeps (FastTD3 stores the next observation explicitly). Sizes: FastTD3's default
10,485,760 transitions and the paper's small-buffer comparison of 32,768 (Appendix E.2). Wider
flag dtypes would only make the buffer larger, so the ratios are lower bounds in that respect.

Observation and action sizes come from ``--obs-dim``/``--action-dim``, else from ``KNOWN_DIMS``
(recorded by building the env with this code), else by building the env (slow: imports
mujoco_playground).

``--measure-run`` additionally builds the JAX ``Trainer`` for the first preset (``--env``, CPU)
and runs ``--iterations`` training iterations, reporting the process's peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after imports, after building, after the first
(compiling) iteration and at the end, with ``jax.live_arrays()`` bytes at the end. The peak RSS is
dominated by the Python/JAX/XLA runtime and compiled programs, not by the batch.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


FASTTD3_DEFAULT_BUFFER = 10_485_760
"""FastTD3's default replay buffer size in transitions (paper Appendix E.2)."""
SMALL_BUFFER = 32_768
"""The paper's constrained FastTD3 buffer, 'similar in size to on-policy methods'."""

KNOWN_DIMS: dict[str, tuple[int, int]] = {
    "dmc/CartpoleBalance": (5, 1),
    "dmc/CheetahRun": (17, 6),
}
"""suite/Task -> (obs_dim, action_dim), recorded with ``reppo_jax.envs.make_env(name, 1)``."""

F32, BOOL = 4, 1


@dataclass(frozen=True)
class Field:
    """One stored array: elements per transition and bytes per element."""

    name: str
    per_transition: int
    itemsize: int

    @property
    def bytes_per_transition(self) -> int:
        return self.per_transition * self.itemsize


def onpolicy_fields(obs_dim: int, action_dim: int, emb_dim: int,
                    include_embeddings: bool = True) -> list[Field]:
    """The arrays one REPPO iteration keeps per transition (``Transition`` + targets)."""
    fields = [
        Field("obs", obs_dim, F32),
        Field("action", action_dim, F32),
        Field("reward", 1, F32),
        Field("terminated", 1, BOOL),
        Field("truncated", 1, BOOL),
        Field("next_value", 1, F32),
        Field("next_log_prob", 1, F32),
        Field("next_emb", emb_dim, F32),
        Field("target", 1, F32),
    ]
    return fields if include_embeddings else [f for f in fields if f.name != "next_emb"]


UPDATE_FIELDS = ("obs", "action", "reward", "target", "next_emb")
"""Fields the update permutes into minibatches (one shuffled copy per epoch)."""


def replay_fields(obs_dim: int, action_dim: int) -> list[Field]:
    """(s, a, r, s′, done, truncated) of an off-policy transition buffer."""
    return [
        Field("obs", obs_dim, F32),
        Field("action", action_dim, F32),
        Field("reward", 1, F32),
        Field("next_obs", obs_dim, F32),
        Field("done", 1, BOOL),
        Field("truncated", 1, BOOL),
    ]


def onpolicy_batch_bytes(num_envs: int, num_steps: int, obs_dim: int, action_dim: int,
                         emb_dim: int, include_embeddings: bool = True) -> dict[str, Any]:
    """Bytes of one iteration's batch: per field, per transition, total, and the transient peak
    with the update's shuffled copy (only meaningful with embeddings, which it includes)."""
    n = num_envs * num_steps
    fields = onpolicy_fields(obs_dim, action_dim, emb_dim, include_embeddings)
    per = {f.name: f.bytes_per_transition * n for f in fields}
    total = sum(per.values())
    shuffled = sum(f.bytes_per_transition for f in onpolicy_fields(obs_dim, action_dim, emb_dim)
                   if f.name in UPDATE_FIELDS) * n
    return {"transitions": n, "fields": per,
            "bytes_per_transition": sum(f.bytes_per_transition for f in fields),
            "total": total, "peak": total + shuffled if include_embeddings else None}


def replay_buffer_bytes(capacity: int, obs_dim: int, action_dim: int) -> dict[str, Any]:
    """Bytes of a full replay buffer of ``capacity`` transitions."""
    fields = replay_fields(obs_dim, action_dim)
    bpt = sum(f.bytes_per_transition for f in fields)
    return {"transitions": capacity, "fields": {f.name: f.bytes_per_transition * capacity
                                                for f in fields},
            "bytes_per_transition": bpt, "total": bpt * capacity}


def config_batch_bytes(config: Any, obs_dim: int, action_dim: int,
                       include_embeddings: bool = True) -> dict[str, Any]:
    """:func:`onpolicy_batch_bytes` for a ``ReppoConfig`` (sizes from ``rollout``; the
    embedding is the critic encoder's output, ``critic.hidden_dim`` wide)."""
    r = config.rollout
    return onpolicy_batch_bytes(r.num_envs, r.num_steps, obs_dim, action_dim,
                                config.critic.hidden_dim, include_embeddings)


def env_dims(name: str, obs_dim: int | None = None,
             action_dim: int | None = None) -> tuple[int, int]:
    """(obs_dim, action_dim): explicit values, else ``KNOWN_DIMS``, else build the env."""
    if obs_dim is not None and action_dim is not None:
        return obs_dim, action_dim
    if name in KNOWN_DIMS:
        return KNOWN_DIMS[name]
    from reppo_common.registry import resolve_env
    from reppo_jax.envs import make_env

    spec = resolve_env(name)
    env = make_env(spec.full_name, 1)
    return int(env.obs_dim), int(env.action_dim)


def human(n: float) -> str:
    """Bytes in binary units (KiB, MiB, GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def report(env: str, presets: Sequence[str], obs_dim: int, action_dim: int) -> dict[str, Any]:
    """All rows of the table for one env: each preset's batch (with and without embeddings)
    and the two replay buffers, with ratios buffer / batch."""
    from spec.presets import preset_config

    rows: list[dict[str, Any]] = []
    buffers = {"FastTD3 default buffer": replay_buffer_bytes(FASTTD3_DEFAULT_BUFFER, obs_dim,
                                                             action_dim),
               "small buffer (paper)": replay_buffer_bytes(SMALL_BUFFER, obs_dim, action_dim)}
    for p in presets:
        cfg = preset_config(p)
        for emb in (True, False):
            b = config_batch_bytes(cfg, obs_dim, action_dim, emb)
            rows.append({
                "store": f"REPPO batch, preset {p}" + ("" if emb else " (no next_emb)"),
                "preset": p, "embeddings": emb, "transitions": b["transitions"],
                "bytes_per_transition": b["bytes_per_transition"], "total": b["total"],
                "peak": b["peak"], "fields": b["fields"],
                "ratio_default_buffer": buffers["FastTD3 default buffer"]["total"] / b["total"],
                "ratio_small_buffer": buffers["small buffer (paper)"]["total"] / b["total"],
            })
    for name, b in buffers.items():
        rows.append({"store": name, "transitions": b["transitions"],
                     "bytes_per_transition": b["bytes_per_transition"], "total": b["total"],
                     "fields": b["fields"]})
    return {"env": env, "obs_dim": obs_dim, "action_dim": action_dim, "rows": rows}


def format_report(rep: dict[str, Any]) -> str:
    """Fixed-width table of :func:`report`."""
    lines = [f"{rep['env']}: obs_dim {rep['obs_dim']}, action_dim {rep['action_dim']}",
             f"{'store':<42}{'transitions':>13}{'B/trans':>9}{'total':>12}{'peak':>12}"
             f"{'default/this':>14}{'small/this':>12}"]
    for r in rep["rows"]:
        peak = human(r["peak"]) if r.get("peak") else ""
        rd = f"{r['ratio_default_buffer']:.0f}x" if "ratio_default_buffer" in r else ""
        rs = f"{r['ratio_small_buffer']:.2f}x" if "ratio_small_buffer" in r else ""
        lines.append(f"{r['store']:<42}{r['transitions']:>13,}{r['bytes_per_transition']:>9}"
                     f"{human(r['total']):>12}{peak:>12}{rd:>14}{rs:>12}")
    return "\n".join(lines)


def _rss_now_kib() -> int:
    """Current resident set size (VmRSS) in KiB, from /proc (Linux); 0 where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _maxrss_kib() -> int:
    """Peak resident set size of this process so far, KiB (ru_maxrss is KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def measure_run(env: str, preset: str, iterations: int,
                overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Build the JAX trainer for ``preset`` on ``env`` and run ``iterations`` iterations,
    recording peak RSS at each stage. Runs on whatever device JAX picks (CPU here)."""
    marks: dict[str, Any] = {"start_maxrss_kib": _maxrss_kib()}
    t0 = time.perf_counter()
    import jax

    from reppo_jax.train import make_trainer
    from spec.presets import preset_config

    cfg = preset_config(preset, [f"env.name={env}", "run.eval_episodes=1", *overrides])
    marks["after_imports_maxrss_kib"] = _maxrss_kib()
    trainer = make_trainer(cfg)
    carry = trainer.init(cfg.run.seed)
    jax.block_until_ready(carry)
    marks["after_build_maxrss_kib"] = _maxrss_kib()
    marks["after_build_rss_kib"] = _rss_now_kib()
    t1 = time.perf_counter()
    carry, info = trainer.iteration(carry)
    jax.block_until_ready(info)
    marks["first_iteration_s"] = time.perf_counter() - t1
    marks["after_first_iteration_maxrss_kib"] = _maxrss_kib()
    t2 = time.perf_counter()
    for _ in range(iterations - 1):
        carry, info = trainer.iteration(carry)
        jax.block_until_ready(info)
    marks["later_iterations_s"] = time.perf_counter() - t2
    marks["end_maxrss_kib"] = _maxrss_kib()
    marks["end_rss_kib"] = _rss_now_kib()
    marks["live_array_bytes"] = int(sum(a.nbytes for a in jax.live_arrays()))
    marks.update({"env": env, "preset": preset, "iterations": iterations,
                  "num_envs": cfg.rollout.num_envs, "num_steps": cfg.rollout.num_steps,
                  "hidden_dim": cfg.critic.hidden_dim, "device": str(jax.devices()[0]),
                  "wall_s": time.perf_counter() - t0,
                  "finite": bool(all(bool(jax.numpy.isfinite(v)) for v in info.values()))})
    return marks


def format_measurement(m: dict[str, Any], batch: dict[str, Any]) -> str:
    """Lines describing a :func:`measure_run` result next to the batch it holds."""
    mib = 1 / 1024
    return "\n".join([
        f"measured ({m['device']}, preset {m['preset']}: {m['num_envs']} envs x {m['num_steps']} "
        f"steps, width {m['hidden_dim']}, {m['iterations']} iterations, {m['wall_s']:.0f} s):",
        f"  peak RSS after imports          {m['after_imports_maxrss_kib'] * mib:9.1f} MiB",
        f"  peak RSS after trainer build    {m['after_build_maxrss_kib'] * mib:9.1f} MiB",
        f"  peak RSS after 1st iteration    {m['after_first_iteration_maxrss_kib'] * mib:9.1f} MiB"
        f"  (compile + run {m['first_iteration_s']:.0f} s)",
        f"  peak RSS at the end             {m['end_maxrss_kib'] * mib:9.1f} MiB"
        f"  (current {m['end_rss_kib'] * mib:.1f} MiB)",
        f"  growth from build to end        "
        f"{(m['end_maxrss_kib'] - m['after_build_maxrss_kib']) * mib:9.1f} MiB"
        f"  vs batch {human(batch['total'])}, batch + shuffled copy {human(batch['peak'])}",
        f"  jax live arrays at the end      {m['live_array_bytes'] / 2 ** 20:9.1f} MiB "
        f"(params, optimiser, env state)",
    ])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="dmc/CheetahRun", help="suite/Task")
    p.add_argument("--preset", default="dmc,cpu", help="comma-separated presets to account")
    p.add_argument("--obs-dim", type=int, default=None)
    p.add_argument("--action-dim", type=int, default=None)
    p.add_argument("--measure-run", action="store_true",
                   help="also run the JAX trainer (first preset) and report peak RSS")
    p.add_argument("--iterations", type=int, default=3, help="iterations for --measure-run")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="config override for --measure-run (repeatable)")
    p.add_argument("--json", default=None, help="write the numbers as JSON")
    a = p.parse_args(argv)
    presets = [s for s in a.preset.split(",") if s]
    obs_dim, action_dim = env_dims(a.env, a.obs_dim, a.action_dim)
    rep = report(a.env, presets, obs_dim, action_dim)
    print(format_report(rep))
    if a.measure_run:
        m = measure_run(a.env, presets[0], a.iterations, a.set)
        from spec.presets import preset_config

        cfg = preset_config(presets[0], a.set)
        batch = config_batch_bytes(cfg, obs_dim, action_dim)
        rep["measurement"] = {**m, "batch_total": batch["total"], "batch_peak": batch["peak"]}
        print(format_measurement(m, batch))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rep, indent=1))
    return rep


if __name__ == "__main__":
    main()
