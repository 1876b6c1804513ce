"""The node's read-only observe commands the log and trace views ask, through
the app's feed, with their answers checked (a malformed answer is a
``bad_request`` CommandError, like any refusal).

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

from rusm.net.observe.protocol import LOG_LIMIT, CommandError, Feed

__all__ = ["TRANSIENT", "LogPage", "NodeCalls", "TracePage", "TraceStarted"]

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
