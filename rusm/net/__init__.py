"""rusm.net: the cluster (QUIC, mutual TLS), the wire codec and the observe channel.

Depends on ``rusm.actors``; knows nothing of ``rusm.tui``.
"""

from .messages import (
    ClusterError,
    GlobalNameConflict,
    LinkRejected,
    NodeDown,
    NodeNotConnected,
    RemoteError,
    SpawnFailed,
    UnknownFactory,
)
from .node import ClusterConfig, ClusterNode, RemoteNode
from .tls import ClusterCa, Identity, PeerRejected

__all__ = [
    "ClusterCa",
    "ClusterConfig",
    "ClusterError",
    "ClusterNode",
    "GlobalNameConflict",
    "Identity",
    "LinkRejected",
    "NodeDown",
    "NodeNotConnected",
    "PeerRejected",
    "RemoteError",
    "RemoteNode",
    "SpawnFailed",
    "UnknownFactory",
]
