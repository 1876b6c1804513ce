"""Node identities for the cluster's mutual TLS, and verification of peers.

Two schemes:

* A **shared identity** (:meth:`Identity.generate`): one self-signed
  certificate and key copied to every node of a small trusted cluster. The
  certificate is its own trust anchor, so any holder of the key is "the
  cluster" and node names are not checked.
* A **cluster CA** (:class:`ClusterCa`): the CA issues each node its own
  certificate naming the node (subject CN and SAN DNSName), and a peer must
  present a certificate for the node it claims to be.

Roles: a certificate the CA issues with ``role="observer"`` carries the SAN
URI ``rusm:role=observer`` (:data:`OBSERVER_URI`). Inside the signed SAN, the
mark cannot be dropped or changed without breaking the CA's signature. Its
holder is read-only: it may attach as a hidden node and watch (samples, ps,
info, names) but not send, spawn, kill or connect, and not join the cluster
as a peer (:func:`verify_peer` with ``hidden=False`` refuses it). A
certificate without the mark (every node certificate, every shared identity)
has the ``node`` role: full access. A role mark this version does not know
is taken as read-only (fail closed).

QUIC engines check neither the client's chain nor its name (qh3 has no
client-certificate states at all; aioquic issues #541, #586):
:mod:`rusm.net.mtls` calls :func:`verify_peer` inside the TLS handshake, and
the link protocol calls it again at hello to check the name the peer claims.

Errors::

    RusmError
    └── TlsError                                  identities and peer checks
        ├── PeerRejected                          the peer failed verify_peer
        ├── InvalidNodeName (also ValueError)     not a usable node name
        ├── IdentityNotFound (also FileNotFoundError)  a PEM file is missing
        ├── IdentityExists (also FileExistsError) saving would overwrite a key
        ├── KeyPermissionError (also PermissionError)  key readable by others
        └── InvalidIdentity (also ValueError)     files that do not fit together
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    PolicyBuilder,
    Store,
    VerificationError,
)

from .errors import (
    IdentityExists,
    IdentityNotFound,
    InvalidIdentity,
    InvalidNodeName,
    KeyPermissionError,
    PeerRejected,
    TlsError,
)

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CERT_FILE",
    "KEY_FILE",
    "OBSERVER_URI",
    "ROLES",
    "ROLE_NODE",
    "ROLE_OBSERVER",
    "SHARED_SAN",
    "TRUST_FILE",
    "ClusterCa",
    "Identity",
    "IdentityExists",
    "IdentityNotFound",
    "InvalidIdentity",
    "InvalidNodeName",
    "KeyPermissionError",
    "PeerRejected",
    "TlsError",
    "is_read_only",
    "role_of",
    "validate_node_name",
    "verify_peer",
]

CERT_FILE = "cert.pem"
"""An identity's certificate chain, leaf first."""
KEY_FILE = "key.pem"
"""An identity's private key (PKCS#8, unencrypted, mode 0600)."""
TRUST_FILE = "trust.pem"
"""An identity's trust anchors: the ``cadata`` of the QUIC configuration."""
CA_CERT_FILE = "ca.pem"
"""A cluster CA's certificate (every node's trust anchor)."""
CA_KEY_FILE = "ca-key.pem"
"""A cluster CA's private key (mode 0600; keep it off the nodes)."""
SHARED_SAN = "rusm-cluster"
"""The SAN DNSName of a shared identity (the verifier requires a SAN)."""

ROLE_NODE = "node"
"""Full access: joins the cluster, sends, spawns, kills (no role mark)."""
ROLE_OBSERVER = "observer"
"""Read-only: attaches as a hidden node and watches; nothing else."""
ROLES = (ROLE_NODE, ROLE_OBSERVER)
"""The roles ``rusm cert issue --role`` knows."""
_ROLE_PREFIX = "rusm:role="
OBSERVER_URI = f"{_ROLE_PREFIX}{ROLE_OBSERVER}"
"""The SAN URI that marks an observer certificate."""

_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")
# Backdating absorbs small clock differences between the issuer and the nodes.
_BACKDATE = dt.timedelta(minutes=5)
_NODE_DAYS = 365
_ROOT_DAYS = 3650


