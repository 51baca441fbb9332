"""The one registry of the environments reppo knows, with the facts the config resolvers need.

An environment is named ``suite/Name``: built-in suites (``dmc/CheetahRun``,
``maniskill/PickCube-v1``, ``minatar/Breakout``, ``atari/Pong``), open suites resolved from the
simulators' own registries (``playground/Go1JoystickFlatTerrain``, ``gym/Pendulum-v1``, any
registered ManiSkill id) and user envs added with :func:`register` (``--env
my_pkg.envs:my/Task`` imports ``my_pkg.envs`` first). Each :class:`EnvSpec` records the action
space, which backends have an adapter, the per-step reward range or declared value support
(v_min/v_max), the episode length (γ, time limit, evaluation length) and the success signal.
The adapters live in the backends (``reppo_jax.envs``, ``reppo_torch.envs``); docs/envs.md
describes the API.
"""

import difflib
import importlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from reppo_common.errors import UserError

__all__ = ["EnvSpec", "REGISTRY", "SUITES", "register", "resolve_env", "list_envs",
           "suggest_envs", "config_flags", "check_value_range", "check_declared_facts",
           "is_discrete_env"]


@dataclass(frozen=True)
class EnvSpec:
    """Facts about one environment, declared once and read by the CLI, both ports and the
    hyperparameter resolver (``spec.hyper``)."""

    suite: str
    """Suite key, e.g. 'dmc', 'maniskill', 'playground', 'gym' or a user suite."""
    name: str
    """Task name within the suite, e.g. 'CheetahRun'."""
    full_name: str
    """'suite/name', the id used by ``--env`` and ``env.name``."""
    action_space: str
    """'continuous' or 'discrete'."""
    backends: tuple[str, ...]
    """Backends with an adapter for it ('jax', 'torch')."""
    reward_range: tuple[float, float] | None
    """Per-step reward bounds (r_min, r_max) used for the HL-Gauss support; None = unknown
    (then ``v_min``/``v_max`` must be given, here or as ``--env.v_min/--env.v_max``)."""
    max_episode_steps: int
    """Episode length in agent steps: the time limit, the evaluation length and γ = 1 − 10/T."""
    success_metric: bool
    """True if the env reports ``eval/success_rate``."""
    default_preset: str
    """Preset ``reppo train`` uses for it when ``--preset`` is not given."""
    gamma: float | None = None
    """Declared discount (None: 1 − 10 / max_episode_steps)."""
    v_min: float | None = None
    """Declared lower end of the value support (None: r_min / (1 − γ))."""
    v_max: float | None = None
    """Declared upper end of the value support (None: r_max / (1 − γ))."""
    success_key: str | None = None
    """Info key holding the per-episode success flag (user and gymnasium envs)."""
    factories: Mapping[str, Callable[[int], Any]] = field(default_factory=dict)
    """Backend name -> ``factory(num_envs)`` building the env (user envs; see docs/envs.md)."""
    declares_values: bool = False
    """True if γ/v_min/v_max above are the env's facts and override the preset's values in a
    new run's config (user, playground and gymnasium envs). Built-in suites leave the value
    support to their presets (e.g. ``dmc``: v in [0, 150])."""
    source: str | None = None
    """Module that registers it (``--env module:suite/Name`` imports it first)."""


