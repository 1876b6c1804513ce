"""Recorded feeds: write what a live feed yields, replay it without a node.

Recording format (``rusm top --record FILE``, ``--replay FILE``)::

    b"RUSM-TOP-RECORDING 1\\n"                 magic line, then any number of frames:
    4-byte big-endian length, then that many bytes of one observe protocol
    message (``rusm.observe.protocol.encode``):
        a sample: ``Sample.to_wire()``           {"t": "sample", ...}
        a status: {"t": "status", "state": ..., "message": ...}

The frames are the events in the order the feed yielded them. A truncated
last frame (a recorder killed mid-write) is ignored.

:class:`ReplayFeed` is a :class:`~rusm.observe.protocol.Feed`: it yields
the recorded events (at once, or spaced as the node's clock had them with
``realtime=True``, at ``speed``), and applies subscription changes itself to the rows that
were recorded (detail, filter, sort, reverse, offset, limit), re-yielding the latest sample
after each change as a live node would. It runs no commands but ``nodes``
and ``names``, answered from the recording. Playback can be held, stepped a
sample at a time either way, jumped to a point and sped up or slowed down
(:meth:`ReplayFeed.hold`, ``step``, ``jump``, ``set_speed``).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rusm.observe.protocol import (
    CommandError,
    Feed,
    FeedStatus,
    Sample,
    Subscription,
    decode,
    encode,
    select,
)

__all__ = [
    "MAGIC",
    "Recorder",
    "RecordingFeed",
    "ReplayFeed",
    "read_recording",
    "view",
    "write_recording",
]

MAGIC = b"RUSM-TOP-RECORDING 1\n"
_LENGTH = struct.Struct(">I")

Event = Sample | FeedStatus


def _to_wire(event: Event) -> dict[str, Any]:
    if isinstance(event, Sample):
        return event.to_wire()
    return {"t": "status", "state": event.state, "message": event.message}


def _from_wire(message: dict[str, Any]) -> Event:
    if message["t"] == "status":
        return FeedStatus(message["state"], str(message.get("message", "")))
    return Sample.from_wire(message)


class Recorder:
    """Appends events to a recording; a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = self.path.open("wb")
        self._file.write(MAGIC)

    def write(self, event: Event) -> None:
        if self._file is None:
            raise ValueError(f"recorder for {self.path} is closed")
        data = encode(_to_wire(event))
        self._file.write(_LENGTH.pack(len(data)) + data)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_recording(path: str | Path, events: Iterable[Event]) -> None:
    with Recorder(path) as recorder:
        for event in events:
            recorder.write(event)


