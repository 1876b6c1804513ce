"""Mutual TLS on qh3 (rusm.net.mtls): the server demands and checks client certificates.

qh3's server alone accepts any client (HARDENING.md). These tests run real
QUIC handshakes on loopback with real certificates against a qh3 server whose
connections went through ``require_client_certificates``, from qh3 clients
(some made to misbehave) and from aioquic clients.

A refused client must get the TLS alert as its close code (QUIC carries
alert N as CRYPTO_ERROR ``0x100 + N``) and the reason; the server
application must see nothing of it (no HandshakeCompleted, none of the bytes
the client sent as soon as it thought it was connected); one warning is
logged; and the listener must still accept a good client. That good client
is also the barrier that proves "nothing reached the server": the server
reads one socket in order, so by the time the good client's round trip is
done, every datagram of the refused client has been processed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol as AioquicProtocol
from aioquic.quic.configuration import QuicConfiguration as AioquicConfiguration
from aioquic.quic.connection import QuicConnection as AioquicConnection
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from qh3 import tls as qtls
from qh3.asyncio.protocol import QuicConnectionProtocol
from qh3.asyncio.server import QuicServer, serve
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.quic.tls_bridge import QuicTlsBridge
from qh3.tls import AlertDescription, Epoch
from qh3.tls import SignatureAlgorithm as _SA

from rusm.net.mtls import (
    CERTIFICATE_REQUEST,
    OFFERED_SIGNATURE_ALGORITHMS,
    _check_signature,
    _MutualServerTls,
    check_engine,
    make_configuration,
    peer_chain,
    require_client_certificates,
    verify_server_certificates,
)
from rusm.net.tls import ClusterCa, Identity
from rusm.net.wire import ALPN

from .helpers import EVENT_TIMEOUT
from .test_cluster_tls import expired, impostor, not_yet_valid

LOOPBACK = "127.0.0.1"
AIOQUIC_TIMEOUT = 10.0
"""aioquic clients need about a second to connect to a qh3 server (HARDENING.md)."""
IDLE_TIMEOUT = 5.0
PING, PONG = b"ping from the client", b"pong from the server"
CRYPTO_ERROR = 0x100
"""QUIC's close code for TLS alert N is CRYPTO_ERROR + N (RFC 9001 §4.8)."""


# -- both ends record what they see ---------------------------------------------------


class _Recorder:
    """What one end of a connection saw. The client says PING as soon as its
    handshake completes; the server answers PONG to each stream it gets."""

    is_client: bool

    def _start_recording(self, is_client: bool) -> None:
        self.is_client = is_client
        self.handshakes = 0
        self.received: list[bytes] = []
        self.replied = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    def _record(self, quic: Any, event: Any) -> bool:
        """Record ``event`` (qh3 or aioquic); True if something must be sent."""
        kind = type(event).__name__  # qh3's and aioquic's event classes share names
        if kind == "HandshakeCompleted":
            self.handshakes += 1
            if self.is_client:
                quic.send_stream_data(quic.get_next_available_stream_id(), PING, end_stream=True)
                return True
        elif kind == "StreamDataReceived":
            self.received.append(event.data)
            if event.end_stream:
                if self.is_client:
                    self.replied.set()
                else:
                    quic.send_stream_data(event.stream_id, PONG, end_stream=True)
                    return True
        elif kind == "ConnectionTerminated":
            self.close_code, self.close_reason = event.error_code, event.reason_phrase
            self.closed.set()
        return False


class Qh3Peer(QuicConnectionProtocol, _Recorder):
    """A qh3 end; a server end demands client certificates if given an identity."""

    def __init__(
        self, quic: QuicConnection, stream_handler: Any = None, *, mutual: Identity | None = None
    ) -> None:
        if mutual is not None and not quic.configuration.is_client:
            require_client_certificates(quic, mutual)
        super().__init__(quic, stream_handler=stream_handler)
        self._start_recording(quic.configuration.is_client)

    def quic_event_received(self, event: Any) -> None:
        # Not the base class's: its stream readers and writers are not used here.
        if self._record(self._quic, event):
            self.transmit()


