"""Mutual TLS for qh3 servers: request, check and require client certificates.

Why this exists. qh3 (aioquic's API, its packet engine in Rust, its TLS 1.3
state machine still Python: ``qh3.tls.Context``) has no client-certificate
states on the server side. Its server never sends a CertificateRequest, goes
straight from ClientHello to SERVER_EXPECT_FINISHED ("as we don't use client
auth") and accepts a client that presents no certificate, another CA's, or a
self-signed one, whatever ``verify_mode`` and ``cadata`` say. RFC 9001 §4.4
forbids post-handshake client authentication in QUIC, so the check has to
happen inside the handshake. This module adds it from subclasses
(HARDENING.md, "QUIC engines do not authenticate clients by themselves"):

* :func:`require_client_certificates` upgrades a server-side
  :class:`~qh3.quic.connection.QuicConnection`, before its first datagram, to
  one whose TLS context (``_MutualServerTls``) writes a CertificateRequest
  (RFC 8446 §4.3.2) between EncryptedExtensions and its Certificate, then
  demands, in this order and at the Handshake level, the client's
  Certificate (empty: alert certificate_required), CertificateVerify (the
  signature over the transcript, proof the client holds the key, checked
  with ``cryptography``; then the chain, checked against the identity's trust
  anchor by :func:`rusm.net.tls.verify_peer` with ``check_name=False``: the
  node name is checked later, at hello) and Finished. Anything else is an
  unexpected_message alert. A refused client gets a TLS alert, which QUIC
  carries as the CRYPTO_ERROR ``0x100 + alert`` close code, and one warning
  line is logged.
* :func:`peer_chain` is the peer's certificate chain, leaf first, as
  ``cryptography`` certificates; :func:`make_configuration` builds a qh3
  configuration presenting and trusting an :class:`~rusm.net.tls.Identity`.

How the transcript is kept right. qh3's ``_server_handle_hello`` writes
ServerHello, EncryptedExtensions, Certificate, CertificateVerify and Finished,
each hashed into ``key_schedule`` by ``update_hash``, then "anticipates" the
client's Finished: it computes ``_expected_verify_data`` and hashes an assumed
client Finished into the transcript. While that method runs, the key schedule
it creates is switched to a subclass whose ``update_hash`` writes and hashes
the CertificateRequest right after EncryptedExtensions, and drops the
anticipated client Finished, so the transcript stops at the server's Finished
(without that, every good client fails with decrypt_error). The client's
Certificate and CertificateVerify are then hashed as they arrive and the
expected Finished is computed only when the client's Finished arrives. If
qh3's server flight ever differs from this (a message missing, another
order), the hook refuses every client with internal_error instead of
guessing: it fails closed.

What is turned off, because it would let a client in without a certificate
or before it is checked: session tickets and resumption (qh3 builds the
ticket at ServerHello, before the client is authenticated; a resumed client
would skip the certificate), 0-RTT (qh3's bridge gives servers
``MAX_EARLY_DATA``), and ALPS (it changes the client's flight): the server
context's session-ticket callbacks are cleared, whatever ``serve()`` was
given, and its early-data limit removed.

Facts the link code must respect (measured, HARDENING.md):

* qh3's server has its own 1-RTT *sending* keys from the ClientHello on, and
  ``ProtocolNegotiated`` fires before the client is authenticated: anything
  written before ``HandshakeCompleted`` can reach an unauthenticated client.
  Write nothing before ``HandshakeCompleted``. The server installs its 1-RTT
  *receiving* keys only after the client's Finished, i.e. after the checks
  here, so a refused client's stream data never reaches the server.
* A refused client first reports its handshake done (it completes on sending
  its Finished) and only then receives the close: "connected" is not
  "accepted". Count a link up only after the hello exchange.
* ``cadata=None`` means the public roots: :func:`make_configuration` never
  leaves it unset.
* A qh3 *client* never takes a self-signed leaf that carries a TLS extended
  key usage as a trust anchor (its store sorts it out: "unable to get local
  issuer certificate (empty CA store)"), so with ``CERT_REQUIRED`` a shared
  :meth:`~rusm.net.tls.Identity.generate` identity refuses every server.
  So a client's own check is off (``verify_mode=CERT_NONE``; qh3 still
  checks the server's CertificateVerify signature) and
  :func:`verify_server_certificates` checks the server's chain with
  :func:`~rusm.net.tls.verify_peer` instead, in the same words as the server
  side, for a cluster CA and a shared identity alike.
* An aioquic 1.7 client needs about a second to connect to a qh3 2.1 server
  (qh3 raises "packet builder capacity exhausted" in ``poll_transmit`` a few
  times); qh3 to qh3 is unaffected.

Private names. Everything this relies on below qh3's documented API is listed
in :data:`PRIVATE_NAMES`; :func:`check_engine` checks that the installed qh3
still has each of them, and :func:`require_client_certificates` runs that
check once per process. Pin the qh3 version range and keep
tests/test_mtls.py: it exercises every refusal with real certificates.
"""

