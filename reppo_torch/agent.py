"""REPPO agent state and one training iteration (Algorithm 1) in PyTorch; mirrors
``reppo_jax.agent`` name for name.

One :func:`make_iteration` call runs: rollout with the behaviour policy θ' (a snapshot of the
actor taken once, at the start of the iteration), soft TD(λ) targets computed once, then epochs
of shuffled minibatches, each a critic step followed by an actor step against the updated critic
and the α/β multiplier step (:func:`minibatch_step`). Every random draw has its own
``torch.Generator`` on the env's device (:class:`Streams`): executed action, bootstrap action,
actor sample, KL samples, shuffles. ``h.actor_gradient`` selects the actor's estimator
("pathwise", "score", "ppo"; see ``reppo_jax.agent`` and ``spec.reference.losses``); the two
§4.1 alternatives live in ``reppo_torch.estimators``, this module dispatches to them.

Torch modules own their parameters, so :class:`AgentState` holds the modules and their
optimisers and the update functions mutate it in place (returning it, to read like the JAX port).
Tensors stay on the env's device; the loops never read a tensor value on the host — per-minibatch
metrics are summed on the device and read once per iteration by the trainer.
"""

from __future__ import annotations

import copy
import functools
import weakref
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import nn

from reppo_common.seeding import stream_int
from reppo_torch import distributions as D
from reppo_torch import estimators as E
from reppo_torch.distributed import SINGLE, Shard, average_gradients_
from reppo_torch.hlgauss import hlgauss_target
from reppo_torch.losses import (
    actor_loss, critic_loss, faded_log_floor, multiplier_grad, project_log_multiplier, q_value,
)
from reppo_torch.networks import Actor, Critic, Value
from reppo_torch.normalization import RunningStats, normalize
from reppo_torch.targets import soft_rewards, soft_td_lambda
from spec.backend import ITERATION_MAX_METRICS
from spec.config import is_sampled_eval
from spec.hyper import Hyper  # noqa: F401  (A.Hyper: resolved hyperparameters, shared by every port)

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
"""optax.adam's defaults (b1, b2, eps; eps_root 0), so both ports run the same optimiser."""


@dataclass
class AgentState:
    """Actor, critic, log-multipliers [log α, log β], their three Adam optimisers and the
    running observation statistics; with ``actor.gradient=ppo`` also the state-value network
    and its optimiser."""

    actor: Actor
    critic: Critic
    logs: nn.Parameter  # (2,) = [log α, log β], one optimiser and one clip over both
    actor_opt: torch.optim.Adam
    critic_opt: torch.optim.Adam
    mult_opt: torch.optim.Adam
    obs_stats: RunningStats
    value: Value | None = None
    value_opt: torch.optim.Adam | None = None

    @functools.cached_property
    def actor_params(self) -> list[nn.Parameter]:
        """The actor's parameters, listed once (the modules are updated in place, never
        replaced; listing walks the module tree, ~10 µs per call)."""
        return list(self.actor.parameters())

    @functools.cached_property
    def critic_params(self) -> list[nn.Parameter]:
        """The critic's parameters, listed once (see :attr:`actor_params`)."""
        return list(self.critic.parameters())

    @functools.cached_property
    def value_params(self) -> list[nn.Parameter]:
        """The state-value network's parameters (``actor.gradient=ppo`` only), listed once (see
        :attr:`actor_params`)."""
        return list(self.value.parameters())

    @property
    def log_alpha(self) -> torch.Tensor:
        return self.logs.detach()[0]

    @property
    def log_beta(self) -> torch.Tensor:
        return self.logs.detach()[1]


class Transition(NamedTuple):
    """One rollout, time-major (T, N, ...)."""

    obs: torch.Tensor            # normalised x_t
    action: torch.Tensor         # executed a_t ∈ [−1, 1]^A
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    next_value: torch.Tensor     # V_{t+1} = Q(x_{t+1}, a′), x_{t+1} the true next observation
    next_log_prob: torch.Tensor  # log π_θ'(a′|x_{t+1})
    next_emb: torch.Tensor       # ψ_t = z(x_{t+1}, a′), the auxiliary target
    # actor.gradient=ppo only (None otherwise):
    pre_action: torch.Tensor | None = None        # u_t, a_t = tanh(u_t)
    state_value: torch.Tensor | None = None       # V(x_t)
    next_state_value: torch.Tensor | None = None  # V(x_{t+1}) at the true next observation
    # the behaviour policy π_θ'(·|x_t) the rollout sampled a_t from (None: recomputed per
    # minibatch by the actor step); θ' is fixed for the iteration, so these are its outputs at
    # every x_t and the update reuses them instead of re-running θ' on each minibatch
    old_mean: torch.Tensor | None = None
    old_std: torch.Tensor | None = None


