"""The training loop (mirrors ``reppo_jax.train``): builds env, networks and state from a config,
then runs iterations, evaluating and checkpointing between them.

Run-time choices that are not part of the algorithm:

* device: ``run.device`` (``auto`` → CUDA if available, else CPU; ``gpu`` means ``cuda``);
  the env's tensors, the networks and every random stream live there.
* float32 matmul precision: ``"highest"`` by default (no TF32 / reduced-precision matmuls, as
  the JAX port's ``Precision.HIGHEST``); ``REPPO_TORCH_MATMUL_PRECISION=high|medium`` changes it.
* intra-op threads: ``DEFAULT_THREADS`` (``REPPO_TORCH_THREADS`` overrides); see its docstring
  for the measurement behind it (1 thread: ~20× less CPU time than 2 on the shared 2-core box).
* ``run.torch_compile``: the update's loss forward passes under ``torch.compile``
  (``reppo_torch.agent.compiled_forwards``), inductor's cache persistent on disk
  (:func:`enable_compile_cache`), the compiling iterations counted in ``compile_s``
  (:func:`compile_count`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from reppo_common import checkpoints as C
from reppo_common.driver import Start, run_loop
from reppo_common.errors import UserError
from reppo_common.guard import GUARD_KEY, first_nonfinite
from reppo_common.seeding import EVAL_RUN_SEED_OFFSET, EVAL_SEED_OFFSET, stream_int
from reppo_torch import agent as A
from reppo_torch import checkpoint as CK
from reppo_torch import distributed as Dist
from reppo_torch.networks import Actor, Critic, Value, to_canonical
from reppo_torch.normalization import RunningStats
from spec import derived, params as P
from spec.backend import TrainHooks, TrainResult
from spec.config import ReppoConfig
from spec import hyper

DEFAULT_THREADS = 1
"""torch intra-op threads on CPU, chosen by measurement on this project's 2-core machine while
it was shared with other processes (load average 15-20): one iteration of the cpu preset's
learner (64 envs × 32 steps, 16 minibatches × 8 epochs, width 128, toy env so that only torch
works), alternating thread counts, ``/tmp``-script numbers:

    1 thread : 2.2 / 2.7 CPU-s per iteration, 37 / 13 s wall
    2 threads: 57 / 41 CPU-s per iteration, 244 / 152 s wall

Two OpenMP threads on a busy 2-core machine spin-wait for each other on every small op (batch
128, width 128), costing ~20× the CPU time; one thread also leaves the second core to XLA's
simulator step. ``REPPO_TORCH_THREADS`` overrides (e.g. on a machine with idle cores)."""

DEFAULT_MATMUL_PRECISION = "highest"


def resolve_device(name: str) -> torch.device:
    """``run.device`` → torch device: auto → cuda if available else cpu; gpu ≡ cuda."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise UserError(f"run.device={name} but torch sees no CUDA device; use "
                            "run.device=cpu (or auto)")
        return torch.device("cuda")
    return torch.device("cpu")


def configure_torch(threads: int | None = None, matmul_precision: str | None = None) -> None:
    """Set intra-op threads and float32 matmul precision (process-wide torch settings)."""
    threads = threads or int(os.environ.get("REPPO_TORCH_THREADS", DEFAULT_THREADS))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(
        matmul_precision or os.environ.get("REPPO_TORCH_MATMUL_PRECISION",
                                           DEFAULT_MATMUL_PRECISION))


def enable_compile_cache() -> None:
    """Keep inductor's compiled graphs and kernels across processes (``run.torch_compile``):
    ``REPPO_TORCH_CACHE`` (default ``~/.cache/reppo/torch``) becomes ``TORCHINDUCTOR_CACHE_DIR``
    (mirroring ``REPPO_JAX_CACHE``). Without ``REPPO_TORCH_CACHE`` an explicit
    ``TORCHINDUCTOR_CACHE_DIR`` is kept; ``REPPO_TORCH_CACHE=""`` leaves torch's own default (a
    per-user folder in the system's temporary directory). A warm cache cuts the compile from
    tens of seconds to a few (the graphs are still traced; see docs/performance.md)."""
    path = os.environ.get("REPPO_TORCH_CACHE")
    if path is None:
        if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
            return
        path = str(Path.home() / ".cache" / "reppo" / "torch")
    if path:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = path


