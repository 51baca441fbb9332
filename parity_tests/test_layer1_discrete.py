"""Layer 1 for D-REPPO (``spec.reference.discrete``): values and gradients of the categorical
policy primitives and the closed-form losses of eq. 14–16 in every installed backend, plus
closed-form expectations against Monte-Carlo sampling of the categorical policy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity_tests import strategies as S
from parity_tests.backends import counterpart
from parity_tests.harness import available_backends, check_grads, check_values
from spec.config import KL_MODES
from spec.reference import discrete as R

LOGIT_SHAPES = ((1, 2), (2, 3, 6))  # batch 1 with two actions; two leading dims, six actions


@st.composite
def logits_pair(draw, lo=-30.0, hi=30.0):
    """(logits, old_logits): the old ones are a perturbation of size 0 (KL = 0), small or large."""
    shape = draw(st.sampled_from(LOGIT_SHAPES))
    logits = draw(S.arrays(shape, lo, hi, edges=(0.0,)))
    size = draw(st.sampled_from((0.0, 0.05, 1.0, 5.0)))
    old = logits + size * draw(S.arrays(shape, -1.0, 1.0))
    return logits, old


def _lp_scale(logits):
    return float(np.max(np.ptp(logits, axis=-1)) + math.log(logits.shape[-1]))


@given(p=logits_pair())
def test_categorical_log_probs_and_entropy(dtype, p):
    logits, _ = p
    scale = _lp_scale(logits)
    check_values("discrete.categorical_log_probs", (logits,), dtype=dtype, scale=scale)
    check_grads("discrete.categorical_log_probs", (logits,), dtype=dtype, wrt=(0,),
                scale=float(logits.shape[-1]))
    check_values("discrete.categorical_entropy", (logits,), dtype=dtype, scale=scale)
    check_grads("discrete.categorical_entropy", (logits,), dtype=dtype, wrt=(0,), scale=scale)


@given(p=logits_pair())
def test_categorical_kl(dtype, p):
    logits, old = p
    scale = _lp_scale(logits) + _lp_scale(old)
    check_values("discrete.categorical_kl", (old, logits), dtype=dtype, scale=scale)
    check_grads("discrete.categorical_kl", (old, logits), dtype=dtype, wrt=(0, 1), scale=scale)


@st.composite
def actor_case(draw, dtype):
    """Inputs of discrete_actor_loss with ε_KL placed between the states' KLs (so some states
    switch and some do not) but never within 1e-3 (relative) of one: the two backends compute
    the KL with different roundings, and the switch must not depend on them. The margin also
    has an absolute part, the KL's rounding error (it cancels log-probabilities of size
    lp + lp_old), and ε_KL stays above it: two KLs that are 0 up to rounding must not put ε_KL
    between them."""
    logits, old = draw(logits_pair(-10.0, 10.0))
    q = draw(S.arrays(logits.shape, -1e3, 1e3, edges=(0.0,)))
    alpha, beta = draw(S.multipliers), draw(S.multipliers)
    kl = np.sort(R.categorical_kl(old, logits).ravel())
    noise = 256 * float(np.finfo(dtype).eps) * (_lp_scale(logits) + _lp_scale(old))
    choice = draw(st.sampled_from(("fixed", "between", "any")))
    if choice == "fixed":
        kl_target = 0.1
    elif choice == "between" and kl.size > 1:
        i = draw(st.integers(0, kl.size - 2))
        kl_target = float(0.5 * (kl[i] + kl[i + 1])) or 0.1
    else:
        kl_target = draw(st.floats(1e-3, 1.0))
    kl_target = max(kl_target, 4 * noise)
    for _ in range(200):
        if np.min(np.abs(kl - kl_target)) > 1e-3 * kl_target + noise:
            break
        kl_target = kl_target * 1.01 + noise
    return q, logits, old, alpha, beta, kl_target, draw(st.sampled_from(KL_MODES))


def _actor_scale(q, logits, old, alpha, beta):
    """Magnitude of the terms behind the loss and its info. ``kl_mean`` is a sum of differences
    of log-probabilities of size up to lp + lp_old, so its rounding error scales with them
    whatever β is (β = 0, Q = 0 made the scale 0 while the KL still cancels log-probs of ~1)."""
    lp, lp_old = _lp_scale(logits), _lp_scale(old)
    return (float(np.max(np.abs(q))) + alpha * (lp + 1.0) + beta * (lp + lp_old)
            + (lp + lp_old))


@given(data=st.data())
def test_discrete_actor_loss(dtype, data):
    q, logits, old, alpha, beta, kl_target, mode = data.draw(actor_case(dtype))
    args = (q, logits, old, alpha, beta, kl_target, mode)
    scale = _actor_scale(q, logits, old, alpha, beta)
    # the info dict (kl_max, the largest per-state KL, included) is compared key by key
    _, info = check_values("discrete.discrete_actor_loss", args, dtype=dtype, scale=scale)
    kl = R.categorical_kl(old.astype(dtype), logits.astype(dtype))
    assert info["kl_max"] == np.max(kl) and info["kl_mean"] == np.mean(kl)
    # gradients wrt the new and old logits (vs FD in float64); Q is a constant: exactly zero
    check_grads("discrete.discrete_actor_loss", args, dtype=dtype, wrt=(1, 2), scale=2 * scale)
    grads = check_grads("discrete.discrete_actor_loss", args, dtype=dtype, wrt=(0, 1),
                        scale=2 * scale, fd=False)
    for name, (g_q, _) in grads.items():
        assert not np.any(g_q), f"{name}: discrete_actor_loss must not differentiate Q"


@given(p=logits_pair(), data=st.data(), alpha=st.sampled_from((0.0,)) | S.multipliers)
def test_discrete_soft_value(dtype, p, data, alpha):
    logits, _ = p
    q = data.draw(S.arrays(logits.shape, -1e3, 1e3, edges=(0.0,)))
    scale = float(np.max(np.abs(q))) + alpha * _lp_scale(logits)
    args = (q, logits, alpha)
    check_values("discrete.discrete_soft_value", args, dtype=dtype, scale=scale)
    check_grads("discrete.discrete_soft_value", args, dtype=dtype, wrt=(0, 1),
                scale=scale + alpha)


@pytest.mark.parametrize("n,mult", [(2, 0.5), (6, 0.0), (18, 1.0), (4, 0.3)])
def test_discrete_entropy_target(n, mult):
    expected = R.discrete_entropy_target(n, mult)
    for be in available_backends():
        fn = counterpart(be.name, "discrete.discrete_entropy_target")
        assert fn(n, mult) == pytest.approx(expected, rel=1e-15, abs=0.0)
        for bad in ((1, 0.5), (6, 1.5), (6, -0.1)):
            with pytest.raises(ValueError):
                fn(*bad)


# ---- closed form vs Monte-Carlo sampling of the categorical policy ---------------------------

def test_closed_forms_match_sampling():
    """Entropy, KL, policy value and soft value in closed form (every backend) against averages
    over 400k actions sampled from the categorical policy (5 standard errors)."""
    rng = np.random.default_rng(0)
    n_act, k = 5, 400_000
    logits, old = rng.normal(size=n_act), rng.normal(size=n_act)
    q = rng.normal(size=n_act) * 3.0
    alpha = 0.3
    p, po = np.exp(R.categorical_log_probs(logits)), np.exp(R.categorical_log_probs(old))
    a = rng.choice(n_act, size=k, p=p)
    a_old = rng.choice(n_act, size=k, p=po)
    lp, lo = np.log(p), np.log(po)
    samples = {
        "entropy": -lp[a],
        "kl": lo[a_old] - lp[a_old],
        "soft_value": q[a] - alpha * lp[a],
    }
    for be in available_backends():
        f = {n: counterpart(be.name, f"discrete.{n}") for n in
             ("categorical_entropy", "categorical_kl", "discrete_soft_value",
              "discrete_actor_loss")}
        arr = be.array
        closed = {
            "entropy": float(be.numpy(f["categorical_entropy"](arr(logits)))),
            "kl": float(be.numpy(f["categorical_kl"](arr(old), arr(logits)))),
            "soft_value": float(be.numpy(f["discrete_soft_value"](arr(q), arr(logits), alpha))),
        }
        for name, s in samples.items():
            se = s.std() / math.sqrt(k)
            assert abs(closed[name] - s.mean()) < 5 * se, (be.name, name, closed[name], s.mean())
        # the unclipped actor loss is −(soft value) of the current policy
        loss, _ = f["discrete_actor_loss"](arr(q[None]), arr(logits[None]), arr(old[None]),
                                           alpha, 1.0, 0.1, "none")
        assert float(be.numpy(loss)) == pytest.approx(-closed["soft_value"], rel=1e-6)
