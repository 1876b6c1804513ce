"""The observe channel's servers: WebSocket for local clients, control RPC for
remote (hidden-node) attachers over QUIC.

WebSocket guardrails (see docs/OPERATIONS.md): the token in an
``Authorization: Bearer`` header, compared in constant time (none or wrong:
401, no hint); any ``Origin`` header (a browser page): 403; a ``Host`` that is
not loopback (DNS rebinding): 403; two ``Host`` or ``Authorization`` headers
(which one would count?): 400; no compression; ``max_size`` for commands;
at most ``max_observers`` at once (503 beyond).

Access: a WebSocket client holds the node's token, which only the node's
owner can read: full access. A QUIC attacher has the role its certificate
grants (:func:`rusm.net.tls.role_of`): an observer certificate may watch
(poll samples, subscribe, info, nodes, names) but every command in
``MUTATING`` or ``connect`` is refused with a ``read_only`` CommandError, and
nothing is done.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import inspect
import ipaddress
import logging
from collections.abc import Awaitable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rusm.observe.protocol import MUTATING, OBSERVE_VERSION, CommandError, decode, encode

from ..errors import RemoteError
from ..link import LinkProtocol
from ..node import ClusterNode
from ..terms import TermTooLarge, UnsendableTerm
from ..tls import is_read_only
from .session import Session, observatory

__all__ = ["ObserveServer", "serve_attachers", "serve_observe"]

log = logging.getLogger("rusm.net.observe")

MAX_MESSAGE = 64 * 1024
"""Largest message a client may send (commands are small)."""
MAX_OBSERVERS = 16
SINGLE_HEADERS = ("Host", "Authorization")
"""Headers a request may carry once: with two, the checks could read one
value and another layer the other (and ``headers.get`` raises)."""
READ_ONLY_REFUSED = MUTATING | {"connect"}
"""Commands an observer certificate may not run: whatever changes the node
(what UIs confirm and audit) and linking it to a new peer."""
QUIC_MAX_SAMPLE = 60 * 1024
"""A sample sent over the control RPC must fit one control frame (64 KiB):
rows are dropped (and counted as omitted) until it does."""


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.startswith("["):  # [::1]:port
        name = host[1 : host.find("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ObserveServer:
    """The WebSocket observe channel of one node (``serve_observe`` starts it)."""

    def __init__(self, node: ClusterNode, token: str, max_observers: int) -> None:
        self.node = node
        self.token = token.encode()
        self.max_observers = max_observers
        self.observers: set[ServerConnection] = set()
        self.server: Server | None = None

    def local_addr(self) -> tuple[str, int]:
        assert self.server is not None
        sock = next(iter(self.server.sockets))
        host, port = sock.getsockname()[:2]
        return host, port

    def _refuse(
        self, conn: ServerConnection, status: http.HTTPStatus, why: str, text: str
    ) -> Response:
        log.warning("observe: refused %s: %s", conn.remote_address, why)
        return conn.respond(status, text + "\n")

    def check(self, conn: ServerConnection, request: Request) -> Response | None:
        headers = request.headers
        for name in SINGLE_HEADERS:
            if len(headers.get_all(name)) > 1:
                return self._refuse(
                    conn, http.HTTPStatus.BAD_REQUEST, f"{name} header sent more than once",
                    f"bad request: {name} header repeated",
                )
        if "Origin" in headers:
            return self._refuse(
                conn, http.HTTPStatus.FORBIDDEN, "request from a browser (Origin header)",
                "browser requests are not allowed",
            )
        if not _is_loopback_host(headers.get("Host")):
            return self._refuse(
                conn, http.HTTPStatus.FORBIDDEN, f"Host {headers.get('Host')!r} is not loopback",
                "forbidden",
            )
        auth = headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self.token):
            why = "no token" if not auth else "wrong token"
            return self._refuse(conn, http.HTTPStatus.UNAUTHORIZED, why, "unauthorized")
        if len(self.observers) >= self.max_observers:
            return self._refuse(
                conn, http.HTTPStatus.SERVICE_UNAVAILABLE,
                f"already {len(self.observers)} observers", "too many observers",
            )
        return None

    async def handle(self, conn: ServerConnection) -> None:
        self.observers.add(conn)
        session = Session(observatory(self.node))
        log.info("observe: %s attached to %s", conn.remote_address, self.node.name)
        await conn.send(encode({"t": "hello", "node": self.node.name, "version": OBSERVE_VERSION}))
        wake = asyncio.Event()
        subscribed = asyncio.Event()
        pusher = asyncio.create_task(self._push(conn, session, wake, subscribed))
        try:
            async for data in conn:
                reply = await self._reply(session, data)
                if reply.get("ok"):
                    if reply.get("cmd") == "subscribe":
                        subscribed.set()
                    wake.set()  # what a command changed shows at once
                await conn.send(encode(reply))
        except ConnectionClosed:
            pass
        finally:
            pusher.cancel()
            await asyncio.gather(pusher, return_exceptions=True)
            session.close()  # its traces stop with it
            self.observers.discard(conn)
            log.info("observe: %s detached", conn.remote_address)

    async def _reply(self, session: Session, data: str | bytes) -> dict[str, Any]:
        rid: Any = None
        cmd: Any = None
        try:
            if isinstance(data, str):
                raise CommandError("bad_request", "messages are binary msgpack, not text")
            message = decode(data)
            rid, cmd = message.get("id"), message.get("cmd")
            if message["t"] != "cmd":
                raise CommandError("bad_request", f"unknown message type {message['t']!r}")
            value = session.handle(message)
            if inspect.isawaitable(value):  # reload: the answer comes when it is done
                value = await value
            encode({"value": value})
        except CommandError as e:
            log.info("observe: command %r refused: %s", cmd, e.message)
            return {"t": "reply", "id": rid, "cmd": cmd, "ok": False,
                    "error": e.kind, "message": e.message}
        except (UnsendableTerm, TypeError) as e:
            return {"t": "reply", "id": rid, "cmd": cmd, "ok": False,
                    "error": "bad_request", "message": str(e)}
        return {"t": "reply", "id": rid, "cmd": cmd, "ok": True, "value": value}

    async def _push(
        self, conn: ServerConnection, session: Session, wake: asyncio.Event,
        subscribed: asyncio.Event,
    ) -> None:
        await subscribed.wait()  # samples start with the first subscribe
        while True:
            wake.clear()  # before sending: a command during the send wakes the next one
            await conn.send(encode(session.sample().to_wire()))
            try:
                async with asyncio.timeout(session.subscription.interval):
                    await wake.wait()
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


async def serve_observe(
    node: ClusterNode,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str,
    max_observers: int = MAX_OBSERVERS,
) -> ObserveServer:
    """Serve ``node``'s observe channel on ``host:port``; it stops when the node closes."""
    obs = ObserveServer(node, token, max_observers)
    obs.server = await serve(
        obs.handle,
        host,
        port,
        process_request=obs.check,
        compression=None,
        max_size=MAX_MESSAGE,
        max_queue=16,
        server_header=None,
    )
    node.on_close(obs.close)
    log.info("node %s: observe channel on ws://%s:%d", node.name, *obs.local_addr())
    return obs