from __future__ import annotations

import enum
import functools
import importlib
import logging
import ssl
import types
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from qh3 import tls as qtls
from qh3._hazmat import Buffer, BufferReadError, CryptoError
from qh3._hazmat import Certificate as X509Certificate
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.quic.packet import pull_quic_transport_parameters, push_quic_transport_parameters
from qh3.quic.tls_bridge import QuicTlsBridge

from .tls import Identity, PeerRejected, verify_peer
from .wire import ALPN

__all__ = [
    "CERTIFICATE_REQUEST",
    "OFFERED_SIGNATURE_ALGORITHMS",
    "PRIVATE_NAMES",
    "AlertCertificateRequired",
    "check_engine",
    "make_configuration",
    "peer_chain",
    "refused_here",
    "require_client_certificates",
    "verify_server_certificates",
]

log = logging.getLogger("rusm.net.mtls")

PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    # Overridden methods of the TLS context.
    ("qh3.tls.Context", "handle_message"),
    ("qh3.tls.Context", "_server_handle_hello"),
    ("qh3.tls.Context", "_server_handle_finished"),
    # Its state, read or written here.
    ("qh3.tls.Context", "state"),
    ("qh3.tls.Context", "key_schedule"),
    ("qh3.tls.Context", "_receive_buffer"),
    ("qh3.tls.Context", "_dec_key"),
    ("qh3.tls.Context", "_peer_certificate"),
    ("qh3.tls.Context", "_peer_certificate_chain"),
    ("qh3.tls.Context", "_max_early_data"),
    ("qh3.tls.Context", "_alps_supported"),
    ("qh3.tls.Context", "_alps_negotiated"),
    ("qh3.tls.Context", "get_session_ticket_cb"),
    ("qh3.tls.Context", "new_session_ticket_cb"),
    ("qh3.tls.Context", "early_data_accepted"),
    # Set here, read by qh3's _server_handle_finished.
    ("qh3.tls.Context._server_handle_finished", "_expected_verify_data"),
    # The transcript.
    ("qh3.tls.KeySchedule", "update_hash"),
    ("qh3.tls.KeySchedule", "certificate_verify_data"),
    ("qh3.tls.KeySchedule", "finished_verify_data"),
    # Message parsers and the server states.
    ("qh3.tls", "pull_certificate"),
    ("qh3.tls", "pull_certificate_verify"),
    ("qh3.tls.State", "SERVER_EXPECT_CLIENT_HELLO"),
    ("qh3.tls.State", "SERVER_EXPECT_FINISHED"),
    ("qh3.tls.State", "SERVER_POST_HANDSHAKE"),
    # The listening socket's transport, read by rusm.net.node (its address, tuning).
    ("qh3.asyncio.server.QuicServer.__init__", "_transport"),
    # Rust types that qh3.tls uses (the module is private).
    ("qh3._hazmat", "Buffer"),
    ("qh3._hazmat", "BufferReadError"),
    ("qh3._hazmat", "Certificate"),
    ("qh3._hazmat", "CryptoError"),
    # The client's check of the server's certificate, run before qh3's own.
    ("qh3.tls.Context", "_client_handle_certificate_verify"),
    # Where the connection makes its TLS context.
    ("qh3.quic.connection.QuicConnection", "_create_tls"),
    ("qh3.quic.connection.QuicConnection", "tls"),
    # QuicLink.transmit (rusm/net/quic.py): one datagram at a time from the
    # core, surviving "packet builder capacity exhausted", timer re-armed.
    ("qh3.quic.connection.QuicConnection.__init__", "_core"),
    ("qh3.quic.connection.QuicConnection", "_call_core"),
    ("qh3.quic.connection.QuicConnection.datagrams_to_send", "poll_transmit"),
    # ... and the core's timer, (kind, when): an "ack_application" one is held
    # (ACK_DELAY; tests/test_cluster_acks.py fails if the kind is renamed).
    ("qh3.quic.connection.QuicConnection.get_timer", "get_timer"),
    # QuicLink.sent_all: what a graceful close waits to see acknowledged.
    ("qh3._hazmat.QuicConnectionCore", "bytes_in_flight"),
    ("qh3.asyncio.protocol.QuicConnectionProtocol.__init__", "_transmit_task"),
    ("qh3.asyncio.protocol.QuicConnectionProtocol.__init__", "_timer"),
    ("qh3.asyncio.protocol.QuicConnectionProtocol.__init__", "_timer_at"),
    ("qh3.asyncio.protocol.QuicConnectionProtocol.__init__", "_loop_time"),
    ("qh3.asyncio.protocol.QuicConnectionProtocol.__init__", "_transport"),
    ("qh3.asyncio.protocol.QuicConnectionProtocol", "_handle_timer"),
    # A client advertising the datagram size it sends (_WideClientBridge).
    ("qh3.tls.Context", "handshake_extensions"),
    ("qh3.quic.tls_bridge.QuicTlsBridge", "serialize_transport_parameters"),
    ("qh3.quic.packet", "pull_quic_transport_parameters"),
    ("qh3.quic.packet", "push_quic_transport_parameters"),
    ("qh3.quic.packet.QuicTransportParameters", "max_udp_payload_size"),
    ("qh3.quic.packet.QuicTransportParameters", "greased_transport_parameter"),
    ("qh3.quic.tls_bridge.QuicTlsBridge.__init__", "grease_transport_parameter"),
)
"""Every qh3 name below its documented API that RUSM relies on (this module
and the link's transmit in :mod:`rusm.net.quic`).

``(owner, name)``: ``name`` is an attribute of the class or module ``owner``
(or of a fresh instance of the class), or, when ``owner`` is a function, a
name that function's code reads or writes."""

