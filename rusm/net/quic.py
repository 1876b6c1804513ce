"""The QUIC engine adapter: aioquic behind one small class, :class:`QuicLink`.

Everything aioquic-specific lives here: configurations, the server-side
client-certificate check that aioquic does not do by itself (see
HARDENING.md), stream bookkeeping, batching and keepalive. The link feeds
bytes to the sans-I/O codec (``wire``) and hands decoded frames to its
handler, which holds the protocol logic (``peer``).

Mutual TLS. aioquic sends no CertificateRequest unless a private flag of its
TLS context is set, and even then never checks the client's chain. So the
server's connection is switched to :class:`_MutualServerConnection`, whose
TLS context requests the client certificate, refuses an empty one, and after
the client's CertificateVerify (proof it holds the key) checks the chain
against the cluster's trust anchor with ``tls.verify_peer``. A rejected
client gets a TLS alert with the reason; no stream of its reaches the node.
These are private aioquic names: the aioquic version range is pinned in
pyproject.toml and tests/test_cluster_tls.py guards each rejection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from aioquic import tls as aioquic_tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509

from .messages import LimitExceeded
from .tls import Identity, PeerRejected, verify_peer
from .wire import (
    ErrorCode,
    Frame,
    FrameDecoder,
    ProtocolError,
    UnexpectedFrame,
    WireLimits,
    encode_frame,
)

__all__ = ["ALPN", "LinkHandler", "QuicLink", "make_configuration", "tune_transport"]

log = logging.getLogger("rusm.net.quic")

ALPN = "rusm/1"
DATAGRAM_MAX_SIZE = 65536
"""Receive buffer per datagram; stock asyncio allocates 256 KiB per datagram."""


def tune_transport(transport: Any) -> None:
    """Give the stock loop's datagram transport a 64 KiB receive buffer instead
    of 256 KiB. uvloop's transport has no such setting (nor needs one)."""
    if hasattr(transport, "max_size"):
        transport.max_size = DATAGRAM_MAX_SIZE


def make_configuration(
    identity: Identity, *, is_client: bool, idle_timeout: float
) -> QuicConfiguration:
    """A QUIC configuration presenting ``identity`` and trusting only its anchors."""
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        idle_timeout=idle_timeout,
        verify_mode=ssl.CERT_REQUIRED,
        cadata=identity.cadata,  # never None: None would mean the public roots
        server_name=None,  # we connect by address; the name is checked at hello
    )
    config.certificate = identity.certificate
    config.certificate_chain = list(identity.chain[1:])
    config.private_key = identity.key
    return config


class _ClientCertificateRequired(aioquic_tls.Alert):
    description = aioquic_tls.AlertDescription.certificate_required


class _MutualServerTls(aioquic_tls.Context):
    """aioquic's server TLS context, made to demand and check client certificates."""

    rusm_identity: Identity

    def _server_handle_certificate(self, input_buf: Buffer) -> None:
        super()._server_handle_certificate(input_buf)
        if self._peer_certificate is None:
            raise _ClientCertificateRequired("a client certificate is required by this cluster")

    def _server_handle_certificate_verify(self, input_buf: Buffer) -> None:
        super()._server_handle_certificate_verify(input_buf)  # the signature: key possession
        assert self._peer_certificate is not None
        try:
            verify_peer(
                self.rusm_identity,
                [self._peer_certificate, *self._peer_certificate_chain],
                claimed_name=None,
                check_name=False,  # the name is checked when the peer says it, at hello
            )
        except PeerRejected as e:
            log.warning("rejected a client certificate: %s", e.reason)
            raise aioquic_tls.AlertBadCertificate(f"certificate rejected: {e.reason}") from e


class _MutualServerConnection(QuicConnection):
    rusm_identity: Identity

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        self.tls.__class__ = _MutualServerTls
        self.tls._request_client_certificate = True
        self.tls.rusm_identity = self.rusm_identity  # type: ignore[attr-defined]


class LinkHandler(Protocol):
    """What a link reports to (the protocol logic of one peer)."""

    def handshake_done(self) -> None: ...

    def control_frame(self, frame: Frame) -> None: ...

    def pair_frame(self, frame: Frame) -> None: ...

    def closed(self, code: int, reason: str) -> None: ...


