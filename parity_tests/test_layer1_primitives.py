"""Layer 1: every reference primitive against its JAX and PyTorch counterparts (values, dtypes,
and gradients of the differentiable ones), plus the coverage test that keeps the registry honest.
"""

from __future__ import annotations

import importlib
import inspect
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity_tests import strategies as S
from parity_tests.backends import (
    BACKENDS, PENDING, REFERENCE_MODULES, REGISTRY, MissingCounterpart, counterpart,
    pending_target, resolve_target,
)
from parity_tests.harness import available_backends, check_grads, check_values
from parity_tests.tolerance import flush_scale

LOG2 = math.log(2.0)


def _sp(x):
    return np.logaddexp(0.0, x)


# ---- coverage --------------------------------------------------------------------------------

def _reference_functions() -> list[str]:
    names = []
    for mod_name in REFERENCE_MODULES:
        mod = importlib.import_module(f"spec.reference.{mod_name}")
        for name, obj in vars(mod).items():
            if (inspect.isfunction(obj) and not name.startswith("_")
                    and obj.__module__ == mod.__name__):
                names.append(f"{mod_name}.{name}")
    return sorted(names)


def test_reference_modules_listed():
    """Every spec.reference module is enumerated by the coverage test."""
    pkg = importlib.import_module("spec.reference")
    import pkgutil
    found = {m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")}
    assert found == set(REFERENCE_MODULES), f"update REFERENCE_MODULES: {sorted(found)}"


@pytest.mark.parametrize("backend_name", sorted(BACKENDS))
def test_coverage(backend_name):
    """Each public reference function has a registered, importable counterpart or is PENDING
    (with a reason); a PENDING function that now exists must leave PENDING; no stale entries."""
    be = BACKENDS[backend_name]
    funcs = _reference_functions()
    registry, pending = REGISTRY[backend_name], PENDING[backend_name]
    unregistered = [f for f in funcs if f not in registry and f not in pending]
    stale = sorted(set(registry) - set(funcs)) + sorted(set(pending) - set(funcs))
    both = sorted(set(registry) & set(pending))
    assert not unregistered, f"{backend_name}: no counterpart registered for {unregistered}"
    assert not stale, f"{backend_name}: registry/PENDING names no reference function: {stale}"
    assert not both, f"{backend_name}: both registered and PENDING: {both}"
    assert all(reason.strip() for reason in pending.values())
    if not be.available():
        pytest.skip(be.skip_reason())
    missing = []
    for f in funcs:
        if f in registry:
            try:
                counterpart(backend_name, f)
            except MissingCounterpart as e:
                missing.append(f"{f}: {e}")
    now_exist = []
    for f in pending:
        try:
            resolve_target(pending_target(backend_name, f))
            now_exist.append(f)
        except MissingCounterpart:
            pass
    assert not missing, f"{backend_name}: registered counterparts missing:\n  " + "\n  ".join(missing)
    assert not now_exist, (f"{backend_name}: {now_exist} now exist: move them from PENDING to "
                           f"REGISTRY and add parity tests")


@pytest.mark.parametrize("backend_name", sorted(BACKENDS))
def test_backend_installed(backend_name):
    be = BACKENDS[backend_name]
    if not be.available():
        pytest.skip(be.skip_reason())


# ---- distributions ---------------------------------------------------------------------------

@given(raw=st.sampled_from(S.BATCH_SHAPES).flatmap(lambda b: S.arrays(b + (2,), -20.0, 8.0)),
       min_std=st.sampled_from((0.0, 0.1)) | st.floats(0.0, 1.0))
def test_policy_std(dtype, raw, min_std):
    check_values("distributions.policy_std", (raw, min_std), dtype=dtype)
    check_grads("distributions.policy_std", (raw, min_std), dtype=dtype, wrt=(0,))


@given(p=S.policy_batch(with_pre=False, with_noise=True))
def test_tanh_gaussian_sample(dtype, p):
    mean, std, _, noise = p
    scale = float(np.max(np.abs(mean)) + np.max(np.abs(std * noise)))
    check_values("distributions.tanh_gaussian_sample", (mean, std, noise), dtype=dtype,
                 scale=scale)
    check_grads("distributions.tanh_gaussian_sample", (mean, std, noise), dtype=dtype,
                wrt=(0, 1), scale=scale)  # d action / d(mean, std)


@given(p=S.policy_batch())
def test_tanh_log_det_jacobian(dtype, p):
    pre = p[2]
    scale = float(np.max(np.sum(2 * (LOG2 + np.abs(pre) + _sp(-2 * pre)), axis=-1)))
    check_values("distributions.tanh_log_det_jacobian", (pre,), dtype=dtype, scale=scale)
    # d/du = 2(−1 + 2σ(−2u)): terms of size 2 cancel near u = 0
    check_grads("distributions.tanh_log_det_jacobian", (pre,), dtype=dtype, wrt=(0,), scale=4.0)


def _glp_scale(mean, std, x):
    z = (x - mean) / std
    return float(np.max(np.sum(0.5 * z * z + np.abs(np.log(std)) + 1.0, axis=-1)))


@given(p=S.policy_batch())
def test_gaussian_log_prob(dtype, p):
    mean, std, x, _ = p
    scale = _glp_scale(mean, std, x)
    check_values("distributions.gaussian_log_prob", (mean, std, x), dtype=dtype, scale=scale)
    check_grads("distributions.gaussian_log_prob", (mean, std, x), dtype=dtype, wrt=(0, 1, 2),
                scale=float(np.max(1 / std) * (1 + np.max(np.abs((x - mean) / std)) ** 2)))


@given(p=S.policy_batch())
def test_tanh_gaussian_log_prob(dtype, p):
    mean, std, pre, _ = p
    scale = _glp_scale(mean, std, pre) + float(
        np.max(np.sum(2 * (LOG2 + np.abs(pre) + _sp(-2 * pre)), axis=-1)))
    check_values("distributions.tanh_gaussian_log_prob", (mean, std, pre), dtype=dtype,
                 scale=scale)
    check_grads("distributions.tanh_gaussian_log_prob", (mean, std, pre), dtype=dtype,
                wrt=(0, 1, 2),
                scale=float(np.max(1 / std) * (1 + np.max(np.abs((pre - mean) / std)) ** 2)) + 4)


@given(lp=st.sampled_from(S.BATCH_SHAPES).flatmap(lambda b: S.arrays(b, -50.0, 50.0)))
def test_entropy_estimate(dtype, lp):
    check_values("distributions.entropy_estimate", (lp,), dtype=dtype)
    check_grads("distributions.entropy_estimate", (lp,), dtype=dtype, wrt=(0,))


@given(p=S.policy_batch())
def test_deterministic_action(dtype, p):
    pre = p[2]  # includes the saturated tails ±20
    check_values("distributions.deterministic_action", (pre,), dtype=dtype)
    check_grads("distributions.deterministic_action", (pre,), dtype=dtype, wrt=(0,), scale=1.0)


@given(p=S.policy_batch(with_pre=False, with_noise=True), data=st.data(), same=st.booleans())
def test_kl_estimate(dtype, p, data, same):
    old_mean, old_std, _, noise = p
    mean = old_mean if same else data.draw(S.arrays(old_mean.shape, -5.0, 5.0))
    std = old_std if same else np.exp(data.draw(S.arrays(old_mean.shape, -5.0, 2.0))) + 0.1
    x = old_mean + old_std * noise
    scale = max(_glp_scale(old_mean, old_std, x[j]) + _glp_scale(mean, std, x[j])
                for j in range(x.shape[0]))
    args = (old_mean, old_std, mean, std, noise)
    check_values("distributions.kl_estimate", args, dtype=dtype, scale=scale)
    zmax = float(np.max(np.abs((x - mean) / std)))
    check_grads("distributions.kl_estimate", args, dtype=dtype, wrt=(0, 1, 2, 3),
                scale=float(np.max(1 / std) + np.max(1 / old_std)) * (1 + zmax) ** 2)


# ---- hlgauss ---------------------------------------------------------------------------------

def _hl_scale(v_min, v_max, n, sigma):
    w = (v_max - v_min) / (n - 1)
    return (max(abs(v_min), abs(v_max)) + w) / sigma


@given(data=st.data(), case=st.sampled_from(S.HIST_CASES))
def test_hlgauss_target(dtype, data, case):
    shape, n = case
    v_min, v_max, n, sigma = data.draw(S.support(n))
    y = data.draw(S.hl_targets(shape, v_min, v_max, n))
    check_values("hlgauss.hlgauss_target", (y, v_min, v_max, n, sigma), dtype=dtype,
                 scale=_hl_scale(v_min, v_max, n, sigma))


@given(data=st.data(), case=st.sampled_from(S.HIST_CASES))
def test_hlgauss_loss(dtype, data, case):
    shape, n = case
    logits = data.draw(S.arrays(shape + (n,), -50.0, 50.0, edges=(0.0,)))
    raw = data.draw(S.arrays(shape + (n,), 0.0, 1.0, edges=(0.0,))) + 1e-3
    probs = raw / raw.sum(-1, keepdims=True)
    scale = float(np.ptp(logits) + math.log(n))
    check_values("hlgauss.hlgauss_loss", (logits, probs), dtype=dtype, scale=scale)
    check_grads("hlgauss.hlgauss_loss", (logits, probs), dtype=dtype, wrt=(0,), scale=1.0)


@given(data=st.data(), case=st.sampled_from(S.HIST_CASES))
def test_hlgauss_decode(dtype, data, case):
    shape, n = case
    v_min, v_max, n, _ = data.draw(S.support(n))
    logits = data.draw(S.arrays(shape + (n,), -50.0, 50.0, edges=(0.0,)))
    scale = max(abs(v_min), abs(v_max))
    check_values("hlgauss.hlgauss_decode", (logits, v_min, v_max, n), dtype=dtype, scale=scale)
    check_grads("hlgauss.hlgauss_decode", (logits, v_min, v_max, n), dtype=dtype, wrt=(0,),
                scale=scale)


# ---- targets ---------------------------------------------------------------------------------

@given(ro=S.rollout(), alpha=S.multipliers)
def test_soft_rewards(dtype, ro, alpha):
    rewards, next_lp, _, term, _, gamma, _ = ro
    scale = float(np.max(np.abs(rewards)) + gamma * alpha * np.max(np.abs(next_lp)))
    args = (rewards, next_lp, term, alpha, gamma)
    check_values("targets.soft_rewards", args, dtype=dtype, scale=scale)
    check_grads("targets.soft_rewards", args, dtype=dtype, wrt=(0, 1), scale=alpha)


@given(ro=S.rollout())
def test_soft_td_lambda(dtype, ro):
    rewards, _, next_v, term, trunc, gamma, lam = ro
    T = rewards.shape[0]
    scale = T * float(np.max(np.abs(rewards)) + np.max(np.abs(next_v)))
    args = (rewards, next_v, term, trunc, gamma, lam)
    check_values("targets.soft_td_lambda", args, dtype=dtype, scale=scale)
    check_grads("targets.soft_td_lambda", args, dtype=dtype, wrt=(0, 1), scale=T)


@given(ro=S.rollout(), data=st.data())
def test_gae_advantages(dtype, ro, data):
    rewards, _, next_v, term, trunc, gamma, lam = ro
    values = data.draw(S.arrays(rewards.shape, -100.0, 100.0))
    T = rewards.shape[0]
    scale = T * float(np.max(np.abs(rewards)) + np.max(np.abs(next_v)) + np.max(np.abs(values)))
    args = (rewards, values, next_v, term, trunc, gamma, lam)
    check_values("targets.gae_advantages", args, dtype=dtype, scale=scale)
    check_grads("targets.gae_advantages", args, dtype=dtype, wrt=(0, 1, 2), scale=T)


# ---- losses ----------------------------------------------------------------------------------

@given(shape=S.batch_shapes, data=st.data())
def test_mse_value_loss(dtype, shape, data):
    q = data.draw(S.arrays(shape, -1e3, 1e3))
    t = data.draw(S.arrays(shape, -1e3, 1e3))
    scale = float(np.max(np.abs(q - t)) * np.max(np.abs(q) + np.abs(t)))
    check_values("losses.mse_value_loss", (q, t), dtype=dtype, scale=scale)
    check_grads("losses.mse_value_loss", (q, t), dtype=dtype, wrt=(0,),
                scale=float(np.max(np.abs(q) + np.abs(t))))


@st.composite
def critic_batch(draw, kind):
    shape, n = draw(st.sampled_from(S.HIST_CASES))
    v_min, v_max, n, sigma = draw(S.support(n))
    h = 4
    out = n if kind == "hlgauss" else 1
    q_out = draw(S.arrays(shape + (out,), -30.0, 30.0))
    if kind == "mse":
        q_out = q_out * (v_max - v_min) / 30.0
    targets = draw(S.hl_targets(shape, v_min, v_max, n))
    pe = draw(S.arrays(shape + (h,), -10.0, 10.0))
    ne = draw(S.arrays(shape + (h,), -10.0, 10.0))
    pr = draw(S.arrays(shape, -10.0, 10.0))
    r = draw(S.arrays(shape, -10.0, 10.0))
    aux_mult = draw(st.sampled_from((0.0, 1.0)) | st.floats(0.0, 10.0))
    return (q_out, targets, pe, ne, pr, r), dict(kind=kind, v_min=v_min, v_max=v_max,
                                                num_bins=n, sigma=sigma, aux_mult=aux_mult)


def _critic_scale(args, kw):
    q_out, targets, pe, ne, pr, r = args
    if kw["kind"] == "hlgauss":
        v = float(np.ptp(q_out, axis=-1).max() + math.log(kw["num_bins"])) * (
            1 + _hl_scale(kw["v_min"], kw["v_max"], kw["num_bins"], kw["sigma"]))
    else:
        v = float(np.max(np.abs(q_out[..., 0]) + np.abs(targets)) ** 2)
    aux = float(np.max((np.abs(pe) + np.abs(ne)) ** 2) + np.max((np.abs(pr) + np.abs(r)) ** 2))
    return v + (1 + kw["aux_mult"]) * aux


@given(kind=st.sampled_from(("hlgauss", "mse")), data=st.data())
def test_value_loss_and_q_value(dtype, kind, data):
    args, kw = data.draw(critic_batch(kind))
    q_out, targets = args[:2]
    scale = _critic_scale(args, kw)
    vargs = (q_out, targets, kind, kw["v_min"], kw["v_max"], kw["num_bins"], kw["sigma"])
    check_values("losses.value_loss", vargs, dtype=dtype, scale=scale)
    check_grads("losses.value_loss", vargs, dtype=dtype, wrt=(0,), scale=scale)
    qargs = (q_out, kind, kw["v_min"], kw["v_max"], kw["num_bins"])
    qs = max(abs(kw["v_min"]), abs(kw["v_max"]))
    check_values("losses.q_value", qargs, dtype=dtype, scale=qs)
    check_grads("losses.q_value", qargs, dtype=dtype, wrt=(0,), scale=qs)


@given(data=st.data())
def test_aux_loss(dtype, data):
    args, kw = data.draw(critic_batch("mse"))
    aux_args = args[2:]
    scale = _critic_scale(args, kw)
    check_values("losses.aux_loss", aux_args, dtype=dtype, scale=scale)
    check_grads("losses.aux_loss", aux_args, dtype=dtype, wrt=(0, 1, 2, 3), scale=20.0)


@given(kind=st.sampled_from(("hlgauss", "mse")), data=st.data())
def test_critic_loss(dtype, kind, data):
    args, kw = data.draw(critic_batch(kind))
    scale = _critic_scale(args, kw)
    check_values("losses.critic_loss", args, kw, dtype=dtype, scale=scale)
    # gradients wrt the head output and the predictions (targets and z_{t+1} are constants)
    check_grads("losses.critic_loss", args, kw, dtype=dtype, wrt=(0, 2, 4), scale=scale)


@given(data=st.data())
def test_actor_loss(dtype, data):
    q, lp, kl, alpha, beta, kl_target, mode = data.draw(S.actor_inputs(dtype))
    args = (q, lp, kl, alpha, beta, kl_target, mode)
    scale = float(np.max(np.abs(q)) + alpha * np.max(np.abs(lp)) + beta * np.max(np.abs(kl)))
    # the info dict (KL statistics of test_kl_stats included) is compared key by key
    _, info = check_values("losses.actor_loss", args, dtype=dtype, scale=scale)
    assert info["kl_max"] == np.max(kl.astype(dtype))
    # FD is skipped when some kl lies within a step of the switch (the loss jumps there)
    smooth = mode != "clipped" or np.min(np.abs(kl - kl_target)) > 1e-4 * max(1.0, kl_target)
    check_grads("losses.actor_loss", args, dtype=dtype, wrt=(0, 1, 2),
                scale=1.0 + alpha + beta, fd=smooth)


@given(data=st.data())
def test_kl_switch(dtype, data):
    """Eq. 13's per-state KL treatment for every ``loss.kl_mode``, shared by all actor losses."""
    q, lp, kl, alpha, beta, kl_target, mode = data.draw(S.actor_inputs(dtype))
    objective = (np.asarray(alpha, dtype) * lp - q).astype(dtype)
    violated = kl >= np.asarray(kl_target, dtype)
    args = (objective, kl, beta, violated, mode)
    scale = float(np.max(np.abs(objective)) + beta * np.max(np.abs(kl)))
    check_values("losses.kl_switch", args, dtype=dtype, scale=scale)
    check_grads("losses.kl_switch", args, dtype=dtype, wrt=(0, 1), scale=1.0 + beta, fd=False)


@given(data=st.data(), spike=st.booleans())
def test_kl_stats(dtype, data, spike):
    """The KL statistics every actor loss reports (kl_violation_frac, kl_mean, kl_max), with one
    state far beyond the rest in some examples (the tail kl_max is there to show). kl_max is an
    element of kl: every port returns exactly the reference's value, in kl's dtype."""
    _, _, kl, _, _, kl_target, _ = data.draw(S.actor_inputs(dtype))
    kl = kl.astype(dtype)
    if spike:
        kl.flat[data.draw(st.integers(0, kl.size - 1))] = 50.0 * kl_target
    violated = kl >= np.asarray(kl_target, dtype)
    args = (kl, violated)
    ref = check_values("losses.kl_stats", args, dtype=dtype, scale=float(np.max(np.abs(kl))))
    assert ref["kl_max"] == np.max(kl) and ref["kl_max"].dtype == dtype
    for be in available_backends():
        with be.precision(dtype):
            out = be.numpy(counterpart(be.name, "losses.kl_stats")(*be.array(args)))
        assert out["kl_max"] == ref["kl_max"], (be.name, out["kl_max"], ref["kl_max"])


@given(data=st.data(), k=st.sampled_from((1, 4)))
def test_score_actor_loss(dtype, data, k):
    q, lp, kl, alpha, beta, kl_target, mode = data.draw(S.actor_inputs(dtype))
    shape = (k,) + q.shape
    q = data.draw(S.arrays(shape, -1e3, 1e3, edges=(0.0,)))
    lp = data.draw(S.arrays(shape, -30.0, 30.0))
    slp = lp.copy()  # the same log-density; only what a port differentiates differs
    args = (q, lp, slp, kl, alpha, beta, kl_target, mode)
    qmax, lmax = float(np.max(np.abs(q))), float(np.max(np.abs(lp)))
    scale = 2 * qmax * lmax + alpha * lmax + beta * float(np.max(np.abs(kl)))
    check_values("losses.score_actor_loss", args, dtype=dtype, scale=scale)
    smooth = mode != "clipped" or np.min(np.abs(kl - kl_target)) > 1e-4 * max(1.0, kl_target)
    check_grads("losses.score_actor_loss", args, dtype=dtype, wrt=(1, 2, 3),
                scale=1.0 + alpha + beta + 2 * qmax, fd=smooth)
    grads = check_grads("losses.score_actor_loss", args, dtype=dtype, wrt=(0, 1), fd=False,
                        scale=1.0 + alpha)
    for name, (g_q, _) in grads.items():
        assert not np.any(g_q), f"{name}: the score estimator must not differentiate Q"


@given(data=st.data(), clip_eps=st.sampled_from((0.2,)) | st.floats(0.05, 0.5))
def test_ppo_actor_loss(dtype, data, clip_eps):
    _, elp, kl, alpha, beta, kl_target, mode = data.draw(S.actor_inputs(dtype))
    shape = kl.shape
    lp = data.draw(S.arrays(shape, -10.0, 10.0))
    delta = data.draw(S.arrays(shape, -0.5, 0.5, edges=(0.0,)) | S.arrays(shape, -3.0, 3.0))
    old = lp - delta
    adv = data.draw(S.arrays(shape, -100.0, 100.0, edges=(0.0,)))
    args = (lp, old, adv, elp, kl, alpha, beta, kl_target, mode, clip_eps)
    ratio = np.exp(lp.astype(dtype).astype(np.float64) - old.astype(dtype).astype(np.float64))
    # normalising the advantages divides their rounding error by their std: the conditioning
    cond = float(np.max(np.abs(adv))) / (float(np.std(adv)) + 1e-8) if adv.size > 1 else 0.0
    scale = (float(np.max(ratio)) * (1.0 + cond) + alpha * float(np.max(np.abs(elp)))
             + beta * float(np.max(np.abs(kl))))
    check_values("losses.ppo_actor_loss", args, dtype=dtype, scale=scale)
    # FD is skipped next to a kink: the KL switch, or the ratio at 1 ± ε
    smooth = (mode != "clipped" or np.min(np.abs(kl - kl_target)) > 1e-4 * max(1.0, kl_target))
    smooth = smooth and np.min(np.abs(np.abs(ratio - 1.0) - clip_eps)) > 1e-4
    grads = check_grads("losses.ppo_actor_loss", args, dtype=dtype, wrt=(0, 1, 2, 3, 4),
                        scale=1.0 + alpha + beta + float(np.max(ratio)) * (1.0 + cond),
                        fd=False)
    for name, (_, g_old, g_adv, _, _) in grads.items():
        assert not np.any(g_old), f"{name}: ppo_actor_loss must not differentiate old log-probs"
        assert not np.any(g_adv), f"{name}: ppo_actor_loss must not differentiate advantages"
    check_grads("losses.ppo_actor_loss", args, dtype=dtype, wrt=(0, 3, 4),
                scale=1.0 + alpha + beta + float(np.max(ratio)) * (1.0 + cond), fd=smooth)


@given(data=st.data(), alpha=S.multipliers, target=st.floats(-10.0, 10.0))
def test_alpha_loss(dtype, data, alpha, target):
    ent = data.draw(st.sampled_from(S.BATCH_SHAPES).flatmap(lambda b: S.arrays(b, -30.0, 30.0)))
    log_alpha = np.asarray(math.log(alpha))
    scale = alpha * float(np.max(np.abs(ent)) + abs(target)) + flush_scale(alpha, dtype)
    args = (log_alpha, ent, target)
    check_values("losses.alpha_loss", args, dtype=dtype, scale=scale)
    grads = check_grads("losses.alpha_loss", args, dtype=dtype, wrt=(0, 1), scale=scale,
                        fd=False)
    for name, (_, g_ent) in grads.items():
        assert not np.any(g_ent), f"{name}: alpha_loss must not differentiate the entropy"


@given(data=st.data(), beta=S.multipliers, kl_target=st.sampled_from((0.1,)) | st.floats(1e-3, 1.0))
def test_beta_loss(dtype, data, beta, kl_target):
    kl = data.draw(st.sampled_from(S.BATCH_SHAPES).flatmap(
        lambda b: S.arrays(b, 0.0, 5 * kl_target, edges=(float(np.asarray(kl_target, dtype)),))))
    log_beta = np.asarray(math.log(beta))
    scale = beta * float(np.max(np.abs(kl)) + kl_target) + flush_scale(beta, dtype)
    args = (log_beta, kl, kl_target)
    check_values("losses.beta_loss", args, dtype=dtype, scale=scale)
    grads = check_grads("losses.beta_loss", args, dtype=dtype, wrt=(0, 1), scale=scale, fd=False)
    for name, (_, g_kl) in grads.items():
        assert not np.any(g_kl), f"{name}: beta_loss must not differentiate the KL"


@given(alpha=S.multipliers, beta=S.multipliers, target=st.floats(-10.0, 10.0),
       kl_target=st.floats(1e-3, 1.0), data=st.data())
def test_multiplier_losses_fd(alpha, beta, target, kl_target, data):
    """float64 ∂L/∂log α and ∂L/∂log β against finite differences of the reference."""
    ent = data.draw(S.arrays((3,), -30.0, 30.0))
    kl = data.draw(S.arrays((3,), 0.0, 1.0))
    # JAX forms mean(H) − ε, the reference mean(H − ε): equal up to reassociation, hence scale
    check_grads("losses.alpha_loss", (np.asarray(math.log(alpha)), ent, target),
                dtype=np.float64, wrt=(0,), scale=alpha * (30.0 + abs(target)))
    check_grads("losses.beta_loss", (np.asarray(math.log(beta)), kl, kl_target),
                dtype=np.float64, wrt=(0,), scale=beta * (1.0 + kl_target))


@given(data=st.data(), shape=st.sampled_from(((), (4,))),
       bound=st.sampled_from((-math.inf, math.log(0.1), 0.0)) | S.log_multipliers(1e-6, 1e4))
def test_project_log_multiplier(dtype, data, shape, bound):
    """The projection of ``loss.alpha_min`` and ``loss.beta_min``, log m ← max(log m, log m_min)
    (one function for log α and log β), bit for bit in every port: −inf is the identity, a log
    below the bound lands exactly on the bound cast to the dtype, one at or above it is
    unchanged, a NaN stays NaN (for the non-finite guard)."""
    from parity_tests.backends import reference
    from parity_tests.harness import available_backends

    floor = dtype.type(bound)
    edges = (-math.inf,) if bound == -math.inf else (
        float(floor), float(np.nextafter(floor, dtype.type(-np.inf))),
        float(np.nextafter(floor, dtype.type(np.inf))))
    log_value = data.draw(S.arrays(shape, -30.0, 30.0, edges=edges)).astype(dtype)
    if data.draw(st.booleans()):
        log_value.flat[0] = np.nan
    ref = np.asarray(reference("losses.project_log_multiplier")(log_value, bound))
    assert ref.dtype == dtype and ref.shape == log_value.shape
    nan = np.isnan(log_value)
    assert np.array_equal(np.isnan(ref), nan), "the projection must keep NaN (and only NaN)"
    keep = ~nan & (log_value >= floor)
    assert np.array_equal(ref[keep], log_value[keep]), "a log at/above the bound moved"
    assert np.all(ref[~nan & ~keep] == floor), "a log below the bound is not on the bound"
    for be in available_backends():
        with be.precision(dtype):
            got = be.numpy(counterpart(be.name, "losses.project_log_multiplier")(
                be.array(log_value), bound))
        assert got.dtype == dtype, f"{be.name} project_log_multiplier: dtype {got.dtype}"
        assert np.array_equal(got, ref, equal_nan=True), (
            f"{be.name} project_log_multiplier({log_value!r}, {bound!r}) = {got!r}, "
            f"reference {ref!r}")


@given(log_floor=S.log_multipliers(1e-4, 1.0), fade=st.floats(0.5, 1e4),
       iteration=st.integers(0, 20_000))
def test_faded_log_floor(log_floor, fade, iteration):
    """``loss.alpha_min_fade_steps``: the floor of log α in iteration i, log(α_min·(1 − i/F)),
    −inf from i ≥ F on, float32: every port agrees with the reference on whether the floor is
    over (bit for bit: the same float32 division) and, while it holds, to 2 float32 ulps plus
    what 1 ulp of the fraction becomes through the log (the ports' log kernels may round
    differently)."""
    from parity_tests.backends import reference
    from parity_tests.harness import available_backends

    ref = reference("losses.faded_log_floor")(log_floor, iteration, fade)
    assert ref.dtype == np.float32
    frac = np.float32(1.0) - np.float32(iteration) / np.float32(fade)
    assert (ref == -np.inf) == (not frac > 0)
    for be in available_backends():
        got = be.numpy(counterpart(be.name, "losses.faded_log_floor")(
            log_floor, be.array(np.asarray(iteration, np.int32)), fade))
        assert got.dtype == np.float32, f"{be.name} faded_log_floor: dtype {got.dtype}"
        if ref == -np.inf:
            assert got == -np.inf, f"{be.name}: floor {got!r} after the fade"
            continue
        tol = 2 * abs(float(np.spacing(np.float32(ref)))) + float(np.spacing(frac)) / float(frac)
        assert abs(float(got) - float(ref)) <= tol, (
            f"{be.name} faded_log_floor({log_floor!r}, {iteration}, {fade!r}) = {got!r}, "
            f"reference {ref!r}")


# ---- normalization ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3,), (2, 2), 4])
def test_running_stats_init(dtype, shape):
    from parity_tests.harness import available_backends
    from parity_tests.backends import counterpart as cp, reference as ref
    expected = ref("normalization.running_stats_init")(shape, dtype)
    for be in available_backends():
        with be.precision(dtype):
            got = be.numpy(cp(be.name, "normalization.running_stats_init")(shape, be.dtype(dtype)))
        np.testing.assert_array_equal(got.mean, expected.mean)
        np.testing.assert_array_equal(got.var, expected.var)
        assert got.mean.dtype == expected.mean.dtype == got.var.dtype
        assert math.isclose(got.count, expected.count, rel_tol=1e-6), (be.name, got.count)


@given(batches=S.observation_batches(), probe=st.data())
def test_running_stats_update_and_normalize(dtype, batches, probe):
    from spec.reference.normalization import running_stats_init, running_stats_update
    stats = running_stats_init(batches[0].shape[1:], dtype)
    for x in batches:
        m = float(np.max(np.abs(x)) + np.max(np.abs(stats.mean)) + np.sqrt(np.max(stats.var)))
        check_values("normalization.running_stats_update", (stats, x), dtype=dtype, scale=m)
        stats = running_stats_update(stats, x.astype(dtype))
    x = probe.draw(S.arrays((2,) + batches[0].shape[1:], -150.0, 150.0))
    x[0] = batches[-1][0]  # a point equal to a constant column's mean: exactly-zero features
    scale = float((np.max(np.abs(x)) + np.max(np.abs(stats.mean))) / math.sqrt(1e-2))
    check_values("normalization.normalize", (x, stats), dtype=dtype, scale=scale)
    check_values("normalization.normalize", (x, stats), {"eps": 0.5}, dtype=dtype, scale=scale)
