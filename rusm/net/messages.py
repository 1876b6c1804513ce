"""Messages the cluster layer puts in process mailboxes (its errors are in
:mod:`rusm.net.errors`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rusm.actors.pid import Pid

__all__ = ["GlobalNameConflict", "NodeDown"]


@dataclass(frozen=True, slots=True)
class NodeDown:
    """A monitored node's link dropped (``ClusterNode.monitor_node``).

    ``reason`` says why, in words (``idle timeout: ...``, the peer's close
    reason, ``not connected``), like the BEAM's ``nodedown_reason``; it is
    not part of equality, so ``NodeDown("london")`` matches any reason."""

    node: str
    reason: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class GlobalNameConflict:
    """Sent to a process that lost its global name to ``winner``."""

    name: str
    winner: Pid