SUITES: dict[str, str] = {
    "dmc": "DeepMind Control via mujoco_playground (MJX), continuous",
    "maniskill": "ManiSkill3 manipulation (GPU PhysX), continuous, success rate; any "
                 "registered ManiSkill id works",
    "minatar": "MinAtar via gymnax, discrete",
    "atari": "Atari (ALE via envpool), discrete, clipped rewards",
    "playground": "mujoco_playground locomotion and manipulation (MJX), continuous",
    "gym": "gymnasium continuous-control envs (vector envs, CPU); any registered Box-action id",
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

_PLAYGROUND_VALUES = {"locomotion": (-10.0, 10.0), "manipulation": (-100.0, 100.0)}
"""Value support of the playground families. Their per-step rewards are weighted sums of
shaped terms without a common bound (locomotion: terms × ctrl_dt 0.02, so |r| is about 0.1;
manipulation: unscaled terms of a few units), so the support is declared instead of derived
from a reward range; override it with ``--env.v_min/--env.v_max``."""

_PLAYGROUND = {
    "locomotion": {
        "ApolloJoystickFlatTerrain": 1000, "BarkourJoystick": 1000,
        "BerkeleyHumanoidJoystickFlatTerrain": 1000, "BerkeleyHumanoidJoystickRoughTerrain": 1000,
        "G1JoystickFlatTerrain": 1000, "G1JoystickRoughTerrain": 1000,
        "Go1JoystickFlatTerrain": 1000, "Go1JoystickRoughTerrain": 1000, "Go1Getup": 300,
        "Go1Handstand": 500, "Go1Footstand": 500, "H1InplaceGaitTracking": 1000,
        "H1JoystickGaitTracking": 1000, "Op3Joystick": 1000, "SpotFlatTerrainJoystick": 1000,
        "SpotGetup": 300, "SpotJoystickGaitTracking": 1000, "T1JoystickFlatTerrain": 1000,
        "T1JoystickRoughTerrain": 1000,
    },
    "manipulation": {
        "AlohaHandOver": 250, "AlohaSinglePegInsertion": 1000, "PandaPickCube": 150,
        "PandaPickCubeOrientation": 150, "PandaPickCubeCartesian": 200, "PandaOpenCabinet": 150,
        "PandaRobotiqPushCube": 3000, "LeapCubeReorient": 1000, "LeapCubeRotateZAxis": 500,
        "AeroCubeRotateZAxis": 500,
    },
}
"""mujoco_playground's locomotion and manipulation tasks -> ``episode_length`` of their default
config (listed statically, as the DMC tasks are, so ``reppo envs`` needs no simulator import;
a test checks it against the installed mujoco_playground, and tasks of a newer playground are
resolved from its registry)."""

_GYM_REWARD_RANGES = {"Pendulum-v1": (-(math.pi ** 2 + 0.1 * 8.0 ** 2 + 0.001 * 2.0 ** 2), 0.0)}
"""Exact per-step reward bounds of gymnasium envs that have them (Pendulum: −(θ² + 0.1·θ̇² +
0.001·u²) with |θ| ≤ π, |θ̇| ≤ 8, |u| ≤ 2). Other ``gym/`` ids need ``--env.v_min/--env.v_max``."""

_GYM_LISTED = (
    "Pendulum-v1", "MountainCarContinuous-v0", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5",
    "Ant-v5", "Humanoid-v5", "Swimmer-v5", "Reacher-v5", "Pusher-v5", "InvertedPendulum-v5",
    "InvertedDoublePendulum-v5",
)
"""Continuous-action gymnasium ids that ``reppo envs`` lists (any registered id with a Box action
space works with ``--env gym/<id>``)."""


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
    for family, tasks in _PLAYGROUND.items():
        for n, steps in tasks.items():
            reg[f"playground/{n}"] = _playground_spec(n, family, steps)
    return reg


def _playground_spec(task: str, family: str, steps: int) -> EnvSpec:
    lo, hi = _PLAYGROUND_VALUES[family]
    return EnvSpec("playground", task, f"playground/{task}", "continuous", ("jax", "torch"), None,
                   int(steps), False, "cpu", v_min=lo, v_max=hi, declares_values=True)


REGISTRY: dict[str, EnvSpec] = _build()
"""``suite/Name`` -> :class:`EnvSpec`: the built-in suites (with the listed playground tasks)
plus everything :func:`register`ed. ``gym/`` ids, unlisted ``maniskill/`` ids and playground
tasks newer than the list are resolved on demand by :func:`resolve_env`."""

_RESOLVED: dict[str, EnvSpec] = {}
"""Specs of open-suite ids resolved so far (kept apart from REGISTRY, which lists only the
built-in and registered envs)."""

_BUILTIN_SUITES = ("dmc", "maniskill", "minatar", "atari", "playground", "gym", "toy")
"""Suites with an adapter in the ports (toy: the analytic test envs); user envs pick others."""


def register(name: str, *, max_episode_steps: int, make_jax: Callable[[int], Any] | None = None,
             make_torch: Callable[[int], Any] | None = None,
             reward_range: tuple[float, float] | None = None, v_min: float | None = None,
             v_max: float | None = None, gamma: float | None = None,
             action_space: str = "continuous", success_key: str | None = None,
             default_preset: str = "cpu", overwrite: bool = False) -> EnvSpec:
    """Register a user environment ``suite/Name`` with its facts; returns its :class:`EnvSpec`.

    ``make_jax(num_envs)`` returns a ``reppo_jax.envs.VecEnv`` or a single functional env that
    ``reppo_jax.envs.wrap_env`` vectorises (any mujoco_playground ``MjxEnv``);
    ``make_torch(num_envs)`` returns a ``gymnasium.vector.VectorEnv`` or a
    ``reppo_torch.envs.VecEnv``. Facts: ``max_episode_steps`` (time limit, evaluation length, γ
    = 1 − 10/T unless ``gamma``), the value support from ``reward_range`` (per-step bounds) or
    explicit ``v_min``/``v_max``, and ``success_key`` (info key of the episode's success flag).
    Every fact is validated here (one-line UserError); the env's own shapes, dtypes and action
    bounds are checked against them when a port builds it. Call it at import time of your module
    and train with ``--env your.module:suite/Name``."""
    suite, sep, task = name.partition("/")
    if not (sep and suite and task) or "/" in task or ":" in name:
        raise UserError(f"register({name!r}): the name must look like 'suite/Name'")
    if suite in _BUILTIN_SUITES:
        raise UserError(f"register({name!r}): suite {suite!r} is built in; pick another suite "
                        f"name, e.g. 'my/{task}'")
    if name in REGISTRY and not overwrite:
        raise UserError(f"register({name!r}): already registered (pass overwrite=True to replace)")
    backends = tuple(b for b, f in (("jax", make_jax), ("torch", make_torch)) if f is not None)
    if not backends:
        raise UserError(f"register({name!r}): give make_jax and/or make_torch (a factory "
                        f"called with num_envs)")
    for b, f in (("jax", make_jax), ("torch", make_torch)):
        if f is not None and not callable(f):
            raise UserError(f"register({name!r}): make_{b} must be callable, got {f!r}")
    if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, int) \
            or max_episode_steps < 1:
        raise UserError(f"register({name!r}): max_episode_steps must be an integer >= 1, got "
                        f"{max_episode_steps!r}")
    if action_space not in ("continuous", "discrete"):
        raise UserError(f"register({name!r}): action_space must be 'continuous' or 'discrete', "
                        f"got {action_space!r}")
    if action_space == "discrete" and make_torch is not None:
        raise UserError(f"register({name!r}): discrete actions (D-REPPO) are JAX only; drop "
                        f"make_torch")
    from spec.presets import PRESETS

    if default_preset not in PRESETS:
        hint = difflib.get_close_matches(default_preset, list(PRESETS), n=1)
        raise UserError(f"register({name!r}): unknown default_preset {default_preset!r}"
                        + (f"; did you mean {hint[0]!r}?" if hint else ""))
    if reward_range is not None:
        try:
            lo, hi = (float(r) for r in reward_range)
        except (TypeError, ValueError):
            raise UserError(f"register({name!r}): reward_range must be a pair (r_min, r_max), "
                            f"got {reward_range!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UserError(f"register({name!r}): reward_range must be finite with r_min < "
                            f"r_max, got {reward_range!r}")
        reward_range = (lo, hi)
    elif v_min is None or v_max is None:
        raise UserError(f"register({name!r}): declare reward_range=(r_min, r_max) or both "
                        f"v_min and v_max (the HL-Gauss value support)")
    if v_min is not None and v_max is not None and not float(v_min) < float(v_max):
        raise UserError(f"register({name!r}): v_min={v_min} must be < v_max={v_max}")
    if gamma is not None and not 0.0 <= float(gamma) < 1.0:
        raise UserError(f"register({name!r}): gamma must lie in [0, 1), got {gamma!r}")
    spec = EnvSpec(
        suite, task, name, action_space, backends, reward_range, int(max_episode_steps),
        success_key is not None, default_preset,
        gamma=None if gamma is None else float(gamma),
        v_min=None if v_min is None else float(v_min),
        v_max=None if v_max is None else float(v_max), success_key=success_key,
        factories={b: f for b, f in (("jax", make_jax), ("torch", make_torch)) if f is not None},
        declares_values=True,
        source=getattr(make_jax or make_torch, "__module__", None),
    )
    REGISTRY[name] = spec
    return spec


