"""Typed, frozen configuration for REPPO, grouped as the paper's Table 2 is.

``ReppoConfig(env, rollout, critic, actor, loss, run)``: every field has a default (the paper's
Table 2 value where it has one), a documented paper symbol, and a validity rule checked at
construction. Errors are :class:`ConfigError` with a one-line message that names
``section.field``, the offending value and what is allowed, e.g.
``rollout.num_envs=-3 is invalid: must be an integer >= 1``.

Serialisation: :meth:`ReppoConfig.to_dict` / :meth:`ReppoConfig.from_dict` and the JSON pair are
lossless (tuples and ``None`` survive). CLI overrides (``--section.field=value``) go through
:func:`apply_overrides`, which converts strings by each field's declared type.

Values left ``None`` are derived from the environment's facts by :func:`spec.hyper.resolve`
(γ from the episode length, the HL-Gauss support from the reward range and γ, learning rates
from ``rollout.lr``); an explicit value always wins.

This module imports the standard library only.
"""


import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

__all__ = [
    "SCHEMA_VERSION",
    "ConfigError",
    "EnvConfig",
    "RolloutConfig",
    "CriticConfig",
    "ActorConfig",
    "LossConfig",
    "RunConfig",
    "ReppoConfig",
    "SECTIONS",
    "NORMS",
    "CRITIC_LOSSES",
    "KL_MODES",
    "ACTOR_GRADIENTS",
    "PHYSICS_IMPLS",
    "DEVICES",
    "LOG_SINKS",
    "EVAL_POLICIES",
    "apply_overrides",
    "override_pairs",
    "field_names",
    "parse_override",
]

SCHEMA_VERSION = 1
"""Version of the serialised config layout; bumped on any rename/removal of a field."""

NORMS = ("rms", "layer", "none")
CRITIC_LOSSES = ("hlgauss", "mse")
KL_MODES = ("clipped", "full", "none")
"""``loss.kl_mode``, the one declaration of the KL treatments of eq. 13 (validated here, at
construction; every loss switches on it through its port's ``losses.kl_switch``)."""
ACTOR_GRADIENTS = ("pathwise", "score", "ppo")
PHYSICS_IMPLS = ("jax", "warp", "c", "cpp", "auto", "physx_cpu", "physx_cuda")
DEVICES = ("auto", "cpu", "cuda", "gpu")
LOG_SINKS = ("jsonl", "tensorboard", "wandb")
EVAL_POLICIES = ("mode", "sample")
"""``run.eval_policy``, the one declaration of the policies an evaluation can measure (validated
here; the evaluations of both ports and ``reppo eval --policy`` switch on it)."""


def is_sampled_eval(eval_policy: str) -> bool:
    """True for 'sample', False for 'mode' (``EVAL_POLICIES``); ValueError for anything else —
    the ports' evaluation builders take the policy as a string, also outside a validated config."""
    if eval_policy not in EVAL_POLICIES:
        raise ValueError(f"unknown eval policy {eval_policy!r}: expected one of {EVAL_POLICIES}")
    return eval_policy == "sample"


class ConfigError(ValueError):
    """An invalid configuration value, override or serialised config (one-line message)."""


# --------------------------------------------------------------------------------------------
# Field declaration helpers: validity rules live in the field metadata, next to the default.
# --------------------------------------------------------------------------------------------


def _f(default: Any, **rules: Any) -> Any:
    """A dataclass field with validity rules: ge/gt/le/lt (numbers), choices, items, nonempty."""
    return field(default=default, metadata=rules)


def _fmt_num(x: float) -> str:
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)  # exact: bounds such as 2147483647 must not read 2.14748e+09
    return repr(x) if isinstance(x, float) and not float(x).is_integer() else f"{x:g}"


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _type_word(tp: Any) -> str:
    base, optional = _unwrap_optional(tp)
    if base is bool:
        word = "a boolean (true/false)"
    elif base is int:
        word = "an integer"
    elif base is float:
        word = "a number"
    elif base is str:
        word = "a string"
    elif typing.get_origin(base) is tuple:
        word = "a list of strings"
    else:  # pragma: no cover - only the types above are used
        word = str(base)
    return word + (" or none" if optional else "")