class AioquicPeer(AioquicProtocol, _Recorder):
    """A plain aioquic 1.7 client."""

    def __init__(self, quic: AioquicConnection) -> None:
        super().__init__(quic)
        self._start_recording(True)

    def quic_event_received(self, event: Any) -> None:
        # Not the base class's: its stream readers and writers are not used here.
        if self._record(self._quic, event):
            self.transmit()


# -- a listener and its clients -------------------------------------------------------


@dataclass
class Listener:
    server: QuicServer
    peers: list[Qh3Peer]
    tickets: list[qtls.SessionTicket] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.server._transport is not None
        port: int = self.server._transport.get_extra_info("sockname")[1]
        return port

    def seen(self) -> tuple[int, list[bytes]]:
        """Handshakes completed and bytes received, over all its connections."""
        return (
            sum(p.handshakes for p in self.peers),
            [data for p in self.peers for data in p.received],
        )


async def listen(identity: Identity, *, mutual: bool = True) -> Listener:
    peers: list[Qh3Peer] = []
    tickets: list[qtls.SessionTicket] = []

    def create_protocol(quic: QuicConnection, stream_handler: Any = None) -> Qh3Peer:
        peer = Qh3Peer(quic, stream_handler, mutual=identity if mutual else None)
        peers.append(peer)
        return peer

    server = await serve(
        LOOPBACK,
        0,
        configuration=make_configuration(identity, is_client=False, idle_timeout=IDLE_TIMEOUT),
        create_protocol=create_protocol,
        session_ticket_handler=tickets.append,  # must never be called under mutual TLS
    )
    return Listener(server, peers, tickets)


class _MisbehavingClient(QuicConnection):
    """A qh3 client connection whose TLS context is switched to ``tls_class``."""

    tls_class: type[qtls.Context]

    def _create_tls(self, remote_source_cid: bytes | None) -> QuicTlsBridge:
        bridge = super()._create_tls(remote_source_cid)
        bridge.tls.__class__ = self.tls_class
        return bridge


class Clients:
    """Connects clients for a test and closes their sockets afterwards."""

    def __init__(self) -> None:
        self._transports: list[asyncio.BaseTransport] = []

    async def _open(self, make: Callable[[], Any], port: int) -> Any:
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(make, local_addr=(LOOPBACK, 0))
        self._transports.append(transport)
        peer.connect((LOOPBACK, port))
        return peer

    async def qh3(
        self,
        port: int,
        config: QuicConfiguration,
        *,
        tls_class: type[qtls.Context] | None = None,
        tickets: list[qtls.SessionTicket] | None = None,
        verifying: Identity | None = None,
    ) -> Qh3Peer:
        handler = tickets.append if tickets is not None else None
        if tls_class is None:
            quic = QuicConnection(configuration=config, session_ticket_handler=handler)
            if verifying is not None:  # as a node's link does
                verify_server_certificates(quic, verifying)
        else:
            quic = _MisbehavingClient(configuration=config, session_ticket_handler=handler)
            quic.tls_class = tls_class
        peer: Qh3Peer = await self._open(lambda: Qh3Peer(quic), port)
        return peer

    async def aioquic(self, port: int, presented: Identity | None, trusting: Identity) -> Any:
        config = AioquicConfiguration(
            is_client=True,
            alpn_protocols=[ALPN],
            idle_timeout=IDLE_TIMEOUT,
            verify_mode=ssl.CERT_REQUIRED,
            cadata=trusting.cadata,
            server_name=None,
        )
        if presented is not None:
            config.certificate = presented.certificate
            config.certificate_chain = list(presented.chain[1:])
            config.private_key = presented.key
        quic = AioquicConnection(configuration=config)
        return await self._open(lambda: AioquicPeer(quic), port)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()


