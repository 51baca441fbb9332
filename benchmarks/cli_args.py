"""The command line the config-driven benchmarks share (``bench_throughput``, ``bench_devices``,
``profile_torch``): ``--env`` and ``--preset`` pick the config, and any other argument of the
form ``--section.field=value`` overrides one of its fields, as in ``reppo train``."""

from __future__ import annotations

import argparse
from typing import Sequence


def config_parser(description: str) -> argparse.ArgumentParser:
    """A parser with ``--env`` (default dmc/CartpoleBalance) and ``--preset`` (default cpu);
    the caller adds its own options, then parses with :func:`parse_with_overrides`."""
    p = argparse.ArgumentParser(
        description=description,
        epilog="Any other argument of the form --section.field=value is a config override.")
    p.add_argument("--env", default="dmc/CartpoleBalance", help="suite/Task (config env.name)")
    p.add_argument("--preset", default="cpu")
    return p


def parse_with_overrides(p: argparse.ArgumentParser,
                         argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; the arguments ``p`` does not know must be config overrides
    (``--section.field=value``, collected as ``section.field=value`` strings in
    ``args.overrides``), anything else is a usage error."""
    args, rest = p.parse_known_args(argv)
    bad = [r for r in rest if not (r.startswith("--") and "=" in r and "." in r.split("=")[0])]
    if bad:
        p.error(f"unrecognized arguments (overrides look like --section.field=value): "
                f"{' '.join(bad)}")
    args.overrides = [r[2:] for r in rest]
    return args
