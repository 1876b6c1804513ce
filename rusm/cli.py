"""The ``rusm`` command line (click)."""

from __future__ import annotations

import asyncio
import logging

import click

__all__ = ["cli", "main"]


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """RUSM: actor nodes that cluster, and live attach to running nodes."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command("demo")
@click.option("--actors", "actors_only", is_flag=True,
              help="Run the local actor workload (the only demo until the cluster lands).")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="How long the workload runs.")
def demo_command(actors_only: bool, seconds: float) -> None:
    """Run a demo workload and print what it does.

    Today this is the local actor workload: a supervisor with a bursty
    producer, a slow consumer and a crashing worker it keeps restarting.
    """
    from .demo import actors

    if not logging.getLogger().isEnabledFor(logging.INFO):
        # The crashes are the point of the demo and the watcher reports them;
        # their tracebacks show with -v.
        logging.getLogger("rusm.actors").setLevel(logging.CRITICAL)
    asyncio.run(actors.run(seconds, lambda line: click.echo(line)))


def main() -> None:
    cli()
