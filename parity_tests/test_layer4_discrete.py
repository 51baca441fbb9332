"""Layer 4 for the discrete trainer (D-REPPO, ``reppo_jax.discrete``): its rollout, targets
and whole iterations against ``spec.reference.rollout.collect_discrete_rollout``.

The torch port has no discrete trainer (only the loss primitives), so the comparison is reference
vs JAX: on the scripted environment (terminations and truncations at generated positions) with
explicit Gumbel noise for the categorical behaviour actions and explicit shuffles,

* every batch field (the closed-form bootstrap Σ_j π_θ'(a_j|x′)Q(x′, a_j) and −H[π_θ'(·|x′)] at
  the true final observation), the episodes, the statistics, the carried observation and the
  soft TD(λ) targets agree with the reference;
* after each of three iterations, the ``rollout/*`` metrics, the statistics and the observation
  agree with the reference run on the agent's own pre-iteration parameters, and the agent state
  (every canonical leaf, its Adam moments, log α / log β, the ``train/*`` metrics) agrees with a
  replay of the port's layer-3 unit ``minibatch_step`` over the reference's minibatches (the
  reference batch and targets, flattened time-major, permuted by the given shuffles, cut into
  consecutive blocks, θ′ the pre-iteration actor) — under the layer-4 state tolerance of
  ``test_layer4_iteration.check_states``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity_tests import strategies as S
from parity_tests.backends import BACKENDS
from parity_tests.scripted_env import FLAG_PATTERNS, JaxScriptedEnv, NumpyScriptedEnv, draw_script
from parity_tests.test_layer4_iteration import (
    EPOCHS, GAMMA, HIDDEN, ITERATIONS, KL_TARGET, LAM, MINIBATCHES, MIN_STD, N_ENVS, NO_SHRINK,
    NORM, OBS, SIGMA, STEPS, V_MAX, V_MIN, BINS, _jax_readout, check_rollout,
    check_rollout_metrics, check_states, check_stats_obs,
)
from spec.backend import ITERATION_MAX_METRICS
from spec.hyper import Hyper
from spec.params import init_params, param_layout
from spec.reference import discrete as RDd
from spec.reference import normalization as RNorm
from spec.reference import rollout as RR

NUM_ACTIONS = 4
CFG = RR.PolicyConfig(norm=NORM, min_std=MIN_STD, value_kind="hlgauss", v_min=V_MIN,
                      v_max=V_MAX, num_bins=BINS, normalize_obs=True)


def _require_jax():
    if not BACKENDS["jax"].available():
        pytest.skip(BACKENDS["jax"].skip_reason())


def make_hyper() -> Hyper:
    return Hyper(obs_dim=OBS, action_dim=NUM_ACTIONS, num_envs=N_ENVS, num_steps=STEPS,
                 num_minibatches=MINIBATCHES, num_epochs=EPOCHS, gamma=GAMMA, lam=LAM,
                 v_min=V_MIN, v_max=V_MAX, num_bins=BINS, sigma=SIGMA, value_kind="hlgauss",
                 aux_mult=1.0, min_std=MIN_STD, kl_target=KL_TARGET, kl_mode="full",
                 kl_samples=1, entropy_target=RDd.discrete_entropy_target(NUM_ACTIONS),
                 normalize_obs=True, actor_lr=3e-4, critic_lr=1e-3, multiplier_lr=3e-3,
                 max_grad_norm=0.5, multiplier_max_grad_norm=0.7)


def make_params(seed: int, dtype) -> dict[str, np.ndarray]:
    layout = param_layout(OBS, NUM_ACTIONS, critic_hidden=HIDDEN, actor_hidden=HIDDEN,
                          num_encoder_layers=2, num_head_layers=2, num_pred_layers=2,
                          actor_layers=3, num_bins=BINS, critic_norm=NORM, actor_norm=NORM,
                          action_space="discrete")
    rng = np.random.default_rng(seed)
    p = init_params(rng, layout, v_min=V_MIN, v_max=V_MAX, sigma=SIGMA, logit_prior_scale=40.0,
                    alpha_init=1.0, beta_init=1.0, num_bins=BINS, dtype=np.float64)
    out = {}
    for k, v in p.items():
        if not k.startswith(("actor/", "critic/")):
            continue
        if k.endswith("/bias") or k.endswith("/norm/scale") or k.startswith("actor/"):
            v = v + 0.3 * rng.standard_normal(v.shape)  # a non-uniform behaviour policy
        out[k] = np.asarray(v, dtype)
    return out


@functools.lru_cache(maxsize=None)
def _fns():
    import jax

    from reppo_jax import agent as A
    from reppo_jax.discrete import agent as DA
    from reppo_jax.discrete import networks as DN

    h = make_hyper()
    nets = DN.Nets(DN.CategoricalActor(NUM_ACTIONS, HIDDEN, 3, NORM),
                   DN.DiscreteCritic(HIDDEN, 2, 2, 2, NUM_ACTIONS, BINS, NORM))
    env = JaxScriptedEnv(N_ENVS, OBS, NUM_ACTIONS, 1000, discrete=True)
    opts = A.optimizers(h)
    rollout = jax.jit(lambda carry, g: DA.rollout(nets, h, env, carry, g))
    targets = jax.jit(lambda agent, batch: DA.compute_targets(h, agent, batch))
    step = jax.jit(functools.partial(DA.minibatch_step, nets, h, opts))
    return h, env, opts, rollout, targets, step, jax.jit(DA.make_iteration(nets, h, env))


def _carry(params, logs, stats, script, dtype):
    import jax
    import jax.numpy as jnp

    from reppo_jax import agent as A
    from reppo_jax.networks import nest

    _, env, (a_opt, c_opt, m_opt), *_ = _fns()
    ja, jc = nest(params, "actor"), nest(params, "critic")
    lg = jnp.asarray(np.asarray(logs, dtype))
    agent = A.AgentState(ja, jc, lg[0], lg[1], a_opt.init(ja), c_opt.init(jc), m_opt.init(lg),
                         BACKENDS["jax"].array(stats))
    env_state, obs = env.initial_state(script)
    return A.Carry(agent, env_state, obs, jax.random.key(0))


def _inputs(seed, pattern, steps, dtype):
    script = draw_script(seed, pattern, steps, N_ENVS, OBS).cast(dtype)
    rng = np.random.default_rng(seed + 1)
    return script, rng


def _gumbel(rng, dtype):
    return rng.gumbel(size=(STEPS, N_ENVS, NUM_ACTIONS)).astype(dtype)


@settings(max_examples=max(3, settings.default.max_examples // 5),  # ci: 5 + 1, thorough: 100
          phases=NO_SHRINK)
@given(seed=st.integers(0, 2**31 - 1), pattern=st.sampled_from(FLAG_PATTERNS),
       log_alpha=S.log_multipliers(1e-3, 10.0))
@example(seed=0, pattern="mixed", log_alpha=0.5)
def test_discrete_rollout_and_targets_match_reference(dtype, seed, pattern, log_alpha):
    _require_jax()
    params = make_params(seed, dtype)
    script, rng = _inputs(seed, pattern, STEPS, dtype)
    gumbel = _gumbel(rng, dtype)
    logs = np.asarray([log_alpha, 0.0], dtype)
    earlier = draw_script(seed + 2, pattern, 1, 8, OBS).cast(dtype).init_obs
    stats = RNorm.running_stats_update(RNorm.running_stats_init(OBS, dtype), earlier)
    ref_batch, ref_ep, ref_stats, ref_obs = RR.collect_discrete_rollout(
        params, params, stats, script.init_obs, NumpyScriptedEnv(script, discrete=True).step,
        gumbel, CFG)
    ref_tgt = RR.iteration_targets(ref_batch, float(logs[0]), GAMMA, LAM)
    _, _, _, rollout, targets, _, _ = _fns()
    with BACKENDS["jax"].precision(dtype):
        import jax.numpy as jnp

        carry = _carry(params, logs, stats, script, dtype)
        carry, batch, episodes = rollout(carry, jnp.asarray(gumbel))
        tgt = {"target": np.asarray(targets(carry.agent, batch))}
        fields = {f: np.asarray(getattr(batch, f)) for f in ref_batch}
        out = (fields, {k: np.asarray(v) for k, v in episodes.items()},
               BACKENDS["jax"].numpy(carry.agent.obs_stats), np.asarray(carry.obs), tgt)
    check_rollout("jax discrete", *out, (ref_batch, ref_ep, ref_stats, ref_obs,
                                         {"target": ref_tgt}), dtype)
    np.testing.assert_array_equal(fields["action"], ref_batch["action"])


def _replay(pre_carry, batch, targets, perms):
    """The port's ``minibatch_step`` over the reference's minibatches, from the pre-iteration
    agent (θ′ = its actor); returns the agent and the metrics averaged over the minibatches
    (maximised for ``spec.backend.ITERATION_MAX_METRICS``)."""
    import jax.numpy as jnp

    *_, step, _ = _fns()
    data = {"obs": batch["obs"], "action": batch["action"], "reward": batch["reward"],
            "target": targets, "next_emb": batch["next_emb"]}
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in data.items()}
    agent, behaviour, infos = pre_carry.agent, pre_carry.agent.actor, []
    for perm in perms:
        for idx in np.split(perm, MINIBATCHES):
            agent, info = step(agent, behaviour, {k: jnp.asarray(v[idx]) for k, v in flat.items()})
            infos.append({k: float(v) for k, v in info.items()})
    return agent, {k: float((np.max if k in ITERATION_MAX_METRICS else np.mean)(
        [i[k] for i in infos])) for k in infos[0]}


@settings(max_examples=max(1, settings.default.max_examples // 25),  # ci: 1 + 2, thorough: 20
          phases=NO_SHRINK)
@given(seed=st.integers(0, 2**31 - 1), pattern=st.sampled_from(FLAG_PATTERNS),
       log_alpha=S.log_multipliers(1e-2, 1.0),
       log_beta=S.log_multipliers(1e-2, 1.0))
@example(seed=1, pattern="sparse", log_alpha=-1.0, log_beta=-2.0)  # long episodes, resets
@example(seed=2, pattern="none", log_alpha=-3.0, log_beta=-0.5)  # no episode ends: 0 episodes
def test_discrete_iterations_match_reference(dtype, seed, pattern, log_alpha, log_beta):
    _require_jax()
    import jax.numpy as jnp

    params = make_params(seed, dtype)
    script, rng = _inputs(seed, pattern, ITERATIONS * STEPS, dtype)
    logs = np.asarray([log_alpha, log_beta], dtype)
    stats = RNorm.running_stats_init(OBS, dtype)
    *_, iteration = _fns()
    env = NumpyScriptedEnv(script, discrete=True)
    ref_stats, ref_obs = stats, script.init_obs
    with BACKENDS["jax"].precision(dtype):
        carry = _carry(params, logs, stats, script, dtype)
        for it in range(1, ITERATIONS + 1):
            gumbel = _gumbel(rng, dtype)
            perms = np.stack([rng.permutation(N_ENVS * STEPS) for _ in range(EPOCHS)])
            pre, pre_out = carry, _jax_readout(carry)
            carry, info = iteration(carry, {"gumbel": jnp.asarray(gumbel),
                                            "perm": jnp.asarray(perms.astype(np.int32))})
            out = _jax_readout(carry, info)
            p, lg = pre_out["params"], pre_out["logs"]
            batch, ep, ref_stats, ref_obs = RR.collect_discrete_rollout(
                p, p, ref_stats, ref_obs, env.step, gumbel, CFG)
            tgt = RR.iteration_targets(batch, float(lg[0]), GAMMA, LAM)
            check_rollout_metrics("jax discrete", out["info"], RR.rollout_metrics(batch, tgt, ep),
                                  batch, tgt, dtype, it)
            check_stats_obs(f"iteration {it} jax discrete", out["stats"], out["obs"], ref_stats,
                            ref_obs, dtype)
            agent, replay_info = _replay(pre, batch, tgt, perms)
            replay = _jax_readout(carry._replace(agent=agent._replace(
                obs_stats=carry.agent.obs_stats)), replay_info)
            check_states(replay, {**out, "info": {k: v for k, v in out["info"].items()
                                                  if k.startswith("train/")}},
                         params, logs, np.dtype(dtype), it, ports="discrete iteration vs replay",
                         tag="discrete-it")
