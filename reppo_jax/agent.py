"""REPPO agent state and one training iteration (Algorithm 1), as pure JAX functions.

One call of :func:`make_iteration`'s result runs: rollout with the behaviour policy θ' (a snapshot
taken once, at the start of the iteration), soft TD(λ) targets computed once, then epochs of
shuffled minibatches, each a critic step followed by an actor step against the updated critic and
the α/β multiplier steps. Every random draw has its own key: executed action, bootstrap action,
actor sample, KL samples, shuffles — split per step and per minibatch.

``h.actor_gradient`` selects the actor's gradient estimator (paper §4.1; math in
``spec.reference.losses``): "pathwise" (eq. 13), "score" (likelihood ratio through the learned Q,
``h.score_samples`` actions per state) or "ppo" (clipped importance ratio on GAE advantages of a
state-value network V, which then gets its own regression step after the critic's); the two
§4.1 alternatives live in ``reppo_jax.estimators``, this module dispatches to them. Everything
else — critic, soft TD(λ) targets, α, β, the KL switch — is the same in all three.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from reppo_jax import distributions as D
from reppo_jax import estimators as E
from reppo_jax.losses import (
    actor_loss, critic_loss, faded_log_floor, multiplier_loss, project_log_multiplier, q_value,
)
from reppo_jax.networks import Actor, Critic, Value
from reppo_jax.normalization import RunningStats, normalize, running_stats_update
from reppo_jax.targets import soft_rewards, soft_td_lambda
from spec.backend import ITERATION_MAX_METRICS
from spec.config import is_sampled_eval
from spec.hyper import Hyper  # noqa: F401  (A.Hyper: resolved hyperparameters, shared by every port)


class AgentState(NamedTuple):
    actor: Any
    critic: Any
    log_alpha: jax.Array
    log_beta: jax.Array
    actor_opt: Any
    critic_opt: Any
    mult_opt: Any
    obs_stats: RunningStats
    value: Any = None       # state-value network params (actor.gradient=ppo only)
    value_opt: Any = None   # its optimiser state


class Transition(NamedTuple):
    obs: jax.Array          # normalised x_t
    action: jax.Array       # executed a_t ∈ [−1, 1]^A
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_value: jax.Array   # V_{t+1} = Q(x_{t+1}, a′), x_{t+1} the true next observation
    next_log_prob: jax.Array  # log π_θ'(a′|x_{t+1})
    next_emb: jax.Array     # ψ_t = z(x_{t+1}, a′), the auxiliary target
    # actor.gradient=ppo only (None otherwise):
    pre_action: Any = None        # u_t, a_t = tanh(u_t): the executed action's pre-squash sample
    state_value: Any = None       # V(x_t)
    next_state_value: Any = None  # V(x_{t+1}) at the true next observation


def optimizers(h: Hyper) -> tuple[optax.GradientTransformation, ...]:
    """Global-norm clip + Adam for actor and critic; a separate one for the multipliers; with
    ``actor.gradient=ppo`` a fourth for the state-value network (the critic's learning rate and
    clip): ``(actor, critic, mult[, value])``."""
    actor = optax.chain(optax.clip_by_global_norm(h.max_grad_norm), optax.adam(h.actor_lr))
    critic = optax.chain(optax.clip_by_global_norm(h.max_grad_norm), optax.adam(h.critic_lr))
    mult = optax.chain(optax.clip_by_global_norm(h.multiplier_max_grad_norm),
                       optax.adam(h.multiplier_lr))
    if h.actor_gradient == "ppo":
        value = optax.chain(optax.clip_by_global_norm(h.max_grad_norm), optax.adam(h.critic_lr))
        return actor, critic, mult, value
    return actor, critic, mult


class Nets(NamedTuple):
    actor: Actor
    critic: Critic
    value: Value | None = None  # actor.gradient=ppo only


def policy(nets: Nets, h: Hyper, actor_params, obs):
    mean, raw = nets.actor.apply({"params": actor_params}, obs)
    return mean, D.policy_std(raw, h.min_std)


def q_of(nets: Nets, h: Hyper, critic_params, obs, action):
    out, z = nets.critic.apply({"params": critic_params}, obs, action)
    return q_value(out, h.value_kind, h.v_min, h.v_max, h.num_bins), z


def critic_update(nets: Nets, h: Hyper, opt, state: AgentState, mb: dict):
    def loss_fn(params):
        out, z = nets.critic.apply({"params": params}, mb["obs"], mb["action"])
        pred_z, pred_r = nets.critic.apply({"params": params}, z, method=Critic.predict)
        return critic_loss(out, mb["target"], pred_z, mb["next_emb"], pred_r, mb["reward"],
                           kind=h.value_kind, v_min=h.v_min, v_max=h.v_max, num_bins=h.num_bins,
                           sigma=h.sigma, aux_mult=h.aux_mult)

    return critic_step(opt, state, loss_fn)


def critic_step(opt, state: AgentState, loss_fn) -> tuple[AgentState, dict]:
    """One optimiser step of the critic on ``loss_fn(critic_params) -> (loss, info)`` (the
    continuous and the discrete critic losses share it) and the step's logged metrics."""
    (loss, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic)
    updates, opt_state = opt.update(grads, state.critic_opt, state.critic)
    params = optax.apply_updates(state.critic, updates)
    info = {"train/critic_loss": loss, "train/value_loss": info["value_loss"],
            "train/aux_loss": info["aux_loss"], "train/critic_grad_norm": optax.tree.norm(grads)}
    return state._replace(critic=params, critic_opt=opt_state), info