# Overridden methods must still take these positional parameters (self included).
_ARITIES = {
    ("qh3.tls.Context", "handle_message"): 4,
    ("qh3.tls.Context", "_server_handle_hello"): 5,
    ("qh3.tls.Context", "_server_handle_finished"): 3,
    ("qh3.quic.connection.QuicConnection", "_create_tls"): 2,
    ("qh3.quic.tls_bridge.QuicTlsBridge", "serialize_transport_parameters"): 1,
}

_SA = qtls.SignatureAlgorithm
_ECDSA: dict[int, tuple[type[ec.EllipticCurve], type[hashes.HashAlgorithm]]] = {
    _SA.ECDSA_SECP256R1_SHA256: (ec.SECP256R1, hashes.SHA256),
    _SA.ECDSA_SECP384R1_SHA384: (ec.SECP384R1, hashes.SHA384),
    _SA.ECDSA_SECP521R1_SHA512: (ec.SECP521R1, hashes.SHA512),
}
_RSA_PSS: dict[int, type[hashes.HashAlgorithm]] = {
    _SA.RSA_PSS_RSAE_SHA256: hashes.SHA256,
    _SA.RSA_PSS_RSAE_SHA384: hashes.SHA384,
    _SA.RSA_PSS_RSAE_SHA512: hashes.SHA512,
}
OFFERED_SIGNATURE_ALGORITHMS: tuple[int, ...] = (*_ECDSA, *_RSA_PSS, _SA.ED25519)
"""What the CertificateRequest lists, in preference order: the TLS 1.3
CertificateVerify algorithms that :func:`_check_signature` verifies (RSA
PKCS#1 v1.5 is not allowed in a TLS 1.3 CertificateVerify). RUSM's own
identities sign with ECDSA P-256."""

_MAX_MESSAGE = 65536
"""Largest client Certificate or CertificateVerify accepted (RUSM's are ~1 KiB)."""
_MAX_CERTIFICATES = 8
"""Most certificates accepted in a client's chain (verify_peer reads the leaf)."""
_CLIENT_CV_CONTEXT = b"TLS 1.3, client CertificateVerify"


def _certificate_request() -> bytes:
    """A CertificateRequest (RFC 8446 §4.3.2), the whole handshake message.

    An empty certificate_request_context (it is in the handshake) and one
    extension, signature_algorithms."""
    algorithms = b"".join(a.to_bytes(2, "big") for a in OFFERED_SIGNATURE_ALGORITHMS)
    extension = (
        int(qtls.ExtensionType.SIGNATURE_ALGORITHMS).to_bytes(2, "big")
        + (len(algorithms) + 2).to_bytes(2, "big")
        + len(algorithms).to_bytes(2, "big")
        + algorithms
    )
    body = b"\x00" + len(extension).to_bytes(2, "big") + extension
    return bytes([qtls.HandshakeType.CERTIFICATE_REQUEST]) + len(body).to_bytes(3, "big") + body


CERTIFICATE_REQUEST = _certificate_request()
"""The CertificateRequest message every mutual-TLS server writes."""


class AlertCertificateRequired(qtls.Alert):
    """TLS alert 116 (RFC 8446 §6.2): the client sent an empty Certificate."""

    description = qtls.AlertDescription.certificate_required


# -- the server's first flight --------------------------------------------------------


class _Flight(enum.Enum):
    """Where qh3's _server_handle_hello is in writing the server's flight."""

    BEFORE_EE = enum.auto()  # ClientHello and ServerHello are hashed
    REQUESTED = enum.auto()  # EncryptedExtensions and our CertificateRequest are hashed
    FINISHED = enum.auto()  # the server's Finished is hashed
    DROPPED = enum.auto()  # the anticipated client Finished was left out: done


