"""The shared training loop (reppo_common.driver) with a framework-free port: cadence of
iterations, evaluations and checkpoints, stops, the NaN guard and resumed starts."""

from __future__ import annotations

import math

import pytest

from reppo_common.driver import Schedule, Start, run_loop
from reppo_common.errors import TrainingDiverged
from spec.backend import TrainHooks
from spec.config import apply_overrides, ReppoConfig


def config(total: int, eval_interval: int, ckpt_interval: int) -> ReppoConfig:
    return apply_overrides(ReppoConfig(), {"rollout.num_envs": 10, "rollout.num_steps": 10,
                                           "rollout.num_minibatches": 1,
                                           "rollout.total_env_steps": total,
                                           "run.eval_interval": eval_interval,
                                           "run.checkpoint_interval": ckpt_interval})


class FakePort:
    """Counts iterations in the carry; records evaluations and saves."""

    def __init__(self, per_iter: int = 100, bad_at: int | None = None, evaluates: bool = True):
        self.steps_per_iteration = per_iter
        self.bad_at, self.evaluates = bad_at, evaluates
        self.evals: list[tuple[int, int]] = []   # (carry, index)
        self.saves: list[dict] = []
        self.or_calls = 0

    def iterate(self, carry):
        carry += 1
        bad = "train/critic_loss" if carry == self.bad_at else None
        return carry, {"train/critic_loss": float("nan") if bad else 1.0 / carry}, bad

    def evaluate(self, carry, index):
        if not self.evaluates:
            return None
        self.evals.append((carry, index))
        return {"eval/return_mean": float(carry), "eval/episodes": 1}

    def save(self, carry, run_dir, **meta):
        self.saves.append({"carry": carry, **meta})
        return f"ckpt@{meta['iteration']}"

    def any_process(self, flag):
        self.or_calls += 1
        return flag


def test_schedule_from_config():
    plan = Schedule.of(config(1050, 250, 0), 100)
    assert (plan.iterations, plan.eval_every, plan.checkpoint_every) == (10, 2, None)
    assert Schedule.of(config(150, 10, 10), 100) == Schedule(1, 1, 1)  # at least one of each


def test_cadence_metrics_and_result(tmp_path):
    port, train, evals = FakePort(), [], []
    hooks = TrainHooks(on_train_metrics=train.append, on_eval_metrics=evals.append)
    result = run_loop(config(1000, 300, 400), tmp_path, hooks, port, carry=0)
    assert [m["iteration"] for m in train] == list(range(1, 11))
    assert [m["env_steps"] for m in train] == [100 * i for i in range(1, 11)]
    assert math.isnan(train[0]["train/sps"]) and train[2]["train/sps"] > 0
    # every 3rd iteration and the last; indices count evaluations
    assert port.evals == [(3, 0), (6, 1), (9, 2), (10, 3)]
    assert [e["env_steps"] for e in evals] == [300, 600, 900, 1000]
    assert [s["iteration"] for s in port.saves] == [4, 8, 10]
    last = port.saves[-1]
    assert last["eval_return"] == 10.0 and last["best_eval_return"] == 10.0
    assert last["evals_done"] == 4 and last["last_eval"]["eval/return_mean"] == 10.0
    assert port.saves[0]["eval_return"] is None and port.saves[0]["best_eval_return"] == 3.0
    assert (result.env_steps, result.iterations, result.best_eval_return) == (1000, 10, 10.0)
    assert result.compile_s is not None and port.or_calls == 10


def test_sps_excludes_every_compiling_iteration(monkeypatch):
    """An iteration during which the port's ``compile_count()`` grew is timed as compilation
    (``compile_s``), not as throughput, like the process's first iteration; ``train/sps`` is the
    env steps of the other iterations over their time."""
    import reppo_common.driver as D

    clock = {"t": 0.0}
    monkeypatch.setattr(D.time, "perf_counter", lambda: clock["t"])
    durations = {1: 50.0, 2: 1.0, 3: 20.0, 4: 1.0, 5: 3.0}  # iteration 3 recompiles

    class CompilingPort(FakePort):
        compiled = 1

        def iterate(self, carry):
            clock["t"] += durations[carry + 1]
            if carry + 1 == 3:
                self.compiled += 1
            return super().iterate(carry)

        def compile_count(self):
            return self.compiled

    train = []
    result = run_loop(config(500, 10**6, 0), None, TrainHooks(on_train_metrics=train.append),
                      CompilingPort(), carry=0)
    assert [m["compile_s"] for m in train] == [50.0, 50.0, 70.0, 70.0, 70.0]
    assert math.isnan(train[0]["train/sps"])
    assert [m["train/sps"] for m in train[1:]] == [100.0, 100.0, 100.0, 300 / 5.0]
    assert result.compile_s == 70.0


def test_no_run_dir_writes_nothing_and_non_evaluating_process():
    port = FakePort(evaluates=False)
    result = run_loop(config(500, 100, 100), None, None, port, carry=0)
    assert port.saves == [] and result.final_eval == {} and result.best_eval_return is None


def test_stop_checkpoints_and_ends_after_the_iteration(tmp_path):
    port, calls = FakePort(), []

    def should_stop():
        calls.append(1)
        return len(calls) == 2

    result = run_loop(config(1000, 1000, 0), tmp_path, TrainHooks(should_stop=should_stop),
                      port, carry=0)
    assert result.iterations == 2 and result.env_steps == 200
    assert [s["iteration"] for s in port.saves] == [2]


def test_non_finite_emits_metrics_then_raises_without_eval_or_save(tmp_path):
    port, train = FakePort(bad_at=3), []
    with pytest.raises(TrainingDiverged, match=r"train/critic_loss at iteration 3 .*ckpt@2"):
        run_loop(config(1000, 100, 100), tmp_path, TrainHooks(on_train_metrics=train.append),
                 port, carry=0)
    assert train[-1]["iteration"] == 3 and math.isnan(train[-1]["train/critic_loss"])
    assert [c for c, _ in port.evals] == [1, 2] and [s["iteration"] for s in port.saves] == [1, 2]


def test_resumed_start_continues_counters_and_clock(tmp_path):
    port, train = FakePort(), []
    start = Start(iteration=6, best_eval_return=50.0, wall_s=1000.0,
                  last_eval={"eval/return_mean": 6.0}, evals_done=2, checkpoint="ckpt@6")
    result = run_loop(config(1000, 300, 0), tmp_path, TrainHooks(on_train_metrics=train.append),
                      port, carry=6, start=start)
    assert [m["iteration"] for m in train] == [7, 8, 9, 10]
    assert port.evals == [(9, 2), (10, 3)]
    assert result.best_eval_return == 50.0  # the checkpoint's best is kept
    assert port.saves[-1]["wall_s"] >= 1000.0 and port.saves[-1]["evals_done"] == 4


def test_start_from_checkpoint_manifest():
    class Info:
        iteration, best_eval_return, wall_s = 12, 700.0, 33.5
        manifest = {"last_eval": {"eval/return_mean": 690.0}, "extra": {"evals_done": 3}}

    start = Start.from_checkpoint(Info())
    assert (start.iteration, start.best_eval_return, start.wall_s, start.evals_done) == \
        (12, 700.0, 33.5, 3)
    assert start.last_eval == {"eval/return_mean": 690.0}
    Info.manifest = {"extra": None}
    assert Start.from_checkpoint(Info()).evals_done == 0
