"""Layer 4 on a real simulator: dmc/CartpoleBalance through the JAX bridge.

Both ports run the rollout on the same mujoco_playground environment — JAX on
``reppo_jax.envs.make_env`` directly, torch on ``reppo_torch.envs.jax_bridge.JaxBridgeEnv``
wrapping the same JAX env (each step's outputs handed over by DLPack) — from identical canonical
parameters, observation statistics, env state (the same reset key) and explicit noise. A short
time limit (5 steps) with random episode offsets puts truncations at different steps inside the
8-step rollout, so the true final observation (bootstrap input) and the post-reset observation
(next policy input, statistics update) differ where it matters.

Compared (float32 only: the bridge hands float32 over; layer-4 tolerance): every batch field,
the episode bookkeeping, the updated statistics, the carried observation and the targets of
each port against ``spec.reference.rollout.collect_rollout`` replaying the env outputs recorded
at the bridge, and JAX against torch; then one whole iteration per port from the same start:
the ``rollout/*`` metrics against ``spec.reference.rollout.rollout_metrics`` and the ports'
agent states and ``train/*`` metrics against each other (``test_layer4_iteration.check_states``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from parity_tests.backends import BACKENDS
from parity_tests import test_layer4_iteration as L4
from parity_tests.test_layer4_iteration import FIELDS, check_rollout_metrics, check_states
from parity_tests.tolerance import assert_close, eps
from spec.hyper import Hyper
from spec.params import init_params, param_layout
from spec.reference import normalization as RNorm
from spec.reference import rollout as RR

pytestmark = pytest.mark.slow

TASK, N_ENVS, STEPS, MAX_EPISODE_STEPS, RESET_SEED = "dmc/CartpoleBalance", 4, 8, 5, 3
HIDDEN, BINS, K, EPOCHS, MINIBATCHES = 16, 11, 4, 2, 2
MB = N_ENVS * STEPS // MINIBATCHES
V_MIN, V_MAX = -10.0, 10.0
SIGMA = 0.75 * (V_MAX - V_MIN) / (BINS - 1)
NORM = "rms"
DTYPE = np.dtype(np.float32)
LOGS = np.asarray([-1.0, -0.5], DTYPE)


def _require_both():
    for name in ("jax", "torch"):
        if not BACKENDS[name].available():
            pytest.skip(BACKENDS[name].skip_reason())
    pytest.importorskip("mujoco_playground")


@functools.lru_cache(maxsize=None)
def _jax_env():
    from reppo_jax.envs import make_env

    return make_env(TASK, N_ENVS, max_episode_steps=MAX_EPISODE_STEPS,
                    random_episode_offsets=True)


@functools.lru_cache(maxsize=None)
def _jax_reset():
    """The env's reset, jitted (eagerly it dispatches hundreds of small programs)."""
    import jax

    return jax.jit(_jax_env().reset)


def check_stats_obs(port, stats, obs, r_stats, r_obs, dtype):
    """``test_layer4_iteration.check_stats_obs`` with the carried observation compared at
    the rollout tolerance instead of bit for bit: the JAX rollout steps the physics inside its
    own compiled scan, the bridge in a separately compiled step, and XLA may round the two
    programs' physics differently (observed: ≤ 1 ulp of the state per step)."""
    scale = float(np.max(np.abs(r_stats.mean))) + float(np.max(r_stats.var))
    assert_close(stats.mean, r_stats.mean, dtype, "rollout", scale, f"{port} stats.mean")
    assert_close(stats.var, r_stats.var, dtype, "rollout", scale, f"{port} stats.var")
    assert stats.count == pytest.approx(r_stats.count, rel=4 * eps(dtype)), f"{port} stats.count"
    assert_close(obs, r_obs, dtype, "rollout", float(np.max(np.abs(r_obs))) + 1.0,
                 f"{port} carried obs")


def check_rollout(port, fields, episodes, stats, obs, tgt, ref, dtype):
    """``test_layer4_iteration.check_rollout`` with :func:`check_stats_obs` above."""
    r_batch, r_ep, r_stats, r_obs, r_tgt = ref
    L4.check_rollout(port, fields, episodes, stats, r_obs, tgt,
                     (r_batch, r_ep, stats, r_obs, r_tgt), dtype)
    check_stats_obs(port, stats, obs, r_stats, r_obs, dtype)