class QuicLink(QuicConnectionProtocol):
    """One QUIC connection to a peer node.

    The connecting side opens the control stream (the first bidirectional
    stream); pair frames travel on unidirectional streams, one per
    (sender, destination) pair per event-loop turn.
    """

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: Any = None,
        *,
        make_handler: Callable[[QuicLink], LinkHandler],
        limits: WireLimits,
        identity: Identity,
        max_inbound_bytes: int,
        max_open_streams: int,
    ) -> None:
        if not quic.configuration.is_client:
            quic.__class__ = _MutualServerConnection
            quic.rusm_identity = identity  # type: ignore[attr-defined]
        super().__init__(quic)
        self.limits = limits
        self.max_inbound_bytes = max_inbound_bytes
        self.max_open_streams = max_open_streams
        self.peer_chain: list[x509.Certificate] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._control_sid: int | None = None
        self._control = FrameDecoder("control", limits.max_control_frame, limits.max_depth)
        self._streams: dict[int, FrameDecoder] = {}
        self._inbound = 0
        self._batches: dict[Any, list[bytes]] = {}
        self._flush: asyncio.Handle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._dead = False
        self.handler = make_handler(self)

    # -- outbound ------------------------------------------------------------

    def open_control(self) -> None:
        """Connecting side: open the control stream."""
        self._control_sid = self._quic.get_next_available_stream_id(is_unidirectional=False)

    def send_control(self, frame: Frame) -> None:
        if self._dead or self._control_sid is None:
            return
        self._quic.send_stream_data(self._control_sid, encode_frame(frame))
        self._schedule_flush()

    def send_pair(self, key: Any, data: bytes) -> None:
        """Queue one encoded pair frame; a pair's frames of one turn share a stream."""
        if self._dead:
            return
        batch = self._batches.get(key)
        if batch is None:
            self._batches[key] = [data]
        else:
            batch.append(data)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush is None:
            self._flush = self._loop.call_soon(self._do_flush)

    def _do_flush(self) -> None:
        self._flush = None
        if self._dead:
            self.transmit()  # a close still has to go out
            return
        batches, self._batches = self._batches, {}
        quic = self._quic
        for frames in batches.values():
            sid = quic.get_next_available_stream_id(is_unidirectional=True)
            quic.send_stream_data(sid, frames[0] if len(frames) == 1 else b"".join(frames), True)
        self.transmit()

    def abort(self, code: int, reason: str) -> None:
        """Close the link with an application error code (a protocol violation)."""
        if self._dead:
            return
        self._quic.close(error_code=code, reason_phrase=reason[:1000])
        self.transmit()
        self._lost(code, reason)

    def start_keepalive(self, interval: float) -> None:
        def ping() -> None:
            if self._dead:
                return
            self._quic.send_ping(0)
            self.transmit()
            self._keepalive = self._loop.call_later(interval, ping)

        self._keepalive = self._loop.call_later(interval, ping)

    # -- inbound -------------------------------------------------------------

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # aioquic transmits after every datagram; instead, acks and whatever
        # the processes answer go out together in this turn's one flush.
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        self._schedule_flush()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if self._dead:
            return
        try:
            if isinstance(event, events.StreamDataReceived):
                self._stream_data(event.stream_id, event.data, event.end_stream)
            elif isinstance(event, events.HandshakeCompleted):
                tls = self._quic.tls
                assert tls._peer_certificate is not None
                self.peer_chain = [tls._peer_certificate, *tls._peer_certificate_chain]
                self.handler.handshake_done()
            elif isinstance(event, events.ConnectionTerminated):
                self._lost(event.error_code, event.reason_phrase)
        except ProtocolError as e:
            log.warning("closing link %s: %s", self._describe(), e)
            self.abort(int(e.code), str(e))

    def _stream_data(self, sid: int, data: bytes, end: bool) -> None:
        if sid & 0x2:  # unidirectional: pair frames
            decoder = self._streams.get(sid)
            if decoder is None:
                if len(self._streams) >= self.max_open_streams:
                    raise LimitExceeded(f"more than {self.max_open_streams} open streams")
                decoder = self._streams[sid] = FrameDecoder(
                    "pair", self.limits.max_message_frame, self.limits.max_depth
                )
            # In flight: bytes the stream decoders hold that make no frame yet.
            self._inbound -= decoder.buffered
            decoder.receive_data(data)
            for frame in decoder.events():
                self.handler.pair_frame(frame)
            if end:
                decoder.receive_eof()
                del self._streams[sid]
            else:
                self._inbound += decoder.buffered
                if self._inbound > self.max_inbound_bytes:
                    raise LimitExceeded(
                        f"more than {self.max_inbound_bytes} inbound bytes in flight"
                    )
            return
        if self._control_sid is None and not self._quic.configuration.is_client:
            self._control_sid = sid  # the peer's first bidirectional stream
        if sid != self._control_sid:
            raise UnexpectedFrame(f"the peer opened an unexpected bidirectional stream {sid}")
        self._control.receive_data(data)
        for frame in self._control.events():
            self.handler.control_frame(frame)
        if end:
            raise UnexpectedFrame("the peer ended the control stream")

    def _lost(self, code: int, reason: str) -> None:
        if self._dead:
            return
        self._dead = True
        self.close_code, self.close_reason = code, reason
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self._flush is not None:
            self._flush.cancel()
        self._batches.clear()
        self._streams.clear()
        self.handler.closed(code, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost(ErrorCode.NO_ERROR, "transport closed")

    def _describe(self) -> str:
        network_paths = getattr(self._quic, "_network_paths", None)
        return str(network_paths[0].addr) if network_paths else "?"
