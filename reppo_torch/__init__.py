"""PyTorch port of REPPO (ManiSkill3 and the shared suites).

Mirrors ``reppo_jax`` module for module (networks, distributions, losses, targets,
normalization, agent, train, envs/) and exposes ``reppo_torch.backend.get_backend()`` per
``spec.backend.Backend``. Needs the ``torch`` extra: ``pip install -e '.[torch]'``.
"""
