import math

import numpy as np
import pytest

from spec.reference import distributions as D


def _normal_pdf(x, mu, s):
    return np.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))


def test_policy_std_and_sample():
    raw = np.array([[-1.0, 0.0, 2.0]])
    assert np.allclose(D.policy_std(raw, 0.1), np.exp(raw) + 0.1)
    mean, std = np.array([0.2, -0.3]), np.array([0.5, 2.0])
    noise = np.array([[1.0, -1.0], [0.0, 0.5]])
    a, u = D.tanh_gaussian_sample(mean, std, noise)
    assert np.allclose(u, [[0.7, -2.3], [0.2, 0.7]])
    assert np.allclose(a, np.tanh(u))
    with pytest.raises(ValueError):
        D.tanh_gaussian_sample(mean, std, np.zeros((2, 3)))
    assert np.allclose(D.deterministic_action(mean), np.tanh(mean))


def test_log_det_jacobian_matches_direct_formula():
    u = np.linspace(-3, 3, 13).reshape(-1, 1)
    assert np.allclose(D.tanh_log_det_jacobian(u), np.log(1 - np.tanh(u[:, 0]) ** 2))


def test_tanh_log_prob_equals_change_of_variables_1d():
    mu, s = 0.3, 0.7
    a = np.linspace(-0.99, 0.99, 41)
    # independent truth: density of tanh(X), X ~ N(mu, s^2), at a is N(atanh a) / (1 - a^2)
    truth = _normal_pdf(np.arctanh(a), mu, s) / (1 - a ** 2)
    lp = D.tanh_gaussian_log_prob(np.full((41, 1), mu), np.full((41, 1), s), np.arctanh(a)[:, None])
    assert lp.shape == (41,)
    assert np.allclose(np.exp(lp), truth, rtol=1e-10)


def test_tanh_log_prob_matches_histogram_of_samples():
    rng = np.random.default_rng(0)
    mu, s = np.array([-0.4]), np.array([0.9])
    a, _ = D.tanh_gaussian_sample(mu, s, rng.standard_normal((200_000, 1)))
    counts, edges = np.histogram(a[:, 0], bins=40, range=(-1, 1))
    dens = counts / (a.shape[0] * np.diff(edges))
    centres = 0.5 * (edges[1:] + edges[:-1])
    model = np.exp(D.tanh_gaussian_log_prob(mu, s, np.arctanh(centres)[:, None]))
    inner = slice(2, -2)  # the density is steep at ±1, bin averaging is coarse there
    assert np.allclose(dens[inner], model[inner], rtol=0.06, atol=0.02)


def test_gaussian_log_prob_sums_over_action_dim():
    mean, std, x = np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.array([0.5, -1.0])
    truth = np.log(_normal_pdf(0.5, 0.0, 1.0)) + np.log(_normal_pdf(-1.0, 1.0, 2.0))
    assert D.gaussian_log_prob(mean, std, x) == pytest.approx(truth)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tails_are_finite(dtype):
    u = np.array([[-20.0, 20.0], [-40.0, 40.0], [0.0, -80.0]], dtype)
    ldj = D.tanh_log_det_jacobian(u)
    assert ldj.dtype == dtype and np.all(np.isfinite(ldj))
    # log(1 - tanh^2 u) ≈ 2 log 2 - 2|u| for large |u|
    assert np.allclose(ldj[0], 2 * (2 * math.log(2) - 40.0), rtol=1e-5)
    lp = D.tanh_gaussian_log_prob(np.zeros_like(u), np.ones_like(u), u)
    assert lp.dtype == dtype and np.all(np.isfinite(lp))


def test_float32_is_preserved():
    f = np.float32
    m, s, n = np.zeros((3, 2), f), np.ones((3, 2), f), np.ones((4, 3, 2), f)
    assert D.policy_std(m, 0.1).dtype == f
    assert D.tanh_gaussian_sample(m, s, n[0])[0].dtype == f
    assert D.gaussian_log_prob(m, s, n[0]).dtype == f
    assert D.kl_estimate(m, s, m, s, n).dtype == f
    assert D.entropy_estimate(np.zeros(3, f)).dtype == f


def test_kl_estimate_converges_to_analytic_gaussian_kl():
    rng = np.random.default_rng(1)
    m0 = np.array([[0.1, -0.5], [1.0, 0.0], [0.0, 0.0]])
    s0 = np.array([[0.5, 1.0], [0.3, 0.8], [1.0, 1.0]])
    m1 = np.array([[0.3, -0.2], [0.5, 0.4], [0.0, 0.0]])
    s1 = np.array([[0.6, 0.7], [0.5, 1.0], [1.0, 1.0]])
    truth = np.sum(np.log(s1 / s0) + (s0 ** 2 + (m0 - m1) ** 2) / (2 * s1 ** 2) - 0.5, axis=-1)
    k = 200_000
    noise = rng.standard_normal((k, 3, 2))
    est = D.kl_estimate(m0, s0, m1, s1, noise)
    assert est.shape == (3,)
    x = m0 + s0 * noise
    per = D.gaussian_log_prob(m0, s0, x) - D.gaussian_log_prob(m1, s1, x)
    tol = 5 * per.std(axis=0) / math.sqrt(k) + 1e-12
    assert np.all(np.abs(est - truth) <= tol), (est, truth, tol)
    assert est[2] == 0.0


def test_kl_estimate_equals_tanh_log_prob_difference():
    rng = np.random.default_rng(2)
    m0, s0 = rng.normal(size=(4, 3)), np.exp(rng.normal(size=(4, 3)) * 0.3)
    m1, s1 = rng.normal(size=(4, 3)), np.exp(rng.normal(size=(4, 3)) * 0.3)
    noise = rng.standard_normal((16, 4, 3))
    x = m0 + s0 * noise
    full = D.tanh_gaussian_log_prob(m0, s0, x) - D.tanh_gaussian_log_prob(m1, s1, x)
    assert np.allclose(D.kl_estimate(m0, s0, m1, s1, noise), full.mean(axis=0))


def test_kl_estimate_bad_noise_shape():
    m = np.zeros((4, 3))
    with pytest.raises(ValueError):
        D.kl_estimate(m, m + 1, m, m + 1, np.zeros((4, 3)))
    with pytest.raises(ValueError):
        D.kl_estimate(m, m + 1, m, m + 1, np.zeros((2, 5, 3)))