def _rule_text(tp: Any, rules: Mapping[str, Any]) -> str:
    """Human text for 'must be ...' built from the field type and its rules."""
    base, optional = _unwrap_optional(tp)
    if "choices" in rules:
        text = "one of " + ", ".join(repr(c) for c in rules["choices"])
    elif "items" in rules:
        text = "a list of " + ", ".join(repr(c) for c in rules["items"])
    else:
        text = _type_word(base)
        lo = ("ge", rules["ge"]) if "ge" in rules else ("gt", rules["gt"]) if "gt" in rules else None
        hi = ("le", rules["le"]) if "le" in rules else ("lt", rules["lt"]) if "lt" in rules else None
        if lo and hi:
            text += (f" in {'[' if lo[0] == 'ge' else '('}{_fmt_num(lo[1])}, "
                     f"{_fmt_num(hi[1])}{']' if hi[0] == 'le' else ')'}")
        elif lo:
            text += f" {'>=' if lo[0] == 'ge' else '>'} {_fmt_num(lo[1])}"
        elif hi:
            text += f" {'<=' if hi[0] == 'le' else '<'} {_fmt_num(hi[1])}"
        if rules.get("nonempty"):
            text += " (non-empty)"
    if optional:
        text += " (or none)"
    return text


def _invalid(section: str, name: str, value: Any, must: str) -> ConfigError:
    return ConfigError(f"{section}.{name}={value!r} is invalid: must be {must}")


def _coerce_and_check(section: str, f: dataclasses.Field, value: Any) -> Any:
    """Type-check ``value`` against ``f.type`` (resolved), apply the rules, return the canonical
    value (int -> float for float fields, list -> tuple for tuple fields)."""
    tp = f.type
    base, optional = _unwrap_optional(tp)
    rules = f.metadata
    must = _rule_text(tp, rules)
    if value is None:
        if optional:
            return None
        raise _invalid(section, f.name, value, must)
    if base is bool:
        if not isinstance(value, bool):
            raise _invalid(section, f.name, value, must)
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(section, f.name, value, must)
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid(section, f.name, value, must)
        value = float(value)
        if not math.isfinite(value):
            raise _invalid(section, f.name, value, must + " (finite)")
    elif base is str:
        if not isinstance(value, str):
            raise _invalid(section, f.name, value, must)
    elif typing.get_origin(base) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _invalid(section, f.name, value, must)
        value = tuple(value)
        if "items" in rules:
            bad = [v for v in value if v not in rules["items"]]
            if bad:
                raise _invalid(section, f.name, value, must)
        if len(set(value)) != len(value):
            raise _invalid(section, f.name, value, must + " without duplicates")
        return value
    if "choices" in rules and value not in rules["choices"]:
        raise _invalid(section, f.name, value, must)
    if "ge" in rules and not value >= rules["ge"]:
        raise _invalid(section, f.name, value, must)
    if "gt" in rules and not value > rules["gt"]:
        raise _invalid(section, f.name, value, must)
    if "le" in rules and not value <= rules["le"]:
        raise _invalid(section, f.name, value, must)
    if "lt" in rules and not value < rules["lt"]:
        raise _invalid(section, f.name, value, must)
    if rules.get("nonempty") and not value:
        raise _invalid(section, f.name, value, must)
    return value


class _Section:
    """Mixin for the section dataclasses: validates every field at construction."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _coerce_and_check(self.SECTION, f, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Section-local cross-field checks (override in subclasses)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


# --------------------------------------------------------------------------------------------
# Sections (paper Table 2 grouping). Attribute docstrings give the paper symbol.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvConfig(_Section):
    """Environment and problem discount ("Environment" / "Problem Discount" in Table 2)."""

    SECTION: ClassVar[str] = "env"

    name: str = _f("dmc/CartpoleBalance", nonempty=True)
    """Environment id ``suite/Name`` (see ``reppo envs``)."""
    max_episode_steps: int | None = _f(None, ge=1)
    """Episode length in agent steps ("max env steps"); None = the environment's own."""
    gamma: float | None = _f(None, ge=0.0, lt=1.0)
    """Discount γ; None = 1 − 10 / max_episode_steps (Table 2)."""
    v_min: float | None = _f(None)
    """Lower end of the HL-Gauss support, v_min; None = r_min / (1 − γ) (Table 2)."""
    v_max: float | None = _f(None)
    """Upper end of the HL-Gauss support, v_max; None = r_max / (1 − γ) (Table 2)."""
    physics_impl: str = _f("jax", choices=PHYSICS_IMPLS)
    """Simulator implementation: 'jax'/'warp'/'c'/'cpp' select MJX's implementation for
    mujoco_playground; 'physx_cpu'/'physx_cuda' ManiSkill's; 'auto' = the adapter's default."""
    normalize_obs: bool = _f(True)
    """Running mean/variance observation normalisation (paper D.4)."""
    action_repeat: int = _f(1, ge=1)
    """Simulator steps per agent step (1 = none)."""

    def _check(self) -> None:
        suite, sep, task = self.name.partition("/")
        if not (sep and suite and task) or "/" in task:
            raise _invalid("env", "name", self.name, "'suite/Name', e.g. 'dmc/CartpoleBalance'")
        if self.v_min is not None and self.v_max is not None and not self.v_min < self.v_max:
            raise ConfigError(
                f"env.v_min={self.v_min!r} is invalid: must be < env.v_max={self.v_max!r}"
            )