class _FlightRecorder:
    def __init__(self, handshake_buf: Buffer) -> None:
        self.buf = handshake_buf
        self.stage = _Flight.BEFORE_EE


class _ServerFlightSchedule(qtls.KeySchedule):
    """qh3's key schedule while its server writes its first flight.

    Writes the CertificateRequest after EncryptedExtensions and keeps the
    anticipated client Finished out of the transcript (see the module notes).
    Anything it does not recognise is an internal error: fail closed."""

    _rusm_flight: _FlightRecorder

    def update_hash(self, data: bytes) -> None:
        flight = self._rusm_flight
        kind = data[0] if data else -1
        if flight.stage is _Flight.FINISHED:
            if kind != qtls.HandshakeType.FINISHED:
                raise qtls.AlertInternalError(
                    f"mutual TLS: unexpected handshake message {kind} after the server Finished"
                )
            flight.stage = _Flight.DROPPED  # the assumed client Finished: not hashed
            return
        if flight.stage is _Flight.DROPPED:
            raise qtls.AlertInternalError("mutual TLS: qh3 hashed more of its first flight")
        super().update_hash(data)
        if kind == qtls.HandshakeType.ENCRYPTED_EXTENSIONS and flight.stage is _Flight.BEFORE_EE:
            flight.buf.push_bytes(CERTIFICATE_REQUEST)
            super().update_hash(CERTIFICATE_REQUEST)
            flight.stage = _Flight.REQUESTED
        elif kind == qtls.HandshakeType.FINISHED:
            if flight.stage is not _Flight.REQUESTED:
                raise qtls.AlertInternalError(
                    "mutual TLS: qh3 wrote its Finished before any EncryptedExtensions"
                )
            flight.stage = _Flight.FINISHED


# -- the server's TLS context ----------------------------------------------------------


class _Stage(enum.Enum):
    """The client-authentication stages, after the server's first flight."""

    HELLO = enum.auto()  # qh3 runs the handshake until the server's flight is out
    CERTIFICATE = enum.auto()
    CERTIFICATE_VERIFY = enum.auto()
    FINISHED = enum.auto()
    DONE = enum.auto()  # authenticated: qh3 handles whatever follows
    FAILED = enum.auto()  # an alert was raised: nothing more is accepted


_EXPECTED = {
    _Stage.CERTIFICATE: qtls.HandshakeType.CERTIFICATE,
    _Stage.CERTIFICATE_VERIFY: qtls.HandshakeType.CERTIFICATE_VERIFY,
    _Stage.FINISHED: qtls.HandshakeType.FINISHED,
}