def make_hyper(obs_dim: int, action_dim: int) -> Hyper:
    return Hyper(obs_dim=obs_dim, action_dim=action_dim, num_envs=N_ENVS, num_steps=STEPS,
                 num_minibatches=MINIBATCHES, num_epochs=EPOCHS, gamma=0.9, lam=0.8,
                 v_min=V_MIN, v_max=V_MAX, num_bins=BINS, sigma=SIGMA, value_kind="hlgauss",
                 aux_mult=1.0, min_std=0.1, kl_target=0.1, kl_mode="full", kl_samples=K,
                 entropy_target=-0.5 * action_dim, normalize_obs=True, actor_lr=3e-4,
                 critic_lr=1e-3, multiplier_lr=3e-3, max_grad_norm=0.5,
                 multiplier_max_grad_norm=0.7, actor_gradient="pathwise")


def make_params(obs_dim: int, action_dim: int) -> dict[str, np.ndarray]:
    layout = param_layout(obs_dim, action_dim, critic_hidden=HIDDEN, actor_hidden=HIDDEN,
                          num_encoder_layers=2, num_head_layers=2, num_pred_layers=2,
                          actor_layers=3, num_bins=BINS, critic_norm=NORM, actor_norm=NORM,
                          value_kind="hlgauss", value_layers=0)
    rng = np.random.default_rng(0)
    p = init_params(rng, layout, v_min=V_MIN, v_max=V_MAX, sigma=SIGMA, logit_prior_scale=40.0,
                    alpha_init=1.0, beta_init=1.0, dtype=np.float64)
    for k, v in p.items():  # non-trivial biases and norm scales
        if k.endswith("/bias") or k.endswith("/norm/scale"):
            p[k] = v + 0.3 * rng.standard_normal(v.shape)
    return {k: np.asarray(v, DTYPE) for k, v in p.items() if k.startswith(("actor/", "critic/"))}


def make_noise(action_dim: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    n = N_ENVS * STEPS
    return {"action": rng.standard_normal((STEPS, N_ENVS, action_dim)).astype(DTYPE),
            "bootstrap": rng.standard_normal((STEPS, N_ENVS, action_dim)).astype(DTYPE),
            "perm": np.stack([rng.permutation(n) for _ in range(EPOCHS)]).astype(np.int64),
            "actor": rng.standard_normal((EPOCHS, MINIBATCHES, MB, action_dim)).astype(DTYPE),
            "kl": rng.standard_normal((EPOCHS, MINIBATCHES, K, MB, action_dim)).astype(DTYPE)}


def _part(p, prefix):
    return {k: v for k, v in p.items() if k.startswith(prefix + "/")}


# ---- JAX ---------------------------------------------------------------------------------------

def _jax_carry(h, params, stats):
    import jax
    import jax.numpy as jnp

    from reppo_jax import agent as A
    from reppo_jax.networks import nest

    env = _jax_env()
    a_opt, c_opt, m_opt = A.optimizers(h)
    ja, jc = nest(_part(params, "actor"), "actor"), nest(_part(params, "critic"), "critic")
    lg = jnp.asarray(LOGS)
    agent = A.AgentState(ja, jc, lg[0], lg[1], a_opt.init(ja), c_opt.init(jc), m_opt.init(lg),
                         BACKENDS["jax"].array(stats), None, None)
    env_state, obs = _jax_reset()(jax.random.PRNGKey(RESET_SEED))
    return A.Carry(agent, env_state, obs, jax.random.key(0))


def jax_run(h, params, stats, noise):
    import jax
    import jax.numpy as jnp

    from reppo_jax import agent as A
    from reppo_jax.networks import Actor, Critic, flatten
    from parity_tests.test_layer3_update import _jax_adam

    env = _jax_env()
    nets = A.Nets(Actor(h.action_dim, HIDDEN, 3, NORM), Critic(HIDDEN, 2, 2, 2, BINS, NORM),
                  None)
    carry0 = _jax_carry(h, params, stats)
    init_obs = np.asarray(carry0.obs)

    @jax.jit
    def rollout_targets(carry, noise):
        carry, batch, episodes = A.rollout(nets, h, env, carry, noise)
        return carry, batch, episodes, A.compute_targets(h, carry.agent, batch)

    carry, batch, episodes, tgt = rollout_targets(
        carry0, (jnp.asarray(noise["action"]), jnp.asarray(noise["bootstrap"])))
    rollout = ({f: np.asarray(getattr(batch, f)) for f in FIELDS},
               {k: np.asarray(v) for k, v in episodes.items()},
               BACKENDS["jax"].numpy(carry.agent.obs_stats), np.asarray(carry.obs),
               {"target": np.asarray(tgt)})
    jn = {k: jnp.asarray(v.astype(np.int32) if k == "perm" else v) for k, v in noise.items()}
    carry, info = jax.jit(A.make_iteration(nets, h, env))(carry0, jn)
    ag = carry.agent
    state = {"params": {**flatten(ag.actor, "actor"), **flatten(ag.critic, "critic")},
             "logs": np.asarray([ag.log_alpha, ag.log_beta]), "moments": {},
             "stats": BACKENDS["jax"].numpy(ag.obs_stats), "obs": np.asarray(carry.obs),
             "env_return": np.asarray(carry.env_state.episode_return),
             "env_length": np.asarray(carry.env_state.episode_length),
             "info": {k: float(v) for k, v in info.items()}}
    for prefix, opt_state in (("actor", ag.actor_opt), ("critic", ag.critic_opt)):
        adam = _jax_adam(opt_state)
        mu, nu = flatten(adam.mu, prefix), flatten(adam.nu, prefix)
        state["moments"].update({k: (mu[k], nu[k]) for k in mu})
    adam = _jax_adam(ag.mult_opt)
    state["moments"]["multipliers"] = (np.asarray(adam.mu), np.asarray(adam.nu))
    return init_obs, rollout, state


# ---- torch -------------------------------------------------------------------------------------

class _Recorder:
    """Delegates to the bridge env and keeps a numpy copy of every step's outputs (the inputs
    the reference replays)."""

    def __init__(self, env):
        self.env, self.steps = env, []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, action):
        out = self.env.step(action)
        self.steps.append(RR.EnvStep(
            obs=out.obs.numpy().copy(), reward=out.reward.numpy().copy(),
            terminated=out.terminated.numpy().copy(), truncated=out.truncated.numpy().copy(),
            final_obs=out.final_obs.numpy().copy(),
            episode_return=out.info["episode_return"].numpy().copy(),
            episode_length=out.info["episode_length"].numpy().astype(np.int32)))
        return out


