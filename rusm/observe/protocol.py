"""The observe protocol's data: samples, rows, history, commands and errors.

Pure data and codec (no I/O, no transport). The node side
(``rusm.net.observe.session``, ``server``) makes these, the client
(``rusm.net.observe.client``) decodes them, and the observer UIs
(``rusm attach``, ``rusm top``) consume them without knowing the transport.
Every message is one msgpack map encoded with the cluster's term codec
(:mod:`rusm.net.terms`), so a term in a command may hold pids and tuples.
Specified in docs/PROTOCOL.md, "Observe channel".
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from rusm.actors.errors import RusmError
from rusm.net.terms import decode_term, encode_term

__all__ = [
    "ASCENDING",
    "COMMANDS",
    "INFO_MESSAGES",
    "MAX_INFO_MESSAGES",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "MUTATING",
    "OBSERVE_VERSION",
    "SORTS",
    "SORT_FIELDS",
    "SORT_KEYS",
    "CommandError",
    "Feed",
    "FeedStatus",
    "History",
    "ProcessRow",
    "Sample",
    "Subscription",
    "Totals",
    "contains",
    "decode",
    "encode",
    "matches",
    "select",
]

OBSERVE_VERSION = 1

_PID = re.compile(r"<(.*)\.(\d+)>")


def _pid_order(pid: str) -> tuple[str, int, str]:
    m = _PID.fullmatch(pid)
    return (m.group(1), int(m.group(2)), "") if m else ("", 0, pid)



COMMANDS = ("subscribe", "detail", "send", "spawn", "kill", "exit", "info", "nodes", "names",
            "reload", "purge", "log", "trace", "trace_read", "untrace", "tree", "restart_child",
            "terminate_child")
"""Commands a client may send (see docs/PROTOCOL.md for their arguments)."""

MUTATING = frozenset({"send", "spawn", "kill", "exit", "reload", "purge", "restart_child",
                      "terminate_child"})
"""Commands that change the node: UIs ask before them and audit them."""

MAX_LIMIT = 1000
"""The most process rows one sample carries."""
MAX_OFFSET = 10_000_000
"""The most rows a subscription may skip."""
INFO_MESSAGES = 20
"""How many mailbox messages ``info`` shows unless asked for another count."""
MAX_INFO_MESSAGES = 1000
"""The most mailbox messages one ``info`` carries."""
LOG_LIMIT = 200
"""How many events ``log`` returns unless asked for another count."""
TRACE_COUNT = 100
"""A trace stops after this many messages unless asked for another count."""
TRACE_SECONDS = 10.0
"""A trace stops after this many seconds unless asked for another time."""
MAX_TRACE_COUNT = 10_000
MAX_TRACES = 8
"""The most traces one observer runs at once."""
MAX_TRACE_SECONDS = 600.0
ANSWER_BUDGET = 48 * 1024
"""Bytes (encoded) the lists of one ``log``, ``trace_read`` or ``info`` answer
may take: the answer fits one control frame (64 KiB) of a remote attach; what
does not fit comes with the next ask (``more``) or is counted (``omitted``)."""
MAX_LOG_LIMIT = 1000
"""The most events one ``log`` answer carries (the node keeps 1,000)."""


class CommandError(RusmError):
    """A command the node refused, with a message a person can act on.

    ``kind`` is one of: ``bad_request`` (malformed or missing arguments),
    ``unknown_command``, ``no_such_process``, ``unknown_factory``,
    ``spawn_failed``, ``unsendable`` (the term cannot be sent),
    ``not_connected`` (the node is gone), ``timeout``, ``protected`` (one of
    the node's own processes, which an observer may not kill).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class Subscription:
    """What a client wants to see; every field can be changed at any time."""

    interval: float = 1.0
    """Seconds between samples (0.1 … 60)."""
    detail: bool = True
    """Whether samples carry process rows."""
    sort: str = "mailbox"
    """One of SORT_KEYS."""
    reverse: bool = False
    """Whether to reverse the sort (applied before ``offset`` and ``limit``)."""
    offset: int = 0
    """Rows of the sorted, filtered list to skip (0 … MAX_OFFSET): paging."""
    limit: int = 50
    """Most rows per sample (0 … MAX_LIMIT)."""
    filter: str = ""
    """Case-insensitive substring of a row's pid, label or a name; a leading
    ``!`` negates it (see :func:`matches`)."""

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` after checking every one; raises CommandError."""
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "interval":
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise CommandError("bad_request", "interval must be a number of seconds")
                if not 0.1 <= value <= 60:
                    raise CommandError("bad_request", "interval must be between 0.1 and 60 s")
                checked[key] = float(value)
            elif key in ("detail", "reverse"):
                if not isinstance(value, bool):
                    raise CommandError("bad_request", f"{key} must be true or false")
                checked[key] = value
            elif key == "offset":
                if type(value) is not int or not 0 <= value <= MAX_OFFSET:
                    raise CommandError("bad_request", f"offset must be an int, 0 … {MAX_OFFSET}")
                checked[key] = value
            elif key == "sort":
                if value not in SORT_KEYS:
                    keys = ", ".join(SORT_KEYS)
                    raise CommandError("bad_request", f"cannot sort by {value!r} (keys: {keys})")
                checked[key] = value
            elif key == "limit":
                if type(value) is not int or not 0 <= value <= MAX_LIMIT:
                    raise CommandError("bad_request", f"limit must be an int, 0 … {MAX_LIMIT}")
                checked[key] = value
            elif key == "filter":
                if not isinstance(value, str) or len(value) > 200:
                    raise CommandError("bad_request", "filter must be a string (≤ 200 chars)")
                checked[key] = value
            else:
                raise CommandError("bad_request", f"unknown subscription field {key!r}")
        for key, value in checked.items():
            setattr(self, key, value)


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One process as a sample shows it."""

    pid: str
    """Printed like ``<london.12>``; commands accept it back."""
    label: str | None
    names: tuple[str, ...]
    mailbox: int
    links: int
    monitors: int
    """Monitors this process holds plus monitors held on it."""
    status: str
    """``running``, ``waiting`` (in receive) or ``exiting``; a UI may show a
    row it keeps after its process went as ``exited``."""
    received: int
    sent: int
    age: float
    """Seconds since spawn."""
    cpu_s: float = 0.0
    """Busy time since spawn: seconds its steps held the loop (sampled)."""
    cpu: float = 0.0
    """Percent of one core its steps took over the last sample interval."""
    waiting: str = ""
    """What it waits on: ``receive``, ``call <london.5> 2.3s``, ``sleep 1s``,
    ``await X``, ``running`` (see rusm.actors.diagnose)."""
    memory: int = 0
    """Bytes of its record and mailbox, estimated (``info`` measures closer)."""


def _text(value: str | None) -> tuple[bool, str]:
    return (not value, (value or "").lower())


SORT_FIELDS: dict[str, str] = {
    "mailbox": "mailbox", "received": "received", "sent": "sent", "links": "links",
    "monitors": "monitors", "pid": "pid", "label": "label", "status": "status",
    "names": "names", "age": "age", "cpu": "cpu_s", "memory": "memory",
}
"""Sort key -> the :class:`ProcessRow` field it orders by. The one table of
sort keys: the node, replays and the UIs all use it (the node's heap reads
the same fields from its processes, rusm.actors.census.FIELDS)."""
SORT_KEYS = tuple(SORT_FIELDS)
"""Sort keys of a subscription, in the order ``s`` cycles through them."""
ASCENDING = frozenset({"pid", "label", "status", "names"})
"""Sort keys whose natural order is A to Z (the others, numbers: largest
first; ``age`` oldest first, ``cpu`` most busy time since spawn, as top's
TIME+). Text sorts case-insensitively with empty text last."""


def _order(key: str) -> Callable[[ProcessRow], Any]:
    field = SORT_FIELDS[key]
    if key == "pid":
        return lambda r: _pid_order(r.pid)
    if key == "names":
        return lambda r: _text(", ".join(r.names))
    if key in ASCENDING:
        return lambda r: _text(getattr(r, field))
    return lambda r: -getattr(r, field)


SORTS: dict[str, Callable[[ProcessRow], Any]] = {key: _order(key) for key in SORT_FIELDS}
"""Sort key -> the value it orders rows by, in the key's natural order."""


def contains(needle: str, pid: str, label: str | None, names: Iterable[str]) -> bool:
    """Whether ``needle`` (lower case) is in a process's pid, label or a name,
    case-insensitively: the one row filter (the node's heap uses it too)."""
    return (
        needle in pid.lower()
        or (label is not None and needle in label.lower())
        or any(needle in name.lower() for name in names)
    )


def matches(row: ProcessRow, filter: str) -> bool:
    """Whether ``row`` passes ``filter``: a case-insensitive substring of its
    pid, label or a name; ``!text`` passes the rows that do not contain it."""
    negate = filter.startswith("!")
    needle = (filter[1:] if negate else filter).lower()
    if not needle:
        return True
    return contains(needle, row.pid, row.label, row.names) != negate


def select(
    rows: Iterable[ProcessRow], sub: Subscription, *, ordered: bool = False
) -> tuple[list[ProcessRow], int]:
    """The rows ``sub`` shows, and how many passed its filter: filtered,
    sorted by ``sub.sort`` (ties in pid order), reversed if asked (ties stay
    in pid order), then the ``sub.limit`` rows from ``sub.offset`` on.
    Reversal comes before the cap, so a reversed sort shows the last of all
    rows, not of the first N. ``ordered``: the rows already are in ``sub``'s
    order (as a node sent them), keep it."""
    passed = [r for r in rows if matches(r, sub.filter)] if sub.filter else list(rows)
    if not ordered:
        passed.sort(key=lambda r: _pid_order(r.pid))
        passed.sort(key=SORTS[sub.sort], reverse=sub.reverse)
    return passed[sub.offset : sub.offset + sub.limit], len(passed)


@dataclass(frozen=True, slots=True)
class Totals:
    msgs_in_per_s: float
    """Messages delivered into mailboxes per second."""
    msgs_out_per_s: float
    """Messages taken out of mailboxes per second (delivered minus the
    growth of the total mailbox depth; never below 0)."""
    dead_letters_per_s: float
    mailbox: int
    """Messages waiting in all mailboxes."""
    messages: int
    """Messages delivered since the node started."""
    dead_letters: int
    spawned: int
    exited: int
    loop_lag_ms: float = 0.0
    """The worst event-loop lag over the last interval: how late timers fired."""
    blocked_steps: int = 0
    """Steps that held the loop longer than the threshold, since the meter started."""
    last_blocked: str = ""
    """The last of them, for people: ``312 ms  blocker <london.40> (stuck.py:74)``."""
    deadlocked: int = 0
    """Processes on a cycle of calls."""


@dataclass(frozen=True, slots=True)
class History:
    """The node's recent past, sent with the first sample after subscribing
    so charts draw at once. Oldest first, one point per ``step`` seconds."""

    step: float
    processes: tuple[int, ...]
    mailbox: tuple[int, ...]
    rows: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Mailbox depth of each process the sample shows, by pid."""
    lag: tuple[float, ...] = ()
    """The worst loop lag of each step, in milliseconds."""


@dataclass(frozen=True, slots=True)
class Sample:
    node: str
    seq: int
    """Per subscription, from 1."""
    time: float
    """The node's wall clock (``time.time()``)."""
    uptime: float
    processes: int
    totals: Totals
    nodes: tuple[str, ...]
    detail: bool
    sort: str
    rows: tuple[ProcessRow, ...]
    matched: int
    """Processes that pass the filter (all of them without one)."""
    omitted: int
    """Matched processes not shown (before ``offset`` or past the limit)."""
    history: History | None = None
    reverse: bool = False
    offset: int = 0
    """Position of the first row among the ``matched`` (paging)."""
    exited: tuple[str, ...] = ()
    """Pids of the previous sample's rows whose processes have exited since
    (a row that is missing but not here only left the window)."""

    def to_wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["t"] = "sample"
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Sample:
        try:
            h = d.get("history")
            history = None
            if h is not None:
                history = History(
                    step=float(h["step"]),
                    processes=tuple(h["processes"]),
                    mailbox=tuple(h["mailbox"]),
                    rows={str(k): tuple(v) for k, v in h["rows"].items()},
                    lag=tuple(h.get("lag", ())),
                )
            return cls(
                node=str(d["node"]),
                seq=int(d["seq"]),
                time=float(d["time"]),
                uptime=float(d["uptime"]),
                processes=int(d["processes"]),
                totals=Totals(**d["totals"]),
                nodes=tuple(d["nodes"]),
                detail=bool(d["detail"]),
                sort=str(d["sort"]),
                rows=tuple(
                    ProcessRow(**{**r, "names": tuple(r["names"])}) for r in d["rows"]
                ),
                matched=int(d["matched"]),
                omitted=int(d["omitted"]),
                history=history,
                reverse=bool(d.get("reverse", False)),
                offset=int(d.get("offset", 0)),
                exited=tuple(str(p) for p in d.get("exited", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CommandError("bad_request", f"malformed sample: {e}") from e


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """A change in a feed's connection, yielded between samples."""

    state: Literal["connecting", "connected", "disconnected", "closed"]
    message: str = ""
    """For people: why it disconnected, when it retries..."""


class Feed(Protocol):
    """What an observer UI consumes: a live client (WebSocket or QUIC) or a
    recorded feed. Iterating yields samples and status changes until closed.
    """

    target: str
    """What the feed is attached to, for display (``london`` or ``london@host:port``)."""
    subscription: Subscription

    def __aiter__(self) -> AsyncIterator[Sample | FeedStatus]: ...

    async def subscribe(self, **changes: Any) -> None:
        """Change the subscription (interval, detail, sort, reverse, offset, limit, filter)."""

    async def command(self, cmd: str, **args: Any) -> Any:
        """Run one command on the node; raises CommandError with its message."""

    async def close(self) -> None: ...


def encode(message: dict[str, Any]) -> bytes:
    """One protocol message as bytes (raises UnsendableTerm for a non-term)."""
    return encode_term(message)


def decode(data: bytes) -> dict[str, Any]:
    """One protocol message from untrusted bytes; raises CommandError."""
    try:
        message = decode_term(data)
    except RusmError as e:
        raise CommandError("bad_request", f"undecodable message: {e}") from e
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise CommandError("bad_request", "a message must be a map with a string 't'")
    return message