def client_config(identity: Identity | None, trusting: Identity) -> QuicConfiguration:
    """A qh3 client configuration presenting ``identity`` (None: no certificate)."""
    if identity is not None:
        return make_configuration(identity, is_client=True, idle_timeout=IDLE_TIMEOUT)
    config = make_configuration(trusting, is_client=True, idle_timeout=IDLE_TIMEOUT)
    config.certificate, config.certificate_chain, config.private_key = None, [], None
    return config


# -- fixtures and assertions ------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> ClusterCa:
    return ClusterCa.generate()


@pytest.fixture(scope="module")
def london(ca: ClusterCa) -> Identity:
    return ca.issue("london")


@pytest.fixture(scope="module")
def tokyo(ca: ClusterCa) -> Identity:
    return ca.issue("tokyo")


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    made = Clients()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
async def listener(london: Identity) -> AsyncIterator[Listener]:
    made = await listen(london)
    try:
        yield made
    finally:
        made.server.close()


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.WARNING, logger="rusm.net.mtls")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "rusm.net.mtls"]


async def assert_accepted(client: Any, timeout: float = EVENT_TIMEOUT) -> None:
    """The client's PING got the server's PONG."""
    async with asyncio.timeout(timeout):
        await client.replied.wait()
    assert b"".join(client.received) == PONG
    assert not client.closed.is_set()


async def assert_refused(
    client: Any,
    listener: Listener,
    clients: Clients,
    good: Identity,
    alert: AlertDescription,
    why: str,
    warnings: Callable[[], list[str]],
    timeout: float = EVENT_TIMEOUT,
) -> None:
    """The listener refused ``client`` in the handshake with ``alert`` saying
    ``why``, its application saw nothing of it, and it still accepts ``good``."""
    async with asyncio.timeout(timeout):
        await client.closed.wait()
    assert client.close_code == CRYPTO_ERROR + alert, (client.close_code, client.close_reason)
    assert why in client.close_reason, client.close_reason
    # "Connected" is not "accepted": the client completed its handshake and
    # sent PING right away, then got the close.
    assert client.handshakes == 1
    assert client.received == []
    # The barrier: a good client's round trip through the same socket.
    newcomer = await clients.qh3(listener.port, client_config(good, good))
    await assert_accepted(newcomer)
    assert listener.seen() == (1, [PING])  # the newcomer's, nothing of the refused client
    logged = warnings()
    assert len(logged) == 1 and alert.name in logged[0], logged


# -- clients that are accepted --------------------------------------------------------------


async def test_a_client_with_a_ca_signed_certificate_is_accepted_and_data_flows_both_ways(
    listener: Listener, clients: Clients, london: Identity, tokyo: Identity, warnings: Any
) -> None:
    client = await clients.qh3(listener.port, client_config(tokyo, tokyo))
    await assert_accepted(client)
    [server_end] = listener.peers
    assert server_end.handshakes == 1 and server_end.received == [PING]
    assert peer_chain(server_end._quic) == [tokyo.certificate]
    assert peer_chain(client._quic) == [london.certificate]
    assert warnings() == []


async def test_nodes_sharing_one_self_signed_identity_accept_each_other(
    clients: Clients,
) -> None:
    shared = Identity.generate()
    listener = await listen(shared)
    try:
        client = await clients.qh3(listener.port, client_config(shared, shared))
        await assert_accepted(client)
        assert peer_chain(listener.peers[0]._quic) == [shared.certificate]
        assert peer_chain(client._quic) == [shared.certificate]
    finally:
        listener.server.close()


async def test_a_shared_identity_client_refuses_a_server_with_another_certificate(
    clients: Clients,
) -> None:
    shared = Identity.generate()
    listener = await listen(impostor(Identity.generate(), shared, None))
    try:
        client = await clients.qh3(listener.port, client_config(shared, shared), verifying=shared)
        async with asyncio.timeout(EVENT_TIMEOUT):
            await client.closed.wait()
        assert client.close_code == CRYPTO_ERROR + AlertDescription.bad_certificate
        assert "not signed by this cluster's trust anchor" in client.close_reason
        assert client.handshakes == 0
        assert listener.seen() == (0, [])
    finally:
        listener.server.close()


