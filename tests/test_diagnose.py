"""Why is it stuck (issue 12 §1, §2): where each process waits, on whom, what
its mailbox holds and the state it published; read on a real runtime."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from rusm.actors import Down, GenServer, Process, Reply, Runtime
from rusm.actors.diagnose import bounded_repr, deadlocks

from .helpers import EVENT_TIMEOUT, idle, until


def _waits(rt: Runtime, pid: Any, kind: str) -> bool:
    wait = rt.wait_of(pid)
    return wait is not None and wait.kind == kind


async def test_a_process_in_receive_waits_on_receive_and_where_names_its_line(
    rt: Runtime,
) -> None:
    async def waiter(proc: Process) -> None:
        await proc.receive()  # the await point where[] must name

    pid = rt.spawn(waiter)
    await until(lambda: _waits(rt, pid, "receive"), "waiter in receive")
    found = rt.diagnose(pid)
    assert found is not None
    assert found.wait.text == "receive"
    frames = [f.function for f in found.where]
    assert frames[0] == "Process.receive"  # innermost first
    assert any(f.endswith("waiter") for f in frames)
    body = next(f for f in found.where if f.function.endswith("waiter"))
    assert body.file == __file__ and body.line > 0
    assert not any("_main" in f for f in frames)  # the runtime's wrapper is hidden


async def test_selective_receive_says_what_it_matches(rt: Runtime) -> None:
    async def waiter(proc: Process) -> None:
        await proc.receive(match=Down)

    pid = rt.spawn(waiter)
    await until(lambda: _waits(rt, pid, "receive"), "waiter in receive")
    assert rt.wait_of(pid).text == "receive (match Down)"  # type: ignore[union-attr]


async def test_sleep_and_other_awaits_and_running_are_told_apart(rt: Runtime) -> None:
    event = asyncio.Event()

    async def sleeper(proc: Process) -> None:
        await asyncio.sleep(7)

    async def on_event(proc: Process) -> None:
        await event.wait()

    s = rt.spawn(sleeper)
    e = rt.spawn(on_event)
    await until(lambda: _waits(rt, s, "sleep") and _waits(rt, e, "await"), "both waiting")
    assert rt.wait_of(s).text == "sleep 7s"  # type: ignore[union-attr]
    assert rt.wait_of(e).text == "await Event.wait"  # type: ignore[union-attr]
    event.set()  # woken but not yet run: runnable, so "running"
    assert rt.wait_of(e).text == "running"  # type: ignore[union-attr]


async def test_a_caller_shows_whom_it_waits_on_and_the_callee_who_waits_on_it(
    rt: Runtime,
) -> None:
    async def slow(proc: Process) -> None:
        await proc.receive()  # takes the call, never answers
        await proc.receive()

    async def caller(proc: Process, dest: Any) -> None:
        await proc.call(dest, "hello", timeout=60)

    callee = rt.spawn(slow, label="slow")
    a = rt.spawn(caller, callee)
    await until(lambda: _waits(rt, a, "call"), "caller in call")
    wait = rt.wait_of(a)
    assert wait is not None and wait.target == callee
    assert wait.text.startswith(f"call {callee} ") and wait.text.endswith("s")
    assert wait.seconds is not None and 0 <= wait.seconds < EVENT_TIMEOUT
    found = rt.diagnose(callee)
    assert found is not None and found.waited_by == (a,)
    assert not found.deadlocked
    assert rt.deadlocked() == set()


async def test_two_processes_calling_each_other_are_flagged_as_a_deadlock(
    rt: Runtime,
) -> None:
    async def ring(proc: Process) -> None:
        other = await proc.receive()
        await proc.call(other, "after you", timeout=60)

    a = rt.spawn(ring, label="a")
    b = rt.spawn(ring, label="b")
    c = rt.spawn(idle)
    rt.send(a, b)
    rt.send(b, a)
    await until(lambda: rt.deadlocked() == {a, b}, "the ring of calls")
    da, dc = rt.diagnose(a), rt.diagnose(c)
    assert da is not None and da.deadlocked and da.waited_by == (b,)
    assert dc is not None and not dc.deadlocked


async def test_a_named_call_target_is_resolved_for_the_cycle(rt: Runtime) -> None:
    async def ring(proc: Process, name: str) -> None:
        proc.register(name)
        other = await proc.receive()
        await proc.call(other, "after you", timeout=60)

    a = rt.spawn(ring, "alpha")
    b = rt.spawn(ring, "beta")
    await until(lambda: rt.whereis("alpha") and rt.whereis("beta"), "both named")
    rt.send(a, "beta")
    rt.send(b, "alpha")
    await until(lambda: rt.deadlocked() == {a, b}, "the named ring")


def test_deadlocks_finds_rings_and_not_chains() -> None:
    assert deadlocks({1: 2, 2: 1}) == {1, 2}
    assert deadlocks({1: 2, 2: 3, 3: 1, 4: 1}) == {1, 2, 3}  # 4 waits on the ring
    assert deadlocks({1: 2, 2: 3}) == set()
    assert deadlocks({1: 1}) == {1}


async def test_the_mailbox_peek_gives_the_first_messages_in_order(rt: Runtime) -> None:
    release = asyncio.Event()

    async def busy(proc: Process) -> None:
        await release.wait()

    pid = rt.spawn(busy)
    for i in range(50):
        rt.send(pid, ("job", i))
    found = rt.diagnose(pid, messages=3)
    assert found is not None
    assert found.messages == ["('job', 0)", "('job', 1)", "('job', 2)"]
    assert rt.diagnose(pid, messages=0).messages == []  # type: ignore[union-attr]
    assert len(rt.diagnose(pid).messages) == 20  # type: ignore[union-attr]
    assert found.memory_bytes > 50 * 8
    release.set()


async def test_huge_deep_and_self_referencing_terms_come_back_short_and_fast(
    rt: Runtime,
) -> None:
    release = asyncio.Event()

    async def busy(proc: Process) -> None:
        await release.wait()

    loop: list[Any] = [1]
    loop.append(loop)
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]

    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    huge = list(range(10_000_000))
    pid = rt.spawn(busy)
    for m in (loop, deep, huge, "x" * 10_000_000, Bad()):
        rt.send(pid, m)
    found = rt.diagnose(pid)
    assert found is not None
    assert found.messages[0] == "[1, [1, [1, [1, [...]]]]]"  # cut at depth 4
    assert len(found.messages[1]) < 200 and "..." in found.messages[1]
    assert all(len(m) <= 200 for m in found.messages)
    assert found.messages[3].startswith("'xxx") and "..." in found.messages[3]
    assert found.messages[4].startswith("<Bad instance")  # its __repr__ raised
    release.set()


async def test_published_state_is_shown_and_a_gen_server_publishes_its_own(
    rt: Runtime,
) -> None:
    async def worker(proc: Process) -> None:
        proc.publish_state({"jobs": 3})
        await proc.receive()

    class Counter(GenServer):
        def init(self, arg: Any) -> Any:
            return {"count": arg}

        def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
            state = {"count": state["count"] + 1}
            return Reply(state["count"], state)

    w = rt.spawn(worker)
    plain = rt.spawn(idle)
    await until(lambda: _waits(rt, w, "receive") and _waits(rt, plain, "receive"), "waiting")
    assert rt.diagnose(w).state == "{'jobs': 3}"  # type: ignore[union-attr]
    assert rt.diagnose(plain).state is None  # type: ignore[union-attr]
    server = await Counter.start(rt, 41)
    assert await GenServer.call(rt, server, "bump") == 42
    assert rt.diagnose(server).state == "{'count': 42}"  # type: ignore[union-attr]


def test_bounded_repr_cuts_at_its_length() -> None:
    text = bounded_repr({i: "y" * 70 for i in range(12)}, chars=100)
    assert len(text) == 100 and text.endswith("…")


# -- what each process costs (rusm.actors.meter) ----------------------------------------


async def test_a_step_that_blocks_the_loop_is_recorded_with_its_process_and_line(
    rt: Runtime,
) -> None:
    meter = rt.meter()
    assert rt.metered and rt.meter() is meter

    async def spinner(proc: Process) -> None:
        await proc.receive()
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:  # pure Python: holds the GIL, yields never
            pass
        await proc.receive()

    async def sleeper(proc: Process) -> None:
        await proc.receive()
        time.sleep(0.25)  # noqa: ASYNC251 - a synchronous call in a step, on purpose
        await proc.receive()

    quiet = rt.spawn(idle)
    for body in (spinner, sleeper):
        pid = rt.spawn(body, label=body.__name__)
        rt.send(pid, "go")
        await until(lambda: meter.blocked and meter.blocked[-1].pid == pid,  # noqa: B023
                    f"{body.__name__}'s blocked step")
        step = meter.blocked[-1]
        assert step.label == body.__name__ and step.ms > meter.threshold * 1000
        assert step.where is not None and step.where.file == __file__ and step.where.line > 0
        info = rt.process_info(pid)
        assert info is not None and info.cpu_s > 0
    assert rt.process_info(quiet).cpu_s == 0  # type: ignore[union-attr]
    assert meter.lag_ms(60) > meter.threshold * 1000
    assert meter.busy_samples > 0 and meter.samples >= meter.busy_samples


async def test_the_meter_stops_with_the_runtime() -> None:
    def meters() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "rusm-meter"]

    async with Runtime("m") as rt:
        meter = rt.meter()
        assert meter.running and len(meters()) == 1
    assert not meter.running and meters() == []