def actor_noise_shape(h: Hyper, batch: int) -> tuple[int, ...]:
    """Shape of the actor-sample noise: (score_samples, B, A) for ``actor.gradient=score``,
    else (B, A)."""
    if h.actor_gradient == "score":
        return (h.score_samples, batch, h.action_dim)
    return (batch, h.action_dim)


def actor_noise(h: Hyper, key, batch: int) -> tuple[jax.Array, jax.Array]:
    """Independent standard-normal draws for one actor step: the reparameterised actor sample
    (B, A) — (score_samples, B, A) for the score estimator — and the k KL samples (k, B, A),
    from separate keys."""
    k_act, k_kl = jax.random.split(key)
    noise = jax.random.normal(k_act, actor_noise_shape(h, batch), jnp.float32)
    kl_noise = jax.random.normal(k_kl, (h.kl_samples, batch, h.action_dim), jnp.float32)
    return noise, kl_noise


def multiplier_step(h: Hyper, mult_opt, state: AgentState, entropy, kl) -> AgentState:
    """One Adam step on [log α, log β] from the (stop-gradient) entropy and KL estimates of the
    actor step, then log α projected onto [``h.log_alpha_min``, ∞) (``loss.alpha_min``; faded
    by ``loss.alpha_min_fade_steps``, the iteration read from the optimiser's step count) and
    log β onto [``h.log_beta_min``, ∞) (``loss.beta_min``); −inf: no bound. β is frozen when
    the KL term is off (``kl_mode='none'``, see ``multiplier_loss``; the config keeps its bound
    ≤ beta_init in that mode, so the projection leaves it there). Shared by the continuous and
    the discrete agent."""

    def mult_loss(logs):
        return multiplier_loss(logs, entropy, kl, h.entropy_target, h.kl_target, h.kl_mode)

    logs = jnp.stack([state.log_alpha, state.log_beta])
    mgrads = jax.grad(mult_loss)(logs)
    mupdates, mult_opt_state = mult_opt.update(mgrads, state.mult_opt, logs)
    logs = optax.apply_updates(logs, mupdates)
    floor = h.log_alpha_min
    if h.alpha_min_fade_iterations > 0:  # loss.alpha_min_fade_steps: the floor of this iteration
        done = optax.tree_utils.tree_get(state.mult_opt, "count")  # multiplier steps before this
        floor = faded_log_floor(h.log_alpha_min, done // (h.num_epochs * h.num_minibatches),
                                h.alpha_min_fade_iterations)
    return state._replace(log_alpha=project_log_multiplier(logs[0], floor),
                          log_beta=project_log_multiplier(logs[1], h.log_beta_min),
                          mult_opt=mult_opt_state)


