"""Every error of the cluster layer, in one place (as websockets' ``exceptions.py``).

::

    RusmError (rusm.actors.errors)
    ├── ProtocolError                   a remote peer broke the protocol; .code closes the link
    │   ├── FrameTooLarge               FRAME_TOO_LARGE, seen in the length header
    │   ├── MalformedFrame              MALFORMED_FRAME: not msgpack, wrong fields
    │   │   ├── TruncatedFrame          the stream ended inside a frame
    │   │   ├── UnknownExtType          a msgpack ext type RUSM does not define
    │   │   ├── TooDeep (TOO_DEEP)      nested deeper than max_depth
    │   │   └── TrailingBytes (TRAILING_BYTES)  bytes after the frame's array
    │   ├── UnknownFrame                UNKNOWN_FRAME: a type number nobody defined
    │   ├── HelloExpected               HELLO_EXPECTED: control stream began otherwise
    │   ├── UnexpectedFrame             PROTOCOL_VIOLATION: a frame not allowed here
    │   ├── VersionMismatch             VERSION_MISMATCH: Hello of another version
    │   ├── CertificateRejected         the hello names a node the certificate does not
    │   ├── DuplicateNode               that name is connected already
    │   ├── HelloTimeout                no hello within hello_timeout
    │   └── LimitExceeded               a per-link limit (inbound bytes, lanes)
    ├── UnsendableTerm (TypeError)      this node tried to send a non-term
    ├── TermTooLarge (ValueError)       this node tried to send beyond the limits
    ├── InvalidFrame (ValueError)       this node built a frame with bad fields
    ├── ClusterError                    a cluster operation could not be completed
    │   ├── NodeNotConnected (LookupError)    no link to that node
    │   ├── LinkRejected (ConnectionError)    the peer refused the link, with its reason
    │   └── RemoteError                       a remote request failed; .kind says how
    │       ├── UnknownFactory                spawn_remote of an untaught name
    │       └── SpawnFailed                   the factory refused the args
    ├── TlsError                        identities and peer checks
        ├── PeerRejected                the peer failed verify_peer
        ├── InvalidNodeName (ValueError)      not a usable node name
        ├── IdentityNotFound (FileNotFoundError)  a PEM file is missing
        ├── IdentityExists (FileExistsError)  saving would overwrite a key
        ├── KeyPermissionError (PermissionError)  key readable by others
        └── InvalidIdentity (ValueError)      files that do not fit together
    ├── AttachError                     an observer or ops command cannot attach to a node
    ├── AppError                        ``rusm node start --app`` cannot load or set up its app
    └── node directory (~/.rusm/nodes)
        ├── NodeRunning                 a running node has that name already
        ├── NoSuchNode                  no running node has that name
        └── UnsafeDirectory (PermissionError)  a symlink, not a regular file, another user's

(The observe protocol's :class:`~rusm.observe.protocol.CommandError`, a
command the node refused, lives with that protocol in :mod:`rusm.observe`,
which imports nothing of the transport.)

A :class:`ProtocolError` names the remote peer as the party at fault; the
errors mixed with a builtin are this node's own mistakes. :class:`ErrorCode`
lists the QUIC application codes a link closes with (docs/PROTOCOL.md).
"""

from __future__ import annotations

import enum
from pathlib import Path

from rusm.actors.errors import RusmError

__all__ = [
    "AppError",
    "AttachError",
    "CertificateRejected",
    "ClusterError",
    "DuplicateNode",
    "ErrorCode",
    "FrameTooLarge",
    "HelloExpected",
    "HelloTimeout",
    "IdentityExists",
    "IdentityNotFound",
    "InvalidFrame",
    "InvalidIdentity",
    "InvalidNodeName",
    "KeyPermissionError",
    "LimitExceeded",
    "LinkRejected",
    "MalformedFrame",
    "NoSuchNode",
    "NodeNotConnected",
    "NodeRunning",
    "PeerRejected",
    "ProtocolError",
    "RemoteError",
    "SpawnFailed",
    "TermTooLarge",
    "TlsError",
    "TooDeep",
    "TrailingBytes",
    "TruncatedFrame",
    "UnexpectedFrame",
    "UnknownExtType",
    "UnknownFactory",
    "UnknownFrame",
    "UnsafeDirectory",
    "UnsendableTerm",
    "VersionMismatch",
    "describe_close",
]


