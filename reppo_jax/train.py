"""The JAX trainer: builds env, networks and state from a config and runs the jitted iterations
in the shared training loop (``reppo_common.driver``), evaluating and checkpointing between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from reppo_jax import agent as A
from reppo_jax.networks import Actor, Critic, Value, flatten, nest
from reppo_jax.normalization import RunningStats, running_stats_update
from reppo_common import checkpoints as C
from reppo_common.driver import Start, run_loop
from reppo_common.errors import UserError
from reppo_common.seeding import EVAL_RUN_SEED_OFFSET
from reppo_jax import checkpoint as CK
from reppo_jax.checkpoint import guard_iteration
from reppo_jax.compile_log import COMPILES
from reppo_jax.distributed import DataParallel, data_parallel
from spec import derived, params as P
from spec import hyper
from spec.backend import TrainHooks, TrainResult
from spec.config import ReppoConfig


def make_env(config: ReppoConfig, num_envs: int, *, evaluation: bool = False):
    """Build the vectorised env named by ``config.env.name`` (``suite/Task``).

    Evaluation envs start every episode from a fresh reset without random offsets and use the
    cheap "cached" auto-reset: an evaluation only scores each env's first episode."""
    from reppo_jax.envs import make_env as make

    kwargs = ({"reset_strategy": "cached"}
              if evaluation and config.env.name.startswith(("dmc/", "playground/")) else {})
    return make(config.env.name, num_envs, max_episode_steps=config.env.max_episode_steps,
                action_repeat=config.env.action_repeat, physics_impl=config.env.physics_impl,
                random_episode_offsets=not evaluation, **kwargs)


def make_nets(config: ReppoConfig, h: A.Hyper) -> A.Nets:
    c, a = config.critic, config.actor
    n_value = P.value_layers_for(config)
    return A.Nets(
        Actor(h.action_dim, a.hidden_dim, a.num_layers, a.norm),
        Critic(c.hidden_dim, c.num_encoder_layers, c.num_head_layers, c.num_pred_layers,
               h.num_bins, c.norm),
        Value(c.hidden_dim, n_value, c.norm) if n_value else None,
    )


def canonical_init(config: ReppoConfig, h: A.Hyper, seed: int) -> dict[str, np.ndarray]:
    """Initial weights from the spec's numpy init: identical numbers in every backend."""
    layout = P.layout_from_config(config, h.obs_dim, h.action_dim)
    return P.init_params(np.random.default_rng(seed), layout, v_min=h.v_min, v_max=h.v_max,
                         sigma=h.sigma, logit_prior_scale=config.critic.logit_prior_scale,
                         alpha_init=config.loss.alpha_init, beta_init=config.loss.beta_init)


def state_from_canonical(h: A.Hyper, flat: Mapping[str, Any]) -> A.AgentState:
    """Canonical layout → agent state with freshly initialised optimiser state (the state-value
    network and its optimiser only where the layout has ``value/*``, i.e. actor.gradient=ppo)."""
    actor_opt, critic_opt, mult_opt, *value_opt = A.optimizers(h)
    actor = nest(flat, "actor")
    critic = nest(flat, "critic")
    value = nest(flat, "value") if any(k.startswith("value/") for k in flat) else None
    if (value is None) != (not value_opt):
        raise UserError("the parameters do not match actor.gradient: the state-value network "
                        "'value/*' exists exactly when actor.gradient=ppo")
    logs = jnp.stack([jnp.asarray(flat["multipliers/log_alpha"], jnp.float32),
                      jnp.asarray(flat["multipliers/log_beta"], jnp.float32)])
    stats = RunningStats(jnp.asarray(flat["obs_norm/mean"], jnp.float32),
                         jnp.asarray(flat["obs_norm/var"], jnp.float32),
                         jnp.asarray(flat["obs_norm/count"], jnp.float32))
    return A.AgentState(actor, critic, logs[0], logs[1], actor_opt.init(actor),
                        critic_opt.init(critic), mult_opt.init(logs), stats, value,
                        value_opt[0].init(value) if value is not None else None)


