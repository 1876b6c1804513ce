"""The ``rusm`` command line (click). One module per command group:
``cert``, ``node`` (start, ls), ``ops`` (attach, ps, send, spawn, kill),
``top`` and ``demo``."""

from __future__ import annotations

import logging

import click

__all__ = ["cli", "main"]


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """RUSM: actor nodes that cluster, and live attach to running nodes."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The QUIC engine logs every peer's close as a warning ("Native peer close");
    # RUSM logs each link's end in its own words: the engine's lines are for -vv.
    logging.getLogger("quic").setLevel(logging.WARNING if verbose >= 2 else logging.ERROR)


# The command modules add their commands to cli.
from . import cert as cert  # noqa: E402
from . import demo as demo  # noqa: E402
from . import node as node  # noqa: E402
from . import ops as ops  # noqa: E402
from . import top as top  # noqa: E402


def main() -> None:
    cli()