def _actor_objective(nets: Nets, h: Hyper, state: AgentState, mean, std, obs, noise, kl,
                     old_mean, old_std, alpha, beta, mb):
    """The actor loss of ``h.actor_gradient`` for the policy (mean, std) at ``obs``:
    (loss, (info, log-probs of the entropy estimate))."""
    action, pre = D.tanh_gaussian_sample(mean, std, noise)
    log_prob = D.tanh_gaussian_log_prob(mean, std, pre)  # reparameterised: the entropy term
    if h.actor_gradient == "pathwise":
        q, _ = q_of(nets, h, state.critic, obs, action)
        loss, info = actor_loss(q, log_prob, kl, alpha, beta, h.kl_target, h.kl_mode)
    elif h.actor_gradient == "score":
        loss, info = E.score_objective(
            h, lambda o, a: q_of(nets, h, state.critic, o, a)[0], mean, std, obs, noise,
            action, pre, log_prob, kl, alpha, beta)
    elif h.actor_gradient == "ppo":
        loss, info = E.ppo_objective(h, mean, std, old_mean, old_std, mb, log_prob, kl, alpha,
                                     beta)
    else:
        raise ValueError(f"unknown actor gradient {h.actor_gradient!r}")
    return loss, (info, log_prob)


def actor_update(nets: Nets, h: Hyper, actor_opt, mult_opt, state: AgentState, behaviour,
                 obs, noise, kl_noise, mb: dict | None = None):
    """Actor step on the current critic, then the α/β step. The noise is passed in (see
    :func:`actor_noise`) so that the update is a deterministic function of its inputs — the
    parity suite feeds the same noise to every port. ``mb`` (the minibatch) is read by the ppo
    estimator only (``pre_action``, ``advantage``)."""
    alpha = jnp.exp(state.log_alpha)
    beta = jnp.exp(state.log_beta)
    old_mean, old_std = policy(nets, h, behaviour, obs)

    def loss_fn(params):
        mean, std = policy(nets, h, params, obs)
        kl = D.kl_estimate(old_mean, old_std, mean, std, kl_noise)
        loss, (info, log_prob) = _actor_objective(nets, h, state, mean, std, obs, noise, kl,
                                                  old_mean, old_std, alpha, beta, mb)
        return loss, (info, log_prob, kl)

    (loss, (info, log_prob, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor)
    updates, actor_opt_state = actor_opt.update(grads, state.actor_opt, state.actor)
    actor_params = optax.apply_updates(state.actor, updates)

    entropy = jax.lax.stop_gradient(D.entropy_estimate(log_prob))
    kl = jax.lax.stop_gradient(kl)

    new_state = multiplier_step(h, mult_opt, state, entropy, kl)._replace(
        actor=actor_params, actor_opt=actor_opt_state)
    out = {"train/actor_loss": loss, "train/actor_grad_norm": optax.tree.norm(grads),
           "train/kl": info["kl_mean"], "train/kl_max": info["kl_max"],
           "train/kl_violation_frac": info["kl_violation_frac"],
           "train/entropy": info["entropy_mean"]}
    if h.actor_gradient == "ppo":
        out.update({"train/clip_frac": info["clip_frac"], "train/ratio": info["ratio_mean"]})
    else:
        out["train/q"] = info["q_mean"]
    out.update({"train/alpha": alpha, "train/beta": beta})
    return new_state, out


def minibatch_step(nets: Nets, h: Hyper, opts, state: AgentState, behaviour, mb: dict,
                   noise, kl_noise) -> tuple[AgentState, dict]:
    """One minibatch of Algorithm 1: critic step, then actor and α/β step on the updated critic.

    ``mb`` holds ``obs`` (normalised), ``action``, ``reward``, ``target``, ``next_emb`` and, for
    ``actor.gradient=ppo``, ``pre_action``, ``advantage``, ``value_target`` (the state-value
    network then steps between critic and actor); the actor noise is explicit (see
    :func:`actor_noise`). This is the unit the parity suite's layer 3 runs in every port."""
    actor_opt, critic_opt, mult_opt = opts[:3]
    state, c_info = critic_update(nets, h, critic_opt, state, mb)
    if h.actor_gradient == "ppo":
        state, v_info = E.value_update(nets, h, opts[3], state, mb)
        c_info = {**c_info, **v_info}
    state, a_info = actor_update(nets, h, actor_opt, mult_opt, state, behaviour, mb["obs"],
                                 noise, kl_noise, mb)
    return state, {**c_info, **a_info}


class Carry(NamedTuple):
    """Everything one iteration threads through: agent, simulator, current raw obs, key."""

    agent: AgentState
    env_state: Any
    obs: jax.Array
    key: jax.Array


def _norm(h: Hyper, stats: RunningStats, obs):
    return normalize(obs, stats) if h.normalize_obs else obs


def rollout(nets: Nets, h: Hyper, env, carry: Carry, noise=None):
    """Collect num_steps × num_envs transitions with the behaviour policy θ' = carry.agent.actor.

    Statistics are updated with every new observation before it is normalised, so x_{t+1} is
    normalised identically as a bootstrap input at step t and as the policy input at step t+1.
    ``noise``: optional ``(action, bootstrap)`` standard normals (T, N, A) used instead of the
    draws from the carry's key (the keys are split all the same); the parity suite's layer 4
    feeds the same noise to every port.
    """
    agent = carry.agent
    behaviour, critic = agent.actor, agent.critic

    def step(c, eps):
        stats, env_state, obs, key = c
        key, k_act, k_boot = jax.random.split(key, 3)
        x = _norm(h, stats, obs)
        mean, std = policy(nets, h, behaviour, x)
        e_act = jax.random.normal(k_act, mean.shape) if eps is None else eps[0]
        action, pre = D.tanh_gaussian_sample(mean, std, e_act)
        env_state, out = env.step(env_state, action)
        if h.normalize_obs:
            stats = running_stats_update(stats, out.obs)
        x_next = _norm(h, stats, out.final_obs)
        n_mean, n_std = policy(nets, h, behaviour, x_next)
        e_boot = jax.random.normal(k_boot, n_mean.shape) if eps is None else eps[1]
        a_next, pre_next = D.tanh_gaussian_sample(n_mean, n_std, e_boot)
        next_log_prob = D.tanh_gaussian_log_prob(n_mean, n_std, pre_next)
        next_value, next_emb = q_of(nets, h, critic, x_next, a_next)
        tr = Transition(x, action, out.reward, out.terminated, out.truncated, next_value,
                        next_log_prob, next_emb)
        if h.actor_gradient == "ppo":
            tr = tr._replace(**E.ppo_transition_fields(nets, agent, x, x_next, pre))
        ep = {"done": jnp.logical_or(out.terminated, out.truncated),
              "return": out.info["episode_return"], "length": out.info["episode_length"]}
        return (stats, env_state, out.obs, key), (tr, ep)

    (stats, env_state, obs, key), (batch, episodes) = jax.lax.scan(
        step, (agent.obs_stats, carry.env_state, carry.obs, carry.key), noise, length=h.num_steps)
    carry = Carry(agent._replace(obs_stats=stats), env_state, obs, key)
    return carry, batch, episodes


def compute_targets(h: Hyper, agent: AgentState, batch: Transition) -> jax.Array:
    """Soft TD(λ) targets, once per iteration, with α at rollout time."""
    alpha = jnp.exp(agent.log_alpha)
    r = soft_rewards(batch.reward, batch.next_log_prob, batch.terminated, alpha, h.gamma)
    return soft_td_lambda(r, batch.next_value, batch.terminated, batch.truncated, h.gamma, h.lam)


def update(nets: Nets, h: Hyper, opts, agent: AgentState, batch: Transition, targets, key,
           extras: dict | None = None,
           shard_minibatches: Callable[[dict], dict] | None = None, noise: dict | None = None):
    """num_epochs × num_minibatches of (critic step, [value step,] actor step, multiplier step).

    ``extras``: further per-transition arrays (T, N, ...) for the minibatches (the ppo
    estimator's ``reppo_jax.estimators.compute_advantages``). Returns the new agent and metrics
    over every minibatch of the iteration (:func:`iteration_metrics`).
    ``shard_minibatches``: an optional layout hint applied to each epoch's
    ``(num_minibatches, minibatch, ...)`` arrays — with several devices,
    ``reppo_jax.distributed.DataParallel.shard_minibatches`` splits every minibatch over them; it
    changes where the math runs, not what it computes.
    ``noise``: optional explicit draws instead of the key's — ``perm`` (E, n) permutations,
    ``actor`` (E, M, …) and ``kl`` (E, M, k, B, A) actor noise (see :func:`actor_noise`); the
    keys are split all the same. For the parity suite's layer 4.
    """
    behaviour = agent.actor  # θ' snapshot, fixed for the whole iteration
    n = h.num_envs * h.num_steps
    data = {"obs": batch.obs, "action": batch.action, "reward": batch.reward,
            "target": targets, "next_emb": batch.next_emb, **(extras or {})}
    data = jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), data)

    def epoch(agent, xs):
        key, eps = xs
        k_perm, k_mb = jax.random.split(key)
        perm = jax.random.permutation(k_perm, n) if eps is None else eps["perm"]
        mbs = jax.tree.map(lambda x: x[perm].reshape((h.num_minibatches, -1) + x.shape[1:]), data)
        if shard_minibatches is not None:
            mbs = shard_minibatches(mbs)
        keys = jax.random.split(k_mb, h.num_minibatches)

        def minibatch(agent, xs):
            mb, k, e = xs
            noise, kl_noise = (actor_noise(h, k, mb["obs"].shape[0]) if e is None
                               else (e["actor"], e["kl"]))
            return minibatch_step(nets, h, opts, agent, behaviour, mb, noise, kl_noise)

        mb_eps = None if eps is None else {"actor": eps["actor"], "kl": eps["kl"]}
        return jax.lax.scan(minibatch, agent, (mbs, keys, mb_eps))

    agent, infos = jax.lax.scan(epoch, agent, (jax.random.split(key, h.num_epochs), noise))
    return agent, iteration_metrics(infos)


