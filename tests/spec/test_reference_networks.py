import math

import numpy as np
import pytest

from spec.params import init_params, param_layout
from spec.reference import networks as Nn


def test_silu_and_norms_by_hand():
    x = np.array([-1.0, 0.0, 2.0])
    assert np.allclose(Nn.silu(x), [-1 / (1 + math.e), 0.0, 2 / (1 + math.exp(-2))])
    assert np.all(np.isfinite(Nn.silu(np.array([-1e4, 1e4], np.float32))))
    x = np.array([[3.0, 4.0]])
    scale = np.array([1.0, 2.0])
    rms = math.sqrt((9 + 16) / 2 + 1e-6)
    assert np.allclose(Nn.rms_norm(x, scale), [[3 / rms, 8 / rms]])
    ln = Nn.layer_norm(x, scale, np.array([0.5, -0.5]))
    s = math.sqrt(0.25 + 1e-6)  # mean 3.5, var 0.25
    assert np.allclose(ln, [[-0.5 / s * 1 + 0.5, 0.5 / s * 2 - 0.5]])
    with pytest.raises(ValueError):
        Nn.rms_norm(x, np.ones(3))


def test_one_layer_mlp_and_two_layer_by_hand():
    p = {"s/0/kernel": np.array([[1.0, 2.0], [3.0, 4.0]]), "s/0/bias": np.array([0.5, -0.5])}
    x = np.array([1.0, -1.0])
    assert np.allclose(Nn.mlp_forward(p, "s", x, "rms"), [-1.5, -2.5])
    assert np.allclose(Nn.mlp_forward(p, "s", x, "none", activate_input=True),
                       Nn.silu(x) @ p["s/0/kernel"] + p["s/0/bias"])
    p2 = dict(p)
    p2["s/0/norm/scale"] = np.array([1.0, 1.0])
    p2["s/1/kernel"] = np.array([[1.0], [1.0]])
    p2["s/1/bias"] = np.array([0.25])
    h = np.array([-1.5, -2.5])
    h = h / math.sqrt((1.5 ** 2 + 2.5 ** 2) / 2 + 1e-6)
    h = h / (1 + np.exp(-h))
    assert np.allclose(Nn.mlp_forward(p2, "s", x, "rms"), [h.sum() + 0.25])
    with pytest.raises(ValueError):
        Nn.mlp_forward(p2, "s", x, "layer")  # missing norm/bias
    with pytest.raises(ValueError):
        Nn.mlp_forward(p2, "t", x, "rms")
    with pytest.raises(ValueError):
        Nn.mlp_forward(p, "s", np.ones(3), "none")


@pytest.mark.parametrize("norm", ["rms", "layer", "none"])
def test_forward_shapes_on_canonical_layout(norm):
    layout = param_layout(5, 3, critic_hidden=16, actor_hidden=8, num_encoder_layers=2,
                          num_head_layers=2, num_pred_layers=2, actor_layers=3, num_bins=21,
                          critic_norm=norm, actor_norm=norm)
    p = init_params(np.random.default_rng(0), layout, v_min=-10, v_max=10, sigma=0.75,
                    logit_prior_scale=40.0, alpha_init=0.01, beta_init=0.01, dtype=np.float64)
    obs = np.random.default_rng(1).normal(size=(4, 2, 5))
    mean, raw = Nn.actor_forward(p, obs, norm)
    assert mean.shape == raw.shape == (4, 2, 3)
    q, z = Nn.critic_forward(p, obs, np.tanh(mean), norm)
    assert q.shape == (4, 2, 21) and z.shape == (4, 2, 16)
    pn, pr = Nn.predictor_forward(p, z, norm)
    assert pn.shape == (4, 2, 16) and pr.shape == (4, 2)
    with pytest.raises(ValueError):
        Nn.critic_forward(p, obs, mean[:2], norm)
