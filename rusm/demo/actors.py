"""``rusm demo --actors``: a small supervised workload that says what it does.

A supervisor runs a bursty producer, a slow consumer and a flaky worker that
crashes every few jobs; the supervisor restarts it, and a watcher reports each
crash and restart. Four times a second a reporter prints the runtime's counters
and the consumer's mailbox depth, which rises with each burst and drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rusm.actors import NOPROC, ChildSpec, Down, Pid, Process, Runtime, Supervisor

__all__ = ["run"]


async def producer(proc: Process, burst: int) -> None:
    n = 0
    while True:
        for _ in range(burst):
            n += 1
            proc.send("consumer", ("job", n))
            proc.send("flaky", ("job", n))
        await asyncio.sleep(1.0)


async def consumer(proc: Process, per_job: float) -> None:
    while True:
        await proc.receive()
        await asyncio.sleep(per_job)


async def flaky(proc: Process, crash_every: int) -> None:
    done = 0
    while True:
        await proc.receive()
        done += 1
        if done == crash_every:
            raise RuntimeError(f"flaky worker gives up after {done} jobs")


async def watcher(proc: Process, sup: Pid, say: Callable[[str], None]) -> None:
    while True:
        # Answered after any restart already due, so the pid is the live one.
        pid = dict(await proc.call(sup, "which_children"))["flaky"]
        proc.monitor(pid)
        down = await proc.receive(match=Down)
        if down.reason == NOPROC:  # it crashed before the monitor was set
            say(f"flaky {down.pid} had already exited; the supervisor restarted it")
        else:
            say(f"flaky {down.pid} exited: {down.reason!r}; the supervisor restarts it")


async def reporter(proc: Process, rt: Runtime, say: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(0.25)
        s = rt.stats()
        consumer_pid = rt.whereis("consumer")
        info = rt.process_info(consumer_pid) if consumer_pid else None
        depth = info.mailbox_depth if info else 0
        say(
            f"processes={s.processes} messages={s.messages} exited={s.exited} "
            f"dead_letters={s.dead_letters} consumer_mailbox={depth} "
            + "#" * (depth // 4)
        )


async def run(seconds: float, say: Callable[[str], None] = print) -> None:
    """Run the workload for ``seconds``, printing through ``say``."""
    async with Runtime("demo") as rt:
        sup = rt.spawn(
            Supervisor(
                [
                    ChildSpec("consumer", consumer, args=(0.004,), name="consumer"),
                    ChildSpec("flaky", flaky, args=(100,), name="flaky"),
                    ChildSpec("producer", producer, args=(150,), name="producer"),
                ],
                strategy="one_for_one",
                max_restarts=100,
                max_seconds=10,
            ),
            label="demo_sup",
        )
        say(f"supervisor {sup} started consumer, flaky worker and producer")
        rt.spawn(watcher, sup, say)
        rt.spawn(reporter, rt, say)
        await asyncio.sleep(seconds)
        s = rt.stats()
        say(f"done after {seconds:g} s: {s.spawned} spawned, {s.messages} messages delivered, "
            f"{s.dead_letters} dead letters (jobs left in a crashed worker's mailbox)")
