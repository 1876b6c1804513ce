"""RUSM: the BEAM's two superpowers for Python.

``rusm.actors`` is the local actor runtime; ``rusm.net`` clusters runtimes
over QUIC with mutual TLS; the observer (``rusm.tui``) builds on both.
"""

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
from .net import ClusterCa, ClusterConfig, ClusterNode, Identity, NodeDown, RemoteNode

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
