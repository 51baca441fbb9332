"""Benchmarks, baseline comparisons and paper experiments (``python -m benchmarks.NAME``; see
README.md here). Not part of the installed ``reppo`` package."""
