"""One client for the observe channel, over WebSocket or QUIC.

::

    async with await connect("london") as client:          # a local node, by name
        async for event in client:                          # Sample or FeedStatus
            ...
        await client.command("kill", pid="<london.12>")

A TARGET is a local node name (looked up in the node directory, WebSocket
with its token) or ``NAME@HOST:PORT`` (QUIC, as a hidden node, with a cluster
identity). The client reconnects with backoff when the node goes away and
re-sends its subscription; its iterator says so with :class:`FeedStatus`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rusm.actors.errors import RusmError
from rusm.actors.process import Process
from rusm.actors.runtime import Runtime
from rusm.observe.protocol import CommandError, FeedStatus, Sample, Subscription, decode, encode

from ..directory import NodeDirectory, NodeEntry, NoSuchNode
from ..errors import AttachError, ClusterError, NodeNotConnected, RemoteError
from ..messages import NodeDown
from ..node import ClusterNode
from ..terms import TermTooLarge, UnsendableTerm
from ..tls import Identity

__all__ = ["AttachError", "ObserveClient", "connect", "failure_reason", "parse_target"]

log = logging.getLogger("rusm.net.observe")

BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


def failure_reason(error: BaseException, timeout: float) -> str:
    """Why a connection attempt failed, never empty: a timeout (whose message
    is empty) says how long nothing answered."""
    if isinstance(error, TimeoutError) and not str(error):
        return f"no answer within {timeout:g} s"
    return str(error) or type(error).__name__


def parse_target(target: str) -> tuple[str, tuple[str, int] | None]:
    """``london`` -> (london, None); ``london@10.0.0.5:4370`` -> (london, (host, port))."""
    name, at, addr = target.partition("@")
    if not at:
        return name, None
    host, colon, port = addr.rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise AttachError(f"a remote target is NAME@HOST:PORT, not {target!r}")
    return name, (host.strip("[]"), int(port))


def _encoded(message: dict[str, Any]) -> bytes:
    try:
        return encode(message)
    except (UnsendableTerm, TermTooLarge) as e:
        raise CommandError("unsendable", str(e)) from e


class _Transport:
    """One connection; ``run`` feeds the client until the connection ends."""

    async def open(self) -> None: ...
    async def run(self, client: ObserveClient) -> None: ...
    async def request(self, message: dict[str, Any], timeout: float) -> Any: ...
    async def close(self) -> None: ...


class _WebSocket(_Transport):
    def __init__(self, name: str, home: Path | None, entry: NodeEntry | None = None) -> None:
        self.name, self.home, self.entry = name, home, entry
        self.conn: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.samples: asyncio.Queue[Sample] = asyncio.Queue()
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}

    async def open(self) -> None:
        # Re-read each time: a restarted node has another port and token.
        try:
            entry = self.entry or NodeDirectory(self.home).lookup(self.name)
        except NoSuchNode as e:
            raise AttachError(str(e)) from e
        host, port = entry.observe
        try:
            self.conn = await ws_connect(
                f"ws://{host}:{port}/",
                additional_headers={"Authorization": f"Bearer {entry.token}"},
                compression=None,
                max_size=16 * 1024 * 1024,
                open_timeout=5,
            )
            hello = decode(await asyncio.wait_for(self.conn.recv(decode=False), 5))
        except InvalidStatus as e:
            raise AttachError(
                f"node {self.name} refused the observe connection "
                f"(HTTP {e.response.status_code}); is the directory entry current?"
            ) from e
        except (OSError, TimeoutError, ConnectionClosed, CommandError) as e:
            raise AttachError(f"cannot reach node {self.name} at {host}:{port}: {e}") from e
        if hello.get("t") != "hello":
            await self.conn.close()
            raise AttachError(f"node {self.name} did not say hello")
        self.reader = asyncio.create_task(self._read(), name=f"rusm.observe.ws:{self.name}")

    async def run(self, client: ObserveClient) -> None:
        assert self.reader is not None
        while not self.reader.done() or not self.samples.empty():
            getter = asyncio.ensure_future(self.samples.get())
            try:
                await asyncio.wait((getter, self.reader), return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                client._put(getter.result())
        self.reader.result()  # the reason it ended

    async def _read(self) -> None:
        assert self.conn is not None
        async for data in self.conn:
            message = decode(data)  # type: ignore[arg-type]
            if message["t"] == "sample":
                self.samples.put_nowait(Sample.from_wire(message))
            elif message["t"] == "reply":
                fut = self.pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                if fut is not None and not fut.done():
                    fut.set_result(message)

    async def request(self, message: dict[str, Any], timeout: float) -> Any:
        assert self.conn is not None
        rid = next(self.ids)
        data = _encoded({**message, "id": rid})
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        try:
            await self.conn.send(data)
            async with asyncio.timeout(timeout):
                reply = await fut
        except ConnectionClosed as e:
            raise CommandError("not_connected", f"the link to {self.name} closed") from e
        finally:
            self.pending.pop(rid, None)
        if not reply["ok"]:
            raise CommandError(str(reply.get("error")), str(reply.get("message")))
        return reply.get("value")

    async def close(self) -> None:
        for fut in self.pending.values():
            fut.cancel()
        if self.conn is not None:
            await self.conn.close()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


class _Quic(_Transport):
    """A hidden node that polls the target's ``observe`` control request."""

    def __init__(self, name: str, addr: tuple[str, int], identity: Identity) -> None:
        self.name, self.addr, self.identity = name, addr, identity
        self.node: ClusterNode | None = None
        self.down: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        """Resolved with the reason when the link to the node drops."""

    async def open(self) -> None:
        me = self.identity.name or f"attach-{os.getpid()}"
        where = f"cannot attach to {self.name} at {self.addr[0]}:{self.addr[1]}"
        try:
            self.node = await ClusterNode.bind(
                me, Runtime(), ("127.0.0.1", 0), self.identity, hidden=True
            )
        except (RusmError, OSError) as e:
            raise AttachError(f"{where}: {failure_reason(e, 0)}") from e
        timeout = self.node.config.connect_timeout
        try:
            remote = await self.node.connect(self.addr)
        except (RusmError, OSError, TimeoutError) as e:
            await self.close()
            raise AttachError(f"{where}: {failure_reason(e, timeout)}") from e
        if remote.name != self.name:
            await self.close()
            raise AttachError(
                f"the node at {self.addr[0]}:{self.addr[1]} is {remote.name!r}, not {self.name!r}"
            )
        self.down = asyncio.get_running_loop().create_future()
        self.node.runtime.spawn(self._watch, label=f"attach: watches {self.name}")

    async def _watch(self, proc: Process) -> None:
        """Resolves ``down`` with the reason when the link to the node drops."""
        assert self.node is not None
        self.node.monitor_node(self.name, proc.pid)
        msg = await proc.receive(match=lambda m: isinstance(m, NodeDown))
        if not self.down.done():
            self.down.set_result(msg.reason)

    async def run(self, client: ObserveClient) -> None:
        # Between two polls, a dropped link ends the run at once (the engine's
        # idle timeout, or the node's close), not at the next poll.
        while True:
            client._put(Sample.from_wire(await self.request({"t": "poll"}, 10.0)))
            done, _ = await asyncio.wait((self.down,), timeout=client.subscription.interval)
            if done:
                raise CommandError("not_connected", f"{self.name} went away: {self.down.result()}")

    async def request(self, message: dict[str, Any], timeout: float) -> Any:
        assert self.node is not None
        _encoded(message)  # an unsendable term is the caller's error, before anything is sent
        try:
            return await self.node.request(self.name, "observe", (message,), timeout)
        except RemoteError as e:
            raise CommandError(e.kind, str(e)) from e
        except NodeNotConnected as e:
            said = f"{self.name} went away: {e.reason}" if e.reason else str(e)
            raise CommandError("not_connected", said) from e
        except ClusterError as e:
            raise CommandError("not_connected", str(e)) from e

    async def close(self) -> None:
        if self.node is not None:
            node, self.node = self.node, None
            await node.close()


