"""Full-state checkpoints and resume: the properties both framework ports must have in the same
way, one test parametrised by backend instead of a copy per port (the port-specific ones stay in
tests/jax/test_jax_resume.py and tests/torch/test_torch_resume.py).

On CPU, a run resumed from an intermediate checkpoint writes exactly the same subsequent metrics
and bit-identical final checkpoints as the uninterrupted run; the NaN guard stops the run naming
the quantity and keeps the last good checkpoint; corrupt or mismatched checkpoints are refused
with one line. Each backend's uninterrupted toy run is a module-scoped fixture, paid once.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from reppo_common import checkpoints as C
from reppo_common.errors import TrainingDiverged, UserError
from spec.backend import TrainHooks
from spec.config import apply_overrides
from spec.presets import preset_config

STEPS_PER_ITER = 64  # tiny preset: 8 envs x 8 steps
from reppo_common.driver import TIMING_KEYS as TIMING  # noqa: E402
BACKENDS = ("jax", "torch")
OTHER = {"jax": "torch", "torch": "jax"}


def _jax_port() -> SimpleNamespace:
    import jax.numpy as jnp

    from reppo_common.registry import REGISTRY
    from reppo_common.runs import RunDir
    from reppo_jax import checkpoint as CK
    from reppo_jax import train as T
    from reppo_jax.envs.toy import ToyBanditEnv, make_toy_env

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jax"))
    from toy_cli import TOY_SPEC

    class NanAfterEnv(ToyBanditEnv):
        """Toy env whose reward turns NaN from the 17th step of an episode (iteration 3 with 8
        steps per iteration): a stand-in for a diverging simulator."""

        def step(self, state, action, key=None):
            bad = state.episode_length >= 16
            new_state, out = super().step(state, action, key)
            return new_state, out._replace(reward=jnp.where(bad, jnp.nan, out.reward))

    def init_ckpt(tmp_path: Path, monkeypatch):
        """A run directory (config.json, metrics.jsonl) with one checkpoint of the initial
        state; toy/Bandit registered for the test."""
        monkeypatch.setitem(REGISTRY, TOY_SPEC.full_name, TOY_SPEC)
        cfg = toy_config("jax")
        run = RunDir.create(tmp_path / "run", cfg, {"backend": "jax"})
        (run.path / "metrics.jsonl").write_text(
            '{"kind": "train", "env_steps": 64, "wall_s": 1.0}\n')
        carry = T.make_trainer(cfg).init(cfg.run.seed)
        info = CK.save_state(run.path, cfg, carry, CK.eval_key_init(cfg.run.seed), iteration=1,
                             env_steps=STEPS_PER_ITER, wall_s=1.5, eval_return=None,
                             best_eval_return=None, last_eval={})
        return run.path, cfg, info

    return SimpleNamespace(
        train=T.train, make_trainer=T.make_trainer, evaluate_run=T.evaluate_run,
        check_resume=CK.check_resume, make_toy_env=make_toy_env, NanAfterEnv=NanAfterEnv,
        init_ckpt=init_ckpt, extra={},
        # a manifest config edited to match a wider critic: the arrays still refuse it
        wider_arrays_error=r"has carry/agent/critic/.* with shape .* expects",
        versions=("jax", "jaxlib", "flax", "optax", "numpy", "playground", "reppo", "python"),
        state_needles=("carry/agent/actor/", "carry/agent/critic/", "carry/agent/log_alpha",
                       "carry/agent/log_beta", "carry/agent/actor_opt/",
                       "carry/agent/critic_opt/", "carry/agent/mult_opt/",
                       "carry/agent/obs_stats/", "carry/env_state/key",
                       "carry/env_state/step_count", "carry/env_state/episode_return",
                       "carry/obs", "carry/key", "eval_key"))


def _torch_port() -> SimpleNamespace:
    import torch

    from reppo_torch import checkpoint as CK
    from reppo_torch import train as T
    from reppo_torch.envs.toy import ToyBanditEnv, make_toy_env

    class NanAfterEnv(ToyBanditEnv):
        """Reward NaN from the 17th step of an episode on (iteration 3 with 8 steps/iteration)."""

        def step(self, action):
            bad = self._ep_length >= 16
            out = super().step(action)
            return out._replace(reward=torch.where(bad, torch.nan, out.reward))

    def init_ckpt(tmp_path: Path, monkeypatch):
        """A run directory with one checkpoint of the initial state."""
        cfg = toy_config("torch")
        trainer = T.Trainer(cfg)
        carry = trainer.init(cfg.run.seed)
        info = CK.save_state(tmp_path, cfg, carry, trainer.env, iteration=1,
                             env_steps=STEPS_PER_ITER, wall_s=1.0, eval_return=None,
                             best_eval_return=None, last_eval={}, evals_done=0)
        return tmp_path, cfg, info

    return SimpleNamespace(
        train=T.train, make_trainer=T.make_trainer, evaluate_run=T.evaluate_run,
        check_resume=CK.check_resume, make_toy_env=make_toy_env, NanAfterEnv=NanAfterEnv,
        init_ckpt=init_ckpt, extra={"run.device": "cpu"},
        wider_arrays_error=r"parameter 'critic/.*' has shape \(.*32\), expected \(.*64\)",
        versions=("torch",),
        state_needles=("opt/actor/0/exp_avg", "opt/critic/0/exp_avg_sq", "opt/mult/0/step",
                       "streams/action", "streams/bootstrap", "streams/actor", "streams/kl",
                       "streams/shuffle", "obs", "env/generator", "env/step_count"))


_PORTS = {"jax": _jax_port, "torch": _torch_port}
_CACHE: dict[str, SimpleNamespace] = {}


def port_of(backend: str) -> SimpleNamespace:
    """The adapter of one backend, built on first use (a missing framework then skips only its
    half of each test)."""
    if backend not in _CACHE:
        _CACHE[backend] = _PORTS[backend]()
    return _CACHE[backend]


def toy_config(backend: str, iters: int = 12, **extra):
    """The tiny preset on toy/Bandit (for JAX the CLI's config, so the compile cache is
    shared with tests/jax/test_jax_resume.py)."""
    over = {"env.name": "toy/Bandit", "rollout.total_env_steps": iters * STEPS_PER_ITER,
            "run.eval_interval": 4 * STEPS_PER_ITER, "run.checkpoint_interval": 2 * STEPS_PER_ITER,
            "run.keep_checkpoints": 100, **port_of(backend).extra}
    over.update(extra)
    return apply_overrides(preset_config("tiny"), over)


SAMPLED = {"run.eval_policy": "sample"}
"""The full run's evaluations draw their actions from π: resuming it exactly then also shows
that a sampled evaluation's randomness is restored with the checkpoint (the eval key/counter)."""


