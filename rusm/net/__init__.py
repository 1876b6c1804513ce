"""rusm.net: the cluster (QUIC, mutual TLS), the wire codec and the observe channel.

Depends on ``rusm.actors``; knows nothing of ``rusm.tui``.
"""

from .errors import (
    ClusterError,
    LinkRejected,
    NodeNotConnected,
    PeerRejected,
    RemoteError,
    SpawnFailed,
    UnknownFactory,
)
from .messages import GlobalNameConflict, NodeDown
from .node import ClusterConfig, ClusterNode, RemoteNode
from .tls import ClusterCa, Identity

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