def prepare_compile(device: torch.device) -> None:
    """Set up ``run.torch_compile`` for ``device``: the persistent cache
    (:func:`enable_compile_cache`; first, since inductor's compiler search settles its cache
    folder), then a UserError unless ``torch.compile`` can build code there — on CPU inductor
    generates C++ and needs a compiler (``g++``, or ``$CXX``)."""
    enable_compile_cache()
    if device.type != "cpu":
        return
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception as e:  # inductor's InvalidCxxCompiler, or a broken compiler
        raise UserError(f"run.torch_compile=true on CPU needs a C++ compiler for inductor's "
                        f"generated code (g++, or the one $CXX names) and none works "
                        f"({type(e).__name__}): install one, or drop run.torch_compile") from None


def compile_count() -> int:
    """Graphs TorchDynamo has compiled so far in this process (0 until ``torch.compile`` first
    runs): the loop (``reppo_common.driver``) times an iteration during which this grew as
    compiling, not steady state. A recompilation compiles a new graph and counts too."""
    utils = sys.modules.get("torch._dynamo.utils")  # not imported: nothing compiled yet
    return int(utils.counters["stats"]["unique_graphs"]) if utils is not None else 0


def make_env(config: ReppoConfig, num_envs: int, *, evaluation: bool = False,
             device: torch.device | None = None):
    """Build the torch VecEnv named by ``config.env.name`` (``suite/Task``).

    Evaluation envs start every episode from a fresh reset without random offsets; DMC eval envs
    use the cheap "cached" auto-reset (an evaluation only scores each env's first episode)."""
    from reppo_torch.envs import make_env as make

    kwargs = ({"reset_strategy": "cached"}
              if evaluation and config.env.name.startswith(("dmc/", "playground/")) else {})
    return make(config.env.name, num_envs, max_episode_steps=config.env.max_episode_steps,
                action_repeat=config.env.action_repeat, physics_impl=config.env.physics_impl,
                random_episode_offsets=not evaluation, device=device, **kwargs)


def canonical_init(config: ReppoConfig, h: A.Hyper, seed: int) -> dict[str, np.ndarray]:
    """Initial weights from the spec's numpy init: identical numbers in every backend."""
    layout = P.layout_from_config(config, h.obs_dim, h.action_dim)
    return P.init_params(np.random.default_rng(seed), layout, v_min=h.v_min, v_max=h.v_max,
                         sigma=h.sigma, logit_prior_scale=config.critic.logit_prior_scale,
                         alpha_init=config.loss.alpha_init, beta_init=config.loss.beta_init)


def state_from_canonical(config: ReppoConfig, h: A.Hyper, flat: Mapping[str, Any],
                         device: torch.device | str = "cpu") -> A.AgentState:
    """Canonical layout → agent state (float32 modules on ``device``) with fresh optimisers; the
    state-value network exactly when actor.gradient=ppo (its ``value/*`` entries)."""
    flat = {k: np.asarray(v) for k, v in flat.items()}
    has_value = any(k.startswith("value/") for k in flat)
    if has_value != (config.actor.gradient == "ppo"):
        raise UserError("the parameters do not match actor.gradient: the state-value network "
                        "'value/*' exists exactly when actor.gradient=ppo")
    value = (Value.from_canonical(flat, config.critic.norm, dtype=torch.float32, device=device)
             if has_value else None)
    actor = Actor.from_canonical(flat, config.actor.norm, dtype=torch.float32, device=device)
    critic = Critic.from_canonical(flat, config.critic.norm, h.obs_dim, dtype=torch.float32,
                                   device=device)
    logs = torch.nn.Parameter(torch.tensor(
        [float(flat["multipliers/log_alpha"]), float(flat["multipliers/log_beta"])],
        dtype=torch.float32, device=device))
    stats = A.stats_to(RunningStats(torch.as_tensor(flat["obs_norm/mean"]),
                                    torch.as_tensor(flat["obs_norm/var"]),
                                    torch.as_tensor(flat["obs_norm/count"])), device)
    actor_opt, critic_opt, mult_opt, *value_opt = A.optimizers(h, actor, critic, logs, value)
    return A.AgentState(actor, critic, logs, actor_opt, critic_opt, mult_opt, stats, value,
                        value_opt[0] if value_opt else None)


