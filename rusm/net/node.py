"""ClusterNode: a Runtime on a QUIC endpoint, linked to other nodes.

::

    london = await ClusterNode.bind("london", Runtime(), ("127.0.0.1", 0), ca.issue("london"))
    remote = await tokyo.connect(london.local_addr())
    tokyo.send("london", "greeter", b"hi")

A node owns its runtime: ``close()`` stops its processes, tells its peers,
closes every link and its endpoint, and leaves no task behind.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from rusm.actors import reload as code_reload
from rusm.actors.messages import NOCONNECTION, Down
from rusm.actors.pid import Pid, Ref
from rusm.actors.process import Process
from rusm.actors.remote import RemoteDest
from rusm.actors.runtime import Body, Runtime

from .busywait import DEFAULT_BUSY_WAIT, BusyWait, check_busy_wait
from .errors import (
    InvalidIdentity,
    LinkRejected,
    NodeNotConnected,
    RemoteError,
    SpawnFailed,
    TermTooLarge,
    UnknownFactory,
    UnsendableTerm,
    describe_close,
)
from .link import LinkProtocol
from .messages import NodeDown
from .mtls import make_configuration
from .quic import (
    LOOPBACK_DATAGRAM_SIZE,
    Listener,
    QuicLink,
    dial,
    is_loopback,
    listen,
    listening_on,
)
from .registry import Entries, GlobalRegistry
from .tls import Identity, is_read_only, validate_node_name
from .waits import local_waits
from .wire import (
    Demonitor,
    DownSignal,
    ErrorCode,
    ExitSignal,
    Gossip,
    Link,
    Monitor,
    Request,
    Unlink,
    WireLimits,
    reason_term,
)

__all__ = ["ClusterConfig", "ClusterNode", "RemoteNode"]

log = logging.getLogger("rusm.net.node")

Address = tuple[str, int]
READ_ONLY_REQUESTS = frozenset({"observe", "pids", "process_info"})
"""Control requests a peer with an observer certificate may make (the observe
channel refuses its mutating commands itself)."""
ENGINE_MAX_STREAMS = 100
"""Concurrent streams of each kind qh3 lets a peer open (hard-coded there)."""
CLOSE_LINGER = 1.0
"""Seconds ``close`` waits, for all links together, for the peers to acknowledge
what the links were sent (the Down and exit signals of the stopped processes)
before closing them."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Settings and hard limits of a :class:`ClusterNode`."""

    idle_timeout: float = 10.0
    """Seconds of silence after which a link is dead; a SIGKILLed peer is
    noticed after this long. Live links ping every ``idle_timeout / 4``."""
    connect_timeout: float = 5.0
    """Seconds ``connect`` waits for the handshake and the hello exchange."""
    hello_timeout: float = 5.0
    """Seconds a peer has, once the handshake is done, to complete the hello
    exchange; a peer that says nothing is closed with HELLO_TIMEOUT."""
    rpc_timeout: float = 5.0
    """Default timeout of control-plane requests (spawn_remote, remote_pids...)."""
    limits: WireLimits = field(default_factory=WireLimits)
    """Frame sizes (control and message) and term nesting depth, checked when
    sending and when receiving."""
    lanes: int = 2
    """Lanes (long-lived streams) per direction of a link; every (sender,
    receiver) pair rides one, chosen by a hash. See docs/PROTOCOL.md for the
    measurements behind the default."""
    max_inbound_bytes: int = 16 * 1024 * 1024
    """Bytes one link may hold for a peer: half for the engine (its
    connection flow-control window, which qh3 never grows past, so data held
    out of order counts), half for frames the link has begun to receive.
    Keep it above twice ``limits.max_message_frame``."""
    max_open_streams: int = 64
    """Lanes a peer may open; one more closes the link with LIMIT_EXCEEDED.
    At most 100, the engine's own stream limit, so RUSM's code is the one seen."""
    max_global_names_per_node: int = 100_000
    """Global names this node keeps for the processes of any one other node;
    gossip past it is ignored (one warning), so a peer cannot grow every
    node's table without bound."""
    allow_reload: frozenset[str] = frozenset()
    """Modules that may be hot-reloaded on this node (``reload``), a
    capability list: none by default (``rusm node start --allow-reload M``)."""
    max_outbound_bytes: int = 64 * 1024 * 1024
    """Bytes a link may have queued for a peer that does not take them (its
    flow control or congestion window closed); more closes the link with
    LIMIT_EXCEEDED instead of growing without bound."""
    busy_wait: float = DEFAULT_BUSY_WAIT
    """Seconds the node's event loop keeps polling, instead of sleeping,
    after it sends a datagram (0 .. 0.01; 0 = never), so that an answer
    finds it awake: Erlang's scheduler busy-wait. It trades CPU for latency;
    docs/OPERATIONS.md says when to turn it off."""

    def __post_init__(self) -> None:
        check_busy_wait(self.busy_wait)
        if not 1 <= self.max_open_streams <= ENGINE_MAX_STREAMS:
            raise ValueError(f"max_open_streams must be 1 .. {ENGINE_MAX_STREAMS}")
        if not 1 <= self.lanes <= self.max_open_streams:
            raise ValueError(f"lanes must be 1 .. max_open_streams, got {self.lanes}")
        if self.hello_timeout <= 0:
            raise ValueError("hello_timeout must be positive")