class ErrorCode(enum.IntEnum):
    """QUIC application error codes a link closes with."""

    NO_ERROR = 0
    """Orderly close."""
    PROTOCOL_VIOLATION = 1
    """A frame that is well formed but not allowed here (state or stream kind)."""
    FRAME_TOO_LARGE = 2
    MALFORMED_FRAME = 3
    UNKNOWN_FRAME = 4
    HELLO_EXPECTED = 5
    TOO_DEEP = 6
    TRAILING_BYTES = 7
    VERSION_MISMATCH = 8
    DUPLICATE_NODE = 9
    """A link to a node of that name exists already."""
    CERTIFICATE_REJECTED = 10
    """The peer's certificate does not chain to the trust anchor or names another node."""
    LIMIT_EXCEEDED = 11
    """The peer exceeded a resource limit (inbound bytes, streams, pending calls)."""
    INTERNAL_ERROR = 12
    """This node failed, not the peer."""
    HELLO_TIMEOUT = 13
    """The peer completed the handshake but sent no hello in time."""


class ProtocolError(RusmError):
    """Raised when a remote peer breaks the wire protocol; ``code`` closes the link."""

    code: ErrorCode = ErrorCode.PROTOCOL_VIOLATION


class MalformedFrame(ProtocolError):
    """Raised when a remote peer sends bytes that are not a valid frame or term."""

    code = ErrorCode.MALFORMED_FRAME


class UnknownExtType(MalformedFrame):
    """Raised when a remote peer sends a msgpack ext type that RUSM does not define."""


class TooDeep(MalformedFrame):
    """Raised when a remote peer sends a term nested deeper than ``max_depth``."""

    code = ErrorCode.TOO_DEEP


class TrailingBytes(MalformedFrame):
    """Raised when a remote peer sends bytes after the msgpack object of a frame."""

    code = ErrorCode.TRAILING_BYTES


class UnsendableTerm(RusmError, TypeError):
    """Raised when this node tries to send something that is not a term."""


class TermTooLarge(RusmError, ValueError):
    """Raised when this node tries to send a term or frame beyond the wire limits."""


class FrameTooLarge(ProtocolError):
    """Raised when a remote peer announces a frame longer than the stream's limit."""

    code = ErrorCode.FRAME_TOO_LARGE


class TruncatedFrame(MalformedFrame):
    """Raised when a remote peer ends a stream in the middle of a frame."""


class UnknownFrame(ProtocolError):
    """Raised when a remote peer sends a frame type number RUSM does not define."""

    code = ErrorCode.UNKNOWN_FRAME


class HelloExpected(ProtocolError):
    """Raised when a remote peer's control stream does not begin with Hello."""

    code = ErrorCode.HELLO_EXPECTED


class UnexpectedFrame(ProtocolError):
    """Raised when a remote peer sends a valid frame where it is not allowed.

    A pair frame on the control stream or the reverse, a second Hello, or a
    frame whose sender is not a process of the peer.
    """

    code = ErrorCode.PROTOCOL_VIOLATION


class VersionMismatch(ProtocolError):
    """Raised when a remote peer's Hello carries another protocol version."""

    code = ErrorCode.VERSION_MISMATCH


class InvalidFrame(RusmError, ValueError):
    """Raised when this node builds a frame whose fields break the protocol."""


class ClusterError(RusmError):
    """Raised when a cluster operation cannot be completed (root of cluster errors)."""


