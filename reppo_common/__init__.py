"""Framework-free plumbing shared by the backends: CLI, environment registry, run directories,
metrics files, progress display and seeding. Imports ``spec`` only, never jax or torch."""

__version__ = "0.1.0"
