import math

import numpy as np
import pytest

from spec.reference import losses as L
from spec.reference.hlgauss import hlgauss_target


def test_actor_loss_clipped_switch_by_hand():
    q = np.array([1.0, 2.0, 3.0, 4.0])
    lp = np.array([-1.0, 0.5, 2.0, -3.0])
    kl = np.array([0.05, 0.1, 0.2, 0.0999])
    a, b, tgt = 0.1, 2.0, 0.1
    loss, info = L.actor_loss(q, lp, kl, a, b, tgt, "clipped")
    per = [0.1 * -1.0 - 1.0, 2.0 * 0.1, 2.0 * 0.2, 0.1 * -3.0 - 4.0]  # kl >= target switches
    assert loss == pytest.approx(np.mean(per))
    assert info["kl_violation_frac"] == pytest.approx(0.5)
    assert info["kl_mean"] == pytest.approx(kl.mean())
    assert info["kl_max"] == 0.2
    assert info["entropy_mean"] == pytest.approx(-lp.mean())
    assert info["q_mean"] == pytest.approx(q.mean())


def test_kl_stats_tail_the_mean_hides():
    """One state far beyond the target among many well inside it: the mean stays below the
    target and 1 of 1000 states violates it, the maximum is that state's KL (in kl's dtype)."""
    kl = np.full(1000, 0.01, np.float32)
    kl[123] = 5.0
    info = L.kl_stats(kl, kl >= np.float32(0.1))
    assert info["kl_mean"] < 0.1 and info["kl_violation_frac"] == pytest.approx(1e-3)
    assert info["kl_max"] == np.float32(5.0) and info["kl_max"].dtype == np.float32
    with pytest.raises(ValueError):
        L.kl_stats(kl, kl[:10] >= 0.1)