def iteration_metrics(infos: dict) -> dict:
    """An iteration's metrics from the stacked per-update ones (leading axes: epochs,
    minibatches): the mean over every update, the maximum for
    ``spec.backend.ITERATION_MAX_METRICS`` (shared by the continuous and the discrete agent)."""
    return {k: (jnp.max if k in ITERATION_MAX_METRICS else jnp.mean)(v) for k, v in infos.items()}


UPDATE_NOISE = ("perm", "actor", "kl")
"""The keys of an iteration's explicit noise that :func:`update` reads (the rest: the rollout's
``action`` and ``bootstrap``)."""


def make_iteration(nets: Nets, h: Hyper, env,
                   shard_minibatches: Callable[[dict], dict] | None = None):
    """The whole iteration as one function of the carry, to be jitted once
    (``shard_minibatches``: see :func:`update`). ``iteration(carry, noise)`` takes optional
    explicit draws (a dict: ``action``, ``bootstrap`` for :func:`rollout`; ``perm``, ``actor``,
    ``kl`` for :func:`update`) — the parity suite's layer 4; training passes none."""
    opts = optimizers(h)

    def iteration(carry: Carry, noise: dict | None = None):
        carry, batch, episodes = rollout(
            nets, h, env, carry, None if noise is None else (noise["action"], noise["bootstrap"]))
        targets = compute_targets(h, carry.agent, batch)
        extras = (E.compute_advantages(h, carry.agent, batch) if h.actor_gradient == "ppo"
                  else None)
        key, k_upd = jax.random.split(carry.key)
        agent, info = update(nets, h, opts, carry.agent, batch, targets, k_upd, extras,
                             shard_minibatches,
                             None if noise is None else {k: noise[k] for k in UPDATE_NOISE})
        done = episodes["done"].astype(jnp.float32)
        n_done = jnp.sum(done)
        info = {**info,
                "rollout/reward": jnp.mean(batch.reward),
                "rollout/target": jnp.mean(targets),
                "rollout/value": jnp.mean(batch.next_value),
                "rollout/episodes": n_done,
                "rollout/episode_return": jnp.sum(done * episodes["return"]) / jnp.maximum(n_done, 1),
                }
        if extras is not None:
            info["rollout/state_value"] = jnp.mean(batch.state_value)
        return Carry(agent, carry.env_state, carry.obs, key), info

    return iteration


