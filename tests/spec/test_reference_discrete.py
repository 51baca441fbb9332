import math

import numpy as np
import pytest

from spec.reference import discrete as Dd


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_entropy_and_kl_formulas():
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, -1.0, 0.5]])
    assert Dd.categorical_entropy(logits)[0] == pytest.approx(math.log(4))
    p = _softmax(logits[1])
    assert Dd.categorical_entropy(logits)[1] == pytest.approx(-(p * np.log(p)).sum())
    assert np.allclose(Dd.categorical_log_probs(logits + 1000.0), np.log(_softmax(logits)))
    assert np.allclose(Dd.categorical_kl(logits, logits), 0.0)


def test_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    old, new = rng.normal(size=5), rng.normal(size=5)
    po, pn = _softmax(old), _softmax(new)
    k = 200_000
    a = rng.choice(5, size=k, p=po)
    ratio = np.log(po[a]) - np.log(pn[a])
    mc = ratio.mean()
    assert abs(Dd.categorical_kl(old, new) - mc) < 5 * ratio.std() / math.sqrt(k)


def test_actor_loss_switch_by_hand():
    q = np.array([[1.0, 0.0], [0.0, 2.0]])
    logits = np.array([[0.0, 0.0], [0.0, 0.0]])
    old = np.array([[0.0, 0.0], [3.0, 0.0]])  # state 0: KL 0, state 1: KL large
    alpha, beta = 0.5, 2.0
    kl1 = Dd.categorical_kl(old[1], logits[1])
    obj = [0.5 * (0.5 * math.log(0.5) - 1.0) + 0.5 * (0.5 * math.log(0.5) - 0.0),
           0.5 * (0.5 * math.log(0.5) - 0.0) + 0.5 * (0.5 * math.log(0.5) - 2.0)]
    loss, info = Dd.discrete_actor_loss(q, logits, old, alpha, beta, 0.1, "clipped")
    assert kl1 > 0.1
    assert loss == pytest.approx((obj[0] + beta * kl1) / 2)
    assert info["kl_violation_frac"] == pytest.approx(0.5)
    assert info["kl_max"] == pytest.approx(kl1)
    assert info["entropy_mean"] == pytest.approx(math.log(2))
    assert info["q_mean"] == pytest.approx(0.75)
    full, _ = Dd.discrete_actor_loss(q, logits, old, alpha, beta, 0.1, "full")
    assert full == pytest.approx((obj[0] + obj[1] + beta * kl1) / 2)
    none, _ = Dd.discrete_actor_loss(q, logits, old, alpha, beta, 0.1, "none")
    assert none == pytest.approx((obj[0] + obj[1]) / 2)


def test_soft_value_and_entropy_target():
    q = np.array([1.0, 3.0])
    logits = np.array([0.0, math.log(3.0)])  # probs 0.25, 0.75
    v = Dd.discrete_soft_value(q, logits, 0.2)
    assert v == pytest.approx(0.25 * (1 - 0.2 * math.log(0.25)) + 0.75 * (3 - 0.2 * math.log(0.75)))
    assert Dd.discrete_entropy_target(6, 0.5) == pytest.approx(0.5 * math.log(6))
    with pytest.raises(ValueError):
        Dd.discrete_entropy_target(6, 1.5)
    with pytest.raises(ValueError):
        Dd.discrete_entropy_target(1)
    assert Dd.categorical_kl(np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)).dtype == np.float32
