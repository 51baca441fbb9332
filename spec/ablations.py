"""The paper's ablations as data: each is a name, a one-line description and config overrides.

An ablation never selects a code path of its own; it only changes config values, exactly as a
preset does, and is applied on top of the environment's preset (``reppo ablate`` runs
``reppo train --env TASK --<override> ...``). Sources in the paper:

- Appendix E.1 / Figure 10, "Design ablations": remove the HL-Gauss cross-entropy loss
  (``no-hlgauss``: the critic regresses a scalar Q by squared error), layer normalisation
  (``no-norm``), the auxiliary self-predictive loss (``no-aux``) or the KL regularisation of the
  policy update (``no-kl``).
- Section 4.1 / Figure 3, "Score-based and pathwise comparison": ``score`` replaces the pathwise
  term −Q(x, a) of eq. 13 by the score function log π(a|x)[Q(x, a)]_sg ("REPPO (score-based,
  Q)"); ``ppo`` replaces it by PPO's GAE-based clipped objective ("REPPO (score-based, GAE)").
  Both keep the entropy term with its learned α and the KL switch with its learned β (the math is
  in ``spec.reference.losses``).

What "no normalisation" means: E.1 removes "layer normalization", the normalisation inside the
networks that §3.3 ("Layer Normalization") motivates for stable critic learning, i.e. the
RMSNorm of every Linear → Norm → SiLU block (the authors' "norm off" switch drops exactly
that norm; docs/design.md). ``no-norm`` therefore sets ``critic.norm=none`` and ``actor.norm=none`` and leaves the
running observation normalisation of D.4 on. Turning that off as well is a different question
(input scaling, not the architecture) and is the separate, non-default ``no-obs-norm``.
"""

from __future__ import annotations

from typing import Any, Mapping

from spec.config import ConfigError, _suggest

__all__ = ["ABLATIONS", "DEFAULT_ABLATIONS", "get_ablation", "ablation_overrides"]

ABLATIONS: dict[str, dict[str, Any]] = {
    "reppo": {
        "description": "REPPO as specified (the baseline)",
        "overrides": {},
    },
    "no-hlgauss": {
        "description": "E.1: squared-error critic instead of the HL-Gauss cross-entropy",
        "overrides": {"critic.loss": "mse"},
    },
    "no-norm": {
        "description": "E.1: no normalisation layers in the critic and actor blocks",
        "overrides": {"critic.norm": "none", "actor.norm": "none"},
    },
    "no-aux": {
        "description": "E.1: no auxiliary self-predictive loss",
        "overrides": {"critic.aux_loss_mult": 0.0},
    },
    "no-kl": {
        "description": "E.1: no KL regularisation of the policy update (β and the switch off)",
        "overrides": {"loss.kl_mode": "none"},
    },
    "score": {
        "description": "§4.1: score-function gradient through the learned Q (REPPO score-based, Q)",
        "overrides": {"actor.gradient": "score"},
    },
    "ppo": {
        "description": "§4.1: PPO clipped objective on GAE advantages (REPPO score-based, GAE)",
        "overrides": {"actor.gradient": "ppo"},
    },
    "no-obs-norm": {
        "description": "not in the paper: no running observation normalisation (D.4)",
        "overrides": {"env.normalize_obs": False},
    },
}
"""name -> {"description": one line, "overrides": flat ``section.field`` -> value}."""

DEFAULT_ABLATIONS: tuple[str, ...] = (
    "reppo", "no-hlgauss", "no-norm", "no-aux", "no-kl", "score", "ppo",
)
"""The variants run by default: the paper's E.1 and §4.1 ablations plus the baseline."""


def get_ablation(name: str) -> Mapping[str, Any]:
    """The ablation entry ``{"description", "overrides"}``; unknown name -> ConfigError."""
    if name not in ABLATIONS:
        raise ConfigError(f"unknown ablation {name!r}{_suggest(name, list(ABLATIONS))} "
                          f"(available: {', '.join(ABLATIONS)})")
    return ABLATIONS[name]


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def ablation_overrides(name: str) -> list[str]:
    """The ablation's overrides as CLI strings ``section.field=value`` (for ``reppo train``)."""
    return [f"{k}={_cli_value(v)}" for k, v in get_ablation(name)["overrides"].items()]