def config_flags(spec: EnvSpec, name: str | None = None) -> list[str]:
    """The ``section.field=value`` flags a new run's config gets from the env's facts:
    ``env.name`` (``name`` as typed, e.g. with its ``module:`` prefix, so a resumed or evaluated
    run imports the module again) and, for envs that declare them, γ and the value support
    (None = derived by the resolver), which replace the preset's values; explicit
    ``--env.*`` overrides still win."""
    module = name.partition(":")[0] if name and ":" in name else ""
    flags = [f"env.name={module + ':' if module else ''}{spec.full_name}"]
    if spec.declares_values:
        flags += [f"env.gamma={spec.gamma}", f"env.v_min={spec.v_min}", f"env.v_max={spec.v_max}"]
    return flags


def check_value_range(config: Any, reward_range: tuple[float, float] | None, name: str) -> None:
    """:func:`spec.hyper.require_value_support` as a :class:`UserError`, for the CLI to refuse
    a run before its directory exists."""
    from spec.config import ConfigError
    from spec.hyper import require_value_support

    try:
        require_value_support(config, reward_range, name)
    except ConfigError as err:
        raise UserError(str(err)) from None


def check_declared_facts(env: Any, spec: EnvSpec, num_envs: int, max_episode_steps: int, *,
                         factory: str, accepted: str, attrs: tuple[str, ...]) -> None:
    """The framework-free part of checking a user env (built by ``spec``'s ``factory``, e.g.
    ``make_jax``) against its declared facts, the same in both ports: the attributes ``attrs``
    a port needs (``accepted`` names what the port takes), the number of envs, the episode
    length and, where both declare one, the reward range. One-line :class:`UserError`."""
    name = spec.full_name
    for attr in attrs:
        if not hasattr(env, attr):
            raise UserError(f"{name}: {factory} returned {type(env).__name__}, which is neither "
                            f"{accepted} (missing {attr!r})")
    if int(env.num_envs) != num_envs:
        raise UserError(f"{name}: {factory}({num_envs}) built {env.num_envs} envs")
    if int(env.max_episode_steps) != max_episode_steps:
        raise UserError(f"{name}: the env's max_episode_steps={env.max_episode_steps} differs from "
                        f"the declared/configured {max_episode_steps}")
    rr = getattr(env, "reward_range", None)
    if rr is not None and spec.reward_range is not None and tuple(rr) != tuple(spec.reward_range):
        raise UserError(f"{name}: the env's reward_range={tuple(rr)} differs from the declared "
                        f"{spec.reward_range}")


