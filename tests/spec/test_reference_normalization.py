import numpy as np
import pytest

from spec.reference import normalization as N


def test_running_stats_match_concatenated_data():
    rng = np.random.default_rng(0)
    stats = N.running_stats_init((3,))
    chunks = [rng.normal(loc=[1.0, -2.0, 5.0], scale=[0.5, 2.0, 10.0], size=(b, 3))
              for b in (1, 7, 64, 3, 200)]
    for c in chunks:
        stats = N.running_stats_update(stats, c)
    data = np.concatenate(chunks)
    assert stats.count == pytest.approx(len(data) + N.COUNT_INIT)
    # the 1e-4 pseudo-count prior shifts the stats by O(1e-4 / n)
    assert np.allclose(stats.mean, data.mean(0), rtol=1e-5, atol=1e-5)
    assert np.allclose(stats.var, data.var(0), rtol=1e-5, atol=1e-5)


def test_zero_variance_feature_and_normalize():
    stats = N.running_stats_init(2)
    x = np.stack([np.full(50, 3.0), np.arange(50.0)], axis=1)
    stats = N.running_stats_update(stats, x)
    out = N.normalize(x, stats)
    assert np.all(np.isfinite(out))
    assert np.allclose(out[:, 0], 0.0, atol=1e-4)
    assert np.allclose(out[:, 1], (x[:, 1] - stats.mean[1]) / np.sqrt(stats.var[1] + 1e-2))


def test_dtype_and_errors():
    s = N.running_stats_init((2,), np.float32)
    s = N.running_stats_update(s, np.ones((4, 2), np.float32))
    assert s.mean.dtype == np.float32 and s.var.dtype == np.float32
    assert N.normalize(np.ones((5, 2), np.float32), s).dtype == np.float32
    assert N.running_stats_update(s, np.zeros((0, 2))) is s
    with pytest.raises(ValueError):
        N.running_stats_update(s, np.ones((4, 3)))
    with pytest.raises(ValueError):
        N.normalize(np.ones((4, 3)), s)
    with pytest.raises(Exception):
        s.count = 3  # frozen
