import math
import os
from types import SimpleNamespace

import numpy as np
import pytest

from spec import params as P
from spec.reference.hlgauss import hlgauss_decode

KW = dict(critic_hidden=16, actor_hidden=8, num_encoder_layers=2, num_head_layers=2,
          num_pred_layers=2, actor_layers=3, num_bins=51, critic_norm="rms", actor_norm="rms")
INIT = dict(v_min=0.0, v_max=150.0, sigma=2.25, logit_prior_scale=40.0, alpha_init=0.01,
            beta_init=0.02)


def test_layout_shapes():
    L = P.param_layout(7, 3, **KW)
    assert L["actor/layers/0/kernel"] == (7, 8)
    assert L["actor/layers/2/kernel"] == (8, 6)
    assert "actor/layers/2/norm/scale" not in L and "actor/layers/1/norm/scale" in L
    assert L["critic/encoder/0/kernel"] == (10, 16)
    assert L["critic/encoder/1/kernel"] == (16, 16)
    assert "critic/encoder/1/norm/scale" not in L
    assert L["critic/q_head/1/kernel"] == (16, 51)
    assert L["critic/predictor/1/bias"] == (17,)
    assert L["obs_norm/count"] == () and L["multipliers/log_beta"] == ()
    Lm = P.param_layout(7, 3, **{**KW, "critic_norm": "layer"}, value_kind="mse")
    assert Lm["critic/q_head/1/bias"] == (1,) and "critic/encoder/0/norm/bias" in Lm
    Ln = P.param_layout(7, 3, **{**KW, "actor_norm": "none"})
    assert not any(k.startswith("actor/") and "/norm/" in k for k in Ln)
    with pytest.raises(ValueError):
        P.param_layout(7, 3, **{**KW, "critic_norm": "batch"})


def test_layout_from_config_duck_typed():
    cfg = SimpleNamespace(
        critic=SimpleNamespace(hidden_dim=16, num_encoder_layers=2, num_head_layers=2,
                               num_pred_layers=2, num_bins=51, norm="rms", loss="hlgauss",
                               sigma_ratio=0.75, logit_prior_scale=40.0),
        actor=SimpleNamespace(hidden_dim=8, num_layers=3, norm="rms"),
        loss=SimpleNamespace(alpha_init=0.01, beta_init=0.02))
    assert P.layout_from_config(cfg, 7, 3) == P.param_layout(7, 3, **KW)
    p = P.init_params_from_config(np.random.default_rng(0), cfg, 7, 3, v_min=0.0, v_max=150.0)
    q = P.init_params(np.random.default_rng(0), P.param_layout(7, 3, **KW), **INIT)
    assert p.keys() == q.keys() and all(np.array_equal(p[k], q[k]) for k in p)


def test_init_values_and_determinism():
    L = P.param_layout(7, 3, **KW)
    a = P.init_params(np.random.default_rng(5), L, **INIT)
    b = P.init_params(np.random.default_rng(5), L, **INIT)
    c = P.init_params(np.random.default_rng(6), L, **INIT)
    P.check_params(a, L)
    assert all(np.array_equal(a[k], b[k]) for k in L)
    assert not np.array_equal(a["actor/layers/0/kernel"], c["actor/layers/0/kernel"])
    k = a["critic/encoder/0/kernel"]
    assert k.dtype == np.float32 and np.abs(k).max() <= 1 / math.sqrt(10)
    assert np.abs(k).max() > 0.5 / math.sqrt(10)
    assert np.all(a["critic/encoder/0/bias"] == 0) and np.all(a["actor/layers/0/norm/scale"] == 1)
    assert a["multipliers/log_alpha"] == pytest.approx(math.log(0.01))
    assert a["multipliers/log_beta"] == pytest.approx(math.log(0.02))
    assert np.all(a["obs_norm/mean"] == 0) and np.all(a["obs_norm/var"] == 1)
    # logit prior: bias = 40 * hist(0); its peak sits on the bin of 0 (the low edge here)
    bias = a["critic/q_head/1/bias"].astype(np.float64)
    assert bias.sum() == pytest.approx(40.0, rel=1e-5) and np.argmax(bias) == 0