class _MutualServerTls(qtls.Context):
    """qh3's server TLS context, made to demand and check a client certificate.

    Instances are qh3 contexts whose class was switched after construction
    (by :class:`_MutualServerConnection`), then :meth:`_rusm_setup` called."""

    _rusm_identity: Identity
    _rusm_stage: _Stage
    _rusm_flight: _FlightRecorder | None
    _rusm_chain: list[x509.Certificate]
    _rusm_der: list[bytes]
    _expected_verify_data: bytes | None

    def _rusm_setup(self, identity: Identity) -> None:
        if self.state is not qtls.State.SERVER_EXPECT_CLIENT_HELLO:
            raise RuntimeError("mutual TLS must be set up before the ClientHello")
        # No resumption, no tickets, no 0-RTT, no ALPS (see the module notes).
        self.get_session_ticket_cb = None
        self.new_session_ticket_cb = None
        self._max_early_data = None
        if self._alps_supported:
            raise RuntimeError("mutual TLS does not support ALPS on the server")
        self._rusm_identity = identity
        self._rusm_stage = _Stage.HELLO
        self._rusm_flight = None
        self._rusm_chain = []
        self._rusm_der = []

    # The key schedule qh3 creates while writing its first flight is switched
    # to _ServerFlightSchedule. A property: qh3 assigns self.key_schedule.
    @property
    def key_schedule(self) -> qtls.KeySchedule | None:
        return self.__dict__.get("key_schedule")

    @key_schedule.setter
    def key_schedule(self, value: qtls.KeySchedule | None) -> None:
        flight = self.__dict__.get("_rusm_flight")
        if flight is not None and type(value) is qtls.KeySchedule:
            value.__class__ = _ServerFlightSchedule
            value._rusm_flight = flight  # type: ignore[attr-defined]
        self.__dict__["key_schedule"] = value

    def _server_handle_hello(
        self,
        input_buf: Buffer,
        initial_buf: Buffer,
        handshake_buf: Buffer,
        onertt_buf: Buffer,
    ) -> None:
        if self.get_session_ticket_cb is not None or self.new_session_ticket_cb is not None:
            raise qtls.AlertInternalError("mutual TLS: session tickets must stay off")
        flight = self._rusm_flight = _FlightRecorder(handshake_buf)
        try:
            super()._server_handle_hello(input_buf, initial_buf, handshake_buf, onertt_buf)
        finally:
            self._rusm_flight = None
            schedule = self.key_schedule
            if isinstance(schedule, _ServerFlightSchedule):
                del schedule._rusm_flight
                schedule.__class__ = qtls.KeySchedule  # type: ignore[assignment]
        if (
            flight.stage is not _Flight.DROPPED
            or self.state is not qtls.State.SERVER_EXPECT_FINISHED
            or self._alps_negotiated
            or self.session_resumed
            or self.early_data_accepted
        ):
            raise qtls.AlertInternalError(
                "mutual TLS: qh3's server flight is not the one it was written for "
                f"(stage {flight.stage.name}, state {self.state.name})"
            )
        self._expected_verify_data = None  # computed when the client's Finished arrives
        self._rusm_stage = _Stage.CERTIFICATE

    def handle_message(
        self, input_data: bytes, output_buf: dict[qtls.Epoch, Buffer], epoch: int = -1
    ) -> None:
        if self._rusm_stage is _Stage.HELLO or self._rusm_stage is _Stage.DONE:
            super().handle_message(input_data, output_buf, epoch)
            return
        if self._rusm_stage is _Stage.FAILED:
            raise qtls.AlertUnexpectedMessage("mutual TLS: this handshake was refused")
        try:
            self._rusm_receive(input_data, output_buf, epoch)
        except qtls.Alert as exc:
            self._rusm_stage = _Stage.FAILED
            log.warning(
                "refused a QUIC client in the TLS handshake (%s): %s",
                exc.description.name,
                str(exc) or "no reason given",
            )
            raise
        except Exception as exc:
            # Not a TLS alert: qh3 would let it escape from receive_datagram and
            # leave the connection hanging. Refuse the client cleanly instead.
            self._rusm_stage = _Stage.FAILED
            log.error("refused a QUIC client after an internal error", exc_info=True)
            raise qtls.AlertInternalError(f"mutual TLS: internal error: {exc!r}") from exc

    def _rusm_receive(
        self, input_data: bytes, output_buf: dict[qtls.Epoch, Buffer], epoch: int
    ) -> None:
        """The client's second flight: Certificate, CertificateVerify, Finished.

        Framing as in qh3's handle_message; every byte at the Handshake level."""
        if input_data and epoch != qtls.Epoch.HANDSHAKE:
            raise qtls.AlertUnexpectedMessage(
                "mutual TLS: the client's certificate must come at the Handshake level"
            )
        self._receive_buffer += input_data
        while self._rusm_stage in _EXPECTED and len(self._receive_buffer) >= 4:
            message_type = self._receive_buffer[0]
            length = 4 + int.from_bytes(self._receive_buffer[1:4], byteorder="big")
            if message_type != _EXPECTED[self._rusm_stage]:
                raise qtls.AlertUnexpectedMessage(
                    f"mutual TLS: expected the client's {_EXPECTED[self._rusm_stage].name}, "
                    f"got handshake message {message_type}"
                )
            if length > _MAX_MESSAGE:
                raise qtls.AlertDecodeError(
                    f"mutual TLS: a {length}-byte handshake message is too large"
                )
            if len(self._receive_buffer) < length:
                break
            message = self._receive_buffer[:length]
            self._receive_buffer = self._receive_buffer[length:]
            input_buf = Buffer(data=message)
            try:
                if self._rusm_stage is _Stage.CERTIFICATE:
                    self._rusm_certificate(input_buf)
                elif self._rusm_stage is _Stage.CERTIFICATE_VERIFY:
                    self._rusm_certificate_verify(input_buf)
                else:
                    self._server_handle_finished(input_buf, output_buf[qtls.Epoch.ONE_RTT])
            except BufferReadError as exc:
                raise qtls.AlertDecodeError(f"mutual TLS: truncated message: {exc}") from exc
            if not input_buf.eof():
                raise qtls.AlertDecodeError("extra bytes at the end of a handshake message")
        if self._rusm_stage is _Stage.DONE and self._receive_buffer:
            super().handle_message(b"", output_buf, epoch)  # qh3 refuses what follows

    def _rusm_certificate(self, input_buf: Buffer) -> None:
        """The client's Certificate (RFC 8446 §4.4.2): must not be empty."""
        certificate = qtls.pull_certificate(input_buf)
        if certificate.request_context != b"":
            raise qtls.AlertIllegalParameter(
                "mutual TLS: the client's certificate_request_context must be empty"
            )
        if not certificate.certificates:
            raise AlertCertificateRequired(
                "certificate rejected: the client presented no certificate "
                "(every node must present one)"
            )
        if len(certificate.certificates) > _MAX_CERTIFICATES:
            raise qtls.AlertBadCertificate(
                f"certificate rejected: a chain of {len(certificate.certificates)} certificates"
            )
        der = [entry[0] for entry in certificate.certificates]
        try:
            chain = [x509.load_der_x509_certificate(d) for d in der]
        except ValueError as exc:
            raise qtls.AlertBadCertificate(
                f"certificate rejected: not an X.509 certificate: {exc}"
            ) from exc
        self._rusm_der, self._rusm_chain = der, chain
        self.key_schedule.update_hash(input_buf.data)  # type: ignore[union-attr]
        self._rusm_stage = _Stage.CERTIFICATE_VERIFY

    def _rusm_certificate_verify(self, input_buf: Buffer) -> None:
        """The client's CertificateVerify (RFC 8446 §4.4.3), then its chain."""
        schedule = self.key_schedule
        assert schedule is not None
        verify = qtls.pull_certificate_verify(input_buf)
        _check_signature(
            self._rusm_chain[0],
            verify.algorithm,
            schedule.certificate_verify_data(_CLIENT_CV_CONTEXT),
            verify.signature,
        )
        try:
            verify_peer(self._rusm_identity, self._rusm_chain, None, check_name=False)
        except PeerRejected as exc:
            raise qtls.AlertBadCertificate(f"certificate rejected: {exc.reason}") from exc
        try:
            certificates = [X509Certificate(d) for d in self._rusm_der]
        except CryptoError as exc:
            raise qtls.AlertBadCertificate(f"certificate rejected: {exc}") from exc
        self._peer_certificate = certificates[0]
        self._peer_certificate_chain = certificates[1:]
        schedule.update_hash(input_buf.data)
        self._rusm_stage = _Stage.FINISHED

    def _server_handle_finished(self, input_buf: Buffer, output_buf: Buffer) -> None:
        if self._rusm_stage is not _Stage.FINISHED:
            # Only reachable through qh3's own dispatch: the client skipped its
            # Certificate or CertificateVerify.
            raise qtls.AlertUnexpectedMessage(
                "mutual TLS: the client's Finished came before its certificate"
            )
        schedule = self.key_schedule
        assert schedule is not None
        assert self._dec_key is not None
        # The transcript now ends with the client's CertificateVerify.
        self._expected_verify_data = schedule.finished_verify_data(self._dec_key)
        super()._server_handle_finished(input_buf, output_buf)
        schedule.update_hash(input_buf.data)  # qh3 does not; kept for a faithful transcript
        self._rusm_stage = _Stage.DONE


