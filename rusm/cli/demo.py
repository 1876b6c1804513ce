"""``rusm demo``: the README's main job."""

from __future__ import annotations

import asyncio
import logging

import click

from . import cli


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
    from ..demo import actors

    if not logging.getLogger().isEnabledFor(logging.INFO):
        # The crashes are the point of the demo and the watcher reports them;
        # their tracebacks show with -v.
        logging.getLogger("rusm.actors").setLevel(logging.CRITICAL)
    asyncio.run(actors.run(seconds, lambda line: click.echo(line)))