@dataclass(frozen=True)
class RolloutConfig(_Section):
    """Data collection and optimisation ("Environment" / "Optimization" in Table 2)."""

    SECTION: ClassVar[str] = "rollout"

    num_envs: int = _f(1024, ge=1, le=2**20)
    """Parallel environments, "n envs" (Table 2: 1024)."""
    num_steps: int = _f(128, ge=1, le=2**16)
    """Steps per environment per iteration, "n steps" (Table 2: 128)."""
    num_minibatches: int = _f(64, ge=1)
    """Minibatches per epoch, "n mini batches" (Table 2: 64); must divide num_envs·num_steps."""
    num_epochs: int = _f(8, ge=1)
    """Passes over each iteration's batch, "n epochs" (Table 2: 8)."""
    total_env_steps: int = _f(50_000_000, ge=1, le=10**13)
    """Training budget in environment (agent) steps, "total time steps" (Table 2: 5e7)."""
    lr: float = _f(3e-4, gt=0.0)
    """Adam learning rate, "lr" (Table 2: 3e-4); the default for critic, actor and α/β."""
    max_grad_norm: float = _f(0.5, gt=0.0)
    """Global gradient-norm clip, "maximum grad norm" (Table 2: 0.5)."""


@dataclass(frozen=True)
class CriticConfig(_Section):
    """Critic architecture and value loss ("Critic Architecture" in Table 2)."""

    SECTION: ClassVar[str] = "critic"

    hidden_dim: int = _f(512, ge=1, le=2**14)
    """Width h of every critic layer and of the embedding z, "critic hidden dim" (512)."""
    num_encoder_layers: int = _f(2, ge=1)
    """Layers of the encoder φ(x, a) → z, "num critic encoder layers" (2)."""
    num_head_layers: int = _f(2, ge=1)
    """Layers of the Q head f_c(z), "num critic head layers" (2)."""
    num_pred_layers: int = _f(2, ge=1)
    """Layers of the self-predictive head f_p(z), "num critic pred layers" (2)."""
    num_bins: int = _f(151, ge=2, le=2**14)
    """HL-Gauss histogram bins h, "num HL-Gauss bins" (151)."""
    loss: str = _f("hlgauss", choices=CRITIC_LOSSES)
    """Value loss: 'hlgauss' (cross-entropy to HL-Gauss histogram, D.2) or 'mse' (ablation)."""
    norm: str = _f("rms", choices=NORMS)
    """Normalisation in each Linear → Norm → SiLU block: 'rms' (paper), 'layer', 'none'."""
    sigma_ratio: float = _f(0.75, gt=0.0)
    """HL-Gauss σ as a multiple of the bin width (0.75)."""
    logit_prior_scale: float = _f(40.0, ge=0.0)
    """Initial Q-head logit offset = scale × hist(0), so the initial Q ≈ 0 (0 disables)."""
    aux_loss_mult: float = _f(1.0, ge=0.0)
    """Weight of the self-predictive auxiliary loss (eq. 17), "aux loss mult" (1.0)."""
    lr: float | None = _f(None, gt=0.0)
    """Critic learning rate; None = rollout.lr."""


