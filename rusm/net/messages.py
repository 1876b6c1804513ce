"""Messages the cluster layer puts in process mailboxes, and its errors.

::

    RusmError
    └── ClusterError
        ├── NodeNotConnected (also LookupError)  no link to that node
        ├── LinkRejected (also ConnectionError)  the peer refused the link
        └── RemoteError                          a remote request failed
            ├── UnknownFactory                   spawn_remote of an untaught name
            └── SpawnFailed                      the factory refused the args

    ProtocolError (rusm.net.wire; closes the link with its code)
    ├── CertificateRejected                      the hello names another node
    ├── DuplicateNode                            that name is connected already
    └── LimitExceeded                            a per-link limit was exceeded
"""

from __future__ import annotations

from dataclasses import dataclass

from rusm.actors.errors import RusmError
from rusm.actors.pid import Pid

from .terms import ErrorCode, ProtocolError

__all__ = [
    "CertificateRejected",
    "ClusterError",
    "DuplicateNode",
    "GlobalNameConflict",
    "HelloTimeout",
    "LimitExceeded",
    "LinkRejected",
    "NodeDown",
    "NodeNotConnected",
    "RemoteError",
    "SpawnFailed",
    "UnknownFactory",
]


@dataclass(frozen=True, slots=True)
class NodeDown:
    """A monitored node's link dropped (``ClusterNode.monitor_node``)."""

    node: str


@dataclass(frozen=True, slots=True)
class GlobalNameConflict:
    """Sent to a process that lost its global name to ``winner``."""

    name: str
    winner: Pid


class ClusterError(RusmError):
    """Raised when a cluster operation cannot be completed (root of cluster errors)."""


class NodeNotConnected(ClusterError, LookupError):
    """Raised when an operation names a node this node has no link to."""

    def __init__(self, node: str) -> None:
        super().__init__(f"not connected to node {node!r}")
        self.node = node


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


_BY_KIND: dict[str, type[RemoteError]] = {c.kind: c for c in (UnknownFactory, SpawnFailed)}