def _strip(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in TIMING}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    """The backend under test (module scope: pytest orders the tests so each backend's
    module-scoped fixtures are built once)."""
    pytest.importorskip(request.param)
    return request.param


@pytest.fixture(scope="module")
def port(backend) -> SimpleNamespace:
    return port_of(backend)


@pytest.fixture(scope="module")
def full_run(backend, port, tmp_path_factory):
    """An uninterrupted 12-iteration run with every checkpoint kept, plus its metrics."""
    run_dir = tmp_path_factory.mktemp(f"{backend}_full")
    seen: list[dict] = []
    result = port.train(toy_config(backend, **SAMPLED), run_dir,
                        TrainHooks(on_train_metrics=seen.append, on_eval_metrics=seen.append))
    return run_dir, seen, result


def test_resume_from_intermediate_checkpoint_is_exact(backend, port, full_run, tmp_path):
    run_dir, seen, result = full_run
    steps = 6 * STEPS_PER_ITER
    (tmp_path / "checkpoints").mkdir()
    for p in (run_dir / "checkpoints").glob(f"*_{steps:012d}.*"):
        shutil.copy(p, tmp_path / "checkpoints" / p.name)
    resumed: list[dict] = []
    r2 = port.train(toy_config(backend, **SAMPLED), tmp_path,
                    TrainHooks(on_train_metrics=resumed.append, on_eval_metrics=resumed.append),
                    resume=True)
    assert [_strip(m) for m in resumed] == [_strip(m) for m in seen if m["env_steps"] > steps]
    assert r2.env_steps == result.env_steps and r2.best_eval_return == result.best_eval_return
    # the final checkpoints are bit-identical
    last = f"{result.env_steps:012d}"
    for name in (f"params_{last}.npz", f"state_{last}.npz"):
        assert (C.sha256_file(run_dir / "checkpoints" / name)
                == C.sha256_file(tmp_path / "checkpoints" / name)), name