EVAL_ACTION_STREAM = 0x5A3C_96E1
"""An evaluation's action noise comes from ``fold_in(its key, this)``, a stream apart from the
env reset's, which uses the key itself: ``fold_in(key, d)`` is ``split(key, n)[d]`` for n > d,
and no reset splits its key into ~1.5e9 parts."""


def eval_action_keys(key, num_steps: int) -> jax.Array:
    """One key per step for the actions of the evaluation with key ``key`` (see
    :data:`EVAL_ACTION_STREAM`)."""
    return jax.random.split(jax.random.fold_in(key, EVAL_ACTION_STREAM), num_steps)


def first_episode_returns(env, act, env_state, obs, num_steps: int, key=None):
    """Run ``act(obs, k) -> action`` for ``num_steps`` from ``(env_state, obs)``, ``k`` the step's
    key from :func:`eval_action_keys` of the evaluation key ``key`` (None for a deterministic
    policy: ``k`` is then None); each env's first episode return and length (steps after its
    first termination/truncation are not counted). The evaluation loop of the continuous and the
    discrete agent."""

    def step(c, k):
        env_state, obs, ret, length, alive = c
        env_state, out = env.step(env_state, act(obs, k))
        ret = ret + alive * out.reward
        length = length + alive
        done = jnp.logical_or(out.terminated, out.truncated)
        alive = alive * (1.0 - done.astype(alive.dtype))
        return (env_state, out.obs, ret, length, alive), None

    zeros = jnp.zeros((env.num_envs,), jnp.float32)
    (_, _, ret, length, _), _ = jax.lax.scan(
        step, (env_state, obs, zeros, zeros, jnp.ones_like(zeros)),
        None if key is None else eval_action_keys(key, num_steps), length=num_steps)
    return ret, length


def make_evaluate(nets: Nets, h: Hyper, env, num_steps: int, *, eval_policy: str):
    """``run.eval_policy`` on fresh episodes: 'mode' plays tanh(μ), 'sample' tanh(μ + σ·ξ) with
    fresh ξ each step (drawn from the evaluation key, see :func:`eval_action_keys`); returns each
    env's first episode return and length. The env reset uses ``key`` itself, so both policies
    start from the same states. Observation statistics are frozen (passed in, never updated)."""
    sample = is_sampled_eval(eval_policy)

    def evaluate(actor_params, stats: RunningStats, key):
        env_state, obs = env.reset(key)

        def act(obs, k):
            mean, std = policy(nets, h, actor_params, _norm(h, stats, obs))
            if sample:
                return D.tanh_gaussian_sample(mean, std, jax.random.normal(k, mean.shape))[0]
            return D.deterministic_action(mean)

        return first_episode_returns(env, act, env_state, obs, num_steps,
                                     key if sample else None)

    return evaluate