class ClusterNode:
    """A named node: its runtime, its QUIC endpoint and its links to peers."""

    def __init__(
        self, name: str, runtime: Runtime, identity: Identity, config: ClusterConfig, hidden: bool
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.identity = identity
        self.config = config
        self.hidden = hidden
        self._peers: dict[str, LinkProtocol] = {}
        self._links: dict[LinkProtocol, QuicLink] = {}
        """Every link this node has, by its protocol: connected, connecting or
        in its hello; each goes when its connection does."""
        self._transports: dict[QuicLink, asyncio.DatagramTransport] = {}
        self._server: Listener | None = None
        self._spawnables: dict[str, Body] = {}
        self._node_watchers: dict[str, list[Pid]] = {}
        self._gone: dict[str, str] = {}
        """Why the link to each node that is down now dropped (the latest
        ``_GONE_KEPT`` nodes), for the errors of whoever asks for it later."""
        self._closing = False
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._handlers: dict[str, Callable[[LinkProtocol, tuple[Any, ...]], Any]] = {}
        self._answering: set[asyncio.Task[None]] = set()
        """Control requests whose handler is a coroutine, being answered."""
        self.busy_wait = BusyWait(config.busy_wait)
        """Keeps the loop polling after each send (``ClusterConfig.busy_wait``)."""
        self.started = time.monotonic()
        """When the node started (``time.monotonic()``), for its uptime."""
        self._keeper: Pid | None = None
        self.services: dict[str, Any] = {}
        """Services that run on this node, by name (the observe channel's
        observatory): made once, stopped by ``on_close``."""
        self.registry = GlobalRegistry(
            name, self._broadcast, runtime.send, self._watch_global,
            max_per_node=config.max_global_names_per_node, conflict=self._name_conflict,
        )
        runtime.set_router(_Router(self), node=name)

    # -- lifecycle -------------------------------------------------------------

    @classmethod
    async def bind(
        cls,
        name: str,
        runtime: Runtime,
        addr: Address,
        identity: Identity,
        config: ClusterConfig | None = None,
        *,
        hidden: bool = False,
    ) -> ClusterNode:
        """Start a node listening on ``addr`` (port 0: any free port); returns
        once it listens. Under a cluster CA the identity must be this node's."""
        validate_node_name(name)
        if identity.name is not None and identity.name != name:
            raise InvalidIdentity(
                f"the identity is for node {identity.name!r}, not {name!r} "
                f"(rusm cert issue {name} --ca CA_DIR --out DIR)"
            )
        node = cls(name, runtime, identity, config or ClusterConfig(), hidden)
        config = node._configuration(is_client=False, loopback=is_loopback(addr[0]))
        node._server = await listen(addr[0], addr[1], config, node._link_factory(outbound=False))
        node._keeper = runtime.spawn(_keeper, node.registry, label="rusm.global")
        log.info("node %s listening on %s", name, node.local_addr())
        return node

    def _configuration(self, is_client: bool, loopback: bool) -> Any:
        """The engine's settings; ``loopback``: every peer is on this host
        (a listener bound to loopback, a connection to a loopback address)."""
        config = self.config
        return make_configuration(
            self.identity,
            is_client=is_client,
            idle_timeout=config.idle_timeout,
            max_data=config.max_inbound_bytes // 2,
            max_stream_data=config.limits.max_message_frame + 4,
            max_datagram_size=LOOPBACK_DATAGRAM_SIZE if loopback else None,
        )

    def _link_factory(self, outbound: bool) -> Callable[..., QuicLink]:
        return functools.partial(
            QuicLink,
            make_protocol=functools.partial(self._make_protocol, outbound=outbound),
            identity=self.identity,
            hello_timeout=self.config.hello_timeout,
            keepalive=self.config.idle_timeout / 4,
            max_outbound_bytes=self.config.max_outbound_bytes,
            busy_wait=self.busy_wait,
        )

    def _make_protocol(self, link: QuicLink, outbound: bool) -> LinkProtocol:
        protocol = LinkProtocol(self, outbound, lambda: link.peer_chain, link.wakeup, link.flush)
        self._links[protocol] = link
        return protocol

    def local_addr(self) -> Address:
        where = listening_on(self._server)
        assert where is not None, "the node is not listening"
        return where

    @property
    def listen_port(self) -> int:
        """The UDP port this node accepts links on; 0 for a hidden node or
        one that is not bound (its hello says so)."""
        where = None if self.hidden else listening_on(self._server)
        return 0 if where is None else where[1]

    async def connect(self, addr: Address) -> RemoteNode:
        """Link to the node at ``addr`` (like ``net_kernel:connect_node``).

        Raises :class:`LinkRejected` with the peer's reason if it refuses us
        (certificate, duplicate name...) and ``TimeoutError`` after
        ``connect_timeout``.
        """
        if self._closing:
            raise RuntimeError(f"node {self.name} is closed")
        transport, link = await dial(
            self._configuration(is_client=True, loopback=is_loopback(addr[0])),
            self._link_factory(outbound=True),
            addr,
        )
        self._transports[link] = transport
        peer = link.protocol
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await peer.ready
        except LinkRejected as e:
            self._forget(link)
            kept = self._peers.get(peer.name) if peer.name else None
            # Crossing links (both sides connecting at once): the other one was kept.
            if e.code == ErrorCode.DUPLICATE_NODE and kept and kept.up_at > peer.created:
                return RemoteNode(self, kept.name or "")
            raise
        except BaseException:
            link.abort(ErrorCode.NO_ERROR, "connect gave up")
            self._forget(link)
            raise
        assert peer.name is not None
        return RemoteNode(self, peer.name)

    def nodes(self) -> list[str]:
        """Connected peers, hidden ones (attachers) excepted."""
        return sorted(n for n, p in self._peers.items() if not p.hidden)

    def is_connected(self, node: str) -> bool:
        """Whether a link to ``node`` (a peer or a hidden attacher) is up."""
        return node in self._peers

    def disconnect(self, node: str, reason: str = "disconnected") -> bool:
        """Close the link to ``node`` (like ``erlang:disconnect_node/1``); both
        nodes stay up. False if there was no link."""
        peer = self._peers.get(node)
        if peer is None:
            return False
        self._links[peer].abort(ErrorCode.NO_ERROR, reason)
        return True

    def link_to(self, node: str) -> LinkProtocol | None:
        """The protocol of the link to ``node`` when it is up, else None."""
        return self._peers.get(node)

    async def close(self) -> None:
        """Stop the runtime's processes, then close every link and the endpoint."""
        if self._closing:
            return
        self._closing = True
        try:
            for closer in reversed(self._closers):
                await closer()
            for task in list(self._answering):
                task.cancel()
            await asyncio.gather(*self._answering, return_exceptions=True)
            self.runtime.close()
            await self.runtime.wait_closed()
            await self._drain_links()
            for link in list(self._links.values()):
                link.abort(ErrorCode.NO_ERROR, f"node {self.name} is closing")
            for link in list(self._transports):
                self._forget(link)
            if self._server is not None:
                self._server.close()  # type: ignore[no-untyped-call]
        finally:
            self.busy_wait.close()

    async def _drain_links(self) -> None:
        links = list(self._links.values())
        if not links:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*(link.drain() for link in links)), CLOSE_LINGER)
        except TimeoutError:
            late = [link.protocol.name or "(hello pending)"
                    for link in links if not link.sent_all()]
            log.info("node %s: closing links %s before their peers acknowledged everything",
                     self.name, late)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Have ``close`` await ``closer()`` first (latest first): services
        that run on the node (the observe channel) stop with it."""
        self._closers.append(closer)

    def handle_requests(
        self, method: str, handler: Callable[[LinkProtocol, tuple[Any, ...]], Any]
    ) -> None:
        """Answer control-plane requests ``method`` with ``handler(peer, args)``;
        it returns the value or raises RemoteError."""
        self._handlers[method] = handler

    async def wait_closed(self) -> None:
        await self.runtime.wait_closed()

    async def __aenter__(self) -> ClusterNode:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _forget(self, link: QuicLink) -> None:
        link.stop_timer()
        transport = self._transports.pop(link, None)
        if transport is not None:
            transport.close()

    # -- peers -----------------------------------------------------------------

    # The link protocol reports to its node through link_up, link_closed,
    # link_down, gossip_received and request_received.

    def link_up(self, peer: LinkProtocol) -> None:
        """Both hellos accepted: ``peer`` is connected."""
        assert peer.name is not None
        self._peers[peer.name] = peer
        self._gone.pop(peer.name, None)
        if not peer.hidden:
            peer.gossip("sync", self.registry.entries())
        hidden = " (hidden)" if peer.hidden else ""
        log.info("node %s: link to %s up%s", self.name, peer.name, hidden)
        self.runtime.events.record("nodeup", node=peer.name, hidden=peer.hidden)

    def replace_link(self, peer: LinkProtocol, reason: str) -> None:
        """Close an up link that another link to the same node replaces."""
        self._links[peer].abort(ErrorCode.DUPLICATE_NODE, reason)

    def link_closed(self, peer: LinkProtocol) -> None:
        """A link's connection is gone, up or not: forget it."""
        link = self._links.pop(peer, None)
        if link is not None and peer.outbound:
            self._forget(link)

    def link_down(self, peer: LinkProtocol, code: int, reason: str) -> None:
        """A connected peer's link dropped: monitors, links and watchers fire."""
        assert peer.name is not None
        if self._peers.get(peer.name) is not peer:
            return
        del self._peers[peer.name]
        log.info("node %s: link to %s down (%s, code %d)", self.name, peer.name, reason, code)
        why = describe_close(code, reason)
        self._gone[peer.name] = why
        self.runtime.events.record("nodedown", reason=why, node=peer.name, hidden=peer.hidden)
        while len(self._gone) > _GONE_KEPT:
            del self._gone[next(iter(self._gone))]
        self.runtime.node_down(peer.name)
        self.registry.node_down(peer.name)
        for watcher in self._node_watchers.pop(peer.name, []):
            self.runtime.send(watcher, NodeDown(peer.name, why))

    def monitor_node(self, node: str, watcher: Pid) -> None:
        """Send ``NodeDown(node)`` to ``watcher`` once, when the link to ``node``
        drops (at once if there is none), like ``erlang:monitor_node/2``."""
        if node not in self._peers:
            self.runtime.send(watcher, NodeDown(node, self._gone.get(node, "not connected")))
        else:
            self._node_watchers.setdefault(node, []).append(watcher)

    def _peer(self, node: str) -> LinkProtocol:
        peer = self._peers.get(node)
        if peer is None:
            raise NodeNotConnected(node, self._gone.get(node, ""))
        return peer

    # -- messages --------------------------------------------------------------

    def send(self, node: str, name: str, msg: Any) -> None:
        """Send ``msg`` to the process registered as ``name`` on ``node``."""
        self.runtime.send((name, node), msg)

    async def call(self, node: str, name: str, request: Any, timeout: float = 5.0) -> Any:
        return await self.runtime.call((name, node), request, timeout)

    # -- global registry -------------------------------------------------------

    async def register_global(self, name: str, pid: Pid) -> None:
        """Register ``name`` for ``pid`` on every node of the cluster."""
        self.registry.register(name, pid)

    async def unregister_global(self, name: str) -> None:
        self.registry.unregister(name)

    def whereis_global(self, name: str) -> str | None:
        """The node that owns the global ``name``, or None (as the design we
        follow answers); :meth:`whereis_global_pid` gives the process."""
        pid = self.registry.whereis(name)
        return None if pid is None else pid.node

    def whereis_global_pid(self, name: str) -> Pid | None:
        """The process registered as the global ``name``, or None."""
        return self.registry.whereis(name)

    def send_global(self, name: str, msg: Any) -> None:
        pid = self.registry.whereis(name)
        if pid is None:
            self.runtime.count_dead_letter()
            return
        self.runtime.send(pid, msg)

    def _broadcast(self, op: str, entries: Entries, except_node: str | None) -> None:
        for name, peer in self._peers.items():
            if name != except_node:
                peer.gossip(op, entries)

    def gossip_received(self, peer: LinkProtocol, frame: Gossip) -> None:
        """Global-registry news from a (visible) peer."""
        assert peer.name is not None
        self.registry.gossip(frame.op, frame.entries, peer.name)

    def _name_conflict(self, name: str, winner: Pid, loser: Pid) -> None:
        self.runtime.events.record("name_conflict", loser, reason=f"{name!r} kept by {winner}",
                                   name=name, winner=str(winner))

    def _watch_global(self, pid: Pid) -> None:
        if self._keeper is not None:
            self.runtime.send(self._keeper, pid)

    # -- remote spawn and the control RPC --------------------------------------

    def register_spawnable(self, name: str, factory: Body) -> None:
        """Teach this node a body that peers may start with ``spawn_remote``."""
        if not inspect.iscoroutinefunction(factory):
            raise TypeError(f"a spawnable must be an async function, not {factory!r}")
        self._spawnables[name] = factory

    async def spawn_remote(
        self, node: str, factory: str, args: Sequence[Any] = (), timeout: float | None = None
    ) -> Pid:
        """Start ``factory(proc, *args)`` on ``node``; raises UnknownFactory or SpawnFailed."""
        return await self.request(node, "spawn", (factory, tuple(args)), timeout)  # type: ignore[no-any-return]

    async def remote_pids(self, node: str, timeout: float | None = None) -> list[Pid]:
        return list(await self.request(node, "pids", (), timeout))

    async def remote_process_info(
        self, node: str, pid: Pid, timeout: float | None = None
    ) -> dict[str, Any] | None:
        return await self.request(node, "process_info", (pid,), timeout)  # type: ignore[no-any-return]

    async def request(
        self, node: str, method: str, args: tuple[Any, ...], timeout: float | None = None
    ) -> Any:
        """A control-plane request to ``node``, answered by its handler for
        ``method`` (``handle_requests``); raises RemoteError, NodeNotConnected
        or TimeoutError (after ``timeout``, default ``rpc_timeout``)."""
        peer = self._peer(node)
        return await peer.request(method, args, timeout or self.config.rpc_timeout)

    def request_received(self, peer: LinkProtocol, req: Request) -> None:
        """Answer a control request: exactly one response, whatever happens."""
        if is_read_only(peer.role) and req.method not in READ_ONLY_REQUESTS:
            peer.respond(req.id, False, (
                "read_only",
                f"{req.method}: refused, {peer.name} holds an observer certificate (read-only)",
            ))
            return
        handler = _RPC.get(req.method)
        try:
            if handler is not None:
                value = handler(self, *req.args)
            elif req.method in self._handlers:
                value = self._handlers[req.method](peer, req.args)
            else:
                raise RemoteError(f"unknown request {req.method!r}")
        except RemoteError as e:
            peer.respond(req.id, False, (e.kind, str(e)))
        except TypeError as e:
            peer.respond(req.id, False, ("bad_request", f"{req.method}: {e}"))
        except Exception as e:  # a handler's bug: answer it, keep the link
            log.exception("node %s: request %s from %s failed", self.name, req.method, peer.name)
            peer.respond(req.id, False, ("error", f"{req.method} failed: {e!r}"))
        else:
            if inspect.isawaitable(value):  # an async handler: answered when it is done
                task = asyncio.ensure_future(self._answer_later(peer, req, value))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)
            else:
                peer.respond(req.id, True, value)

    async def _answer_later(self, peer: LinkProtocol, req: Request, value: Awaitable[Any]) -> None:
        try:
            result = await value
        except RemoteError as e:
            peer.respond(req.id, False, (e.kind, str(e)))
        except Exception as e:
            log.exception("node %s: request %s from %s failed", self.name, req.method, peer.name)
            peer.respond(req.id, False, ("error", f"{req.method} failed: {e!r}"))
        else:
            peer.respond(req.id, True, result)

    # -- hot code reload ---------------------------------------------------------

    async def reload(self, module: str, extra: Any = None) -> dict[str, Any]:
        """Re-import ``module`` (it must be in ``config.allow_reload``): its
        GenServers move to the new code after their ``code_change``, its
        spawnable factories are re-bound to the new definitions, and the
        processes still on its old code are marked (``purge`` kills them).
        Returns the report (rusm.actors.reload.ReloadReport.to_wire); raises
        RemoteError ``reload_refused`` or ``reload_failed`` (with the traceback)."""
        try:
            report = await code_reload.reload(
                self.runtime, module, self.config.allow_reload, extra, self.config.rpc_timeout
            )
        except code_reload.ReloadRefused as e:
            raise RemoteError.from_wire("reload_refused", str(e)) from e
        except code_reload.ReloadFailed as e:
            raise RemoteError.from_wire("reload_failed", f"{e}\n{e.traceback}") from e
        mod = sys.modules[module]
        for name, factory in list(self._spawnables.items()):
            if getattr(factory, "__module__", None) != module:
                continue
            new = code_reload.definition(mod, getattr(factory, "__qualname__", ""))
            if new is not factory and inspect.iscoroutinefunction(new):
                self._spawnables[name] = new
                report.rebound.append(name)
        return report.to_wire()

    def purge(self, module: str) -> list[Pid]:
        """Kill the processes still on ``module``'s old code (allowed modules only)."""
        if module not in self.config.allow_reload:
            raise RemoteError.from_wire(
                "reload_refused", f"purge of {module!r} is not allowed here (not in allow_reload)"
            )
        return code_reload.purge(self.runtime, module)

    async def _rpc_reload(self, module: str) -> dict[str, Any]:
        if not isinstance(module, str):
            raise RemoteError.from_wire("bad_request", "reload takes a module name (text)")
        return await self.reload(module)

    def spawnables(self) -> list[str]:
        """The names of the factories peers may start here, sorted."""
        return sorted(self._spawnables)

    def spawn_factory(self, factory: str, args: tuple[Any, ...]) -> Pid:
        """Start the factory ``factory`` taught to this node, as ``spawn_remote``
        from a peer would; raises UnknownFactory or SpawnFailed."""
        body = self._spawnables.get(factory)
        if body is None:
            known = ", ".join(sorted(self._spawnables)) or "none"
            raise UnknownFactory(f"node {self.name} has no spawnable {factory!r} (known: {known})")
        try:
            inspect.signature(body).bind(None, *args)
        except TypeError as e:
            raise SpawnFailed(f"{factory}{tuple(args)!r}: {e}") from e
        return self.runtime.spawn(body, *args, label=factory)

    def link_stats(self, node: str) -> dict[str, Any] | None:
        """The link to ``node`` as an observer sees it, or None if it is not up:
        ``address`` (``host:port`` where it listens for links: the link's
        source host and the port its hello gave), ``state``, ``hidden``, ``up_for`` (seconds)
        and ``rtt`` (the last keepalive ping's round trip in seconds; None
        until one came back)."""
        peer = self._peers.get(node)
        if peer is None:
            return None
        link = self._links.get(peer)
        remote = link.remote if link is not None else None
        rtt = link.rtt if link is not None else None
        address = None
        if remote is not None:  # where it listens: its source host, the port it said
            host = f"[{remote[0]}]" if ":" in remote[0] else remote[0]
            address = f"{host}:{peer.port or remote[1]}"
        return {
            "node": node,
            "address": address,
            "state": peer.state.value,
            "hidden": peer.hidden,
            "up_for": round(max(0.0, time.monotonic() - peer.up_at), 3),
            "rtt": rtt,
        }

    def _rpc_waits(self, names: Any = None) -> dict[str, Any]:
        return local_waits(self.runtime, names)

    def _rpc_pids(self) -> list[Pid]:
        return [info.pid for info in self.runtime.processes()]

    def _rpc_process_info(self, pid: Pid) -> dict[str, Any] | None:
        info = self.runtime.process_info(pid)
        return None if info is None else info.facts()


