"""Multi-device checks that need virtual CPU devices, run by ``tests/jax/test_multidevice.py`` in
a subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=2`` must be set before jax is
imported, so it cannot run inside the pytest process).

Usage: ``python tests/jax/multidevice_check.py equivalence|train|discrete`` prints one JSON
line. ``equivalence`` and ``train`` check the continuous trainer; ``discrete`` runs both checks
for D-REPPO (``reppo_jax.discrete.train.DiscreteTrainer``) in one process.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from reppo_jax.envs.toy import make_toy_env
from reppo_jax.envs.toy_discrete import make_discrete_bandit
from reppo_jax.compile_log import COMPILES
from reppo_jax.train import Trainer, make_trainer as make_jax_trainer, train
from spec.backend import TrainHooks
from spec.config import apply_overrides
from spec.presets import preset_config

NUM_ENVS = 16
RELATIVE_TOLERANCE = 1e-4
"""Agreement of 1-device and 2-device results, relative to each leaf's magnitude: |a − b| ≤
tol · (|b| + max|b| of the leaf). Both runs compute the same float32 program except for the order
of the cross-device reductions (~1e-7 relative per reduction); after the 8 Adam updates of one
iteration the measured disagreement is 4.4e-6 of the leaf magnitude at most (a critic kernel:
Adam's normalisation amplifies rounding where a gradient is tiny), while a gradient that was
not averaged over the devices (each device stepping on its half-minibatch, or the sum instead of
the mean) changes Adam's moments by O(1)."""


def toy_config(devices: int | None, **extra) -> object:
    """A small toy-bandit config: 16 envs × 8 steps, 4 minibatches × 2 epochs, width 32."""
    overrides = {
        "env.name": "toy/BanditTerminate", "env.v_min": 0.0, "env.v_max": 10.0,
        "rollout.num_envs": NUM_ENVS, "rollout.num_steps": 8, "rollout.num_minibatches": 4,
        "rollout.num_epochs": 2, "rollout.total_env_steps": NUM_ENVS * 8 * 4,
        "run.devices": devices, "run.eval_interval": NUM_ENVS * 8 * 2, "run.eval_episodes": 4,
        "run.checkpoint_interval": NUM_ENVS * 8,
    }
    overrides.update(extra)
    return apply_overrides(preset_config("tiny"), overrides)


def make_trainer(devices: int | None, kind: str = "continuous") -> Trainer:
    """Continuous: toy envs with termination (exercises the termination/truncation paths of the
    targets). Discrete: the contextual bandit (3 actions, 5 contexts) with 6-step episodes
    desynchronised by random offsets, so truncations fall inside every rollout."""
    if kind == "discrete":
        cfg = toy_config(devices, **{"env.name": "toy/DiscreteBandit", "env.v_max": 4.0,
                                     "env.gamma": 0.5, "env.normalize_obs": False,
                                     "rollout.lr": 1e-3})
        bandit = {"num_contexts": 5, "num_actions": 3, "max_episode_steps": 6}
        return make_jax_trainer(cfg, make_discrete_bandit(NUM_ENVS, random_episode_offsets=True,
                                                          **bandit),
                                make_discrete_bandit(4, **bandit))
    return make_jax_trainer(toy_config(devices), make_toy_env(NUM_ENVS, terminate_prob=0.1,
                                                     random_episode_offsets=True),
                   make_toy_env(4))


def _float_leaves(tree) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out[jax.tree_util.keystr(path)] = np.asarray(leaf)
    return out


def _replicas_identical(tree) -> bool:
    """Every replicated leaf holds bit-identical values on every device."""
    for leaf in jax.tree.leaves(tree):
        if not leaf.sharding.is_fully_replicated:
            continue
        shards = [np.asarray(s.data) for s in leaf.addressable_shards]
        if not all(np.array_equal(shards[0], s) for s in shards[1:]):
            return False
    return True


def _minibatch_constraints(trainer: Trainer, carry) -> int:
    """Layout hints that split a minibatch axis over the devices in the traced iteration
    (``DataParallel.shard_minibatches``: one ``sharding_constraint`` per minibatch array), found
    by walking the jaxpr and its sub-jaxprs (the scans' bodies). The hint does not change the
    numbers, so the equivalence alone cannot show that the agent's ``update`` applies it."""
    from jax.sharding import PartitionSpec

    from reppo_jax.distributed import ENV_AXIS

    def walk(jaxpr) -> int:
        n = 0
        for eqn in jaxpr.eqns:
            if (eqn.primitive.name == "sharding_constraint"
                    and eqn.params["sharding"].spec == PartitionSpec(None, ENV_AXIS)):
                n += 1
            for v in eqn.params.values():
                for sub in v if isinstance(v, (tuple, list)) else (v,):
                    sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                    if hasattr(sub, "eqns"):
                        n += walk(sub)
        return n

    return walk(jax.make_jaxpr(trainer.iteration)(carry).jaxpr)


def equivalence(kind: str = "continuous") -> dict:
    """One iteration (rollout, targets, 2 epochs × 4 minibatches) on 1 and on 2 devices from the
    same seed: the same batch and noise by construction; compare every agent leaf and metric."""
    assert len(jax.devices()) >= 2, "needs XLA_FLAGS=--xla_force_host_platform_device_count=2"
    one, two = make_trainer(1, kind), make_trainer(2, kind)
    assert one.parallel is None and two.parallel is not None and two.parallel.size == 2
    c0 = one.init(0)
    before = _float_leaves(c0.agent)
    c1, info1 = one.iteration(c0)
    c2 = two.init(0)
    layout = {"obs": str(c2.obs.sharding.spec),
              "obs_shard_rows": [s.data.shape[0] for s in c2.obs.addressable_shards],
              "log_alpha_replicated": bool(c2.agent.log_alpha.sharding.is_fully_replicated)}
    hints = (_minibatch_constraints(one, c1), _minibatch_constraints(two, c2))
    c2, info2 = two.iteration(c2)
    a1, a2 = _float_leaves(c1.agent), _float_leaves(c2.agent)
    worst, worst_name, moved = 0.0, "", 0.0
    for name, ref in a1.items():
        got = a2[name]
        if not np.issubdtype(ref.dtype, np.floating):
            assert np.array_equal(ref, got), name
            continue
        scale = np.abs(ref) + np.max(np.abs(ref))
        rel = float(np.max(np.abs(got - ref) / np.maximum(scale, 1e-30)))
        if rel > worst:
            worst, worst_name = rel, name
        if ".actor" in name or ".critic" in name:
            if name in before and "opt" not in name:
                moved = max(moved, float(np.max(np.abs(ref - before[name]))))
    info_rel = max(abs(float(info1[k]) - float(info2[k])) / (abs(float(info1[k])) + 1e-6)
                   for k in info1)
    return {"worst_rel": worst, "worst_leaf": worst_name, "max_param_move": moved,
            "info_rel": info_rel, "replicas_identical": _replicas_identical(c2.agent),
            "layout": layout, "out_obs_spec": str(c2.obs.sharding.spec),
            "trainer": type(two).__name__, "minibatch_constraints": hints,
            "tolerance": RELATIVE_TOLERANCE}


def train_and_resume(kind: str = "continuous") -> dict:
    """``train()`` on 2 devices with evaluations and a checkpoint per iteration, then a resume
    from iteration 3 to 4: the resumed run's last metrics equal the uninterrupted run's."""
    assert len(jax.devices()) >= 2
    trainer = make_trainer(2, kind)
    cfg = trainer.config
    compiled = (COMPILES.count("guarded"), COMPILES.count("evaluate"))
    with tempfile.TemporaryDirectory() as tmp:
        full, part = [], []
        res = train(cfg, Path(tmp) / "full", TrainHooks(on_train_metrics=full.append),
                    trainer=trainer)
        short = apply_overrides(cfg, {"rollout.total_env_steps": NUM_ENVS * 8 * 3})
        train(short, Path(tmp) / "part", TrainHooks(), trainer=trainer)
        train(cfg, Path(tmp) / "part", TrainHooks(on_train_metrics=part.append), resume=True,
              trainer=trainer)
    drop = ("train/sps", "compile_s", "env_steps", "iteration")
    last_full = {k: v for k, v in full[-1].items() if k not in drop}
    last_part = {k: v for k, v in part[-1].items() if k not in drop}
    return {"iterations": res.iterations, "final_eval": res.final_eval,
            "resumed_iterations": [m["iteration"] for m in part],
            "resume_exact": last_full == last_part,
            # programs built over the three train() calls (8 iterations, 4 evaluations)
            "iteration_compiles": COMPILES.count("guarded") - compiled[0],
            "evaluate_compiles": COMPILES.count("evaluate") - compiled[1],
            "finite": all(np.isfinite(v) for m in full for k, v in m.items() if k not in drop)}


def discrete() -> dict:
    """Both checks for the D-REPPO trainer (one process: one jax start-up for CI)."""
    result = equivalence("discrete")
    result["train"] = train_and_resume("discrete")
    return result


if __name__ == "__main__":
    check = {"equivalence": equivalence, "train": train_and_resume,
             "discrete": discrete}[sys.argv[1]]
    print(json.dumps(check()))
