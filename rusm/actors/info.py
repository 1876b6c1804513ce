"""Introspection records: what the observer shows about processes and the runtime."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from .pid import Pid

__all__ = ["ProcessInfo", "RuntimeStats", "Status"]

Status = Literal["running", "waiting", "exiting"]
"""``waiting``: blocked in ``receive``; ``running``: runnable or awaiting
anything else; ``exiting``: dead (signals delivered) but its task is unwinding."""


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A snapshot of one process, as ``Runtime.process_info`` returns it."""

    pid: Pid
    label: str | None
    names: tuple[str, ...]
    mailbox_depth: int
    links: tuple[Pid, ...]
    monitors: tuple[Pid | str, ...]
    """Processes this process monitors."""
    monitored_by: tuple[Pid, ...]
    status: Status
    trap_exits: bool
    received: int
    """Messages delivered into its mailbox since spawn."""
    sent: int
    """Messages it sent since spawn."""
    spawned_at: float
    """Wall-clock time of spawn (``time.time()``)."""
    old_code: bool = False
    """Its code was replaced by a reload; it runs the old one (``purge`` kills it)."""
    cpu_s: float = 0.0
    """Busy time: seconds its steps held the event loop, sampled at 100 Hz
    while the runtime's meter runs (``Runtime.meter``); 0 when it does not."""
    memory_bytes: int = 0
    """A cheap estimate of its record and mailbox (rusm.actors.diagnose.memory_estimate)."""

    def facts(self) -> dict[str, Any]:
        """Its fields as one map, in order (tuples as lists, pids as pids):
        the one wire form of a process's facts, which the control RPC
        ``process_info`` and the observe command ``info`` both send."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self)}


@dataclass(frozen=True, slots=True)
class RuntimeStats:
    """Runtime-wide counters since the runtime started."""

    node: str
    processes: int
    spawned: int
    exited: int
    messages: int
    """Messages delivered into any mailbox."""
    dead_letters: int
    """Messages dropped: unknown destination, dead process, late reply, or
    left in a mailbox when its process exited."""