@dataclass(frozen=True)
class ActorConfig(_Section):
    """Actor architecture ("Actor Architecture" in Table 2)."""

    SECTION: ClassVar[str] = "actor"

    hidden_dim: int = _f(512, ge=1, le=2**14)
    """Width of the actor's hidden layers, "actor hidden dim" (512)."""
    num_layers: int = _f(3, ge=1)
    """Linear layers in the actor, "num actor layers" (3: two blocks and an output Linear)."""
    min_std: float = _f(0.1, ge=0.0)
    """Floor on the Gaussian std: σ = exp(ρ) + min_std (paper runs: 0.1)."""
    norm: str = _f("rms", choices=NORMS)
    """Normalisation in each actor block: 'rms' (paper), 'layer', 'none'."""
    gradient: str = _f("pathwise", choices=ACTOR_GRADIENTS)
    """Policy-gradient estimator of the actor objective (paper §4.1): 'pathwise' (REPPO, eq. 13),
    'score' (likelihood ratio through the learned Q, "REPPO (score-based, Q)", with
    ``loss.score_samples`` samples and a leave-one-out baseline) or 'ppo' (PPO's clipped
    importance-ratio objective on GAE advantages, "REPPO (score-based, GAE)", with a state-value
    network ``value/layers`` trained on the λ-returns); α, β and the KL switch are kept in all
    three (``spec.reference.losses``)."""
    lr: float | None = _f(None, gt=0.0)
    """Actor learning rate; None = rollout.lr."""


@dataclass(frozen=True)
class LossConfig(_Section):
    """RL loss: λ-returns, KL trust region, entropy ("RL Loss" / "Problem Discount")."""

    SECTION: ClassVar[str] = "loss"

    lam: float = _f(0.95, ge=0.0, le=1.0)
    """TD(λ) mixing λ (Table 2: 0.95; D-REPPO on Atari: 0.65)."""
    kl_target: float = _f(0.1, gt=0.0)
    """KL trust-region size ε_KL, "KL_tar" (0.1)."""
    kl_mode: str = _f("clipped", choices=KL_MODES)
    """'clipped': per-state switch of eq. 13; 'full': always add β·KL̂; 'none': no KL (ablation)."""
    kl_samples: int = _f(16, ge=1, le=2**12)
    """Samples k from the behaviour policy per state for the KL estimate (16)."""
    score_samples: int = _f(4, ge=1, le=2**12)
    """``actor.gradient=score``: actions sampled from π_θ per state; each is baselined by the mean
    Q of the other samples (leave-one-out; none with 1 sample). 4 as in the authors' code."""
    ppo_clip: float = _f(0.2, gt=0.0, lt=1.0)
    """``actor.gradient=ppo``: clip range ε of the importance ratio (PPO's default 0.2)."""
    alpha_init: float = _f(0.01, gt=0.0)
    """Initial entropy multiplier α, "α start" (0.01)."""
    beta_init: float = _f(0.01, gt=0.0)
    """Initial KL multiplier β, "β start" (0.01)."""
    alpha_min: float = _f(0.0, ge=0.0)
    """Lower bound on the entropy multiplier α (0 = unbounded, the paper's rule). After each
    multiplier step log α is projected onto [log alpha_min, ∞) (projected gradient descent on
    the Lagrange multiplier, ``spec.reference.losses.project_log_multiplier``, as for
    ``beta_min``). Why: on D-REPPO Breakout (docs/dreppo.md) α of one seed fell to ~0.003 while
    the entropy sat at its target, and the run stalled (greedy return 6.5 for 1.5M env steps,
    actor gradient ~20x smaller than in the seeds that learned); with alpha_min = 0.03 that
    seed learns. α starts at alpha_init: a floor above it lifts α onto the floor at the
    first multiplier step (the first actor step sees alpha_init). α is never frozen (every
    ``kl_mode`` trains it), so any floor is valid."""
    alpha_min_fade_steps: int = _f(0, ge=0)
    """Env steps over which the floor on α (``alpha_min``) fades linearly to 0; 0 = the floor
    holds for the whole run. The iteration that starts after e env steps projects log α onto
    log(alpha_min · (1 − e / alpha_min_fade_steps)), and onto nothing (−inf) from
    e ≥ alpha_min_fade_steps on (``spec.reference.losses.faded_log_floor``). Why: on D-REPPO
    MinAtar (docs/dreppo.md) the constant floor of 0.03 binds for the whole run on Breakout,
    Asterix and Freeway, and the entropy climbs far above its target (0.85 against 0.55 on
    Breakout seed 0); the floor was meant for the start, while the critic cannot yet tell the
    actions apart. Fading it over 1M env steps brings the entropy back to its target but did
    not learn better there (4 games, 5M env steps, 2–3 seeds each), so no preset uses it.
    Needs ``alpha_min`` > 0."""
    beta_min: float = _f(0.0, ge=0.0)
    """Lower bound on the KL multiplier β (0 = unbounded, the paper's rule). After each multiplier
    step log β is projected onto [log beta_min, ∞) (projected gradient descent on the Lagrange
    multiplier, ``spec.reference.losses.project_log_multiplier``). Why: while the KL stays below
    ε_KL, β shrinks at the multiplier's learning rate for the whole run (to 1e-4…1e-5 after a
    few million steps), so a later KL spike meets no restoring force until β has grown back;
    a floor keeps the trust region active. β starts at beta_init: a floor above it lifts β
    onto the floor at the first multiplier step (the first actor step, where the policy still
    equals the behaviour policy and the KL is 0, sees beta_init). With kl_mode='none' β is
    frozen and unused, so there the floor must be <= beta_init."""
    entropy_target_mult: float = _f(0.5)
    """Entropy target ε_H = −mult · |A| ("ε_H = 0.5 × dim A"); discrete: fraction of log|A|."""
    multiplier_lr: float | None = _f(None, gt=0.0)
    """Learning rate of log α and log β; None = the actor's learning rate."""
    multiplier_max_grad_norm: float | None = _f(None, gt=0.0)
    """Gradient-norm clip of the α/β optimiser; None = rollout.max_grad_norm."""

    def _check(self) -> None:
        if self.alpha_min_fade_steps > 0 and self.alpha_min == 0:
            raise ConfigError(
                f"loss.alpha_min_fade_steps={self.alpha_min_fade_steps!r} fades the floor "
                f"loss.alpha_min, which is 0 (no floor): set --loss.alpha_min too, or drop "
                f"the fade")
        if self.kl_mode == "none" and self.beta_min > self.beta_init:
            raise ConfigError(
                f"loss.beta_min={self.beta_min!r} is invalid with loss.kl_mode='none': β is "
                f"frozen at loss.beta_init={self.beta_init!r} there; lower loss.beta_min or "
                f"raise loss.beta_init")


