"""REPPO specification: configuration, derived values, parameter layout and numpy reference math.

Importing ``spec`` (or any ``spec.*`` module) never imports jax or torch; backends port this package.
Submodules are imported explicitly (``import spec.reference``, ``from spec import params``).
"""
