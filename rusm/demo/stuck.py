"""Spawnable scenarios that give "why is it stuck?" something real to show.

``spawn deadlock``
    Two processes, ``deadlock.a`` and ``deadlock.b``, each calling the other:
    neither can answer. The table says ``call <london.N> 12.0s`` on both, the
    header and the process view flag the deadlock. Kill either to end it.
``spawn backlog [EVERY]``
    ``backlog`` waits on a warehouse that never answers while orders
    ``("order", N, "sku-…")`` pile up in its mailbox (one every EVERY
    seconds, default 0.2, at most 5,000): ``info backlog`` shows the first
    ones and the state it published.
``spawn blocker [EVERY [MS]]``
    ``blocker`` blocks the whole event loop for MS milliseconds (default
    300) every EVERY seconds (default 5) with a synchronous ``time.sleep``:
    the mistake that stalls every process of a Python node.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rusm.actors import Pid, Process, Timeout

__all__ = ["BACKLOG_MAX", "backlog", "blocker", "deadlock"]

BACKLOG_MAX = 5_000
"""The most orders ``backlog``'s feeder sends."""


async def _after_you(proc: Process) -> None:
    other = await proc.receive()
    await proc.call(other, "after you", timeout=24 * 3600.0)


async def deadlock(proc: Process) -> None:
    """This process (``deadlock.a``) and a linked ``deadlock.b`` call each
    other; each waits for the other's answer."""
    proc.label = "deadlock.a"
    b: Pid = proc.spawn_link(_after_you, label="deadlock.b")
    proc.send(b, proc.pid)
    await proc.call(b, "after you", timeout=24 * 3600.0)


async def _orders(proc: Process, dest: Pid, every: float) -> None:
    for n in range(1, BACKLOG_MAX + 1):
        proc.send(dest, ("order", n, f"sku-{1000 + n % 97}"))
        await asyncio.sleep(every)


async def backlog(proc: Process, every: float = 0.2) -> None:
    """Waits on a warehouse that never answers, orders piling up meanwhile."""
    if not isinstance(every, int | float) or not 0.001 <= every <= 60:
        raise ValueError(f"backlog: EVERY is seconds from 0.001 to 60, not {every!r}")
    proc.publish_state({"waiting_for": "warehouse", "since": time.time(), "taken": 0})
    proc.spawn_link(_orders, proc.pid, float(every), label="backlog.orders")
    warehouse: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    await warehouse  # never set


async def blocker(proc: Process, every: float = 5.0, ms: int = 300) -> None:
    """Blocks the event loop for ``ms`` milliseconds every ``every`` seconds."""
    if not isinstance(every, int | float) or not 0.1 <= every <= 3600:
        raise ValueError(f"blocker: EVERY is seconds from 0.1 to 3600, not {every!r}")
    if not isinstance(ms, int) or not 1 <= ms <= 5000:
        raise ValueError(f"blocker: MS is milliseconds from 1 to 5000, not {ms!r}")
    while True:
        try:
            await proc.receive(timeout=every)
        except Timeout:  # time to block
            time.sleep(ms / 1000)  # noqa: ASYNC251 - the bug on purpose
