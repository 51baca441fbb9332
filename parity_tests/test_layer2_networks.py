"""Layer 2: networks. Identical canonical parameters (``spec.params.init_params``, with biases
and norm parameters perturbed so every path matters) are loaded into the numpy forward
(``spec.reference.networks``), the flax modules and the torch modules; forward outputs agree for
norm rms / layer / none, and the gradients of the critic loss and of the actor loss with respect
to every parameter agree between JAX and PyTorch (compared under canonical names).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity_tests import strategies as S
from parity_tests.backends import BACKENDS
from parity_tests.harness import check_values
from parity_tests.tolerance import assert_close
from spec.params import init_params, param_layout
from spec.reference import networks as RN

OBS, ACT, HIDDEN, BINS, BATCH, K = 5, 2, 16, 11, 4, 3
V_MIN, V_MAX = -10.0, 10.0
SIGMA = 0.75 * (V_MAX - V_MIN) / (BINS - 1)
NORMS = ("rms", "layer", "none")


def make_params(seed: int, norm: str, dtype) -> dict[str, np.ndarray]:
    layout = param_layout(OBS, ACT, critic_hidden=HIDDEN, actor_hidden=HIDDEN,
                          num_encoder_layers=2, num_head_layers=2, num_pred_layers=2,
                          actor_layers=3, num_bins=BINS, critic_norm=norm, actor_norm=norm)
    rng = np.random.default_rng(seed)
    p = init_params(rng, layout, v_min=V_MIN, v_max=V_MAX, sigma=SIGMA, logit_prior_scale=40.0,
                    alpha_init=0.01, beta_init=0.01, dtype=np.float64)
    for k, v in p.items():  # biases 0 and scales 1 at init would hide transposes/mix-ups
        if k.endswith("/bias") or k.endswith("/norm/scale"):
            p[k] = v + 0.3 * rng.standard_normal(v.shape)
    return {k: np.asarray(v, dtype) if k.startswith(("actor/", "critic/")) else v
            for k, v in p.items()}


def _net_params(p):
    return {k: v for k, v in p.items() if k.startswith(("actor/", "critic/"))}


norms = st.sampled_from(NORMS)
seeds = st.integers(0, 2**31 - 1)


@pytest.mark.parametrize("norm", NORMS)
@settings(max_examples=max(5, settings.default.max_examples * 2 // 5))  # ci: 10, thorough: 200
@given(seed=seeds, data=st.data())
def test_forward(dtype, norm, seed, data):
    p = make_params(seed, norm, dtype)
    obs = data.draw(S.arrays((BATCH, OBS), -5.0, 5.0))
    act = np.tanh(data.draw(S.arrays((BATCH, ACT), -20.0, 20.0, edges=(-20.0, 20.0))))
    z = data.draw(S.arrays((BATCH, HIDDEN), -5.0, 5.0))
    np_ = _net_params(p)
    check_values("networks.actor_forward", (np_, obs, norm), dtype=dtype, layer="network",
                 scale=1.0)
    check_values("networks.critic_forward", (np_, obs, act, norm), dtype=dtype,
                 layer="network", scale=40.0)
    check_values("networks.predictor_forward", (np_, z, norm), dtype=dtype, layer="network",
                 scale=1.0)
    check_values("networks.mlp_forward", (np_, "critic/q_head", z, norm, True), dtype=dtype,
                 layer="network", scale=40.0)


@given(data=st.data())
def test_norms_and_silu(dtype, data):
    x = data.draw(S.arrays((BATCH, HIDDEN), -30.0, 30.0, edges=(0.0,)))
    x[0] = x[0, 0]  # a constant row: zero variance
    scale = data.draw(S.arrays((HIDDEN,), -2.0, 2.0))
    bias = data.draw(S.arrays((HIDDEN,), -2.0, 2.0))
    check_values("networks.silu", (x,), dtype=dtype, scale=1.0)
    # 1/√(var + 1e-6) amplifies the rounding of a near-constant row by up to 1e3·|x|
    amp = float(np.max(np.abs(x)) / np.sqrt(1e-6) * np.max(np.abs(scale)))
    check_values("networks.rms_norm", (x, scale), dtype=dtype, layer="network", scale=amp)
    check_values("networks.layer_norm", (x, scale, bias), dtype=dtype, layer="network",
                 scale=amp)


@pytest.mark.parametrize("norm", NORMS)
def test_num_layers(norm):
    p = _net_params(make_params(0, norm, np.float32))
    check_values("networks.num_layers", (p, "actor/layers"), dtype=np.float32)
    check_values("networks.num_layers", (p, "critic/predictor"), dtype=np.float32)


def test_torch_canonical_round_trip():
    be = BACKENDS["torch"]
    if not be.available():
        pytest.skip(be.skip_reason())
    from reppo_torch.networks import Actor, Critic, load_canonical, to_canonical

    p = _net_params(make_params(1, "layer", np.float32))
    actor = Actor.from_canonical(p, "layer")
    critic = Critic.from_canonical(p, "layer", OBS)
    out = to_canonical({"actor": actor, "critic": critic})
    assert sorted(out) == sorted(p)
    for k in p:
        np.testing.assert_array_equal(out[k], p[k], err_msg=k)
    bad = dict(p)
    bad["actor/layers/0/kernel"] = bad["actor/layers/0/kernel"].T
    with pytest.raises(ValueError, match="actor/layers/0/kernel"):
        load_canonical(actor, bad)
    extra = dict(p)
    extra["actor/layers/9/kernel"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="not used"):
        load_canonical(actor, extra)


# ---- gradients of the losses w.r.t. every parameter -----------------------------------------

def _batch(data, dtype):
    d = {
        "obs": data.draw(S.arrays((BATCH, OBS), -5.0, 5.0)),
        "act": np.tanh(data.draw(S.arrays((BATCH, ACT), -3.0, 3.0))),
        "targets": data.draw(S.arrays((BATCH,), 2 * V_MIN, 2 * V_MAX, edges=(V_MIN, V_MAX))),
        "next_emb": data.draw(S.arrays((BATCH, HIDDEN), -3.0, 3.0)),
        "rewards": data.draw(S.arrays((BATCH,), -1.0, 1.0)),
        "noise": data.draw(S.arrays((BATCH, ACT), -3.0, 3.0)),
        "kl_noise": data.draw(S.arrays((K, BATCH, ACT), -3.0, 3.0)),
        "old_mean": data.draw(S.arrays((BATCH, ACT), -1.0, 1.0)),
        "old_std": np.exp(data.draw(S.arrays((BATCH, ACT), -2.0, 0.5))) + 0.1,
    }
    return {k: v.astype(dtype) for k, v in d.items()}


CRITIC_KW = dict(kind="hlgauss", v_min=V_MIN, v_max=V_MAX, num_bins=BINS, sigma=SIGMA,
                 aux_mult=1.0)


@functools.lru_cache(maxsize=None)
def _jax_grad_fn(norm, mode):
    """One jitted function per (norm, mode); α, β, kl_target are traced values."""
    import jax

    from reppo_jax import distributions as D
    from reppo_jax import losses as L
    from reppo_jax.networks import Actor, Critic

    actor = Actor(ACT, HIDDEN, 3, norm)
    critic = Critic(HIDDEN, 2, 2, 2, BINS, norm)

    @jax.jit
    def grads(pa, pc, b, alpha, beta, kl_target):
        def critic_loss(pc):
            q_out, z = critic.apply({"params": pc}, b["obs"], b["act"])
            pe, pr = critic.apply({"params": pc}, z, method=Critic.predict)
            return L.critic_loss(q_out, b["targets"], pe, b["next_emb"], pr, b["rewards"],
                                 **CRITIC_KW)[0]

        def actor_loss(pa):
            mean, raw = actor.apply({"params": pa}, b["obs"])
            std = D.policy_std(raw, 0.1)
            a, pre = D.tanh_gaussian_sample(mean, std, b["noise"])
            lp = D.tanh_gaussian_log_prob(mean, std, pre)
            q = L.q_value(critic.apply({"params": pc}, b["obs"], a)[0], "hlgauss", V_MIN, V_MAX,
                          BINS)
            kl = D.kl_estimate(b["old_mean"], b["old_std"], mean, std, b["kl_noise"])
            return L.actor_loss(q, lp, kl, alpha, beta, kl_target, mode)[0]

        (lc, gc), (la, ga) = (jax.value_and_grad(critic_loss)(pc),
                              jax.value_and_grad(actor_loss)(pa))
        return lc, gc, la, ga

    return grads


def _jax_grads(p, b, norm, mode, alpha, beta, kl_target):
    import jax.numpy as jnp

    from reppo_jax.networks import flatten, nest

    b = {k: jnp.asarray(v) for k, v in b.items()}
    pj = {k: jnp.asarray(v) for k, v in p.items()}
    dt = b["obs"].dtype
    lc, gc, la, ga = _jax_grad_fn(norm, mode)(nest(pj, "actor"), nest(pj, "critic"), b,
                                              jnp.asarray(alpha, dt), jnp.asarray(beta, dt),
                                              jnp.asarray(kl_target, dt))
    return float(lc), flatten(gc, "critic"), float(la), flatten(ga, "actor")


def _torch_grads(p, b, norm, mode, alpha, beta, kl_target):
    import torch

    from reppo_torch import distributions as D
    from reppo_torch import losses as L
    from reppo_torch.networks import Actor, Critic, named_canonical_parameters

    dt = torch.float32 if b["obs"].dtype == np.float32 else torch.float64
    actor = Actor.from_canonical(p, norm, dtype=dt)
    critic = Critic.from_canonical(p, norm, OBS, dtype=dt)
    t = {k: torch.from_numpy(v.copy()) for k, v in b.items()}
    q_out, z = critic(t["obs"], t["act"])
    pe, pr = critic.predict(z)
    lc = L.critic_loss(q_out, t["targets"], pe, t["next_emb"], pr, t["rewards"], **CRITIC_KW)[0]
    lc.backward()
    gc = {n: (q.grad.T if tr else q.grad).numpy().copy()
          for n, q, tr in named_canonical_parameters(critic)}
    critic.zero_grad()
    for q in critic.parameters():
        q.requires_grad_(False)
    mean, raw = actor(t["obs"])
    std = D.policy_std(raw, 0.1)
    a, pre = D.tanh_gaussian_sample(mean, std, t["noise"])
    lp = D.tanh_gaussian_log_prob(mean, std, pre)
    q = L.q_value(critic(t["obs"], a)[0], "hlgauss", V_MIN, V_MAX, BINS)
    kl = D.kl_estimate(t["old_mean"], t["old_std"], mean, std, t["kl_noise"])
    la = L.actor_loss(q, lp, kl, alpha, beta, kl_target, mode)[0]
    la.backward()
    ga = {n: (q.grad.T if tr else q.grad).numpy().copy()
          for n, q, tr in named_canonical_parameters(actor)}
    return float(lc.detach()), gc, float(la.detach()), ga


@pytest.mark.parametrize("norm", NORMS)
@settings(max_examples=max(5, settings.default.max_examples * 2 // 5))  # ci: 10, thorough: 200
@given(seed=seeds, data=st.data(), mode=st.sampled_from(S.KL_MODES),
       alpha=S.multipliers, beta=S.multipliers, kl_target=st.sampled_from((1e-3, 0.1, 10.0)))
def test_loss_gradients_per_parameter(dtype, norm, seed, data, mode, alpha, beta, kl_target):
    for name in ("jax", "torch"):
        if not BACKENDS[name].available():
            pytest.skip(BACKENDS[name].skip_reason())
    p = _net_params(make_params(seed, norm, dtype))
    b = _batch(data, dtype)
    with BACKENDS["jax"].precision(dtype):
        jl = _jax_grads(p, b, norm, mode, alpha, beta, kl_target)
    tl = _torch_grads(p, b, norm, mode, alpha, beta, kl_target)
    for (jg, tg, what) in ((jl[1], tl[1], "critic"), (jl[3], tl[3], "actor")):
        assert sorted(jg) == sorted(tg), f"{what} grad names differ: {sorted(jg)} vs {sorted(tg)}"
        g_scale = max(float(np.max(np.abs(g))) for g in tg.values())
        for k in tg:
            assert_close(jg[k], tg[k], dtype, "network_grad", g_scale,
                         f"d {what} loss / d {k}: jax vs torch")
    # loss values last, so that a constant offset (no gradient) cannot hide gradient checks
    assert_close(jl[0], tl[0], dtype, "network", 1.0, "critic loss jax vs torch",
                 check_dtype=False)
    assert_close(jl[2], tl[2], dtype, "network", 1.0 + alpha * 10 + beta * 10,
                 "actor loss jax vs torch", check_dtype=False)