def test_actor_loss_full_and_none():
    q, lp, kl = np.array([1.0, 2.0]), np.array([-1.0, 0.5]), np.array([0.05, 0.3])
    full, info = L.actor_loss(q, lp, kl, 0.1, 2.0, 0.1, "full")
    assert full == pytest.approx(np.mean([-0.1 - 1.0 + 0.1, 0.05 - 2.0 + 0.6]))
    none, info_n = L.actor_loss(q, lp, kl, 0.1, 2.0, 0.1, "none")
    assert none == pytest.approx(np.mean([-0.1 - 1.0, 0.05 - 2.0]))
    assert info_n["kl_violation_frac"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        L.actor_loss(q, lp, kl, 0.1, 2.0, 0.1, "bogus")
    with pytest.raises(ValueError):
        L.actor_loss(q, lp[:1], kl, 0.1, 2.0, 0.1, "full")


def _fd(f, x, eps=1e-6):
    return (f(x + eps) - f(x - eps)) / (2 * eps)


def test_alpha_loss_value_and_gradient_sign():
    ent = np.array([1.0, 2.0, 0.0])
    la = math.log(0.05)
    assert L.alpha_loss(la, ent, -1.5) == pytest.approx(0.05 * (1.0 + 1.5))
    # entropy above the target: gradient positive -> descent lowers alpha
    assert _fd(lambda x: L.alpha_loss(x, ent, -1.5), la) > 0
    assert _fd(lambda x: L.alpha_loss(x, ent, 5.0), la) < 0
    assert _fd(lambda x: L.alpha_loss(x, ent, -1.5), la) == pytest.approx(0.05 * 2.5, rel=1e-6)


def test_beta_loss_value_and_gradient_sign():
    kl = np.array([0.3, 0.1])
    lb = math.log(0.01)
    assert L.beta_loss(lb, kl, 0.1) == pytest.approx(-0.01 * 0.1)
    # KL above the target: gradient negative -> descent raises beta
    assert _fd(lambda x: L.beta_loss(x, kl, 0.1), lb) < 0
    assert _fd(lambda x: L.beta_loss(x, kl, 0.5), lb) > 0


def test_value_loss_kinds_and_q_value():
    v_min, v_max, n, s = -5.0, 5.0, 21, 0.375
    y = np.array([0.3, -2.0, 7.0])
    logits = np.random.default_rng(0).normal(size=(3, n))
    vl = L.value_loss(logits, y, "hlgauss", v_min, v_max, n, s)
    p = hlgauss_target(y, v_min, v_max, n, s)
    lsm = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert np.allclose(vl, -(p * lsm).sum(-1))
    q = L.q_value(logits, "hlgauss", v_min, v_max, n)
    sm = np.exp(lsm)
    assert np.allclose(q, sm @ np.linspace(v_min, v_max, n))
    q1 = np.array([[1.0], [0.0], [2.0]])
    assert np.allclose(L.value_loss(q1, y, "mse", v_min, v_max, n, s), (q1[:, 0] - y) ** 2)
    assert np.allclose(L.q_value(q1, "mse", v_min, v_max, n), q1[:, 0])
    assert np.allclose(L.mse_value_loss(q1[:, 0], y), (q1[:, 0] - y) ** 2)
    with pytest.raises(ValueError):
        L.value_loss(logits[:, :5], y, "hlgauss", v_min, v_max, n, s)
    with pytest.raises(ValueError):
        L.value_loss(q1, y, "huber", v_min, v_max, n, s)


def test_aux_and_critic_loss():
    pn = np.array([[1.0, 2.0], [0.0, 0.0]])
    nx = np.array([[0.0, 0.0], [1.0, 3.0]])
    pr, r = np.array([0.5, 1.0]), np.array([0.0, 3.0])
    aux = L.aux_loss(pn, nx, pr, r)
    assert np.allclose(aux, [2.5 + 0.25, 5.0 + 4.0])
    q1 = np.array([[1.0], [0.0]])
    G = np.array([0.0, 2.0])
    total, info = L.critic_loss(q1, G, pn, nx, pr, r, kind="mse", v_min=-1, v_max=1,
                                num_bins=3, sigma=0.5, aux_mult=0.5)
    assert info["value_loss"] == pytest.approx(2.5)
    assert info["aux_loss"] == pytest.approx(aux.mean())
    assert total == pytest.approx(2.5 + 0.5 * aux.mean())
    with pytest.raises(ValueError):
        L.aux_loss(pn, nx[:, :1], pr, r)


def test_float32_preserved():
    f = np.float32
    z = np.zeros(4, f)
    loss, info = L.actor_loss(z, z, z, 0.1, 0.1, 0.1, "clipped")
    assert loss.dtype == f and all(v.dtype == f for v in info.values())
    assert L.alpha_loss(np.float32(0.0), z, -1.0).dtype == f
    assert L.beta_loss(np.float32(0.0), z, 0.1).dtype == f
    assert L.value_loss(np.zeros((4, 5), f), z, "hlgauss", -1, 1, 5, 0.4).dtype == f


def test_score_actor_loss_by_hand_and_leave_one_out_baseline():
    q = np.array([[1.0, 5.0], [3.0, 5.0], [8.0, 5.0]])       # k = 3 samples, B = 2 states
    lp = np.array([[-1.0, 0.5], [0.2, 0.1], [-0.3, -0.2]])
    slp = lp + 0.25  # a different value, to tell the two inputs apart
    kl = np.array([0.05, 0.2])
    a, b, tgt = 0.1, 2.0, 0.1
    base = np.array([[5.5, 5.0], [4.5, 5.0], [2.0, 5.0]])    # mean of the other two samples
    obj = np.mean(a * lp - (q - base) * slp, axis=0)
    loss, info = L.score_actor_loss(q, lp, slp, kl, a, b, tgt, "clipped")
    assert loss == pytest.approx(np.mean([obj[0], b * kl[1]]))
    assert info["kl_violation_frac"] == pytest.approx(0.5)
    assert info["entropy_mean"] == pytest.approx(-lp.mean())
    assert info["q_mean"] == pytest.approx(q.mean())
    none, _ = L.score_actor_loss(q, lp, slp, kl, a, b, tgt, "none")
    assert none == pytest.approx(obj.mean())
    # one sample: no baseline, the paper's literal α logπ − logπ·Q
    one, _ = L.score_actor_loss(q[:1], lp[:1], slp[:1], kl, a, b, tgt, "none")
    assert one == pytest.approx(np.mean(a * lp[0] - q[0] * slp[0]))
    with pytest.raises(ValueError):
        L.score_actor_loss(q, lp, slp[:2], kl, a, b, tgt, "none")
    with pytest.raises(ValueError):
        L.score_actor_loss(q, lp, slp, kl[:1], a, b, tgt, "none")


def test_score_estimator_is_unbiased_for_a_gaussian_policy():
    """E[∂/∂μ of the surrogate] = ∂/∂μ E_{a~N(μ,σ²)}[−Q(a)] for Q(a) = −(a − c)²: the
    surrogate is linear in the score log-probs, ∂ slogπ_j/∂μ = (a_j − μ)/σ²."""
    rng = np.random.default_rng(0)
    mu, sigma, c, k, n = 0.3, 0.7, 1.5, 4, 200_000
    a = mu + sigma * rng.standard_normal((k, n))
    q = -(a - c) ** 2
    lp = -0.5 * ((a - mu) / sigma) ** 2 - math.log(sigma)
    zero = np.zeros(n)

    def loss(slp):
        return L.score_actor_loss(q, lp, slp, zero, 0.0, 0.0, 0.1, "none")[0]

    # the surrogate is linear in slp, so its derivative along ∂slp/∂μ = (a − μ)/σ² (the score of
    # the fixed actions) is one difference quotient of the reference itself
    direction = (a - mu) / sigma ** 2
    grad_mu = loss(lp + direction) - loss(lp)
    exact = 2 * (mu - c)  # ∂/∂μ E[(a − c)²] = 2(μ − c), the gradient of E[−Q]
    assert grad_mu == pytest.approx(exact, abs=0.05)


def test_ppo_actor_loss_by_hand():
    lp = np.log(np.array([1.5, 0.5, 1.1, 0.7]))  # ratios against old log-probs of 0
    old = np.zeros(4)
    adv = np.array([1.0, 1.0, -1.0, -1.0])        # mean 0, std 1: unchanged by normalisation
    elp = np.array([-1.0, 0.0, 1.0, 2.0])
    kl = np.array([0.0, 0.0, 0.0, 0.5])
    a, b, tgt, eps = 0.1, 2.0, 0.1, 0.2
    ratio = np.exp(lp)
    norm = (adv - adv.mean()) / (adv.std() + 1e-8)
    # min(ρÂ, clip(ρ)Â): ρ = 1.5, Â = 1 → 1.2; ρ = 0.5, Â = 1 → 0.5; ρ = 1.1, Â = −1 → −1.1;
    # ρ = 0.7, Â = −1 → −0.8 (the state is switched to β·KL̂ anyway)
    surr = np.array([1.2, 0.5, -1.1, -0.8]) * norm / adv
    per = a * elp - surr
    per[3] = b * kl[3]
    loss, info = L.ppo_actor_loss(lp, old, adv, elp, kl, a, b, tgt, "clipped", eps)
    assert loss == pytest.approx(per.mean())
    assert info["clip_frac"] == pytest.approx(0.75)  # |ρ − 1| > ε for 1.5, 0.5 and 0.7
    assert info["ratio_mean"] == pytest.approx(ratio.mean())
    assert info["entropy_mean"] == pytest.approx(-elp.mean())
    assert info["kl_violation_frac"] == pytest.approx(0.25)
    # advantages are normalised: scaling and shifting them changes nothing
    again, _ = L.ppo_actor_loss(lp, old, 10 * adv + 3, elp, kl, a, b, tgt, "clipped", eps)
    assert again == pytest.approx(loss)
    # a single state: its normalised advantage is 0, only the entropy term remains
    one, _ = L.ppo_actor_loss(lp[:1], old[:1], adv[:1], elp[:1], kl[:1], a, b, tgt, "none", eps)
    assert one == pytest.approx(a * elp[0])
    with pytest.raises(ValueError):
        L.ppo_actor_loss(lp, old, adv, elp, kl, a, b, tgt, "clipped", 1.5)
    with pytest.raises(ValueError):
        L.ppo_actor_loss(lp, old[:2], adv, elp, kl, a, b, tgt, "clipped", eps)
