"""Exit semantics: reasons, links, trap_exits, kill, monitors."""

import asyncio
import logging

import pytest

from rusm.actors import Down, Exit, Pid, Process, ProcessExit, Runtime

from .helpers import idle, probe, spawn_and_wait


async def test_returning_from_the_body_exits_with_reason_normal(rt: Runtime) -> None:
    async def body(proc: Process) -> None:
        return None

    assert await spawn_and_wait(rt, body) == "normal"


async def test_raising_makes_the_exception_the_reason_and_logs_it_once_with_traceback(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(proc: Process) -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="rusm.actors"):
        reason = await spawn_and_wait(rt, body)
    assert isinstance(reason, ValueError) and str(reason) == "boom"
    records = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is not None and records[0].exc_info[1] is reason


async def test_process_exit_chooses_the_reason_without_a_traceback(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(proc: Process) -> None:
        try:
            raise ProcessExit("shutdown")
        except Exception:  # ProcessExit is not an Exception: user code can't swallow it
            pytest.fail("ProcessExit must not be caught by except Exception")

    assert await spawn_and_wait(rt, body) == "shutdown"
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_link_propagates_an_abnormal_exit_to_a_process_that_does_not_trap(
    rt: Runtime,
) -> None:
    watcher = await probe(rt)
    a = await probe(rt)
    b = await probe(rt)
    a.proc.link(b.pid)
    ref = watcher.proc.monitor(b.pid)
    rt.exit(a.pid, "bad")
    assert await watcher.next() == Down(ref, b.pid, "bad")


async def test_a_normal_exit_does_not_kill_linked_processes(rt: Runtime) -> None:
    parent = await probe(rt)

    async def child(proc: Process) -> None:
        return None

    watcher = await probe(rt)
    child_pid = parent.proc.spawn_link(child)
    ref = watcher.proc.monitor(child_pid)
    assert (await watcher.next()).ref == ref
    assert rt.is_alive(parent.pid)
    assert rt.process_info(parent.pid).links == ()  # type: ignore[union-attr]


async def test_a_trapping_process_receives_exit_messages_and_survives(rt: Runtime) -> None:
    parent = await probe(rt, trap=True)

    async def child(proc: Process, reason: str) -> None:
        raise ProcessExit(reason)

    a = parent.proc.spawn_link(child, "normal")
    b = parent.proc.spawn_link(child, "bad")
    assert {await parent.next(), await parent.next()} == {Exit(a, "normal"), Exit(b, "bad")}
    assert rt.is_alive(parent.pid)


async def test_exit_signals_go_out_in_the_order_the_links_were_made(rt: Runtime) -> None:
    """Links are an insertion-ordered set, so a cascade runs the same on every run."""
    seen: list[int] = []
    done = asyncio.Event()
    count = 20
    started = [asyncio.Event() for _ in range(count)]

    async def watcher(proc: Process, i: int) -> None:
        proc.trap_exits = True
        started[i].set()
        msg = await proc.receive()
        assert isinstance(msg, Exit)
        seen.append(i)
        if len(seen) == count:
            done.set()

    hub = await probe(rt)
    order = [(i * 7) % count for i in range(count)]  # not the spawn order
    watchers = {i: rt.spawn(watcher, i) for i in range(count)}
    for event in started:
        await asyncio.wait_for(event.wait(), 5)
    for i in order:
        hub.proc.link(watchers[i])
    rt.exit(hub.pid, "bye")
    await asyncio.wait_for(done.wait(), 5)
    assert seen == order


async def test_kill_cannot_be_trapped_and_links_see_killed(rt: Runtime) -> None:
    parent = await probe(rt, trap=True)
    victim = await probe(rt, trap=True)
    victim.proc.link(parent.pid)
    rt.kill(victim.pid)
    assert not rt.is_alive(victim.pid)
    assert await parent.next() == Exit(victim.pid, "killed")


async def test_an_exit_signal_to_a_trapping_process_arrives_as_a_message(rt: Runtime) -> None:
    target = await probe(rt, trap=True)
    sender = await probe(rt)
    sender.proc.exit(target.pid, "please stop")
    assert await target.next() == Exit(sender.pid, "please stop")
    assert rt.is_alive(target.pid)


async def test_linking_to_a_dead_process_sends_an_exit_signal_noproc(rt: Runtime) -> None:
    gone = rt.spawn(idle)
    rt.kill(gone)
    trapper = await probe(rt, trap=True)
    trapper.proc.link(gone)
    assert await trapper.next() == Exit(gone, "noproc")

    plain = await probe(rt)
    watcher = await probe(rt)
    ref = watcher.proc.monitor(plain.pid)
    plain.proc.link(gone)
    assert await watcher.next() == Down(ref, plain.pid, "noproc")


async def test_unlink_stops_propagation(rt: Runtime) -> None:
    a = await probe(rt)
    b = await probe(rt)
    a.proc.link(b.pid)
    b.proc.unlink(a.pid)
    rt.exit(a.pid, "bad")
    assert rt.is_alive(b.pid)
    assert rt.process_info(b.pid).links == ()  # type: ignore[union-attr]


async def test_spawn_link_makes_a_crashing_child_take_its_parent_down(rt: Runtime) -> None:
    watcher = await probe(rt)
    go = asyncio.Event()

    async def child(proc: Process) -> None:
        await go.wait()
        raise RuntimeError("child failed")

    async def parent(proc: Process) -> None:
        proc.spawn_link(child)
        go.set()
        await proc.receive()

    pid = rt.spawn(parent)
    ref = watcher.proc.monitor(pid)
    down = await watcher.next()
    assert down.ref == ref and isinstance(down.reason, RuntimeError)


async def test_a_monitor_fires_exactly_once(rt: Runtime) -> None:
    watcher = await probe(rt)
    target = rt.spawn(idle)
    ref = watcher.proc.monitor(target)
    rt.exit(target, "bye")
    rt.exit(target, "again")
    rt.kill(target)
    assert await watcher.next() == Down(ref, target, "bye")
    await watcher.nothing_more()


async def test_monitoring_a_dead_process_or_free_name_gives_down_noproc_at_once(
    rt: Runtime,
) -> None:
    watcher = await probe(rt)
    target = rt.spawn(idle)
    rt.kill(target)
    ref1 = watcher.proc.monitor(target)
    ref2 = watcher.proc.monitor("nobody")
    assert ref1 != ref2
    assert await watcher.next() == Down(ref1, target, "noproc")
    assert await watcher.next() == Down(ref2, "nobody", "noproc")
    await watcher.nothing_more()


async def test_monitoring_a_name_watches_the_process_holding_it(rt: Runtime) -> None:
    watcher = await probe(rt)
    target = rt.spawn(idle)
    rt.register("svc", target)
    ref = watcher.proc.monitor("svc")
    rt.kill(target)
    assert await watcher.next() == Down(ref, target, "killed")


async def test_demonitor_cancels_and_flush_drops_a_delivered_down(rt: Runtime) -> None:
    watcher = await probe(rt)
    t1 = rt.spawn(idle)
    t2 = rt.spawn(idle)
    ref1 = watcher.proc.monitor(t1)
    watcher.proc.demonitor(ref1)
    rt.kill(t1)
    await watcher.nothing_more()
    assert rt.process_info(watcher.pid).monitors == ()  # type: ignore[union-attr]

    # flush: the Down is already in the mailbox when demonitor runs
    async def flusher(proc: Process) -> None:
        ref = proc.monitor(t2)
        proc.runtime.kill(t2)
        proc.demonitor(ref, flush=True)
        proc.send(watcher.pid, proc._mailbox is None or len(proc._mailbox))

    rt.spawn(flusher)
    assert await watcher.next() == 0


async def test_a_long_chain_of_links_dies_without_recursion(rt: Runtime) -> None:
    ready = await probe(rt)

    async def linker(proc: Process, prev: Pid | None, last: bool) -> None:
        if prev is not None:
            proc.link(prev)
        if last:  # processes start in spawn order: all are linked now
            proc.send(ready.pid, "linked")
        await proc.receive()

    pids: list[Pid] = []
    for i in range(5000):
        pids.append(rt.spawn(linker, pids[-1] if pids else None, i == 4999))
    assert await ready.next() == "linked"
    rt.exit(pids[0], "cascade")
    assert not any(rt.is_alive(p) for p in pids)
    assert rt.stats().exited >= 5000
