"""rusm.net: the cluster (QUIC, mutual TLS), the wire codec and the observe channel.

Depends on ``rusm.actors``; knows nothing of ``rusm.tui``. The names below
are imported on first use: ``import rusm.net.terms`` (the codec, which the
observe protocol uses) loads no QUIC engine.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "ClusterError": ".errors", "LinkRejected": ".errors", "NodeNotConnected": ".errors",
    "PeerRejected": ".errors", "RemoteError": ".errors", "SpawnFailed": ".errors",
    "UnknownFactory": ".errors", "GlobalNameConflict": ".messages", "NodeDown": ".messages",
    "ClusterConfig": ".node", "ClusterNode": ".node", "RemoteNode": ".node",
    "ClusterCa": ".tls", "Identity": ".tls",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(where, __name__), name)


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
