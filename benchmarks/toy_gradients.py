"""Score-function vs pathwise gradient estimators on a 2-D toy objective (paper §2.2, App. D.1).

    python -m benchmarks.toy_gradients --backend jax|torch --out results/toy/fig2.png [--seed 0]
        [--steps 200] [--lr 0.05] [--zoom-paths 100] [--var-draws 2000] [--json PATH]

A Gaussian N(μ, diag σ²) is moved to maximise J(μ, σ) = E_{x~N(μ,σ²)}[g(x)], where g is the
*negated* six-hump camel function (the paper minimises the camel function, i.e. maximises g), with
five samples per step and one of these update directions:

* ``score``: the score-function (REINFORCE) estimator of eq. (1), mean_i g(x_i) ∇ log N(x_i);
* ``pathwise``: the pathwise estimator of eq. (3) through the true g, mean_i ∇ g(μ + σ ξ_i);
* ``surrogate-weak`` / ``surrogate-strong``: eq. (3) through a 3-layer, 16-unit MLP fitted once,
  before the optimisation, on 32 (inaccurate) or 1,024 (accurate) uniform samples of g;
* for the 8-step zoom (Figure 2b) also ``is``: samples drawn once at the start of the 8 steps and
  reused with the importance weight π_θ/π_θ0, and ``clipped-is``: the PPO clipped objective
  min(r g, clip(r, 1 ± 0.2) g) on those samples.

Panel (a) shows J along each method's run (exact: g is a polynomial, so J has a closed form under
a diagonal Gaussian, :func:`expected_objective`) and the paths of μ over the contour of g. Panel
(b) shows 100 independent 8-step paths of each zoom method from the same point in the middle of
the trajectory. The printed table gives, per method, the variance of the update direction at
that point: ``grad var`` = tr Cov[ĝ_μ] over ``--var-draws`` independent 5-sample estimates, its
bias ‖E ĝ_μ − ∇_μ J‖ against the exact gradient and mean cosine to it, and ``step var`` = tr Cov
of the μ-update over the 100 zoom paths, averaged over the 8 steps (the only measure that sees
sample reuse, so the one reported for ``is`` / ``clipped-is``).

Paper setup followed: six-hump camel, start close to the global optimum, 3-layer 16-unit MLP
surrogates fitted on 32 and 1,024 samples, 5 samples per step, a learning rate for which the
true-g pathwise estimator learns reliably, 100 eight-step zoom paths from the middle of the
trajectory, reuse of one sample set under (clipped) importance sampling.

Choices the paper does not state (ours):

* g = −camel, so that "maximise" and "global optimum" agree; optimum g* = 1.0316 at
  ±(0.0898, −0.7126). Start μ₀ = (0.7, −0.15), σ₀ = 0.1 in both dims.
* Σ = diag σ², σ = exp(ρ) + min_std with min_std = 0.05 (the spec's ``policy_std``); samples are
  the spec's reparameterisation μ + σ ξ (the pre-squash point of ``tanh_gaussian_sample``; no
  tanh, the toy's x is unbounded) and log-densities the spec's ``gaussian_log_prob``, from the
  chosen backend's mirror of ``spec.reference.distributions`` (autodiff needs the backend).
* Plain gradient ascent on (μ, ρ) with one learning rate, 0.05. In a 5-seed sweep over
  0.01 / 0.03 / 0.05 / 0.1 (200 steps, this start; run with these estimators' analytic
  gradients in numpy) the true-g pathwise run ended at J = 0.92, 0.94, 0.94–0.95 and 0.90–0.96
  in every seed, while the score estimator diverged to the domain's edge in 0/5, 0/5, 3/5 and
  5/5 seeds (the paper: "a learning rate which allows the ground-truth pathwise gradient to
  learn reliably"; smaller steps help the score estimator). μ is projected onto the camel
  function's usual domain [−3, 3] × [−2, 2] and ρ clipped to σ ≤ 1 + min_std, so a diverging
  score-function run stays finite. No baseline / control variate for the score estimators
  (eq. 1 as printed; the appendix mentions one only as an aside).
* 200 steps. "The middle of the trajectory" for the zoom: the point of the exact-gradient ascent
  path (closed-form ∇J, no noise) at half its arc length, so that every zoom method starts from
  the same, deterministic point while the mean is still moving (at lr 0.05 the exact path is
  within 0.02 of the optimum after 10 steps, so a step-count middle would only show jitter).
* Surrogate: 2 → 16 → 16 → 16 → 1 with SiLU (REPPO's activation), uniform init U(±1/√fan_in)
  from a numpy seed (identical in both backends), targets standardised, full-batch Adam (lr 2e-2,
  1,000 steps), data uniform on the plotted window [−2, 2] × [−1.2, 1.2].
* Common random numbers: every method sees the same standard-normal draws at a given step, all
  drawn from one numpy generator, so the two backends give the same numbers up to float32
  rounding.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


MAIN_METHODS = ("score", "pathwise", "surrogate-weak", "surrogate-strong")
"""Methods of panel (a)."""
ZOOM_METHODS = ("score", "is", "clipped-is", "pathwise")
"""Methods of panel (b), in the paper's order (Reinforce, IS, clipped IS, PPG)."""
ALL_METHODS = ("score", "is", "clipped-is", "pathwise", "surrogate-weak", "surrogate-strong")
LABELS = {
    "score": "score function (REINFORCE)",
    "is": "score + importance sampling",
    "clipped-is": "score + clipped IS (PPO)",
    "pathwise": "pathwise, true g",
    "surrogate-weak": "pathwise, weak surrogate (32)",
    "surrogate-strong": "pathwise, strong surrogate (1024)",
}
COLORS = {"score": "tab:red", "is": "tab:purple", "clipped-is": "tab:orange",
          "pathwise": "tab:blue", "surrogate-weak": "tab:olive", "surrogate-strong": "tab:green"}