def _check_signature(
    leaf: x509.Certificate, algorithm: int, data: bytes, signature: bytes
) -> None:
    """Raise a TLS alert unless ``signature`` is ``leaf``'s key signing ``data``
    with ``algorithm``, one of :data:`OFFERED_SIGNATURE_ALGORITHMS`."""
    try:
        key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise qtls.AlertBadCertificate(f"certificate rejected: unusable public key: {exc}") from exc
    mismatch = qtls.AlertIllegalParameter(
        f"mutual TLS: CertificateVerify algorithm {algorithm:#06x} does not fit the "
        f"client's {type(key).__name__}"
    )
    try:
        if algorithm in _ECDSA:
            curve, digest = _ECDSA[algorithm]
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve):
                raise mismatch
            key.verify(signature, data, ec.ECDSA(digest()))
        elif algorithm in _RSA_PSS:
            digest = _RSA_PSS[algorithm]
            if not isinstance(key, rsa.RSAPublicKey):
                raise mismatch
            pss = padding.PSS(mgf=padding.MGF1(digest()), salt_length=padding.PSS.DIGEST_LENGTH)
            key.verify(signature, data, pss, digest())
        elif algorithm == _SA.ED25519:
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise mismatch
            key.verify(signature, data)
        else:
            raise qtls.AlertIllegalParameter(
                f"mutual TLS: CertificateVerify uses algorithm {algorithm:#06x}, "
                "which the CertificateRequest did not offer"
            )
    except InvalidSignature as exc:
        raise qtls.AlertDecryptError(
            "certificate rejected: the client's CertificateVerify signature is wrong "
            "(it does not hold the certificate's key)"
        ) from exc


# -- connections -----------------------------------------------------------------------


class _MutualServerConnection(QuicConnection):
    """A server connection whose TLS context is :class:`_MutualServerTls`."""

    _rusm_identity: Identity

    def _create_tls(self, remote_source_cid: bytes | None) -> QuicTlsBridge:
        bridge = super()._create_tls(remote_source_cid)
        context = self.tls  # bridge.tls: the context qh3 just made
        context.__class__ = _MutualServerTls
        assert isinstance(context, _MutualServerTls)
        context._rusm_setup(self._rusm_identity)
        return bridge