def test_checkpoint_holds_full_state(backend, port, full_run):
    run_dir, _, _ = full_run
    info = C.latest_checkpoint(run_dir / "checkpoints")
    m = info.manifest
    assert m["backend"] == backend and m["iteration"] == 12 and m["env_steps"] == 768
    assert m["wall_s"] > 0 and m["best_eval_return"] is not None
    assert m["eval_return"] == m["last_eval"]["eval/return_mean"]
    for pkg in port.versions:
        assert pkg in m["versions"], pkg
    names = set(C.load_state_arrays(info))
    for needle in port.state_needles:
        assert any(n.startswith(needle) for n in names), needle
    if backend == "torch":
        arrays = C.load_state_arrays(info)
        for needle in port.state_needles:
            assert needle in arrays, needle  # torch names whole arrays, not prefixes
        assert m["extra"]["evals_done"] == 3 and m["extra"]["env_state"] is True
        r = toy_config(backend).rollout
        assert float(arrays["opt/critic/0/step"]) == 12 * r.num_epochs * r.num_minibatches


def test_eval_reads_params_checkpoint(backend, port, full_run):
    run_dir, _, _ = full_run
    out = port.evaluate_run(toy_config(backend), run_dir, 2)
    assert out["eval/episodes"] == 2 and out["eval/return_mean"] > 0


def test_nan_guard_stops_and_keeps_last_good_checkpoint(backend, port, tmp_path):
    cfg = toy_config(backend, iters=6, **{"run.checkpoint_interval": STEPS_PER_ITER})
    seen: list[dict] = []
    with pytest.raises(TrainingDiverged) as e:
        port.train(cfg, tmp_path, TrainHooks(on_train_metrics=seen.append),
                   env=port.NanAfterEnv(8), eval_env=port.make_toy_env(2))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("non-finite rollout/reward at iteration 3 (env_steps 192)"), msg
    assert "state_000000000128.json" in msg
    infos = C.list_checkpoints(tmp_path / "checkpoints")
    assert [c.env_steps for c in infos] == [64, 128]  # nothing of the bad state
    assert not list((tmp_path / "checkpoints").glob("*000000000192*"))
    C.verify_files(infos[-1])
    assert len(seen) == 3  # the bad iteration's metrics are logged for diagnosis


# --------------------------------------------------------------------------------------------
# Refusing corrupt / mismatched checkpoints
# --------------------------------------------------------------------------------------------


@pytest.fixture
def init_ckpt(port, tmp_path, monkeypatch):
    """``(run_dir, config, info)``: a run directory with one checkpoint of the initial state."""
    return port.init_ckpt(tmp_path, monkeypatch)


def _check(port, run_dir, cfg):
    return port.check_resume(run_dir, cfg, port.make_trainer(cfg))


def _rewrite_manifest(info, **changes):
    m = {k: v for k, v in info.manifest.items() if k != "sha256"}
    m.update(changes)
    C.write_manifest(info.manifest_path, m)


def test_refuses_corrupt_state(port, init_ckpt):
    run_dir, cfg, info = init_ckpt
    data = bytearray(info.state_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    info.state_path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"state file .* is corrupt: sha256") as e:
        _check(port, run_dir, cfg)
    assert "\n" not in str(e.value)


def test_refuses_other_backend(backend, port, init_ckpt):
    run_dir, cfg, info = init_ckpt
    other = OTHER[backend]
    _rewrite_manifest(info, backend=other)
    with pytest.raises(UserError, match=f"written by backend '{other}', not '{backend}'.*"
                                        f"--backend {other}"):
        _check(port, run_dir, cfg)


def test_refuses_other_network_sizes(port, init_ckpt):
    run_dir, cfg, info = init_ckpt
    assert cfg.critic.hidden_dim == 32
    wider = apply_overrides(cfg, {"critic.hidden_dim": 64})
    with pytest.raises(UserError, match=r"critic\.hidden_dim=32 in the checkpoint, "
                                        r"critic\.hidden_dim=64"):
        _check(port, run_dir, wider)
    # an edited manifest config that matches: the array shapes still refuse it
    _rewrite_manifest(info, config=wider.to_dict())
    with pytest.raises(UserError, match=port.wider_arrays_error):
        _check(port, run_dir, wider)
