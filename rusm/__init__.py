"""RUSM: the BEAM's two superpowers for Python.

``rusm.actors`` is the local actor runtime; ``rusm.net`` clusters runtimes
over QUIC with mutual TLS; the observer (``rusm.tui``) builds on both.

The cluster's names (``ClusterNode``...) are imported on first use, so that
``import rusm.actors`` or ``import rusm.tui`` loads no QUIC engine and no
WebSocket library.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .actors import (
    Call,
    Down,
    Exit,
    GenServer,
    NoReply,
    Pid,
    Process,
    ProcessExit,
    Ref,
    Reply,
    Runtime,
    Stop,
    Supervisor,
)

if TYPE_CHECKING:
    from .net import ClusterCa, ClusterConfig, ClusterNode, Identity, NodeDown, RemoteNode

_NET = frozenset({"ClusterCa", "ClusterConfig", "ClusterNode", "Identity", "NodeDown",
                  "RemoteNode"})


def __getattr__(name: str) -> Any:
    if name in _NET:
        return getattr(importlib.import_module(".net", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Call",
    "ClusterCa",
    "ClusterConfig",
    "ClusterNode",
    "Down",
    "Exit",
    "GenServer",
    "Identity",
    "NoReply",
    "NodeDown",
    "Pid",
    "Process",
    "ProcessExit",
    "Ref",
    "RemoteNode",
    "Reply",
    "Runtime",
    "Stop",
    "Supervisor",
]
