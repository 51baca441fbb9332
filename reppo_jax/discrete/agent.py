"""D-REPPO (paper Appendix C): the discrete-action agent's rollout, update and one jitted iteration.

The iteration has the continuous agent's shape (``reppo_jax.agent``): rollout with the behaviour
policy θ' (snapshot at the start of the iteration), soft TD(λ) targets once, then epochs of
shuffled minibatches, each a critic step followed by an actor step against the updated critic and
the α/β step. What changes for a categorical policy π(·|x) = softmax(actor(x)):

* **Critic**: Q(x, ·) for every action in one pass. The encoder sees the observation only,
  z = φ(x); the Q head returns an (|A|, num_bins) block of HL-Gauss logits; the critic loss
  uses the row of the executed action. The self-predictive head takes SiLU(z) ⊕ onehot(a) and
  predicts the next embedding z(x′) = φ(x′) and the reward (eq. 17 with the action as an input,
  since z no longer contains it). Layout: ``spec.params.param_layout(action_space="discrete")``.
* **Actor** (eq. 14–16): closed-form expectations over actions, ℓ_i = Σ_j π_j(α log π_j − Q_ij)
  when the exact KL(π_θ'‖π_θ)(x_i) < ε_KL, else β·KL (per-state switch). No sampling, no
  reparameterisation, so the update needs no noise at all.
* **Targets**: the bootstrap is the closed-form expected value V_{t+1} = Σ_j π_θ'(a_j|x′) Q(x′, a_j)
  and the entropy bonus the exact entropy, r̃_t = r_t + (1 − term_t)·γ·α·H[π_θ'(·|x′)]; these
  feed the same ``soft_td_lambda`` as the continuous agent (``next_log_prob`` = −H).
* **Multipliers**: L_α = α·sg(H̄ − ε_H) with the exact mean entropy and the categorical entropy
  target ε_H = ``loss.entropy_target_mult`` · log|A| (``spec.reference.discrete``: the continuous
  −mult·|A| can never bind because H ≥ 0); L_β as in the continuous agent with the exact KL.
* **Evaluation**: the greedy action argmax_j π_j (the policy's mode, as tanh(μ) is the continuous
  agent's).

Environments signal a discrete action space with ``env.discrete = True`` and ``env.num_actions``
(= ``env.action_dim``); actions are int32 indices.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from reppo_jax import agent as A
from reppo_jax.discrete import losses as Dd
from reppo_jax.discrete.networks import DiscreteCritic, Nets
from reppo_jax.losses import critic_loss, q_value
from reppo_jax.normalization import normalize, running_stats_update
from reppo_jax.targets import soft_rewards, soft_td_lambda
from spec.config import is_sampled_eval


def logits_of(nets: Nets, actor_params, obs) -> jax.Array:
    return nets.actor.apply({"params": actor_params}, obs)


def q_all_of(nets: Nets, h, critic_params, obs) -> tuple[jax.Array, jax.Array]:
    """(Q(x, a_j) for every action (..., |A|), embedding z)."""
    out, z = nets.critic.apply({"params": critic_params}, obs)
    return q_value(out, h.value_kind, h.v_min, h.v_max, h.num_bins), z


# ---------------------------------------------------------------------------------------------
# Update
# ---------------------------------------------------------------------------------------------


def critic_update(nets: Nets, h, opt, state: A.AgentState, mb: dict):
    """One critic step on a minibatch: HL-Gauss CE of the executed action's row + aux loss."""
    onehot = jax.nn.one_hot(mb["action"], h.action_dim, dtype=mb["obs"].dtype)

    def loss_fn(params):
        out_all, z = nets.critic.apply({"params": params}, mb["obs"])
        out = jnp.take_along_axis(out_all, mb["action"][:, None, None], axis=1)[:, 0]
        pred_z, pred_r = nets.critic.apply({"params": params}, z, onehot,
                                           method=DiscreteCritic.predict)
        return critic_loss(out, mb["target"], pred_z, mb["next_emb"], pred_r, mb["reward"],
                           kind=h.value_kind, v_min=h.v_min, v_max=h.v_max, num_bins=h.num_bins,
                           sigma=h.sigma, aux_mult=h.aux_mult)

    return A.critic_step(opt, state, loss_fn)


