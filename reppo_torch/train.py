"""The training loop (mirrors ``reppo_jax.train``): builds env, networks and state from a config,
then runs iterations, evaluating and checkpointing between them.

Run-time choices that are not part of the algorithm:

* device: ``run.device`` (``auto`` → CUDA if available, else CPU; ``gpu`` means ``cuda``);
  the env's tensors, the networks and every random stream live there.
* float32 matmul precision: ``"highest"`` by default (no TF32 / reduced-precision matmuls, as
  the JAX port's ``Precision.HIGHEST``); ``REPPO_TORCH_MATMUL_PRECISION=high|medium`` changes it.
* intra-op threads: ``DEFAULT_THREADS`` (``REPPO_TORCH_THREADS`` overrides); see its docstring
  for the measurement behind it (1 thread: ~20× less CPU time than 2 on the shared 2-core box).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from reppo_common.errors import UserError
from reppo_common.seeding import stream_int
from reppo_torch import agent as A
from reppo_torch.networks import Actor, Critic, Value, to_canonical
from reppo_torch.normalization import RunningStats, running_stats_update
from spec import derived, params as P
from spec.backend import TrainHooks, TrainResult
from spec.config import ReppoConfig
from spec.hyper import resolve_hyper as resolve

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


def make_env(config: ReppoConfig, num_envs: int, *, evaluation: bool = False,
             device: torch.device | None = None):
    """Build the torch VecEnv named by ``config.env.name`` (``suite/Task``).

    Evaluation envs start every episode from a fresh reset without random offsets; DMC eval envs
    use the cheap "cached" auto-reset (an evaluation only scores each env's first episode)."""
    from reppo_torch.envs import make_env as make

    kwargs = {"reset_strategy": "cached"} if evaluation and config.env.name.startswith("dmc/") else {}
    return make(config.env.name, num_envs, max_episode_steps=config.env.max_episode_steps,
                action_repeat=config.env.action_repeat, physics_impl=config.env.physics_impl,
                random_episode_offsets=not evaluation, device=device, **kwargs)


def resolve_hyper(config: ReppoConfig, env) -> A.Hyper:
    """Config + env facts → the static hyperparameters (``spec.hyper``, shared with JAX)."""
    return resolve(config, obs_dim=env.obs_dim, action_dim=env.action_dim,
                   max_episode_steps=env.max_episode_steps, reward_range=env.reward_range)


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
    """Owns the envs, hyperparameters, iteration and evaluation functions for one run."""

    config: ReppoConfig
    env: Any = None
    eval_env: Any = None
    device: torch.device | None = None

    def __post_init__(self) -> None:
        configure_torch()
        cfg = self.config
        if self.device is None:
            self.device = resolve_device(cfg.run.device)
        if self.env is None:
            self.env = make_env(cfg, cfg.rollout.num_envs, device=self.device)
        if self.eval_env is None:
            self.eval_env = make_env(cfg, cfg.run.eval_episodes, evaluation=True,
                                     device=self.device)
        self.h = resolve_hyper(cfg, self.env)
        self.iteration = A.make_iteration(self.h, self.env)
        self._evaluate = A.make_evaluate(self.h, self.eval_env, self.eval_env.max_episode_steps)
        self.steps_per_iteration = derived.env_steps_per_iteration(
            cfg.rollout.num_envs, cfg.rollout.num_steps, cfg.env.action_repeat)

    def init(self, seed: int) -> A.Carry:
        state = state_from_canonical(self.config, self.h, canonical_init(self.config, self.h, seed),
                                     self.device)
        obs = self.env.reset(stream_int(seed, "torch/env_reset"))
        obs = obs.to(self.device)
        if self.h.normalize_obs:
            state.obs_stats = running_stats_update(state.obs_stats, obs)
        streams = A.Streams.from_seed(seed, self.device)
        return A.Carry(state, obs, streams, A.snapshot(state))

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


def _scalarize(info: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """One host sync for all of an iteration's metrics."""
    values = torch.stack([v.detach().to(torch.float32) for v in info.values()]).cpu().tolist()
    return dict(zip(info, values))


def train(config: ReppoConfig, run_dir: Path | None, hooks: TrainHooks | None = None,
          *, env=None, eval_env=None, device: torch.device | None = None) -> TrainResult:
    """Train per ``config``; evaluations every ``run.eval_interval`` env steps and at the end."""
    hooks = hooks or TrainHooks()
    trainer = Trainer(config, env, eval_env, device)
    carry = trainer.init(config.run.seed)
    per_iter = trainer.steps_per_iteration
    n_iters = max(1, config.rollout.total_env_steps // per_iter)
    eval_every = max(1, config.run.eval_interval // per_iter)
    ckpt_every = max(1, config.run.checkpoint_interval // per_iter)
    eval_seed = config.run.seed + 1_000_003
    best = None
    final_eval: dict[str, float] = {}
    compile_s = None
    t_train = 0.0
    env_steps = 0
    it = 0
    n_evals = 0
    for it in range(1, n_iters + 1):
        t0 = time.perf_counter()
        carry, info = trainer.iteration(carry)
        info = _scalarize(info)  # the iteration's one host sync
        dt = time.perf_counter() - t0
        if compile_s is None:
            compile_s = dt  # first iteration: warm-up (allocator, the env's jit), as JAX's compile
        else:
            t_train += dt
        env_steps = it * per_iter
        timed_iters = it - 1
        sps = timed_iters * per_iter / t_train if t_train > 0 else float("nan")
        metrics = {"env_steps": env_steps, "iteration": it, "train/sps": sps, **info}
        if hooks.on_train_metrics:
            hooks.on_train_metrics(metrics)
        if it % eval_every == 0 or it == n_iters:
            final_eval = trainer.evaluate(carry.agent, eval_seed + n_evals)
            n_evals += 1
            best = final_eval["eval/return_mean"] if best is None else max(
                best, final_eval["eval/return_mean"])
            if hooks.on_eval_metrics:
                hooks.on_eval_metrics({"env_steps": env_steps, "iteration": it, **final_eval})
        if run_dir is not None and (it % ckpt_every == 0 or it == n_iters):
            save_checkpoint(run_dir, config, carry.agent, env_steps, it)
        if hooks.on_progress:
            hooks.on_progress(env_steps, {**metrics, **final_eval})
        if hooks.should_stop and hooks.should_stop():
            if run_dir is not None:
                save_checkpoint(run_dir, config, carry.agent, env_steps, it)
            break
    return TrainResult(env_steps=env_steps, iterations=it, final_eval=final_eval,
                       best_eval_return=best, compile_s=compile_s)


def save_checkpoint(run_dir: Path, config: ReppoConfig, state: A.AgentState, env_steps: int,
                    iteration: int) -> Path:
    """Write ``checkpoints/params_<env_steps:012d>.npz`` in the canonical layout (readable by
    every backend) and keep the newest ``run.keep_checkpoints``."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"params_{env_steps:012d}.npz"
    P.save_params(path, state_to_canonical(state),
                  {"backend": "torch", "env_steps": env_steps, "iteration": iteration,
                   "config": config.to_dict()})
    keep = config.run.keep_checkpoints
    old = sorted(ckpt_dir.glob("params_*.npz"))
    for p in old[:-keep] if keep > 0 else []:
        p.unlink(missing_ok=True)
    return path


def latest_checkpoint(run_dir: Path) -> Path:
    ckpts = sorted((Path(run_dir) / "checkpoints").glob("params_*.npz"))
    if not ckpts:
        raise FileNotFoundError(f"no checkpoints in {Path(run_dir) / 'checkpoints'}: "
                                "train first, or pass the run directory of a trained run")
    return ckpts[-1]


def evaluate_run(config: ReppoConfig, run_dir: Path, episodes: int,
                 checkpoint: Path | None = None) -> dict[str, float]:
    """Evaluate a saved run's deterministic policy on ``episodes`` fresh episodes (any
    backend's checkpoint: the file is the canonical layout). The episodes' initial states are
    drawn from seed ``run.seed + 2_000_003``, as in the JAX port, so on DMC both backends
    evaluate the same episodes."""
    cfg = replace(config, run=replace(config.run, eval_episodes=episodes))
    device = resolve_device(cfg.run.device)
    trainer = Trainer(cfg, env=make_env(cfg, 1, device=device), eval_env=None, device=device)
    flat, _meta = P.load_params(checkpoint or latest_checkpoint(run_dir))
    state = state_from_canonical(cfg, trainer.h, flat, device)
    return trainer.evaluate(state, cfg.run.seed + 2_000_003)