def test_initial_q_is_near_zero_on_symmetric_support():
    from spec.reference.networks import critic_forward
    L = P.param_layout(7, 3, **{**KW, "num_bins": 101})
    init = {**INIT, "v_min": -15.0, "v_max": 15.0, "sigma": 0.225}
    p = P.init_params(np.random.default_rng(0), L, **init, dtype=np.float64)
    rng = np.random.default_rng(1)
    q_out, _ = critic_forward(p, rng.normal(size=(64, 7)), np.tanh(rng.normal(size=(64, 3))), "rms")
    q = hlgauss_decode(q_out, -15.0, 15.0, 101)
    assert np.all(np.abs(q) < 0.3)  # one bin is 0.3 wide


def test_save_load_roundtrip(tmp_path):
    L = P.param_layout(7, 3, **KW)
    p = P.init_params(np.random.default_rng(0), L, **INIT)
    path = tmp_path / "ckpt.npz"
    P.save_params(path, p, {"env_steps": 123, "config": {"a": [1, 2]}})
    q, meta = P.load_params(path)
    assert meta == {"env_steps": 123, "config": {"a": [1, 2]}}
    P.check_params(q, L)
    for k in p:
        assert q[k].dtype == p[k].dtype and np.array_equal(q[k], p[k])
    assert [f for f in os.listdir(tmp_path) if f != "ckpt.npz"] == []  # no temp files left


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        P.load_params(tmp_path / "missing.npz")
    p = {"w": np.arange(1000.0)}
    path = tmp_path / "a.npz"
    P.save_params(path, p, {})
    raw = path.read_bytes()
    bad = tmp_path / "trunc.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        P.load_params(bad)
    txt = tmp_path / "txt.npz"
    txt.write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        P.load_params(txt)
    old = tmp_path / "old.npz"
    np.savez(old, w=np.zeros(3), __schema_version__=np.asarray(0), __metadata__=np.asarray("{}"))
    with pytest.raises(ValueError, match="schema version 0"):
        P.load_params(old)
    nos = tmp_path / "nos.npz"
    np.savez(nos, w=np.zeros(3))
    with pytest.raises(ValueError, match="schema"):
        P.load_params(nos)
    with pytest.raises(ValueError, match="JSON"):
        P.save_params(tmp_path / "m.npz", p, {"x": object()})


def test_check_params_names_problem():
    L = {"a": (2,), "b": (3, 4)}
    with pytest.raises(ValueError, match="'b'.*missing"):
        P.check_params({"a": np.zeros(2)}, L)
    with pytest.raises(ValueError, match="'b' has shape"):
        P.check_params({"a": np.zeros(2), "b": np.zeros((4, 3))}, L)
    with pytest.raises(ValueError, match="unexpected parameter 'c'"):
        P.check_params({"a": np.zeros(2), "b": np.zeros((3, 4)), "c": np.zeros(1)}, L)


def test_value_network_layout_only_for_ppo():
    """actor.gradient=ppo adds ``value/layers`` (obs → critic width → 1, depth of the Q path)
    after the critic; the other parameters and their initial values are unchanged."""
    from spec.config import ReppoConfig, apply_overrides

    base = apply_overrides(ReppoConfig(), ["critic.hidden_dim=16", "actor.hidden_dim=8"])
    ppo = apply_overrides(base, ["actor.gradient=ppo"])
    assert P.value_layers_for(base) == 0
    assert P.value_layers_for(apply_overrides(base, ["actor.gradient=score"])) == 0
    assert P.value_layers_for(ppo) == 4
    L0, L1 = P.layout_from_config(base, 7, 3), P.layout_from_config(ppo, 7, 3)
    extra = [k for k in L1 if k not in L0]
    assert all(k.startswith("value/layers/") for k in extra) and set(L0) <= set(L1)
    assert L1["value/layers/0/kernel"] == (7, 16) and L1["value/layers/3/kernel"] == (16, 1)
    assert "value/layers/2/norm/scale" in L1 and "value/layers/3/norm/scale" not in L1
    keys = list(L1)
    assert keys.index("value/layers/0/kernel") > keys.index("critic/predictor/1/bias")
    p0 = P.init_params(np.random.default_rng(0), L0, **INIT)
    p1 = P.init_params(np.random.default_rng(0), L1, **INIT)
    assert all(np.array_equal(p0[k], p1[k]) for k in p0)
    assert not np.any(p1["value/layers/3/bias"])
    with pytest.raises(ValueError, match="continuous"):
        P.param_layout(7, 3, **KW, action_space="discrete", value_layers=2)
