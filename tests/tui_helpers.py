"""Helpers for the ``rusm top`` tests: a deterministic node's samples, a fake
feed the test drives, and bounded waits on the app.

The samples come from arithmetic on a tick number (no clock, no randomness),
so the recordings in tests/data/ can be rebuilt byte for byte with
``python -m tests.data.make_recordings``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from rusm.observe.protocol import (
    FeedStatus,
    History,
    ProcessRow,
    Sample,
    Subscription,
    Totals,
)
from rusm.tui.app import TopApp
from rusm.tui.feeds import view

DATA = Path(__file__).parent / "data"
LONDON = DATA / "london.rec"
LONDON_DOWN = DATA / "london_disconnected.rec"

T0 = 1_700_000_000.0
"""The recorded node's wall clock at tick 0."""
HISTORY_TICKS = 80
SAMPLE_TICKS = 30
PROCESSES = 1_234
"""What the node reports as its process count (it shows the busiest rows)."""
LIMIT = 40

_LABELS = ("worker", "fetcher", "parser", "cache", None)


def _pid(serial: int) -> str:
    return f"<london.{serial}>"


def _mailbox(serial: int, tick: int) -> int:
    if serial == 3:  # the slow consumer: fills for 40 ticks, drains for 20
        phase = tick % 60
        return phase * 3 if phase < 40 else (60 - phase) * 6
    if serial == 2:  # the bursty producer's target: a burst every 8 ticks
        return 25 if tick % 8 < 2 else 0
    return (tick * (serial % 7 + 1) + serial * 13) % (5 + serial % 11)


def _row(serial: int, tick: int) -> ProcessRow:
    mailbox = _mailbox(serial, tick)
    if serial == 1:
        label, names, links = "demo_sup", ("demo_sup",), 5
    elif serial == 2:
        label, names, links = "producer", ("producer",), 1
    elif serial == 3:
        label, names, links = "consumer", ("consumer", "jobs"), 1
    else:
        label = _LABELS[serial % len(_LABELS)]
        names = (f"{label}_{serial}",) if label and serial % 4 == 0 else ()
        links = serial % 3
    return ProcessRow(
        pid=_pid(serial),
        label=label,
        names=names,
        mailbox=mailbox,
        links=links,
        monitors=serial % 2,
        status="running" if mailbox and serial % 3 == 0 else "waiting",
        received=serial * 100 + tick * (serial % 5 + 1) * 10,
        sent=serial * 90 + tick * (serial % 4 + 1) * 9,
        age=3_000.0 + tick - serial,
    )


def _all_rows(tick: int, count: int = 60) -> list[ProcessRow]:
    return [_row(serial, tick) for serial in range(1, count + 1)]


def _top(rows: list[ProcessRow], limit: int) -> tuple[ProcessRow, ...]:
    ranked = sorted(rows, key=lambda r: (-r.mailbox, int(r.pid.split(".")[1][:-1])))
    return tuple(ranked[:limit])


def _processes(tick: int) -> int:
    return PROCESSES + tick % 9 - 4


def london_samples(
    ticks: int = SAMPLE_TICKS, *, limit: int = LIMIT, nodes: tuple[str, ...] = ("paris", "tokyo")
) -> list[Sample]:
    """A node called london: ``ticks`` samples, the first with its history."""
    samples = []
    for i in range(ticks):
        tick = HISTORY_TICKS + i
        rows = _all_rows(tick)
        shown = _top(rows, limit)
        history = None
        if i == 0:
            past = range(tick - HISTORY_TICKS, tick)
            history = History(
                step=1.0,
                processes=tuple(_processes(t) for t in past),
                mailbox=tuple(sum(r.mailbox for r in _all_rows(t)) for t in past),
                rows={r.pid: tuple(_mailbox(int(r.pid[8:-1]), t) for t in past) for r in shown},
            )
        mailbox = sum(r.mailbox for r in rows)
        samples.append(Sample(
            node="london",
            seq=i + 1,
            time=T0 + tick,
            uptime=3_600.0 + tick,
            processes=_processes(tick),
            totals=Totals(
                msgs_in_per_s=1_200.0 + (tick % 7) * 10,
                msgs_out_per_s=1_150.0 + (tick % 5) * 10,
                dead_letters_per_s=0.5 if tick % 10 == 0 else 0.0,
                mailbox=mailbox,
                messages=1_000_000 + tick * 1_200,
                dead_letters=42 + tick // 10,
                spawned=PROCESSES + 300 + tick,
                exited=300 + tick,
            ),
            nodes=nodes,
            detail=True,
            sort="mailbox",
            rows=shown,
            matched=_processes(tick),
            omitted=_processes(tick) - len(shown),
            history=history,
        ))
    return samples