async def test_an_aioquic_client_with_a_ca_signed_certificate_is_accepted(
    listener: Listener, clients: Clients, london: Identity, tokyo: Identity
) -> None:
    client = await clients.aioquic(listener.port, tokyo, trusting=london)
    await assert_accepted(client, AIOQUIC_TIMEOUT)
    assert peer_chain(listener.peers[0]._quic) == [tokyo.certificate]


async def test_the_handshake_issues_no_session_ticket_though_both_ends_would_take_one(
    clients: Clients, london: Identity, tokyo: Identity
) -> None:
    client_tickets: list[qtls.SessionTicket] = []
    plain = await listen(london, mutual=False)
    mutual = await listen(london)
    try:
        # Control: qh3 without client authentication does issue one.
        control = await clients.qh3(plain.port, client_config(tokyo, tokyo), tickets=client_tickets)
        await assert_accepted(control)
        assert len(client_tickets) == 1 and len(plain.tickets) == 1
        client_tickets.clear()
        client = await clients.qh3(mutual.port, client_config(tokyo, tokyo), tickets=client_tickets)
        await assert_accepted(client)  # a ticket would have come before the PONG
        assert client_tickets == [] and mutual.tickets == []
    finally:
        plain.server.close()
        mutual.server.close()


# -- clients that are refused ----------------------------------------------------------------


async def test_a_client_without_a_certificate_is_refused_and_its_data_never_reaches_the_server(
    listener: Listener, clients: Clients, london: Identity, tokyo: Identity, warnings: Any
) -> None:
    client = await clients.qh3(listener.port, client_config(None, london))
    await assert_refused(
        client, listener, clients, tokyo,
        AlertDescription.certificate_required, "presented no certificate", warnings,
    )


@pytest.mark.parametrize(
    ("presenting", "why"),
    [
        ("another CA's certificate", "is not signed by this cluster's trust anchor"),
        ("a rogue self-signed certificate", "is not signed by this cluster's trust anchor"),
        ("an expired certificate", "expired on"),
        ("a not yet valid certificate", "is not valid until"),
    ],
)
async def test_a_client_presenting_a_certificate_the_cluster_does_not_trust_is_refused(
    listener: Listener,
    clients: Clients,
    ca: ClusterCa,
    london: Identity,
    tokyo: Identity,
    warnings: Any,
    presenting: str,
    why: str,
) -> None:
    presented = {
        "another CA's certificate": lambda: ClusterCa.generate().issue("tokyo"),
        "a rogue self-signed certificate": Identity.generate,
        "an expired certificate": lambda: expired(ca, "tokyo"),
        "a not yet valid certificate": lambda: not_yet_valid(ca, "tokyo"),
    }[presenting]()
    config = client_config(impostor(presented, london, None), london)
    client = await clients.qh3(listener.port, config)
    await assert_refused(
        client, listener, clients, tokyo, AlertDescription.bad_certificate, why, warnings
    )


async def test_a_client_with_the_right_certificate_but_the_wrong_key_is_refused(
    listener: Listener, clients: Clients, tokyo: Identity, warnings: Any
) -> None:
    config = client_config(tokyo, tokyo)
    config.private_key = qtls.load_pem_private_key(Identity.generate().key_pem)
    client = await clients.qh3(listener.port, config)
    await assert_refused(
        client, listener, clients, tokyo,
        AlertDescription.decrypt_error, "signature is wrong", warnings,
    )


class _SkipsCertificate(qtls.Context):
    """A client that ignores the CertificateRequest: it sends only its Finished."""

    def _client_handle_certificate_request(self, input_buf: Any) -> None:
        super()._client_handle_certificate_request(input_buf)
        self._certificate_request = None


class _SignsTheWrongBytes(qtls.Context):
    """A client that signs the server's CertificateVerify context string, not its own."""

    def _client_handle_finished(self, input_buf: Any, output_buf: Any) -> None:
        schedule = self.key_schedule
        assert schedule is not None
        server_context = b"TLS 1.3, server CertificateVerify"
        schedule.certificate_verify_data = (  # type: ignore[method-assign]
            lambda _context: qtls.KeySchedule.certificate_verify_data(schedule, server_context)
        )
        super()._client_handle_finished(input_buf, output_buf)