@dataclass(frozen=True)
class RunConfig(_Section):
    """Bookkeeping: seeding, evaluation, checkpoints, device, logging (not in Table 2)."""

    SECTION: ClassVar[str] = "run"

    seed: int = _f(0, ge=0, le=2**31 - 1)
    """The one integer seed; every random stream derives from it (reppo_common.seeding)."""
    eval_interval: int = _f(100_000, ge=1)
    """Evaluate the policy (``eval_policy``) every this many env steps (and at the end)."""
    eval_episodes: int = _f(16, ge=1, le=10_000)
    """Episodes per evaluation."""
    eval_policy: str = _f("mode", choices=EVAL_POLICIES)
    """The policy an evaluation plays: 'mode' (tanh(μ); D-REPPO argmax π) or 'sample' (actions
    drawn from π: tanh(μ + σ·ξ), a categorical draw, fresh noise each step from the evaluation's
    own random stream, never the training one). REPPO trains a stochastic policy under an entropy
    target, so its mode is another policy than the one trained; on nearly deterministic games
    (MinAtar Breakout has ~2 start states) 16 greedy episodes are in effect 2. 'sample' measures
    the trained policy (the usual protocol for discrete actor-critics)."""
    checkpoint_interval: int = _f(1_000_000, ge=0)
    """Save a checkpoint every this many env steps (0 = only at the end)."""
    keep_checkpoints: int = _f(3, ge=1)
    """Most recent checkpoints kept on disk."""
    device: str = _f("auto", choices=DEVICES)
    """Compute device: 'auto' (accelerator if present), 'cpu', 'cuda'/'gpu'."""
    devices: int | None = _f(None, ge=1)
    """Data-parallel devices: envs and every update minibatch are split evenly over them, gradients
    averaged (JAX: a device mesh, default all devices; torch: one torchrun process per device,
    default the launched world size). Must divide rollout.num_envs and each minibatch."""
    log: tuple[str, ...] = _f(("jsonl",), items=LOG_SINKS)
    """Metric sinks; metrics.jsonl is always written, 'tensorboard'/'wandb' are optional extras."""
    torch_compile: bool = _f(False)
    """Torch backend only (the JAX backend refuses true): run the update's critic loss and actor
    objective, forward and backward, under ``torch.compile`` (inductor; on CPU it needs a C++
    compiler). Numbers differ from the default eager run by float rounding only; the compile (tens
    of seconds, less from the persistent cache ``REPPO_TORCH_CACHE``) is counted in
    ``compile_s``. See docs/performance.md."""


