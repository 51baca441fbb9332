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
            print(f"{m.name:24s} {m.path:32s} {m.description}")
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
            print(f"{r[1]:8s} {m.name:24s} {r[2]:6.0f} s  {m.description}  [{r[3]}]", flush=True)
            shutil.rmtree(tree, ignore_errors=True)
    killed = sum(r[1] == "killed" for r in results)
    print(f"\n{killed}/{len(results)} mutations killed")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