def state_to_canonical(state: A.AgentState) -> dict[str, np.ndarray]:
    out = {**flatten(state.actor, "actor"), **flatten(state.critic, "critic")}
    if state.value is not None:
        out.update(flatten(state.value, "value"))
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
    # every program, however quick to compile: besides the iteration and the evaluation, the
    # eager (op-by-op) env reset and state set-up of a run dispatch ~800 small programs whose
    # compiles cost a warm start ~15 s on 2 cores when they are not cached (a few MB on disk)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def refuse_torch_options(config: ReppoConfig) -> None:
    """A UserError for a config that sets a torch-backend-only option (``run.torch_compile``)."""
    if config.run.torch_compile:
        raise UserError("run.torch_compile is a torch-backend option (torch.compile of the "
                        "torch update); the JAX backend always compiles with XLA: drop it, or "
                        "train with --backend torch")


@dataclass
class Trainer:
    """Owns the jitted iteration and evaluation for one run.

    ``parallel``: the multi-device layout (``reppo_jax.distributed.DataParallel``) when
    ``run.devices`` resolves to more than one device, else None (the plain single-device jit)."""

    config: ReppoConfig
    env: Any = None
    eval_env: Any = None
    parallel: "DataParallel | None" = field(default=None, init=False)

    def __post_init__(self) -> None:
        refuse_torch_options(self.config)
        enable_compilation_cache()
        cfg = self.config
        if self.env is None:
            self.env = make_env(cfg, cfg.rollout.num_envs)
        if self.eval_env is None:
            self.eval_env = make_env(cfg, cfg.run.eval_episodes, evaluation=True)
        self.h = hyper.resolve(cfg, self.env)
        self.nets = make_nets(cfg, self.h)
        self._build_programs(A.make_iteration, A.make_evaluate)
        self.steps_per_iteration = derived.env_steps_per_iteration(
            cfg.rollout.num_envs, cfg.rollout.num_steps, cfg.env.action_repeat)

    def _build_programs(self, make_iteration: Callable, make_evaluate: Callable) -> None:
        """Set ``parallel`` (the device layout of ``run.devices``), the jitted ``iteration`` and
        ``guarded_iteration`` (built by ``make_iteration(nets, h, env, shard_minibatches)``) and
        the jitted single-device ``_evaluate`` (``make_evaluate(nets, h, eval_env, num_steps,
        eval_policy=run.eval_policy)``): the agent modules' common interface, shared by every
        trainer."""
        r = self.config.rollout
        self.parallel = data_parallel(self.config.run.devices, self.env.num_envs, r.num_steps,
                                      r.num_minibatches)
        shard = self.parallel.shard_minibatches if self.parallel is not None else None
        self.iteration = self._jit(make_iteration(self.nets, self.h, self.env, shard))
        # the same iteration plus in-jit finiteness flags (reppo_jax.checkpoint.guard_iteration);
        # train() uses this one, so only it is compiled there
        self.guarded_iteration = self._jit(
            guard_iteration(make_iteration(self.nets, self.h, self.env, shard)))
        self._evaluate = jax.jit(make_evaluate(self.nets, self.h, self.eval_env,
                                               self.eval_env.max_episode_steps,
                                               eval_policy=self.config.run.eval_policy))

    def _jit(self, iteration: Callable) -> Callable:
        """jit a ``carry -> (carry, info)`` function, donating the carry; with several devices
        also fixing the carry's layout (env axis split, the rest replicated)."""
        if self.parallel is None:
            return jax.jit(iteration, donate_argnums=0)
        return self.parallel.jit_iteration(iteration, jax.eval_shape(lambda: self._fresh_carry(0)))

    def place(self, carry: A.Carry) -> A.Carry:
        """The carry in the iteration's device layout, committed to its device(s): the fresh
        or restored carry then has the same type (avals *and* shardings) as the one the
        iteration returns, so the iteration compiles once per run. (A carry that mixed
        uncommitted arrays with the device-committed ones of an MJX env state compiled a second
        program at iteration 2.)"""
        if self.parallel is not None:
            return self.parallel.place(carry)
        return jax.device_put(carry, jax.sharding.SingleDeviceSharding(jax.devices()[0]))

    def init(self, seed: int) -> A.Carry:
        """The initial carry of a run with this seed, laid out for the iteration."""
        return self.place(self._fresh_carry(seed))

    def canonical_init(self, seed: int) -> dict[str, np.ndarray]:
        """The run's initial weights in the canonical layout (:func:`canonical_init`)."""
        return canonical_init(self.config, self.h, seed)

    def _fresh_carry(self, seed: int) -> A.Carry:
        """The run's first carry: fresh weights, the env reset, the observation statistics
        updated with the first observations, every buffer distinct (the jitted iteration
        donates its input).

        For a jittable env this is one compiled program. Run eagerly, an MJX reset executes its
        physics op by op, and JAX compiles each op on its own: ~780 small programs and ~26 s of
        a cold start on dmc/CartpoleBalance (2 cores), against ~4 s as one program. (The two
        round differently in the last bits; the jitted reset is also what the torch bridge
        runs.) A host-stepped env (``host = True``, e.g. Atari) resets on the host."""
        key = jax.random.PRNGKey(seed)
        k_env, k_run = jax.random.split(key)
        state = state_from_canonical(self.h, self.canonical_init(seed))
        if getattr(self.env, "host", False):
            env_state, obs = self.env.reset(k_env)
            return self._start(state, env_state, jnp.asarray(obs), k_run)
        return jax.jit(self._reset_and_start)(state, k_env, k_run)

    def _reset_and_start(self, state: A.AgentState, k_env: jax.Array,
                         k_run: jax.Array) -> A.Carry:
        env_state, obs = self.env.reset(k_env)
        return self._start(state, env_state, obs, k_run)

    def _start(self, state: A.AgentState, env_state: Any, obs: jax.Array,
               k_run: jax.Array) -> A.Carry:
        if self.h.normalize_obs:
            state = state._replace(obs_stats=running_stats_update(state.obs_stats, obs))
        return jax.tree.map(jnp.copy, A.Carry(state, env_state, obs, k_run))

    def evaluate(self, state: A.AgentState, key) -> dict[str, float]:
        actor, stats = state.actor, state.obs_stats
        if self.parallel is not None:  # evaluate on one device, not replicated on all
            actor, stats, key = self.parallel.local((actor, stats, key))
        ret, length = self._evaluate(actor, stats, key)
        ret = np.asarray(ret)
        return {"eval/return_mean": float(ret.mean()), "eval/return_std": float(ret.std()),
                "eval/return_min": float(ret.min()), "eval/return_max": float(ret.max()),
                "eval/length_mean": float(np.asarray(length).mean()),
                "eval/episodes": int(ret.size)}


