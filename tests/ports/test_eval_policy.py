"""``run.eval_policy`` in both continuous ports, one test parametrised by backend (D-REPPO's:
tests/jax/test_discrete.py): 'mode' plays tanh(μ) and 'sample' draws tanh(μ + σ·ξ) — checked
against the toy bandit's known expected reward for a policy set by hand (μ = 0, σ = 1) — a
sampled evaluation is a function of its key/seed alone, and the choice changes a run's eval
lines only, never its training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reppo_common.driver import TIMING_KEYS
from spec.backend import TrainHooks
from spec.config import apply_overrides
from spec.presets import preset_config

BACKENDS = ("jax", "torch")
EPISODES = 64
HORIZON = 50  # the toy bandit's episode length
TARGET_SCALE, REWARD_SCALE = 0.75, 1.75  # reward 1 − mean(((a − 0.75·c) / 1.75)²), c ~ U[−1, 1]


def _config(backend: str, policy: str, **extra):
    over = {"env.name": "toy/Bandit", "env.v_min": 0.0, "env.v_max": 10.0,
            "run.eval_episodes": EPISODES, "run.eval_policy": policy, **extra}
    if backend == "torch":
        over["run.device"] = "cpu"
    return apply_overrides(preset_config("tiny"), over)


class _Port:
    """One backend's trainer on the toy bandit: ``evaluate(flat params, i)`` runs the
    evaluation with the i-th key (JAX) / seed (torch); ``train(cfg)`` a short run."""

    def __init__(self, backend: str) -> None:
        pytest.importorskip(backend)
        self.backend = backend
        if backend == "jax":
            from reppo_jax import train as T
            from reppo_jax.envs.toy import make_toy_env
        else:
            from reppo_torch import train as T
            from reppo_torch.envs.toy import make_toy_env
        self.T, self.make_env = T, make_toy_env

    def trainer(self, cfg):
        return self.T.make_trainer(cfg, self.make_env(cfg.rollout.num_envs),
                                   self.make_env(cfg.run.eval_episodes))

    def evaluate(self, trainer, flat, i: int) -> dict:
        if self.backend == "jax":
            import jax

            return trainer.evaluate(self.T.state_from_canonical(trainer.h, flat),
                                    jax.random.PRNGKey(i))
        state = self.T.state_from_canonical(trainer.config, trainer.h, flat, trainer.device)
        return trainer.evaluate(state, i)

    def train(self, cfg) -> list[dict]:
        seen: list[dict] = []
        self.T.train(cfg, None, TrainHooks(on_train_metrics=seen.append,
                                           on_eval_metrics=seen.append),
                     env=self.make_env(cfg.rollout.num_envs),
                     eval_env=self.make_env(cfg.run.eval_episodes))
        return seen


def _fixed_policy(port: _Port, trainer, cfg) -> dict:
    """Initial parameters with the actor's output layer set to μ = 0, σ = 1 in every state."""
    flat = dict(port.T.canonical_init(cfg, trainer.h, cfg.run.seed))
    last = max(int(k.split("/")[2]) for k in flat if k.startswith("actor/layers/"))
    kernel, bias = f"actor/layers/{last}/kernel", f"actor/layers/{last}/bias"
    a = trainer.h.action_dim
    assert flat[bias].shape == (2 * a,) and cfg.actor.min_std < 1.0
    flat[kernel] = np.zeros_like(flat[kernel])
    flat[bias] = np.concatenate([np.zeros(a), np.full(a, math.log(1.0 - cfg.actor.min_std))]
                                ).astype(flat[bias].dtype)
    return flat


def _expected_reward(e_a2: float) -> float:
    """Expected per-step reward of an action with E[a] = 0, E[a²] = e_a2, independent of the
    context: 1 − (E[a²] + 0.75²·E[c²]) / 1.75² with E[c²] = 1/3."""
    return 1.0 - (e_a2 + TARGET_SCALE ** 2 / 3.0) / REWARD_SCALE ** 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_plays_pi_and_mode_plays_tanh_mu(backend):
    port = _Port(backend)
    x, w = np.polynomial.hermite_e.hermegauss(80)
    e_tanh2 = float(np.sum(w * np.tanh(x) ** 2) / math.sqrt(2 * math.pi))  # E tanh(ξ)², ≈ 0.394
    results = {}
    for policy in ("mode", "sample"):
        cfg = _config(backend, policy)
        trainer = port.trainer(cfg)
        flat = _fixed_policy(port, trainer, cfg)
        results[policy] = [port.evaluate(trainer, flat, i)
                           for i in ((0,) if policy == "mode" else (0, 0, 1))]
    mode, sample = results["mode"], results["sample"]
    # 64 episodes x 50 steps x 2 action dims: the standard error of the mean reward is ~0.002
    assert mode[0]["eval/return_mean"] / HORIZON == pytest.approx(_expected_reward(0.0),
                                                                  abs=0.01)
    assert sample[0]["eval/return_mean"] / HORIZON == pytest.approx(_expected_reward(e_tanh2),
                                                                    abs=0.01)
    assert sample[0] == sample[1]  # the same key/seed evaluates the same way
    assert sample[2]["eval/return_mean"] != sample[0]["eval/return_mean"]
    assert all(r["eval/episodes"] == EPISODES for r in mode + sample)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_policy_changes_the_eval_lines_only(backend):
    """Evaluations draw from their own stream: a run's training metrics are identical whichever
    policy it evaluates (every iteration here), its eval lines are not."""
    port = _Port(backend)
    per_iter = 64  # tiny preset: 8 envs x 8 steps
    runs = {policy: port.train(_config(backend, policy, **{
        "rollout.total_env_steps": 3 * per_iter, "run.eval_interval": per_iter}))
        for policy in ("mode", "sample")}

    def lines(seen, kind):
        return [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in seen
                if any(k.startswith(kind) for k in m)]

    assert lines(runs["mode"], "train/") == lines(runs["sample"], "train/")
    assert len(lines(runs["mode"], "train/")) == 3
    ev_mode, ev_sample = lines(runs["mode"], "eval/"), lines(runs["sample"], "eval/")
    assert [m["env_steps"] for m in ev_mode] == [m["env_steps"] for m in ev_sample] == [
        64, 128, 192]
    assert all(a["eval/return_mean"] != b["eval/return_mean"]
               for a, b in zip(ev_mode, ev_sample))
