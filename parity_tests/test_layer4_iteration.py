"""Layer 4: the rollout, the targets and whole iterations, numpy reference vs JAX vs PyTorch.

Everything between the simulator and the update: behaviour-policy sampling, the order of the
observation-statistics update and the normalisation, the bootstrap at the TRUE final observation
(not the post-reset one) with its own action a′ ~ π_θ' and log-probability, the soft rewards with
α at rollout time, the λ-returns, the episode bookkeeping, the snapshot θ′, the shuffles and the
rollout metrics. Both ports run on the same scripted environment (``parity_tests.scripted_env``:
terminations and truncations at generated positions — mixed, all-terminal, all-truncated, both
at once, none at all, sparse resets among long episodes) from identical canonical parameters,
observation statistics and explicit noise (the ports' ``noise`` seams of ``rollout``, ``update``
and ``make_iteration``'s iteration):

* ``test_rollout_and_targets_match_reference``: every batch field, the episode bookkeeping, the
  updated statistics, the carried observation and the targets of each port against
  ``spec.reference.rollout`` (layer-2 ULPs: each field passes through at most two network
  forwards and a normalisation);
* ``test_iterations_agree``: three consecutive iterations; after each, every canonical leaf,
  its Adam moments, log α / log β, the statistics and the carried observation agree between the
  ports (the layer-3 gradient tolerance propagated through all the Adam steps so far), the
  ``train/*`` metrics agree between the ports and the ``rollout/*`` metrics, statistics and
  observation of each port agree with the reference run on that port's own parameters.
  The largest error after each iteration is recorded as ``iteration<i>/…`` (multi-iteration
  drift).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from parity_tests import strategies as S
from parity_tests.backends import BACKENDS
from parity_tests.scripted_env import (
    FLAG_PATTERNS, JaxScriptedEnv, NumpyScriptedEnv, TorchScriptedEnv, draw_script,
)
from parity_tests.test_layer3_update import adam_ratio_bound, check_metrics
from parity_tests.tolerance import ULPS, assert_close, eps, note_worst
from spec.hyper import Hyper
from spec.params import init_params, param_layout
from spec.reference import normalization as RNorm
from spec.reference import rollout as RR

OBS, ACT, HIDDEN, BINS, K = 3, 2, 16, 11, 4
N_ENVS, STEPS, EPOCHS, MINIBATCHES, ITERATIONS = 4, 5, 2, 2, 3
MB = N_ENVS * STEPS // MINIBATCHES
V_MIN, V_MAX = -10.0, 10.0
SIGMA = 0.75 * (V_MAX - V_MIN) / (BINS - 1)
GAMMA, LAM, MIN_STD, KL_TARGET = 0.9, 0.8, 0.1, 0.1
B1, B2 = 0.9, 0.999
ACTOR_LR, CRITIC_LR, MULT_LR = 3e-4, 1e-3, 3e-3
NORM = "rms"
FIELDS = ("obs", "action", "reward", "terminated", "truncated", "next_value", "next_log_prob",
          "next_emb")
PPO_FIELDS = ("pre_action", "state_value", "next_state_value")  # actor.gradient=ppo
VALUE_LAYERS = 3
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
"""An example costs seconds: report the first failing one as drawn instead of shrinking it
(minutes), which also keeps the mutation check's kills fast."""
CFG = RR.PolicyConfig(norm=NORM, min_std=MIN_STD, value_kind="hlgauss", v_min=V_MIN,
                      v_max=V_MAX, num_bins=BINS, normalize_obs=True)


def _require_both():
    for name in ("jax", "torch"):
        if not BACKENDS[name].available():
            pytest.skip(BACKENDS[name].skip_reason())


def make_hyper(gradient: str = "pathwise") -> Hyper:
    # kl_mode "full": no switch, so no example can sit on a discontinuity of the loss
    return Hyper(obs_dim=OBS, action_dim=ACT, num_envs=N_ENVS, num_steps=STEPS,
                 num_minibatches=MINIBATCHES, num_epochs=EPOCHS, gamma=GAMMA, lam=LAM,
                 v_min=V_MIN, v_max=V_MAX, num_bins=BINS, sigma=SIGMA, value_kind="hlgauss",
                 aux_mult=1.0, min_std=MIN_STD, kl_target=KL_TARGET, kl_mode="full",
                 kl_samples=K, entropy_target=-0.5 * ACT, normalize_obs=True,
                 actor_lr=ACTOR_LR, critic_lr=CRITIC_LR, multiplier_lr=MULT_LR,
                 max_grad_norm=0.5, multiplier_max_grad_norm=0.7, actor_gradient=gradient)


