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
    assert info["entropy_mean"] == pytest.approx(-lp.mean())
    assert info["q_mean"] == pytest.approx(q.mean())


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
