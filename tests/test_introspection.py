"""process_info, processes() and runtime counters: what the observer shows."""

import asyncio
import time

from rusm.actors import Process, Runtime

from .helpers import idle, probe, spawn_and_wait, until, waiting


async def test_process_info_reports_what_the_observer_shows(rt: Runtime) -> None:
    watcher = await probe(rt)
    t0 = time.time()

    async def worker(proc: Process) -> None:
        proc.register("w")
        proc.trap_exits = True
        proc.send(watcher.pid, "up")
        await asyncio.Event().wait()  # busy with something other than receive

    pid = rt.spawn(worker, label="the worker")
    assert await watcher.next() == "up"
    watcher.proc.link(pid)
    watcher.proc.monitor(pid)
    for i in range(3):
        rt.send(pid, i)
    info = rt.process_info(pid)
    assert info is not None
    assert info.pid == pid and info.label == "the worker"
    assert info.names == ("w",)
    assert info.mailbox_depth == 3 and info.received == 3 and info.sent == 1
    assert info.links == (watcher.pid,)
    assert info.monitored_by == (watcher.pid,)
    assert info.status == "running" and info.trap_exits
    assert t0 <= info.spawned_at <= time.time()
    w = rt.process_info(watcher.pid)
    assert w is not None and w.monitors == (pid,) and w.status == "waiting"


async def test_the_label_defaults_to_the_body_name(rt: Runtime) -> None:
    assert rt.process_info(rt.spawn(idle)).label == "idle"  # type: ignore[union-attr]


async def test_process_info_of_a_finished_process_is_none(rt: Runtime) -> None:
    async def quick(proc: Process) -> None:
        pass

    pid = rt.spawn(quick)
    await spawn_and_wait(rt, quick)  # started after the first: both are done
    assert rt.process_info(pid) is None


async def test_a_killed_process_shows_exiting_while_its_finally_block_runs(rt: Runtime) -> None:
    release = asyncio.Event()
    unwinding = asyncio.Event()

    async def slow_cleanup(proc: Process) -> None:
        try:
            await proc.receive()
        finally:
            unwinding.set()
            await release.wait()

    pid = rt.spawn(slow_cleanup)
    await until(waiting(rt, pid))
    rt.kill(pid)
    await unwinding.wait()
    assert rt.process_info(pid).status == "exiting"  # type: ignore[union-attr]
    assert pid not in [i.pid for i in rt.processes()]
    release.set()


async def test_processes_lists_every_live_process_and_counters_add_up(rt: Runtime) -> None:
    pids = [rt.spawn(idle) for _ in range(10)]
    rt.kill(pids[0])
    rt.send(pids[1], "x")
    rt.send(pids[0], "x")
    assert sorted(i.pid for i in rt.processes()) == pids[1:]
    s = rt.stats()
    assert (s.node, s.processes, s.spawned, s.exited) == ("test", 9, 10, 1)
    assert (s.messages, s.dead_letters) == (1, 1)