class Streams(NamedTuple):
    """Independent random streams, one ``torch.Generator`` each, seeded from ``run.seed`` by
    name (``reppo_common.seeding``): executed action, bootstrap action a′, actor sample,
    KL samples, minibatch shuffles."""

    action: torch.Generator
    bootstrap: torch.Generator
    actor: torch.Generator
    kl: torch.Generator
    shuffle: torch.Generator

    @classmethod
    def from_seed(cls, seed: int, device: torch.device) -> "Streams":
        def gen(name: str) -> torch.Generator:
            g = torch.Generator(device=device)
            g.manual_seed(stream_int(seed, f"torch/{name}", 63))
            return g

        return cls(*(gen(name) for name in cls._fields))


def optimizers(h: Hyper, actor: nn.Module, critic: nn.Module, logs: nn.Parameter,
               value: nn.Module | None = None) -> tuple[torch.optim.Adam, ...]:
    """Plain Adam (no weight decay) for actor and critic, a separate one for [log α, log β], and
    for the state-value network (actor.gradient=ppo: pass ``value``; the critic's learning rate)
    a fourth: ``(actor, critic, mult[, value])``. The global-norm clips are applied in the update
    functions, which step the optimisers with :func:`adam_step_`.

    ``fused=True``: one kernel per step over all of a network's parameters, with the step
    counts kept as tensors (the foreach implementation reads every step count on the host and
    dispatches ~10 small ops per parameter, ~1 ms per step at width 128 on one CPU thread)."""
    def adam(params, lr):
        return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0,
                                fused=True)

    opts = (adam(actor.parameters(), h.actor_lr), adam(critic.parameters(), h.critic_lr),
            adam([logs], h.multiplier_lr))
    if value is not None:
        opts += (adam(value.parameters(), h.critic_lr),)
    return opts


_ADAM_LISTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
"""Per optimiser: its state's tensors listed in parameter order, valid while ``opt.state`` is
the same object (``load_state_dict`` replaces it) for the same parameters; the kernel updates
the tensors in place, so the lists stay current."""


@torch.no_grad()
def adam_step_(opt: torch.optim.Adam, params: list[nn.Parameter],
               grads: list[torch.Tensor]) -> None:
    """One step of the fused Adam ``opt`` (built by :func:`optimizers`: one parameter group,
    ``fused=True``, every parameter on one device with one dtype) on ``params`` with the
    gradients ``grads``: the step-count increment and the fused kernel that ``opt.step()``
    runs (``torch.optim.adam._fused_adam``), on the same state, without ``.grad``,
    ``zero_grad`` and ``step()``'s per-call bookkeeping (hooks, profiler ranges, the state and
    device/dtype group scans; the critic's step at width 128 on one CPU thread: ~140 µs by
    ``opt.step()``, ~75 µs by the two calls here, microbenchmark on the shared machine).
    ``tests/torch/test_torch_train.py`` checks it against ``opt.step()`` bit for bit. The
    state lives in ``opt.state`` (checkpoints read and restore it there) and is created on a
    parameter's first step as ``Adam`` creates it for ``fused=True`` (float32 step count on
    the parameter's device, zero moments)."""
    group = opt.param_groups[0]
    state = opt.state
    key = (state, tuple(map(id, params)))
    cached = _ADAM_LISTS.get(opt)
    if cached is not None and cached[0][0] is state and cached[0][1] == key[1]:
        steps, exp_avgs, exp_avg_sqs = cached[1]
    else:  # first step, other parameters, or a new state (load_state_dict replaces it)
        steps, exp_avgs, exp_avg_sqs = [], [], []
        for p in params:
            s = state[p]
            if not s:
                s["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            steps.append(s["step"])
            exp_avgs.append(s["exp_avg"])
            exp_avg_sqs.append(s["exp_avg_sq"])
        _ADAM_LISTS[opt] = (key, (steps, exp_avgs, exp_avg_sqs))
    beta1, beta2 = group["betas"]
    torch._foreach_add_(steps, 1)
    torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False,
                       lr=group["lr"], beta1=beta1, beta2=beta2,
                       weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                       grad_scale=None, found_inf=None)