def serve_attachers(node: ClusterNode) -> None:
    """Answer ``observe`` control requests: peers (hidden attachers) get the
    same samples and commands as WebSocket clients. One session per peer,
    with the role its certificate grants, read when the session starts."""
    obs = observatory(node)
    sessions: dict[str, tuple[LinkProtocol, Session, str]] = {}

    def handle(peer: LinkProtocol, args: tuple[Any, ...]) -> Any:
        for name in [n for n, (p, _, _) in sessions.items() if node.link_to(n) is not p]:
            del sessions[name]  # peers that went away
        assert peer.name is not None
        entry = sessions.get(peer.name)
        if entry is None or entry[0] is not peer:
            entry = sessions[peer.name] = (peer, Session(obs), peer.role)
        _, session, role = entry
        if len(args) != 1 or not isinstance(args[0], dict):
            raise RemoteError.from_wire("bad_request", "observe takes one message map")
        message = args[0]
        try:
            if message.get("t") == "poll":
                return _fitted(session)
            if message.get("t") == "cmd":
                if is_read_only(role):
                    _check_read_only(node, peer.name, message.get("cmd"))
                value = session.handle(message)
                return _remote_errors(value) if inspect.isawaitable(value) else value
            raise CommandError("bad_request", f"unknown message type {message.get('t')!r}")
        except CommandError as e:
            raise RemoteError.from_wire(e.kind, e.message) from e

    node.handle_requests("observe", handle)


async def _remote_errors(value: Awaitable[Any]) -> Any:
    """Await a command's answer, its CommandError as the RemoteError a peer reads."""
    try:
        return await value
    except CommandError as e:
        raise RemoteError.from_wire(e.kind, e.message) from e


def _check_read_only(node: ClusterNode, peer: str, cmd: Any) -> None:
    """Raise a ``read_only`` CommandError if an observer may not run ``cmd``."""
    if cmd in READ_ONLY_REFUSED:
        log.warning("observe: refused %s from %s: it attached with an observer certificate",
                    cmd, peer)
        raise CommandError(
            "read_only",
            f"{cmd}: refused, {peer} attached to {node.name} with an observer certificate "
            "(read-only): it may watch but not send, spawn, kill or connect; attach with "
            "a node certificate to operate",
        )


def _fitted(session: Session) -> dict[str, Any]:
    """The next sample, with rows (and their history) dropped until it fits
    one control frame."""
    sample = session.sample().to_wire()
    history = sample.get("history")
    while _too_big(sample) and sample["rows"]:
        keep = len(sample["rows"]) // 2
        sample["omitted"] += len(sample["rows"]) - keep
        sample["rows"] = sample["rows"][:keep]
        if history is not None:
            shown = {row["pid"] for row in sample["rows"]}
            history["rows"] = {pid: v for pid, v in history["rows"].items() if pid in shown}
    if history is not None and _too_big(sample):
        history["rows"] = {}  # the totals' series still fit: 2 x 120 ints
    return sample


def _too_big(sample: dict[str, Any]) -> bool:
    try:
        return len(encode(sample)) > QUIC_MAX_SAMPLE
    except TermTooLarge:
        return True