class ObserveClient:
    """A live feed of one node (the :class:`~rusm.observe.protocol.Feed` protocol)."""

    def __init__(self, target: str, transport_factory: Any, subscription: Subscription) -> None:
        self.target = target
        self.subscription = subscription
        self._factory = transport_factory
        self._transport: _Transport | None = None
        self._events: asyncio.Queue[Sample | FeedStatus] = asyncio.Queue(maxsize=64)
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self.latest: Sample | None = None
        """The last sample received."""
        self.changed = asyncio.Event()
        """Set whenever a sample arrives (clear it, then wait, for the next one)."""

    def _put(self, event: Sample | FeedStatus) -> None:
        if isinstance(event, Sample):
            self.latest = event
            self.changed.set()
        if self._events.full():  # a slow consumer sees the latest, not a backlog
            self._events.get_nowait()
        self._events.put_nowait(event)

    async def _open(self) -> None:
        transport = self._factory()
        await transport.open()
        try:
            await transport.request(
                {"t": "cmd", "cmd": "subscribe", "args": asdict(self.subscription)}, 5.0
            )
        except BaseException:
            await transport.close()
            raise
        self._transport = transport
        self._connected.set()
        self._put(FeedStatus("connected", f"attached to {self.target}"))

    async def _run(self, reconnect: bool) -> None:
        attempt = 0
        while True:
            assert self._transport is not None
            why = "the node closed the connection"
            try:
                await self._transport.run(self)
            except (ConnectionClosed, CommandError, OSError) as e:
                why = str(e) or type(e).__name__
            self._connected.clear()
            await self._transport.close()
            self._transport = None
            if not reconnect:
                self._put(FeedStatus("closed", why))
                return
            # Every status until it is back says why it went away; a failed
            # attempt adds its own reason.
            last = ""
            while self._transport is None:
                delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                attempt += 1
                tried = f" (attempt {attempt - 1}: {last})" if last else ""
                self._put(FeedStatus("disconnected", f"{why}; retrying in {delay:g} s{tried}"))
                await asyncio.sleep(delay)
                self._put(FeedStatus("connecting", f"{why}; reconnecting (attempt {attempt})"))
                try:
                    await self._open()
                    attempt = 0
                except (RusmError, OSError, TimeoutError) as e:
                    last = str(e) or type(e).__name__

    # -- the Feed protocol -----------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[Sample | FeedStatus]:
        while not self._closed:
            event = await self._events.get()
            yield event
            if isinstance(event, FeedStatus) and event.state == "closed":
                return

    async def subscribe(self, **changes: Any) -> None:
        await self.command("subscribe", **changes)
        self.subscription.update(changes)

    async def command(self, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        transport = self._transport
        if transport is None or not self._connected.is_set():
            raise CommandError(
                "not_connected", f"not connected to {self.target} (reconnecting); try again"
            )
        return await transport.request({"t": "cmd", "cmd": cmd, "args": args}, timeout)

    async def next_sample(self, timeout: float = 10.0) -> Sample:
        """The next sample (statuses skipped); for scripts and tests."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.get()
                if isinstance(event, Sample):
                    return event
                if event.state == "closed":
                    raise AttachError(f"the feed closed: {event.message}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()
        self._put(FeedStatus("closed", "closed by the client"))

    async def __aenter__(self) -> ObserveClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def connect(
    target: str,
    *,
    identity: Identity | None = None,
    home: Path | None = None,
    subscription: Subscription | None = None,
    reconnect: bool = True,
    entry: NodeEntry | None = None,
) -> ObserveClient:
    """Attach to ``target``; raises AttachError if the first attempt fails.
    ``entry``: attach to this observe endpoint instead of looking it up."""
    name, addr = parse_target(target)
    if addr is None:
        def factory() -> _Transport:
            return _WebSocket(name, home, entry)
    else:
        if identity is None:
            raise AttachError(
                f"attaching to {target} over QUIC needs a cluster identity (--identity DIR)"
            )
        ident = identity

        def factory() -> _Transport:
            return _Quic(name, addr, ident)

    client = ObserveClient(target, factory, subscription or Subscription())
    await client._open()
    client._task = asyncio.get_running_loop().create_task(
        client._run(reconnect), name=f"rusm.observe.client:{target}"
    )
    return client
