"""One iteration's data path between the simulator and the update (Algorithm 1 steps 1–2), in
numpy: the behaviour-policy rollout with running observation statistics, the bootstrap at the
true next observation, the soft TD(λ) targets and the rollout metrics.

The environment is given as a callable ``env_step(action) -> EnvStep`` (the VecEnv auto-reset
convention: ``obs`` is already the next episode's first observation where an episode ended,
``final_obs`` the transition's true next observation), the networks as canonical parameters
(``spec.reference.networks`` forwards) and every random draw as an explicit standard-normal
array, so the result is a deterministic function of its inputs. Order of operations per step t:

1. x_t = normalise(obs_t) with the current statistics (identity without ``normalize_obs``);
2. a_t = tanh(μ + σ·ε_t) from the behaviour policy θ' at x_t;
3. step the env; update the statistics with the post-reset observations ``obs_{t+1}``;
4. x'_{t+1} = normalise(final_obs_{t+1}) with the *updated* statistics (so the true next
   observation is normalised exactly as the policy input of step t+1 where no episode ended);
5. the bootstrap action a′ = tanh(μ' + σ'·ε'_t) from θ' at x'_{t+1}, its log-probability, and
   Q(x'_{t+1}, a′) and the critic embedding z(x'_{t+1}, a′).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from spec.reference import discrete as Dd
from spec.reference import distributions as D
from spec.reference import networks as N
from spec.reference.losses import q_value
from spec.reference.normalization import RunningStats, normalize, running_stats_update
from spec.reference.targets import gae_advantages, soft_rewards, soft_td_lambda


@dataclass(frozen=True)
class EnvStep:
    """One vectorised env step (N envs): see the module docstring for the auto-reset rule.
    ``episode_return``/``episode_length`` include this step (meaningful where it ended)."""

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray


@dataclass(frozen=True)
class PolicyConfig:
    """The hyperparameters the data path reads (the ``spec.hyper.Hyper`` fields of the same
    names, plus the networks' norm)."""

    norm: str
    min_std: float
    value_kind: str
    v_min: float
    v_max: float
    num_bins: int
    normalize_obs: bool


def collect_rollout(
    behaviour: Mapping[str, np.ndarray],
    critic: Mapping[str, np.ndarray],
    stats: RunningStats,
    obs: np.ndarray,
    env_step: Callable[[np.ndarray], EnvStep],
    action_noise: np.ndarray,
    bootstrap_noise: np.ndarray,
    cfg: PolicyConfig,
    value: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], RunningStats, np.ndarray]:
    """T = len(action_noise) steps of N envs with the behaviour actor ``behaviour`` (canonical
    ``actor/*`` params) and the critic ``critic`` (``critic/*``).

    Returns (batch, episodes, statistics, last obs): ``batch`` time-major (T, N, …) with
    ``obs`` (normalised x_t), ``action``, ``pre_action``, ``reward``, ``terminated``,
    ``truncated``, ``next_value`` Q(x'_{t+1}, a′), ``next_log_prob`` log π_θ'(a′|x'_{t+1}),
    ``next_emb`` z(x'_{t+1}, a′); ``episodes`` with ``done`` (terminated or truncated),
    ``return`` and ``length`` (the env's episode bookkeeping). With the state-value network
    ``value`` (``value/*``, actor.gradient=ppo) also ``state_value`` V(x_t) and
    ``next_state_value`` V(x'_{t+1}) at the true next observation."""
    def norm(x):
        return normalize(x, stats) if cfg.normalize_obs else x

    def policy(x):
        mean, raw = N.actor_forward(behaviour, x, cfg.norm)
        return mean, D.policy_std(raw, cfg.min_std)

    cols: dict[str, list] = {k: [] for k in (
        "obs", "action", "pre_action", "reward", "terminated", "truncated", "next_value",
        "next_log_prob", "next_emb", "done", "return", "length")}
    for eps, eps_boot in zip(action_noise, bootstrap_noise):
        x = norm(obs)
        mean, std = policy(x)
        action, pre = D.tanh_gaussian_sample(mean, std, eps)
        out = env_step(action)
        if cfg.normalize_obs:
            stats = running_stats_update(stats, out.obs)
        x_next = norm(out.final_obs)
        n_mean, n_std = policy(x_next)
        a_next, pre_next = D.tanh_gaussian_sample(n_mean, n_std, eps_boot)
        q_out, z = N.critic_forward(critic, x_next, a_next, cfg.norm)
        row = {"obs": x, "action": action, "pre_action": pre, "reward": out.reward,
               "terminated": np.asarray(out.terminated, bool),
               "truncated": np.asarray(out.truncated, bool),
               "next_value": q_value(q_out, cfg.value_kind, cfg.v_min, cfg.v_max, cfg.num_bins),
               "next_log_prob": D.tanh_gaussian_log_prob(n_mean, n_std, pre_next),
               "next_emb": z,
               "done": np.logical_or(out.terminated, out.truncated),
               "return": out.episode_return, "length": out.episode_length}
        if value is not None:
            row["state_value"] = N.mlp_forward(value, "value/layers", x, cfg.norm)[..., 0]
            row["next_state_value"] = N.mlp_forward(value, "value/layers", x_next,
                                                    cfg.norm)[..., 0]
        for k, v in row.items():
            cols.setdefault(k, []).append(v)
        obs = out.obs
    stacked = {k: np.stack(v) for k, v in cols.items()}
    episodes = {k: stacked.pop(k) for k in ("done", "return", "length")}
    return stacked, episodes, stats, obs