class NodeNotConnected(ClusterError, LookupError):
    """Raised when an operation names a node this node has no link to."""

    def __init__(self, node: str, reason: str = "") -> None:
        said = f"; the link was lost: {reason}" if reason else ""
        super().__init__(f"not connected to node {node!r}{said}")
        self.node = node
        self.reason = reason
        """Why the last link to ``node`` dropped, when this node knows."""


class LinkRejected(ClusterError, ConnectionError):
    """Raised when a link could not be made or the peer refused it (with its reason)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RemoteError(ClusterError):
    """Raised when a request to another node failed there; ``kind`` names the failure."""

    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @staticmethod
    def from_wire(kind: str, message: str) -> RemoteError:
        cls = _BY_KIND.get(kind, RemoteError)
        err = cls(message)
        err.kind = kind
        return err


class UnknownFactory(RemoteError):
    """Raised when ``spawn_remote`` names a factory the node was not taught."""

    kind = "unknown_factory"


class SpawnFailed(RemoteError):
    """Raised when the remote node could not start the factory with those args."""

    kind = "spawn_failed"


class CertificateRejected(ProtocolError):
    """Raised when a peer's certificate does not admit the node its hello claims."""

    code = ErrorCode.CERTIFICATE_REJECTED


class DuplicateNode(ProtocolError):
    """Raised when a peer's hello names a node that is connected already (or this one)."""

    code = ErrorCode.DUPLICATE_NODE


class HelloTimeout(ProtocolError):
    """Raised when a peer completes the handshake but sends no hello within
    ``ClusterConfig.hello_timeout``."""

    code = ErrorCode.HELLO_TIMEOUT


class LimitExceeded(ProtocolError):
    """Raised when a peer exceeds a per-link limit (inbound bytes, lanes)."""

    code = ErrorCode.LIMIT_EXCEEDED


class TlsError(RusmError):
    """Raised when an identity cannot be made, saved or loaded, or a peer fails verification."""


class PeerRejected(TlsError):
    """Raised when a peer's certificate does not prove it belongs to this cluster."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"peer rejected: {reason}")
        self.reason = reason


class InvalidNodeName(TlsError, ValueError):
    """Raised when a node name is empty, too long or has characters outside [A-Za-z0-9_-]."""


class IdentityNotFound(TlsError, FileNotFoundError):
    """Raised when loading an identity or CA and one of its PEM files is missing."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is missing")
        self.path = path


class IdentityExists(TlsError, FileExistsError):
    """Raised when saving would overwrite an existing file and overwrite was not asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists already (save with overwrite=True to replace it)")
        self.path = path


class KeyPermissionError(TlsError, PermissionError):
    """Raised when loading a private key file that its group or other users can read."""

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(
            f"{path} is readable by its group or other users (mode {mode:o}); "
            f"private keys must be private, run: chmod 600 {path}"
        )
        self.path = path
        self.mode = mode


class InvalidIdentity(TlsError, ValueError):
    """Raised when identity files exist but are unreadable or do not belong together."""


_BY_KIND: dict[str, type[RemoteError]] = {c.kind: c for c in (UnknownFactory, SpawnFailed)}


_ENGINE_IDLE = "Idle timeout"
"""The engine's close reason when a connection heard nothing for its idle timeout."""


def describe_close(code: int, reason: str) -> str:
    """Why a link dropped, in words (``code`` and ``reason`` as the
    connection closed): the engine's idle timeout says what it means."""
    if reason == _ENGINE_IDLE:
        return "idle timeout: the peer stopped answering"
    return reason or f"closed with code {code}"


class AttachError(RusmError):
    """Raised when a client cannot attach: no such node, refused, unreachable."""


class AppError(RusmError):
    """Raised when ``--app MODULE:FUNCTION`` cannot be loaded or its setup fails."""


class NodeRunning(RusmError):
    """Raised when starting a node whose name is taken by a running node."""


class NoSuchNode(RusmError):
    """Raised when looking up a name that no running node has."""


class UnsafeDirectory(RusmError, PermissionError):
    """Raised when the node directory, or a file in it, is not safely ours:
    a symlink, something other than a regular file, or another user's."""
