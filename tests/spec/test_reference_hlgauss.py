import math

import numpy as np
import pytest

from spec.derived import hlgauss_sigma
from spec.reference import hlgauss as H

SUPPORTS = [(0.0, 150.0, 151), (-15.0, 15.0, 151), (-10.0, 10.0, 51), (-1.0, 3.0, 21)]


def _integrated_gaussian(y, v_min, v_max, n, sigma):
    """Independent truth: integrate the Gaussian pdf over each bin with Simpson's rule."""
    w = (v_max - v_min) / (n - 1)
    edges = v_min - w / 2 + w * np.arange(n + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        x = np.linspace(lo, hi, 201)
        f = np.exp(-0.5 * ((x - y) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        h = (hi - lo) / 200
        out.append(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))
    p = np.array(out)
    return p / p.sum()


@pytest.mark.parametrize("v_min,v_max,n", SUPPORTS)
def test_target_is_normalised_integrated_gaussian(v_min, v_max, n):
    sigma = hlgauss_sigma(v_min, v_max, n)
    ys = np.array([v_min, v_min + 0.3 * (v_max - v_min), 0.5 * (v_min + v_max) + 0.01, v_max])
    p = H.hlgauss_target(ys, v_min, v_max, n, sigma)
    assert p.shape == (4, n)
    assert np.all(p >= 0) and np.allclose(p.sum(-1), 1.0)
    for y, row in zip(ys, p):
        assert np.allclose(row, _integrated_gaussian(y, v_min, v_max, n, sigma), atol=1e-9)


@pytest.mark.parametrize("v_min,v_max,n", SUPPORTS)
def test_decode_of_log_target_recovers_y(v_min, v_max, n):
    sigma = hlgauss_sigma(v_min, v_max, n)
    w = (v_max - v_min) / (n - 1)
    ys = np.linspace(v_min + 4 * w, v_max - 4 * w, 17)
    with np.errstate(divide="ignore"):  # far-tail probabilities are exactly 0 -> logit -inf
        logits = np.log(H.hlgauss_target(ys, v_min, v_max, n, sigma))
    assert np.allclose(H.hlgauss_decode(logits, v_min, v_max, n), ys, atol=1e-3 * w)


def test_outside_support_equals_clipped():
    v_min, v_max, n, s = -2.0, 2.0, 9, 0.4
    p_out = H.hlgauss_target(np.array([-7.0, 100.0]), v_min, v_max, n, s)
    p_edge = H.hlgauss_target(np.array([-2.0, 2.0]), v_min, v_max, n, s)
    assert np.array_equal(p_out, p_edge)


def test_two_bins_and_narrow_sigma():
    # two bins, y exactly at a centre, sigma << bin width -> all mass in that bin
    p = H.hlgauss_target(np.array([0.0, 1.0, 0.5]), 0.0, 1.0, 2, 0.01)
    assert np.allclose(p[0], [1.0, 0.0]) and np.allclose(p[1], [0.0, 1.0])
    assert np.allclose(p[2], [0.5, 0.5])
    with pytest.raises(ValueError):
        H.hlgauss_target(np.array([0.0]), 0.0, 1.0, 1, 0.1)
    with pytest.raises(ValueError):
        H.hlgauss_target(np.array([0.0]), 0.0, 1.0, 5, 0.0)


def test_loss_is_cross_entropy_and_minimised_at_log_target():
    rng = np.random.default_rng(0)
    n = 11
    target = H.hlgauss_target(np.array([0.37]), -1.0, 1.0, n, 0.5)[0]
    assert np.all(target > 0)
    best = H.hlgauss_loss(np.log(target), target)
    entropy = -np.sum(target * np.log(target))
    assert best == pytest.approx(entropy)  # CE(p, p) = H(p)
    for _ in range(20):
        other = np.log(target) + rng.normal(scale=0.5, size=n)
        assert H.hlgauss_loss(other, target) > best
    # invariance to a constant logit shift; gradient = softmax − p (finite differences)
    logits = rng.normal(size=n)
    assert H.hlgauss_loss(logits + 100.0, target) == pytest.approx(H.hlgauss_loss(logits, target))
    eps = 1e-6
    grad = np.array([(H.hlgauss_loss(logits + eps * e, target) - H.hlgauss_loss(logits - eps * e, target))
                     / (2 * eps) for e in np.eye(n)])
    sm = np.exp(logits) / np.exp(logits).sum()
    assert np.allclose(grad, sm - target, atol=1e-7)


def test_shapes_dtype_and_errors():
    f = np.float32
    y = np.zeros((2, 3), f)
    p = H.hlgauss_target(y, -1.0, 1.0, 7, 0.25)
    assert p.shape == (2, 3, 7) and p.dtype == f
    assert H.hlgauss_loss(np.zeros((2, 3, 7), f), p).dtype == f
    d = H.hlgauss_decode(np.zeros((2, 3, 7), f), -1.0, 1.0, 7)
    assert d.dtype == f and np.allclose(d, 0.0, atol=1e-6)
    with pytest.raises(ValueError):
        H.hlgauss_decode(np.zeros((2, 6)), -1.0, 1.0, 7)
    with pytest.raises(ValueError):
        H.hlgauss_loss(np.zeros((2, 6)), np.zeros((2, 7)))
