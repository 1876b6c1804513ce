"""The node's read-only observe commands the log and trace views ask, through
the app's feed, with their answers checked (a malformed answer is a
``bad_request`` CommandError, like any refusal): ``log``, ``trace`` and
``tree`` (the supervision trees, as :class:`TreeSupervisor` and
:class:`TreeChild`).

:class:`NodeCalls` remembers the traces it started and has not seen end, with
the feed each runs on, so that leaving a view or closing the app can stop them
(best effort: the node also stops a trace nobody reads for a few seconds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rusm.observe.protocol import LOG_LIMIT, CommandError, Feed

__all__ = [
    "TRANSIENT", "LogPage", "NodeCalls", "TracePage", "TraceStarted", "TreeChild",
    "TreeSupervisor", "trees",
]

log = logging.getLogger("rusm.tui")

TRANSIENT = frozenset({"not_connected", "timeout"})
"""Errors that say nothing of a trace: the link is down (it may still run)."""
STOP_TIMEOUT = 1.0
"""How long closing the app waits for its traces to be stopped."""


@dataclass(frozen=True, slots=True)
class LogPage:
    events: list[dict[str, Any]]
    next: int
    """The ``since`` that asks for only the events after these."""


@dataclass(frozen=True, slots=True)
class TraceStarted:
    trace: int
    pid: str
    count: int
    seconds: float


@dataclass(frozen=True, slots=True)
class TracePage:
    events: list[dict[str, Any]]
    next: int
    stopped: str | None
    """Why the trace ended (``count``, ``time``, ``idle``, ...); None while it runs."""


@dataclass(frozen=True, slots=True)
class TreeSupervisor:
    """A supervisor: a root one, or the tree under a child that is one."""

    pid: str
    label: str | None
    strategy: str
    max_restarts: int
    max_seconds: float
    children: tuple[TreeChild, ...]


@dataclass(frozen=True, slots=True)
class TreeChild:
    id: str
    pid: str | None
    """None while it is stopped."""
    label: str
    restart: str
    restarts: int
    """Restarts by its supervisor since that started."""
    supervisor: bool
    tree: TreeSupervisor | None = None
    """Its own children, for a child that is a supervisor and runs."""


def _bad(cmd: str, answer: Any) -> CommandError:
    shown = repr(answer)
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return CommandError("bad_request", f"{cmd}: the node answered {shown}")


def _supervisor(item: Any, pid: Any, label: Any, answer: Any) -> TreeSupervisor:
    strategy, most, seconds = (item.get(k) for k in ("strategy", "max_restarts", "max_seconds"))
    children = item.get("children")
    if (not isinstance(pid, str) or not (label is None or isinstance(label, str))
            or not isinstance(strategy, str) or type(most) is not int
            or not isinstance(seconds, int | float) or isinstance(seconds, bool)
            or not isinstance(children, list | tuple)):
        raise _bad("tree", answer)
    return TreeSupervisor(pid, label, strategy, most, float(seconds),
                          tuple(_child(c, answer) for c in children))


def _child(item: Any, answer: Any) -> TreeChild:
    if not isinstance(item, dict):
        raise _bad("tree", answer)
    ident, pid, label, restart, restarts = (
        item.get(k) for k in ("id", "pid", "label", "restart", "restarts"))
    if (not isinstance(ident, str) or not (pid is None or isinstance(pid, str))
            or not isinstance(restart, str) or type(restarts) is not int):
        raise _bad("tree", answer)
    label = label if isinstance(label, str) else ident
    nested = item.get("children") is not None and pid is not None
    return TreeChild(ident, pid, label, restart, restarts, bool(item.get("supervisor")),
                     _supervisor(item, pid, label, answer) if nested else None)


def trees(answer: Any) -> list[TreeSupervisor]:
    """The ``tree`` command's answer, checked: its root supervisors."""
    if not isinstance(answer, list | tuple) or not all(isinstance(t, dict) for t in answer):
        raise _bad("tree", answer)
    return [_supervisor(t, t.get("pid"), t.get("label"), answer) for t in answer]


def _events(cmd: str, answer: Any) -> list[dict[str, Any]]:
    events = answer.get("events") if isinstance(answer, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise CommandError("bad_request", f"{cmd}: the node answered {answer!r}")
    return events


def _int(cmd: str, answer: dict[str, Any], key: str) -> int:
    value = answer.get(key)
    if type(value) is not int:
        raise CommandError("bad_request", f"{cmd}: the node answered {answer!r}")
    return value


class NodeCalls:
    """Asks the app's current feed (``feed()``); a trace is read and stopped
    on the feed it was started on."""

    def __init__(self, feed: Callable[[], Feed]) -> None:
        self._feed = feed
        self.running: dict[int, Feed] = {}
        """The traces started and not seen to end, with the feed each is on."""

    async def log(self, since: int = 0, *, limit: int = LOG_LIMIT,
                  kinds: list[str] | None = None) -> LogPage:
        """The node's events after sequence number ``since``."""
        args: dict[str, Any] = {"since": since, "limit": limit}
        if kinds is not None:
            args["kinds"] = kinds
        answer = await self._feed().command("log", **args)
        events = _events("log", answer)
        return LogPage(events, _int("log", answer, "next"))

    async def tree(self) -> list[TreeSupervisor]:
        """The node's supervision trees, one per root supervisor."""
        return trees(await self._feed().command("tree"))

    async def trace(self, pid: str, count: int, seconds: float) -> TraceStarted:
        """Start tracing ``pid``'s messages."""
        feed = self._feed()
        answer = await feed.command("trace", pid=pid, count=count, seconds=seconds)
        if not isinstance(answer, dict):
            raise CommandError("bad_request", f"trace: the node answered {answer!r}")
        trace = _int("trace", answer, "trace")
        self.running[trace] = feed
        seconds_run = answer.get("seconds", seconds)
        return TraceStarted(
            trace=trace, pid=str(answer.get("pid") or pid),
            count=answer["count"] if type(answer.get("count")) is int else count,
            seconds=float(seconds_run) if isinstance(seconds_run, int | float) else seconds,
        )

    async def trace_read(self, trace: int, since: int) -> TracePage:
        """Trace ``trace``'s events from index ``since``."""
        feed = self.running.get(trace) or self._feed()
        try:
            answer = await feed.command("trace_read", trace=trace, since=since)
        except CommandError as e:
            if e.kind not in TRANSIENT:  # the node knows no such trace
                self.running.pop(trace, None)
            raise
        events = _events("trace_read", answer)
        stopped = answer.get("stopped")
        if stopped is not None:
            self.running.pop(trace, None)
        return TracePage(events, _int("trace_read", answer, "next"),
                         None if stopped is None else str(stopped))

    async def untrace(self, trace: int) -> None:
        """Stop ``trace`` if it still runs; any failure is only logged."""
        feed = self.running.pop(trace, None)
        if feed is None:
            return
        try:
            await feed.command("untrace", trace=trace)
        except Exception as e:
            log.debug("untrace %s: %s", trace, e)

    async def stop_all(self) -> None:
        """Stop every trace still running (the app closes), within STOP_TIMEOUT."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                for trace in list(self.running):
                    await self.untrace(trace)
        except TimeoutError:
            log.debug("stopping traces timed out: %s", list(self.running))
