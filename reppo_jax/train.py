"""The training loop: builds env, networks and state from a config, then runs jitted iterations,
evaluating and checkpointing between them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from reppo_jax import agent as A
from reppo_jax.networks import Actor, Critic, flatten, nest
from reppo_jax.normalization import RunningStats, running_stats_update
from reppo_common.errors import UserError
from spec import derived, params as P
from spec.backend import TrainHooks, TrainResult
from spec.config import ReppoConfig


def make_env(config: ReppoConfig, num_envs: int, *, evaluation: bool = False):
    """Build the vectorised env named by ``config.env.name`` (``suite/Task``).

    Evaluation envs start every episode from a fresh reset without random offsets and use the
    cheap "cached" auto-reset: an evaluation only scores each env's first episode."""
    from reppo_jax.envs import make_env as make

    kwargs = {"reset_strategy": "cached"} if evaluation and config.env.name.startswith("dmc/") else {}
    return make(config.env.name, num_envs, max_episode_steps=config.env.max_episode_steps,
                action_repeat=config.env.action_repeat, physics_impl=config.env.physics_impl,
                random_episode_offsets=not evaluation, **kwargs)


def resolve_hyper(config: ReppoConfig, env) -> A.Hyper:
    """Config + env facts → the static hyperparameters (γ, value range, σ, entropy target)."""
    e, r, c, a, l = config.env, config.rollout, config.critic, config.actor, config.loss
    gamma = e.gamma if e.gamma is not None else derived.discount_from_episode_steps(
        env.max_episode_steps)
    if e.v_min is not None and e.v_max is not None:
        v_min, v_max = e.v_min, e.v_max
    else:
        lo, hi = derived.value_range(env.reward_range[0], env.reward_range[1], gamma)
        v_min = e.v_min if e.v_min is not None else lo
        v_max = e.v_max if e.v_max is not None else hi
    if a.gradient != "pathwise":
        raise UserError(f"actor.gradient={a.gradient!r} is not implemented in the jax backend yet "
                         "(the score-function ablation belongs to the paper-experiments work); "
                         "use actor.gradient=pathwise")
    actor_lr = a.lr if a.lr is not None else r.lr
    return A.Hyper(
        obs_dim=env.obs_dim, action_dim=env.action_dim, num_envs=r.num_envs,
        num_steps=r.num_steps, num_minibatches=r.num_minibatches, num_epochs=r.num_epochs,
        gamma=float(gamma), lam=l.lam, v_min=float(v_min), v_max=float(v_max),
        num_bins=c.num_bins if c.loss == "hlgauss" else 1,
        sigma=derived.hlgauss_sigma(v_min, v_max, c.num_bins, c.sigma_ratio),
        value_kind=c.loss, aux_mult=c.aux_loss_mult, min_std=a.min_std,
        kl_target=l.kl_target, kl_mode=l.kl_mode, kl_samples=l.kl_samples,
        entropy_target=derived.entropy_target(env.action_dim, l.entropy_target_mult),
        normalize_obs=e.normalize_obs, actor_lr=actor_lr,
        critic_lr=c.lr if c.lr is not None else r.lr,
        multiplier_lr=l.multiplier_lr if l.multiplier_lr is not None else actor_lr,
        max_grad_norm=r.max_grad_norm,
        multiplier_max_grad_norm=(l.multiplier_max_grad_norm
                                  if l.multiplier_max_grad_norm is not None else r.max_grad_norm),
    )


def make_nets(config: ReppoConfig, h: A.Hyper) -> A.Nets:
    c, a = config.critic, config.actor
    return A.Nets(
        Actor(h.action_dim, a.hidden_dim, a.num_layers, a.norm),
        Critic(c.hidden_dim, c.num_encoder_layers, c.num_head_layers, c.num_pred_layers,
               h.num_bins, c.norm),
    )


def canonical_init(config: ReppoConfig, h: A.Hyper, seed: int) -> dict[str, np.ndarray]:
    """Initial weights from the spec's numpy init: identical numbers in every backend."""
    layout = P.layout_from_config(config, h.obs_dim, h.action_dim)
    return P.init_params(np.random.default_rng(seed), layout, v_min=h.v_min, v_max=h.v_max,
                         sigma=h.sigma, logit_prior_scale=config.critic.logit_prior_scale,
                         alpha_init=config.loss.alpha_init, beta_init=config.loss.beta_init)


def state_from_canonical(h: A.Hyper, flat: Mapping[str, Any]) -> A.AgentState:
    """Canonical layout → agent state with freshly initialised optimiser state."""
    actor_opt, critic_opt, mult_opt = A.optimizers(h)
    actor = nest(flat, "actor")
    critic = nest(flat, "critic")
    logs = jnp.stack([jnp.asarray(flat["multipliers/log_alpha"], jnp.float32),
                      jnp.asarray(flat["multipliers/log_beta"], jnp.float32)])
    stats = RunningStats(jnp.asarray(flat["obs_norm/mean"], jnp.float32),
                         jnp.asarray(flat["obs_norm/var"], jnp.float32),
                         jnp.asarray(flat["obs_norm/count"], jnp.float32))
    return A.AgentState(actor, critic, logs[0], logs[1], actor_opt.init(actor),
                        critic_opt.init(critic), mult_opt.init(logs), stats)