async def test_a_client_that_skips_its_certificate_is_refused(
    listener: Listener, clients: Clients, tokyo: Identity, warnings: Any
) -> None:
    client = await clients.qh3(
        listener.port, client_config(tokyo, tokyo), tls_class=_SkipsCertificate
    )
    await assert_refused(
        client, listener, clients, tokyo,
        AlertDescription.unexpected_message, "expected the client's CERTIFICATE", warnings,
    )


async def test_a_client_that_skips_certificate_verify_is_refused(
    listener: Listener, clients: Clients, tokyo: Identity, warnings: Any
) -> None:
    config = client_config(tokyo, tokyo)
    config.private_key = None  # qh3 then sends its Certificate but no CertificateVerify
    client = await clients.qh3(listener.port, config)
    await assert_refused(
        client, listener, clients, tokyo,
        AlertDescription.unexpected_message, "expected the client's CERTIFICATE_VERIFY", warnings,
    )


async def test_a_client_whose_certificate_verify_signs_the_wrong_bytes_is_refused(
    listener: Listener, clients: Clients, tokyo: Identity, warnings: Any
) -> None:
    client = await clients.qh3(
        listener.port, client_config(tokyo, tokyo), tls_class=_SignsTheWrongBytes
    )
    await assert_refused(
        client, listener, clients, tokyo,
        AlertDescription.decrypt_error, "signature is wrong", warnings,
    )


@pytest.mark.parametrize("presenting", ["no certificate", "a rogue self-signed certificate"])
async def test_an_aioquic_client_without_a_trusted_certificate_is_refused(
    listener: Listener,
    clients: Clients,
    london: Identity,
    tokyo: Identity,
    warnings: Any,
    presenting: str,
) -> None:
    if presenting == "no certificate":
        presented, alert = None, AlertDescription.certificate_required
    else:
        presented, alert = Identity.generate(), AlertDescription.bad_certificate
    client = await clients.aioquic(listener.port, presented, trusting=london)
    await assert_refused(
        client, listener, clients, tokyo, alert, "certificate", warnings, AIOQUIC_TIMEOUT
    )


# -- the pieces ------------------------------------------------------------------------------


def _tls_context(identity: Identity, *, is_client: bool) -> qtls.Context:
    context = qtls.Context(
        is_client=is_client, alpn_protocols=[ALPN], cadata=identity.cadata,
        verify_mode=ssl.CERT_REQUIRED,
    )
    context.certificate = qtls.load_pem_x509_certificates(identity.chain_pem)[0]
    context.certificate_private_key = qtls.load_pem_private_key(identity.key_pem)
    return context


def _buffers() -> dict[qtls.Epoch, qtls.Buffer]:
    return {e: qtls.Buffer(capacity=16384) for e in (Epoch.INITIAL, Epoch.HANDSHAKE, Epoch.ONE_RTT)}


def _client_second_flight(client: qtls.Context, server: qtls.Context) -> bytes:
    """Run TLS (no QUIC) up to the client's Certificate, CertificateVerify, Finished."""
    out = _buffers()
    client.handle_message(b"", out)
    hello = _buffers()
    server.handle_message(out[Epoch.INITIAL].data, hello, Epoch.INITIAL)
    out = _buffers()
    client.handle_message(hello[Epoch.INITIAL].data, out, Epoch.INITIAL)
    client.handle_message(hello[Epoch.HANDSHAKE].data, out, Epoch.HANDSHAKE)
    assert client.state is qtls.State.CLIENT_POST_HANDSHAKE
    flight: bytes = out[Epoch.HANDSHAKE].data
    return flight


def _mutual_server(identity: Identity) -> qtls.Context:
    server = _tls_context(identity, is_client=False)
    server.__class__ = _MutualServerTls
    assert isinstance(server, _MutualServerTls)
    server._rusm_setup(identity)
    return server