def make_params(seed: int, dtype, behaviour_scale: float, gradient: str = "pathwise"):
    """(canonical actor/critic[/value] params, a different actor θ′) in ``dtype``."""
    layout = param_layout(OBS, ACT, critic_hidden=HIDDEN, actor_hidden=HIDDEN,
                          num_encoder_layers=2, num_head_layers=2, num_pred_layers=2,
                          actor_layers=3, num_bins=BINS, critic_norm=NORM, actor_norm=NORM,
                          value_kind="hlgauss",
                          value_layers=VALUE_LAYERS if gradient == "ppo" else 0)
    rng = np.random.default_rng(seed)
    p = init_params(rng, layout, v_min=V_MIN, v_max=V_MAX, sigma=SIGMA, logit_prior_scale=40.0,
                    alpha_init=1.0, beta_init=1.0, dtype=np.float64)
    for k, v in p.items():
        if k.endswith("/bias") or k.endswith("/norm/scale"):
            p[k] = v + 0.3 * rng.standard_normal(v.shape)
    p = {k: np.asarray(v, dtype) for k, v in p.items()
         if k.startswith(("actor/", "critic/", "value/"))}
    other = {k: (v + behaviour_scale * rng.standard_normal(v.shape)).astype(dtype)
             for k, v in p.items() if k.startswith("actor/")}
    return p, other