def state_to_canonical(state: A.AgentState) -> dict[str, np.ndarray]:
    modules = {"actor": state.actor, "critic": state.critic}
    if state.value is not None:
        modules["value"] = state.value
    out = to_canonical(modules)
    logs = state.logs.detach().cpu().numpy()
    out["multipliers/log_alpha"] = np.asarray(logs[0], np.float32)
    out["multipliers/log_beta"] = np.asarray(logs[1], np.float32)
    out["obs_norm/mean"] = state.obs_stats.mean.detach().cpu().numpy()
    out["obs_norm/var"] = state.obs_stats.var.detach().cpu().numpy()
    out["obs_norm/count"] = np.asarray(state.obs_stats.count.detach().cpu().numpy(), np.float64)
    return out


@dataclass
class Trainer:
    """Owns the envs, hyperparameters, iteration and evaluation functions for one run.

    Under torchrun (``reppo_torch.distributed``) each rank builds ``num_envs / world size``
    envs and only rank 0 an evaluation env."""

    config: ReppoConfig
    env: Any = None
    eval_env: Any = None
    device: torch.device | None = None

    def __post_init__(self) -> None:
        configure_torch()
        cfg = self.config
        if self.device is None:
            self.device = resolve_device(cfg.run.device)
        self.world, self.device = Dist.init_from_env(self.device)
        num_envs = Dist.check_devices(cfg.run.devices, self.world, cfg.rollout.num_envs)
        if self.world.size > 1 and cfg.actor.gradient == "ppo":
            raise UserError("actor.gradient=ppo is single-process in the torch backend (its "
                            "per-minibatch advantage normalisation would differ per rank); "
                            "run it without torchrun, or with the JAX backend's --devices")
        if self.env is None:
            self.env = make_env(cfg, num_envs, device=self.device)
        if self.eval_env is None and self.world.is_main:
            self.eval_env = make_env(cfg, cfg.run.eval_episodes, evaluation=True,
                                     device=self.device)
        self.h = replace(hyper.resolve(cfg, self.env), num_envs=num_envs)
        if cfg.run.torch_compile:
            prepare_compile(self.device)
        self.iteration = A.make_iteration(self.h, self.env, compile=cfg.run.torch_compile)
        self._evaluate = (A.make_evaluate(self.h, self.eval_env, self.eval_env.max_episode_steps,
                                          eval_policy=cfg.run.eval_policy)
                          if self.eval_env is not None else None)
        self.steps_per_iteration = derived.env_steps_per_iteration(
            cfg.rollout.num_envs, cfg.rollout.num_steps, cfg.env.action_repeat)

    def init(self, seed: int) -> A.Carry:
        state = state_from_canonical(self.config, self.h, canonical_init(self.config, self.h, seed),
                                     self.device)
        obs = self.env.reset(stream_int(seed, Dist.rank_stream("torch/env_reset",
                                                               self.world.rank)))
        obs = obs.to(self.device)
        shard = Dist.Shard.of(self.world)
        if self.h.normalize_obs:
            state.obs_stats = shard.running_stats_update(state.obs_stats, obs)
        streams = A.Streams.from_seed(seed, self.device)  # the same streams on every rank
        return A.Carry(state, obs, streams, A.snapshot(state), shard)

    def evaluate(self, state: A.AgentState, seed: int) -> dict[str, float]:
        ret, length, success = self._evaluate(state.actor, state.obs_stats, seed)
        ret = ret.cpu().numpy()
        out = {"eval/return_mean": float(ret.mean()), "eval/return_std": float(ret.std()),
               "eval/return_min": float(ret.min()), "eval/return_max": float(ret.max()),
               "eval/length_mean": float(length.mean().cpu()),
               "eval/episodes": int(ret.size)}
        if success is not None:
            out["eval/success_rate"] = float(success.mean().cpu())
        return out


def make_trainer(config: ReppoConfig, env: Any = None, eval_env: Any = None,
                 device: torch.device | None = None) -> Trainer:
    """The trainer for ``config`` (envs built from the config where not given; ``device``
    from ``run.device`` unless given)."""
    return Trainer(config, env, eval_env, device)