def actor_update(nets: Nets, h, actor_opt, mult_opt, state: A.AgentState, behaviour, obs):
    """Actor step (eq. 14–16, closed form) on the current critic, then the α/β step."""
    alpha = jnp.exp(state.log_alpha)
    beta = jnp.exp(state.log_beta)
    q_all, _ = q_all_of(nets, h, state.critic, obs)
    q_all = jax.lax.stop_gradient(q_all)
    old_logits = jax.lax.stop_gradient(logits_of(nets, behaviour, obs))

    def loss_fn(params):
        logits = logits_of(nets, params, obs)
        return Dd.discrete_actor_loss(q_all, logits, old_logits, alpha, beta, h.kl_target,
                                      h.kl_mode)

    (loss, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor)
    updates, actor_opt_state = actor_opt.update(grads, state.actor_opt, state.actor)
    actor_params = optax.apply_updates(state.actor, updates)

    entropy = jax.lax.stop_gradient(info["entropy_mean"])
    kl = jax.lax.stop_gradient(info["kl_mean"])

    new_state = A.multiplier_step(h, mult_opt, state, entropy, kl)._replace(
        actor=actor_params, actor_opt=actor_opt_state)
    info = {"train/actor_loss": loss, "train/actor_grad_norm": optax.tree.norm(grads),
            "train/kl": info["kl_mean"], "train/kl_max": info["kl_max"],
            "train/kl_violation_frac": info["kl_violation_frac"],
            "train/entropy": info["entropy_mean"], "train/q": info["q_mean"],
            "train/alpha": alpha, "train/beta": beta}
    return new_state, info


def minibatch_step(nets: Nets, h, opts, state: A.AgentState, behaviour, mb: dict
                   ) -> tuple[A.AgentState, dict]:
    """Critic step, then actor and α/β step on the updated critic (Algorithm 1's inner loop).
    ``mb``: ``obs`` (normalised), ``action`` (int32), ``reward``, ``target``, ``next_emb``."""
    actor_opt, critic_opt, mult_opt = opts
    state, c_info = critic_update(nets, h, critic_opt, state, mb)
    state, a_info = actor_update(nets, h, actor_opt, mult_opt, state, behaviour, mb["obs"])
    return state, {**c_info, **a_info}


def _norm(h, stats, obs):
    return normalize(obs, stats) if h.normalize_obs else obs


def bootstrap(nets: Nets, h, behaviour, critic, x_next):
    """At the true next observation x′ (normalised): (Σ_j π_θ'(a_j|x′) Q(x′, a_j), H[π_θ'(·|x′)],
    z(x′)) — the closed-form bootstrap value, the exact entropy and the auxiliary target."""
    n_logits = logits_of(nets, behaviour, x_next)
    q_next, z_next = q_all_of(nets, h, critic, x_next)
    return (Dd.discrete_soft_value(q_next, n_logits, 0.0), Dd.categorical_entropy(n_logits),
            z_next)


def rollout(nets: Nets, h, env, carry: A.Carry, noise=None):
    """num_steps × num_envs transitions with actions sampled from π_θ' (one key per step).

    Statistics are updated with every new observation before it is normalised (as the continuous
    agent does). ``Transition.next_log_prob`` holds −H[π_θ'(·|x′)] so that ``soft_rewards``
    gives r̃ = r + γ·α·H. ``noise``: optional standard Gumbel draws (T, N, |A|), the action then
    argmax(logits + g) (the Gumbel-max rule of ``jax.random.categorical``) instead of a draw from
    the step's key (split all the same); the parity suite's layer 4."""
    agent = carry.agent
    behaviour, critic = agent.actor, agent.critic

    def step(c, gumbel):
        stats, env_state, obs, key = c
        key, k_act = jax.random.split(key)
        x = _norm(h, stats, obs)
        logits = logits_of(nets, behaviour, x)
        action = Dd.sample_actions(k_act, logits) if gumbel is None else \
            jnp.argmax(logits + gumbel, axis=-1).astype(jnp.int32)
        env_state, out = env.step(env_state, action)
        if h.normalize_obs:
            stats = running_stats_update(stats, out.obs)
        x_next = _norm(h, stats, out.final_obs)
        next_value, next_entropy, next_emb = bootstrap(nets, h, behaviour, critic, x_next)
        tr = A.Transition(x, action, out.reward, out.terminated, out.truncated, next_value,
                          -next_entropy, next_emb)
        ep = {"done": jnp.logical_or(out.terminated, out.truncated),
              "return": out.info["episode_return"], "length": out.info["episode_length"]}
        return (stats, env_state, out.obs, key), (tr, ep)

    (stats, env_state, obs, key), (batch, episodes) = jax.lax.scan(
        step, (agent.obs_stats, carry.env_state, carry.obs, carry.key), noise, length=h.num_steps)
    return A.Carry(agent._replace(obs_stats=stats), env_state, obs, key), batch, episodes


