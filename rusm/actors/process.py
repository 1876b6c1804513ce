"""The process context: the ``proc`` every process body receives.

A body is ``async def body(proc, *args)``. Everything a process does to the
world goes through ``proc``: ``receive``, ``send``, ``link``, ``monitor``,
``call``, ``spawn``... The runtime keeps the bookkeeping; this class keeps a
process's own state in ``__slots__`` so that an idle process stays small.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from itertools import islice
from typing import TYPE_CHECKING, Any

from .errors import CallFailed, NoProc, Timeout
from .messages import KILL, NOPROC, Call, Down, Reply
from .pid import Pid, Ref
from .remote import RemoteDest

if TYPE_CHECKING:
    from .runtime import Runtime
    from .trace import Trace

__all__ = ["UNPUBLISHED", "Match", "Process"]

UNPUBLISHED: Any = type("Unpublished", (), {"__repr__": lambda self: "UNPUBLISHED"})()
"""What :attr:`Process.published_state` is until the process publishes one."""

Match = Callable[[Any], bool] | type | tuple[type, ...]
"""A selective-receive filter: a predicate, or a type / tuple of types."""


def _predicate(match: Match) -> Callable[[Any], bool]:
    if isinstance(match, type | tuple):
        types = match
        return lambda m: isinstance(m, types)
    return match


class Process:
    """The context of one process. Only its own body should use it."""

    __slots__ = (
        "_calls",
        "_dead",
        "_links",
        "_mailbox",
        "_monitored_by",
        "_monitors",
        "_names",
        "_received",
        "_rt",
        "_sent",
        "_state",
        "_task",
        "_ticks",
        "_timed_out",
        "_trace",
        "_trap",
        "_waiter",
        "body",
        "label",
        "old_code",
        "pid",
        "spawned_at",
    )

    def __init__(self, rt: Runtime, pid: Pid, label: str | None, spawned_at: float) -> None:
        self._rt = rt
        self.pid = pid
        self.label = label
        self.spawned_at = spawned_at
        self.body: Any = None
        """The function the process runs (what a reload checks against)."""
        self.old_code = False
        """Set by a reload of the module its body came from (rusm.actors.reload)."""
        self._task: asyncio.Task[None] | None = None
        self._mailbox: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None
        # Local peers are Process objects; peers on other nodes are Pids
        # (or a (name, node) tuple for a monitor by remote name).
        # Insertion-ordered (a dict as an ordered set): exit signals go out
        # in the order the links were made, the same on every run.
        self._links: dict[Process | Pid, None] | None = None
        self._monitors: dict[Ref, Process | RemoteDest] | None = None
        self._monitored_by: dict[Ref, Process | Pid] | None = None
        self._names: list[str] | None = None
        self._calls: set[Ref] | None = None
        self._trap = False
        self._dead = False
        self._timed_out = False
        self._received = 0
        self._sent = 0
        self._state: Any = UNPUBLISHED
        self._ticks = 0  # stack samples that found its step running (rusm.actors.meter)
        self._trace: Trace | None = None  # a live trace of its messages (rusm.actors.trace)

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.label or ''}>"

    @property
    def runtime(self) -> Runtime:
        return self._rt

    def publish_state(self, state: Any) -> None:
        """Show ``state`` to the observer as this process's state (what
        ``sys:get_state`` answers on the BEAM): ``rusm info`` and the process
        view print it with a bounded repr. Call it again when the state
        changes; it costs one assignment. A GenServer publishes its own."""
        self._state = state

    @property
    def published_state(self) -> Any:
        """The last state :meth:`publish_state` was given, or ``UNPUBLISHED``."""
        return self._state

    # -- receiving ---------------------------------------------------------

    async def receive(self, timeout: float | None = None, match: Match | None = None) -> Any:
        """Take the oldest message (or the oldest that ``match`` accepts).

        Messages that don't match stay in the mailbox, in order, and are not
        tested again while it waits. With a ``timeout`` (seconds; 0 means
        "only what is there now") and nothing to take by then, raises
        :class:`Timeout`.
        """
        # One coroutine, fast path and wait loop together: every coroutine
        # frame an idle process holds costs ~300 bytes.
        mb = self._mailbox
        pred = None if match is None else _predicate(match)
        scanned = 0
        if mb:
            if pred is None:
                return mb.popleft()
            for i, m in enumerate(mb):
                if pred(m):
                    del mb[i]
                    return m
            scanned = len(mb)
        if self._dead:
            raise asyncio.CancelledError
        if self._waiter is not None:
            raise RuntimeError(f"{self.pid}: receive is already waiting (one receive at a time)")
        if timeout is not None and timeout <= 0:
            raise Timeout(f"{self.pid}: no matching message")
        loop = self._rt._loop
        assert loop is not None
        handle = None
        if timeout is not None:
            self._timed_out = False
            handle = loop.call_later(timeout, self._on_timeout)
        try:
            while True:
                fut = loop.create_future()
                self._waiter = fut
                try:
                    await fut
                finally:
                    self._waiter = None
                mb = self._mailbox
                if mb:
                    if pred is None:
                        return mb.popleft()
                    for i, m in enumerate(islice(mb, scanned, None), scanned):
                        if pred(m):
                            del mb[i]
                            return m
                    scanned = len(mb)
                if self._timed_out:
                    raise Timeout(f"{self.pid}: no matching message within {timeout} s")
        finally:
            if handle is not None:
                handle.cancel()

    def _on_timeout(self) -> None:
        self._timed_out = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- sending and calling -----------------------------------------------

    def send(self, dest: Pid | str | tuple[str, str], msg: Any) -> None:
        """Send ``msg`` to a pid, a registered name, or ``(name, node)``. Never
        blocks; a message to nobody is dropped and counted as a dead letter."""
        if self._dead:
            self._rt.dead_letters += 1
            return
        self._sent += 1
        if self._trace is not None:
            self._trace.message("out", dest, msg)
        self._rt._send(self.pid, dest, msg)

    async def call(
        self, dest: Pid | str | tuple[str, str], request: Any, timeout: float = 5.0
    ) -> Any:
        """Send ``Call(request)`` to ``dest`` and wait for its reply.

        Raises :class:`NoProc` if ``dest`` does not exist, :class:`CallFailed`
        if it exits before replying, :class:`Timeout` after ``timeout`` s (a
        reply that comes later is dropped).
        """
        loop = self._rt._loop
        since = loop.time() if loop is not None else 0.0  # noqa: F841 (diagnose reads it)
        ref = self._rt._monitor(self, dest, by_call=True)
        calls = self._calls
        if calls is None:
            calls = self._calls = set()
        calls.add(ref)
        self._rt._calling.add(self)
        try:
            self.send(dest, Call(self.pid, ref, request, self._rt))
        except BaseException:  # not sent (a term that cannot cross): take the monitor back
            calls.discard(ref)
            if not calls:
                self._rt._calling.discard(self)
            self._end_monitor(ref, True)
            raise

        def is_answer(m: Any) -> bool:
            return (m.__class__ is Reply or m.__class__ is Down) and m.ref == ref

        try:
            answer = await self.receive(timeout, is_answer)
        except BaseException:
            calls.discard(ref)
            if not calls:
                self._rt._calling.discard(self)
            self._end_monitor(ref, True)
            raise
        calls.discard(ref)
        if not calls:
            self._rt._calling.discard(self)
        self._end_monitor(ref, True, answered=answer.__class__ is Reply)
        if answer.__class__ is Down:
            if answer.reason == NOPROC:
                raise NoProc(dest)
            raise CallFailed(dest, answer.reason)
        return answer.value

    # -- links, monitors, exits --------------------------------------------

    def link(self, pid: Pid) -> None:
        """Link to ``pid`` both ways. A dead target sends us an exit signal
        with reason ``noproc``."""
        self._rt._link(self, pid)

    def unlink(self, pid: Pid) -> None:
        self._rt._unlink(self, pid)

    def monitor(self, target: Pid | str | tuple[str, str]) -> Ref:
        """Monitor a pid or name: one ``Down(ref, target, reason)`` arrives when
        it exits, at once with ``noproc`` if it is not alive."""
        return self._rt._monitor(self, target)

    def demonitor(self, ref: Ref, flush: bool = False) -> None:
        """Cancel a monitor; with ``flush``, also drop its ``Down`` if it came."""
        self._end_monitor(ref, flush)

    def _end_monitor(self, ref: Ref, flush: bool, answered: bool = False) -> None:
        self._rt._demonitor(self, ref, answered)
        if flush and self._mailbox:
            for i, m in enumerate(self._mailbox):
                if m.__class__ is Down and m.ref == ref:
                    del self._mailbox[i]
                    break

    @property
    def trap_exits(self) -> bool:
        """When True, exit signals from links arrive as ``Exit`` messages
        instead of killing this process (except ``kill``)."""
        return self._trap

    @trap_exits.setter
    def trap_exits(self, value: bool) -> None:
        self._trap = bool(value)

    def exit(self, pid: Pid, reason: Any) -> None:
        """Send an exit signal to ``pid`` (Erlang's ``exit/2``); ``kill``
        cannot be trapped. To end this process, raise ``ProcessExit(reason)``."""
        if self._dead:  # an exited process unwinding sends no more signals
            return
        self._rt._signal_pid(pid, self.pid, reason)

    def kill(self, pid: Pid) -> None:
        self.exit(pid, KILL)

    # -- names and children ------------------------------------------------

    def register(self, name: str) -> None:
        self._rt.register(name, self.pid)

    def spawn(self, body: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
              label: str | None = None) -> Pid:
        return self._rt.spawn(body, *args, label=label)

    def spawn_link(self, body: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
                   label: str | None = None) -> Pid:
        """Spawn and link in one step: the child cannot exit unlinked."""
        return self._rt._spawn(body, args, label, self).pid