_RPC: dict[str, Callable[..., Any]] = {
    "spawn": ClusterNode.spawn_factory,
    "pids": ClusterNode._rpc_pids,
    "process_info": ClusterNode._rpc_process_info,
    "reload": ClusterNode._rpc_reload,
    "waits": ClusterNode._rpc_waits,
}


async def _keeper(proc: Process, registry: GlobalRegistry) -> None:
    """Monitors the local processes that hold global names; drops their names on exit."""
    while True:
        msg = await proc.receive()
        if isinstance(msg, Pid):
            proc.monitor(msg)
        elif isinstance(msg, Down) and isinstance(msg.pid, Pid):
            registry.process_exited(msg.pid)


class RemoteNode:
    """A handle on a connected peer, as ``connect`` returns it."""

    def __init__(self, node: ClusterNode, name: str) -> None:
        self.node = node
        self.name = name

    def __repr__(self) -> str:
        return f"<RemoteNode {self.name} via {self.node.name}>"

    def send(self, name: str, msg: Any) -> None:
        self.node.send(self.name, name, msg)

    async def call(self, name: str, request: Any, timeout: float = 5.0) -> Any:
        return await self.node.call(self.name, name, request, timeout)

    async def spawn(self, factory: str, args: Sequence[Any] = ()) -> Pid:
        return await self.node.spawn_remote(self.name, factory, args)

    async def pids(self) -> list[Pid]:
        return await self.node.remote_pids(self.name)

    async def process_info(self, pid: Pid) -> dict[str, Any] | None:
        return await self.node.remote_process_info(self.name, pid)


