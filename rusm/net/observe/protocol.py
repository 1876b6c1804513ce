"""The observe protocol's data: samples, rows, history, commands and errors.

Pure data and codec (no I/O). The server (``server.py``, ``session.py``)
makes these, the client (``client.py``) decodes them, and the observer UIs
(``rusm attach``, ``rusm top``) consume them without knowing the transport.
Every message is one msgpack map encoded with the cluster's term codec
(:mod:`rusm.net.terms`), so a term in a command may hold pids and tuples.
Specified in docs/PROTOCOL.md, "Observe channel".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from rusm.actors.errors import RusmError
from rusm.net.terms import decode_term, encode_term

__all__ = [
    "COMMANDS",
    "MUTATING",
    "OBSERVE_VERSION",
    "SORT_KEYS",
    "CommandError",
    "Feed",
    "FeedStatus",
    "History",
    "ProcessRow",
    "Sample",
    "Subscription",
    "Totals",
    "decode",
    "encode",
]

OBSERVE_VERSION = 1

SORT_KEYS = ("mailbox", "received", "sent", "links", "monitors", "pid", "label", "age")
"""Sort keys of a subscription. Numeric keys sort largest first; ``pid``
and ``label`` sort ascending; ``age`` puts the oldest process first."""

COMMANDS = ("subscribe", "detail", "send", "spawn", "kill", "exit", "info", "nodes", "names")
"""Commands a client may send (see docs/PROTOCOL.md for their arguments)."""

MUTATING = frozenset({"send", "spawn", "kill", "exit"})
"""Commands that change the node: UIs ask before them and audit them."""

MAX_LIMIT = 1000
"""The most process rows one sample carries."""


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
    limit: int = 50
    """Most rows per sample (0 … MAX_LIMIT)."""
    filter: str = ""
    """Case-insensitive substring of a row's pid, label or a name."""

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
            elif key == "detail":
                if not isinstance(value, bool):
                    raise CommandError("bad_request", "detail must be true or false")
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
    """``running``, ``waiting`` (in receive) or ``exiting``."""
    received: int
    sent: int
    age: float
    """Seconds since spawn."""


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


@dataclass(frozen=True, slots=True)
class History:
    """The node's recent past, sent with the first sample after subscribing
    so charts draw at once. Oldest first, one point per ``step`` seconds."""

    step: float
    processes: tuple[int, ...]
    mailbox: tuple[int, ...]
    rows: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Mailbox depth of each process the sample shows, by pid."""


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
    """Matched processes not shown because of the row limit."""
    history: History | None = None

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
        """Change the subscription (interval, detail, sort, limit, filter)."""

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