class _VerifyingClientTls(qtls.Context):
    """qh3's client context, checking the server's chain with
    :func:`~rusm.net.tls.verify_peer` first: the same check, and the same
    words, as the server side, for a cluster CA and a shared identity alike."""

    _rusm_identity: Identity
    _rusm_refused = False

    def _client_handle_certificate_verify(self, input_buf: Buffer) -> None:
        leaf = self._peer_certificate
        if leaf is None:
            raise qtls.AlertBadCertificate("certificate rejected: the server presented none")
        chain = [
            x509.load_der_x509_certificate(c.public_bytes())
            for c in [leaf, *self._peer_certificate_chain]
        ]
        try:
            verify_peer(self._rusm_identity, chain, None, check_name=False)
        except PeerRejected as exc:
            # The connector's caller gets it as LinkRejected: it says it once.
            self._rusm_refused = True
            log.debug("refused a QUIC server in the TLS handshake: %s", exc.reason)
            raise qtls.AlertBadCertificate(f"certificate rejected: {exc.reason}") from exc
        super()._client_handle_certificate_verify(input_buf)  # the signature, qh3's checks


QH3_CLIENT_UDP_PAYLOAD = 1472
"""The max_udp_payload_size a qh3 client always advertises, whatever it may
send itself: it caps the datagrams the server sends it."""


class _WideClientBridge(QuicTlsBridge):
    """A client's bridge that advertises the datagram size it sends
    (``max_datagram_size``) as the largest it takes, in place of qh3's fixed
    :data:`QH3_CLIENT_UDP_PAYLOAD`, so a server may answer in datagrams as
    large: what a loopback link wants (see :func:`make_configuration`)."""

    _rusm_udp_payload: int

    def serialize_transport_parameters(self) -> bytes:
        params = pull_quic_transport_parameters(
            Buffer(data=super().serialize_transport_parameters())
        )
        params.max_udp_payload_size = self._rusm_udp_payload
        # The parser skips the GREASE parameter as unknown: put qh3's back.
        params.greased_transport_parameter = (self.grease_transport_parameter, b"")
        buf = Buffer(capacity=4096)
        push_quic_transport_parameters(buf, params)
        return buf.data


class _VerifyingClientConnection(QuicConnection):
    _rusm_identity: Identity

    def _create_tls(self, remote_source_cid: bytes | None) -> QuicTlsBridge:
        bridge = super()._create_tls(remote_source_cid)
        context = self.tls
        context.__class__ = _VerifyingClientTls
        assert isinstance(context, _VerifyingClientTls)
        context._rusm_identity = self._rusm_identity
        size = self.configuration.max_datagram_size
        if size > QH3_CLIENT_UDP_PAYLOAD:
            bridge.__class__ = _WideClientBridge
            assert isinstance(bridge, _WideClientBridge)
            bridge._rusm_udp_payload = size
            # The bridge wrote its parameters into the ClientHello's extensions
            # as it was made: write them again.
            kind = qtls.ExtensionType.QUIC_TRANSPORT_PARAMETERS
            context.handshake_extensions = [
                (k, bridge.serialize_transport_parameters() if k == kind else v)
                for k, v in context.handshake_extensions
            ]
        return bridge


def verify_server_certificates(quic: QuicConnection, identity: Identity) -> None:
    """Make the client connection ``quic`` check the server's chain against
    ``identity``'s trust anchors with :func:`~rusm.net.tls.verify_peer`
    (before qh3's own check), so a refusal reads as the server side's does.
    Call it before :meth:`~qh3.quic.connection.QuicConnection.connect`."""
    _check_engine_once()
    if not quic.configuration.is_client:
        raise ValueError("servers check clients with require_client_certificates")
    if quic.tls is not None:
        raise RuntimeError("too late to verify the server: the handshake has started")
    quic.__class__ = _VerifyingClientConnection
    quic._rusm_identity = identity  # type: ignore[attr-defined]


def require_client_certificates(quic: QuicConnection, identity: Identity) -> None:
    """Make the server connection ``quic`` demand a client certificate that
    ``identity``'s trust anchors accept (chain and dates; not the node name).

    Call it before ``quic`` receives its first datagram: in the
    ``create_protocol`` of :func:`qh3.asyncio.serve`, which gets each new
    connection before its first datagram. Raises ValueError for a client
    connection, RuntimeError if the handshake has started or the installed qh3
    lacks a name this relies on (:func:`check_engine`).
    """
    _check_engine_once()
    if quic.configuration.is_client:
        raise ValueError("client certificates are required by servers; this is a client")
    if quic.tls is not None:
        raise RuntimeError("too late to require client certificates: the handshake has started")
    quic.__class__ = _MutualServerConnection
    quic._rusm_identity = identity  # type: ignore[attr-defined]


