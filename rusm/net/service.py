"""A node as a service: what ``rusm node start`` runs.

Binds the node, serves its observe channel (WebSocket) and remote attachers
(control RPC), claims its node-directory entry, runs the user's ``setup``,
connects to the given peers, and on stop (SIGINT/SIGTERM or ``stop``) closes
the node and releases the entry.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rusm.actors.errors import RusmError
from rusm.actors.runtime import Runtime

from .busywait import DEFAULT_BUSY_WAIT
from .directory import NodeDirectory, NodeEntry
from .errors import AppError
from .node import ClusterConfig, ClusterNode
from .observe.client import failure_reason
from .observe.server import serve_attachers, serve_observe
from .tls import Identity

__all__ = [
    "AppError", "Backoff", "NodeOptions", "link_with_retry", "load_app", "loop_factory",
    "run_node",
]

log = logging.getLogger("rusm.net.service")

Address = tuple[str, int]


@dataclass
class NodeOptions:
    name: str
    listen: Address = ("127.0.0.1", 0)
    observe: Address = ("127.0.0.1", 0)
    identity: Identity | None = None
    connect: list[Address] = field(default_factory=list)
    app: str | None = None
    idle_timeout: float = 10.0
    allow_reload: frozenset[str] = frozenset()
    """Modules ``rusm reload`` may hot-reload on this node."""
    busy_wait: float = DEFAULT_BUSY_WAIT
    home: Path | None = None


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts to link to a ``--connect`` peer."""

    first: float = 0.5
    """Seconds before the second attempt."""
    factor: float = 2.0
    """Each delay is this many times the one before..."""
    cap: float = 30.0
    """...up to this many seconds."""

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * self.factor, self.cap)


async def link_with_retry(node: ClusterNode, addr: Address, backoff: Backoff = Backoff()) -> None:
    """Link ``node`` to the peer at ``addr``, retrying with ``backoff`` until the
    link is up (or the task is cancelled, as when the node stops). Each failed
    attempt is a log line with its reason: a warning when the reason is new,
    debug when it repeats the last one (a peer refusing us every few seconds
    says so once, not once a retry)."""
    where = f"{addr[0]}:{addr[1]}"
    said = ""
    for delay in backoff.delays():
        try:
            remote = await node.connect(addr)
        except (RusmError, OSError, TimeoutError) as e:
            reason = failure_reason(e, node.config.connect_timeout)
            level = logging.DEBUG if reason == said else logging.WARNING
            said = reason
            log.log(level, "node %s: cannot connect to %s: %s; retrying in %g s",
                    node.name, where, reason, delay)
            await asyncio.sleep(delay)
        else:
            log.info("node %s: connected to %s at %s", node.name, remote.name, where)
            return


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when uvloop is installed (``pip install 'rusm[uvloop]'``)
    and ``RUSM_LOOP`` is not ``asyncio``; None (the stock loop) otherwise."""
    if os.environ.get("RUSM_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def load_app(spec: str) -> Callable[[ClusterNode], Any]:
    """``MODULE:FUNCTION`` -> the function (the current directory is importable)."""
    module_name, colon, func_name = spec.partition(":")
    if not colon or not module_name or not func_name:
        raise AppError(f"--app takes MODULE:FUNCTION, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise AppError(f"cannot import {module_name!r} for --app: {e}") from e
    func = getattr(module, func_name, None)
    if not callable(func):
        raise AppError(f"module {module_name!r} has no function {func_name!r}")
    return func  # type: ignore[no-any-return]


async def run_node(
    opts: NodeOptions,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[ClusterNode, NodeEntry], None] | None = None,
) -> None:
    """Run a node until ``stop`` is set or SIGINT/SIGTERM; raises NodeRunning,
    AppError, or the node's own errors at start-up."""
    setup = load_app(opts.app) if opts.app else None
    directory = NodeDirectory(opts.home)
    directory.lookup_free(opts.name)
    identity = opts.identity
    if identity is None:
        log.warning(
            "node %s: no --identity, using a throwaway self-signed identity: "
            "no other node can link to this one (rusm cert --help)", opts.name,
        )
        identity = Identity.generate()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    node = await ClusterNode.bind(
        opts.name, Runtime(), opts.listen, identity,
        ClusterConfig(idle_timeout=opts.idle_timeout, allow_reload=opts.allow_reload,
                      busy_wait=opts.busy_wait),
    )
    entry: NodeEntry | None = None
    try:
        server = await serve_observe(
            node, opts.observe[0], opts.observe[1], token=NodeEntry.new_token()
        )
        serve_attachers(node)
        entry = NodeEntry(
            name=opts.name, os_pid=os.getpid(), cluster=node.local_addr(),
            observe=server.local_addr(), token=server.token.decode(), started=time.time(),
        )
        directory.claim(entry)
        if setup is not None:
            try:
                result = setup(node)
                if inspect.isawaitable(result):
                    await result
            except Exception as e:
                raise AppError(f"--app {opts.app} failed in setup: {e!r}") from e
        async with asyncio.TaskGroup() as links:
            # Peers are linked in the background: the node is up (and says so)
            # whether or not they answer, and a peer that starts later is found.
            keepers = [
                links.create_task(link_with_retry(node, addr), name=f"rusm.connect:{addr}")
                for addr in opts.connect
            ]
            log.info(
                "node %s up: cluster %s:%d, observe ws://%s:%d (token in %s), %s loop, "
                "busy-wait %s",
                opts.name, *entry.cluster, *entry.observe, directory.path(opts.name),
                type(asyncio.get_running_loop()).__module__.partition(".")[0],
                f"{opts.busy_wait * 1e6:g} us" if opts.busy_wait else "off",
            )
            if on_ready is not None:
                on_ready(node, entry)
            await stop.wait()
            log.info("node %s stopping", opts.name)
            for task in keepers:
                task.cancel()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await node.close()
        if entry is not None:
            directory.release(entry)
        log.info("node %s stopped", opts.name)
