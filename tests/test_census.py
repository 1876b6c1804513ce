"""The observer's mailbox totals kept as mailboxes fill (issue 12 §7): they
agree with a scan of every process, whatever fills, drains and exits."""

from __future__ import annotations

import asyncio
import random

from rusm.actors import Process, Runtime, census

from .helpers import until


async def drain(proc: Process) -> None:
    """Takes a message only when told how many: ('take', n)."""
    while True:
        _, n = await proc.receive(match=lambda m: isinstance(m, tuple) and m[0] == "take")
        for _ in range(n):
            await proc.receive()


async def test_kept_totals_and_top_agree_with_a_full_scan(rt: Runtime) -> None:
    pids = [rt.spawn(drain) for _ in range(60)]
    await asyncio.sleep(0)
    boxes = census.Mailboxes(rt)
    rng = random.Random(12)
    for _ in range(25):
        for _ in range(40):
            pid = rng.choice(pids)
            rt.send(pid, rng.random())
        for pid in rng.sample(pids, 5):
            rt.send(pid, ("take", rng.randint(0, 3)))
        victim = rng.choice(pids)
        rt.kill(victim)
        pids.remove(victim)
        pids.append(rt.spawn(drain))
        await until(lambda: all(i.status == "waiting" for i in rt.processes()), "settled")
        assert boxes.refresh() == census.total_mailbox(rt)
        for n in (0, 1, 7, 100):
            kept = [i.pid for i in boxes.top(n)]
            scanned = [i.pid for i in census.top(rt, n, "mailbox")[0]]
            assert kept == scanned, n
    boxes.close()
    rt.send(pids[0], "after")
    assert rt.take_filled() == []  # no longer noted once closed