def refused_here(quic: QuicConnection) -> bool:
    """Whether this side's own TLS check refused the peer (so it has said why);
    False when the peer refused this side, or nothing was refused."""
    context = quic.tls
    if isinstance(context, _MutualServerTls):
        return context._rusm_stage is _Stage.FAILED
    return isinstance(context, _VerifyingClientTls) and context._rusm_refused


def peer_chain(quic: QuicConnection) -> list[x509.Certificate]:
    """The peer's certificate chain, leaf first, once the handshake completed.

    Empty if the peer presented none (or the handshake is not done). On a
    server made by :func:`require_client_certificates`, the chain was checked
    against the trust anchors in the handshake."""
    leaf = quic.get_peercert()
    if leaf is None:
        return []
    return [
        x509.load_der_x509_certificate(c.public_bytes())
        for c in [leaf, *quic.get_issuercerts()]
    ]


def make_configuration(
    identity: Identity,
    *,
    is_client: bool,
    idle_timeout: float,
    max_data: int | None = None,
    max_stream_data: int | None = None,
    max_datagram_size: int | None = None,
) -> QuicConfiguration:
    """A qh3 configuration presenting ``identity`` and trusting only its anchors.

    ALPN ``rusm/1``, peer certificates required, no session tickets.
    ``max_data`` / ``max_stream_data`` set the flow-control windows (qh3's
    defaults, 15 MiB and 6 MiB, when None). ``max_datagram_size`` the
    datagrams it sends (qh3's default 1,280 bytes, with path MTU probing on
    a client, when None); a client advertises it as the largest it takes.
    Neither side checks its peer's chain with this alone: a server made with it must go through
    :func:`require_client_certificates` (qh3 does not check clients) and a
    client through :func:`verify_server_certificates`. qh3's own client chain
    check is off: it cannot take a self-signed leaf as an anchor (a shared
    identity, or an impostor trusting one; see the module notes), so
    :func:`~rusm.net.tls.verify_peer` replaces it on both sides.
    """
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        idle_timeout=idle_timeout,
        verify_mode=ssl.CERT_REQUIRED,
        cadata=identity.cadata,  # never None: None would mean the public roots
        server_name=None,  # we connect by address; the node name is checked at hello
        session_ticket=None,
    )
    if max_data is not None:
        config.max_data = max_data
    if max_stream_data is not None:
        config.max_stream_data = max_stream_data
    if max_datagram_size is not None:
        config.max_datagram_size = max_datagram_size
    config.load_cert_chain(identity.chain_pem, identity.key_pem)
    if is_client:
        config.verify_mode = ssl.CERT_NONE  # verify_server_certificates checks the chain
    return config


# -- engine check ----------------------------------------------------------------------


def _resolve(path: str) -> Any:
    """The object a dotted path names (a module and attributes), or None."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj
    return None


def _instance_names(cls: type) -> set[str]:
    """The attributes a fresh instance of one of qh3's TLS classes has."""
    if cls is qtls.Context:
        return set(vars(qtls.Context(is_client=False)))
    if cls is qtls.KeySchedule:
        return set(vars(qtls.KeySchedule(qtls.CipherSuite.AES_128_GCM_SHA256)))
    return set()


def check_engine() -> None:
    """Raise RuntimeError naming every name of :data:`PRIVATE_NAMES` the
    installed qh3 lacks (or whose overridden method changed its parameters)."""
    missing: list[str] = []
    instances: dict[type, set[str]] = {}
    for owner_path, name in PRIVATE_NAMES:
        owner = _resolve(owner_path)
        if owner is None:
            found = False
        elif isinstance(owner, types.FunctionType):
            found = name in owner.__code__.co_names or name in owner.__code__.co_varnames
        elif hasattr(owner, name):
            found = True
        elif isinstance(owner, type):
            if owner not in instances:
                instances[owner] = _instance_names(owner)
            found = name in instances[owner]
        else:
            found = False
        if not found:
            missing.append(f"{owner_path}.{name}")
            continue
        arity = _ARITIES.get((owner_path, name))
        if arity is not None:
            method_code = getattr(getattr(owner, name), "__code__", None)
            if method_code is None or method_code.co_argcount != arity:
                missing.append(f"{owner_path}.{name} (with {arity - 1} parameters)")
    if missing:
        version = getattr(importlib.import_module("qh3"), "__version__", "?")
        raise RuntimeError(
            f"the installed qh3 {version} lacks what rusm's mutual TLS relies on: "
            + ", ".join(missing)
            + "; client certificates cannot be checked (install the qh3 version "
            "pinned in pyproject.toml)"
        )


@functools.cache
def _check_engine_once() -> None:
    check_engine()