def _torch_carry(h, params, stats, env):
    import torch

    from reppo_torch import agent as A
    from reppo_torch.networks import Actor, Critic

    ta = Actor.from_canonical(_part(params, "actor"), NORM, dtype=torch.float32)
    tc = Critic.from_canonical(_part(params, "critic"), NORM, h.obs_dim, dtype=torch.float32)
    beh = Actor.from_canonical(_part(params, "actor"), NORM,
                               dtype=torch.float32).requires_grad_(False)
    lg = torch.nn.Parameter(torch.tensor(LOGS))
    a_opt, c_opt, m_opt = A.optimizers(h, ta, tc, lg, None)
    agent = A.AgentState(ta, tc, lg, a_opt, c_opt, m_opt, BACKENDS["torch"].array(stats))
    obs = env.reset(RESET_SEED)
    return A.Carry(agent, obs, A.Streams.from_seed(0, torch.device("cpu")), beh)


def torch_run(h, params, stats, noise):
    import torch

    from reppo_torch import agent as A
    from reppo_torch.envs.jax_bridge import JaxBridgeEnv
    from reppo_torch.networks import named_canonical_parameters, to_canonical

    env = _Recorder(JaxBridgeEnv(_jax_env()))
    carry = _torch_carry(h, params, stats, env)
    init_obs = carry.obs.numpy().copy()
    carry, batch, episodes = A.rollout(h, env, carry, (torch.from_numpy(noise["action"]),
                                                       torch.from_numpy(noise["bootstrap"])))
    tgt = A.compute_targets(h, carry.agent, batch)
    rollout = ({f: getattr(batch, f).numpy() for f in FIELDS},
               {k: v.numpy() for k, v in episodes.items()},
               BACKENDS["torch"].numpy(carry.agent.obs_stats), carry.obs.numpy(),
               {"target": tgt.numpy()})
    recorded = list(env.steps)
    carry = _torch_carry(h, params, stats, env)  # the same start: reset with the same key
    carry, info = A.make_iteration(h, env)(carry, {k: torch.from_numpy(v)
                                                   for k, v in noise.items()})
    ag = carry.agent
    jstate = env.env.state
    state = {"params": to_canonical({"actor": ag.actor, "critic": ag.critic}),
             "logs": ag.logs.detach().numpy().copy(), "moments": {},
             "stats": BACKENDS["torch"].numpy(ag.obs_stats), "obs": carry.obs.numpy().copy(),
             "env_return": np.asarray(jstate.episode_return),
             "env_length": np.asarray(jstate.episode_length),
             "info": {k: float(v) for k, v in info.items()}}
    for opt, mods in ((ag.actor_opt, {"actor": ag.actor}), (ag.critic_opt, {"critic": ag.critic})):
        for name, p, transposed in named_canonical_parameters(mods):
            m, v = opt.state[p]["exp_avg"].detach(), opt.state[p]["exp_avg_sq"].detach()
            if transposed:
                m, v = m.T, v.T
            state["moments"][name] = (m.numpy().copy(), v.numpy().copy())
    st_ = ag.mult_opt.state[ag.logs]
    state["moments"]["multipliers"] = (st_["exp_avg"].numpy().copy(),
                                       st_["exp_avg_sq"].numpy().copy())
    return init_obs, rollout, state, recorded


