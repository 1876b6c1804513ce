"""The QUIC adapter: qh3 behind one thin class, :class:`QuicLink`.

Everything engine-specific lives here and in :mod:`rusm.net.mtls` (the
client-certificate check qh3 does not do by itself): stream ids, the flush
of each loop turn, the hello deadline and keepalive. The protocol itself is
:class:`~rusm.net.link.LinkProtocol`, which never sees a stream id: the link
feeds it the control stream's bytes and each lane's, and writes what it
returns from ``data_to_send()``.

Streams: the connecting side opens the control stream (the first
bidirectional stream). Each side opens its own lanes, unidirectional streams
that live as long as the link, the first time a pair hashed to that lane
sends. Per loop turn: one write per lane with pending frames, one transmit,
and more only when a turn queues more than the protocol's first flush
(``rusm.net.link.FLUSH_FIRST``). A link between two ends on this host
sends datagrams of :data:`LOOPBACK_DATAGRAM_SIZE`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from qh3.asyncio.protocol import QuicConnectionProtocol
from qh3.asyncio.server import QuicServer, serve
from qh3.quic import events
from qh3.quic.connection import QuicConnection, QuicConnectionError

from .busywait import BusyWait
from .link import LinkProtocol
from .mtls import (
    peer_chain,
    refused_here,
    require_client_certificates,
    verify_server_certificates,
)
from .tls import Identity
from .wire import ErrorCode, ProtocolError, UnexpectedFrame

__all__ = [
    "ACK_DELAY",
    "DATAGRAM_MAX_SIZE",
    "LOOPBACK_DATAGRAM_SIZE",
    "QuicLink",
    "is_loopback",
    "tune_transport",
]

log = logging.getLogger("rusm.net.quic")

CRYPTO_ERROR = 0x100
"""QUIC's CRYPTO_ERROR: a TLS alert closes a connection with 0x100 + the alert."""
DATAGRAM_MAX_SIZE = 65536
"""Receive buffer per datagram; stock asyncio allocates 256 KiB per datagram."""


ACK_DELAY = 0.002
"""Seconds this side may hold an ACK of application data, hoping it rides on
the answer. qh3 sends one after a fraction of the round trip (well under a
millisecond on loopback), in a datagram of its own that wakes the peer, though
it tells the peer it may wait 25 ms (``max_ack_delay``). Only when no stream
data waits to be sent (a paced packet must not wait for it)."""

LOOPBACK_DATAGRAM_SIZE = 16384
"""Bytes a link sends per datagram when both its ends are on this host. The
loopback interface carries 64 KiB datagrams, and each datagram costs the
engine (and the loop) about as much as hundreds of bytes of messages: a
window of small messages costs about half the CPU in 16 KiB datagrams that
it costs in qh3's 1,280-1,472 bytes. Other links keep qh3's size and its
path MTU probing."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is this host's loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


_REPEAT_AFTER = 60.0
_said: dict[Any, float] = {}


def _first_in_a_while(key: Any) -> bool:
    """Whether ``key`` was not seen in the last minute (and note it now): a
    peer that keeps retrying with the same refusal gets one warning a minute."""
    now = time.monotonic()
    if len(_said) > 1024:
        _said.clear()
    last = _said.get(key)
    _said[key] = now
    return last is None or now - last > _REPEAT_AFTER


def tune_transport(transport: Any) -> None:
    """Give the stock loop's datagram transport a 64 KiB receive buffer instead
    of 256 KiB. uvloop's transport has no such setting (nor needs one)."""
    if hasattr(transport, "max_size"):
        transport.max_size = DATAGRAM_MAX_SIZE


Listener = QuicServer
"""The engine's server: what :func:`listen` returns."""


async def listen(host: str, port: int, configuration: Any,
                 create_protocol: Callable[..., QuicLink]) -> QuicServer:
    """The engine's server on ``host:port``: one :class:`QuicLink` per peer."""
    server = await serve(host, port, configuration=configuration,
                         create_protocol=create_protocol)
    tune_transport(server._transport)
    return server