def test_a_client_flight_arriving_one_byte_at_a_time_is_accepted(
    london: Identity, tokyo: Identity
) -> None:
    server = _mutual_server(london)
    flight = _client_second_flight(_tls_context(tokyo, is_client=True), server)
    assert flight[0] == qtls.HandshakeType.CERTIFICATE
    for i in range(len(flight)):
        assert server.state is qtls.State.SERVER_EXPECT_FINISHED
        server.handle_message(flight[i : i + 1], _buffers(), Epoch.HANDSHAKE)
    assert server.state is qtls.State.SERVER_POST_HANDSHAKE
    assert server.peer_certificate is not None
    assert server.peer_certificate.public_bytes() == tokyo.certificate.public_bytes(Encoding.DER)


def test_a_client_certificate_at_the_wrong_encryption_level_is_refused(
    london: Identity, tokyo: Identity
) -> None:
    server = _mutual_server(london)
    flight = _client_second_flight(_tls_context(tokyo, is_client=True), server)
    with pytest.raises(qtls.AlertUnexpectedMessage, match="Handshake level"):
        server.handle_message(flight, _buffers(), Epoch.ONE_RTT)
    with pytest.raises(qtls.AlertUnexpectedMessage):  # and nothing more is accepted
        server.handle_message(flight, _buffers(), Epoch.HANDSHAKE)
    assert server.state is qtls.State.SERVER_EXPECT_FINISHED


def test_an_unexpected_error_while_checking_refuses_the_client_with_an_alert(
    london: Identity, tokyo: Identity, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("verifier exploded")

    monkeypatch.setattr("rusm.net.mtls.verify_peer", broken)
    server = _mutual_server(london)
    flight = _client_second_flight(_tls_context(tokyo, is_client=True), server)
    # An alert (which QUIC turns into a close), not an exception escaping qh3.
    with pytest.raises(qtls.AlertInternalError, match="verifier exploded"):
        server.handle_message(flight, _buffers(), Epoch.HANDSHAKE)
    assert server.state is qtls.State.SERVER_EXPECT_FINISHED
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def _self_signed(key: Any) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
    )
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest)


@pytest.mark.parametrize("algorithm", OFFERED_SIGNATURE_ALGORITHMS, ids=lambda a: _SA(a).name)
def test_every_offered_signature_algorithm_is_verified_and_a_forgery_refused(
    algorithm: int,
) -> None:
    data = b" " * 64 + b"TLS 1.3, client CertificateVerify\0" + b"transcript hash"
    key: Any
    name = _SA(algorithm).name
    if name.startswith("ECDSA"):
        curve = {"SECP256R1": ec.SECP256R1, "SECP384R1": ec.SECP384R1, "SECP521R1": ec.SECP521R1}
        digest = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}
        key = ec.generate_private_key(curve[name.split("_")[1]]())
        signature = key.sign(data, ec.ECDSA(digest[name.split("_")[2]]()))
    elif name.startswith("RSA_PSS_RSAE"):
        digest = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}
        h = digest[name.split("_")[3]]()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signature = key.sign(data, padding.PSS(padding.MGF1(h), h.digest_size), h)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        signature = key.sign(data)
    leaf = _self_signed(key)
    _check_signature(leaf, algorithm, data, signature)
    with pytest.raises(qtls.AlertDecryptError):
        _check_signature(leaf, algorithm, data + b"!", signature)
    other = next(a for a in OFFERED_SIGNATURE_ALGORITHMS if _SA(a).name[:5] != name[:5])
    with pytest.raises(qtls.AlertIllegalParameter, match="does not fit"):
        _check_signature(leaf, other, data, signature)
    with pytest.raises(qtls.AlertIllegalParameter, match="did not offer"):
        _check_signature(leaf, _SA.RSA_PKCS1_SHA256, data, signature)