def policy(h: Hyper, actor: Actor, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, raw = actor(obs)
    return mean, D.policy_std(raw, h.min_std)


def q_of(h: Hyper, critic: Critic, obs: torch.Tensor, action: torch.Tensor
         ) -> tuple[torch.Tensor, torch.Tensor]:
    out, z = critic(obs, action)
    return q_value(out, h.value_kind, h.v_min, h.v_max, h.num_bins), z


def clip_by_global_norm_(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale ``grads`` in place by min(1, max_norm / ‖g‖) with ‖g‖ their global L2 norm;
    returns ‖g‖ before clipping (a device tensor, no host sync).

    The same rule as ``optax.clip_by_global_norm``. ``torch.nn.utils.clip_grad_norm_`` divides by
    ‖g‖ + 1e-6 instead: a relative change of up to 1e-6 / max_norm in every clipped gradient,
    which the float64 layer-3 parity test resolves as a real difference between the ports.
    ``clamp(max_norm / ‖g‖, max=1)`` equals ``where(‖g‖ < max_norm, 1, max_norm / ‖g‖)`` bit for
    bit (a correctly rounded quotient of a larger by a smaller positive number is ≥ 1; 0, inf
    and nan map alike) in one op instead of three."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / norm, max=1.0))
    return norm


def _step(params: list[nn.Parameter], grads: list[torch.Tensor], opt: torch.optim.Adam,
          max_norm: float) -> torch.Tensor:
    """``grads`` (of ``params``) averaged over the torchrun ranks (a no-op in one process),
    global-norm clip, then the Adam step; returns the pre-clip norm of the averaged gradient
    (a device tensor)."""
    average_gradients_(grads)
    norm = clip_by_global_norm_(grads, max_norm)
    adam_step_(opt, params, grads)
    return norm


def _clip_and_step(loss: torch.Tensor, params: list[nn.Parameter], opt: torch.optim.Adam,
                   max_norm: float) -> torch.Tensor:
    """:func:`_step` with the gradients of ``loss`` with respect to ``params``
    (``torch.autograd.grad``: nothing is accumulated in ``.grad``; a parameter the loss does
    not reach is not stepped, as ``opt.step()`` skips a ``None`` gradient)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    if any(g is None for g in grads):  # a parameter the loss does not use: Adam skips it
        params, grads = [p for p, g in zip(params, grads) if g is not None], \
            [g for g in grads if g is not None]
    return _step(params, list(grads), opt, max_norm)


def critic_forward(h: Hyper, critic: Critic, mb: dict) -> tuple[torch.Tensor, dict]:
    """The critic loss (eq. 7 plus the auxiliary loss) on the minibatch ``mb``: (loss, info with
    ``value_loss`` and ``aux_loss``); differentiable in the critic's parameters. The part of the
    critic step that ``run.torch_compile`` compiles (:func:`compiled_forwards`)."""
    out, z = critic(mb["obs"], mb["action"])
    pred_z, pred_r = critic.predict(z)
    return critic_loss(out, mb["target"], pred_z, mb["next_emb"], pred_r, mb["reward"],
                       kind=h.value_kind, v_min=h.v_min, v_max=h.v_max, num_bins=h.num_bins,
                       sigma=h.sigma, aux_mult=h.aux_mult, target_probs=mb.get("target_probs"))


def critic_update(h: Hyper, state: AgentState, mb: dict,
                  forward: Callable[[Hyper, Critic, dict], tuple] | None = None
                  ) -> tuple[AgentState, dict]:
    """One critic step on ``mb``: the loss by ``forward`` (default :func:`critic_forward`;
    :func:`compiled_forwards` gives its compiled twin), its gradients, clip and Adam."""
    loss, info = (forward or critic_forward)(h, state.critic, mb)
    grad_norm = _clip_and_step(loss, state.critic_params, state.critic_opt, h.max_grad_norm)
    info = {"train/critic_loss": loss.detach(), "train/value_loss": info["value_loss"].detach(),
            "train/aux_loss": info["aux_loss"].detach(), "train/critic_grad_norm": grad_norm}
    return state, info


def actor_noise_shape(h: Hyper, batch: int) -> tuple[int, ...]:
    """Shape of the actor-sample noise: (score_samples, B, A) for ``actor.gradient=score``,
    else (B, A)."""
    if h.actor_gradient == "score":
        return (h.score_samples, batch, h.action_dim)
    return (batch, h.action_dim)


def actor_noise(h: Hyper, generator: torch.Generator, batch: int,
                kl_generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard-normal draws for one actor step: the reparameterised actor sample (B, A) —
    (score_samples, B, A) for the score estimator — from ``generator`` and the k KL samples
    (k, B, A) from ``kl_generator`` (its own stream; the trainer passes :class:`Streams`'
    ``actor`` and ``kl``)."""
    kl_generator = kl_generator if kl_generator is not None else generator
    device = device if device is not None else generator.device
    noise = torch.randn(actor_noise_shape(h, batch), generator=generator, device=device)
    kl_noise = torch.randn((h.kl_samples, batch, h.action_dim), generator=kl_generator,
                           device=device)
    return noise, kl_noise


def _actor_objective(h: Hyper, critic: Critic, mean: torch.Tensor, std: torch.Tensor,
                     obs: torch.Tensor, noise: torch.Tensor, kl: torch.Tensor,
                     old_mean: torch.Tensor, old_std: torch.Tensor, alpha: torch.Tensor,
                     beta: torch.Tensor, mb: dict | None
                     ) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """The actor loss of ``h.actor_gradient`` for the policy (mean, std) at ``obs``:
    (loss, info, log-probs of the entropy estimate)."""
    action, pre = D.tanh_gaussian_sample(mean, std, noise)
    log_prob = D.tanh_gaussian_log_prob(mean, std, pre)  # reparameterised: the entropy term
    if h.actor_gradient == "pathwise":
        q, _ = q_of(h, critic, obs, action)
        loss, info = actor_loss(q, log_prob, kl, alpha, beta, h.kl_target, h.kl_mode)
    elif h.actor_gradient == "score":
        loss, info = E.score_objective(h, lambda o, a: q_of(h, critic, o, a)[0], mean,
                                       std, obs, noise, action, pre, log_prob, kl, alpha, beta)
    elif h.actor_gradient == "ppo":
        loss, info = E.ppo_objective(h, mean, std, old_mean, old_std, mb, log_prob, kl, alpha,
                                     beta)
    else:
        raise ValueError(f"unknown actor gradient {h.actor_gradient!r}")
    return loss, info, log_prob


def actor_forward(h: Hyper, actor: Actor, critic: Critic, obs: torch.Tensor,
                  noise: torch.Tensor, kl_noise: torch.Tensor, old_mean: torch.Tensor,
                  old_std: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                  mb: dict | None) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
    """The actor objective of ``h.actor_gradient`` for the policy at ``obs``, against the
    behaviour policy's (``old_mean``, ``old_std``) there and the (frozen) ``critic``: (loss,
    info, log-probs of the entropy estimate, per-state KL estimate); differentiable in the
    actor's parameters. The part of the actor step that ``run.torch_compile`` compiles
    (:func:`compiled_forwards`)."""
    mean, std = policy(h, actor, obs)
    kl = D.kl_estimate(old_mean, old_std, mean, std, kl_noise)
    loss, info, log_prob = _actor_objective(h, critic, mean, std, obs, noise, kl, old_mean,
                                            old_std, alpha, beta, mb)
    return loss, info, log_prob, kl


def actor_update(h: Hyper, state: AgentState, behaviour: Actor, obs: torch.Tensor,
                 noise: torch.Tensor, kl_noise: torch.Tensor,
                 mb: dict | None = None, forward: Callable[..., tuple] | None = None
                 ) -> tuple[AgentState, dict]:
    """Actor step on the current critic, then the α/β step (log α and log β then projected onto
    [``h.log_alpha_min``, ∞) and [``h.log_beta_min``, ∞): ``loss.alpha_min``, faded by
    ``loss.alpha_min_fade_steps`` (the iteration read from the optimiser's step count), and
    ``loss.beta_min``). The noise is passed in (see :func:`actor_noise`) so that the update is
    a deterministic function of its inputs — the parity suite feeds the same noise to every
    port. ``mb`` (the minibatch) is read by the ppo estimator (``pre_action``, ``advantage``)
    and for the behaviour policy's outputs at ``obs`` (``old_mean``, ``old_std``: the
    rollout's, see :class:`Transition`) where it holds them; otherwise ``behaviour`` is
    evaluated here. ``forward``: the objective (default :func:`actor_forward`;
    :func:`compiled_forwards` gives its compiled twin)."""
    logs = state.logs
    alpha = torch.exp(logs.detach()[0])
    beta = torch.exp(logs.detach()[1])
    if mb is not None and "old_mean" in mb:
        old_mean, old_std = mb["old_mean"], mb["old_std"]
    else:
        with torch.no_grad():
            old_mean, old_std = policy(h, behaviour, obs)

    critic_params = state.critic_params
    for p in critic_params:  # a fixed function here: no weight gradients recorded
        p.requires_grad_(False)
    try:
        loss, info, log_prob, kl = (forward or actor_forward)(
            h, state.actor, state.critic, obs, noise, kl_noise, old_mean, old_std, alpha, beta,
            mb)
    finally:
        for p in critic_params:
            p.requires_grad_(True)
    grad_norm = _clip_and_step(loss, state.actor_params, state.actor_opt, h.max_grad_norm)

    entropy = D.entropy_estimate(log_prob.detach())
    kl = kl.detach()
    # ∂ multiplier_loss in closed form (bit for bit autograd's; see multiplier_grad)
    m_grad = multiplier_grad(alpha, beta, entropy, kl, h.entropy_target, h.kl_target,
                             h.kl_mode)
    _step([logs], [m_grad], state.mult_opt, h.multiplier_max_grad_norm)
    with torch.no_grad():  # loss.alpha_min / loss.beta_min (no-ops for the default −inf)
        floor = h.log_alpha_min
        if h.alpha_min_fade_iterations > 0:  # loss.alpha_min_fade_steps
            done = state.mult_opt.state[logs]["step"] - 1  # multiplier steps before this one
            floor = faded_log_floor(h.log_alpha_min,
                                    torch.div(done, h.num_epochs * h.num_minibatches,
                                              rounding_mode="floor"),
                                    h.alpha_min_fade_iterations).to(logs.dtype)
        logs[0] = project_log_multiplier(logs[0], floor)
        logs[1] = project_log_multiplier(logs[1], h.log_beta_min)

    out = {"train/actor_loss": loss.detach(), "train/actor_grad_norm": grad_norm,
           "train/kl": info["kl_mean"], "train/kl_max": info["kl_max"],
           "train/kl_violation_frac": info["kl_violation_frac"],
           "train/entropy": info["entropy_mean"]}
    if h.actor_gradient == "ppo":
        out.update({"train/clip_frac": info["clip_frac"], "train/ratio": info["ratio_mean"]})
    else:
        out["train/q"] = info["q_mean"].detach()
    out.update({"train/alpha": alpha, "train/beta": beta})
    return state, out


class LossForwards(NamedTuple):
    """The differentiable forward passes of a minibatch step, called as :func:`critic_forward`
    and :func:`actor_forward` are; their outputs go to ``torch.autograd.grad`` (the gradient
    clip, the Adam steps, the multiplier step and the projections run eagerly around them)."""

    critic: Callable[..., tuple]
    actor: Callable[..., tuple]


EAGER_FORWARDS = LossForwards(critic_forward, actor_forward)
"""The default: both forward passes op by op (eager PyTorch)."""


def compiled_forwards() -> LossForwards:
    """``run.torch_compile``: :func:`critic_forward` and :func:`actor_forward` under
    ``torch.compile`` (TorchDynamo + inductor; on CPU generated C++, built with the system's
    compiler). AOTAutograd compiles each one's backward too, so ``torch.autograd.grad`` of the
    loss runs a compiled graph; the numbers differ from eager by float rounding only (fused
    elementwise kernels, another summation order). Static shapes (``dynamic=False``): the
    minibatch shapes never change within a run, so each function compiles once, in the first
    iteration (``reppo_torch.train.compile_count`` counts the compilations). The update is
    dispatch-bound at the presets' sizes (hundreds of small ops per minibatch step); fusing
    them cuts the update's CPU time by ~1.3× at the cpu preset (docs/performance.md)."""
    return LossForwards(torch.compile(critic_forward, dynamic=False),
                        torch.compile(actor_forward, dynamic=False))


def minibatch_step(h: Hyper, state: AgentState, behaviour: Actor, mb: dict,
                   noise: torch.Tensor, kl_noise: torch.Tensor,
                   forwards: LossForwards | None = None) -> tuple[AgentState, dict]:
    """One minibatch of Algorithm 1: critic step, then actor and α/β step on the updated critic.

    ``mb`` holds ``obs`` (normalised), ``action``, ``reward``, ``target``, ``next_emb``,
    optionally ``target_probs`` (the HL-Gauss histogram of ``target``; else the critic loss
    builds it), ``old_mean``/``old_std`` (π_θ' at ``obs``; else ``behaviour`` is run) and, for
    ``actor.gradient=ppo``, ``pre_action``, ``advantage``, ``value_target`` (the state-value
    network then steps between critic and actor); the actor noise is explicit (see
    :func:`actor_noise`). This is the unit the parity suite's layer 3 runs in every port.
    ``forwards``: the loss forward passes (default :data:`EAGER_FORWARDS`; or
    :func:`compiled_forwards`).
    Mutates ``state`` in place and returns it with the metrics (0-dim device tensors)."""
    forwards = forwards or EAGER_FORWARDS
    state, c_info = critic_update(h, state, mb, forwards.critic)
    if h.actor_gradient == "ppo":
        state, v_info = E.value_update(h, state, mb)
        c_info = {**c_info, **v_info}
    state, a_info = actor_update(h, state, behaviour, mb["obs"], noise, kl_noise, mb,
                                 forwards.actor)
    return state, {**c_info, **a_info}


@dataclass
class Carry:
    """Everything one iteration threads through: agent, current raw obs, random streams, the
    behaviour-policy module the snapshot is copied into (the env itself is stateful), and which
    part of the global batch this process holds (``reppo_torch.distributed.Shard``)."""

    agent: AgentState
    obs: torch.Tensor
    streams: Streams
    behaviour: Actor
    shard: Shard = SINGLE


def snapshot(agent: AgentState, behaviour: Actor | None = None) -> Actor:
    """θ' ← θ: copy the actor's parameters into ``behaviour`` (a fresh frozen copy if None)."""
    if behaviour is None:
        behaviour = copy.deepcopy(agent.actor).requires_grad_(False)
    with torch.no_grad():
        for b, p in zip(behaviour.parameters(), agent.actor.parameters()):
            b.copy_(p)
    return behaviour


def _norm(h: Hyper, stats: RunningStats, obs: torch.Tensor) -> torch.Tensor:
    return normalize(obs, stats) if h.normalize_obs else obs


@torch.no_grad()
def rollout(h: Hyper, env, carry: Carry, noise: tuple | None = None
            ) -> tuple[Carry, Transition, dict]:
    """Collect num_steps × num_envs transitions with the behaviour policy θ' = carry.behaviour.

    Statistics are updated with every new observation before it is normalised, so x_{t+1} is
    normalised identically as a bootstrap input at step t and as the policy input at step t+1.
    ``noise``: optional ``(action, bootstrap)`` standard normals (T, N, A) used instead of the
    streams' draws (the parity suite's layer 4 feeds the same noise to every port).
    """
    behaviour, critic = carry.behaviour, carry.agent.critic
    stats, obs, streams, shard = carry.agent.obs_stats, carry.obs, carry.streams, carry.shard
    steps: list[tuple] = []
    for t in range(h.num_steps):
        x = _norm(h, stats, obs)
        mean, std = policy(h, behaviour, x)
        eps = shard.randn(mean.shape, streams.action, mean.device) if noise is None \
            else noise[0][t]
        action, pre = D.tanh_gaussian_sample(mean, std, eps)
        out = env.step(action)
        if h.normalize_obs:
            stats = shard.running_stats_update(stats, out.obs)
        x_next = _norm(h, stats, out.final_obs)
        n_mean, n_std = policy(h, behaviour, x_next)
        eps = shard.randn(n_mean.shape, streams.bootstrap, n_mean.device) if noise is None \
            else noise[1][t]
        a_next, pre_next = D.tanh_gaussian_sample(n_mean, n_std, eps)
        next_log_prob = D.tanh_gaussian_log_prob(n_mean, n_std, pre_next)
        next_value, next_emb = q_of(h, critic, x_next, a_next)
        success = out.info.get("success")
        row = (x, action, out.reward, out.terminated, out.truncated, next_value,
               next_log_prob, next_emb, out.terminated | out.truncated,
               out.info["episode_return"],
               success if success is not None else torch.zeros_like(out.terminated))
        if h.actor_gradient == "ppo":
            row += E.ppo_transition_fields(carry.agent, x, x_next, pre)
        steps.append(row + (mean, std))
        obs = out.obs
    cols = [torch.stack(c) for c in zip(*steps)]
    batch = Transition(*cols[:8], *(cols[11:-2] or (None,) * 3), *cols[-2:])
    episodes = {"done": cols[8], "return": cols[9]}
    if "success" in out.info:
        episodes["success"] = cols[10]
    carry.agent.obs_stats = stats
    carry.obs = obs
    return carry, batch, episodes


@torch.no_grad()
def compute_targets(h: Hyper, agent: AgentState, batch: Transition) -> torch.Tensor:
    """Soft TD(λ) targets, once per iteration, with α at rollout time."""
    alpha = torch.exp(agent.log_alpha)
    r = soft_rewards(batch.reward, batch.next_log_prob, batch.terminated, alpha, h.gamma)
    return soft_td_lambda(r, batch.next_value, batch.terminated, batch.truncated, h.gamma, h.lam)


def update(h: Hyper, agent: AgentState, behaviour: Actor, batch: Transition,
           targets: torch.Tensor, streams: Streams, shard: Shard = SINGLE,
           extras: dict | None = None, noise: dict | None = None,
           forwards: LossForwards | None = None) -> tuple[AgentState, dict]:
    """num_epochs × num_minibatches of (critic step, [value step,] actor step, multiplier step).

    ``extras``: further per-transition tensors (T, N, ...) for the minibatches (the ppo
    estimator's ``reppo_torch.estimators.compute_advantages``). Returns the agent and metrics
    averaged over every minibatch of the iteration, the maximum for
    ``spec.backend.ITERATION_MAX_METRICS`` (0-dim device tensors, reduced on the device: no host
    sync here). ``shard``: the part of the global batch this process holds — under torchrun each
    rank updates on its part of every minibatch with the matching slice of the global noise
    (``reppo_torch.distributed``); one process: unchanged. ``noise``: optional explicit draws
    instead of the streams' — ``perm`` (E, n), ``actor`` (E, M, …), ``kl`` (E, M, k, B, A);
    the parity suite's layer 4 (one process). ``forwards``: see :func:`minibatch_step`."""
    n = h.num_envs * h.num_steps
    data = {"obs": batch.obs, "action": batch.action, "reward": batch.reward,
            "target": targets, "next_emb": batch.next_emb, **(extras or {})}
    if h.value_kind == "hlgauss":  # hist(G) of the fixed targets: once, not once per minibatch
        data["target_probs"] = hlgauss_target(targets, h.v_min, h.v_max, h.num_bins, h.sigma)
    if batch.old_mean is not None:
        data.update(old_mean=batch.old_mean, old_std=batch.old_std)
    data = {k: shard.flatten(v) for k, v in data.items()}
    size = n // h.num_minibatches
    device = batch.obs.device
    names: list[str] | None = None
    total = None
    for e in range(h.num_epochs):
        perm = shard.permutation(n, h.num_minibatches, streams.shuffle, device) \
            if noise is None else noise["perm"][e]
        # the epoch's minibatches as views of the shuffled batch (one split per key)
        blocks = {k: torch.index_select(v, 0, perm).split(size) for k, v in data.items()}
        for i in range(h.num_minibatches):
            mb = {k: v[i] for k, v in blocks.items()}
            if noise is None:
                eps, kl_eps = actor_noise(h, streams.actor, shard.global_count(size), streams.kl,
                                          device)
                # the batch axis: 0 for (B, A), 1 for the score estimator's (k, B, A)
                eps, kl_eps = shard.take(eps, eps.dim() - 2), shard.take(kl_eps, 1)
            else:
                eps, kl_eps = noise["actor"][e, i], noise["kl"][e, i]
            agent, info = minibatch_step(h, agent, behaviour, mb, eps, kl_eps, forwards)
            values = [v if v.dtype == torch.float32 else v.to(torch.float32)
                      for v in info.values()]
            if total is None:
                names, total = list(info), [v.clone() for v in values]
                maxed = [i for i, k in enumerate(names) if k in ITERATION_MAX_METRICS]
                summed = [i for i in range(len(names)) if i not in maxed]
                summed_total = [total[i] for i in summed]  # updated in place below
            else:  # one in-place kernel for the summed metrics (the same float32 sums)
                torch._foreach_add_(summed_total, [values[i] for i in summed])
                for i in maxed:  # spec.backend.ITERATION_MAX_METRICS: the iteration's maximum
                    torch.maximum(total[i], values[i], out=total[i])
    n = float(h.num_epochs * h.num_minibatches)
    out = [t if i in maxed else t / n for i, t in enumerate(total)]
    return agent, dict(zip(names, out))


UPDATE_NOISE = ("perm", "actor", "kl")
"""The keys of an iteration's explicit noise that :func:`update` reads (the rest: the rollout's
``action`` and ``bootstrap``)."""


def make_iteration(h: Hyper, env, *, compile: bool = False):
    """The whole iteration as one function of the carry: snapshot θ', rollout, targets, update,
    and the rollout metrics (0-dim device tensors). ``iteration(carry, noise)`` takes optional
    explicit draws (a dict: ``action``, ``bootstrap`` for :func:`rollout`; ``perm``, ``actor``,
    ``kl`` for :func:`update`) — the parity suite's layer 4; training passes none.
    ``compile``: the update's loss forward passes under ``torch.compile``
    (:func:`compiled_forwards`; ``run.torch_compile``)."""
    forwards = compiled_forwards() if compile else EAGER_FORWARDS

    def iteration(carry: Carry, noise: dict | None = None) -> tuple[Carry, dict]:
        snapshot(carry.agent, carry.behaviour)  # θ' fixed for the whole iteration
        carry, batch, episodes = rollout(
            h, env, carry, None if noise is None else (noise["action"], noise["bootstrap"]))
        targets = compute_targets(h, carry.agent, batch)
        extras = (E.compute_advantages(h, carry.agent, batch) if h.actor_gradient == "ppo"
                  else None)
        agent, info = update(h, carry.agent, carry.behaviour, batch, targets, carry.streams,
                             carry.shard, extras,
                             None if noise is None else {k: noise[k] for k in UPDATE_NOISE},
                             forwards)
        with torch.no_grad():
            done = episodes["done"].to(torch.float32)
            n_done = torch.sum(done)
            info = {**info,
                    "rollout/reward": torch.mean(batch.reward),
                    "rollout/target": torch.mean(targets),
                    "rollout/value": torch.mean(batch.next_value),
                    "rollout/episodes": n_done,
                    "rollout/episode_return": (torch.sum(done * episodes["return"])
                                               / torch.clamp(n_done, min=1.0)),
                    }
            if extras is not None:
                info["rollout/state_value"] = torch.mean(batch.state_value)
            if "success" in episodes:  # suites with a success signal (ManiSkill)
                info["rollout/success_rate"] = (
                    torch.sum(done * episodes["success"].to(torch.float32))
                    / torch.clamp(n_done, min=1.0))
        carry.agent = agent
        return carry, info

    return iteration


EVAL_ACTION_STREAM = "torch/eval_action"
"""An evaluation with seed ``s`` draws its action noise from a generator seeded with
``stream_int(s, this)``: a stream apart from the env reset's (which uses ``s`` itself)."""


def make_evaluate(h: Hyper, env, num_steps: int, *, eval_policy: str):
    """``run.eval_policy`` on fresh episodes: 'mode' plays tanh(μ), 'sample' tanh(μ + σ·ξ) with
    fresh ξ each step (see :data:`EVAL_ACTION_STREAM`; the reset uses the seed itself, so both
    policies start from the same states); returns each env's first episode return, length and
    success flag (None where the suite has no success signal). Observation statistics are
    frozen (passed in, never updated)."""
    sample = is_sampled_eval(eval_policy)

    @torch.no_grad()
    def evaluate(actor: Actor, stats: RunningStats, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        obs = env.reset(seed)
        ret = torch.zeros((env.num_envs,), dtype=torch.float32, device=obs.device)
        length = torch.zeros_like(ret)
        alive = torch.ones_like(ret)
        success = None
        if sample:
            gen = torch.Generator(device=obs.device)
            gen.manual_seed(stream_int(seed, EVAL_ACTION_STREAM, 63))
        for _ in range(num_steps):
            mean, std = policy(h, actor, _norm(h, stats, obs))
            if sample:
                noise = torch.randn(mean.shape, generator=gen, device=mean.device,
                                    dtype=mean.dtype)
                action = D.tanh_gaussian_sample(mean, std, noise)[0]
            else:
                action = D.deterministic_action(mean)
            out = env.step(action)
            ret = ret + alive * out.reward
            length = length + alive
            ended = alive * (out.terminated | out.truncated).to(alive.dtype)
            if "success" in out.info:
                success = (torch.zeros_like(ret) if success is None else success) \
                    + ended * out.info["success"].to(alive.dtype)
            alive = alive - ended
            obs = out.obs
        return ret, length, success

    return evaluate


def stats_to(stats: RunningStats, device: torch.device | str) -> RunningStats:
    """Observation statistics on ``device`` (mean/var float32, count float64)."""
    return RunningStats(stats.mean.to(device, torch.float32), stats.var.to(device, torch.float32),
                        stats.count.to(device, torch.float64))

