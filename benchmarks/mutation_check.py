"""Mutation check for the parity suite: does it notice when a backend's math is wrong?

    python -m benchmarks.mutation_check [--only NAME ...] [--list] [--keep]

For each mutation below the tool copies the working tree (tracked and untracked, not ignored
files) into a temporary directory, applies one small textual change to one backend module — a
constant, a sign, the direction of the KL, the λ recursion — and runs the parity tests that
should catch it (``pytest -x``: stops at the first failure). A mutation is *killed* when the
suite fails, *survived* when it passes. The unmutated tree is run first: if it fails, nothing
can be concluded and the tool stops.

Every mutation must match its source text exactly once; a mutation that no longer applies (the
code moved) is reported as ``stale`` and makes the exit status non-zero, so the list cannot rot
silently. Exit status: 0 when every mutation is killed and the baseline passes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    path: str
    replacements: tuple[tuple[str, str], ...]
    tests: tuple[str, ...] = field(default=("parity_tests",))


LAYER4 = ("parity_tests/test_layer4_iteration.py",)
LAYER4_DISCRETE = ("parity_tests/test_layer4_discrete.py",)
LAYER4_DMC = ("parity_tests/test_layer4_dmc.py",)
LAYER4_DRAWS = ("parity_tests/test_layer4_iteration.py", "-k", "production_draws")
STATS_UPDATE = {
    "jax": "        if h.normalize_obs:\n            stats = running_stats_update(stats, out.obs)\n",
    "torch": "        if h.normalize_obs:\n            stats = shard.running_stats_update(stats, out.obs)\n",
}
EXP = {"jax": "jnp.exp", "torch": "torch.exp"}

MUTATIONS: tuple[Mutation, ...] = (
    Mutation("hlgauss-sigma", "HL-Gauss: erf scaled by 2σ instead of √2·σ (jax)",
             "reppo_jax/hlgauss.py",
             (("(edges - y) / (math.sqrt(2.0) * sigma)", "(edges - y) / (2.0 * sigma)"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("kl-direction", "KL estimate: reverse KL(π‖π_old), samples from π (torch)",
             "reppo_torch/distributions.py",
             (("x = old_mean + old_std * noise", "x = mean + std * noise"),
              ("gaussian_log_prob(old_mean, old_std, x) - gaussian_log_prob(mean, std, x)",
               "gaussian_log_prob(mean, std, x) - gaussian_log_prob(old_mean, old_std, x)")),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("lambda-weights", "TD(λ): λ and 1 − λ swapped in the recursion (jax)",
             "reppo_jax/targets.py",
             (("lam * g_hat + (1.0 - lam) * v", "(1.0 - lam) * g_hat + lam * v"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("truncation-bootstrap", "TD(λ): the λ-chain runs through truncations (jax)",
             "reppo_jax/targets.py",
             (("g_hat = tr * v + (1.0 - tr) * g_next", "g_hat = g_next"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("terminal-entropy-leak", "soft reward: entropy bonus kept at terminations (jax)",
             "reppo_jax/targets.py",
             (("rewards - not_term * gamma * alpha * next_log_probs",
               "rewards - gamma * alpha * next_log_probs"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("obs-norm-eps", "observation normalisation ε 1e-2 → 1e-3 (torch)",
             "reppo_torch/normalization.py",
             (("NORM_EPS = 1e-2", "NORM_EPS = 1e-3"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("kl-switch-at-bound", "actor loss: KL switch uses > instead of ≥ at ε_KL (torch)",
             "reppo_torch/losses.py",
             (("violated = kl >= kl_target", "violated = kl > kl_target"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("beta-loss-sign", "β loss sign flipped (torch)",
             "reppo_torch/losses.py",
             (("return -torch.exp(log_beta) * torch.mean(kl.detach() - kl_target)",
               "return torch.exp(log_beta) * torch.mean(kl.detach() - kl_target)"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("beta-floor-dropped",
             "multiplier step: log β not projected onto the loss.beta_min floor (jax)",
             "reppo_jax/agent.py",
             (("log_beta=project_log_multiplier(logs[1], h.log_beta_min)", "log_beta=logs[1]"),),
             ("parity_tests/test_layer3_update.py", "-k", "beta_floor")),
    Mutation("alpha-floor-dropped",
             "multiplier step: log α not projected onto the loss.alpha_min floor (jax)",
             "reppo_jax/agent.py",
             (("log_alpha=project_log_multiplier(logs[0], floor)", "log_alpha=logs[0]"),),
             ("parity_tests/test_layer3_update.py", "-k", "alpha_floor_binds")),
    Mutation("alpha-fade-dropped",
             "multiplier step: the floor of loss.alpha_min_fade_steps not faded, log α "
             "projected onto the constant loss.alpha_min floor (jax)",
             "reppo_jax/agent.py",
             (("if h.alpha_min_fade_iterations > 0:", "if False:"),),
             ("parity_tests/test_layer3_update.py", "-k", "alpha_floor_fades")),
    Mutation("tanh-jacobian-const", "tanh log-det Jacobian with log 2.1 instead of log 2 (jax)",
             "reppo_jax/distributions.py",
             (("LOG2 = math.log(2.0)", "LOG2 = math.log(2.1)"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("gae-truncation-chain", "GAE: the advantage chain runs through truncations (torch)",
             "reppo_torch/targets.py",
             (("chain = live * (1.0 - truncated.to(r.dtype))", "chain = live"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("score-baseline-self", "score estimator: baseline includes the sample itself (jax)",
             "reppo_jax/losses.py",
             (("return (jnp.sum(q, axis=0, keepdims=True) - q) / (k - 1)",
               "return jnp.mean(q, axis=0, keepdims=True)"),),
             ("parity_tests/test_layer1_primitives.py",)),
    Mutation("ppo-advantage-std", "PPO: advantages normalised by the Bessel-corrected std (torch)",
             "reppo_torch/losses.py",
             (("torch.std(adv, correction=0)", "torch.std(adv)"),),
             ("parity_tests/test_layer1_primitives.py",)),
    # ---- layer 4: the rollout, the targets and the iteration (one port each) ------------------
    *(m for port in ("jax", "torch") for m in (
        Mutation(f"{port}-bootstrap-post-reset-obs",
                 f"rollout: bootstrap from the post-reset instead of the true final obs ({port})",
                 f"reppo_{port}/agent.py",
                 (("x_next = _norm(h, stats, out.final_obs)", "x_next = _norm(h, stats, out.obs)"),),
                 LAYER4),
        Mutation(f"{port}-norm-before-stats-update",
                 f"rollout: x_(t+1) normalised before the statistics update ({port})",
                 f"reppo_{port}/agent.py",
                 ((STATS_UPDATE[port] + "        x_next = _norm(h, stats, out.final_obs)\n",
                   "        x_next = _norm(h, stats, out.final_obs)\n" + STATS_UPDATE[port]),),
                 LAYER4),
        Mutation(f"{port}-stats-from-final-obs",
                 f"rollout: statistics updated with the final instead of the post-reset obs "
                 f"({port})", f"reppo_{port}/agent.py",
                 ((STATS_UPDATE[port], STATS_UPDATE[port].replace("out.obs", "out.final_obs")),),
                 LAYER4),
        Mutation(f"{port}-soft-reward-alpha",
                 f"targets: soft rewards scaled with β instead of α ({port})",
                 f"reppo_{port}/agent.py",
                 ((f'"""Soft TD(λ) targets, once per iteration, with α at rollout time."""\n'
                   f"    alpha = {EXP[port]}(agent.log_alpha)",
                   f'"""Soft TD(λ) targets, once per iteration, with α at rollout time."""\n'
                   f"    alpha = {EXP[port]}(agent.log_beta)"),),
                 LAYER4),
    )),
    Mutation("jax-episodes-terminated-only",
             "rollout metrics: only terminations count as ended episodes (jax)",
             "reppo_jax/agent.py",
             (('ep = {"done": jnp.logical_or(out.terminated, out.truncated),',
               'ep = {"done": out.terminated,'),), LAYER4),
    Mutation("jax-kl-against-current-actor",
             "update: the KL/behaviour terms use the current actor instead of the snapshot θ′ "
             "(jax)", "reppo_jax/agent.py",
             (("return minibatch_step(nets, h, opts, agent, behaviour, mb, noise, kl_noise)",
               "return minibatch_step(nets, h, opts, agent, agent.actor, mb, noise, kl_noise)"),),
             LAYER4),
    Mutation("jax-episode-return-no-floor",
             "rollout metrics: mean episode return divided by a count that may be 0 (jax)",
             "reppo_jax/agent.py",
             (('jnp.sum(done * episodes["return"]) / jnp.maximum(n_done, 1),',
               'jnp.sum(done * episodes["return"]) / n_done,'),), LAYER4),
    Mutation("torch-carry-final-obs",
             "rollout: the next step starts from the final instead of the post-reset obs (torch)",
             "reppo_torch/agent.py",
             (("        obs = out.obs\n    cols = ", "        obs = out.final_obs\n    cols = "),),
             LAYER4),
    Mutation("jax-bootstrap-reuses-action-key",
             "rollout: the bootstrap action drawn with the executed action's key (jax)",
             "reppo_jax/agent.py",
             (("jax.random.normal(k_boot, n_mean.shape) if eps is None",
               "jax.random.normal(k_act, n_mean.shape) if eps is None"),), LAYER4_DRAWS),
    Mutation("torch-bootstrap-from-action-stream",
             "rollout: the bootstrap action drawn from the executed action's stream (torch)",
             "reppo_torch/agent.py",
             (("shard.randn(n_mean.shape, streams.bootstrap, n_mean.device)",
               "shard.randn(n_mean.shape, streams.action, n_mean.device)"),), LAYER4_DRAWS),
    Mutation("torch-episodes-terminated-only",
             "rollout metrics: only terminations count as ended episodes (torch)",
             "reppo_torch/agent.py",
             (("next_log_prob, next_emb, out.terminated | out.truncated,",
               "next_log_prob, next_emb, out.terminated,"),), LAYER4),
    Mutation("torch-snapshot-after-update", "iteration: θ′ snapshot taken after the update (torch)",
             "reppo_torch/agent.py",
             (("        snapshot(carry.agent, carry.behaviour)  # θ' fixed for the whole iteration\n",
               ""),
              ("        carry.agent = agent\n        return carry, info",
               "        carry.agent = agent\n        snapshot(carry.agent, carry.behaviour)\n"
               "        return carry, info")), LAYER4),
    Mutation("torch-bootstrap-current-actor",
             "rollout: bootstrap action a′ from the current actor instead of θ′ (torch)",
             "reppo_torch/agent.py",
             (("n_mean, n_std = policy(h, behaviour, x_next)",
               "n_mean, n_std = policy(h, carry.agent.actor, x_next)"),), LAYER4),
    Mutation("bridge-final-obs-post-reset",
             "JAX bridge: hands the post-reset obs over as the final obs at episode ends (torch)",
             "reppo_torch/envs/jax_bridge.py",
             (("[out.obs.astype(jnp.float32), out.final_obs.astype(jnp.float32),",
               "[out.obs.astype(jnp.float32), out.obs.astype(jnp.float32),"),), LAYER4_DMC),
    Mutation("discrete-bootstrap-post-reset-obs",
             "D-REPPO rollout: bootstrap from the post-reset instead of the true final obs (jax)",
             "reppo_jax/discrete/agent.py",
             (("x_next = _norm(h, stats, out.final_obs)", "x_next = _norm(h, stats, out.obs)"),),
             LAYER4_DISCRETE),
    Mutation("discrete-norm-before-stats-update",
             "D-REPPO rollout: x_(t+1) normalised before the statistics update (jax)",
             "reppo_jax/discrete/agent.py",
             ((STATS_UPDATE["jax"] + "        x_next = _norm(h, stats, out.final_obs)\n",
               "        x_next = _norm(h, stats, out.final_obs)\n" + STATS_UPDATE["jax"]),),
             LAYER4_DISCRETE),
    Mutation("discrete-entropy-bonus-sign",
             "D-REPPO rollout: +H instead of −H as the bootstrap log-probability (jax)",
             "reppo_jax/discrete/agent.py",
             (("                          -next_entropy, next_emb)",
               "                          next_entropy, next_emb)"),), LAYER4_DISCRETE),
    Mutation("discrete-kl-against-current-actor",
             "D-REPPO update: the KL term against the current actor instead of θ′ (jax)",
             "reppo_jax/discrete/agent.py",
             (("return minibatch_step(nets, h, opts, agent, behaviour, mb)",
               "return minibatch_step(nets, h, opts, agent, agent.actor, mb)"),), LAYER4_DISCRETE),
)


def copy_tree(dst: Path) -> None:
    """Copy tracked and untracked-but-not-ignored files of the checkout to ``dst``."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, out.decode().split("\0")):
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted in the working tree
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def apply(tree: Path, m: Mutation) -> str | None:
    """Apply ``m`` in ``tree``; returns an error string if a replacement is not unique."""
    path = tree / m.path
    if not path.is_file():
        return f"{m.path} does not exist"
    text = path.read_text()
    for old, new in m.replacements:
        n = text.count(old)
        if n != 1:
            return f"{old!r} occurs {n} times in {m.path} (expected exactly once)"
        text = text.replace(old, new)
    path.write_text(text)
    return None


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "HYPOTHESIS_PROFILE":
           os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True,
                           timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        rc, out = -1, "timeout"
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith("FAILED ")][:1]
    return rc, time.perf_counter() - t0, " | ".join(failed + lines[-1:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None, help="mutation names to run")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per pytest run")
    p.add_argument("--skip-baseline", action="store_true")
    a = p.parse_args(argv)
    names = {m.name for m in MUTATIONS}
    if a.only:
        unknown = sorted(set(a.only) - names)
        if unknown:
            p.error(f"unknown mutation(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    chosen = [m for m in MUTATIONS if not a.only or m.name in a.only]
    if a.list:
        for m in chosen:
            print(f"{m.name:32s} {m.path:30s} {m.description}")
        return 0

    results = []
    with tempfile.TemporaryDirectory(prefix="reppo-mutation-") as tmp:
        if not a.skip_baseline:
            base = Path(tmp) / "baseline"
            copy_tree(base)
            tests = tuple(sorted({t for m in chosen for t in m.tests}))
            rc, dt, last = run_tests(base, tests, a.timeout)
            print(f"baseline (unmutated) {'passes' if rc == 0 else 'FAILS'} in {dt:.0f} s: {last}",
                  flush=True)
            if rc != 0:
                print("error: the unmutated suite fails; fix that first", file=sys.stderr)
                return 2
        for m in chosen:
            tree = Path(tmp) / m.name
            copy_tree(tree)
            err = apply(tree, m)
            if err:
                results.append((m, "stale", 0.0, err))
            else:
                rc, dt, last = run_tests(tree, m.tests, a.timeout)
                status = "killed" if rc not in (0, -1) else ("timeout" if rc == -1 else "SURVIVED")
                results.append((m, status, dt, last))
            r = results[-1]
            print(f"{r[1]:8s} {m.name:32s} {r[2]:6.0f} s  {m.description}  [{r[3]}]", flush=True)
            shutil.rmtree(tree, ignore_errors=True)
    killed = sum(r[1] == "killed" for r in results)
    print(f"\n{killed}/{len(results)} mutations killed")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