def compute_targets(h, agent: A.AgentState, batch: A.Transition) -> jax.Array:
    """Soft TD(λ) targets, once per iteration, with α at target time (as the continuous agent)."""
    alpha = jnp.exp(agent.log_alpha)
    r = soft_rewards(batch.reward, batch.next_log_prob, batch.terminated, alpha, h.gamma)
    return soft_td_lambda(r, batch.next_value, batch.terminated, batch.truncated, h.gamma, h.lam)


def update(nets: Nets, h, opts, agent: A.AgentState, batch: A.Transition, targets, key,
           shard_minibatches: Callable[[dict], dict] | None = None, perms=None):
    """num_epochs × num_minibatches of (critic step, actor step, multiplier step); metrics over
    every minibatch of the iteration as in the continuous agent (``A.iteration_metrics``).
    ``shard_minibatches``: an optional layout hint applied to each epoch's
    ``(num_minibatches, minibatch, ...)`` arrays, as in ``reppo_jax.agent.update`` (with several
    devices ``reppo_jax.distributed.DataParallel.shard_minibatches`` splits every minibatch over
    them; where the math runs, not what it computes).
    ``perms``: optional explicit shuffles (E, n) instead of the key's (the parity suite's
    layer 4)."""
    behaviour = agent.actor
    n = batch.obs.shape[0] * batch.obs.shape[1]
    data = {"obs": batch.obs, "action": batch.action, "reward": batch.reward,
            "target": targets, "next_emb": batch.next_emb}
    data = jax.tree.map(lambda x: x.reshape((n,) + x.shape[2:]), data)

    def epoch(agent, xs):
        key, given = xs
        perm = jax.random.permutation(key, n) if given is None else given
        mbs = jax.tree.map(lambda x: x[perm].reshape((h.num_minibatches, -1) + x.shape[1:]), data)
        if shard_minibatches is not None:
            mbs = shard_minibatches(mbs)

        def minibatch(agent, mb):
            return minibatch_step(nets, h, opts, agent, behaviour, mb)

        return jax.lax.scan(minibatch, agent, mbs)

    agent, infos = jax.lax.scan(epoch, agent, (jax.random.split(key, h.num_epochs), perms))
    return agent, A.iteration_metrics(infos)


def iteration_info(info, batch, targets, episodes) -> dict:
    done = episodes["done"].astype(jnp.float32)
    n_done = jnp.sum(done)
    return {**info,
            "rollout/reward": jnp.mean(batch.reward),
            "rollout/target": jnp.mean(targets),
            "rollout/value": jnp.mean(batch.next_value),
            "rollout/episodes": n_done,
            "rollout/episode_return": jnp.sum(done * episodes["return"]) / jnp.maximum(n_done, 1)}


def make_iteration(nets: Nets, h, env,
                   shard_minibatches: Callable[[dict], dict] | None = None):
    """The whole iteration as one function of the carry, to be jitted once
    (``shard_minibatches``: see :func:`update`). ``iteration(carry, noise)`` takes optional
    explicit draws (a dict: ``gumbel`` for :func:`rollout`, ``perm`` for :func:`update`) — the
    parity suite's layer 4."""
    opts = A.optimizers(h)

    def iteration(carry: A.Carry, noise: dict | None = None):
        carry, batch, episodes = rollout(nets, h, env, carry,
                                         None if noise is None else noise["gumbel"])
        targets = compute_targets(h, carry.agent, batch)
        key, k_upd = jax.random.split(carry.key)
        agent, info = update(nets, h, opts, carry.agent, batch, targets, k_upd,
                             shard_minibatches, None if noise is None else noise["perm"])
        return (A.Carry(agent, carry.env_state, carry.obs, key),
                iteration_info(info, batch, targets, episodes))

    return iteration


def eval_actions(sample: bool, logits, key):
    """The evaluation action: a draw from Categorical(π) with ``key`` if ``sample``, else the
    mode argmax π (``run.eval_policy``)."""
    return Dd.sample_actions(key, logits) if sample else Dd.greedy_actions(logits)