def test_the_certificate_request_asks_for_the_signatures_the_server_verifies() -> None:
    request = qtls.pull_certificate_request(qtls.Buffer(data=CERTIFICATE_REQUEST))
    assert request.request_context == b""
    assert request.signature_algorithms == list(OFFERED_SIGNATURE_ALGORITHMS)
    assert request.other_extensions == []
    assert qtls.SignatureAlgorithm.ECDSA_SECP256R1_SHA256 in OFFERED_SIGNATURE_ALGORITHMS
    assert qtls.SignatureAlgorithm.RSA_PKCS1_SHA256 not in OFFERED_SIGNATURE_ALGORITHMS


def test_make_configuration_trusts_only_the_identitys_anchors(tokyo: Identity) -> None:
    config = make_configuration(
        tokyo, is_client=False, idle_timeout=7.0, max_data=1 << 20, max_stream_data=1 << 16
    )
    assert config.alpn_protocols == [ALPN]
    assert config.verify_mode == ssl.CERT_REQUIRED
    assert config.cadata == tokyo.cadata
    assert config.server_name is None and config.session_ticket is None
    assert (config.idle_timeout, config.max_data, config.max_stream_data) == (7.0, 1 << 20, 1 << 16)
    assert config.certificate is not None
    assert config.certificate.public_bytes() == tokyo.certificate.public_bytes(Encoding.DER)
    assert config.assert_fingerprint is None
    # qh3's client chain check cannot take a self-signed anchor: verify_server_certificates
    # replaces it (the tests above refuse servers through it).
    client = make_configuration(tokyo, is_client=True, idle_timeout=7.0)
    assert client.verify_mode == ssl.CERT_NONE and client.cadata == tokyo.cadata


async def test_a_ca_client_refuses_a_server_of_another_ca_in_its_own_words(
    clients: Clients, tokyo: Identity
) -> None:
    listener = await listen(ClusterCa.generate().issue("london"))
    try:
        client = await clients.qh3(listener.port, client_config(tokyo, tokyo), verifying=tokyo)
        async with asyncio.timeout(EVENT_TIMEOUT):
            await client.closed.wait()
        assert client.close_code == CRYPTO_ERROR + AlertDescription.bad_certificate
        assert "certificate rejected: " in client.close_reason
        assert client.handshakes == 0 and listener.seen() == (0, [])
    finally:
        listener.server.close()


def test_only_a_fresh_server_connection_can_require_client_certificates(
    tokyo: Identity,
) -> None:
    client = QuicConnection(configuration=client_config(tokyo, tokyo))
    with pytest.raises(ValueError, match="this is a client"):
        require_client_certificates(client, tokyo)


def test_check_engine_passes_on_the_installed_qh3() -> None:
    check_engine()


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        (qtls.Context, "_server_handle_hello", "qh3.tls.Context._server_handle_hello"),
        (QuicConnection, "_create_tls", "qh3.quic.connection.QuicConnection._create_tls"),
        (qtls.KeySchedule, "update_hash", "qh3.tls.KeySchedule.update_hash"),
    ],
)
def test_check_engine_fails_loudly_naming_a_name_qh3_no_longer_has(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str, named: str
) -> None:
    monkeypatch.delattr(owner, name)
    with pytest.raises(RuntimeError, match=named.replace(".", r"\.")) as info:
        check_engine()
    assert "qh3" in str(info.value)


def test_check_engine_notices_a_changed_instance_attribute_and_a_changed_method(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    init = qtls.Context.__init__

    def without_dec_key(self: qtls.Context, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        del self._dec_key

    def finished(self: qtls.Context, input_buf: Any, output_buf: Any) -> None:
        """A Finished check that no longer reads _expected_verify_data."""

    monkeypatch.setattr(qtls.Context, "__init__", without_dec_key)
    monkeypatch.setattr(qtls.Context, "_server_handle_finished", finished)
    with pytest.raises(RuntimeError) as info:
        check_engine()
    assert "qh3.tls.Context._dec_key" in str(info.value)
    assert "qh3.tls.Context._server_handle_finished._expected_verify_data" in str(info.value)
