"""Trace one process live: every message it sends and receives (issue 12 §5).

As recon_trace does on the BEAM, a trace is bounded from the start: it stops
by itself after ``count`` messages or ``seconds`` seconds, whichever comes
first, and when nobody reads it for ``idle`` seconds (its observer went
away). While it runs, each message the process sends (``out``) or receives
(``in``) is kept as a :class:`TraceEvent` with the time, the peer and a
bounded repr of the term (:func:`rusm.actors.diagnose.bounded_repr`), so a
huge or self-referencing message costs the traced process a few
microseconds, never a stall.

With no trace on a process, its message path pays one slot test (``_trace``
is None) on each side. ``Runtime.trace`` starts one; a second trace of the
same process replaces the first (which stops with reason ``replaced``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .diagnose import bounded_repr
from .pid import Pid

__all__ = ["IDLE", "Trace", "TraceEvent"]

IDLE = 5.0
"""A trace nobody has read for this many seconds stops (reason ``idle``)."""


@dataclass(frozen=True, slots=True)
class TraceEvent:
    time: float
    """Wall-clock time (``time.time()``) on the node."""
    direction: str
    """``in`` (received) or ``out`` (sent)."""
    peer: str
    """The other end: the sender of an ``in``, the destination of an ``out``
    (a pid, a registered name, or ``name@node``)."""
    term: str
    """The message, as a bounded repr."""

    def to_wire(self, pid: Pid) -> dict[str, Any]:
        return {"time": self.time, "pid": str(pid), "direction": self.direction,
                "peer": self.peer, "term": self.term}


def _peer(dest: Any) -> str:
    if isinstance(dest, tuple) and len(dest) == 2:
        return f"{dest[0]}@{dest[1]}"
    return str(dest)


class Trace:
    """One trace of one process. Made by ``Runtime.trace``; read (polled)
    with :meth:`read`; stopped by itself or with :meth:`stop`."""

    def __init__(self, pid: Pid, count: int, seconds: float, loop: asyncio.AbstractEventLoop,
                 detach: Callable[[Trace], None], idle: float = IDLE) -> None:
        self.pid = pid
        self.count = count
        self.seconds = seconds
        self.events: list[TraceEvent] = []
        """The events not yet read (those before ``base`` were: let go)."""
        self.base = 0
        """The index of ``events[0]`` among all the trace's events."""
        self.stopped: str | None = None
        """Why it stopped (``count``, ``time``, ``idle``, ``exit``,
        ``replaced``, ``stopped``), or None while it runs."""
        self._detach = detach
        self._loop = loop
        self._idle = idle
        self._read_at = loop.time()
        self._deadline = loop.call_later(seconds, self.stop, "time")
        self._idle_timer = loop.call_later(idle, self._check_idle)

    # -- on the traced process's message path --------------------------------

    def message(self, direction: str, peer: Any, msg: Any) -> None:
        """Keep one message (called by the runtime and the process)."""
        if self.stopped is not None:
            return
        self.events.append(TraceEvent(time.time(), direction, _peer(peer), bounded_repr(msg)))
        if self.seen >= self.count:
            self.stop("count")

    @property
    def seen(self) -> int:
        """Messages traced so far."""
        return self.base + len(self.events)

    # -- for its reader ------------------------------------------------------

    def read(self, since: int = 0) -> list[TraceEvent]:
        """The events from index ``since`` on (the reader keeps its place);
        asking from ``since`` lets the ones before it go (read already)."""
        self._read_at = self._loop.time()
        if since > self.base:
            drop = min(since, self.seen) - self.base
            del self.events[:drop]
            self.base += drop
        return self.events[max(0, since - self.base):]

    def stop(self, why: str = "stopped") -> None:
        """Stop tracing (idempotent): the process's message path is plain again."""
        if self.stopped is not None:
            return
        self.stopped = why
        self._deadline.cancel()
        self._idle_timer.cancel()
        self._detach(self)

    def _check_idle(self) -> None:
        left = self._read_at + self._idle - self._loop.time()
        if left <= 0:
            self.stop("idle")
        else:
            self._idle_timer = self._loop.call_later(left, self._check_idle)