def is_discrete_env(name: str) -> bool:
    """True if the env ``name`` (any form :func:`resolve_env` accepts) has discrete actions;
    False for names that resolve to nothing (their adapter reports the error)."""
    try:
        return resolve_env(name).action_space == "discrete"
    except UserError:
        return False


def _open_suite_spec(suite: str, task: str) -> EnvSpec | None:
    """Spec of an id of an open suite (``playground``, ``gym``, unlisted ``maniskill``), from
    the simulator's own registry; None if the simulator does not know it."""
    if suite == "playground":
        try:
            from mujoco_playground import registry as pg
        except ImportError:
            raise UserError("playground/ envs need mujoco_playground: pip install -e "
                            "'.[jax]'") from None
        family = ("locomotion" if task in pg.locomotion.ALL_ENVS else
                  "manipulation" if task in pg.manipulation.ALL_ENVS else None)
        if family is None:
            return None
        return _playground_spec(task, family, pg.get_default_config(task).episode_length)
    if suite == "gym":
        try:
            import gymnasium
        except ImportError:
            raise UserError("gym/ envs need gymnasium: pip install gymnasium") from None
        try:
            gspec = gymnasium.spec(task)
        except gymnasium.error.Error:
            return None
        steps = gspec.max_episode_steps
        if steps is None:
            raise UserError(f"gym/{task} has no registered time limit; register it with "
                            f"reppo_common.registry.register(..., max_episode_steps=T)")
        return EnvSpec("gym", task, f"gym/{task}", "continuous", ("torch",),
                       _GYM_REWARD_RANGES.get(task), int(steps), False, "cpu-gym",
                       declares_values=True)
    if suite == "maniskill":
        try:
            import mani_skill.envs  # noqa: F401  (registers the tasks)
            from mani_skill.utils.registration import REGISTERED_ENVS
        except ImportError:
            return None
        if task not in REGISTERED_ENVS:
            return None
        steps = REGISTERED_ENVS[task].max_episode_steps or 50
        return EnvSpec("maniskill", task, f"maniskill/{task}", "continuous", ("torch",),
                       (0.0, 1.0), int(steps), True, "cpu-maniskill")
    return None