G_STAR = 1.031628453489877
"""max g = −min camel."""
OPTIMA = np.array([[0.08984201, -0.71265640], [-0.08984201, 0.71265640]])
DOMAIN = ((-3.0, 3.0), (-2.0, 2.0))
"""Projection box for μ (the camel function's usual search domain)."""
WINDOW = ((-2.0, 2.0), (-1.2, 1.2))
"""Plot window and surrogate-data region."""


@dataclass
class ToyConfig:
    """Every number of the experiment (see the module docstring for which ones are ours)."""

    seed: int = 0
    steps: int = 200
    lr: float = 0.05
    num_samples: int = 5
    init_mean: tuple[float, float] = (0.7, -0.15)
    init_std: float = 0.1
    min_std: float = 0.05
    max_std: float = 1.0
    weak_samples: int = 32
    strong_samples: int = 1024
    hidden: int = 16
    layers: int = 3
    fit_steps: int = 1000
    fit_lr: float = 2e-2
    zoom_paths: int = 100
    zoom_steps: int = 8
    zoom_start: int | None = None
    clip_eps: float = 0.2
    var_draws: int = 2000


    @property
    def rho_bounds(self) -> tuple[float, float]:
        return (float(np.log(1e-4)), float(np.log(self.max_std)))

    def init_rho(self) -> np.ndarray:
        return np.full(2, np.log(self.init_std - self.min_std), np.float32)


# ----------------------------------------------------------------------------------------------
# The objective, in closed form where it helps (numpy, float64)
# ----------------------------------------------------------------------------------------------


def camel(x: Any) -> Any:
    """Six-hump camel function on the last dim; arithmetic only, so numpy, JAX and torch arrays
    all work (the backends differentiate through it)."""
    a, b = x[..., 0], x[..., 1]
    a2, b2 = a * a, b * b
    return a2 * (4.0 - 2.1 * a2 + a2 * a2 / 3.0) + a * b + b2 * (-4.0 + 4.0 * b2)


def objective(x: Any) -> Any:
    """g(x) = −camel(x): the function the Gaussian is moved to maximise."""
    return -camel(x)


def _moments(m: np.ndarray, s: np.ndarray):
    """E[x²], E[x⁴], E[x⁶] of N(m, s²) and their (∂/∂m, ∂/∂s)."""
    m2, s2 = m * m, s * s
    e2 = m2 + s2
    e4 = m2 * m2 + 6 * m2 * s2 + 3 * s2 * s2
    e6 = m2 ** 3 + 15 * m2 * m2 * s2 + 45 * m2 * s2 * s2 + 15 * s2 ** 3
    d2 = (2 * m, 2 * s)
    d4 = (4 * m ** 3 + 12 * m * s2, 12 * m2 * s + 12 * s ** 3)
    d6 = (6 * m ** 5 + 60 * m ** 3 * s2 + 90 * m * s2 * s2,
          30 * m2 * m2 * s + 180 * m2 * s ** 3 + 90 * s ** 5)
    return (e2, e4, e6), (d2, d4, d6)