def is_discrete(config: ReppoConfig, env: Any = None) -> bool:
    """True for an env flagged ``discrete`` or, without an env, a discrete registry entry."""
    if env is not None:
        return bool(getattr(env, "discrete", False))
    from reppo_common.registry import is_discrete_env

    return config.env.name == "toy/DiscreteBandit" or is_discrete_env(config.env.name)


def make_trainer(config: ReppoConfig, env: Any = None, eval_env: Any = None) -> Trainer:
    """The trainer for ``config`` (envs built from the config where not given), chosen by the
    action space (:func:`is_discrete`): the D-REPPO ``reppo_jax.discrete.train.DiscreteTrainer``
    for a discrete one, else :class:`Trainer`. The one place that makes this choice."""
    if is_discrete(config, env):
        from reppo_jax.discrete.train import DiscreteTrainer  # imports this module

        return DiscreteTrainer(config, env, eval_env)
    return Trainer(config, env, eval_env)


def _scalarize(info: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(dict(info)).items()}


class _LoopPort:
    """The JAX side of ``reppo_common.driver.run_loop``: the guarded jitted iteration, the
    evaluation key stream (split once per evaluation, stored in every checkpoint) and
    ``reppo_jax.checkpoint.save_state``."""

    def __init__(self, trainer: Trainer, config: ReppoConfig, eval_key: Any) -> None:
        self.trainer, self.config, self.eval_key = trainer, config, eval_key
        self.steps_per_iteration = trainer.steps_per_iteration

    def iterate(self, carry: A.Carry) -> tuple[A.Carry, dict[str, float], str | None]:
        carry, info = self.trainer.guarded_iteration(carry)
        flags = np.asarray(info.pop(CK.GUARD_KEY))
        values = _scalarize(info)  # blocks until the iteration is done
        return carry, values, CK.first_nonfinite(list(values), flags)

    def evaluate(self, carry: A.Carry, index: int) -> dict[str, float]:
        self.eval_key, k = jax.random.split(self.eval_key)
        return self.trainer.evaluate(carry.agent, k)

    def save(self, carry: A.Carry, run_dir: Path, **meta: Any) -> C.CheckpointInfo:
        evals_done = meta.pop("evals_done")
        return CK.save_state(run_dir, self.config, carry, self.eval_key, **meta,
                             extra={"evals_done": int(evals_done)})

    def any_process(self, flag: bool) -> bool:
        return flag  # one process (multi-device runs are one process per host)

    def compile_count(self) -> int:
        """XLA programs built so far in this process (``reppo_jax.compile_log``): the loop
        counts an iteration during which this grew as compiling, not steady state."""
        return COMPILES.count()