def state_to_canonical(state: A.AgentState) -> dict[str, np.ndarray]:
    out = {**flatten(state.actor, "actor"), **flatten(state.critic, "critic")}
    out["multipliers/log_alpha"] = np.asarray(state.log_alpha)
    out["multipliers/log_beta"] = np.asarray(state.log_beta)
    out["obs_norm/mean"] = np.asarray(state.obs_stats.mean)
    out["obs_norm/var"] = np.asarray(state.obs_stats.var)
    out["obs_norm/count"] = np.asarray(state.obs_stats.count)
    return out


def enable_compilation_cache() -> None:
    """Persist compiled XLA programs across processes (``REPPO_JAX_CACHE``, default
    ``~/.cache/reppo/jax``; set it to an empty string to disable). A rerun of the same config,
    ``reppo eval`` after ``reppo train``, or the test suite then skip most compile time."""
    import os

    path = os.environ.get("REPPO_JAX_CACHE", str(Path.home() / ".cache" / "reppo" / "jax"))
    if not path or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@dataclass
class Trainer:
    """Owns the jitted iteration and evaluation for one run."""

    config: ReppoConfig
    env: Any = None
    eval_env: Any = None

    def __post_init__(self) -> None:
        enable_compilation_cache()
        cfg = self.config
        if self.env is None:
            self.env = make_env(cfg, cfg.rollout.num_envs)
        if self.eval_env is None:
            self.eval_env = make_env(cfg, cfg.run.eval_episodes, evaluation=True)
        self.h = resolve_hyper(cfg, self.env)
        self.nets = make_nets(cfg, self.h)
        self.iteration = jax.jit(A.make_iteration(self.nets, self.h, self.env), donate_argnums=0)
        self._evaluate = jax.jit(A.make_evaluate(self.nets, self.h, self.eval_env,
                                                 self.eval_env.max_episode_steps))
        self.steps_per_iteration = cfg.rollout.num_envs * cfg.rollout.num_steps

    def init(self, seed: int) -> A.Carry:
        key = jax.random.PRNGKey(seed)
        k_env, k_run = jax.random.split(key)
        state = state_from_canonical(self.h, canonical_init(self.config, self.h, seed))
        env_state, obs = self.env.reset(k_env)
        if self.h.normalize_obs:
            state = state._replace(obs_stats=running_stats_update(state.obs_stats, obs))
        # fresh, distinct buffers: the jitted iteration donates its input
        return jax.tree.map(jnp.copy, A.Carry(state, env_state, obs, k_run))

    def evaluate(self, state: A.AgentState, key) -> dict[str, float]:
        ret, length = self._evaluate(state.actor, state.obs_stats, key)
        ret = np.asarray(ret)
        return {"eval/return_mean": float(ret.mean()), "eval/return_std": float(ret.std()),
                "eval/return_min": float(ret.min()), "eval/return_max": float(ret.max()),
                "eval/length_mean": float(np.asarray(length).mean()),
                "eval/episodes": int(ret.size)}


def _scalarize(info: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(dict(info)).items()}


def train(config: ReppoConfig, run_dir: Path | None, hooks: TrainHooks | None = None,
          *, env=None, eval_env=None) -> TrainResult:
    """Train per ``config``; evaluations every ``run.eval_interval`` env steps and at the end."""
    hooks = hooks or TrainHooks()
    trainer = Trainer(config, env, eval_env)
    carry = trainer.init(config.run.seed)
    per_iter = trainer.steps_per_iteration
    n_iters = max(1, config.rollout.total_env_steps // per_iter)
    eval_every = max(1, config.run.eval_interval // per_iter)
    ckpt_every = max(1, config.run.checkpoint_interval // per_iter)
    eval_key = jax.random.PRNGKey(config.run.seed + 1_000_003)
    best = None
    final_eval: dict[str, float] = {}
    compile_s = None
    t_train = 0.0
    env_steps = 0
    it = 0
    for it in range(1, n_iters + 1):
        t0 = time.perf_counter()
        carry, info = trainer.iteration(carry)
        info = _scalarize(info)  # blocks until the iteration is done
        dt = time.perf_counter() - t0
        if compile_s is None:
            compile_s = dt
        else:
            t_train += dt
        env_steps = it * per_iter
        timed_iters = it - 1
        sps = timed_iters * per_iter / t_train if t_train > 0 else float("nan")
        metrics = {"env_steps": env_steps, "iteration": it, "train/sps": sps, **info}
        if hooks.on_train_metrics:
            hooks.on_train_metrics(metrics)
        if it % eval_every == 0 or it == n_iters:
            eval_key, k = jax.random.split(eval_key)
            final_eval = trainer.evaluate(carry.agent, k)
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
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"params_{env_steps:012d}.npz"
    P.save_params(path, state_to_canonical(state),
                  {"backend": "jax", "env_steps": env_steps, "iteration": iteration,
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
    """Evaluate a saved run's deterministic policy on ``episodes`` fresh episodes."""
    from dataclasses import replace

    cfg = replace(config, run=replace(config.run, eval_episodes=episodes))
    trainer = Trainer(cfg, env=make_env(cfg, 1), eval_env=None)
    flat, _meta = P.load_params(checkpoint or latest_checkpoint(run_dir))
    state = state_from_canonical(trainer.h, flat)
    return trainer.evaluate(state, jax.random.PRNGKey(cfg.run.seed + 2_000_003))