def read_recording(path: str | Path) -> Iterator[Event]:
    """The events of a recording; raises ValueError if it is not one."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path} is not a rusm top recording")
    at = len(MAGIC)
    while at + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if at + size > len(data):
            return
        yield _from_wire(decode(data[at : at + size]))
        at += size


class RecordingFeed:
    """Wraps a feed and records every event it yields (``--record FILE``)."""

    def __init__(self, feed: Feed, path: str | Path) -> None:
        self.feed = feed
        self.target = feed.target
        self.subscription = feed.subscription
        self.recorder = Recorder(path)

    async def __aiter__(self) -> AsyncIterator[Event]:
        async for event in self.feed:
            self.recorder.write(event)
            yield event

    async def subscribe(self, **changes: Any) -> None:
        await self.feed.subscribe(**changes)

    async def command(self, cmd: str, **args: Any) -> Any:
        return await self.feed.command(cmd, **args)

    async def close(self) -> None:
        try:
            await self.feed.close()
        finally:
            self.recorder.close()


def view(sample: Sample, sub: Subscription) -> Sample:
    """A recorded sample as ``sub`` would have had the node send it, as far
    as the recorded rows allow (rows the node left out stay out): the
    protocol's own :func:`~rusm.observe.protocol.select` over them. A
    page past the recorded rows is their last page."""
    if not sub.detail:
        matched = sample.matched if sample.detail else sample.omitted
        return replace(sample, detail=False, rows=(), omitted=matched, matched=matched,
                       offset=0)
    # The recorded rows start at the recorded offset; page within them.
    start = max(0, sub.offset - sample.offset)
    ordered = (sub.sort, sub.reverse) == (sample.sort, sample.reverse)
    shown, matched = select(sample.rows, replace(sub, offset=start), ordered=ordered)
    if not shown and start:
        start = max(0, matched - max(1, sub.limit))
        shown, matched = select(sample.rows, replace(sub, offset=start), ordered=ordered)
    if not sub.filter.removeprefix("!"):  # no filter: all rows pass
        matched = sample.matched  # the node's count, not only the rows recorded
    return replace(
        sample, detail=True, sort=sub.sort, reverse=sub.reverse, rows=tuple(shown),
        matched=matched, offset=sample.offset + start,
        omitted=max(0, matched - len(shown)),
    )


class ReplayFeed:
    """A :class:`~rusm.observe.protocol.Feed` that replays a recording."""

    def __init__(
        self, path: str | Path, *, realtime: bool = False, speed: float = 1.0,
        subscription: Subscription | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.path = Path(path)
        self.events = list(read_recording(self.path))
        self.realtime = realtime
        self.speed = speed
        self.subscription = subscription or Subscription(limit=1000)
        node = next((e.node for e in self.events if isinstance(e, Sample)), self.path.stem)
        self.target = f"{node} (replay)"
        self.ended = asyncio.Event()
        """Set once every recorded event was taken from the iterator."""
        self._changed = asyncio.Event()
        self._closed = False
        self._latest: Sample | None = None
        self._next = 0
        """The index of the next event to play."""
        self._samples = sum(1 for e in self.events if isinstance(e, Sample))
        self.held = False
        """Whether playing stopped (a step or a jump holds it; space goes on)."""

    async def __aiter__(self) -> AsyncIterator[Event]:
        yield FeedStatus("connected", f"replay of {self.path.name}")
        previous: float | None = None
        last_was_status = False
        said_end = False
        while not self._closed:
            if self.held or self._next >= len(self.events):
                if self._next >= len(self.events) and not said_end:
                    said_end = True
                    self.ended.set()
                    if not last_was_status:  # a recorded status (disconnected...) stands
                        yield FeedStatus("connected", f"replay of {self.path.name} ended")
                await self._changed.wait()
                self._changed.clear()
                if self._latest is not None and not self._closed:
                    yield view(self._latest, self.subscription)
                previous = None  # playing on after a hold or a move: no wait for the gap
                continue
            event = self.events[self._next]
            if isinstance(event, Sample):
                if self.realtime and previous is not None:
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + (event.time - previous) / self.speed
                    moved = False
                    while (left := deadline - loop.time()) > 0 and not self._closed:
                        if await self._changed_within(left):
                            if self.held or self._next >= len(self.events) or (
                                self.events[self._next] is not event
                            ):
                                moved = True  # stepped, jumped or held meanwhile
                                break
                            if self._latest is not None:
                                yield view(self._latest, self.subscription)
                    if moved:
                        if self._latest is not None and not self.held:
                            yield view(self._latest, self.subscription)
                        previous = None
                        continue
                previous = event.time
                self._latest = event
                self._next += 1
                yield view(event, self.subscription)
            else:
                self._next += 1
                yield event
            last_was_status = isinstance(event, FeedStatus)

    # -- playback controls (keys of ``rusm top --replay``) -----------------------

    @property
    def position(self) -> tuple[int, int]:
        """(which recorded sample is shown, 1-based; how many there are)."""
        shown = sum(1 for e in self.events[: self._next] if isinstance(e, Sample))
        return shown, self._samples

    def hold(self, held: bool | None = None) -> bool:
        """Stop (or go on) playing; None toggles. Returns whether it is held."""
        self.held = not self.held if held is None else held
        self._changed.set()
        return self.held

    def step(self, count: int) -> None:
        """Show the sample ``count`` samples after (or before) the one shown,
        and hold there."""
        self.held = True
        self._seek(self.position[0] + count)

    def jump(self, fraction: float) -> None:
        """Show the sample at ``fraction`` of the recording (0 the first, 1 the
        last), and hold there."""
        self.held = True
        self._seek(1 + round(max(0.0, min(1.0, fraction)) * (self._samples - 1)))

    def set_speed(self, speed: float) -> float:
        """Play ``speed`` times as fast as recorded (1/16 … 64); returns it."""
        self.speed = max(1 / 16, min(64.0, speed))
        return self.speed

    def _seek(self, nth: int) -> None:
        nth = max(1, min(self._samples, nth))
        seen = 0
        for at, event in enumerate(self.events):
            if isinstance(event, Sample):
                seen += 1
                if seen == nth:
                    self._latest, self._next = event, at + 1
                    break
        self._changed.set()

    async def _changed_within(self, seconds: float) -> bool:
        """Whether the subscription changed within ``seconds`` (then it clears the flag)."""
        try:
            async with asyncio.timeout(seconds):
                await self._changed.wait()
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    async def subscribe(self, **changes: Any) -> None:
        self.subscription.update(changes)
        self._changed.set()

    async def command(self, cmd: str, **args: Any) -> Any:
        latest = self._latest
        if cmd == "nodes":
            return list(latest.nodes) if latest else []
        if cmd == "names":
            names = sorted({n for r in latest.rows for n in r.names}) if latest else []
            return {"local": names, "global": [], "factories": []}
        raise CommandError("not_connected", f"{cmd}: a replay has no node to run commands on")

    async def close(self) -> None:
        self._closed = True
        self._changed.set()