def london_disconnected() -> list[Sample | FeedStatus]:
    """Ten samples, then the node goes away."""
    return [*london_samples(10), FeedStatus("disconnected", "connection lost; retrying in 2 s")]


def info_of(pid: str, *, mailbox: int = 17) -> dict[str, Any]:
    """What a node's ``info`` answers for one of london's processes."""
    serial = int(pid[len("<london."):-1])
    return {
        "pid": pid,
        "label": _row(serial, HISTORY_TICKS).label,
        "names": list(_row(serial, HISTORY_TICKS).names),
        "mailbox_depth": mailbox,
        "links": [_pid(1)] if serial != 1 else [_pid(s) for s in range(2, 7)],
        "monitors": [_pid(4)] if serial == 3 else [],
        "monitored_by": [_pid(2), _pid(5)] if serial == 3 else [],
        "status": "waiting",
        "trap_exits": serial == 1,
        "received": 12_345,
        "sent": 12_000,
        "spawned_at": T0 + 600,
    }


Answer = Any | Exception | Callable[..., Any]


class FakeFeed:
    """A feed the test drives: it yields what the test pushes, records every
    subscribe and command, and answers commands from ``answers`` (a value, an
    exception to raise, or a function of the command's arguments)."""

    def __init__(
        self, events: Iterable[Sample | FeedStatus] = (), *, target: str = "london",
        answers: dict[str, Answer] | None = None,
    ) -> None:
        self.target = target
        self.subscription = Subscription(limit=LIMIT)
        self.queue: asyncio.Queue[Sample | FeedStatus | None] = asyncio.Queue()
        self.pushed = 0
        self.push(*events)
        self.subscribed: list[dict[str, Any]] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, Answer] = dict(answers or {})
        self.latest: Sample | None = None
        self.closed = False

    def push(self, *events: Sample | FeedStatus) -> None:
        for event in events:
            self.queue.put_nowait(event)
            self.pushed += 1

    async def __aiter__(self) -> AsyncIterator[Sample | FeedStatus]:
        while (event := await self.queue.get()) is not None:
            if isinstance(event, Sample):
                self.latest = event
                event = view(event, self.subscription)
            yield event

    async def subscribe(self, **changes: Any) -> None:
        self.subscribed.append(changes)
        self.subscription.update(changes)
        if self.latest is not None:  # a live node answers with a fresh sample
            self.push(self.latest)

    async def command(self, cmd: str, **args: Any) -> Any:
        self.commands.append((cmd, args))
        answer = self.answers.get(cmd)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(**args)
        return answer

    async def close(self) -> None:
        self.closed = True
        self.queue.put_nowait(None)


WAIT_ROUNDS = 200
"""How many pauses a test waits for a condition before failing (a few seconds)."""


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str = "") -> None:
    """Pause until ``condition()`` holds; fail after WAIT_ROUNDS pauses."""
    for _ in range(WAIT_ROUNDS):
        if condition():
            return
        await pilot.pause()
    raise AssertionError(f"timed out waiting for {what or condition}")


async def drained(pilot: Pilot[Any], feed: FakeFeed) -> None:
    """Wait until the app took every event pushed so far and rendered it."""
    # The app's worker takes an event off the queue and ingests it in one step.
    await until(pilot, feed.queue.empty, "the feed to be drained")
    await pilot.pause()


# -- the node's event log and a trace, as its observe commands answer them ----------

AT = T0 + 3_601.0
"""When the node's events below happened (23:13:21 UTC)."""
CRASH = ("Traceback (most recent call last):\n"
         '  File "jobs.py", line 12, in handle\n'
         "    return 1 / 0\n"
         "ZeroDivisionError: division by zero")