# ---- the test ------------------------------------------------------------------------------------

def test_dmc_rollout_and_iteration_through_the_bridge():
    """JAX and torch (bridge) on dmc/CartpoleBalance: the rollout, the targets and one
    iteration against the reference replaying the recorded env outputs, and against each
    other."""
    _require_both()
    from reppo_jax.train import enable_compilation_cache

    # the persistent XLA cache training uses (the bridge enables it anyway): a warm rerun
    # skips the compiles, which are most of this test's time
    enable_compilation_cache()
    env = _jax_env()
    h = make_hyper(env.obs_dim, env.action_dim)
    params = make_params(env.obs_dim, env.action_dim)
    noise = make_noise(env.action_dim)
    import jax

    # statistics of an earlier batch of initial states, so the first normalisation matters
    _, earlier = _jax_reset()(jax.random.PRNGKey(RESET_SEED + 100))
    earlier = np.asarray(earlier, DTYPE)
    stats = RNorm.running_stats_update(RNorm.running_stats_init(env.obs_dim, DTYPE),
                                       earlier + np.linspace(-1.0, 1.0, env.obs_dim, dtype=DTYPE))
    j_obs0, j_roll, j_state = jax_run(h, params, stats, noise)
    t_obs0, t_roll, t_state, recorded = torch_run(h, params, stats, noise)
    np.testing.assert_array_equal(t_obs0, j_obs0, err_msg="the same reset key, other states")
    assert len(recorded) == STEPS
    flags = np.stack([s.truncated for s in recorded])
    # the configuration is meant to exercise truncations at different steps inside the rollout
    assert flags.any() and len({tuple(np.nonzero(c)[0]) for c in flags.T}) > 1, flags
    assert not np.array_equal(recorded[int(np.argmax(flags.any(axis=1)))].obs,
                              recorded[int(np.argmax(flags.any(axis=1)))].final_obs)

    replay = iter(recorded)
    r_batch, r_ep, r_stats, r_obs = RR.collect_rollout(
        _part(params, "actor"), _part(params, "critic"), stats, j_obs0,
        lambda action: next(replay), noise["action"], noise["bootstrap"], RR.PolicyConfig(
            norm=NORM, min_std=h.min_std, value_kind="hlgauss", v_min=V_MIN, v_max=V_MAX,
            num_bins=BINS, normalize_obs=True))
    r_batch.pop("pre_action")
    r_tgt = {"target": RR.iteration_targets(r_batch, float(LOGS[0]), h.gamma, h.lam)}
    ref = (r_batch, r_ep, r_stats, r_obs, r_tgt)
    check_rollout("jax", *j_roll, ref, DTYPE)
    check_rollout("torch", *t_roll, ref, DTYPE)
    # the ports against each other (the JAX env's own outputs reach the batch unreplayed)
    for f in FIELDS:
        x = j_roll[0][f]
        scale = float(np.max(np.abs(x))) + 1.0 if x.dtype.kind == "f" else 0.0
        assert_close(t_roll[0][f], x, DTYPE, "rollout", scale, f"torch vs jax batch.{f}")
    check_stats_obs("torch vs jax", t_roll[2], t_roll[3], j_roll[2], j_roll[3], DTYPE)

    # one iteration from the same start: rollout metrics vs the reference, states vs each other
    ref_metrics = RR.rollout_metrics(r_batch, r_tgt["target"], r_ep)
    for port, st_ in (("jax", j_state), ("torch", t_state)):
        check_rollout_metrics(port, st_["info"], ref_metrics, r_batch, r_tgt["target"], DTYPE, 1)
        check_stats_obs(f"iteration 1 {port}", st_["stats"], st_["obs"], r_stats, r_obs, DTYPE)
    assert sorted(j_state["info"]) == sorted(t_state["info"]), "the ports log different metrics"
    # the carried observations at the rollout tolerance (see check_stats_obs), then the rest of
    # the states with check_states (whose observation check is bit for bit)
    assert_close(t_state["obs"], j_state["obs"], DTYPE, "rollout",
                 float(np.max(np.abs(j_state["obs"]))) + 1.0, "iteration 1 torch vs jax obs")
    check_states(j_state, {**t_state, "obs": j_state["obs"]}, params, LOGS, DTYPE, 1,
                 tag="dmc_iteration")