def make_evaluate(nets: Nets, h, env, num_steps: int, *, eval_policy: str):
    """``run.eval_policy`` on fresh episodes — 'mode': argmax π, 'sample': a categorical draw
    per step from the evaluation key (``reppo_jax.agent.eval_action_keys``; the reset uses the
    key itself); each env's first episode return and length. Observation statistics are
    frozen."""
    sample = is_sampled_eval(eval_policy)

    def evaluate(actor_params, stats, key):
        env_state, obs = env.reset(key)

        def act(obs, k):
            return eval_actions(sample, logits_of(nets, actor_params, _norm(h, stats, obs)), k)

        return A.first_episode_returns(env, act, env_state, obs, num_steps,
                                       key if sample else None)

    return evaluate


# ---------------------------------------------------------------------------------------------
# Host-side environments (Atari via envpool)
# ---------------------------------------------------------------------------------------------


def make_host_iteration(nets: Nets, h, env):
    """The iteration for a host-side env (``env.host``): the same computation as
    :func:`make_iteration`, but the env is stepped from Python. Per env step one jitted call
    bootstraps the previous transition at its true next observation (closed-form value, entropy,
    embedding; statistics updated first, as in :func:`rollout`) and samples the next action; per
    iteration one jitted call computes the targets and runs the update. The carry's
    ``env_state`` stays None (the emulators' state lives in the envpool object)."""
    opts = A.optimizers(h)

    @jax.jit
    def act(actor, stats, obs, key):
        key, k = jax.random.split(key)
        x = _norm(h, stats, obs)
        return Dd.sample_actions(k, logits_of(nets, actor, x)), x, key

    @jax.jit
    def observe(actor, critic, stats, final_obs, next_obs):
        if h.normalize_obs:
            stats = running_stats_update(stats, next_obs)
        value, entropy, emb = bootstrap(nets, h, actor, critic, _norm(h, stats, final_obs))
        return stats, value, entropy, emb

    @jax.jit
    def learn(agent, key, batch, done, ep_return):
        targets = compute_targets(h, agent, batch)
        key, k_upd = jax.random.split(key)
        agent, info = update(nets, h, opts, agent, batch, targets, k_upd)
        return agent, key, iteration_info(info, batch, targets,
                                          {"done": done, "return": ep_return})

    def iteration(carry: A.Carry):
        agent, obs, key = carry.agent, carry.obs, carry.key
        stats = agent.obs_stats
        steps, dones, rets = [], [], []
        for _ in range(h.num_steps):
            action, x, key = act(agent.actor, stats, obs, key)
            _, out = env.step(None, np.asarray(action))
            stats, value, entropy, emb = observe(agent.actor, agent.critic, stats, out.final_obs,
                                                 out.obs)
            steps.append(A.Transition(x, action, out.reward, out.terminated, out.truncated,
                                      value, -entropy, emb))
            dones.append(out.info["episode_done"])
            rets.append(out.info["episode_return"])
            obs = out.obs
        batch = jax.tree.map(lambda *xs: jnp.stack(xs), *steps)
        agent, key, info = learn(agent._replace(obs_stats=stats), key, batch,
                                 jnp.asarray(np.stack(dones)), jnp.asarray(np.stack(rets)))
        return A.Carry(agent, None, jnp.asarray(obs), key), info

    return iteration


def make_host_evaluate(nets: Nets, h, env, num_steps: int, *, eval_policy: str):
    """:func:`make_evaluate` on a host-side env: every env plays one full episode (up to
    ``num_steps`` agent steps) with raw (unclipped) rewards; 'sample' draws step t's actions
    with ``reppo_jax.agent.eval_action_keys(key, num_steps)[t]``, as the jitted loop does."""
    sample = is_sampled_eval(eval_policy)

    @jax.jit
    def act(actor, stats, obs, k):
        return eval_actions(sample, logits_of(nets, actor, _norm(h, stats, obs)), k)

    def evaluate(actor_params, stats, key):
        _, obs = env.reset(key)
        keys = A.eval_action_keys(key, num_steps) if sample else [None] * num_steps
        ret = np.zeros(env.num_envs, np.float32)
        length = np.zeros(env.num_envs, np.float32)
        alive = np.ones(env.num_envs, bool)
        for t in range(num_steps):
            _, out = env.step(None, np.asarray(act(actor_params, stats, obs, keys[t])))
            finished = alive & out.info["episode_done"]
            ret = np.where(finished, out.info["episode_return"], ret)
            length = np.where(finished, out.info["episode_length"], length)
            alive &= ~finished
            obs = out.obs
            if not alive.any():
                break
        ret = np.where(alive, 0.0, ret)  # unfinished episodes (num_steps too small) score 0
        return ret, length

    return evaluate
