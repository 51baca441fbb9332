"""Registry of the environments reppo knows, with the facts the config resolvers need.

An environment is named ``suite/Name`` (``dmc/CheetahRun``, ``maniskill/PickCube-v1``,
``minatar/Breakout``, ``atari/Pong``). Each :class:`EnvSpec` records the action space, which
backends have an adapter, the per-step reward range (for v_min/v_max), the episode length (for γ)
and whether the suite reports a success rate. The adapters themselves live in the backends.
"""

import difflib
from dataclasses import dataclass

from reppo_common.errors import UserError

__all__ = ["EnvSpec", "REGISTRY", "SUITES", "resolve_env", "list_envs", "suggest_envs"]


@dataclass(frozen=True)
class EnvSpec:
    """Facts about one environment."""

    suite: str
    """Suite key: 'dmc', 'maniskill', 'minatar' or 'atari'."""
    name: str
    """Task name within the suite, e.g. 'CheetahRun'."""
    full_name: str
    """'suite/name', the id used by ``--env`` and ``env.name``."""
    action_space: str
    """'continuous' or 'discrete'."""
    backends: tuple[str, ...]
    """Backends with an adapter for it ('jax', 'torch')."""
    reward_range: tuple[float, float]
    """Per-step reward bounds (r_min, r_max) used for the HL-Gauss support."""
    max_episode_steps: int
    """Episode length in agent steps (γ = 1 − 10 / this)."""
    success_metric: bool
    """True if the suite reports ``eval/success_rate``."""
    default_preset: str
    """Preset ``reppo train`` uses for it when ``--preset`` is not given."""


SUITES: dict[str, str] = {
    "dmc": "DeepMind Control via mujoco_playground (MJX), continuous",
    "maniskill": "ManiSkill3 manipulation (GPU PhysX), continuous, success rate",
    "minatar": "MinAtar via gymnax, discrete",
    "atari": "Atari (ALE via envpool), discrete, clipped rewards",
}

_DMC = (
    "AcrobotSwingup AcrobotSwingupSparse BallInCup CartpoleBalance CartpoleBalanceSparse "
    "CartpoleSwingup CartpoleSwingupSparse CheetahRun FingerSpin FingerTurnEasy FingerTurnHard "
    "FishSwim HopperHop HopperStand HumanoidStand HumanoidWalk HumanoidRun PendulumSwingup "
    "PointMass ReacherEasy ReacherHard SwimmerSwimmer6 WalkerRun WalkerStand WalkerWalk"
).split()

_MANISKILL = {
    "PushCube-v1": 50,
    "PickCube-v1": 50,
    "StackCube-v1": 50,
    "PegInsertionSide-v1": 100,
    "PushT-v1": 100,
    "PokeCube-v1": 100,
    "PullCube-v1": 100,
    "LiftPegUpright-v1": 100,
    "RollBall-v1": 100,
}
"""Task -> episode length used for γ (ManiSkill's own time limits for these tasks)."""

_MINATAR = {"Breakout": 1000, "Asterix": 1000, "SpaceInvaders": 1000, "Freeway": 2500}
"""gymnax MinAtar time limits (max_steps_in_episode)."""

_ATARI = (
    "Amidar BattleZone Bowling DoubleDunk Frostbite KungFuMaster NameThisGame Phoenix Qbert "
    "Riverraid Pong Breakout"
).split()
"""The Atari-10 subset (Aitchison et al., 2023) plus Pong and Breakout as quick checks
(benchmarks/gpu_check.py runs both)."""


_DMC_PRESETS = {"PendulumSwingup": "cpu-repeat4"}
"""DMC tasks whose default preset is not ``cpu`` (chosen by measurement; see spec/presets.py)."""


def _build() -> dict[str, EnvSpec]:
    reg: dict[str, EnvSpec] = {}

    def add(suite, name, space, backends, rr, steps, success, preset):
        full = f"{suite}/{name}"
        reg[full] = EnvSpec(suite, name, full, space, backends, rr, steps, success, preset)

    for n in _DMC:
        add("dmc", n, "continuous", ("jax", "torch"), (0.0, 1.0), 1000, False,
            _DMC_PRESETS.get(n, "cpu"))
    for n, steps in _MANISKILL.items():
        # Dense normalised ManiSkill rewards lie in [0, 1]; the preset fixes v in [-15, 15].
        add("maniskill", n, "continuous", ("torch",), (0.0, 1.0), steps, True, "cpu-maniskill")
    for n, steps in _MINATAR.items():
        add("minatar", n, "discrete", ("jax",), (0.0, 1.0), steps, False, "cpu-discrete")
    for n in _ATARI:
        # 108k frames with frame skip 4; rewards clipped to [-1, 1].
        add("atari", n, "discrete", ("jax",), (-1.0, 1.0), 27_000, False, "atari")
    return reg


REGISTRY: dict[str, EnvSpec] = _build()
"""``suite/Name`` -> :class:`EnvSpec`."""


def list_envs(suite: str | None = None) -> list[EnvSpec]:
    """All registered envs (registry order), optionally of one suite."""
    if suite is not None and suite not in SUITES:
        hint = difflib.get_close_matches(suite.lower(), list(SUITES), n=1, cutoff=0.5)
        raise UserError(
            f"unknown suite {suite!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" (suites: {', '.join(SUITES)})"
        )
    return [e for e in REGISTRY.values() if suite is None or e.suite == suite]


def suggest_envs(name: str, n: int = 3) -> list[str]:
    """Closest registered full names to ``name`` (case-insensitive; also matches bare task names)."""
    lower = {k.lower(): k for k in REGISTRY}
    q = name.lower()
    hits = difflib.get_close_matches(q, list(lower), n=n, cutoff=0.6)
    if not hits and "/" not in q:
        by_task = {k.split("/", 1)[1]: k for k in lower}
        hits = [by_task[t] for t in difflib.get_close_matches(q, list(by_task), n=n, cutoff=0.6)]
    return [lower[h] for h in hits]


def resolve_env(name: str) -> EnvSpec:
    """``suite/Name`` -> EnvSpec (exact match, then case-insensitive); else UserError with the
    closest names. A bare task name (``CheetahRun``) is rejected with the prefixed suggestion."""
    if name in REGISTRY:
        return REGISTRY[name]
    by_lower = {k.lower(): v for k, v in REGISTRY.items()}
    if "/" in name and name.lower() in by_lower:
        return by_lower[name.lower()]
    if "/" not in name:
        exact = [k for k in REGISTRY if k.split("/", 1)[1].lower() == name.lower()]
        if exact:
            raise UserError(
                f"environment {name!r} needs its suite prefix: use --env {exact[0]}"
            )
    hits = suggest_envs(name)
    hint = ("; did you mean " + " or ".join(hits) + "?") if hits else ""
    raise UserError(f"unknown environment {name!r}{hint} (see `reppo envs`)")