def make_noise(rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
    """One iteration's explicit draws: rollout (action, bootstrap), shuffles, actor and KL."""
    n = N_ENVS * STEPS
    return {"action": rng.standard_normal((STEPS, N_ENVS, ACT)).astype(dtype),
            "bootstrap": rng.standard_normal((STEPS, N_ENVS, ACT)).astype(dtype),
            "perm": np.stack([rng.permutation(n) for _ in range(EPOCHS)]).astype(np.int64),
            "actor": rng.standard_normal((EPOCHS, MINIBATCHES, MB, ACT)).astype(dtype),
            "kl": rng.standard_normal((EPOCHS, MINIBATCHES, K, MB, ACT)).astype(dtype)}


def _actor(p):
    return {k: v for k, v in p.items() if k.startswith("actor/")}


def _critic(p):
    return {k: v for k, v in p.items() if k.startswith("critic/")}


def _value(p):
    return {k: v for k, v in p.items() if k.startswith("value/")} or None


# ---- JAX ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _jax_fns(gradient: str = "pathwise"):
    import jax

    from reppo_jax import agent as A
    from reppo_jax import estimators as E
    from reppo_jax.networks import Actor, Critic, Value

    h = make_hyper(gradient)
    nets = A.Nets(Actor(ACT, HIDDEN, 3, NORM), Critic(HIDDEN, 2, 2, 2, BINS, NORM),
                  Value(HIDDEN, VALUE_LAYERS, NORM) if gradient == "ppo" else None)
    env = JaxScriptedEnv(N_ENVS, OBS, ACT, 1000)
    rollout = jax.jit(lambda carry, noise: A.rollout(nets, h, env, carry, noise))

    def targets(agent, batch):
        out = {"target": A.compute_targets(h, agent, batch)}
        if gradient == "ppo":
            out.update(E.compute_advantages(h, agent, batch))
        return out

    return h, env, rollout, jax.jit(targets), jax.jit(A.make_iteration(nets, h, env))


def _jax_carry(actor, critic, logs, stats, script, dtype, value=None):
    import jax
    import jax.numpy as jnp

    from reppo_jax import agent as A
    from reppo_jax.networks import nest

    h, env, *_ = _jax_fns("pathwise" if value is None else "ppo")
    a_opt, c_opt, m_opt, *v_opt = A.optimizers(h)
    ja, jc = nest(actor, "actor"), nest(critic, "critic")
    jv = None if value is None else nest(value, "value")
    lg = jnp.asarray(np.asarray(logs, dtype))
    agent = A.AgentState(ja, jc, lg[0], lg[1], a_opt.init(ja), c_opt.init(jc), m_opt.init(lg),
                         BACKENDS["jax"].array(stats), jv,
                         None if value is None else v_opt[0].init(jv))
    env_state, obs = env.initial_state(script)
    return A.Carry(agent, env_state, obs, jax.random.key(0))


def _jax_readout(carry, info=None):
    from reppo_jax.networks import flatten
    from parity_tests.test_layer3_update import _jax_adam

    ag = carry.agent
    out = {"params": {**flatten(ag.actor, "actor"), **flatten(ag.critic, "critic")},
           "logs": np.asarray([ag.log_alpha, ag.log_beta]), "moments": {},
           "stats": BACKENDS["jax"].numpy(ag.obs_stats), "obs": np.asarray(carry.obs),
           "env_return": np.asarray(carry.env_state["ret"]),
           "env_length": np.asarray(carry.env_state["len"])}
    for prefix, opt_state in (("actor", ag.actor_opt), ("critic", ag.critic_opt)):
        adam = _jax_adam(opt_state)
        mu, nu = flatten(adam.mu, prefix), flatten(adam.nu, prefix)
        out["moments"].update({k: (mu[k], nu[k]) for k in mu})
    adam = _jax_adam(ag.mult_opt)
    out["moments"]["multipliers"] = (np.asarray(adam.mu), np.asarray(adam.nu))
    if info is not None:
        out["info"] = {k: float(v) for k, v in info.items()}
    return out


def jax_rollout(actor, critic, logs, stats, script, noise, dtype, value=None):
    import jax.numpy as jnp

    _, _, rollout, targets, _ = _jax_fns("pathwise" if value is None else "ppo")
    with BACKENDS["jax"].precision(dtype):
        carry = _jax_carry(actor, critic, logs, stats, script, dtype, value)
        carry, batch, episodes = rollout(carry, (jnp.asarray(noise["action"]),
                                                 jnp.asarray(noise["bootstrap"])))
        tgt = targets(carry.agent, batch)
        names = FIELDS + (PPO_FIELDS if value is not None else ())
        fields = {f: np.asarray(getattr(batch, f)) for f in names}
        return (fields, {k: np.asarray(v) for k, v in episodes.items()},
                BACKENDS["jax"].numpy(carry.agent.obs_stats), np.asarray(carry.obs),
                {k: np.asarray(v) for k, v in tgt.items()})


def jax_iterations(params, logs, stats, script, noises, dtype):
    import jax.numpy as jnp

    *_, iteration = _jax_fns()
    out = []
    with BACKENDS["jax"].precision(dtype):
        carry = _jax_carry(_actor(params), _critic(params), logs, stats, script, dtype)
        for noise in noises:
            jn = {k: jnp.asarray(v.astype(np.int32) if k == "perm" else v)
                  for k, v in noise.items()}
            carry, info = iteration(carry, jn)
            out.append(_jax_readout(carry, info))
    return out


# ---- torch -------------------------------------------------------------------------------------

def _torch_carry(actor, critic, behaviour, logs, stats, script, dtype, value=None):
    import torch

    from reppo_torch import agent as A
    from reppo_torch.networks import Actor, Critic, Value

    h = make_hyper("pathwise" if value is None else "ppo")
    tdt = BACKENDS["torch"].dtype(dtype)
    ta = Actor.from_canonical(actor, NORM, dtype=tdt)
    tc = Critic.from_canonical(critic, NORM, OBS, dtype=tdt)
    beh = Actor.from_canonical(behaviour, NORM, dtype=tdt).requires_grad_(False)
    lg = torch.nn.Parameter(torch.tensor(np.asarray(logs, dtype)))
    tv = None if value is None else Value.from_canonical(value, NORM, dtype=tdt)
    a_opt, c_opt, m_opt, *v_opt = A.optimizers(h, ta, tc, lg, tv)
    agent = A.AgentState(ta, tc, lg, a_opt, c_opt, m_opt, BACKENDS["torch"].array(stats), tv,
                         v_opt[0] if v_opt else None)
    env = TorchScriptedEnv(script, OBS, ACT, 1000)
    carry = A.Carry(agent, env.obs, A.Streams.from_seed(0, torch.device("cpu")), beh)
    return h, env, carry


def _torch_readout(carry, env, info=None):
    from reppo_torch.networks import named_canonical_parameters, to_canonical

    ag = carry.agent
    out = {"params": to_canonical({"actor": ag.actor, "critic": ag.critic}),
           "logs": ag.logs.detach().numpy().copy(), "moments": {},
           "stats": BACKENDS["torch"].numpy(ag.obs_stats), "obs": carry.obs.numpy().copy(),
           "env_return": env.ret.numpy().copy(), "env_length": env.len.numpy().copy()}
    for opt, mods in ((ag.actor_opt, {"actor": ag.actor}), (ag.critic_opt, {"critic": ag.critic})):
        for name, p, transposed in named_canonical_parameters(mods):
            m, v = opt.state[p]["exp_avg"].detach(), opt.state[p]["exp_avg_sq"].detach()
            if transposed:
                m, v = m.T, v.T
            out["moments"][name] = (m.numpy().copy(), v.numpy().copy())
    st_ = ag.mult_opt.state[ag.logs]
    out["moments"]["multipliers"] = (st_["exp_avg"].numpy().copy(),
                                     st_["exp_avg_sq"].numpy().copy())
    if info is not None:
        out["info"] = {k: float(v) for k, v in info.items()}
    return out


def torch_rollout(actor, critic, behaviour, logs, stats, script, noise, dtype, value=None):
    """The torch rollout with θ′ = ``behaviour`` and a *different* current actor ``actor``: the
    rollout must read the snapshot only."""
    import torch

    from reppo_torch import agent as A
    from reppo_torch import estimators as E

    h, env, carry = _torch_carry(actor, critic, behaviour, logs, stats, script, dtype, value)
    carry, batch, episodes = A.rollout(h, env, carry, (torch.from_numpy(noise["action"]),
                                                       torch.from_numpy(noise["bootstrap"])))
    tgt = {"target": A.compute_targets(h, carry.agent, batch)}
    if value is not None:
        tgt.update(E.compute_advantages(h, carry.agent, batch))
    tgt = {k: v.numpy() for k, v in tgt.items()}
    names = FIELDS + (PPO_FIELDS if value is not None else ())
    fields = {f: getattr(batch, f).numpy() for f in names}
    return (fields, {k: v.numpy() for k, v in episodes.items()},
            BACKENDS["torch"].numpy(carry.agent.obs_stats), carry.obs.numpy(), tgt)


def torch_iterations(params, stale_behaviour, logs, stats, script, noises, dtype):
    """Iterations from a carry whose θ′ buffer holds a stale actor (the iteration's snapshot
    must overwrite it before the rollout)."""
    import torch

    from reppo_torch import agent as A

    h, env, carry = _torch_carry(_actor(params), _critic(params), stale_behaviour, logs, stats,
                                 script, dtype)
    iteration = A.make_iteration(h, env)
    out = []
    for noise in noises:
        carry, info = iteration(carry, {k: torch.from_numpy(v) for k, v in noise.items()})
        out.append(_torch_readout(carry, env, info))
    return out


# ---- comparisons ---------------------------------------------------------------------------------

def check_rollout(port, fields, episodes, stats, obs, tgt, ref, dtype):
    """Every batch field, the episode bookkeeping, the statistics, the carried observation and
    the targets of one port against the reference (``ref`` = (batch, episodes, stats, obs,
    targets))."""
    r_batch, r_ep, r_stats, r_obs, r_tgt = ref
    expected = FIELDS + (PPO_FIELDS if "state_value" in r_batch else ())
    assert sorted(fields) == sorted(expected), f"{port}: batch fields {sorted(fields)}"
    for f in fields:
        x = np.asarray(r_batch[f])
        scale = float(np.max(np.abs(x.astype(np.float64)))) + 1.0 if x.dtype.kind == "f" else 0.0
        assert_close(fields[f], x.astype(fields[f].dtype) if x.dtype.kind != "f" else x, dtype,
                     "rollout", scale, f"{port} batch.{f}")
    assert_close(episodes["done"], r_ep["done"], dtype, "rollout", 0.0, f"{port} episodes.done")
    assert_close(episodes["return"], r_ep["return"], dtype, "rollout",
                 float(np.max(np.abs(r_ep["return"]))) + 1.0, f"{port} episodes.return")
    if "length" in episodes:
        np.testing.assert_array_equal(episodes["length"], r_ep["length"],
                                      err_msg=f"{port} episodes.length")
    check_stats_obs(port, stats, obs, r_stats, r_obs, dtype)
    # λ-returns / GAE: T·(|r̃| + |V|) as in layer 1 (the soft reward's terms |r| + |log π|)
    r = np.abs(r_batch["reward"]).astype(np.float64) + np.abs(r_batch["next_log_prob"])
    assert sorted(tgt) == sorted(r_tgt), f"{port}: targets {sorted(tgt)} vs {sorted(r_tgt)}"
    for k, x in r_tgt.items():
        if k == "pre_action":  # the executed actions' pre-squash samples, as handed to the update
            scale = float(np.max(np.abs(x))) + 1.0
        elif k == "target":
            scale = STEPS * float(np.max(r) + np.max(np.abs(r_batch["next_value"])))
        else:
            v = np.abs(r_batch["state_value"]) + np.abs(r_batch["next_state_value"])
            scale = STEPS * float(np.max(r) + np.max(v))
        assert_close(tgt[k], x, dtype, "rollout", scale, f"{port} {k}")


def check_stats_obs(port, stats, obs, r_stats, r_obs, dtype):
    scale = float(np.max(np.abs(r_stats.mean))) + float(np.max(r_stats.var))
    assert_close(stats.mean, r_stats.mean, dtype, "rollout", scale, f"{port} stats.mean")
    assert_close(stats.var, r_stats.var, dtype, "rollout", scale, f"{port} stats.var")
    assert stats.count == pytest.approx(r_stats.count, rel=4 * eps(dtype)), f"{port} stats.count"
    np.testing.assert_array_equal(obs, r_obs, err_msg=f"{port} carried obs")


def check_rollout_metrics(port, info, ref_metrics, ref_batch, ref_targets, dtype, it):
    scales = {"rollout/reward": float(np.max(np.abs(ref_batch["reward"]))),
              "rollout/target": float(np.max(np.abs(ref_targets))),
              "rollout/value": V_MAX, "rollout/episodes": 0.0,
              "rollout/episode_return": 0.0}
    for k, x in ref_metrics.items():
        scale = scales[k] if k != "rollout/episode_return" else abs(x) + 10.0
        if k == "rollout/episodes":
            assert info[k] == x, f"iteration {it} {port} {k}: {info[k]} != reference {x}"
            continue
        assert_close(np.float64(info[k]), np.float64(x), dtype, "rollout", scale,
                     f"iteration {it} {port} {k}", check_dtype=False)


def check_states(jo, to, params0, logs0, dtype, it, ports="torch vs jax", tag="iteration"):
    """Post-iteration agent states after ``it`` iterations (S Adam steps): ``to`` against ``jo``
    (the two ports; or an iteration against its replay).

    v_S = (1 − β₂) Σ_k β₂^{S−k} g_k² bounds every past gradient elementwise,
    |g_k| ≤ ĝ = √(v_S / ((1 − β₂) β₂^{S−1})); with the layer-3 gradient tolerance
    T_g = ULPS·ε·(ĝ + max ĝ of the leaf) the moments may differ by T_m = (1 − β₁^S)·T_g and
    T_v = (1 − β₂^S)(2ĝT_g + T_g²), and each of the S steps' directions by
    ``adam_ratio_bound`` (times lr), plus the rounding of θ + Δ."""
    s = it * EPOCHS * MINIBATCHES
    tiny = float(np.finfo(dtype).tiny)
    lrs = {"actor": ACTOR_LR, "critic": CRITIC_LR, "multipliers": MULT_LR}
    info = jo["info"]
    for k in sorted(jo["params"]) + ["multipliers"]:
        m, v = (np.asarray(x, np.float64) for x in jo["moments"][k])
        gb = np.sqrt(v / ((1.0 - B2) * B2 ** (s - 1)))
        extra = 0.0
        if k == "multipliers":  # the multiplier gradients' own terms (cf. layer 3)
            amax = np.exp(np.maximum(np.asarray(logs0, np.float64), jo["logs"].astype(np.float64)))
            extra = amax * np.array([abs(info["train/entropy"]) + ACT + 10.0,
                                     abs(info["train/kl"]) + KL_TARGET + 10.0])
        tg = ULPS["network_grad"] * eps(dtype) * (gb + float(np.max(gb)) + extra)
        tm, tv = (1.0 - B1 ** s) * tg, (1.0 - B2 ** s) * (2.0 * gb * tg + tg * tg)
        for what, a, x, tol in (("adam_m", to["moments"][k][0], m, tm),
                                ("adam_v", to["moments"][k][1], v, tv)):
            err = np.abs(np.asarray(a, np.float64) - x)
            note_worst(f"{tag}{it}/{what}", dtype, float(np.max(err / (tol + tiny))),
                       float(np.max(err)))
            assert not (err > tol + tiny).any(), (
                f"iteration {it} {ports}: Adam {what} of {k} beyond the propagated tolerance; "
                f"max |diff| {err.max():.3e}, worst ratio {np.max(err / (tol + tiny)):.3e}")
        if k == "multipliers":
            a_par, x_par, theta0 = to["logs"], jo["logs"], np.asarray(logs0)
        else:
            a_par, x_par, theta0 = to["params"][k], jo["params"][k], params0[k]
        a_par, x_par, theta0 = (np.asarray(z, np.float64) for z in (a_par, x_par, theta0))
        lr = lrs[k.split("/")[0]]
        tol = s * lr * adam_ratio_bound(m, v, tm, tv, s) \
            + ULPS["value"] * eps(dtype) * s * (np.abs(x_par) + np.abs(theta0))
        err = np.abs(a_par - x_par)
        note_worst(f"{tag}{it}/params", dtype, float(np.max(err / (tol + tiny))),
                   float(np.max(err)))
        assert not (err > tol + tiny).any(), (
            f"iteration {it} {ports}: parameter {k} beyond the propagated tolerance; max |diff| "
            f"{err.max():.3e} ({err.max() / lr:.3e} lr)")
    check_stats_obs(f"iteration {it} {ports}", to["stats"], to["obs"], jo["stats"],
                    jo["obs"], dtype)
    assert_close(to["env_return"], jo["env_return"], dtype, "rollout",
                 float(np.max(np.abs(jo["env_return"]))) + 1.0, f"iteration {it} env returns")
    np.testing.assert_array_equal(to["env_length"], jo["env_length"])
    # the torch trainer accumulates the per-minibatch metrics in float32 (one device vector
    # per iteration), so they are compared at float32's tolerance in both dtypes
    train = {k: v for k, v in jo["info"].items() if k.startswith("train/")}
    check_metrics(train, {k: v for k, v in to["info"].items() if k.startswith("train/")},
                  np.dtype(np.float32), it)


# ---- the tests -----------------------------------------------------------------------------------

@settings(max_examples=max(3, settings.default.max_examples // 5),  # ci: 5 + 2, thorough: 100
          phases=NO_SHRINK)
@given(seed=st.integers(0, 2**31 - 1), pattern=st.sampled_from(FLAG_PATTERNS),
       log_alpha=S.log_multipliers(1e-3, 10.0),
       gradient=st.sampled_from(("pathwise", "ppo")))
@example(seed=0, pattern="mixed", log_alpha=0.5, gradient="pathwise")  # resets of both kinds
@example(seed=3, pattern="mixed", log_alpha=-1.0, gradient="ppo")
def test_rollout_and_targets_match_reference(dtype, seed, pattern, log_alpha, gradient):
    """One rollout of each port against ``spec.reference.rollout``: every batch field, the
    episodes, the statistics (updated before the normalisation of the next observation), the
    carried observation and the targets (α at rollout time); with ``actor.gradient=ppo`` also
    the pre-squash actions, V(x_t), V(x′_{t+1}), the GAE advantages and the value targets."""
    _require_both()
    params, behaviour = make_params(seed, dtype, 0.5, gradient)
    script = draw_script(seed, pattern, STEPS, N_ENVS, OBS).cast(dtype)
    rng = np.random.default_rng(seed + 1)
    noise = make_noise(rng, dtype)
    logs = np.asarray([log_alpha, 0.0], dtype)
    # statistics of an earlier batch, so the first normalisation is not the identity
    earlier = draw_script(seed + 2, pattern, 1, 8, OBS).cast(dtype).init_obs
    stats = RNorm.running_stats_update(RNorm.running_stats_init(OBS, dtype), earlier)
    value = _value(params)
    ref_batch, ref_ep, ref_stats, ref_obs = RR.collect_rollout(
        behaviour, _critic(params), stats, script.init_obs, NumpyScriptedEnv(script).step,
        noise["action"], noise["bootstrap"], CFG, value)
    ref_tgt = {"target": RR.iteration_targets(ref_batch, float(logs[0]), GAMMA, LAM)}
    if value is not None:
        ref_tgt.update(RR.iteration_advantages(ref_batch, float(logs[0]), GAMMA, LAM),
                       pre_action=ref_batch["pre_action"])
    ref = (ref_batch, ref_ep, ref_stats, ref_obs, ref_tgt)
    # JAX: the rollout's behaviour policy is the agent's actor
    check_rollout("jax", *jax_rollout(behaviour, _critic(params), logs, stats, script, noise,
                                      dtype, value), ref, dtype)
    # torch: θ′ is carry.behaviour, the agent's (different) actor must not be read
    check_rollout("torch", *torch_rollout(_actor(params), _critic(params), behaviour, logs, stats,
                                          script, noise, dtype, value), ref, dtype)


@settings(max_examples=max(1, settings.default.max_examples // 25),  # ci: 1 + 2, thorough: 20
          phases=NO_SHRINK)
@given(seed=st.integers(0, 2**31 - 1), pattern=st.sampled_from(FLAG_PATTERNS),
       log_alpha=S.log_multipliers(1e-2, 1.0),
       log_beta=S.log_multipliers(1e-2, 1.0))
@example(seed=1, pattern="sparse", log_alpha=-1.0, log_beta=-2.0)  # long episodes, resets
@example(seed=2, pattern="none", log_alpha=-3.0, log_beta=-0.5)  # no episode ends: 0 episodes
def test_iterations_agree(dtype, seed, pattern, log_alpha, log_beta):
    """Three whole iterations (snapshot, rollout, targets, two epochs of two minibatches, metrics)
    in both ports; after each: the ports' agent states and metrics agree, and each port's
    ``rollout/*`` metrics, statistics and observation agree with the reference."""
    _require_both()
    params, stale = make_params(seed, dtype, 0.5)
    script = draw_script(seed, pattern, ITERATIONS * STEPS, N_ENVS, OBS).cast(dtype)
    rng = np.random.default_rng(seed + 1)
    noises = [make_noise(rng, dtype) for _ in range(ITERATIONS)]
    logs = np.asarray([log_alpha, log_beta], dtype)
    stats = RNorm.running_stats_init(OBS, dtype)
    jax_out = jax_iterations(params, logs, stats, script, noises, dtype)
    torch_out = torch_iterations(params, stale, logs, stats, script, noises, dtype)
    for port, outs in (("jax", jax_out), ("torch", torch_out)):
        env = NumpyScriptedEnv(script)
        p, lg, st_, obs = params, logs, stats, script.init_obs
        for it, (out, noise) in enumerate(zip(outs, noises), start=1):
            batch, ep, st_, obs = RR.collect_rollout(_actor(p), _critic(p), st_, obs, env.step,
                                                     noise["action"], noise["bootstrap"], CFG)
            tgt = RR.iteration_targets(batch, float(lg[0]), GAMMA, LAM)
            check_rollout_metrics(port, out["info"], RR.rollout_metrics(batch, tgt, ep), batch,
                                  tgt, dtype, it)
            check_stats_obs(f"iteration {it} {port}", out["stats"], out["obs"], st_, obs, dtype)
            # the next iteration's reference starts from this port's own updated agent
            p, lg = out["params"], out["logs"]
    for it, (jo, to) in enumerate(zip(jax_out, torch_out), start=1):
        assert sorted(jo["info"]) == sorted(to["info"]), "the ports log different metrics"
        check_states(jo, to, params, logs, np.dtype(dtype), it)


def _jax_production_noise(key):
    """The draws the JAX iteration makes from its carry key (``reppo_jax.agent``'s schedule:
    per rollout step split(key, 3) → action, bootstrap; then split(key) → the update's key,
    split over epochs, each split into a permutation key and the minibatches' keys, each split
    into the actor and KL keys), as the explicit-noise dict of one iteration."""
    import jax

    action, bootstrap = [], []
    for _ in range(STEPS):
        key, k_act, k_boot = jax.random.split(key, 3)
        action.append(jax.random.normal(k_act, (N_ENVS, ACT)))
        bootstrap.append(jax.random.normal(k_boot, (N_ENVS, ACT)))
    _, k_upd = jax.random.split(key)
    perm, actor, kl = [], [], []
    for k_epoch in jax.random.split(k_upd, EPOCHS):
        k_perm, k_mb = jax.random.split(k_epoch)
        perm.append(jax.random.permutation(k_perm, N_ENVS * STEPS))
        a_e, kl_e = [], []
        for k in jax.random.split(k_mb, MINIBATCHES):
            k_a, k_kl = jax.random.split(k)
            a_e.append(jax.random.normal(k_a, (MB, ACT)))
            kl_e.append(jax.random.normal(k_kl, (K, MB, ACT)))
        actor.append(np.stack(a_e))
        kl.append(np.stack(kl_e))
    return {"action": np.stack(action), "bootstrap": np.stack(bootstrap),
            "perm": np.stack(perm).astype(np.int64), "actor": np.stack(actor),
            "kl": np.stack(kl)}


def _torch_production_noise(seed):
    """The draws the torch iteration makes from ``Streams.from_seed(seed)``: per rollout step
    one (N, A) normal from the action stream and one from the bootstrap stream; per epoch one
    permutation from the shuffle stream; per minibatch the actor stream's (B, A) and the KL
    stream's (k, B, A) normals."""
    import torch

    from reppo_torch.agent import Streams

    s = Streams.from_seed(seed, torch.device("cpu"))
    action = torch.stack([torch.randn((N_ENVS, ACT), generator=s.action) for _ in range(STEPS)])
    bootstrap = torch.stack([torch.randn((N_ENVS, ACT), generator=s.bootstrap)
                             for _ in range(STEPS)])
    perm, actor, kl = [], [], []
    for _ in range(EPOCHS):
        perm.append(torch.randperm(N_ENVS * STEPS, generator=s.shuffle))
        actor.append(torch.stack([torch.randn((MB, ACT), generator=s.actor)
                                  for _ in range(MINIBATCHES)]))
        kl.append(torch.stack([torch.randn((K, MB, ACT), generator=s.kl)
                               for _ in range(MINIBATCHES)]))
    return {"action": action.numpy(), "bootstrap": bootstrap.numpy(),
            "perm": torch.stack(perm).numpy(), "actor": torch.stack(actor).numpy(),
            "kl": torch.stack(kl).numpy()}


def test_production_draws_match_the_noise_seam():
    """Without explicit noise each port draws every random quantity from its own key / stream
    (executed action, bootstrap action, shuffles, actor and KL samples, in that schedule): an
    iteration without ``noise`` equals the iteration fed those draws explicitly. This pins the
    training path that layer 4's explicit noise bypasses (a reused key or a swapped stream
    changes the draws and fails here)."""
    _require_both()
    import jax

    from reppo_torch import agent as TA

    dtype = np.dtype(np.float32)
    params, stale = make_params(7, dtype, 0.5)
    script = draw_script(7, "mixed", STEPS, N_ENVS, OBS).cast(dtype)
    logs = np.asarray([-1.0, -1.0], dtype)
    stats = RNorm.running_stats_init(OBS, dtype)
    # JAX: carry key 0, as _jax_carry builds it
    noise = _jax_production_noise(jax.random.key(0))
    fed = jax_iterations(params, logs, stats, script, [noise], dtype)[0]
    *_, iteration = _jax_fns()
    carry, info = iteration(_jax_carry(_actor(params), _critic(params), logs, stats, script,
                                       dtype))
    drawn = _jax_readout(carry, info)
    _assert_same_state("jax", drawn, fed)
    # torch: streams seeded 0, as _torch_carry builds them
    fed = torch_iterations(params, stale, logs, stats, script, [_torch_production_noise(0)],
                           dtype)[0]
    h, env, tcarry = _torch_carry(_actor(params), _critic(params), stale, logs, stats, script,
                                  dtype)
    tcarry, tinfo = TA.make_iteration(h, env)(tcarry)
    _assert_same_state("torch", _torch_readout(tcarry, env, tinfo), fed)


def _assert_same_state(port, a, b):
    for k in b["params"]:
        np.testing.assert_allclose(a["params"][k], b["params"][k], rtol=1e-6, atol=1e-7,
                                   err_msg=f"{port} {k}: the drawn and the fed noise differ")
    np.testing.assert_allclose(a["logs"], b["logs"], rtol=1e-6, atol=1e-7)
    for k in ("rollout/reward", "rollout/target", "train/critic_loss", "train/actor_loss"):
        assert a["info"][k] == pytest.approx(b["info"][k], rel=1e-5, abs=1e-6), f"{port} {k}"
