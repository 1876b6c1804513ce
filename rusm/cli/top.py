"""``rusm top``: the full-screen observer and ops shell."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from . import cli
from .node import load_identity


async def run_top(target: str | None, **options: Any) -> None:
    """Attach to ``target`` (or replay a recording) and run the app until quit
    (the options are :func:`top_app`'s)."""
    app = await top_app(target, **options)
    try:
        await app.run_async()
    finally:
        await app.feed.close()


async def top_app(
    target: str | None,
    *,
    identity: Any = None,
    interval: float = 1.0,
    record: Path | None = None,
    replay: Path | None = None,
    home: Path | None = None,
    readonly: bool = False,
) -> Any:
    """The app ``rusm top`` runs, attached to ``target`` (or replaying a
    recording), with Enter in the cluster view wired to attach to another node.

    ``readonly`` hides and refuses send, spawn and kill; an observer
    identity implies it (the node would refuse them anyway)."""
    from ..net.directory import NodeDirectory, NoSuchNode
    from ..net.observe import AttachError, Subscription, connect
    from ..net.tls import is_read_only
    from ..tui.app import make_app
    from ..tui.feeds import ReplayFeed

    sub = Subscription(interval=interval, limit=200)
    if replay is not None:
        feed: Any = ReplayFeed(replay, realtime=True)
    else:
        assert target is not None
        feed = await connect(target, identity=identity, home=home, subscription=sub)

    async def attach(node: str) -> None:
        # A node of this machine through its directory entry; any other
        # through the attached node, which knows where its peers listen,
        # with the same identity.
        if replay is not None:
            raise AttachError("a replay has no node to attach from: rusm top "
                              f"{node} (or {node}@HOST:PORT --identity DIR)")
        sub = Subscription(interval=interval, limit=200)
        try:
            NodeDirectory(home).lookup(node)
        except NoSuchNode:
            address = await peer_address(app.feed, node)
            if identity is None:
                raise AttachError(
                    f"{node} is not a node of this machine; attaching to it at {address} "
                    f"needs a cluster identity: rusm top {node}@{address} --identity DIR"
                ) from None
            new = await connect(f"{node}@{address}", identity=identity, subscription=sub)
        else:
            new = await connect(node, home=home, subscription=sub)
        await app.attach_feed(new)

    readonly = readonly or (identity is not None and is_read_only(identity.role))
    app = make_app(feed, record_path=record, on_attach=attach, readonly=readonly)
    return app


async def peer_address(feed: Any, node: str) -> str:
    """Where ``node`` listens, as the attached node knows it (``host:port``);
    raises AttachError if it does not."""
    from ..net.observe import AttachError

    try:
        peers = await feed.command("nodes", detail=True)
    except Exception as e:
        raise AttachError(f"cannot ask for the address of {node}: {e}") from e
    for peer in peers if isinstance(peers, list) else ():
        if isinstance(peer, dict) and peer.get("node") == node and peer.get("address"):
            return str(peer["address"])
    raise AttachError(f"{node} is not connected to {feed.target}: no address to attach to")


@cli.command("top")
@click.argument("target", required=False)
@click.option("--identity", "identity_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Cluster identity for a remote NAME@HOST:PORT target.")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True,
              help="Seconds between samples.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every sample received to FILE (replay it with --replay).")
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay a recording instead of attaching (no node needed).")
@click.option("--readonly", is_flag=True,
              help="Watch only: send, spawn and kill are hidden and refused (implied by "
                   "an observer --identity).")
def top_command(target: str | None, identity_dir: Path | None, interval: float,
                record: Path | None, replay: Path | None, readonly: bool) -> None:
    """Watch and operate TARGET full-screen (press ? for the keys).

    TARGET is a node of this machine (rusm node ls) or NAME@HOST:PORT with
    --identity. Every send, spawn and kill is appended to $RUSM_HOME/audit.log.
    With --readonly (or an observer certificate) nothing can be changed.
    """
    from ..net.observe import AttachError

    if target is None and replay is None:
        raise click.UsageError("give a TARGET, or --replay FILE")
    try:
        asyncio.run(run_top(target, identity=load_identity(identity_dir), interval=interval,
                            record=record, replay=replay, readonly=readonly))
    except AttachError as e:
        raise click.ClickException(str(e)) from e
