"""Why is it stuck: where a process waits, on whom, and what its mailbox holds.

Python keeps every suspended coroutine's frame and what it awaits
(``cr_await``), so a process's await chain can be read while it waits, from
outside, at no cost to the process until someone asks. This module reads it;
the runtime (``Runtime.diagnose``) hands it the parts of a process.

- :func:`where`: the await chain, innermost frame first (``where[0]`` is the
  current await point, as in the BEAM's ``current_stacktrace``);
- :func:`wait_of`: what the process waits on, as the observer's table says
  it: ``receive``, ``receive (match Down)``, ``call <london.5> 2.3s``,
  ``sleep 1.0s``, ``await <awaitable>`` or ``running``;
- :func:`deadlocks`: the processes on a cycle of calls;
- :func:`bounded_repr`: a repr that huge, deep or self-referencing terms
  cannot stall (mailbox peeks and states).
"""

from __future__ import annotations

import asyncio
import reprlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from .info import ProcessInfo
from .pid import Pid, Ref

__all__ = [
    "REPR_CHARS", "Diagnosis", "Frame", "Wait", "bounded_repr", "deadlocks",
    "memory_estimate", "peek", "wait_of", "where",
]

MAX_FRAMES = 64
"""The deepest await chain read (a chain deeper than this is cut)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of an await chain."""

    function: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.function} ({self.file}:{self.line})"


@dataclass(frozen=True, slots=True)
class Wait:
    """What a process waits on."""

    kind: str
    """``receive``, ``call``, ``sleep``, ``await``, ``running`` or ``exited``."""
    text: str
    """As the observer shows it: ``call <london.5> 2.3s``."""
    target: Any = None
    """A call's destination (a Pid, a name or ``(name, node)``)."""
    seconds: float | None = None
    """How long a call has waited, or how long a sleep sleeps."""


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Everything ``Runtime.diagnose`` knows about one process."""

    info: ProcessInfo
    where: list[Frame]
    """The await chain, innermost frame (the current await point) first."""
    wait: Wait
    waited_by: tuple[Pid, ...]
    """Processes of this node blocked in a call to this one."""
    deadlocked: bool
    """It is on a cycle of calls (A calls B, B calls A)."""
    messages: list[str]
    """The first messages of its mailbox, each a bounded repr."""
    state: str | None
    """Its published state (``Process.publish_state``), a bounded repr; None
    if it published none."""
    memory_bytes: int
    """An estimate: the process record, its mailbox and each message's own
    size (not what the messages refer to)."""


def _chain(task: asyncio.Task[Any] | None) -> tuple[list[FrameType], Any]:
    """The frames of a task's await chain, outermost first, and the awaitable
    at its end (a Future, a Task...), or None."""
    if task is None:
        return [], None
    frames: list[FrameType] = []
    obj: Any = task.get_coro()
    while obj is not None and len(frames) < MAX_FRAMES:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None:
            return frames, obj
        frames.append(frame)
        obj = getattr(obj, "cr_await", None) if hasattr(obj, "cr_await") else (
            getattr(obj, "gi_yieldfrom", None))
    return frames, obj


def where(task: asyncio.Task[Any] | None, skip: tuple[Any, ...] = ()) -> list[Frame]:
    """The await chain of a process's task, innermost frame first, without
    the frames of the code objects in ``skip`` (the runtime's own wrapper);
    empty for a task that finished (or has not started)."""
    frames, _ = _chain(task)
    return [
        Frame(f.f_code.co_qualname, f.f_code.co_filename, f.f_lineno or 0)
        for f in reversed(frames)
        if f.f_code not in skip
    ]


def _match_text(match: Any) -> str:
    if match is None:
        return "receive"
    if isinstance(match, type):
        return f"receive (match {match.__name__})"
    if isinstance(match, tuple):
        return "receive (match " + " | ".join(getattr(t, "__name__", "?") for t in match) + ")"
    name = getattr(match, "__qualname__", None) or type(match).__name__
    return f"receive (match {name})"


def _dest_text(dest: Any) -> str:
    if isinstance(dest, tuple) and len(dest) == 2:
        return f"{dest[0]}@{dest[1]}"
    return str(dest)


def _runnable(task: asyncio.Task[Any]) -> bool:
    """Whether a suspended task is ready to run: what it awaited is done (it
    was woken) or it yielded bare (``sleep(0)``), so it waits only for its
    turn. asyncio keeps the future a task is blocked on in ``_fut_waiter``
    (C and Python tasks alike); tests/test_diagnose.py fails if that goes."""
    waiter: Any = getattr(task, "_fut_waiter", False)
    return waiter is None or (waiter is not False and bool(waiter.done()))


def wait_of(
    task: asyncio.Task[Any] | None,
    receive_code: Any,
    call_code: Any,
    now: float,
    skip: tuple[Any, ...] = (),
) -> Wait:
    """What the process running ``task`` waits on. ``receive_code`` and
    ``call_code`` are the code objects of ``Process.receive`` and
    ``Process.call``; ``now`` is the loop's time (a call's ``since``);
    ``skip`` the code objects of the runtime's own wrapper frames."""
    if task is None or task.done():
        return Wait("exited", "exited")
    frames, end = _chain(task)
    if not frames or asyncio.current_task() is task or _runnable(task):
        return Wait("running", "running")
    for i in range(len(frames) - 1, -1, -1):
        f = frames[i]
        if f.f_code is receive_code:
            outer = frames[i - 1] if i else None
            if outer is not None and outer.f_code is call_code:
                local = outer.f_locals
                dest, since = local.get("dest"), local.get("since")
                waited = None if since is None else max(0.0, now - since)
                text = f"call {_dest_text(dest)}" + ("" if waited is None else f" {waited:.1f}s")
                return Wait("call", text, dest, waited)
            return Wait("receive", _match_text(f.f_locals.get("match")))
        if f.f_code is asyncio.sleep.__code__:
            delay = f.f_locals.get("delay")
            if isinstance(delay, int | float):
                return Wait("sleep", f"sleep {delay:g}s", seconds=float(delay))
            return Wait("sleep", "sleep")
    inner = frames[-1]
    if sum(f.f_code not in skip for f in frames) > 1:  # awaits a library coroutine
        return Wait("await", f"await {inner.f_code.co_qualname}")
    if end is None:
        return Wait("await", "await")
    name = type(end).__name__
    return Wait("await", "await Future" if name == "FutureIter" else f"await {name}")