def expected_objective(mu: np.ndarray,
                       std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact J(μ, σ) = E[g(x)], x ~ N(μ, diag σ²), with ∂J/∂μ and ∂J/∂σ (leading dims free).

    g is a polynomial, so J follows from the Gaussian moments E[x²] = m² + s²,
    E[x⁴] = m⁴ + 6m²s² + 3s⁴, E[x⁶] = m⁶ + 15m⁴s² + 45m²s⁴ + 15s⁶ and E[x₀x₁] = m₀m₁.
    """
    mu = np.asarray(mu, np.float64)
    std = np.asarray(std, np.float64)
    (a2, a4, a6), (da2, da4, da6) = _moments(mu[..., 0], std[..., 0])
    (b2, b4, _), (db2, db4, _) = _moments(mu[..., 1], std[..., 1])
    e_camel = 4 * a2 - 2.1 * a4 + a6 / 3 + mu[..., 0] * mu[..., 1] - 4 * b2 + 4 * b4
    d_mu = np.stack([4 * da2[0] - 2.1 * da4[0] + da6[0] / 3 + mu[..., 1],
                     -4 * db2[0] + 4 * db4[0] + mu[..., 0]], -1)
    d_std = np.stack([4 * da2[1] - 2.1 * da4[1] + da6[1] / 3, -4 * db2[1] + 4 * db4[1]], -1)
    return -e_camel, -d_mu, -d_std


# ----------------------------------------------------------------------------------------------
# Backends: gradient estimators and surrogate fitting with the framework's autodiff
# ----------------------------------------------------------------------------------------------


def surrogate_init(cfg: ToyConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """[W1, b1, ..., W4, b4] for 2 → hidden ×layers → 1, U(±1/√fan_in) (float32)."""
    sizes = [2] + [cfg.hidden] * cfg.layers + [1]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        params.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        params.append(rng.uniform(-bound, bound, (fan_out,)).astype(np.float32))
    return params


class Backend:
    """What the experiment needs from a framework. Arrays in and out are numpy float32."""

    name = "?"

    def fit_surrogate(self, params: list[np.ndarray], x: np.ndarray, y: np.ndarray,
                      steps: int, lr: float) -> Any:  # pragma: no cover - interface
        """Fit the MLP to (x, y) by full-batch Adam on the MSE; returns a surrogate handle."""
        raise NotImplementedError

    def surrogate_values(self, surrogate: Any, x: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def gradients(self, method: str, mu: np.ndarray, rho: np.ndarray, noise: np.ndarray,
                  anchor: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                  surrogate: Any = None) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        """Per-row ascent direction (∂/∂μ, ∂/∂ρ) of ``method``'s estimate, rows independent.

        mu, rho: (B, 2); noise: (B, n, 2) fresh draws (score / pathwise / surrogates); for
        ``is`` / ``clipped-is``, ``anchor`` = (μ₀, ρ₀, ξ₀): the samples x = μ₀ + σ₀ ξ₀ were drawn
        from the start-of-zoom policy and are reused (noise is then ignored).
        """
        raise NotImplementedError

    def gradients_many(self, methods: tuple[str, ...], mu: np.ndarray, rho: np.ndarray,
                       noise: np.ndarray,
                       anchor: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                       surrogates: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`gradients` for several methods at once on the same draws (common random
        numbers): mu, rho (M, B, 2), one row block per method; noise (B, n, 2) shared.
        Returns (M, B, 2) arrays. The default loops; a backend may fuse the methods."""
        outs = [self.gradients(m, mu[i], rho[i], noise, anchor, surrogates.get(m))
                for i, m in enumerate(methods)]
        return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])