def listening_on(server: QuicServer | None) -> tuple[str, int] | None:
    """The (host, port) a server listens on; None once it is closed."""
    transport = server._transport if server is not None else None
    if transport is None:
        return None
    host, port = transport.get_extra_info("sockname")[:2]
    return host, port


async def dial(configuration: Any, create_protocol: Callable[..., QuicLink],
               addr: tuple[str, int]) -> tuple[asyncio.DatagramTransport, QuicLink]:
    """Open a client connection to ``addr`` (the handshake starts at once)."""
    loop = asyncio.get_running_loop()
    transport, link = await loop.create_datagram_endpoint(
        lambda: create_protocol(QuicConnection(configuration=configuration)),
        local_addr=("::" if ":" in addr[0] else "0.0.0.0", 0),
    )
    tune_transport(transport)
    link.connect(addr)
    return transport, link


class QuicLink(QuicConnectionProtocol):
    """One QUIC connection to a peer node, feeding one :class:`LinkProtocol`."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: Any = None,
        *,
        make_protocol: Callable[[QuicLink], LinkProtocol],
        identity: Identity,
        hello_timeout: float,
        keepalive: float,
        max_outbound_bytes: int,
        busy_wait: BusyWait | None = None,
    ) -> None:
        if quic.configuration.is_client:
            verify_server_certificates(quic, identity)
        else:
            require_client_certificates(quic, identity)
        super().__init__(quic)
        self.hello_timeout = hello_timeout
        self.keepalive = keepalive
        self.max_outbound_bytes = max_outbound_bytes
        self._busy_wait = busy_wait
        self.peer_chain: list[x509.Certificate] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._control_sid: int | None = None
        self._lane_sids: dict[int, int] = {}
        self._flush: asyncio.Handle | None = None
        self._drained: asyncio.Future[None] | None = None  # see drain()
        self._hello_timer: asyncio.TimerHandle | None = None
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._dead = False
        self.remote: Any = None
        """The peer's address (host, port, ...)."""
        self.rtt: float | None = None
        """Seconds the last keepalive ping took to be acknowledged (None until one was)."""
        self._pings: dict[int, float] = {}  # uid -> when it was sent
        self._ping_ids = itertools.count(1)
        self.protocol = make_protocol(self)

    # -- outbound ------------------------------------------------------------

    def wakeup(self) -> None:
        """The protocol has something to send: flush once, later in this turn."""
        if self._flush is None and not self._dead:
            self._flush = self._loop.call_soon(self._turn_ends)

    def _turn_ends(self) -> None:
        # Scheduled once per turn that queued something, and run even if an
        # early flush has sent it all since: the protocol's next turn then
        # starts from its first flush threshold again.
        self._flush = None
        self.flush()

    def flush(self) -> None:
        """Write what the protocol queued (one write per stream) and transmit;
        close the link if the peer lets more than ``max_outbound_bytes`` pile up.
        The end of the turn calls it (see :meth:`wakeup`), and so does the
        protocol when a turn has queued enough that it should go now."""
        if self._dead:
            return
        control, lanes = self.protocol.data_to_send()
        quic = self._quic
        try:
            if control:
                if self._control_sid is None:  # the connector speaks first
                    self._control_sid = quic.get_next_available_stream_id(is_unidirectional=False)
                quic.send_stream_data(self._control_sid, control)
            sids = self._lane_sids
            for lane, data in lanes.items():
                sid = sids.get(lane)
                if sid is None:
                    sid = sids[lane] = quic.get_next_available_stream_id(is_unidirectional=True)
                quic.send_stream_data(sid, data)
        except Exception as e:  # the engine refused a write: the link cannot go on
            log.warning("closing link %s: the engine refused a write: %s", self._describe(), e)
            self._close(ErrorCode.INTERNAL_ERROR, f"internal error: {e}")
            return
        self.transmit()
        backlog = quic.get_send_buffer_size()
        if backlog > self.max_outbound_bytes:
            reason = f"the peer lets more than {self.max_outbound_bytes} bytes pile up unread"
            log.warning("closing link %s: %s", self._describe(), reason)
            self._close(ErrorCode.LIMIT_EXCEEDED, reason)

    def transmit(self) -> None:
        """qh3's transmit, one datagram at a time, surviving an engine error.

        qh3 2.1's ``poll_transmit`` raises QuicConnectionError ("packet builder
        capacity exhausted") in some handshakes (every aioquic client's). Its
        own transmit collects every datagram before sending any, so such an
        error drops the datagrams already built (the engine counts them sent:
        the handshake waits a PTO, ~1 s per aioquic client, and under load
        stalls), and it skips re-arming the engine's timer, so a stalled
        handshake keeps its state forever (no idle timeout, no hello deadline
        yet) and ``abort``, hence ``ClusterNode.close``, raises. Here each
        datagram goes out as soon as it is built, the error ends this round,
        and the timer is re-armed whatever happened.
        """
        self._transmit_task = None
        quic = self._quic
        core = quic._core
        timer_at = None
        sent = False
        if core is not None:
            now = self._loop_time()
            sendto = self._transport.sendto  # type: ignore[union-attr]
            try:
                while (datagram := quic._call_core(core.poll_transmit, now)) is not None:
                    sendto(datagram[0], datagram[1])
                    sent = True
            except QuicConnectionError as e:
                log.debug("link %s: the engine could not transmit: %s", self._describe(), e)
            if sent and self._busy_wait is not None:
                self._busy_wait.poke(self._loop)  # the answer will find us awake
            timer = core.get_timer()  # (kind, when) or None
            if timer is not None:
                timer_at = timer[1]
                if (timer[0] == "ack_application" and timer_at < now + ACK_DELAY
                        and quic.get_send_buffer_size() == 0):
                    # Hold the ACK, keeping a timer already set for that.
                    latest, held = now + ACK_DELAY, self._timer_at
                    if self._timer is None or held is None or not timer_at <= held <= latest:
                        held = latest
                    timer_at = held
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self._loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at

    def sent_all(self) -> bool:
        """Whether everything written has been sent and acknowledged (or the
        link is gone): nothing is queued in the engine and nothing is in flight."""
        quic = self._quic
        core = quic._core
        return (self._dead or core is None
                or (quic.get_send_buffer_size() == 0 and core.bytes_in_flight == 0))

    async def drain(self) -> None:
        """Flush, then wait until the peer has acknowledged everything written
        or the link is gone. A graceful close waits for this before its
        CONNECTION_CLOSE, which discards what the engine has not sent yet (held
        back by pacing or congestion control on a busy host): the exit and Down
        signals of the closing node's processes."""
        self.flush()
        if self.sent_all():
            return
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()
        await asyncio.shield(self._drained)

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done() and self.sent_all():
            drained.set_result(None)

    def abort(self, code: int, reason: str) -> None:
        """Close the link with an application error code (a protocol violation)."""
        if self._dead:
            return
        self.flush()  # what was queued before the close (exit signals) goes first
        self._close(code, reason)

    def _close(self, code: int, reason: str) -> None:
        if self._dead:
            return
        self._quic.close(error_code=code, reason_phrase=reason[:1000])
        self.transmit()
        self._lost(code, reason)

    def close(self) -> None:
        """The engine's close (the server calls it on every connection when
        the node closes): nothing more to send on a link that is gone."""
        if self._dead:
            self.stop_timer()
            return
        self._close(ErrorCode.NO_ERROR, "closed")

    def _ping(self) -> None:
        """Keep a quiet link alive (the engine's idle timeout is for dead
        peers) and measure its round trip."""
        if not self._dead:
            if len(self._pings) >= 8:
                self._pings.clear()  # pings that were never acknowledged
            uid = next(self._ping_ids)
            self._pings[uid] = self._loop.time()
            self._quic.send_ping(uid)
            self.transmit()
            self._keepalive_timer = self._loop.call_later(self.keepalive, self._ping)

    # -- inbound -------------------------------------------------------------

    def connect(self, addr: Any) -> None:
        self.remote = addr
        super().connect(addr)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self.remote is None:
            self.remote = addr
        # qh3 transmits after every datagram; instead, acks and whatever the
        # processes answer go out together in this turn's one flush.
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        self.wakeup()
        if self._drained is not None:
            self._check_drained()

    def datagrams_received(self, data: list[bytes], addr: Any) -> None:
        self._quic.receive_many_datagrams(data, addr, now=self._loop.time())
        self._process_events()
        self.wakeup()
        if self._drained is not None:
            self._check_drained()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if self._dead:
            return
        try:
            if isinstance(event, events.StreamDataReceived):
                if not self.peer_chain:  # defence in depth: mtls keeps them out
                    raise UnexpectedFrame("stream data before the handshake completed")
                sid = event.stream_id
                if sid & 0x2:  # unidirectional: a lane of the peer's
                    self.protocol.receive_lane(sid, event.data, event.end_stream)
                    return
                if self._control_sid is None and not self._quic.configuration.is_client:
                    self._control_sid = sid  # the peer's first bidirectional stream
                if sid != self._control_sid:
                    raise UnexpectedFrame(f"the peer opened a second bidirectional stream {sid}")
                self.protocol.receive_control(event.data, event.end_stream)
            elif isinstance(event, events.HandshakeCompleted):
                self.peer_chain = peer_chain(self._quic)
                self._hello_timer = self._loop.call_later(self.hello_timeout, self._hello_due)
                self._ping()  # a first round trip now; then every keepalive interval
                self.protocol.handshake_done()
            elif isinstance(event, events.PingAcknowledged):
                sent = self._pings.pop(event.uid, None)
                if sent is not None:
                    self.rtt = self._loop.time() - sent
            elif isinstance(event, events.ConnectionTerminated):
                self._lost(event.error_code, event.reason_phrase)
            elif isinstance(event, events.StreamReset | events.StopSendingReceived):
                # Lanes and the control stream live as long as the link: a peer
                # that resets or stops one breaks the protocol.
                kind = "reset" if isinstance(event, events.StreamReset) else "stopped"
                raise UnexpectedFrame(f"the peer {kind} stream {event.stream_id}")
        except ProtocolError as e:
            log.warning("closing link %s: %s", self._describe(), e)
            self.abort(int(e.code), str(e))
        except Exception as e:  # this node's bug: never let it escape the transport
            log.exception("closing link %s: internal error", self._describe())
            self.abort(ErrorCode.INTERNAL_ERROR, f"internal error: {e!r}")

    def _hello_due(self) -> None:
        self._hello_timer = None
        try:
            self.protocol.hello_timed_out()
        except ProtocolError as e:
            log.warning("closing link %s: %s", self._describe(), e)
            self.abort(int(e.code), str(e))

    def _lost(self, code: int, reason: str) -> None:
        if self._dead:
            return
        if (
            not self.peer_chain
            and CRYPTO_ERROR <= code < CRYPTO_ERROR + 256
            and not self._quic.configuration.is_client
            and not refused_here(self._quic)
        ):
            # The connecting peer refused this node in the handshake: the one
            # line this side says about it (the peer's connect() says the rest),
            # once a minute for a peer that retries.
            said = reason or f"TLS alert {code - CRYPTO_ERROR}"
            host = self.remote[0] if self.remote else None
            level = logging.WARNING if _first_in_a_while((host, said)) else logging.DEBUG
            log.log(level, "link %s refused by the peer in the TLS handshake: %s",
                    self._describe(), said)
        self._dead = True
        self.close_code, self.close_reason = code, reason
        for timer in (self._hello_timer, self._keepalive_timer):
            if timer is not None:
                timer.cancel()
        self._hello_timer = self._keepalive_timer = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._check_drained()
        self.protocol.connection_lost(code, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost(ErrorCode.NO_ERROR, "transport closed")

    def stop_timer(self) -> None:
        """Cancel the engine's timer: the endpoint is being closed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _describe(self) -> str:
        name = self.protocol.name
        where = f"{self.remote[0]}:{self.remote[1]}" if self.remote else "?"
        return f"to {name} ({where})" if name else f"from {where}"
