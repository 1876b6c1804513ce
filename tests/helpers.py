"""Test helpers: probes that forward what they receive, so tests wait on events."""

from __future__ import annotations

import asyncio
from typing import Any

from rusm.actors import Process, Runtime
from rusm.actors.pid import Pid

EVENT_TIMEOUT = 5.0
"""How long a test waits for an event it expects before failing."""


class Probe:
    """A test process that forwards every message it receives to the test."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.started = asyncio.Event()
        self.proc: Process
        self.pid: Pid

    async def body(self, proc: Process, trap: bool) -> None:
        proc.trap_exits = trap
        self.proc = proc
        self.started.set()
        while True:
            self.inbox.put_nowait(await proc.receive())

    async def next(self) -> Any:
        """The next message the probe received (fails after EVENT_TIMEOUT)."""
        return await asyncio.wait_for(self.inbox.get(), EVENT_TIMEOUT)

    async def nothing_more(self) -> None:
        """Assert nothing else was delivered: a marker sent now must come next.

        Deliveries are synchronous, so anything already due is ahead of it."""
        marker = ("marker", id(self))
        self.proc.runtime.send(self.pid, marker)
        assert await self.next() == marker


async def probe(rt: Runtime, trap: bool = False) -> Probe:
    p = Probe()
    p.pid = rt.spawn(p.body, trap, label="probe")
    await asyncio.wait_for(p.started.wait(), EVENT_TIMEOUT)
    return p


async def spawn_and_wait(rt: Runtime, body: Any, *args: Any) -> Any:
    """Spawn ``body``, monitored from before its first step; return its exit reason."""
    watcher = await probe(rt)
    pid = rt.spawn(body, *args)
    ref = watcher.proc.monitor(pid)
    down = await watcher.next()
    assert down.ref == ref and down.pid == pid
    rt.kill(watcher.pid)
    return down.reason


async def idle(proc: Process) -> None:
    """A body that waits forever and ignores what it receives."""
    while True:
        await proc.receive()


async def until(condition: Any, what: str = "condition") -> None:
    """Yield to the event loop until ``condition()`` holds (fails after EVENT_TIMEOUT).

    For states that have no event of their own, such as "blocked in receive".
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EVENT_TIMEOUT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0)


def waiting(rt: Runtime, *pids: Pid) -> Any:
    """A condition: every pid is blocked in ``receive``."""
    def check() -> bool:
        infos = [rt.process_info(p) for p in pids]
        return all(i is not None and i.status == "waiting" for i in infos)
    return check
