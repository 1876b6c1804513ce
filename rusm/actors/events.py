"""What happened on a node: a bounded ring of events (issue 12 §4).

The runtime records every exit with its reason (a crash keeps its traceback,
for the last ``crashes`` crashes), supervisors record restarts (with the
child's restart count) and the moment their restart intensity is exceeded,
and the cluster layer records nodes going up and down and global-name
conflicts. Each event has a sequence number: a reader asks for the events
after the last one it saw (``since``), so following the log is polling it.

The ring is the node's memory of the last ``size`` events, not an archive:
the oldest go first. Recording is a few attribute writes and an append;
nothing is recorded while the runtime closes (every process exits then).
"""

from __future__ import annotations

import time
import traceback
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from .diagnose import REPR_CHARS, bounded_repr
from .errors import ProcessExit
from .pid import Pid

__all__ = ["CRASHES", "KINDS", "SIZE", "Event", "EventLog"]

SIZE = 1000
"""Events kept."""
CRASHES = 20
"""Crashes whose tracebacks are kept."""
TRACEBACK_CHARS = 8000
"""The most characters of a traceback kept (its start and its end, where
the exception is)."""
KINDS = ("exit", "restart", "max_restarts", "nodeup", "nodedown", "name_conflict")
"""What an event can be: a process exited; a supervisor restarted a child;
a supervisor's restart intensity was exceeded (it shuts down); a node joined
or left; two nodes registered one global name (one kept it)."""


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    """Its place in the node's log, from 1."""
    time: float
    """Wall-clock time (``time.time()``) on the node."""
    kind: str
    pid: Pid | None
    label: str | None
    reason: str | None
    """The exit reason as the node would print it (a bounded repr)."""
    detail: dict[str, Any] = field(default_factory=dict)
    """Kind-specific facts: ``node``, ``name``, ``child``, ``restarts``,
    ``supervisor``, ``crashed`` (whether the reason is an exception)."""

    def to_wire(self, tracebacks: dict[int, str]) -> dict[str, Any]:
        """One JSON-safe object; a crash among the last kept has ``traceback``."""
        d: dict[str, Any] = {
            "seq": self.seq, "time": self.time, "kind": self.kind,
            "pid": None if self.pid is None else str(self.pid),
            "label": self.label, "reason": self.reason, **self.detail,
        }
        text = tracebacks.get(self.seq)
        if text is not None:
            d["traceback"] = text
        return d


def reason_text(reason: Any) -> str | None:
    """An exit reason as the log shows it: atoms as they are, anything else a
    bounded repr (an exception as ``Type('message')``)."""
    if reason is None or (isinstance(reason, str) and len(reason) <= REPR_CHARS):
        return reason
    return bounded_repr(reason)


class EventLog:
    """The last ``size`` events of one runtime, and the last ``crashes`` tracebacks."""

    def __init__(self, size: int = SIZE, crashes: int = CRASHES) -> None:
        self.events: deque[Event] = deque(maxlen=size)
        self.tracebacks: OrderedDict[int, str] = OrderedDict()
        self.crashes = crashes
        self.seq = 0
        """The sequence number of the last event recorded."""

    def record(self, kind: str, pid: Pid | None = None, label: str | None = None,
               reason: Any = None, **detail: Any) -> Event:
        """Append one event (``reason`` is shown as :func:`reason_text`)."""
        self.seq += 1
        event = Event(self.seq, time.time(), kind, pid, label, reason_text(reason), detail)
        self.events.append(event)
        return event

    def exit(self, pid: Pid, label: str | None, reason: Any) -> None:
        """A process exited with ``reason``; a crash keeps its traceback."""
        crashed = isinstance(reason, BaseException) and not isinstance(reason, ProcessExit)
        event = self.record("exit", pid, label, reason, crashed=crashed)
        if crashed:
            text = "".join(traceback.format_exception(reason)).rstrip()
            if len(text) > TRACEBACK_CHARS:
                head = TRACEBACK_CHARS // 4
                cut = len(text) - TRACEBACK_CHARS
                text = (f"{text[:head]}\n  ... ({cut} characters left out) ...\n"
                        f"{text[head - TRACEBACK_CHARS:]}")
            self.tracebacks[event.seq] = text
            while len(self.tracebacks) > self.crashes:
                self.tracebacks.popitem(last=False)

    def since(self, seq: int = 0, limit: int = SIZE) -> list[Event]:
        """The events after ``seq`` (the oldest first), at most the last ``limit``."""
        if seq >= self.seq or limit <= 0:
            return []
        newer = self.seq - seq  # events after seq, some perhaps gone from the ring
        take = min(newer, limit, len(self.events))
        return list(self.events)[-take:] if take else []

    def wire(self, events: list[Event]) -> list[dict[str, Any]]:
        return [e.to_wire(self.tracebacks) for e in events]
