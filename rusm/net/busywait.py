"""Busy-waiting: the event loop keeps polling for a moment after a send.

A datagram sent to a process asleep in ``epoll_wait`` costs the sender the
wake-up: on the 2-core VM of docs/PROTOCOL.md ("Busy-waiting:
measurements"), ``sendto`` took 25-28 us against a sleeping peer and about
5 us against one that was awake, and the sleeper is late to start running. An answer
usually comes back within a few hundred microseconds, so after each send a
node keeps its loop turning (a ``call_soon`` callback that re-schedules
itself, so each turn polls with a zero timeout) until ``seconds`` have passed
since the last send. Erlang's schedulers do the same (``+sbwt``).

Each spinning turn calls ``sched_yield``, a hint to the OS scheduler that a
process with real work on the same CPU may go first. An idle node does not
spin: only sends start it. ``seconds`` 0 turns it off.
"""

from __future__ import annotations

import asyncio
import os
import time

__all__ = ["DEFAULT_BUSY_WAIT", "MAX_BUSY_WAIT", "BusyWait", "check_busy_wait"]

DEFAULT_BUSY_WAIT = 0.0005
"""A node's busy-wait unless configured (seconds): see docs/OPERATIONS.md."""
MAX_BUSY_WAIT = 0.01
"""The longest busy-wait a node accepts (seconds)."""

_yield = getattr(os, "sched_yield", lambda: None)
_now = time.perf_counter


def check_busy_wait(seconds: float) -> None:
    """Raise ValueError unless ``seconds`` is a busy-wait a node accepts."""
    if not 0 <= seconds <= MAX_BUSY_WAIT:
        raise ValueError(f"busy_wait must be 0 .. {MAX_BUSY_WAIT} s, got {seconds!r}")


class BusyWait:
    """Keeps one event loop polling for ``seconds`` after each :meth:`poke`.

    It keeps time with ``time.perf_counter``: uvloop's ``loop.time()`` moves
    in 1 ms steps, which would stretch 500 us to anything up to a millisecond.
    """

    def __init__(self, seconds: float) -> None:
        check_busy_wait(seconds)
        self.seconds = seconds
        self.pokes = 0
        """Sends that asked for it so far."""
        self.turns = 0
        """Loop turns spent polling so far."""
        self._until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.Handle | None = None
        self._closed = False
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def active(self) -> bool:
        """Whether the loop is being kept awake now."""
        return self._handle is not None

    def poke(self, loop: asyncio.AbstractEventLoop) -> None:
        """Something was sent: keep ``loop`` polling for ``seconds`` from now."""
        if not self.seconds or self._closed or loop.is_closed():
            return
        self.pokes += 1
        self._until = _now() + self.seconds
        if self._handle is not None and self._loop is not loop:
            self._handle.cancel()  # a node moved to another loop: follow it
            self._stopped()
        if self._handle is None:
            self._loop = loop
            self._handle = loop.call_soon(self._spin)

    def _spin(self) -> None:
        loop = self._loop
        assert loop is not None
        self.turns += 1
        if _now() < self._until:
            self._handle = loop.call_soon(self._spin)
            _yield()
        else:
            self._stopped()

    def _stopped(self) -> None:
        self._handle = None
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done() and not fut.get_loop().is_closed():
                fut.set_result(None)

    async def wait_stopped(self) -> None:
        """Return once the loop is no longer kept awake."""
        loop = asyncio.get_running_loop()
        if self._handle is None or self._loop is not loop:
            return
        fut = loop.create_future()
        self._waiters.append(fut)
        await fut

    def close(self) -> None:
        """Stop now, and for good."""
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._stopped()
