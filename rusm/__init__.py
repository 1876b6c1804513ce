"""RUSM: the BEAM's two superpowers for Python.

``rusm.actors`` is the local actor runtime; ``rusm.net`` clusters runtimes
over QUIC with mutual TLS; the observer (``rusm.tui``) builds on both.
"""

from .actors import Call, Down, Exit, Pid, Process, ProcessExit, Ref, Runtime, Supervisor
from .net import ClusterCa, ClusterConfig, ClusterNode, Identity, NodeDown, RemoteNode

__all__ = [
    "Call",
    "ClusterCa",
    "ClusterConfig",
    "ClusterNode",
    "Down",
    "Exit",
    "Identity",
    "NodeDown",
    "Pid",
    "Process",
    "ProcessExit",
    "Ref",
    "RemoteNode",
    "Runtime",
    "Supervisor",
]