SECTIONS: dict[str, type[_Section]] = {
    "env": EnvConfig,
    "rollout": RolloutConfig,
    "critic": CriticConfig,
    "actor": ActorConfig,
    "loss": LossConfig,
    "run": RunConfig,
}
"""Section name -> dataclass, in Table 2 order."""


def _divisors_near(n: int, k: int, count: int = 5) -> list[int]:
    divs = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    divs = sorted(set(divs + [n // d for d in divs]))
    return sorted(sorted(divs, key=lambda d: (abs(math.log(d / k)), d))[:count])


@dataclass(frozen=True)
class ReppoConfig:
    """The whole configuration: one section per Table 2 group plus ``run``."""

    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)
    schema_version: int = SCHEMA_VERSION
    """Layout version of the serialised config (see :data:`SCHEMA_VERSION`)."""

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"config section {name!r} must be a {cls.__name__}, "
                    f"got {type(getattr(self, name)).__name__}"
                )
        if self.schema_version != SCHEMA_VERSION:
            raise ConfigError(_schema_message(self.schema_version))
        r = self.rollout
        batch = r.num_envs * r.num_steps
        if batch % r.num_minibatches:
            near = ", ".join(str(d) for d in _divisors_near(batch, r.num_minibatches))
            raise ConfigError(
                f"rollout.num_minibatches={r.num_minibatches} is invalid: the batch "
                f"rollout.num_envs*rollout.num_steps = {r.num_envs}*{r.num_steps} = {batch} is not "
                f"divisible by it; valid counts near it: {near}"
            )
        devices = self.run.devices
        if devices is not None and r.num_envs % devices:
            near = ", ".join(str(d) for d in _divisors_near(r.num_envs, devices))
            raise ConfigError(
                f"run.devices={devices} is invalid: must divide rollout.num_envs={r.num_envs} "
                f"(every device steps the same number of envs); valid counts near it: {near}"
            )
        if devices is not None and (batch // r.num_minibatches) % devices:
            raise ConfigError(
                f"run.devices={devices} is invalid: each minibatch of rollout.num_envs*"
                f"rollout.num_steps/rollout.num_minibatches = {batch // r.num_minibatches} "
                f"samples must split evenly over the devices; use fewer minibatches or devices"
            )
        if r.total_env_steps < batch:
            raise ConfigError(
                f"rollout.total_env_steps={r.total_env_steps} is invalid: must be >= one "
                f"iteration's batch rollout.num_envs*rollout.num_steps = {batch}"
            )

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (JSON-ready; tuples become lists, restored by from_dict)."""
        out: dict[str, Any] = {"schema_version": self.schema_version}
        for name in SECTIONS:
            out[name] = getattr(self, name).to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReppoConfig":
        """Inverse of :meth:`to_dict`. Missing sections/fields take their defaults; unknown keys
        and a different ``schema_version`` raise :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping of sections, got {type(data).__name__}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ConfigError(_schema_message(version))
        sections: dict[str, Any] = {}
        for key, value in data.items():
            if key == "schema_version":
                continue
            if key not in SECTIONS:
                raise ConfigError(f"unknown config section {key!r}{_suggest(key, list(SECTIONS))}")
            if not isinstance(value, Mapping):
                raise ConfigError(f"config section {key!r} must be a mapping, got {value!r}")
            known = {f.name for f in dataclasses.fields(SECTIONS[key])}
            for fname in value:
                if fname not in known:
                    raise ConfigError(
                        f"unknown config field '{key}.{fname}'"
                        f"{_suggest(f'{key}.{fname}', field_names())}"
                    )
            sections[key] = SECTIONS[key](**value)
        return cls(**sections)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "ReppoConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON: {e}") from None
        return cls.from_dict(data)


def _schema_message(version: Any) -> str:
    return (
        f"config schema_version={version!r} is not supported: this reppo reads schema_version "
        f"{SCHEMA_VERSION}; re-create the config with this version (reppo train) or use the "
        f"reppo release that wrote it"
    )


def field_names() -> list[str]:
    """Every ``section.field`` name, in declaration order."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _suggest(word: str, candidates: list[str]) -> str:
    low = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(word.lower(), list(low), n=3, cutoff=0.5)
    if not hits:
        return ""
    return "; did you mean " + " or ".join(repr(low[h]) for h in hits) + "?"


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
_NONE = {"none", "null"}


def _lookup(key: str) -> tuple[str, dataclasses.Field]:
    """``section.field`` -> (section, Field) or ConfigError with a suggestion."""
    names = field_names()
    section, dot, fname = key.partition(".")
    if not dot:
        same = [n for n in names if n.split(".", 1)[1] == key]
        hint = ("; did you mean " + " or ".join(repr(s) for s in same) + "?") if same else (
            _suggest(key, names))
        raise ConfigError(f"config override key {key!r} must be 'section.field'{hint}")
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section {section!r} in {key!r}{_suggest(key, names)}")
    for f in dataclasses.fields(SECTIONS[section]):
        if f.name == fname:
            return section, f
    raise ConfigError(f"unknown config field {key!r}{_suggest(key, names)}")


def _parse_value(section: str, f: dataclasses.Field, text: str) -> Any:
    """Convert the string ``text`` to ``f``'s declared type (validation comes later)."""
    base, optional = _unwrap_optional(f.type)
    s = text.strip()

    def bad() -> ConfigError:
        return ConfigError(
            f"{section}.{f.name}={text!r} is invalid: expected {_type_word(f.type)}"
        )

    if optional and s.lower() in _NONE:
        return None
    if base is bool:
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
        raise bad()
    if base is int:
        try:
            return int(s)
        except ValueError:
            pass
        try:  # accept integral float notation such as 5e7
            x = float(s)
        except ValueError:
            raise bad() from None
        if math.isfinite(x) and x.is_integer():
            return int(x)
        raise bad()
    if base is float:
        try:
            return float(s)
        except ValueError:
            raise bad() from None
    if base is str:
        return text
    if typing.get_origin(base) is tuple:
        return tuple(p.strip() for p in s.split(",") if p.strip())
    raise bad()  # pragma: no cover


def parse_override(item: str) -> tuple[str, Any]:
    """``'section.field=value'`` (a leading ``--`` is tolerated) -> (``'section.field'``, value
    converted to the field's type). Raises ConfigError on unknown keys or unparsable values."""
    text = item[2:] if item.startswith("--") else item
    key, eq, raw = text.partition("=")
    if not eq:
        raise ConfigError(f"override {item!r} must look like section.field=value")
    section, f = _lookup(key.strip())
    return f"{section}.{f.name}", _parse_value(section, f, raw)


def _flatten(overrides: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, Mapping):
            out.extend((f"{key}.{k}", v) for k, v in value.items())
        else:
            out.append((key, value))
    return out


def override_pairs(
    overrides: list[str] | tuple[str, ...] | Mapping[str, Any],
) -> list[tuple[str, Any]]:
    """Normalise overrides to ``[("section.field", typed value), ...]`` (see apply_overrides).

    Keys are checked (unknown ones raise ConfigError with a suggestion) and string values are
    converted by the field's type; values are not range-checked here."""
    if isinstance(overrides, Mapping):
        pairs = []
        for key, value in _flatten(overrides):
            section, f = _lookup(key)
            if isinstance(value, str) and _unwrap_optional(f.type)[0] is not str:
                value = _parse_value(section, f, value)
            pairs.append((f"{section}.{f.name}", value))
        return pairs
    if isinstance(overrides, str):
        raise ConfigError("overrides must be a list of 'section.field=value' strings")
    return [parse_override(item) for item in overrides]


def apply_overrides(
    cfg: ReppoConfig, overrides: list[str] | tuple[str, ...] | Mapping[str, Any]
) -> ReppoConfig:
    """Return a new, validated config with ``overrides`` applied (the input is unchanged).

    ``overrides`` is either a list of ``section.field=value`` strings (CLI form; values are
    parsed by the field's type: ints also as ``5e7``, floats as ``3e-4``, bools from
    true/false/1/0/yes/no, ``none``/``null`` for optional fields, comma lists for tuples), or a
    mapping, nested ``{"rollout": {"num_envs": 64}}`` or flat ``{"rollout.num_envs": 64}``;
    string values in a mapping are parsed like CLI values, other values must already have the
    field's type. All overrides are applied before validation, so cross-field rules (e.g.
    minibatch divisibility) see the final values; later entries win.
    """
    data = cfg.to_dict()
    for key, value in override_pairs(overrides):
        section, fname = key.split(".", 1)
        data[section][fname] = _jsonable(value)
    return ReppoConfig.from_dict(data)
