import numpy as np
import pytest

from spec.reference import targets as T


def brute_force_lambda_return(r, v, term, trunc, gamma, lam):
    """Eq. 5-6 directly: weighted average of n-step returns over the episode segment left in
    the rollout. G^(n)_t = sum_{k<n} gamma^k r_{t+k} + gamma^n (1 - term_{t+n-1}) V_{t+n-1}."""
    Tn, N = r.shape
    out = np.zeros_like(r)
    for i in range(N):
        for t in range(Tn):
            end = t
            while not (term[end, i] or trunc[end, i] or end == Tn - 1):
                end += 1
            L = end - t + 1
            rets = []
            for n in range(1, L + 1):
                g = sum(gamma ** k * r[t + k, i] for k in range(n))
                last = t + n - 1
                g += gamma ** n * (0.0 if term[last, i] else v[last, i])
                rets.append(g)
            w = [(1 - lam) * lam ** (n - 1) for n in range(1, L)] + [lam ** (L - 1)]
            out[t, i] = sum(wi * gi for wi, gi in zip(w, rets))
    return out


def _random_case(rng, Tn, N, p_term, p_trunc):
    r = rng.normal(size=(Tn, N))
    v = rng.normal(size=(Tn, N)) * 3
    term = rng.random((Tn, N)) < p_term
    trunc = rng.random((Tn, N)) < p_trunc
    return r, v, term, trunc


@pytest.mark.parametrize("p_term,p_trunc", [(0.0, 0.0), (0.25, 0.0), (0.0, 0.25), (0.2, 0.2), (0.6, 0.6)])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_matches_brute_force(p_term, p_trunc, lam):
    rng = np.random.default_rng(int(100 * p_term + 10 * p_trunc + 1000 * lam))
    for _ in range(5):
        Tn = int(rng.integers(1, 9))
        r, v, term, trunc = _random_case(rng, Tn, 3, p_term, p_trunc)
        got = T.soft_td_lambda(r, v, term, trunc, 0.9, lam)
        assert np.allclose(got, brute_force_lambda_return(r, v, term, trunc, 0.9, lam))


def test_both_terminated_and_truncated_means_no_bootstrap():
    r = np.array([[1.0], [2.0]])
    v = np.array([[10.0], [20.0]])
    term = np.array([[True], [False]])
    trunc = np.array([[True], [False]])
    got = T.soft_td_lambda(r, v, term, trunc, 0.9, 0.95)
    assert got[0, 0] == pytest.approx(1.0)


def test_lambda_zero_is_one_step_td_and_one_is_monte_carlo():
    rng = np.random.default_rng(3)
    r, v, term, trunc = _random_case(rng, 6, 4, 0.2, 0.2)
    g = 0.97
    assert np.allclose(T.soft_td_lambda(r, v, term, trunc, g, 0.0), r + g * (1 - term) * v)
    # λ = 1: discounted reward sum to the segment end, bootstrapping only there
    mc = T.soft_td_lambda(r, v, term, trunc, g, 1.0)
    for i in range(4):
        for t in range(6):
            e, acc = t, 0.0
            while True:
                acc += g ** (e - t) * r[e, i]
                if term[e, i] or trunc[e, i] or e == 5:
                    break
                e += 1
            acc += 0.0 if term[e, i] else g ** (e - t + 1) * v[e, i]
            assert mc[t, i] == pytest.approx(acc)


def test_soft_rewards():
    r = np.array([[1.0, 2.0]])
    lp = np.array([[-1.5, 3.0]])
    term = np.array([[False, True]])
    out = T.soft_rewards(r, lp, term, alpha=0.1, gamma=0.9)
    assert np.allclose(out, [[1.0 + 0.9 * 0.1 * 1.5, 2.0]])
    with pytest.raises(ValueError):
        T.soft_rewards(r, lp[:, :1], term, 0.1, 0.9)


def test_dtype_and_shape_errors():
    f = np.float32
    z = np.zeros((3, 2), f)
    assert T.soft_td_lambda(z, z, z, z, 0.99, 0.95).dtype == f
    assert T.soft_rewards(z, z, z, 0.01, 0.99).dtype == f
    with pytest.raises(ValueError):
        T.soft_td_lambda(z, z[:2], z, z, 0.99, 0.95)
    with pytest.raises(ValueError):
        T.soft_td_lambda(z, z, z, z, 0.99, 1.5)


@pytest.mark.parametrize("p_term,p_trunc", [(0.0, 0.0), (0.25, 0.0), (0.0, 0.25), (0.3, 0.3)])
@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_plus_value_is_the_lambda_return_of_v(p_term, p_trunc, lam):
    """A_t + V(x_t) equals soft_td_lambda with V in place of Q (hence eq. 5–6 of V) whenever
    V(x_{t+1}) of step t is V(x_{t+1}) of step t + 1, i.e. inside an episode."""
    rng = np.random.default_rng(int(7 + 100 * p_term + 10 * p_trunc + 1000 * lam))
    for _ in range(5):
        Tn = int(rng.integers(1, 9))
        r, v, term, trunc = _random_case(rng, Tn, 3, p_term, p_trunc)
        v_next = rng.normal(size=v.shape) * 3  # at done steps: the final observation's value
        inside = ~(term | trunc)
        v_next[:-1][inside[:-1]] = v[1:][inside[:-1]]
        adv = T.gae_advantages(r, v, v_next, term, trunc, 0.9, lam)
        assert np.allclose(adv + v, T.soft_td_lambda(r, v_next, term, trunc, 0.9, lam))
        assert np.allclose(adv + v, brute_force_lambda_return(r, v_next, term, trunc, 0.9, lam))


def test_gae_by_hand_termination_truncation_and_end():
    r = np.array([[1.0], [2.0], [3.0]])
    v = np.array([[10.0], [20.0], [30.0]])
    vn = np.array([[20.0], [25.0], [40.0]])
    g, lam = 0.5, 0.5
    # no flags: δ = r + γ V' − V; A_2 = δ_2, A_1 = δ_1 + γλ A_2, A_0 = δ_0 + γλ A_1
    d = r + g * vn - v
    a2 = d[2]
    a1 = d[1] + g * lam * a2
    a0 = d[0] + g * lam * a1
    got = T.gae_advantages(r, v, vn, np.zeros_like(r, bool), np.zeros_like(r, bool), g, lam)
    assert np.allclose(got, [a0, a1, a2])
    # termination at t = 1: no bootstrap there, the chain stops
    term = np.array([[False], [True], [False]])
    got = T.gae_advantages(r, v, vn, term, np.zeros_like(term), g, lam)
    assert got[1, 0] == pytest.approx(2.0 - 20.0)
    assert got[0, 0] == pytest.approx(d[0, 0] + g * lam * (2.0 - 20.0))
    # truncation at t = 1: bootstrap from the final observation, the chain stops
    got = T.gae_advantages(r, v, vn, np.zeros_like(term), term, g, lam)
    assert got[1, 0] == pytest.approx(d[1, 0])
    assert got[0, 0] == pytest.approx(d[0, 0] + g * lam * d[1, 0])
    # terminated and truncated: termination wins
    got = T.gae_advantages(r, v, vn, term, term, g, lam)
    assert got[1, 0] == pytest.approx(2.0 - 20.0)
    with pytest.raises(ValueError):
        T.gae_advantages(r, v[:2], vn, term, term, g, lam)
    with pytest.raises(ValueError):
        T.gae_advantages(r, v, vn, term, term, g, 1.5)
    assert T.gae_advantages(*(np.zeros((2, 2), np.float32),) * 5, 0.9, 0.9).dtype == np.float32