def collect_discrete_rollout(
    actor: Mapping[str, np.ndarray],
    critic: Mapping[str, np.ndarray],
    stats: RunningStats,
    obs: np.ndarray,
    env_step: Callable[[np.ndarray], EnvStep],
    gumbel: np.ndarray,
    cfg: PolicyConfig,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], RunningStats, np.ndarray]:
    """The D-REPPO rollout (categorical behaviour policy θ′ = ``actor``, flat observations):
    the same order of operations as :func:`collect_rollout`, with

    * the action a_t = argmax_j(logits_j + g_tj), g the given standard Gumbel draws (T, N, |A|)
      (the Gumbel-max rule: a sample of softmax(logits));
    * the closed-form bootstrap at the true next observation x′: ``next_value`` = Σ_j π_θ'(a_j|x′)
      Q(x′, a_j) (``discrete.discrete_soft_value`` with α = 0) and ``next_log_prob`` = −H[π_θ'(·|x′)],
      so that ``targets.soft_rewards`` adds the entropy bonus γ·α·H;
    * ``next_emb`` = the critic encoder's z(x′) (the discrete critic's encoder sees x only).

    ``actor/layers`` maps x to |A| logits; ``critic/encoder`` x to z, ``critic/q_head`` SiLU(z)
    to |A|·q_out (reshaped to (…, |A|, q_out) and decoded with ``losses.q_value``)."""
    def norm(x):
        return normalize(x, stats) if cfg.normalize_obs else x

    def logits_of(x):
        return N.mlp_forward(actor, "actor/layers", x, cfg.norm)

    cols: dict[str, list] = {k: [] for k in (
        "obs", "action", "reward", "terminated", "truncated", "next_value", "next_log_prob",
        "next_emb", "done", "return", "length")}
    for g in gumbel:
        x = norm(obs)
        action = np.argmax(logits_of(x) + g, axis=-1).astype(np.int32)
        out = env_step(action)
        if cfg.normalize_obs:
            stats = running_stats_update(stats, out.obs)
        x_next = norm(out.final_obs)
        n_logits = logits_of(x_next)
        z = N.mlp_forward(critic, "critic/encoder", x_next, cfg.norm)
        q_out = N.mlp_forward(critic, "critic/q_head", z, cfg.norm, activate_input=True)
        q_out = q_out.reshape(q_out.shape[:-1] + (n_logits.shape[-1], -1))
        q = q_value(q_out, cfg.value_kind, cfg.v_min, cfg.v_max, cfg.num_bins)
        row = {"obs": x, "action": action, "reward": out.reward,
               "terminated": np.asarray(out.terminated, bool),
               "truncated": np.asarray(out.truncated, bool),
               "next_value": Dd.discrete_soft_value(q, n_logits, 0.0),
               "next_log_prob": -Dd.categorical_entropy(n_logits), "next_emb": z,
               "done": np.logical_or(out.terminated, out.truncated),
               "return": out.episode_return, "length": out.episode_length}
        for k, v in row.items():
            cols[k].append(v)
        obs = out.obs
    stacked = {k: np.stack(v) for k, v in cols.items()}
    episodes = {k: stacked.pop(k) for k in ("done", "return", "length")}
    return stacked, episodes, stats, obs


def iteration_targets(batch: Mapping[str, np.ndarray], log_alpha: float, gamma: float,
                      lam: float) -> np.ndarray:
    """Soft TD(λ) targets of one iteration, computed once from the rollout, with α = exp(log α)
    of the agent *at rollout time* (before any update of the iteration)."""
    r = soft_rewards(batch["reward"], batch["next_log_prob"], batch["terminated"],
                     float(np.exp(np.float64(log_alpha))), gamma)
    return soft_td_lambda(r, batch["next_value"], batch["terminated"], batch["truncated"],
                          gamma, lam)


def iteration_advantages(batch: Mapping[str, np.ndarray], log_alpha: float, gamma: float,
                         lam: float) -> dict[str, np.ndarray]:
    """actor.gradient=ppo: GAE advantages of the state-value network on the same soft rewards
    (α at rollout time) and its regression targets A + V(x_t), once per iteration."""
    r = soft_rewards(batch["reward"], batch["next_log_prob"], batch["terminated"],
                     float(np.exp(np.float64(log_alpha))), gamma)
    adv = gae_advantages(r, batch["state_value"], batch["next_state_value"], batch["terminated"],
                         batch["truncated"], gamma, lam)
    return {"advantage": adv, "value_target": adv + batch["state_value"]}


def rollout_metrics(batch: Mapping[str, np.ndarray], targets: np.ndarray,
                    episodes: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The ``rollout/*`` metrics of an iteration: mean reward, mean target, mean bootstrap value,
    the number of episodes that ended in the rollout and their mean return (0 when none did)."""
    done = np.asarray(episodes["done"], np.float64)
    n_done = float(np.sum(done))
    return {"rollout/reward": float(np.mean(batch["reward"], dtype=np.float64)),
            "rollout/target": float(np.mean(targets, dtype=np.float64)),
            "rollout/value": float(np.mean(batch["next_value"], dtype=np.float64)),
            "rollout/episodes": n_done,
            "rollout/episode_return": float(np.sum(done * episodes["return"]) / max(n_done, 1.0))}

