"""D-REPPO, the discrete-action variant (paper Appendix C), mirroring the continuous port's
module names: ``losses`` (the categorical primitives, ``spec.reference.discrete``), ``networks``,
``agent`` (rollout, targets, update, iteration, evaluation) and ``train`` (``DiscreteTrainer``).
``reppo_jax.train.make_trainer`` picks it from the action space."""