def _import_user_module(module: str, name: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise UserError(f"--env {name}: cannot import module {module!r} (is it on "
                            f"PYTHONPATH / installed?)") from None
        raise


def _suites() -> list[str]:
    return list(SUITES) + sorted({e.suite for e in REGISTRY.values()} - set(SUITES))


def _open_suite_listing(suite: str) -> list[EnvSpec]:
    """The listed ids of an open suite (empty if its simulator is not installed)."""
    if suite == "playground":
        return [e for e in REGISTRY.values() if e.suite == "playground"]
    if suite != "gym":
        return []
    try:
        import gymnasium
    except ImportError:
        return []
    names = [n for n in _GYM_LISTED if n in gymnasium.registry]
    out = []
    for n in names:
        spec = _RESOLVED.get(f"{suite}/{n}") or _open_suite_spec(suite, n)
        if spec is not None:
            out.append(spec)
    return out


def list_envs(suite: str | None = None, *, open_suites: bool = True) -> list[EnvSpec]:
    """All known envs, optionally of one suite: the built-in ones, then registered user envs,
    then (``open_suites``) the listed ids of ``playground/`` and ``gym/`` (which imports
    gymnasium)."""
    suites = _suites()
    if suite is not None and suite not in suites:
        hint = difflib.get_close_matches(suite.lower(), suites, n=1, cutoff=0.5)
        raise UserError(
            f"unknown suite {suite!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" (suites: {', '.join(suites)})"
        )
    out = [e for e in REGISTRY.values() if (suite is None or e.suite == suite)
           and e.suite not in ("playground", "gym")]  # these two come in their listing order
    if open_suites:
        for s in ("playground", "gym"):
            if suite in (None, s):
                out += _open_suite_listing(s)
    return out


def suggest_envs(name: str, n: int = 3) -> list[str]:
    """Closest registered full names to ``name`` (case-insensitive; also matches bare task names)."""
    lower = {k.lower(): k for k in REGISTRY}
    q = name.lower()
    hits = difflib.get_close_matches(q, list(lower), n=n, cutoff=0.6)
    if not hits and "/" not in q:
        by_task = {k.split("/", 1)[1]: k for k in lower}
        hits = [by_task[t] for t in difflib.get_close_matches(q, list(by_task), n=n, cutoff=0.6)]
    return [lower[h] for h in hits]


def _resolve_imported(name: str) -> EnvSpec:
    """``module:suite/Name`` or ``module:attr``: import the module (which registers its envs),
    then look the env up, as ``gymnasium.make("module:Id")`` does."""
    module, _, key = name.partition(":")
    if not module or not key:
        raise UserError(f"--env {name!r}: expected 'module:suite/Name', e.g. "
                        f"'my_pkg.envs:my/Task'")
    _import_user_module(module, name)
    spec = REGISTRY.get(key)
    if spec is None:
        attr = getattr(importlib.import_module(module), key, None) if "/" not in key else None
        if isinstance(attr, EnvSpec):
            spec = attr
    if spec is None:
        mine = [e.full_name for e in REGISTRY.values() if e.source == module]
        raise UserError(f"--env {name}: module {module!r} registers no env {key!r}"
                        + (f" (it registers: {', '.join(mine)})" if mine else
                           " (call reppo_common.registry.register('suite/Name', ...) in it)"))
    return replace(spec, source=module)


def resolve_env(name: str) -> EnvSpec:
    """``suite/Name`` -> EnvSpec (exact match, then case-insensitive, then the open suites
    ``playground/``, ``gym/`` and any registered ManiSkill id); ``module:suite/Name`` imports
    ``module`` first (user envs). Else UserError with the closest names. A bare task name
    (``CheetahRun``) is rejected with the prefixed suggestion."""
    if ":" in name:
        return _resolve_imported(name)
    if name in REGISTRY:
        return REGISTRY[name]
    by_lower = {k.lower(): v for k, v in REGISTRY.items()}
    if "/" in name and name.lower() in by_lower:
        return by_lower[name.lower()]
    suite, _, task = name.partition("/")
    if task and suite in ("playground", "gym", "maniskill"):
        spec = _RESOLVED.get(name) or _open_suite_spec(suite, task)
        if spec is not None:
            _RESOLVED[name] = spec
            return spec
        listing = [e.full_name for e in _open_suite_listing(suite)]
        hits = difflib.get_close_matches(name, listing, n=3, cutoff=0.6)
        hint = ("; did you mean " + " or ".join(hits) + "?") if hits else ""
        raise UserError(f"unknown environment {name!r}{hint} (see `reppo envs --suite {suite}`)")
    if "/" not in name:
        exact = [k for k in REGISTRY if k.split("/", 1)[1].lower() == name.lower()]
        if exact:
            raise UserError(
                f"environment {name!r} needs its suite prefix: use --env {exact[0]}"
            )
    hits = suggest_envs(name)
    hint = ("; did you mean " + " or ".join(hits) + "?") if hits else ""
    raise UserError(f"unknown environment {name!r}{hint} (see `reppo envs`)")
