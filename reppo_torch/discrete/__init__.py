"""D-REPPO, the discrete-action variant (paper Appendix C), under the JAX port's subpackage
name: the torch port has the categorical loss primitives (``losses``, mirroring
``reppo_jax.discrete.losses``) but no discrete trainer (``reppo_jax.discrete`` has it)."""