def _scalarize(info: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """One host sync for all of an iteration's metrics."""
    values = torch.stack([v.detach().to(torch.float32) for v in info.values()]).cpu().tolist()
    return dict(zip(info, values))


class _LoopPort:
    """The torch side of ``reppo_common.driver.run_loop``: the iteration with its one host sync
    and NaN guard (metrics averaged and the guard or-ed over torchrun ranks), evaluation and
    checkpoints on rank 0 only."""

    def __init__(self, trainer: Trainer, config: ReppoConfig) -> None:
        self.trainer, self.config = trainer, config
        self.steps_per_iteration = trainer.steps_per_iteration

    def iterate(self, carry: A.Carry) -> tuple[A.Carry, dict[str, float], str | None]:
        carry, info = self.trainer.iteration(carry)
        flags = CK.finite_flags(carry.agent, info)
        # the iteration's one host sync (plus, across torchrun ranks, the metrics' mean)
        values = _scalarize({**Dist.mean_over_ranks(info), GUARD_KEY: flags.all()})
        finite = not Dist.any_rank(not bool(values.pop(GUARD_KEY)))  # every rank stops together
        if finite:
            return carry, values, None
        return carry, values, (first_nonfinite(list(info), flags.cpu().numpy())
                               or "value on another rank")

    def evaluate(self, carry: A.Carry, index: int) -> dict[str, float] | None:
        if not self.trainer.world.is_main:
            return None
        return self.trainer.evaluate(carry.agent,
                                     self.config.run.seed + EVAL_SEED_OFFSET + index)

    def save(self, carry: A.Carry, run_dir: Path, **meta: Any) -> C.CheckpointInfo | None:
        if not self.trainer.world.is_main:
            return None
        return CK.save_state(run_dir, self.config, carry, self.trainer.env, **meta,
                          world_size=self.trainer.world.size)

    def any_process(self, flag: bool) -> bool:
        return Dist.any_rank(flag)

    def compile_count(self) -> int:
        """See :func:`compile_count` (``run.torch_compile``)."""
        return compile_count()


def train(config: ReppoConfig, run_dir: Path | None, hooks: TrainHooks | None = None,
          *, env=None, eval_env=None, device: torch.device | None = None,
          resume: bool = False, trainer: Trainer | None = None) -> TrainResult:
    """Train per ``config`` with the shared loop (``reppo_common.driver``: evaluations every
    ``run.eval_interval`` env steps and at the end, full-state checkpoints every
    ``run.checkpoint_interval`` env steps, at the end and when ``hooks.should_stop()`` turns
    True).

    ``resume``: continue from the latest checkpoint in ``run_dir`` (validated first; a mismatch
    is a UserError and nothing is written). On CPU with an env that exports its state (toy, DMC)
    the continuation is bit-identical to the uninterrupted run; see reppo_torch.checkpoint for
    envs that restart from a fresh reset. Every iteration is checked for NaN/inf (metrics,
    parameters, optimiser state, read in the iteration's one host sync); the first non-finite
    quantity stops the run with :class:`TrainingDiverged`, no checkpoint of the bad state."""
    trainer = trainer or Trainer(config, env, eval_env, device)
    if resume:
        if run_dir is None:
            raise UserError("resuming needs the run directory")
        if trainer.world.size > 1:
            raise UserError("--resume of a torchrun (multi-process) torch run is not supported: "
                            "each rank's env state is not in the checkpoint; resume it in one "
                            "process (plain `reppo train --resume`), or start a new run")
        info, flat, arrays = CK.check_resume(run_dir, config, trainer)
        carry = CK.restore_carry(trainer, config, flat, arrays, info.iteration)
        start = Start.from_checkpoint(info)
        C.remove_temp_files(Path(run_dir) / "checkpoints")
    else:
        carry, start = trainer.init(config.run.seed), Start()
    return run_loop(config, run_dir, hooks, _LoopPort(trainer, config), carry, start)


def evaluate_run(config: ReppoConfig, run_dir: Path, episodes: int,
                 checkpoint: Path | None = None) -> dict[str, float]:
    """Evaluate a saved run's policy (``run.eval_policy``) on ``episodes`` fresh episodes (any
    backend's checkpoint: the file is the canonical layout). The episodes' initial states are
    drawn from seed ``run.seed + EVAL_RUN_SEED_OFFSET``, as in the JAX port, so on DMC both backends
    evaluate the same episodes."""
    cfg = replace(config, run=replace(config.run, eval_episodes=episodes, devices=None,
                                      torch_compile=False))  # no update runs here
    device = resolve_device(cfg.run.device)
    trainer = Trainer(cfg, env=make_env(cfg, 1, device=device), eval_env=None, device=device)
    flat, _meta = P.load_params(checkpoint or C.latest_params_file(Path(run_dir) / "checkpoints"))
    state = state_from_canonical(cfg, trainer.h, flat, device)
    return trainer.evaluate(state, cfg.run.seed + EVAL_RUN_SEED_OFFSET)

