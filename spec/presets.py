"""Presets as data: each is a one-line description plus nested overrides of the Table 2 defaults.

A preset never selects a code path; it only changes config values. ``preset_config(name)`` is
``apply_overrides(ReppoConfig(), PRESETS[name]["overrides"])`` followed by any user overrides.

Provenance of the numbers:
- ``dmc``: the paper's small-data DMC setting (1024 envs × 32 steps = 32,768 transitions per
  iteration, 16 minibatches of 2,048). γ is left to the rule 1 − 10/T (= 0.99 for 1000-step
  episodes), but the support is set to [0, 150] explicitly: the published DMC runs used it, while
  the Table 2 rule would give r_max/(1 − γ) = 100 for rewards in [0, 1].
- ``dmc-large``: Table 2 as printed (1024 × 128 = 131,072 transitions, 64 minibatches).
- ``maniskill``: γ = 1 − 10/T from the task's episode length and v ∈ [−15, 15] as in the
  published ManiSkill runs; Table 2 sizes otherwise.
- ``atari``: D-REPPO on Atari-10 (paper §4 / Appendix C): λ = 0.65 as recommended for PQN, and a
  PQN-like data setup (128 envs × 32 steps, 32 minibatches, 2 epochs, 10M agent steps = 40M
  frames). γ = 0.99 explicitly (the 1 − 10/T rule would give 0.9996 for 27,000-step episodes);
  the support follows from clipped rewards in [−1, 1]. Sizes are for the discrete backend issue
  to confirm.
- ``cpu`` / ``cpu-discrete`` / ``tiny``: sized for this project's 2-core CPU machines (see
  ``CPU_SIZES``); not paper settings.
- ``cpu-maniskill``: ManiSkill on the CPU simulator (physx_cpu allows one env per instance, ~100
  env-steps/s per core), so few envs and many updates per step; measured on PushCube-v1 seed 0
  (a development run; data not stored): eval success 0.94 at 60k env steps, 1.0 at 80k.
- ``cpu-repeat4``: ``cpu`` with action repeat 4 — the tuning mujoco_playground's own DMC PPO
  config intends for PendulumSwingUp — and 4× the parallel envs (256 × 32 steps, 64 minibatches
  of 128: the same minibatch size and the same 1/16 updates per env step as ``cpu``).
  Measured on dmc/PendulumSwingup (development runs; data not stored): with 64 envs, seed 0
  evaluated ≥ 600 after 344k agent steps with action repeat 4, after 983k with repeat 2, never within 2M with repeat 1; but seeds 1
  and 2 never discovered the swing-up (best 125 / 17 after 3.3M env steps, also with
  γ = 0.99 or an entropy target of 0). With 256 envs all five seeds did (first eval ≥ 600 at
  2.95M / 1.57M / 1.38M / 1.57M / 1.38M env steps, 5–9 min on the shared 2 cores): a
  sparse-reward task needed more simultaneous exploring episodes, not more updates.
  γ follows 1 − 10/T with T = 1000/4 agent steps.
- ``data-large`` / ``data-medium`` / ``data-small`` / ``data-tiny``: the data-scaling experiment
  of Appendix E.3, Figure 12a (envs x steps, minibatches, 8 epochs; "updates per batch" =
  epochs x minibatches):

  ====== ==== ===== =========== ====== ======= ============ ===============
  name   envs steps minibatches epochs batch   minibatch    updates/batch
  ====== ==== ===== =========== ====== ======= ============ ===============
  large  1024 128   64          8      131,072 2,048        512
  medium 1024 32    16          8      32,768  2,048        128
  small  1024 8     4           8      8,192   2,048        32
  tiny   256  8     1           8      2,048   2,048        8
  ====== ==== ===== =========== ====== ======= ============ ===============

  The paper keeps the minibatch size (2,048) fixed and reduces the number of minibatches with the
  batch. It does not restate the other values for this experiment; we take the DMC support
  v in [0, 150] and γ = 1 − 10/T of the ``dmc`` preset and the 50M-step budget of the main runs.
  ``data-large`` equals ``dmc-large`` and ``data-medium`` equals ``dmc`` in sizes. These are
  GPU-sized: on a CPU, divide ``rollout.num_envs`` of all four by one factor k and leave steps,
  minibatches and epochs as they are. That keeps each setting's rollout length, its updates per
  batch and the 16:4:1:¼ ratio of batch sizes; the minibatch size becomes 2,048/k in all four.
"""

