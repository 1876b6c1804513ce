"""``rusm demo``: the README's main job.

Starts an embedded two-node cluster (london and tokyo) with a live workload
and opens ``rusm top london`` on it. Off a terminal (CI, a pipe) there is no
screen to draw: it prints london's process table a few times instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import click

from . import cli


@contextlib.asynccontextmanager
async def observed_demo() -> AsyncIterator[tuple[Any, Any, dict[str, Any]]]:
    """The demo cluster and each node's observe channel, by directory entry
    (so `rusm attach london` works from another terminal meanwhile)."""
    from ..actors.errors import RusmError
    from ..demo.cluster import demo_cluster
    from ..net.directory import NodeDirectory, NodeEntry
    from ..net.observe import serve_attachers, serve_observe

    directory = NodeDirectory()
    async with demo_cluster() as (london, tokyo):
        entries = []
        by_name: dict[str, Any] = {}
        for node in (london, tokyo):
            server = await serve_observe(node, token=NodeEntry.new_token())
            serve_attachers(node)
            entry = NodeEntry(node.name, os.getpid(), node.local_addr(), server.local_addr(),
                              server.token.decode(), time.time())
            try:
                directory.claim(entry)
                entries.append(entry)
            except (RusmError, OSError) as e:  # a real london runs: keep ours private
                logging.getLogger("rusm.demo").info("not in the node directory: %s", e)
            by_name[node.name] = entry
        try:
            yield london, tokyo, by_name
        finally:
            for entry in entries:
                directory.release(entry)


async def _demo(seconds: float | None, tty: bool) -> None:
    from ..net.observe import Subscription, connect
    from .table import format_table

    async with observed_demo() as (_london, _tokyo, by_name):
        feed = await connect("london", entry=by_name["london"],
                             subscription=Subscription(interval=1.0, limit=200 if tty else 12))
        if tty:
            from ..tui.app import make_app

            async def attach(node: str) -> None:  # Enter on a node of the cluster view
                new = await connect(node, entry=by_name.get(node),
                                    subscription=Subscription(interval=1.0, limit=200))
                await app.attach_feed(new)

            app = make_app(feed, on_attach=attach)
            try:
                await app.run_async()
            finally:
                await app.feed.close()
            return
        try:
            deadline = time.monotonic() + (seconds or 6.0)
            while time.monotonic() < deadline:
                click.echo(format_table(await feed.next_sample()) + "\n")
        finally:
            await feed.close()


@cli.command("demo")
@click.option("--actors", "actors_only", is_flag=True,
              help="Only the local actor workload, printed as it runs (no cluster, no screen).")
@click.option("--seconds", type=click.FloatRange(min=0.1),
              help="Off a terminal, or with --actors: how long to run [6 s; --actors 5 s].")
def demo_command(actors_only: bool, seconds: float | None) -> None:
    """Run london and tokyo in this process with a live workload and open
    rusm top london on them: bursty producers, a slow consumer, a crashing
    worker and its supervisor, cross-node calls. In the command pane (:) try
    spawn flood, spawn fanout, spawn crashloop, kill PID.

    Off a terminal it prints london's process table every second instead.
    """
    if not logging.getLogger().isEnabledFor(logging.INFO):
        # The crashes are the point of the demo; their tracebacks show with -v.
        logging.getLogger("rusm.actors").setLevel(logging.CRITICAL)
    if actors_only:
        from ..demo import actors

        asyncio.run(actors.run(seconds or 5.0, lambda line: click.echo(line)))
        return
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    asyncio.run(_demo(seconds, tty))