class JaxBackend(Backend):
    """JAX: ``jax.grad`` through ``reppo_jax.distributions`` (the spec's mirror)."""

    name = "jax"

    def __init__(self, cfg: ToyConfig) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        from reppo_jax import distributions as D

        self.jax, self.jnp, self.optax, self.D = jax, jnp, optax, D
        self.cfg = cfg
        self._grad_fns: dict[tuple, Callable] = {}

    def _mlp(self, params, x):
        jnp, jax = self.jnp, self.jax
        h = x
        n = len(params) // 2
        for i in range(n):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < n - 1:
                h = jax.nn.silu(h)
        return h[..., 0]

    def fit_surrogate(self, params, x, y, steps, lr):
        jax, jnp, optax = self.jax, self.jnp, self.optax
        y_mean, y_std = float(y.mean()), float(y.std())
        xs, ys = jnp.asarray(x), jnp.asarray((y - y_mean) / y_std, jnp.float32)
        opt = optax.adam(lr)
        p = [jnp.asarray(w) for w in params]

        def loss(p):
            return jnp.mean((self._mlp(p, xs) - ys) ** 2)

        def step(carry, _):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=steps))(p)
        return (p, jnp.float32(y_mean), jnp.float32(y_std))

    def _surrogate(self, surrogate, x):
        p, y_mean, y_std = surrogate
        return y_mean + y_std * self._mlp(p, x)

    def surrogate_values(self, surrogate, x):
        return np.asarray(self._surrogate(surrogate, self.jnp.asarray(x, self.jnp.float32)))

    def _per_row(self, method: str) -> Callable:
        """The scalar objective of one row whose gradient in (μ, ρ) is ``method``'s estimate."""
        jax, jnp, D, cfg = self.jax, self.jnp, self.D, self.cfg
        eps = cfg.clip_eps

        def per_row(mu, rho, noise, mu0, rho0, noise0, surrogate):
            std = D.policy_std(rho, cfg.min_std)
            if method in ("score", "pathwise", "surrogate-weak", "surrogate-strong"):
                _, x = D.tanh_gaussian_sample(mu, std, noise)  # x = μ + σξ (pre-squash point)
                if method == "score":
                    x = jax.lax.stop_gradient(x)
                    return jnp.mean(objective(x) * D.gaussian_log_prob(mu, std, x))
                if method == "pathwise":
                    return jnp.mean(objective(x))
                return jnp.mean(self._surrogate(surrogate, x))
            std0 = D.policy_std(rho0, cfg.min_std)
            _, x = D.tanh_gaussian_sample(mu0, std0, noise0)
            ratio = jnp.exp(D.gaussian_log_prob(mu, std, x) - D.gaussian_log_prob(mu0, std0, x))
            adv = objective(x)
            if method == "is":
                return jnp.mean(ratio * adv)
            return jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - eps, 1 + eps) * adv))

        return per_row

    def _row_grads(self, method: str) -> Callable:
        """Per-row (∂/∂μ, ∂/∂ρ), vmapped over rows (the surrogate is shared)."""
        jax = self.jax
        return jax.vmap(jax.grad(self._per_row(method), argnums=(0, 1)),
                        in_axes=(0, 0, 0, 0, 0, 0, None))

    def _many_fn(self, methods: tuple[str, ...]) -> Callable:
        """One jitted function for all ``methods``: one compilation per (methods, shape) instead
        of one per method, which dominates the run time on a CPU."""
        if methods in self._grad_fns:
            return self._grad_fns[methods]
        jnp = self.jnp
        grads = [self._row_grads(m) for m in methods]

        def many(mu, rho, noise, mu0, rho0, noise0, surrogates):
            outs = [g(mu[i], rho[i], noise, mu0, rho0, noise0, surrogates.get(m))
                    for i, (m, g) in enumerate(zip(methods, grads))]
            return jnp.stack([o[0] for o in outs]), jnp.stack([o[1] for o in outs])

        fn = self.jax.jit(many)
        self._grad_fns[methods] = fn
        return fn

    def gradients_many(self, methods, mu, rho, noise, anchor, surrogates):
        mu0, rho0, noise0 = anchor if anchor is not None else (mu[0], rho[0], noise)
        sur = {m: surrogates[m] for m in methods if m in surrogates}
        g_mu, g_rho = self._many_fn(tuple(methods))(mu, rho, noise, mu0, rho0, noise0, sur)
        return np.asarray(g_mu), np.asarray(g_rho)

    def gradients(self, method, mu, rho, noise, anchor=None, surrogate=None):
        sur = {method: surrogate} if surrogate is not None else {}
        g_mu, g_rho = self.gradients_many((method,), mu[None], rho[None], noise, anchor, sur)
        return g_mu[0], g_rho[0]