def validate_node_name(name: str) -> str:
    """Return ``name`` if it can name a node in a certificate, else raise :class:`InvalidNodeName`.

    1 to 63 ASCII letters, digits, ``-`` or ``_``. ``_`` is not valid in a
    DNS hostname but X.509 DNSName and cryptography's verifier accept it, so
    it is kept as is.
    Names are compared exactly: ``London`` and ``london`` are different nodes.
    """
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidNodeName(
            f"invalid node name {name!r}: use 1 to 63 ASCII letters, digits, '-' or '_'"
        )
    return name


@dataclass(frozen=True, eq=False)
class Identity:
    """What a node presents and trusts on the cluster's TLS links.

    ``chain`` is leaf first; ``trust`` are the trust anchors; ``name`` is the
    node the leaf names, or None for a shared identity. Keys are ECDSA P-256,
    which every QUIC engine signs with on both sides of TLS 1.3.

    A shared identity is a single self-signed end-entity certificate that is
    also its own and only trust anchor: cryptography's client verifier and
    rusm.net.mtls, on both sides, accept a leaf that is in the
    trust store, so no separate root is needed. Every node holds the same
    key, so any node can act as any other: names are not checked.

    For the engine: ``chain_pem`` and ``key_pem`` are what
    ``QuicConfiguration.load_cert_chain`` takes, and ``cadata`` is its
    ``cadata`` (see :func:`rusm.net.mtls.make_configuration`).
    """

    chain: tuple[x509.Certificate, ...]
    key: ec.EllipticCurvePrivateKey
    trust: tuple[x509.Certificate, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        if not self.chain or not self.trust:
            raise InvalidIdentity("an identity needs a certificate and a trust anchor")
        if self.key.public_key() != self.chain[0].public_key():
            raise InvalidIdentity("the private key does not belong to the certificate")
        if self.name is not None:
            validate_node_name(self.name)

    @classmethod
    def generate(cls, *, days: int = _ROOT_DAYS) -> Identity:
        """A shared identity: one self-signed certificate, valid ``days``, that trusts itself."""
        key = _new_key()
        start = _utcnow() - _BACKDATE
        # A random suffix tells apart the identities of two clusters in messages.
        subject = _dn(f"rusm shared identity {secrets.token_hex(4)}")
        pub = key.public_key()
        cert = _leaf_builder(subject, subject, pub, SHARED_SAN, start, start + _days(days))
        cert = cert.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pub), critical=False
        )
        leaf = cert.sign(key, hashes.SHA256())
        return cls(chain=(leaf,), key=key, trust=(leaf,), name=None)

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf certificate."""
        return self.chain[0]

    @property
    def role(self) -> str:
        """The leaf's role: :data:`ROLE_NODE` or :data:`ROLE_OBSERVER` (see :func:`role_of`)."""
        return role_of(self.certificate)

    @property
    def chain_pem(self) -> bytes:
        """The chain as PEM, leaf first (``load_cert_chain``'s certfile)."""
        return _certs_pem(self.chain)

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return _key_pem(self.key)

    @property
    def cadata(self) -> bytes:
        """The trust anchors as PEM (``QuicConfiguration.cadata``)."""
        return _certs_pem(self.trust)

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Write cert.pem, key.pem (mode 0600) and trust.pem into ``directory``; return the paths.

        Raises :class:`IdentityExists` if one of them exists and not ``overwrite``.
        """
        files = {CERT_FILE: self.chain_pem, KEY_FILE: self.key_pem, TRUST_FILE: self.cadata}
        return _save(Path(directory), files, KEY_FILE, overwrite)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Identity:
        """Read an identity written by :meth:`save`.

        The name is the leaf's SAN unless the leaf is itself a trust anchor
        (a shared identity, name None).
        """
        directory = Path(directory)
        chain = tuple(_read_certs(directory / CERT_FILE))
        key = _read_key(directory / KEY_FILE)
        trust = tuple(_read_certs(directory / TRUST_FILE))
        name = None if chain[0] in trust else _node_name_of(chain[0], directory / CERT_FILE)
        return cls(chain=chain, key=key, trust=trust, name=name)


@dataclass(frozen=True, eq=False)
class ClusterCa:
    """A cluster's certificate authority: it issues one certificate per node."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def __post_init__(self) -> None:
        if self.key.public_key() != self.certificate.public_key():
            raise InvalidIdentity("the CA private key does not belong to the CA certificate")

    @classmethod
    def generate(cls, *, common_name: str | None = None, days: int = _ROOT_DAYS) -> ClusterCa:
        """A new self-signed CA valid ``days``; it can sign node certificates only.

        The default common name has a random suffix, so that error messages
        tell apart the CAs of two clusters.
        """
        key = _new_key()
        start = _utcnow() - _BACKDATE
        subject = _dn(common_name or f"rusm cluster CA {secrets.token_hex(4)}")
        cert = (
            _base_builder(subject, subject, key.public_key(), start, start + _days(days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate=cert, key=key)

    def issue(
        self,
        name: str,
        *,
        days: int | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        role: str = ROLE_NODE,
    ) -> Identity:
        """A node identity for ``name`` (subject CN and SAN DNSName), trusting this CA.

        ``role`` is :data:`ROLE_NODE` (full access, no mark) or
        :data:`ROLE_OBSERVER` (read-only: the SAN also holds
        :data:`OBSERVER_URI`). Valid from ``not_before`` (default: now, less a few minutes for clock
        skew) to ``not_after``, or for ``days`` (default 365); not both.
        Naive datetimes are taken as UTC.
        """
        validate_node_name(name)
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        if days is not None and not_after is not None:
            raise ValueError("give days or not_after, not both")
        start = _as_utc(not_before) if not_before is not None else _utcnow() - _BACKDATE
        end = (
            _as_utc(not_after) if not_after is not None
            else start + _days(_NODE_DAYS if days is None else days)
        )
        if end <= start:
            raise ValueError(f"not_after ({end}) must be later than not_before ({start})")
        key = _new_key()
        leaf = (
            _leaf_builder(
                _dn(name), self.certificate.subject, key.public_key(), name, start, end,
                role_uri=OBSERVER_URI if role == ROLE_OBSERVER else None,
            )
            .add_extension(_aki(self.certificate), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Identity(chain=(leaf,), key=key, trust=(self.certificate,), name=name)

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Write ca.pem and ca-key.pem (mode 0600) into ``directory``; return the paths.

        Raises :class:`IdentityExists` if one of them exists and not ``overwrite``.
        """
        files = {CA_CERT_FILE: _certs_pem([self.certificate]), CA_KEY_FILE: _key_pem(self.key)}
        return _save(Path(directory), files, CA_KEY_FILE, overwrite)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ClusterCa:
        """Read a CA written by :meth:`save`."""
        directory = Path(directory)
        certs = _read_certs(directory / CA_CERT_FILE)
        return cls(certificate=certs[0], key=_read_key(directory / CA_KEY_FILE))


def verify_peer(
    identity: Identity,
    chain: list[x509.Certificate],
    claimed_name: str | None,
    now: dt.datetime | None = None,
    *,
    check_name: bool = True,
    hidden: bool | None = None,
) -> str:
    """Check that a peer's certificate ``chain`` (leaf first) admits it to the
    cluster; return its role (:data:`ROLE_NODE` or :data:`ROLE_OBSERVER`).

    The leaf must be issued directly by one of ``identity``'s trust anchors
    (or, for a shared identity, be that anchor) and valid at ``now``. Under a
    cluster CA (``identity.name`` set) its SAN must also name
    ``claimed_name``, the node the peer says it is. ``now`` defaults to the
    current time; a naive datetime is taken as UTC. Raises
    :class:`PeerRejected` with the reason, in words an operator can act on.
    ``check_name=False`` checks only the chain and dates: the QUIC handshake
    does that, before the peer has said which node it is.
    ``hidden`` is whether the peer said, at hello, that it attaches as a
    hidden node: an observer certificate is refused unless it is True (None:
    not known yet, the role is only returned).
    """
    if not chain:
        raise PeerRejected("the peer presented no certificate (every node must present one)")
    at = _utcnow() if now is None else _as_utc(now)
    leaf, extra = chain[0], list(chain[1:])
    try:
        verified = _verifier(identity, at).verify(leaf, extra)
    except (VerificationError, x509.UnsupportedGeneralNameType, ValueError) as exc:
        raise PeerRejected(_explain(identity, leaf, at, exc)) from exc
    role = role_of(leaf)
    if hidden is False and is_read_only(role):
        raise PeerRejected(
            f"the peer's certificate for {_names_text(verified.subjects)} is an observer's "
            "(read-only): it may attach to watch (rusm top NODE@HOST:PORT --identity DIR) "
            "but not join the cluster as a node; give it a node certificate "
            "(rusm cert issue NAME --ca CA_DIR --out DIR) to join"
        )
    if identity.name is None or not check_name:
        return role
    if claimed_name is None:
        raise PeerRejected(
            f"the peer with certificate for {_names_text(verified.subjects)} did not say "
            "which node it is (under a cluster CA every peer must claim its node name)"
        )
    names = _dns_names(verified.subjects)
    if claimed_name not in names:
        raise PeerRejected(
            f"the peer claims to be node {claimed_name!r} but its certificate is for "
            f"{_names_text(verified.subjects)}; it must use the certificate issued for "
            f"{claimed_name!r} (rusm cert issue {claimed_name} --ca CA_DIR --out DIR)"
        )
    return role


def role_of(cert: x509.Certificate | list[x509.Certificate]) -> str:
    """The role a certificate (or a chain's leaf) grants: :data:`ROLE_OBSERVER`
    if its SAN holds a ``rusm:role=`` URI other than ``rusm:role=node``, else
    :data:`ROLE_NODE`. An unknown role is taken as an observer (fail closed).

    Only meaningful for a certificate that passed :func:`verify_peer` (or
    one's own): the mark is trusted because the CA signed it.
    """
    if isinstance(cert, list):
        if not cert:
            return ROLE_OBSERVER  # nothing presented grants nothing
        cert = cert[0]
    leaf = cert
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ROLE_NODE
    marks = [u[len(_ROLE_PREFIX):] for u in san.get_values_for_type(x509.UniformResourceIdentifier)
             if u.startswith(_ROLE_PREFIX)]
    return ROLE_NODE if all(m == ROLE_NODE for m in marks) else ROLE_OBSERVER


def is_read_only(role: str) -> bool:
    """Whether ``role`` may only watch (anything but :data:`ROLE_NODE`)."""
    return role != ROLE_NODE


def _verifier(identity: Identity, at: dt.datetime) -> ClientVerifier:
    # max_chain_depth(0): node certificates are issued by the anchor itself,
    # so anything the peer sends after its leaf is ignored.
    return (
        PolicyBuilder()
        .store(Store(list(identity.trust)))
        .time(at)
        .max_chain_depth(0)
        .build_client_verifier()
    )


def _explain(identity: Identity, leaf: x509.Certificate, at: dt.datetime, exc: Exception) -> str:
    """Why ``leaf`` failed the verifier, most fundamental fault first."""
    who = f"certificate {leaf.subject.rfc4514_string()!r}"
    anchors = ", ".join(repr(a.subject.rfc4514_string()) for a in identity.trust)
    if not any(_issued_by(leaf, anchor) for anchor in identity.trust):
        return (
            f"the peer's {who} (issued by {leaf.issuer.rfc4514_string()!r}) is not signed by "
            f"this cluster's trust anchor ({anchors}): it belongs to another cluster or is "
            "self-made; give the peer a certificate from this cluster's CA or identity"
        )
    if at > leaf.not_valid_after_utc:
        renew = (
            "make a new shared identity for every node (rusm cert identity DIR)"
            if identity.name is None
            else "issue it a new one (rusm cert issue NAME --ca CA_DIR --out DIR)"
        )
        return f"the peer's {who} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; {renew}"
    if at < leaf.not_valid_before_utc:
        return (
            f"the peer's {who} is not valid until {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} "
            "UTC; check the clocks of both nodes"
        )
    if _is_ca(leaf):
        return (
            f"the peer presented the CA {who} instead of a node certificate; "
            "give it one issued by the CA (rusm cert issue NAME --ca CA_DIR --out DIR)"
        )
    for anchor in identity.trust:
        if not anchor.not_valid_before_utc <= at <= anchor.not_valid_after_utc:
            return (
                f"this node's trust anchor {anchor.subject.rfc4514_string()!r} is valid only "
                f"from {anchor.not_valid_before_utc:%Y-%m-%d} to "
                f"{anchor.not_valid_after_utc:%Y-%m-%d}; renew the cluster's certificates"
            )
    return f"the peer's {who} is not acceptable to this cluster: {exc}"


def _issued_by(cert: x509.Certificate, anchor: x509.Certificate) -> bool:
    if cert == anchor:
        return True
    try:
        cert.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _dns_names(subjects: list[x509.GeneralName] | None) -> list[str]:
    return [s.value for s in subjects or [] if isinstance(s, x509.DNSName)]


def _names_text(subjects: list[x509.GeneralName] | None) -> str:
    names = _dns_names(subjects)
    return " and ".join(repr(n) for n in names) if names else "no node name"


def _node_name_of(leaf: x509.Certificate, path: Path) -> str:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise InvalidIdentity(f"{path}: the certificate names no node (no SAN)") from None
    names = san.get_values_for_type(x509.DNSName)
    if len(names) != 1:
        raise InvalidIdentity(f"{path}: expected one node name in the SAN, found {names}")
    try:
        return validate_node_name(names[0])
    except InvalidNodeName as exc:
        raise InvalidIdentity(f"{path}: {exc}") from exc


# -- building certificates --


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _as_utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _days(days: int) -> dt.timedelta:
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    return dt.timedelta(days=days)


def _dn(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePublicKey,
    start: dt.datetime,
    end: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


def _leaf_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePublicKey,
    san: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    role_uri: str | None = None,
) -> x509.CertificateBuilder:
    """A leaf that may serve both ends of a link: every node is client and server.

    ``role_uri`` goes into the SAN beside the node name, under the signature."""
    names: list[x509.GeneralName] = [x509.DNSName(san)]
    if role_uri is not None:
        names.append(x509.UniformResourceIdentifier(role_uri))
    return (
        _base_builder(subject, issuer, key, start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
    )


# -- PEM files --


def _certs_pem(certs: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _save(directory: Path, files: dict[str, bytes], private: str, overwrite: bool) -> list[Path]:
    """Write ``files`` (name: bytes) into ``directory``, the one named ``private`` mode 0600."""
    paths = [directory / name for name in files]
    if not overwrite:
        for path in paths:
            if path.exists():
                raise IdentityExists(path)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, data in zip(paths, files.values(), strict=True):
        _write(path, data, 0o600 if path.name == private else 0o644)
    return paths


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, the file created with ``mode``.

    A fresh temporary file, then a rename: opening an existing file would keep
    its old (maybe wider) mode, and a reader never sees half a key.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read(path: Path, *, private: bool = False) -> bytes:
    """The bytes of ``path``; if ``private``, refuse it when group or others may read it."""
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if private and os.name == "posix" and mode & 0o077:
                raise KeyPermissionError(path, mode & 0o777)
            return f.read()
    except FileNotFoundError:
        raise IdentityNotFound(path) from None
    except IsADirectoryError:
        raise InvalidIdentity(f"{path} is a directory, not a PEM file") from None
    except KeyPermissionError:
        raise
    except OSError as exc:
        raise InvalidIdentity(f"cannot read {path}: {exc.strerror}") from exc


def _read_certs(path: Path) -> list[x509.Certificate]:
    data = _read(path)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidIdentity(f"{path} holds no PEM certificate: {exc}") from exc


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    data = _read(path, private=True)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidIdentity(f"{path} holds no unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidIdentity(f"{path} holds a {type(key).__name__}; expected an EC P-256 key")
    return key
