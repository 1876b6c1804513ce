"""Cheap whole-runtime scans for observers: totals and the top N processes.

An observer samples a node with maybe 100k processes several times a second,
so these read the process table directly, build a :class:`ProcessInfo` only
for the rows they return, and select the top N with a heap, not a sort.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from .diagnose import ROW_MEASURED, memory_estimate
from .info import ProcessInfo
from .process import Process
from .runtime import Runtime

__all__ = ["FIELDS", "Mailboxes", "mailbox_depths", "top", "total_mailbox"]


def _mailbox(p: Process) -> int:
    mb = p._mailbox
    return len(mb) if mb else 0


def _monitors(p: Process) -> int:
    return len(p._monitors or ()) + len(p._monitored_by or ())


FIELDS: dict[str, Callable[[Process], Any]] = {
    "mailbox": _mailbox,
    "received": lambda p: p._received,
    "sent": lambda p: p._sent,
    "links": lambda p: len(p._links or ()),
    "monitors": _monitors,
    "pid": lambda p: -p.pid.serial,
    "age": lambda p: -p.spawned_at,
    "cpu_s": lambda p: p._ticks,
    "memory": lambda p: memory_estimate(p, p._mailbox, ROW_MEASURED),
}
"""A process row's field (rusm.observe.protocol.ProcessRow) read
straight from a process, cheaply, oriented so that larger comes first in the
field's sort order (the lowest pid, the oldest): what :func:`top`'s heap
orders by. Fields a heap cannot order as the rows would (text) are not here."""


def total_mailbox(rt: Runtime) -> int:
    """Messages waiting in every mailbox of ``rt``."""
    return sum(len(mb) for p in rt._procs.values() if (mb := p._mailbox))


class Mailboxes:
    """The processes with mail waiting, kept as their mailboxes fill
    (``Runtime.track_filled``), so the total mailbox and the fullest
    mailboxes cost what changed, not a scan of every process: an idle node
    of 1,000,000 processes is sampled in microseconds. One per runtime, made
    by its observer; :meth:`close` stops the runtime noting fills."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        rt.track_filled()
        self.full: set[Process] = {p for p in rt._procs.values() if p._mailbox}
        self.total = sum(len(p._mailbox) for p in self.full if p._mailbox)

    def refresh(self) -> int:
        """Take in the mailboxes that filled since the last refresh, drop
        those that drained (or whose process exited); the total mailbox."""
        full = self.full
        full.update(self.rt.take_filled())
        total = 0
        drained = []
        for p in full:
            mb = p._mailbox
            if mb:
                total += len(mb)
            else:
                drained.append(p)
        full.difference_update(drained)
        self.total = total
        return total

    def top(self, n: int) -> list[ProcessInfo]:
        """The first ``n`` processes by mailbox depth, ties in pid order (as
        :func:`top` with ``key="mailbox"``), as of the last refresh."""
        chosen = heapq.nlargest(n, self.full, key=lambda p: (_mailbox(p), -p.pid.serial))
        chosen = [p for p in chosen if _mailbox(p)]
        if len(chosen) < n:  # then empty mailboxes, in pid order (spawn order)
            picked = set(chosen)
            for p in self.rt._procs.values():
                if len(chosen) >= n:
                    break
                if p not in picked and not p._mailbox:
                    chosen.append(p)
        return [self.rt._info(p) for p in chosen]

    def close(self) -> None:
        self.rt.track_filled(False)
        self.full.clear()


def mailbox_depths(rt: Runtime, serials: list[int]) -> list[int]:
    """The mailbox depth of each serial (0 for a process that is gone)."""
    procs = rt._procs
    out = []
    for s in serials:
        p = procs.get(s)
        out.append(_mailbox(p) if p is not None else 0)
    return out


Match = Callable[[str, str | None, tuple[str, ...]], bool]
"""(pid text, label, names) -> whether a process is shown: the observer's
row filter, given by the caller (rusm.observe.protocol.contains)."""


def top(
    rt: Runtime, n: int, field: str = "mailbox", match: Match | None = None
) -> tuple[list[ProcessInfo], int]:
    """The first ``n`` processes by row ``field`` (see FIELDS) among those
    ``match`` accepts, and how many it accepted. Ties keep pid order."""
    fn = FIELDS[field]
    procs: Any = rt._procs.values()
    if match is not None:
        procs = [p for p in procs if match(str(p.pid), p.label, tuple(p._names or ()))]
        matched = len(procs)
    else:
        matched = len(rt._procs)
    chosen = heapq.nlargest(n, procs, key=fn) if n > 0 else []
    return [rt._info(p) for p in chosen], matched

