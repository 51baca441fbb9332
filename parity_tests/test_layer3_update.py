"""Layer 3: one full REPPO update (critic step, actor step on the updated critic, α/β step),
JAX vs PyTorch.

From identical canonical parameters (``spec.params.init_params``, biases and norm scales
perturbed so every path matters), a behaviour actor θ' (the actor with a perturbed output layer,
so that the KL term and the clipped switch are exercised), fresh optimiser states, identical
minibatches (obs, action, reward, target, next_emb) and identical explicit noise (numpy arrays
fed to both ports), two consecutive ``minibatch_step`` calls in each port must give

* the same Adam moments (first and second) of every canonical leaf and of [log α, log β],
* the same parameters (every canonical leaf) and log α / log β,
* the same logged metrics (``train/kl_max``, the largest per-state KL̂, also against the
  float64 reference),

under the layer-3 tolerance of parity_tests/README.md: the gradient tolerance of layer 2,
propagated through the Adam update exactly (see :func:`adam_ratio_bound`). Adam divides by
√v̂ + ε, so a gradient that is pure rounding noise (|g| below its own tolerance) may legitimately
move a parameter by up to ±lr in either port; every other element is held to the propagated
bound, which is orders of magnitude tighter.

The same holds for the paper's §4.1 estimators (``actor.gradient=score``: k actions per state
through the learned Q; ``actor.gradient=ppo``: the clipped ratio on given GAE advantages, with
the state-value network's regression step and its Adam moments compared as well).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st

from parity_tests import strategies as S
from parity_tests.backends import BACKENDS
from parity_tests.tolerance import ULPS, assert_close, eps, note_worst
from spec.config import KL_MODES
from spec.hyper import Hyper
from spec.params import init_params, param_layout
from spec.reference import distributions as RD
from spec.reference import losses as RL
from spec.reference import networks as RN

OBS, ACT, HIDDEN, BINS, BATCH, K = 5, 2, 16, 11, 8, 4
K_SCORE, PPO_CLIP, VALUE_LAYERS = 3, 0.2, 3
V_MIN, V_MAX = -10.0, 10.0
SIGMA = 0.75 * (V_MAX - V_MIN) / (BINS - 1)
KL_TARGET = 0.1
B1, B2, ADAM_EPS = 0.9, 0.999, 1e-8
# distinct learning rates and clip norms, so a mix-up between the three optimisers shows
ACTOR_LR, CRITIC_LR, MULT_LR = 3e-4, 1e-3, 3e-3
MAX_GRAD_NORM, MULT_MAX_GRAD_NORM = 0.5, 0.7
NORM = "rms"
U_GRAD = ULPS["network_grad"]
U_VALUE = ULPS["value"]


def _require_both():
    for name in ("jax", "torch"):
        if not BACKENDS[name].available():
            pytest.skip(BACKENDS[name].skip_reason())


def make_hyper(kind: str, kl_mode: str, gradient: str = "pathwise",
               log_beta_min: float = -math.inf, log_alpha_min: float = -math.inf,
               entropy_target: float = -0.5 * ACT, alpha_fade: float = 0.0) -> Hyper:
    return Hyper(obs_dim=OBS, action_dim=ACT, num_envs=BATCH, num_steps=1, num_minibatches=1,
                 num_epochs=1, gamma=0.99, lam=0.95, v_min=V_MIN, v_max=V_MAX,
                 num_bins=BINS if kind == "hlgauss" else 1, sigma=SIGMA, value_kind=kind,
                 aux_mult=1.0, min_std=0.1, kl_target=KL_TARGET, kl_mode=kl_mode, kl_samples=K,
                 entropy_target=entropy_target, normalize_obs=True, actor_lr=ACTOR_LR,
                 critic_lr=CRITIC_LR, multiplier_lr=MULT_LR, max_grad_norm=MAX_GRAD_NORM,
                 multiplier_max_grad_norm=MULT_MAX_GRAD_NORM, actor_gradient=gradient,
                 score_samples=K_SCORE, ppo_clip=PPO_CLIP, log_beta_min=log_beta_min,
                 log_alpha_min=log_alpha_min, alpha_min_fade_iterations=alpha_fade)


def make_params(seed: int, kind: str, dtype, behaviour_scale: float, log_alpha: float,
                log_beta: float, gradient: str = "pathwise"):
    """(canonical params, behaviour actor params) in ``dtype`` (with the state-value network
    ``value/*`` for ``gradient="ppo"``)."""
    layout = param_layout(OBS, ACT, critic_hidden=HIDDEN, actor_hidden=HIDDEN,
                          num_encoder_layers=2, num_head_layers=2, num_pred_layers=2,
                          actor_layers=3, num_bins=BINS, critic_norm=NORM, actor_norm=NORM,
                          value_kind=kind, value_layers=VALUE_LAYERS if gradient == "ppo" else 0)
    rng = np.random.default_rng(seed)
    p = init_params(rng, layout, v_min=V_MIN, v_max=V_MAX, sigma=SIGMA, logit_prior_scale=40.0,
                    alpha_init=math.exp(log_alpha), beta_init=math.exp(log_beta),
                    dtype=np.float64)
    for k, v in p.items():
        if k.endswith("/bias") or k.endswith("/norm/scale"):
            p[k] = v + 0.3 * rng.standard_normal(v.shape)
    p = {k: np.asarray(v, dtype) for k, v in p.items()
         if k.startswith(("actor/", "critic/", "value/"))}
    last = RN.num_layers(p, "actor/layers") - 1
    b = {k: v for k, v in p.items() if k.startswith("actor/")}
    for leaf in ("kernel", "bias"):
        k = f"actor/layers/{last}/{leaf}"
        b[k] = (b[k] + behaviour_scale * rng.standard_normal(b[k].shape)).astype(dtype)
    return p, b


def _minibatch(data, dtype, gradient: str = "pathwise"):
    mb = {
        "obs": data.draw(S.arrays((BATCH, OBS), -3.0, 3.0)),
        "action": np.tanh(data.draw(S.arrays((BATCH, ACT), -3.0, 3.0))),
        "reward": data.draw(S.arrays((BATCH,), -1.0, 1.0)),
        "target": data.draw(S.arrays((BATCH,), 2 * V_MIN, 2 * V_MAX, edges=(V_MIN, V_MAX))),
        "next_emb": data.draw(S.arrays((BATCH, HIDDEN), -3.0, 3.0)),
    }
    if gradient == "ppo":
        mb["pre_action"] = data.draw(S.arrays((BATCH, ACT), -3.0, 3.0))
        mb["advantage"] = data.draw(S.arrays((BATCH,), -5.0, 5.0))
        mb["value_target"] = data.draw(S.arrays((BATCH,), 2 * V_MIN, 2 * V_MAX))
    noise_shape = (K_SCORE, BATCH, ACT) if gradient == "score" else (BATCH, ACT)
    noise = data.draw(S.arrays(noise_shape, -3.0, 3.0))
    kl_noise = data.draw(S.arrays((K, BATCH, ACT), -3.0, 3.0))
    return ({k: v.astype(dtype) for k, v in mb.items()}, noise.astype(dtype),
            kl_noise.astype(dtype))


def _reference_kl(actor_params, behaviour, obs, kl_noise):
    """Per-state KL̂ in float64 from the numpy reference (to keep clear of the switch)."""
    p = {k: np.asarray(v, np.float64) for k, v in actor_params.items()}
    b = {k: np.asarray(v, np.float64) for k, v in behaviour.items()}
    mean, raw = RN.actor_forward(p, obs.astype(np.float64), NORM)
    old_mean, old_raw = RN.actor_forward(b, obs.astype(np.float64), NORM)
    return RD.kl_estimate(old_mean, RD.policy_std(old_raw, 0.1), mean, RD.policy_std(raw, 0.1),
                          kl_noise.astype(np.float64))


def _reference_ratio(actor_params, behaviour, obs, pre_action):
    """Per-state importance ratio π_θ(a|x) / π_θ'(a|x) at the stored pre-squash actions, in
    float64 from the numpy reference (to keep clear of the clip kinks at 1 ± ε)."""
    p = {k: np.asarray(v, np.float64) for k, v in actor_params.items()}
    b = {k: np.asarray(v, np.float64) for k, v in behaviour.items()}
    mean, raw = RN.actor_forward(p, obs.astype(np.float64), NORM)
    old_mean, old_raw = RN.actor_forward(b, obs.astype(np.float64), NORM)
    u = pre_action.astype(np.float64)
    return np.exp(RD.tanh_gaussian_log_prob(mean, RD.policy_std(raw, 0.1), u)
                  - RD.tanh_gaussian_log_prob(old_mean, RD.policy_std(old_raw, 0.1), u))


# ---- JAX ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _jax_step(kind: str, kl_mode: str, gradient: str = "pathwise",
              log_beta_min: float = -math.inf, log_alpha_min: float = -math.inf,
              entropy_target: float = -0.5 * ACT, alpha_fade: float = 0.0):
    import jax

    from reppo_jax import agent as A
    from reppo_jax.networks import Actor, Critic, Value

    h = make_hyper(kind, kl_mode, gradient, log_beta_min, log_alpha_min, entropy_target,
                   alpha_fade)
    nets = A.Nets(Actor(ACT, HIDDEN, 3, NORM), Critic(HIDDEN, 2, 2, 2, h.num_bins, NORM),
                  Value(HIDDEN, VALUE_LAYERS, NORM) if gradient == "ppo" else None)
    opts = A.optimizers(h)
    return h, opts, jax.jit(functools.partial(A.minibatch_step, nets, h, opts))


def _jax_adam(opt_state):
    import jax
    import optax

    found = [s for s in jax.tree_util.tree_leaves(
        opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)]
    assert len(found) == 1
    return found[0]


def run_jax(kind, kl_mode, params, behaviour, logs, batches, dtype, gradient="pathwise",
            log_beta_min=-math.inf, log_alpha_min=-math.inf, entropy_target=-0.5 * ACT,
            alpha_fade=0.0):
    """Two minibatch steps; per step: (canonical params, logs, {name: (m, v)}, metrics)."""
    import jax.numpy as jnp

    from reppo_jax import agent as A
    from reppo_jax.networks import flatten, nest
    from reppo_jax.normalization import RunningStats

    h, (a_opt, c_opt, m_opt, *v_opt), step = _jax_step(kind, kl_mode, gradient, log_beta_min,
                                                       log_alpha_min, entropy_target, alpha_fade)
    jp = {k: jnp.asarray(v) for k, v in params.items()}
    actor, critic = nest(jp, "actor"), nest(jp, "critic")
    value = nest(jp, "value") if v_opt else None
    lg = jnp.asarray(np.asarray(logs, dtype))
    stats = RunningStats(jnp.zeros((OBS,), dtype), jnp.ones((OBS,), dtype), jnp.ones((), dtype))
    state = A.AgentState(actor, critic, lg[0], lg[1], a_opt.init(actor), c_opt.init(critic),
                         m_opt.init(lg), stats, value,
                         v_opt[0].init(value) if v_opt else None)
    beh = nest({k: jnp.asarray(v) for k, v in behaviour.items()}, "actor")
    out = []
    for mb, noise, kl_noise in batches:
        state, info = step(state, beh, {k: jnp.asarray(v) for k, v in mb.items()},
                           jnp.asarray(noise), jnp.asarray(kl_noise))
        flat = {**flatten(state.actor, "actor"), **flatten(state.critic, "critic")}
        groups = [("actor", state.actor_opt), ("critic", state.critic_opt)]
        if value is not None:
            flat.update(flatten(state.value, "value"))
            groups.append(("value", state.value_opt))
        moments = {}
        for prefix, opt_state in groups:
            adam = _jax_adam(opt_state)
            mu, nu = flatten(adam.mu, prefix), flatten(adam.nu, prefix)
            moments.update({k: (mu[k], nu[k]) for k in mu})
        adam = _jax_adam(state.mult_opt)
        moments["multipliers"] = (np.asarray(adam.mu), np.asarray(adam.nu))
        out.append((flat, np.asarray([state.log_alpha, state.log_beta]), moments,
                    {k: float(v) for k, v in info.items()}))
    return out


# ---- torch -------------------------------------------------------------------------------------

def run_torch(kind, kl_mode, params, behaviour, logs, batches, dtype, gradient="pathwise",
              log_beta_min=-math.inf, log_alpha_min=-math.inf, entropy_target=-0.5 * ACT,
              alpha_fade=0.0):
    import torch

    from reppo_torch import agent as A
    from reppo_torch.networks import (
        Actor, Critic, Value, named_canonical_parameters, to_canonical,
    )
    from reppo_torch.normalization import running_stats_init

    h = make_hyper(kind, kl_mode, gradient, log_beta_min, log_alpha_min, entropy_target,
                   alpha_fade)
    tdt = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    actor = Actor.from_canonical(params, NORM, dtype=tdt)
    critic = Critic.from_canonical(params, NORM, OBS, dtype=tdt)
    value = Value.from_canonical(params, NORM, dtype=tdt) if gradient == "ppo" else None
    beh = Actor.from_canonical(behaviour, NORM, dtype=tdt).requires_grad_(False)
    lg = torch.nn.Parameter(torch.tensor(np.asarray(logs, dtype)))
    a_opt, c_opt, m_opt, *v_opt = A.optimizers(h, actor, critic, lg, value)
    state = A.AgentState(actor, critic, lg, a_opt, c_opt, m_opt, running_stats_init(OBS, tdt),
                         value, v_opt[0] if v_opt else None)
    out = []
    for mb, noise, kl_noise in batches:
        state, info = A.minibatch_step(h, state, beh, {k: torch.from_numpy(v.copy())
                                                       for k, v in mb.items()},
                                       torch.from_numpy(noise.copy()),
                                       torch.from_numpy(kl_noise.copy()))
        modules = {"actor": state.actor, "critic": state.critic}
        groups = [(state.actor_opt, {"actor": state.actor}),
                  (state.critic_opt, {"critic": state.critic})]
        if value is not None:
            modules["value"] = state.value
            groups.append((state.value_opt, {"value": state.value}))
        flat = to_canonical(modules)
        moments = {}
        for opt, mods in groups:
            for name, p, transposed in named_canonical_parameters(mods):
                st_ = opt.state[p]
                m, v = st_["exp_avg"].detach(), st_["exp_avg_sq"].detach()
                if transposed:
                    m, v = m.T, v.T
                moments[name] = (m.numpy().copy(), v.numpy().copy())
        st_ = state.mult_opt.state[state.logs]
        moments["multipliers"] = (st_["exp_avg"].numpy().copy(), st_["exp_avg_sq"].numpy().copy())
        out.append((flat, state.logs.detach().numpy().copy(), moments,
                    {k: float(v) for k, v in info.items()}))
    return out


# ---- the tolerance, propagated through Adam ------------------------------------------------------

def adam_ratio_bound(m, v, tm, tv, t):
    """Bound on |r' − r| for Adam's step direction r = m̂ / (√v̂ + ε) when the moments may differ
    by |δm| ≤ tm, |δv| ≤ tv (m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ)).

    |δ√v̂| ≤ √|δv̂| always, so with s = √v̂ and s' ≥ max(s − √t̂v, 0):
        |r' − r| ≤ (t̂m (s + ε) + |m̂| √t̂v) / ((s + ε)(s' + ε)),
    capped by |r| + (|m̂| + t̂m)/(s' + ε) (the two directions' magnitudes). Where |m̂| ≫ t̂m this
    is ~t̂m/s + |m̂|√t̂v/s², tiny; where the gradient is rounding noise it allows a flip."""
    c1, c2 = 1.0 - B1 ** t, 1.0 - B2 ** t
    mh, tmh = np.abs(m) / c1, tm / c1
    s, tvh = np.sqrt(v / c2), tv / c2
    s_lo = np.maximum(s - np.sqrt(tvh), 0.0)
    bound = (tmh * (s + ADAM_EPS) + mh * np.sqrt(tvh)) / ((s + ADAM_EPS) * (s_lo + ADAM_EPS))
    cap = mh / (s + ADAM_EPS) + (mh + tmh) / (s_lo + ADAM_EPS)
    return np.minimum(bound, cap)


def _grad_tolerance(g, scale, dtype):
    return U_GRAD * eps(dtype) * (np.abs(g) + scale)


def check_step_sequence(jax_out, torch_out, params, logs, dtype, lrs, report=None,
                        entropy_scale=ACT + 10.0):
    """Compare moments, parameters and metrics step by step under the propagated tolerance;
    ``report`` (a dict) collects the largest |diff| / tolerance per kind of quantity;
    ``entropy_scale`` bounds |ε_H| plus the entropy's terms beside |Ĥ| (in dL/dlog α)."""
    report = {} if report is None else report

    def note(kind, err, tol):
        ratio = float(np.max(err / (tol + tiny)))
        report[kind] = max(report.get(kind, 0.0), ratio)
        note_worst(f"update/{kind}", dtype, ratio, float(np.max(err)))

    tiny = float(np.finfo(dtype).tiny)
    names = sorted(params)
    tm = {k: 0.0 for k in names + ["multipliers"]}
    tv = {k: 0.0 for k in names + ["multipliers"]}
    prev_m = {k: 0.0 for k in names + ["multipliers"]}
    dtheta = {k: 0.0 for k in names + ["multipliers"]}
    for t, ((jp, jl, jmom, jinfo), (tp, tl, tmom, tinfo)) in enumerate(
            zip(jax_out, torch_out), start=1):
        for k in names + ["multipliers"]:
            m, v = (np.asarray(x, np.float64) for x in jmom[k])
            g = (m - B1 * prev_m[k]) / (1.0 - B1)  # this step's clipped gradient (JAX)
            if k == "multipliers":
                # dL/dlog α = α·(Ĥ − ε_H), dL/dlog β = −β·(KL̂ − ε_KL): scale of the terms
                alpha, beta = math.exp(float(logs[0] if t == 1 else jax_out[t - 2][1][0])), \
                    math.exp(float(logs[1] if t == 1 else jax_out[t - 2][1][1]))
                scale = np.array([alpha * (abs(jinfo["train/entropy"]) + entropy_scale),
                                  beta * (abs(jinfo["train/kl"]) + KL_TARGET + 10.0)])
            else:
                scale = float(np.max(np.abs(g)))
            tg = _grad_tolerance(g, scale, dtype)
            tm[k] = B1 * tm[k] + (1.0 - B1) * tg
            tv[k] = B2 * tv[k] + (1.0 - B2) * (2.0 * np.abs(g) * tg + tg * tg)
            prev_m[k] = m
            tmk, tvk = tmom[k]
            for what, a, x, tol in (("m", tmk, m, tm[k]), ("v", tvk, v, tv[k])):
                err = np.abs(np.asarray(a, np.float64) - x)
                note(f"adam_{what}", err, tol)
                bad = err > tol + tiny
                assert not bad.any(), (
                    f"step {t} Adam {what} of {k}: {int(bad.sum())}/{bad.size} beyond the "
                    f"propagated gradient tolerance; max |diff| {err.max():.3e}, at the worst "
                    f"element torch {np.ravel(a)[np.argmax(err - tol)]!r} jax "
                    f"{np.ravel(x)[np.argmax(err - tol)]!r}")
            lr = lrs[k.split("/")[0]]
            dtheta[k] = dtheta[k] + lr * adam_ratio_bound(m, v, tm[k], tv[k], t)
            if k == "multipliers":
                a_par, x_par = np.asarray(tl, np.float64), np.asarray(jl, np.float64)
                theta0 = np.asarray(logs, np.float64)
            else:
                a_par, x_par = np.asarray(tp[k], np.float64), np.asarray(jp[k], np.float64)
                theta0 = np.asarray(params[k], np.float64)
            # the propagated update bound, plus the rounding of θ + Δ at each step
            tol = dtheta[k] + U_VALUE * eps(dtype) * t * (np.abs(x_par) + np.abs(theta0))
            err = np.abs(a_par - x_par)
            note("params", err, tol)
            report["params_max_diff_over_lr"] = max(report.get("params_max_diff_over_lr", 0.0),
                                                    float(err.max() / lr))
            bad = err > tol + tiny
            assert not bad.any(), (
                f"step {t} parameter {k}: {int(bad.sum())}/{bad.size} beyond the propagated "
                f"tolerance; max |diff| {err.max():.3e} (in units of lr: "
                f"{err.max() / lr:.3e}), worst tol {np.ravel(tol)[np.argmax(err - tol)]:.3e}")
        check_metrics(jinfo, tinfo, dtype, t)


METRIC_SCALES = {
    # magnitudes of the terms each metric is computed from (HL-Gauss CE over ≤ 11 bins with
    # logits ~40, squared errors of O(10) values, |Q| ≤ v_max, log-densities of O(10))
    "train/critic_loss": 100.0, "train/value_loss": 100.0, "train/aux_loss": 100.0,
    "train/actor_loss": V_MAX + 10.0, "train/kl": 10.0, "train/kl_max": 10.0,
    "train/entropy": 10.0,
    "train/q": V_MAX, "train/alpha": 0.0, "train/beta": 0.0, "train/kl_violation_frac": 0.0,
    # ppo: squared errors against targets in [2 v_min, 2 v_max]; ratios of O(1) densities
    "train/v_loss": (4 * V_MAX) ** 2, "train/clip_frac": 0.0, "train/ratio": 10.0,
}


def check_metrics(jinfo, tinfo, dtype, t):
    assert sorted(jinfo) == sorted(tinfo), f"metric names differ: {sorted(jinfo)} vs {sorted(tinfo)}"
    for k, x in jinfo.items():
        layer, scale = ("network_grad", abs(x)) if k.endswith("grad_norm") else \
            ("network", METRIC_SCALES[k])
        assert_close(np.float64(tinfo[k]), np.float64(x), dtype, layer, scale,
                     f"step {t} metric {k}: torch vs jax", check_dtype=False)


def check_kl_max(params, behaviour, batches, jax_out, torch_out, dtype):
    """``train/kl_max`` of each step in both ports against the largest per-state KL̂ of the
    float64 reference (the actor before the step against the behaviour policy θ', on the
    step's minibatch and KL noise): the per-state tail agrees with the reference, not only
    between the ports."""
    actor = {k: v for k, v in params.items() if k.startswith("actor/")}
    for t, (mb, _, kl_noise) in enumerate(batches):
        want = float(np.max(_reference_kl(actor, behaviour, mb["obs"], kl_noise)))
        for port, out in (("jax", jax_out), ("torch", torch_out)):
            assert_close(np.float64(out[t][3]["train/kl_max"]), np.float64(want), dtype,
                         "network", METRIC_SCALES["train/kl_max"],
                         f"step {t + 1} {port} train/kl_max vs reference", check_dtype=False)
        actor = {k: v for k, v in jax_out[t][0].items() if k.startswith("actor/")}


# ---- the test ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ("hlgauss", "mse"))
@pytest.mark.parametrize("kl_mode", KL_MODES)
@settings(max_examples=max(3, settings.default.max_examples // 5))  # ci: 5, thorough: 100
@given(seed=st.integers(0, 2**31 - 1), data=st.data(),
       behaviour_scale=st.sampled_from((0.0, 0.05, 0.3, 1.0)),
       log_alpha=S.log_multipliers(1e-4, 10.0),
       log_beta=S.log_multipliers(1e-4, 10.0))
def test_two_minibatch_steps_agree(dtype, kind, kl_mode, seed, data, behaviour_scale, log_alpha,
                                   log_beta):
    _require_both()
    params, behaviour = make_params(seed, kind, dtype, behaviour_scale, log_alpha, log_beta)
    batches = [_minibatch(data, dtype) for _ in range(2)]
    logs = np.asarray([log_alpha, log_beta], dtype)
    with BACKENDS["jax"].precision(dtype):
        jax_out = run_jax(kind, kl_mode, params, behaviour, logs, batches, dtype)
    if kl_mode == "clipped":
        # the clipped loss jumps where KL̂ = ε_KL; keep each state clear of the switch (by far
        # more than the ports' rounding) so that both ports take the same branch
        actors = [{k: v for k, v in params.items() if k.startswith("actor/")},
                  {k: v for k, v in jax_out[0][0].items() if k.startswith("actor/")}]
        for actor, (mb, _, kl_noise) in zip(actors, batches):
            kl = _reference_kl(actor, behaviour, mb["obs"], kl_noise)
            assume(np.min(np.abs(kl - KL_TARGET)) > 1e-3 * (1.0 + np.max(np.abs(kl))))
    torch_out = run_torch(kind, kl_mode, params, behaviour, logs, batches, dtype)
    lrs = {"actor": ACTOR_LR, "critic": CRITIC_LR, "multipliers": MULT_LR}
    check_step_sequence(jax_out, torch_out, params, logs, np.dtype(dtype), lrs)
    check_kl_max(params, behaviour, batches, jax_out, torch_out, np.dtype(dtype))
    if kl_mode == "none":
        # no KL term: β is frozen in both ports (zero gradient, so Adam's step is exactly 0)
        for port, out in (("jax", jax_out), ("torch", torch_out)):
            for t, (_, step_logs, _, _) in enumerate(out, 1):
                assert step_logs[1] == logs[1], f"{port} step {t}: log beta moved under kl_mode=none"


@pytest.mark.parametrize("gradient", ("score", "ppo"))
@pytest.mark.parametrize("kl_mode", ("clipped", "full"))
@settings(max_examples=max(3, settings.default.max_examples // 5))  # ci: 5, thorough: 100
@given(seed=st.integers(0, 2**31 - 1), data=st.data(),
       behaviour_scale=st.sampled_from((0.0, 0.05, 0.3)),
       log_alpha=S.log_multipliers(1e-4, 10.0),
       log_beta=S.log_multipliers(1e-4, 10.0))
def test_estimators_two_minibatch_steps_agree(dtype, gradient, kl_mode, seed, data,
                                              behaviour_scale, log_alpha, log_beta):
    """actor.gradient=score and =ppo (HL-Gauss critic): the same two-step agreement."""
    _require_both()
    kind = "hlgauss"
    params, behaviour = make_params(seed, kind, dtype, behaviour_scale, log_alpha, log_beta,
                                    gradient)
    batches = [_minibatch(data, dtype, gradient) for _ in range(2)]
    if gradient == "ppo":
        # normalising the advantages divides their rounding error by their std: a (nearly)
        # constant minibatch of advantages is ill-conditioned (each port's mean rounds
        # differently, and the difference is amplified by up to 1/1e-8), so keep the std above
        # 1% of the largest magnitude; all-zero advantages normalise to exactly 0 everywhere
        for mb, _, _ in batches:
            a = mb["advantage"].astype(np.float64)
            assume(not np.any(a) or np.std(a) > 1e-2 * np.max(np.abs(a)))
    logs = np.asarray([log_alpha, log_beta], dtype)
    with BACKENDS["jax"].precision(dtype):
        jax_out = run_jax(kind, kl_mode, params, behaviour, logs, batches, dtype, gradient)
    if gradient == "ppo":
        # the importance ratio exp(log π − log π') multiplies the rounding error of the
        # log-ratio (a difference of log-densities that can be ~1e4 for small drawn stds) by the
        # ratio itself: a step that moved the policy by tens of nats (a mean ratio of 1e75 was
        # drawn) makes the loss ill-conditioned far beyond METRIC_SCALES' "ratios of O(1)";
        # keep the mean ratio of both steps below 1e6 (log-ratio ≲ 14 nats), which PPO's clip
        # keeps real updates far inside
        assume(all(float(info["train/ratio"]) < 1e6 for *_, info in jax_out))
    actors = [{k: v for k, v in params.items() if k.startswith("actor/")},
              {k: v for k, v in jax_out[0][0].items() if k.startswith("actor/")}]
    for actor, (mb, _, kl_noise) in zip(actors, batches):
        if kl_mode == "clipped":
            kl = _reference_kl(actor, behaviour, mb["obs"], kl_noise)
            assume(np.min(np.abs(kl - KL_TARGET)) > 1e-3 * (1.0 + np.max(np.abs(kl))))
        if gradient == "ppo":
            # the clipped surrogate has kinks at ρ = 1 ± ε: keep every state clear of them
            ratio = _reference_ratio(actor, behaviour, mb["obs"], mb["pre_action"])
            assume(np.min(np.abs(np.abs(ratio - 1.0) - PPO_CLIP)) > 1e-3)
    torch_out = run_torch(kind, kl_mode, params, behaviour, logs, batches, dtype, gradient)
    lrs = {"actor": ACTOR_LR, "critic": CRITIC_LR, "multipliers": MULT_LR, "value": CRITIC_LR}
    check_step_sequence(jax_out, torch_out, params, logs, np.dtype(dtype), lrs)


LOG_BETA_MIN = math.log(0.05)
"""The β floor of :func:`test_beta_floor_binds` (one value: the jitted step closes over it)."""


# an example costs seconds: report a failing one as drawn, without shrinking it (minutes)
@settings(max_examples=max(1, settings.default.max_examples // 25),  # ci: 1, thorough: 20
          phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(seed=st.integers(0, 2**31 - 1), data=st.data(), log_alpha=S.log_multipliers(1e-4, 10.0),
       offset=st.sampled_from((0.0,)) | st.floats(0.0, MULT_LR / 3))
def test_beta_floor_binds(dtype, seed, data, log_alpha, offset):
    """``loss.beta_min`` (``Hyper.log_beta_min``): log β starts at most lr/3 above the floor and
    the behaviour policy is the actor (KL̂ = 0 < ε_KL at the first step, tiny at the second), so
    Adam's first step (≈ lr) would take log β below the floor: both ports agree as in the
    unbounded test, and log β ends each step exactly on the floor (the bound cast to the
    dtype)."""
    _require_both()
    floor = dtype.type(LOG_BETA_MIN)
    log_beta = float(np.asarray(LOG_BETA_MIN + offset, dtype))
    assume(log_beta >= floor)
    params, behaviour = make_params(seed, "hlgauss", dtype, 0.0, log_alpha, log_beta)
    batches = [_minibatch(data, dtype) for _ in range(2)]
    logs = np.asarray([log_alpha, log_beta], dtype)
    with BACKENDS["jax"].precision(dtype):
        jax_out = run_jax("hlgauss", "clipped", params, behaviour, logs, batches, dtype,
                          log_beta_min=LOG_BETA_MIN)
    torch_out = run_torch("hlgauss", "clipped", params, behaviour, logs, batches, dtype,
                          log_beta_min=LOG_BETA_MIN)
    check_step_sequence(jax_out, torch_out, params, logs, np.dtype(dtype),
                        {"actor": ACTOR_LR, "critic": CRITIC_LR, "multipliers": MULT_LR})
    for port, out in (("jax", jax_out), ("torch", torch_out)):
        for t, (_, step_logs, _, info) in enumerate(out, 1):
            assert info["train/kl"] < KL_TARGET, f"{port} step {t}: KL {info['train/kl']}"
            assert step_logs[1] == floor, (
                f"{port} step {t}: log beta {step_logs[1]!r}, expected the floor {floor!r}")
    # without the projection the first step would have left the floor: Adam's first step
    # lr·m̂/(√v̂ + ε) (bias-corrected, t = 1) exceeds the start's distance to it
    m, v = (float(np.asarray(x, np.float64)[1]) for x in jax_out[0][2]["multipliers"])
    step = MULT_LR * (m / (1 - B1)) / (math.sqrt(v / (1 - B2)) + ADAM_EPS)
    assert log_beta - step < LOG_BETA_MIN - MULT_LR / 2, "the bound did not bind"


LOG_ALPHA_MIN = math.log(0.03)
"""The α floor of :func:`test_alpha_floor_binds` (one value: the jitted step closes over it)."""
LOW_ENTROPY_TARGET = -50.0
"""ε_H of :func:`test_alpha_floor_binds`: far below the entropy any of its policies has (σ ≥
min_std = 0.1 gives −log π ≥ −2.8 before the tanh correction), so dL/dlog α = α·(Ĥ − ε_H) > 0
and every multiplier step pushes log α down."""


def _alpha_floor_steps(seed, data, dtype, log_alpha, log_beta, steps, fade=0.0):
    """``steps`` minibatch steps of both ports with α's floor at log 0.03 (faded over ``fade``
    iterations when > 0) and an entropy target far below every policy's entropy, checked to
    agree as in the unbounded test; returns (jax steps, torch steps)."""
    params, behaviour = make_params(seed, "hlgauss", dtype, 0.0, log_alpha, log_beta)
    batches = [_minibatch(data, dtype) for _ in range(steps)]
    logs = np.asarray([log_alpha, log_beta], dtype)
    floors = dict(log_alpha_min=LOG_ALPHA_MIN, entropy_target=LOW_ENTROPY_TARGET,
                  alpha_fade=fade)
    with BACKENDS["jax"].precision(dtype):
        jax_out = run_jax("hlgauss", "clipped", params, behaviour, logs, batches, dtype, **floors)
    torch_out = run_torch("hlgauss", "clipped", params, behaviour, logs, batches, dtype, **floors)
    check_step_sequence(jax_out, torch_out, params, logs, np.dtype(dtype),
                        {"actor": ACTOR_LR, "critic": CRITIC_LR, "multipliers": MULT_LR},
                        entropy_scale=abs(LOW_ENTROPY_TARGET) + ACT + 10.0)
    return jax_out, torch_out


@settings(max_examples=max(1, settings.default.max_examples // 25),  # ci: 1, thorough: 20
          phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(seed=st.integers(0, 2**31 - 1), data=st.data(), log_beta=S.log_multipliers(1e-4, 10.0),
       offset=st.sampled_from((0.0,)) | st.floats(0.0, MULT_LR / 3))
def test_alpha_floor_binds(dtype, seed, data, log_beta, offset):
    """``loss.alpha_min`` (``Hyper.log_alpha_min``): log α starts at most lr/3 above the floor
    and the entropy is far above its target, so Adam's first step (≈ lr) would take log α below
    the floor: both ports agree as in the unbounded test, and log α ends each step exactly on
    the floor (the bound cast to the dtype). The behaviour policy is the actor (KL̂ = 0 at the
    first step, tiny at the second: clear of the clipped switch)."""
    _require_both()
    floor = dtype.type(LOG_ALPHA_MIN)
    log_alpha = float(np.asarray(LOG_ALPHA_MIN + offset, dtype))
    assume(log_alpha >= floor)
    jax_out, torch_out = _alpha_floor_steps(seed, data, dtype, log_alpha, log_beta, 2)
    for port, out in (("jax", jax_out), ("torch", torch_out)):
        for t, (_, step_logs, _, info) in enumerate(out, 1):
            assert info["train/entropy"] > LOW_ENTROPY_TARGET, (
                f"{port} step {t}: entropy {info['train/entropy']}")
            assert step_logs[0] == floor, (
                f"{port} step {t}: log alpha {step_logs[0]!r}, expected the floor {floor!r}")
    # without the projection the first step would have left the floor: Adam's first step
    # lr·m̂/(√v̂ + ε) (bias-corrected, t = 1) exceeds the start's distance to it
    m, v = (float(np.asarray(x, np.float64)[0]) for x in jax_out[0][2]["multipliers"])
    step = MULT_LR * (m / (1 - B1)) / (math.sqrt(v / (1 - B2)) + ADAM_EPS)
    assert log_alpha - step < LOG_ALPHA_MIN - MULT_LR / 2, "the bound did not bind"


@settings(max_examples=max(1, settings.default.max_examples // 25),  # ci: 1, thorough: 20
          phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(seed=st.integers(0, 2**31 - 1), data=st.data(), log_beta=S.log_multipliers(1e-4, 10.0))
def test_alpha_floor_fades(dtype, seed, data, log_beta):
    """``loss.alpha_min_fade_steps`` (``Hyper.alpha_min_fade_iterations`` F = 1000; one
    multiplier step per iteration here): log α starts on the floor and the entropy is far above
    its target, so every Adam step (≈ lr = 3e-3) pushes log α below the floor of its iteration
    i, log(α_min · (1 − i / F)) (the reference's ``faded_log_floor``: log α_min, then 1e-3 and
    2e-3 lower), where the projection puts it: both ports agree as in the unbounded test and
    each step ends on the reference floor to 2 ulps of float32 (the ports' log kernels may
    round differently)."""
    _require_both()
    fade = 1000.0
    log_alpha = float(np.asarray(LOG_ALPHA_MIN, dtype))
    jax_out, torch_out = _alpha_floor_steps(seed, data, dtype, log_alpha, log_beta, 3, fade)
    for i, frac in enumerate((1.0, 0.999, 0.998)):
        want = RL.faded_log_floor(LOG_ALPHA_MIN, i, fade)
        assert want == pytest.approx(LOG_ALPHA_MIN + math.log(frac), abs=1e-6)
        for port, out in (("jax", jax_out), ("torch", torch_out)):
            got = float(out[i][1][0])
            tol = 2 * abs(float(np.spacing(np.float32(want))))
            assert got == pytest.approx(float(want), abs=tol), (
                f"{port} step {i + 1}: log alpha {got!r}, expected the faded floor {want!r}")
