"""Messages the runtime itself puts in mailboxes, and the standard exit reasons.

Events are small immutable classes; match on them::

    match await proc.receive():
        case Call() as c: c.reply(...)
        case Exit(pid=p, reason=r): ...
        case Down(ref=ref, reason=r): ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .pid import Pid, Ref

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = [
    "KILL",
    "KILLED",
    "NOCONNECTION",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "Call",
    "Down",
    "Exit",
    "is_normal",
]

NORMAL = "normal"
"""A process returned from its body."""
SHUTDOWN = "shutdown"
"""A supervisor or the runtime stopped the process on purpose."""
KILL = "kill"
"""An exit signal that cannot be trapped; the target dies with :data:`KILLED`."""
KILLED = "killed"
NOPROC = "noproc"
"""The target of a link, monitor or call did not exist."""
NOCONNECTION = "noconnection"
"""The node of a linked or monitored process went down."""


def is_normal(reason: Any) -> bool:
    """True for reasons a supervisor treats as a clean exit (normal, shutdown)."""
    return reason.__class__ is str and reason in (NORMAL, SHUTDOWN)


@dataclass(frozen=True, slots=True)
class Exit:
    """A trapped exit signal: the linked process ``pid`` exited with ``reason``."""

    pid: Pid
    reason: Any


@dataclass(frozen=True, slots=True)
class Down:
    """A monitor fired: ``pid`` (or the name monitored) exited with ``reason``."""

    ref: Ref
    pid: Pid | str | tuple[str, str]
    reason: Any


class Call:
    """A request from ``caller`` that expects one reply: answer with ``reply``.

    ``ref`` identifies the call; a reply that arrives after the caller gave up
    is dropped (and counted as a dead letter), never left in its mailbox.
    """

    __slots__ = ("_replier", "_runtime", "caller", "ref", "request")

    def __init__(
        self, caller: Pid, ref: Ref, request: Any, runtime: Runtime, replier: Pid | None = None
    ) -> None:
        self.caller = caller
        self.ref = ref
        self.request = request
        self._runtime = runtime
        self._replier = replier  # the callee, for a call that came from another node

    def reply(self, value: Any) -> None:
        """Send ``value`` back to the caller. Never raises; never blocks."""
        self._runtime._reply(self.caller, self.ref, value, self._replier)

    __match_args__ = ("caller", "ref", "request")

    def __repr__(self) -> str:
        return f"Call(caller={self.caller}, ref={self.ref!r}, request={self.request!r})"


class Reply:
    """Internal: the answer to a :class:`Call`, matched by the caller on ``ref``."""

    __slots__ = ("ref", "value")

    def __init__(self, ref: Ref, value: Any) -> None:
        self.ref = ref
        self.value = value