_GONE_KEPT = 256


def _short_reason(reason: Any) -> str:
    """An exit reason too large for a frame, as the start of its repr."""
    text = repr(reason)
    return text if len(text) <= 1000 else f"{text[:1000]}... ({len(text)} characters)"


class _Router:
    """The runtime's way out (a ``RemoteRouter``): signals become pair frames,
    each on its pair's lane, so they keep the pair's order."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.rt = node.runtime
        self._peers = node._peers  # the node's own dict, never replaced

    def _peer(self, dst: RemoteDest) -> tuple[LinkProtocol | None, Pid | str]:
        if dst.__class__ is Pid:
            return self._peers.get(dst.node), dst
        name, node = dst  # type: ignore[misc]
        return self._peers.get(node), name

    def send(self, src: Pid, dst: RemoteDest, msg: Any) -> None:
        # _peer inlined: this runs once per message sent to another node.
        d: Pid | str
        if dst.__class__ is Pid:
            peer, d = self._peers.get(dst.node), dst
        else:
            d, node = dst  # type: ignore[misc]
            peer = self._peers.get(node)
        if peer is None:
            self.rt.count_dead_letter()
            return
        peer.send_msg(src, d, msg)

    def call(self, src: Pid, dst: RemoteDest, ref: Ref, request: Any) -> None:
        peer, d = self._peer(dst)
        if peer is None:
            self.rt.count_dead_letter()
            self.rt.remote_down(dst, src, ref, NOCONNECTION)  # type: ignore[arg-type]
            return
        peer.send_call(False, src, d, ref, request)

    def reply(self, src: Pid, dst: Pid, ref: Ref, value: Any) -> None:
        peer, d = self._peer(dst)
        if peer is None:
            self.rt.count_dead_letter()
            return
        peer.send_call(True, src, d, ref, value)

    def link(self, src: Pid, dst: Pid) -> None:
        peer, d = self._peer(dst)
        if peer is None:
            self.rt.remote_exit(dst, src, NOCONNECTION)
            return
        peer.send_pair(Link(src, d))

    def unlink(self, src: Pid, dst: Pid) -> None:
        peer, d = self._peer(dst)
        if peer is not None:
            peer.send_pair(Unlink(src, d))

    def exit(self, src: Pid, dst: Pid, reason: Any, *, dead: bool = False) -> None:
        peer, d = self._peer(dst)
        if peer is not None:
            term = reason_term(reason)
            try:
                peer.send_pair(ExitSignal(src, d, term))
            except (TermTooLarge, UnsendableTerm):  # the signal must go: say it shorter
                peer.send_pair(ExitSignal(src, d, _short_reason(term)))

    def monitor(self, src: Pid, dst: RemoteDest, ref: Ref) -> None:
        peer, d = self._peer(dst)
        if peer is None:
            self.rt.remote_down(dst, src, ref, NOCONNECTION)  # type: ignore[arg-type]
            return
        peer.send_pair(Monitor(src, d, ref))

    def demonitor(self, src: Pid, dst: RemoteDest, ref: Ref) -> None:
        peer, d = self._peer(dst)
        if peer is not None:
            peer.send_pair(Demonitor(src, d, ref))

    def down(
        self, src: Pid | str, dst: Pid, ref: Ref, reason: Any, *, dead: bool = False
    ) -> None:
        peer, d = self._peer(dst)
        if peer is not None:
            # A monitor by name whose name was free: the node itself answers.
            origin = src if isinstance(src, Pid) else self.rt.node_pid
            term = reason_term(reason)
            try:
                peer.send_pair(DownSignal(origin, d, ref, term))
            except (TermTooLarge, UnsendableTerm):  # the signal must go: say it shorter
                peer.send_pair(DownSignal(origin, d, ref, _short_reason(term)))

    def exited(self, pid: Pid) -> None:
        """Nothing to forget: lanes keep no per-pair state."""
