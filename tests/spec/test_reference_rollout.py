"""Known truths of ``spec.reference.rollout`` (the layer-4 reference), checked without any port."""

import numpy as np

from parity_tests.scripted_env import NumpyScriptedEnv, draw_script
from spec.params import init_params, param_layout
from spec.reference import distributions as D
from spec.reference import networks as N
from spec.reference import rollout as R
from spec.reference.losses import q_value
from spec.reference.normalization import normalize, running_stats_init

OBS, ACT, T, NENV = 3, 2, 6, 4
CFG = R.PolicyConfig(norm="rms", min_std=0.1, value_kind="hlgauss", v_min=-10.0, v_max=10.0,
                     num_bins=11, normalize_obs=True)


def _params(seed=0):
    layout = param_layout(OBS, ACT, critic_hidden=8, actor_hidden=8, num_encoder_layers=2,
                          num_head_layers=2, num_pred_layers=2, actor_layers=2, num_bins=11,
                          critic_norm="rms", actor_norm="rms")
    return init_params(np.random.default_rng(seed), layout, v_min=-10.0, v_max=10.0, sigma=1.5,
                       logit_prior_scale=40.0, alpha_init=1.0, beta_init=1.0)


def _run(pattern, seed=0):
    p = _params(seed)
    script = draw_script(seed, pattern, T, NENV, OBS)
    rng = np.random.default_rng(seed)
    eps, eps_boot = rng.standard_normal((2, T, NENV, ACT))
    out = R.collect_rollout(p, p, running_stats_init(OBS), script.init_obs,
                            NumpyScriptedEnv(script).step, eps, eps_boot, CFG)
    return p, script, eps_boot, out


def test_bootstrap_input_is_the_next_policy_input_where_no_episode_ended():
    """Statistics are updated before x′ is normalised, so where an episode goes on, the bootstrap
    value at step t is Q at the very input the policy sees at step t + 1."""
    p, script, eps_boot, (batch, episodes, _, _) = _run("sparse")
    for t in range(T - 1):
        x_next = batch["obs"][t + 1]
        mean, raw = N.actor_forward(p, x_next, "rms")
        a, _ = D.tanh_gaussian_sample(mean, D.policy_std(raw, 0.1), eps_boot[t])
        q_out, z = N.critic_forward(p, x_next, a, "rms")
        q = q_value(q_out, "hlgauss", -10.0, 10.0, 11)
        live = ~episodes["done"][t]
        np.testing.assert_allclose(batch["next_value"][t][live], q[live], rtol=1e-12)
        np.testing.assert_allclose(batch["next_emb"][t][live], z[live], rtol=1e-12)


def test_terminated_and_truncated_steps_bootstrap_from_the_final_observation():
    """Where every step ends an episode, the bootstrap input is the final observation (not the
    post-reset one the next step starts from)."""
    p, script, eps_boot, (batch, episodes, stats, _) = _run("all_truncated")
    assert episodes["done"].all()
    x = normalize(script.final_obs[-1], stats)
    mean, raw = N.actor_forward(p, x, "rms")
    a, pre = D.tanh_gaussian_sample(mean, D.policy_std(raw, 0.1), eps_boot[-1])
    np.testing.assert_allclose(batch["next_log_prob"][-1],
                               D.tanh_gaussian_log_prob(mean, D.policy_std(raw, 0.1), pre),
                               rtol=1e-12)


def test_metrics_of_a_rollout_without_ended_episodes():
    _, _, _, (batch, episodes, _, _) = _run("none")
    tgt = R.iteration_targets(batch, 0.0, 0.9, 0.8)
    m = R.rollout_metrics(batch, tgt, episodes)
    assert m["rollout/episodes"] == 0.0 and m["rollout/episode_return"] == 0.0
    assert m["rollout/reward"] == np.mean(batch["reward"])


def test_targets_with_lambda_zero_are_one_step_soft_returns():
    _, _, _, (batch, _, _, _) = _run("mixed")
    log_alpha, gamma = -1.0, 0.9
    g = R.iteration_targets(batch, log_alpha, gamma, 0.0)
    live = 1.0 - batch["terminated"]
    expected = batch["reward"] - live * gamma * np.exp(log_alpha) * batch["next_log_prob"] \
        + gamma * live * batch["next_value"]
    np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-12)


def test_discrete_actions_follow_the_gumbel_max_rule():
    """A Gumbel draw far above the others picks its action whatever the logits."""
    layout = param_layout(OBS, 4, critic_hidden=8, actor_hidden=8, num_encoder_layers=2,
                          num_head_layers=2, num_pred_layers=2, actor_layers=2, num_bins=11,
                          critic_norm="rms", actor_norm="rms", action_space="discrete")
    p = init_params(np.random.default_rng(1), layout, v_min=-10.0, v_max=10.0, sigma=1.5,
                    logit_prior_scale=40.0, alpha_init=1.0, beta_init=1.0, num_bins=11)
    script = draw_script(1, "mixed", T, NENV, OBS)
    chosen = np.random.default_rng(2).integers(0, 4, (T, NENV))
    gumbel = np.zeros((T, NENV, 4))
    np.put_along_axis(gumbel, chosen[..., None], 1e6, axis=-1)
    batch, _, _, _ = R.collect_discrete_rollout(p, p, running_stats_init(OBS), script.init_obs,
                                                NumpyScriptedEnv(script, discrete=True).step,
                                                gumbel, CFG)
    np.testing.assert_array_equal(batch["action"], chosen)
    lp = batch["next_log_prob"]  # −H of a 4-way categorical: in [−log 4, 0]
    assert (lp <= 0).all() and (lp >= -np.log(4) - 1e-12).all()