from typing import Any, Mapping

from spec.config import ConfigError, ReppoConfig, _suggest, apply_overrides, override_pairs

__all__ = ["PRESETS", "CPU_SIZES", "DEFAULT_PRESET", "get_preset", "preset_config", "list_presets"]

CPU_SIZES: dict[str, Any] = {
    "rollout": {
        "num_envs": 64,
        "num_steps": 32,
        "num_minibatches": 16,
        "num_epochs": 8,
        "total_env_steps": 1_000_000,
    },
    "critic": {"hidden_dim": 128},
    "actor": {"hidden_dim": 128},
    "run": {"eval_interval": 50_000, "eval_episodes": 8, "checkpoint_interval": 250_000},
}
"""The CPU-sized run (2 cores, ``dmc/CartpoleBalance``): tuned by measurement, change it here."""

DEFAULT_PRESET = "cpu"
"""Preset ``reppo train`` uses when neither ``--preset`` nor the env's default says otherwise."""


def _merge(*parts: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for section, values in part.items():
            out.setdefault(section, {}).update(values)
    return out


_DMC_VALUES = {"env": {"gamma": None, "v_min": 0.0, "v_max": 150.0}}

PRESETS: dict[str, dict[str, Any]] = {
    "dmc": {
        "description": "paper small-data DMC: 1024 envs x 32 steps, 16 minibatches, v in [0, 150]",
        "overrides": _merge(
            _DMC_VALUES,
            {"rollout": {"num_envs": 1024, "num_steps": 32, "num_minibatches": 16,
                         "num_epochs": 8, "total_env_steps": 50_000_000}},
        ),
    },
    "dmc-large": {
        "description": "Table 2 DMC: 1024 envs x 128 steps, 64 minibatches, v in [0, 150]",
        "overrides": _merge(
            _DMC_VALUES,
            {"rollout": {"num_envs": 1024, "num_steps": 128, "num_minibatches": 64,
                         "num_epochs": 8, "total_env_steps": 50_000_000}},
        ),
    },
    "maniskill": {
        "description": "ManiSkill3: Table 2 sizes, gamma = 1 - 10/T, v in [-15, 15]",
        "overrides": {
            "env": {"gamma": None, "v_min": -15.0, "v_max": 15.0, "physics_impl": "auto"},
            "rollout": {"num_envs": 1024, "num_steps": 128, "num_minibatches": 64,
                        "num_epochs": 8, "total_env_steps": 50_000_000},
        },
    },
    "atari": {
        "description": "D-REPPO Atari-10 (PQN-like): 128 envs x 32 steps, lambda 0.65, gamma 0.99",
        "overrides": {
            "env": {"gamma": 0.99},
            "rollout": {"num_envs": 128, "num_steps": 32, "num_minibatches": 32,
                        "num_epochs": 2, "total_env_steps": 10_000_000},
            "loss": {"lam": 0.65},
        },
    },
    "cpu": {
        "description": "CPU-sized continuous control (2 cores, e.g. dmc/CartpoleBalance)",
        "overrides": _merge(_DMC_VALUES, CPU_SIZES),
    },
    "cpu-repeat4": {
        "description": "cpu + action repeat 4, 256 envs x 32 steps, 64 minibatches (swing-up "
                       "tasks, e.g. dmc/PendulumSwingup), 4M env steps",
        "overrides": _merge(_DMC_VALUES, CPU_SIZES, {
            "env": {"action_repeat": 4},
            "rollout": {"num_envs": 256, "num_minibatches": 64, "total_env_steps": 4_000_000},
            "run": {"eval_interval": 100_000, "checkpoint_interval": 1_000_000},
        }),
    },
    "cpu-maniskill": {
        "description": "CPU-sized ManiSkill (physx_cpu, 2 cores): 16 envs x 32 steps, width 128, 200k steps",
        "overrides": {
            "env": {"gamma": None, "v_min": -15.0, "v_max": 15.0, "physics_impl": "auto"},
            "rollout": {"num_envs": 16, "num_steps": 32, "num_minibatches": 4, "num_epochs": 8,
                        "total_env_steps": 200_000},
            "critic": {"hidden_dim": 128},
            "actor": {"hidden_dim": 128},
            "run": {"eval_interval": 20_000, "eval_episodes": 16, "checkpoint_interval": 50_000},
        },
    },
    "cpu-gym": {
        # gymnasium envs step on the host, one Python call per env and step,
        # so fewer envs than "cpu"; γ and the value support come from the env's facts.
        "description": "CPU-sized gymnasium envs (gym/Pendulum-v1): 16 envs x 64 steps, width 128",
        "overrides": _merge(CPU_SIZES, {
            "rollout": {"num_envs": 16, "num_steps": 64, "num_minibatches": 8,
                        "total_env_steps": 300_000},
            "run": {"eval_interval": 10_000, "eval_episodes": 10, "checkpoint_interval": 100_000},
        }),
    },
    "cpu-discrete": {
        # D-REPPO on MinAtar, tuned by measurement on minatar/Breakout (2 contended cores):
        # 128 envs x 16 steps, 16 minibatches of 128, 2 epochs. The binary MinAtar channels are
        # used as they are (running normalisation blows rare features up to ~10). α starts at
        # 0.1 and adapts at lr 1e-2: with the paper's 0.01 / actor lr the categorical policy
        # collapses to entropy ~0 within ~20 iterations and needs ~150k steps to recover.
        # 16 minibatches (was 4): PQN's minibatch size, learns faster in env steps. β ≥ 0.1
        # (loss.beta_min): without a floor β decays to 1e-4…1e-5 and the mean KL of an
        # iteration exceeded 0.2 (2x the target, up to 2.1) in ~107 of 976 iterations of a 2M
        # run, each with a collapse of the evaluation; with it, 0 (max 0.09). α ≥ 0.03
        # (loss.alpha_min): without a floor α falls to ~0.003 on Breakout seed 1, whose policy
        # then stalls at the entropy target (greedy return 6.5 for 1.5M steps, actor gradient
        # ~20x smaller than the seeds that learn); with it Breakout seeds 0/1/2 first evaluate
        # >= 20 at 0.59M/1.38M/1.08M env steps and end 1.5M at 28.0/21.5/26.9 (without: 0.44M/
        # never/1.08M, 31.2/6.6/19.0). docs/dreppo.md, "Breakout seed 1: what we tried".
        "description": "CPU-sized D-REPPO (MinAtar, 2 cores): 128 envs x 16 steps, 16 "
                       "minibatches, lambda 0.65, beta >= 0.1, alpha >= 0.03",
        "overrides": {
            "env": {"normalize_obs": False},
            "rollout": {"num_envs": 128, "num_steps": 16, "num_minibatches": 16,
                        "num_epochs": 2, "total_env_steps": 5_000_000},
            "critic": {"hidden_dim": 128},
            "actor": {"hidden_dim": 128},
            "loss": {"lam": 0.65, "alpha_init": 0.1, "multiplier_lr": 1e-2, "beta_min": 0.1,
                     "alpha_min": 0.03},
            "run": {"eval_interval": 100_000, "eval_episodes": 16,
                    "checkpoint_interval": 500_000},
        },
    },
    "toy": {
        # the size at which the analytic toy bandits reach their optimum (tests/jax,
        # tests/torch: 140 iterations); used by the docs/envs.md examples
        "description": "toy envs, seconds: 16 envs x 16 steps, width 64, 35,840 steps",
        "overrides": {
            "rollout": {"num_envs": 16, "num_steps": 16, "num_minibatches": 4, "num_epochs": 4,
                        "total_env_steps": 16 * 16 * 140},
            "critic": {"hidden_dim": 64, "num_bins": 51},
            "actor": {"hidden_dim": 64},
            "loss": {"kl_samples": 4},
            "run": {"eval_interval": 16 * 16 * 35, "eval_episodes": 8,
                    "checkpoint_interval": 16 * 16 * 140},
        },
    },
    "tiny": {
        "description": "smoke tests: 8 envs x 8 steps, 1 epoch, width 32, 2048 steps",
        "overrides": {
            "rollout": {"num_envs": 8, "num_steps": 8, "num_minibatches": 2, "num_epochs": 1,
                        "total_env_steps": 2048},
            "critic": {"hidden_dim": 32, "num_bins": 51},
            "actor": {"hidden_dim": 32},
            "loss": {"kl_samples": 4},
            "run": {"eval_interval": 1024, "eval_episodes": 2, "checkpoint_interval": 1024},
        },
    },
    # Figure 12a data-scaling settings (Appendix E.3); minibatch size 2,048 throughout.
    "data-large": {
        "description": "Fig. 12a large data: 1024 envs x 128 steps, 64 minibatches (512 updates)",
        "overrides": _merge(
            _DMC_VALUES,
            {"rollout": {"num_envs": 1024, "num_steps": 128, "num_minibatches": 64,
                         "num_epochs": 8, "total_env_steps": 50_000_000}},
        ),
    },
    "data-medium": {
        "description": "Fig. 12a medium data: 1024 envs x 32 steps, 16 minibatches (128 updates)",
        "overrides": _merge(
            _DMC_VALUES,
            {"rollout": {"num_envs": 1024, "num_steps": 32, "num_minibatches": 16,
                         "num_epochs": 8, "total_env_steps": 50_000_000}},
        ),
    },
    "data-small": {
        "description": "Fig. 12a small data: 1024 envs x 8 steps, 4 minibatches (32 updates)",
        "overrides": _merge(
            _DMC_VALUES,
            {"rollout": {"num_envs": 1024, "num_steps": 8, "num_minibatches": 4,
                         "num_epochs": 8, "total_env_steps": 50_000_000}},
        ),
    },
    "data-tiny": {
        "description": "Fig. 12a tiny data: 256 envs x 8 steps, 1 minibatch (8 updates)",
        "overrides": _merge(
            _DMC_VALUES,
            {"rollout": {"num_envs": 256, "num_steps": 8, "num_minibatches": 1,
                         "num_epochs": 8, "total_env_steps": 50_000_000}},
        ),
    },
}
"""name -> {"description": one line, "overrides": nested section -> field -> value}."""


def list_presets() -> list[str]:
    """Preset names in declaration order."""
    return list(PRESETS)


def get_preset(name: str) -> dict[str, Any]:
    """The preset entry ``{"description", "overrides"}``; unknown name -> ConfigError."""
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}{_suggest(name, list(PRESETS))} "
            f"(available: {', '.join(PRESETS)})"
        )
    return PRESETS[name]


def preset_config(
    name: str, overrides: list[str] | tuple[str, ...] | Mapping[str, Any] | None = None
) -> ReppoConfig:
    """Table 2 defaults, then the preset's values, then ``overrides`` (CLI strings or mapping).

    Preset and user overrides are validated together, so cross-field rules (minibatch
    divisibility) see the final values.
    """
    pairs = override_pairs(get_preset(name)["overrides"])
    if overrides:
        pairs += override_pairs(overrides)
    return apply_overrides(ReppoConfig(), dict(pairs))