def deadlocks(calls: Mapping[Any, Any]) -> set[Any]:
    """The keys on a cycle of ``calls`` (caller -> callee): A calls B and B
    calls A, or longer rings. Callees that are not callers end a path."""
    on_cycle: set[Any] = set()
    done: set[Any] = set()
    for start in calls:
        if start in done:
            continue
        path: list[Any] = []
        seen: dict[Any, int] = {}
        node = start
        while node in calls and node not in done and node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = calls[node]
        if node in seen:  # this walk closed a ring
            on_cycle.update(path[seen[node]:])
        done.update(path)
    return on_cycle


class _Repr(reprlib.Repr):
    """reprlib's bounds, with pids and refs written as the observer shows
    them (``<london.5>``), not as the constructor calls ``repr`` gives."""

    def repr_Pid(self, obj: Pid, level: int) -> str:
        return str(obj)

    def repr_Ref(self, obj: Ref, level: int) -> str:
        return str(obj)


_REPR = _Repr()  # keyword arguments only from Python 3.12
(_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset,
 _REPR.maxfrozenset, _REPR.maxdeque, _REPR.maxarray, _REPR.maxstring, _REPR.maxother,
 _REPR.maxlong) = (4, 12, 12, 12, 12, 12, 12, 12, 80, 80, 40)

REPR_CHARS = 600
"""The most characters :func:`bounded_repr` returns."""


def bounded_repr(value: Any, chars: int = REPR_CHARS) -> str:
    """``repr`` bounded in depth (4), width (12 items) and length (``chars``):
    a self-referencing, huge or deep term comes back short and at once, and a
    ``__repr__`` that raises is named, not raised."""
    try:
        text = _REPR.repr(value)
    except Exception as e:
        text = f"<{type(value).__name__} whose repr raised {type(e).__name__}>"
    return text if len(text) <= chars else text[: chars - 1] + "…"


ROW_MEASURED = 8
"""Messages measured per mailbox for a process's row (its MEM, its sort)."""


def memory_estimate(record: Any, mailbox: Any, measured: int = 1000) -> int:
    """Bytes of a process record and its mailbox, the messages counted by
    their own (shallow) size; a mailbox longer than ``measured`` is measured
    on its first ``measured`` messages and extrapolated (``info`` measures
    1,000; the table's MEM column and sort key 8, to stay cheap)."""
    size = sys.getsizeof(record)
    if mailbox:
        size += sys.getsizeof(mailbox)
        n = len(mailbox)
        sample = 0
        for i, m in enumerate(mailbox):
            if i >= measured:
                break
            sample += sys.getsizeof(m)
        size += sample if n <= measured else sample * n // measured
    return size


def peek(mailbox: Iterable[Any] | None, count: int) -> list[str]:
    """The first ``count`` messages of a mailbox, each a :func:`bounded_repr`."""
    out: list[str] = []
    if mailbox and count > 0:
        for m in mailbox:
            out.append(bounded_repr(m, 200))
            if len(out) >= count:
                break
    return out