def node_events() -> list[dict[str, Any]]:
    """One event of every kind, a crash with its traceback among them, at fixed times."""
    crash = "ZeroDivisionError('division by zero')"
    events: list[dict[str, Any]] = [
        {"kind": "nodeup", "pid": None, "label": None, "reason": None, "node": "paris"},
        {"kind": "exit", "pid": "<london.7>", "label": "worker", "reason": "normal",
         "crashed": False},
        {"kind": "exit", "pid": "<london.12>", "label": "parser", "reason": crash,
         "crashed": True, "traceback": CRASH},
        {"kind": "restart", "pid": "<london.61>", "label": "parser", "reason": crash,
         "child": "parser", "restarts": 1, "supervisor": "<london.1>"},
        {"kind": "max_restarts", "pid": "<london.1>", "label": "demo_sup",
         "reason": "more than 3 restarts in 5 s", "child": "parser"},
        {"kind": "nodedown", "pid": None, "label": None, "reason": "connection lost",
         "node": "tokyo"},
        {"kind": "name_conflict", "pid": "<london.9>", "label": "cache",
         "reason": "'jobs' kept by <paris.4>", "name": "jobs", "winner": "<paris.4>"},
    ]
    return [{"seq": i + 1, "time": AT + i * 0.125, **e} for i, e in enumerate(events)]


class NodeLog:
    """A node's event log: call it as the ``log`` command (a FakeFeed answer)."""

    def __init__(self, events: Iterable[dict[str, Any]] = ()) -> None:
        self.events = list(events)

    def __call__(self, since: int = 0, limit: int = 200,
                 kinds: list[str] | None = None) -> dict[str, Any]:
        newer = [e for e in self.events
                 if e["seq"] > since and (kinds is None or e["kind"] in kinds)]
        return {"events": newer[-limit:],
                "next": max((e["seq"] for e in self.events), default=0)}


def trace_events(pid: str = "<london.3>") -> list[dict[str, Any]]:
    """What a trace of ``pid`` saw: messages in and out, at fixed times."""
    seen = [("in", "<london.2>", "{'job': 1}"), ("out", "<london.5>", "('ok', 1)"),
            ("in", "producer@paris", "{'job': 2}"), ("out", "jobs", "('ok', 2)")]
    return [{"time": AT + i * 0.25, "pid": pid, "direction": d, "peer": peer, "term": term}
            for i, (d, peer, term) in enumerate(seen)]


class NodeTrace:
    """A node tracing one process: answers ``trace``, ``trace_read`` and ``untrace``
    (see :meth:`answers`); the test adds events and sets ``stopped``."""

    def __init__(self, pid: str, events: Iterable[dict[str, Any]] = (), *,
                 stopped: str | None = None, trace: int = 7) -> None:
        self.pid = pid
        self.events = list(events)
        self.stopped = stopped
        self.trace = trace

    def start(self, pid: str, count: int, seconds: float) -> dict[str, Any]:
        return {"trace": self.trace, "pid": self.pid, "count": count, "seconds": float(seconds)}

    def read(self, trace: int, since: int) -> dict[str, Any]:
        assert trace == self.trace, trace
        return {"events": self.events[since:], "next": len(self.events),
                "stopped": self.stopped}

    def answers(self) -> dict[str, Answer]:
        return {"trace": self.start, "trace_read": self.read, "untrace": lambda trace: None}


# -- the node's supervision trees, as its ``tree`` command answers them ----------------


def supervision_trees() -> list[dict[str, Any]]:
    """Two root supervisors: demo_sup with a worker and a pool (a supervisor
    with one restarted worker and one stopped), and an empty one."""
    pool = [
        {"id": "w1", "pid": "<london.8>", "label": "worker", "restart": "transient",
         "restarts": 2, "supervisor": False},
        {"id": "w2", "pid": None, "label": "w2", "restart": "temporary", "restarts": 0,
         "supervisor": False},
    ]
    return [
        {"pid": "<london.1>", "label": "demo_sup", "strategy": "one_for_one",
         "max_restarts": 3, "max_seconds": 5.0, "children": [
             {"id": "producer", "pid": "<london.2>", "label": "producer",
              "restart": "permanent", "restarts": 0, "supervisor": False},
             {"id": "pool", "pid": "<london.7>", "label": "pool", "restart": "permanent",
              "restarts": 1, "supervisor": True, "strategy": "rest_for_one",
              "max_restarts": 10, "max_seconds": 60.0, "children": pool},
         ]},
        {"pid": "<london.20>", "label": None, "strategy": "one_for_all", "max_restarts": 1,
         "max_seconds": 0.5, "children": []},
    ]


async def run_line(pilot: Pilot[Any], line: str) -> None:
    """Open the command line (if it is not), put ``line`` in it and press enter."""
    app = pilot.app
    assert isinstance(app, TopApp)
    if not app.main.pane.is_open:
        await pilot.press("colon")
    app.main.pane.input.value = line
    await pilot.press("enter")
    await pilot.pause()
