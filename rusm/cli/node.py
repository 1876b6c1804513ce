"""``rusm node start|ls``: run a node in the foreground; list running nodes."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import click

from ..net.busywait import DEFAULT_BUSY_WAIT, MAX_BUSY_WAIT
from . import cli

Address = tuple[str, int]


class AddressType(click.ParamType):  # type: ignore[type-arg]
    """HOST:PORT, or PORT alone (127.0.0.1), or [v6]:PORT."""

    name = "HOST:PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        text = str(value)
        host, colon, port = text.rpartition(":")
        if not colon:
            host, port = "127.0.0.1", text
        if not port.isdigit() or int(port) > 65535:
            self.fail(f"{text!r} is not HOST:PORT (port 0 = any free port)", param, ctx)
        return (host.strip("[]") or "127.0.0.1", int(port))


ADDRESS = AddressType()


def load_identity(path: Path | None) -> Any:
    if path is None:
        return None
    from ..net import tls

    try:
        return tls.Identity.load(path)
    except tls.TlsError as e:
        raise click.ClickException(str(e)) from e


@cli.group("node")
def node_group() -> None:
    """Run nodes (rusm node start NAME) and list the running ones."""


def _finite(value: float, param: click.Parameter) -> float:
    if not math.isfinite(value):  # FloatRange lets nan through
        raise click.BadParameter(f"{value} is not a number of seconds", param=param)
    return value


@node_group.command("start")
@click.argument("name")
@click.option("--listen", type=ADDRESS, default="127.0.0.1:0", show_default=True,
              help="Cluster (QUIC) address; port 0 = any free port.")
@click.option("--observe", type=ADDRESS, default="127.0.0.1:0", show_default=True,
              help="Observe channel (WebSocket) address; keep it on loopback.")
@click.option("--identity", "identity_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Certificate directory from rusm cert (default: a throwaway identity).")
@click.option("--connect", "peers", type=ADDRESS, multiple=True,
              help="A node to link to at start (repeatable).")
@click.option("--app", help="MODULE:FUNCTION whose setup(node) registers spawnables "
                            "and starts processes.")
@click.option("--idle-timeout", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="Seconds of silence after which a peer is considered dead.")
@click.option("--allow-reload", "allow_reload", multiple=True, metavar="MODULE",
              help="A module rusm reload may hot-reload here (repeatable; none by default).")
@click.option("--busy-wait", type=click.FloatRange(min=0, max=MAX_BUSY_WAIT),
              default=DEFAULT_BUSY_WAIT, callback=lambda ctx, param, v: _finite(v, param),
              show_default=True, metavar="S",
              help="Seconds the loop keeps polling after each send (0 = off).")
def node_start_command(
    name: str, listen: Address, observe: Address, identity_dir: Path | None,
    peers: tuple[Address, ...], app: str | None, idle_timeout: float,
    allow_reload: tuple[str, ...], busy_wait: float,
) -> None:
    """Run node NAME in the foreground until SIGINT or SIGTERM.

    Logs to stderr. Its entry in the node directory ($RUSM_HOME/nodes,
    default ~/.rusm) lets rusm attach, rusm top and rusm ps find it by name.
    """
    from ..actors.errors import RusmError
    from ..net.service import NodeOptions, loop_factory, run_node
    from ..net.tls import InvalidNodeName, validate_node_name

    try:
        validate_node_name(name)
    except InvalidNodeName as e:
        raise click.BadParameter(str(e), param_hint="NAME") from e
    rusm_log = logging.getLogger("rusm")
    if not rusm_log.isEnabledFor(logging.INFO):
        rusm_log.setLevel(logging.INFO)
    opts = NodeOptions(
        name=name, listen=listen, observe=observe, identity=load_identity(identity_dir),
        connect=list(peers), app=app, idle_timeout=idle_timeout,
        allow_reload=frozenset(allow_reload), busy_wait=busy_wait,
    )
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run_node(opts))
    except (RusmError, OSError) as e:
        raise click.ClickException(str(e)) from e


@node_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per node.")
def node_ls_command(as_json: bool) -> None:
    """List the nodes running on this machine (stale entries are left out)."""
    from ..net.directory import NodeDirectory

    entries = NodeDirectory().running()
    if as_json:
        for e in entries:
            click.echo(json.dumps({"name": e.name, "os_pid": e.os_pid,
                                   "cluster": f"{e.cluster[0]}:{e.cluster[1]}",
                                   "observe": f"{e.observe[0]}:{e.observe[1]}",
                                   "started": e.started}))
        return
    if not entries:
        click.echo("no nodes running")
        return
    click.echo(f"{'NAME':<16} {'OS PID':>7}  {'CLUSTER':<22} {'OBSERVE':<22} UP")
    for e in entries:
        up = int(time.time() - e.started)
        uptime = f"{up // 3600}h{up % 3600 // 60:02d}m{up % 60:02d}s"
        click.echo(f"{e.name:<16} {e.os_pid:>7}  {e.cluster[0]}:{e.cluster[1]:<12} "
                   f"{e.observe[0]}:{e.observe[1]:<12} {uptime}")