class TorchBackend(Backend):
    """PyTorch: ``torch.autograd`` through ``reppo_torch.distributions`` (the spec's mirror)."""

    name = "torch"

    def __init__(self, cfg: ToyConfig) -> None:
        import torch

        from reppo_torch import distributions as D

        self.torch, self.D, self.cfg = torch, D, cfg
        torch.set_num_threads(1)

    def _t(self, a):
        return self.torch.as_tensor(np.asarray(a, np.float32))

    def _mlp(self, params, x):
        F = self.torch.nn.functional
        h = x
        n = len(params) // 2
        for i in range(n):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < n - 1:
                h = F.silu(h)
        return h[..., 0]

    def fit_surrogate(self, params, x, y, steps, lr):
        torch = self.torch
        y_mean, y_std = float(y.mean()), float(y.std())
        xs, ys = self._t(x), self._t((y - y_mean) / y_std)
        p = [self._t(w).clone().requires_grad_(True) for w in params]
        opt = torch.optim.Adam(p, lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((self._mlp(p, xs) - ys) ** 2)
            loss.backward()
            opt.step()
        return ([w.detach() for w in p], y_mean, y_std)

    def _surrogate(self, surrogate, x):
        p, y_mean, y_std = surrogate
        return y_mean + y_std * self._mlp(p, x)

    def surrogate_values(self, surrogate, x):
        with self.torch.no_grad():
            return self._surrogate(surrogate, self._t(x)).numpy()

    def gradients(self, method, mu, rho, noise, anchor=None, surrogate=None):
        torch, D, cfg = self.torch, self.D, self.cfg
        eps = cfg.clip_eps
        mu_t = self._t(mu).requires_grad_(True)
        rho_t = self._t(rho).requires_grad_(True)
        std = D.policy_std(rho_t, cfg.min_std)[:, None, :]
        m = mu_t[:, None, :]
        if method in ("score", "pathwise", "surrogate-weak", "surrogate-strong"):
            _, x = D.tanh_gaussian_sample(m, std, self._t(noise))
            if method == "score":
                x = x.detach()
                per_sample = objective(x) * D.gaussian_log_prob(m, std, x)
            elif method == "pathwise":
                per_sample = objective(x)
            else:
                per_sample = self._surrogate(surrogate, x)
        else:
            mu0, rho0, noise0 = (self._t(a) for a in anchor)
            std0 = D.policy_std(rho0, cfg.min_std)[:, None, :]
            _, x = D.tanh_gaussian_sample(mu0[:, None, :], std0, noise0)
            lp0 = D.gaussian_log_prob(mu0[:, None, :], std0, x)
            ratio = torch.exp(D.gaussian_log_prob(m, std, x) - lp0)
            adv = objective(x)
            if method == "is":
                per_sample = ratio * adv
            else:
                per_sample = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
        # rows are independent, so the gradient of the sum of row means is each row's gradient
        g_mu, g_rho = torch.autograd.grad(per_sample.mean(dim=1).sum(), (mu_t, rho_t))
        return g_mu.numpy(), g_rho.numpy()


def make_backend(name: str, cfg: ToyConfig) -> Backend:
    """'jax' or 'torch'."""
    if name == "jax":
        return JaxBackend(cfg)
    if name == "torch":
        return TorchBackend(cfg)
    raise ValueError(f"unknown backend {name!r} (jax or torch)")


# ----------------------------------------------------------------------------------------------
# The experiment (numpy driver, backend-agnostic)
# ----------------------------------------------------------------------------------------------


def _project(cfg: ToyConfig, mu: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([DOMAIN[0][0], DOMAIN[1][0]], np.float32)
    hi = np.array([DOMAIN[0][1], DOMAIN[1][1]], np.float32)
    return (np.clip(mu, lo, hi).astype(np.float32),
            np.clip(rho, *cfg.rho_bounds).astype(np.float32))


def std_of(cfg: ToyConfig, rho: np.ndarray) -> np.ndarray:
    """σ = exp(ρ) + min_std, in numpy (for the closed-form J)."""
    return np.exp(np.asarray(rho, np.float64)) + cfg.min_std


def run_paths(backend: Backend, cfg: ToyConfig, methods: Sequence[str], mu: np.ndarray,
              rho: np.ndarray, noise: np.ndarray,
              surrogates: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Gradient ascent for ``noise.shape[0]`` steps, every method from the same B start rows
    and on the same draws (common random numbers).

    mu, rho: (B, 2) start; noise: (steps, B, n, 2). For ``is`` / ``clipped-is`` the first
    step's draws are the reused sample set. Returns μ and ρ histories, (steps + 1, M, B, 2).
    """
    methods = tuple(methods)
    anchor = (mu, rho, noise[0]) if {"is", "clipped-is"} & set(methods) else None
    mu = np.repeat(mu[None], len(methods), 0)
    rho = np.repeat(rho[None], len(methods), 0)
    mus, rhos = [mu], [rho]
    for t in range(noise.shape[0]):
        g_mu, g_rho = backend.gradients_many(methods, mu, rho, noise[t], anchor, surrogates)
        mu, rho = _project(cfg, mu + cfg.lr * g_mu, rho + cfg.lr * g_rho)
        mus.append(mu)
        rhos.append(rho)
    return np.stack(mus), np.stack(rhos)


def exact_ascent(cfg: ToyConfig, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradient ascent with the exact ∇J (closed form): the noise-free reference path."""
    mu = np.asarray(cfg.init_mean, np.float32)[None]
    rho = cfg.init_rho()[None]
    mus, rhos = [mu], [rho]
    for _ in range(steps):
        _, d_mu, d_std = expected_objective(mu, std_of(cfg, rho))
        d_rho = d_std * np.exp(rho)
        mu, rho = _project(cfg, mu + cfg.lr * d_mu, rho + cfg.lr * d_rho)
        mus.append(mu)
        rhos.append(rho)
    return np.stack(mus)[:, 0], np.stack(rhos)[:, 0]


def middle_of_path(mus: np.ndarray) -> int:
    """Index of the first point at or beyond half the path's arc length."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(mus, axis=0), axis=-1))])
    return int(np.searchsorted(arc, 0.5 * arc[-1]))


def fit_surrogates(backend: Backend, cfg: ToyConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Fit the weak (32-sample) and strong (1,024-sample) surrogates; returns handles, data and
    their RMSE on a 101×61 grid of the window and at the optimum's neighbourhood."""
    lo = np.array([WINDOW[0][0], WINDOW[1][0]])
    hi = np.array([WINDOW[0][1], WINDOW[1][1]])
    out: dict[str, Any] = {}
    gx, gy = np.meshgrid(np.linspace(*WINDOW[0], 101), np.linspace(*WINDOW[1], 61))
    grid = np.stack([gx, gy], -1).reshape(-1, 2).astype(np.float32)
    near = grid[np.linalg.norm(grid - OPTIMA[0], axis=1) < 0.5]
    for name, n in (("surrogate-weak", cfg.weak_samples), ("surrogate-strong", cfg.strong_samples)):
        x = rng.uniform(lo, hi, (n, 2)).astype(np.float32)
        y = objective(x.astype(np.float64)).astype(np.float32)
        handle = backend.fit_surrogate(surrogate_init(cfg, rng), x, y, cfg.fit_steps, cfg.fit_lr)
        def rmse(pts):
            return float(np.sqrt(np.mean((backend.surrogate_values(handle, pts)
                                          - objective(pts)) ** 2)))

        out[name] = {"handle": handle, "x": x, "n": n, "rmse_window": rmse(grid),
                     "rmse_near_opt": rmse(near)}
    return out


def run_experiment(cfg: ToyConfig, backend_name: str = "jax") -> dict[str, Any]:
    """Everything in the figure and the table: main runs, zoom paths and estimator statistics."""
    t0 = time.perf_counter()
    backend = make_backend(backend_name, cfg)
    rng = np.random.default_rng(cfg.seed)
    surrogates = fit_surrogates(backend, cfg, rng)
    t_fit = time.perf_counter() - t0

    handles = {m: surrogates[m]["handle"] for m in ("surrogate-weak", "surrogate-strong")}

    # (a) one run per method from the same start, common random numbers
    noise = rng.standard_normal((cfg.steps, 1, cfg.num_samples, 2)).astype(np.float32)
    mu0 = np.asarray(cfg.init_mean, np.float32)[None]
    rho0 = cfg.init_rho()[None]
    runs = {}
    mus, rhos = run_paths(backend, cfg, MAIN_METHODS, mu0, rho0, noise, handles)
    for i, m in enumerate(MAIN_METHODS):
        J, _, _ = expected_objective(mus[:, i, 0], std_of(cfg, rhos[:, i, 0]))
        runs[m] = {"mu": mus[:, i, 0], "rho": rhos[:, i, 0], "J": J}

    # (b) zoom: common start from the exact-gradient path at the middle of the run
    ex_mu, ex_rho = exact_ascent(cfg, cfg.steps)
    zoom_at = middle_of_path(ex_mu) if cfg.zoom_start is None else cfg.zoom_start
    z_mu, z_rho = ex_mu[zoom_at], ex_rho[zoom_at]
    P = cfg.zoom_paths
    zmu0 = np.repeat(z_mu[None], P, 0)
    zrho0 = np.repeat(z_rho[None], P, 0)
    znoise = rng.standard_normal((cfg.zoom_steps, P, cfg.num_samples, 2)).astype(np.float32)
    zoom = {}
    all_mus, all_rhos = run_paths(backend, cfg, ALL_METHODS, zmu0, zrho0, znoise, handles)
    for i, m in enumerate(ALL_METHODS):
        mus, rhos = all_mus[:, i], all_rhos[:, i]
        steps_mu = np.diff(mus, axis=0)  # (8, P, 2)
        step_var = float(np.mean([np.trace(np.cov(s.T)) for s in steps_mu]))
        end_var = float(np.trace(np.cov(mus[-1].T)))
        J_end, _, _ = expected_objective(mus[-1], std_of(cfg, rhos[-1]))
        zoom[m] = {"mu": mus, "step_var": step_var, "end_var": end_var,
                   "J_end_mean": float(np.mean(J_end)), "J_end_min": float(np.min(J_end))}

    # single-step estimator statistics at the zoom point (IS = score at its first step)
    _, true_mu, true_std = expected_objective(z_mu, std_of(cfg, z_rho))
    vnoise = rng.standard_normal((cfg.var_draws, cfg.num_samples, 2)).astype(np.float32)
    stats = {}
    shape = (len(MAIN_METHODS), cfg.var_draws, 2)
    all_g_mu, all_g_rho = backend.gradients_many(
        MAIN_METHODS, np.broadcast_to(z_mu, shape).copy(), np.broadcast_to(z_rho, shape).copy(),
        vnoise, None, handles)
    for i, m in enumerate(MAIN_METHODS):
        g_mu, g_rho = all_g_mu[i].astype(np.float64), all_g_rho[i]
        cos = (g_mu @ true_mu) / (np.linalg.norm(g_mu, axis=1) * np.linalg.norm(true_mu) + 1e-30)
        stats[m] = {
            "grad_var_mu": float(np.trace(np.cov(g_mu.T))),
            "grad_var_rho": float(np.trace(np.cov(g_rho.astype(np.float64).T))),
            "bias_mu": float(np.linalg.norm(g_mu.mean(0) - true_mu)),
            "cos_mean": float(np.mean(cos)),
        }
    seconds = time.perf_counter() - t0
    return {"config": asdict(cfg), "backend": backend.name, "runs": runs, "zoom": zoom,
            "zoom_start": {"mu": z_mu, "rho": z_rho, "step": zoom_at},
            "true_grad_mu": true_mu, "stats": stats, "surrogates": surrogates,
            "exact_path": ex_mu, "seconds": seconds, "fit_seconds": t_fit}


# ----------------------------------------------------------------------------------------------
# Output: table, figure, json
# ----------------------------------------------------------------------------------------------


def table_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: estimator statistics and run results (None where not defined: the
    single-step statistics of ``is`` / ``clipped-is`` equal the score estimator's, and they have
    no full run)."""
    rows = []
    for m in ALL_METHODS:
        st = res["stats"].get(m, {})
        z = res["zoom"][m]
        run = res["runs"].get(m)
        rows.append({
            "method": m,
            "grad_var_mu": st.get("grad_var_mu"),
            "bias_mu": st.get("bias_mu"),
            "cos_mean": st.get("cos_mean"),
            "step_var": z["step_var"],
            "end_var": z["end_var"],
            "J_final": float(run["J"][-1]) if run is not None else None,
        })
    return rows


def format_table(res: dict[str, Any]) -> str:
    """Fixed-width text table of :func:`table_rows`."""
    cfg = res["config"]
    zs = res["zoom_start"]
    head = (f"estimators at μ = ({zs['mu'][0]:.3f}, {zs['mu'][1]:.3f}), σ = "
            f"{np.round(np.exp(zs['rho']) + cfg['min_std'], 3).tolist()} (step {zs['step']} of "
            f"the exact-gradient path), {cfg['num_samples']} samples per estimate, lr {cfg['lr']}\n"
            f"grad var = tr Cov[ĝ_μ] over {cfg['var_draws']} estimates; bias = ‖E ĝ_μ − ∇_μ J‖; "
            f"cos = mean cos(ĝ_μ, ∇_μ J); step var = tr Cov of the μ-update over "
            f"{cfg['zoom_paths']} paths, mean of {cfg['zoom_steps']} steps; end var = tr Cov of μ "
            f"after them; J final = J after {cfg['steps']} steps (optimum {G_STAR:.4f} at σ → 0)")
    cols = ["method", "grad var", "bias", "cos", "step var", "end var", "J final"]
    lines = [head, "  ".join(f"{c:>16}" if i == 0 else f"{c:>10}" for i, c in enumerate(cols))]
    for r in table_rows(res):
        vals = [r["grad_var_mu"], r["bias_mu"], r["cos_mean"], r["step_var"], r["end_var"],
                r["J_final"]]
        lines.append(f"{r['method']:>16}  " + "  ".join(
            f"{'—':>10}" if v is None else f"{v:10.3g}" for v in vals))
    ratio = res["stats"]["score"]["grad_var_mu"] / res["stats"]["pathwise"]["grad_var_mu"]
    lines.append(f"score / pathwise gradient variance: {ratio:.3g}x")
    return "\n".join(lines)


def _contour(ax, window, levels=30):
    gx, gy = np.meshgrid(np.linspace(*window[0], 200), np.linspace(*window[1], 160))
    z = objective(np.stack([gx, gy], -1))
    lo = np.percentile(z, 2)
    ax.contourf(gx, gy, np.clip(z, lo, None), levels=levels, cmap="Greys", alpha=0.55)
    ax.contour(gx, gy, np.clip(z, lo, None), levels=levels, colors="k", linewidths=0.2, alpha=0.4)
    ax.plot(*OPTIMA.T, "k*", ms=10, label="global optima")


def make_figure(res: dict[str, Any], out: Path) -> None:
    """Figure 2: (a) J per step and μ paths over g; (b) the 8-step zoom, one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    fig = plt.figure(figsize=(16, 8.5))
    gs = fig.add_gridspec(2, 4, height_ratios=[1.1, 1.0], hspace=0.35, wspace=0.25)
    ax_j = fig.add_subplot(gs[0, :2])
    ax_p = fig.add_subplot(gs[0, 2:])
    for m in MAIN_METHODS:
        r = res["runs"][m]
        ls = "--" if m == "surrogate-strong" else "-"  # it overlaps the true-g pathwise run
        ax_j.plot(r["J"], ls, color=COLORS[m], label=LABELS[m])
        ax_p.plot(r["mu"][:, 0], r["mu"][:, 1], ls, color=COLORS[m], lw=1.3, label=LABELS[m])
    ax_j.axhline(G_STAR, color="k", ls=":", lw=1, label="max g")
    ax_j.set_xlabel("step")
    ax_j.set_ylabel("J(μ, Σ) = E[g(x)]  (exact)")
    lo = min(np.min(res["runs"][m]["J"]) for m in MAIN_METHODS)
    ax_j.set_ylim(max(lo, -3.0) - 0.1, G_STAR + 0.1)
    ax_j.legend(fontsize=8, loc="lower right")
    ax_j.set_title("(a) objective per step")
    _contour(ax_p, WINDOW)
    start = res["runs"]["score"]["mu"][0]
    ax_p.plot(*start, "o", color="k", ms=6, label="start")
    zs = res["zoom_start"]["mu"]
    ax_p.plot(*zs, "s", mfc="none", mec="k", ms=8, label="zoom start")
    ax_p.set_xlim(*WINDOW[0])
    ax_p.set_ylim(*WINDOW[1])
    ax_p.set_title("(a) paths of the mean over g = −camel")
    ax_p.legend(fontsize=7, loc="upper right")

    # shared zoom window: the bulk (98%) of all zoom points, always containing the start
    pts = np.concatenate([res["zoom"][m]["mu"].reshape(-1, 2) for m in ZOOM_METHODS])
    lo_w = np.minimum(np.percentile(pts, 1, axis=0), zs - 0.05)
    hi_w = np.maximum(np.percentile(pts, 99, axis=0), zs + 0.05)
    pad = 0.1 * (hi_w - lo_w)
    window = ((lo_w[0] - pad[0], hi_w[0] + pad[0]), (lo_w[1] - pad[1], hi_w[1] + pad[1]))
    for i, m in enumerate(ZOOM_METHODS):
        ax = fig.add_subplot(gs[1, i])
        _contour(ax, window, levels=20)
        paths = res["zoom"][m]["mu"]  # (9, P, 2)
        ax.add_collection(LineCollection(np.transpose(paths, (1, 0, 2)), colors=COLORS[m],
                                         linewidths=0.6, alpha=0.35))
        ax.plot(paths[-1, :, 0], paths[-1, :, 1], ".", color=COLORS[m], ms=2.5)
        ax.plot(*zs, "s", mfc="none", mec="k", ms=7)
        ax.set_xlim(*window[0])
        ax.set_ylim(*window[1])
        ax.set_title(f"(b) {LABELS[m]}\nstep var {res['zoom'][m]['step_var']:.2g}", fontsize=9)
    fig.suptitle(f"Gradient estimators on the six-hump camel function ({res['backend']}, "
                 f"{res['config']['num_samples']} samples/step, seed {res['config']['seed']})")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def to_json(res: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a result (no arrays of paths, no surrogate handles)."""
    return {
        "backend": res["backend"], "config": res["config"], "seconds": res["seconds"],
        "zoom_start": {k: np.asarray(v).tolist() for k, v in res["zoom_start"].items()},
        "true_grad_mu": np.asarray(res["true_grad_mu"]).tolist(),
        "table": table_rows(res),
        "final_mu": {m: res["runs"][m]["mu"][-1].tolist() for m in MAIN_METHODS},
        "surrogates": {k: {kk: v[kk] for kk in ("n", "rmse_window", "rmse_near_opt")}
                       for k, v in res["surrogates"].items()},
    }


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, ToyConfig]:
    d = ToyConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("jax", "torch"), default="jax")
    p.add_argument("--out", default="results/toy_gradients/fig2.png", help="PNG path of Figure 2")
    p.add_argument("--json", default=None, help="numbers as JSON (default: --out with .json)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--samples", type=int, default=d.num_samples, help="samples per step")
    p.add_argument("--zoom-paths", type=int, default=d.zoom_paths)
    p.add_argument("--zoom-start", type=int, default=None,
                   help="step of the exact-gradient path where the zoom starts (default: the "
                        "point at half its arc length)")
    p.add_argument("--var-draws", type=int, default=d.var_draws)
    p.add_argument("--fit-steps", type=int, default=d.fit_steps)
    a = p.parse_args(argv)
    cfg = ToyConfig(seed=a.seed, steps=a.steps, lr=a.lr, num_samples=a.samples,
                    zoom_paths=a.zoom_paths, zoom_start=a.zoom_start, var_draws=a.var_draws,
                    fit_steps=a.fit_steps)
    return a, cfg


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run, print the table, write the PNG and the JSON; returns the JSON dict."""
    args, cfg = parse_args(argv)
    res = run_experiment(cfg, args.backend)
    out = Path(args.out)
    make_figure(res, out)
    summary = to_json(res)
    json_path = Path(args.json) if args.json else out.with_suffix(".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=1))
    print(format_table(res))
    for k, v in summary["surrogates"].items():
        print(f"{k}: {v['n']} samples, RMSE {v['rmse_window']:.3f} on the window, "
              f"{v['rmse_near_opt']:.3f} within 0.5 of the optimum")
    print(f"backend {res['backend']}: {res['seconds']:.1f} s (surrogate fits "
          f"{res['fit_seconds']:.1f} s); figure {out}, numbers {json_path}")
    return summary


if __name__ == "__main__":
    main()