def train(config: ReppoConfig, run_dir: Path | None, hooks: TrainHooks | None = None,
          *, env=None, eval_env=None, resume: bool = False,
          trainer: "Trainer | None" = None) -> TrainResult:
    """Train per ``config`` with the shared loop (``reppo_common.driver``: evaluations every
    ``run.eval_interval`` env steps and at the end, full-state checkpoints —
    reppo_jax.checkpoint — every ``run.checkpoint_interval`` env steps, at the end and when
    ``hooks.should_stop()`` turns True).

    ``resume``: continue from the latest checkpoint in ``run_dir`` (validated first; a
    mismatch is a UserError and nothing is written). The continuation is bit-identical to the
    uninterrupted run on the same machine and package versions.
    Every iteration is checked for NaN/inf (losses, gradient norms, new parameters); the first
    non-finite quantity stops the run with :class:`TrainingDiverged` and no checkpoint of the
    bad state is written."""
    trainer = trainer or make_trainer(config, env, eval_env)
    if resume:
        if run_dir is None:
            raise UserError("resuming needs the run directory")
        info, tree = CK.check_resume(run_dir, config, trainer)
        carry, eval_key = trainer.place(tree["carry"]), tree["eval_key"]
        start = Start.from_checkpoint(info)
        C.remove_temp_files(Path(run_dir) / "checkpoints")
    else:
        carry = trainer.init(config.run.seed)
        eval_key, start = CK.eval_key_init(config.run.seed), Start()
    return run_loop(config, run_dir, hooks, _LoopPort(trainer, config, eval_key), carry, start)


def evaluate_run(config: ReppoConfig, run_dir: Path, episodes: int,
                 checkpoint: Path | None = None) -> dict[str, float]:
    """Evaluate a saved run's policy (``run.eval_policy``) on ``episodes`` fresh episodes."""
    from dataclasses import replace

    cfg = replace(config, run=replace(config.run, eval_episodes=episodes, devices=1,
                                      torch_compile=False))  # no update runs here
    trainer = make_trainer(cfg, env=make_env(cfg, 1), eval_env=None)
    flat, _meta = P.load_params(checkpoint or C.latest_params_file(Path(run_dir) / "checkpoints"))
    state = state_from_canonical(trainer.h, flat)
    return trainer.evaluate(state, jax.random.PRNGKey(cfg.run.seed + EVAL_RUN_SEED_OFFSET))
