"""Spawning, sending, receiving: per-pair FIFO, selective receive, timeouts, dead letters."""

import asyncio
from typing import Any

import pytest

from rusm.actors import Call, Exit, Process, Runtime, Timeout
from rusm.actors.pid import Pid

from .helpers import idle, probe, spawn_and_wait, until, waiting


async def test_spawn_returns_a_pid_before_the_body_runs(rt: Runtime) -> None:
    ran = asyncio.Event()

    async def body(proc: Process) -> None:
        ran.set()

    pid = rt.spawn(body)
    assert isinstance(pid, Pid) and pid.node == "test"
    assert not ran.is_set()
    await asyncio.wait_for(ran.wait(), 5)


def _sync_body(proc: Process) -> None:
    pass


@pytest.mark.parametrize("body", [_sync_body, lambda proc: None, "not callable"])
async def test_a_body_that_is_not_a_coroutine_function_is_a_type_error_at_spawn(
    rt: Runtime, body: Any
) -> None:
    with pytest.raises(TypeError, match="async function"):
        rt.spawn(body)
    assert rt.stats().spawned == 0


async def test_an_object_with_an_async_call_method_is_a_valid_body(rt: Runtime) -> None:
    class Body:
        async def __call__(self, proc: Process) -> None:
            pass

    assert await spawn_and_wait(rt, Body()) == "normal"


async def test_messages_from_one_sender_arrive_in_send_order(rt: Runtime) -> None:
    p = await probe(rt)

    async def sender(proc: Process, tag: str) -> None:
        for i in range(1000):
            proc.send(p.pid, (tag, i))
            if i % 7 == 0:
                await asyncio.sleep(0)  # interleave with the other sender

    rt.spawn(sender, "a")
    rt.spawn(sender, "b")
    got: dict[str, list[int]] = {"a": [], "b": []}
    for _ in range(2000):
        tag, i = await p.next()
        got[tag].append(i)
    assert got["a"] == list(range(1000))
    assert got["b"] == list(range(1000))


async def test_selective_receive_takes_the_first_match_and_keeps_the_rest_in_order(
    rt: Runtime,
) -> None:
    out = await probe(rt)

    async def body(proc: Process) -> None:
        await proc.receive(match=lambda m: m == "go")
        out.proc.send(out.pid, await proc.receive(match=lambda m: m % 2 == 0))
        out.proc.send(out.pid, await proc.receive(match=int))
        for _ in range(3):
            out.proc.send(out.pid, await proc.receive())

    pid = rt.spawn(body)
    for m in [1, 3, 4, 5, 6]:
        rt.send(pid, m)
    rt.send(pid, "go")
    assert [await out.next() for _ in range(5)] == [4, 1, 3, 5, 6]


async def test_selective_receive_waits_for_a_later_match(rt: Runtime) -> None:
    out = await probe(rt)

    async def body(proc: Process) -> None:
        out.proc.send(out.pid, await proc.receive(match=tuple))
        out.proc.send(out.pid, await proc.receive())

    pid = rt.spawn(body)
    rt.send(pid, "skip me")
    await until(waiting(rt, pid), "the body to scan its mailbox and wait")
    rt.send(pid, ("match",))
    assert await out.next() == ("match",)
    assert await out.next() == "skip me"


async def test_receive_with_a_timeout_raises_timeout_and_keeps_unmatched_messages(
    rt: Runtime,
) -> None:
    out = await probe(rt)

    async def body(proc: Process) -> None:
        with pytest.raises(Timeout):
            await proc.receive(timeout=0.05, match=lambda m: m == "never")
        with pytest.raises(Timeout):
            await proc.receive(timeout=0)
        proc.send(proc.pid, "late")
        out.proc.send(out.pid, await proc.receive(timeout=0))

    rt.spawn(body)
    assert await out.next() == "late"


async def test_a_receive_timeout_is_a_builtin_timeout_error_too() -> None:
    assert issubclass(Timeout, TimeoutError)


async def test_a_message_to_a_dead_pid_or_unknown_name_is_a_dead_letter(rt: Runtime) -> None:
    async def quick(proc: Process) -> None:
        pass

    pid = rt.spawn(quick)
    await spawn_and_wait(rt, quick)  # runs after the first quick one: both are done
    assert not rt.is_alive(pid)
    before = rt.stats().dead_letters
    rt.send(pid, "hello?")
    rt.send("nobody", "hello?")
    rt.send(Pid("elsewhere", 1), "hello?")
    assert rt.stats().dead_letters == before + 3


async def test_a_destination_that_is_neither_pid_nor_name_is_a_type_error(rt: Runtime) -> None:
    with pytest.raises(TypeError, match="a Pid, a registered name or"):
        rt.send(42, "x")  # type: ignore[arg-type]


async def test_messages_left_in_a_mailbox_at_exit_are_counted_as_dead_letters(
    rt: Runtime,
) -> None:
    pid = rt.spawn(idle)
    gate = asyncio.Event()

    async def holder(proc: Process) -> None:
        await gate.wait()

    held = rt.spawn(holder)
    for i in range(5):
        rt.send(held, i)
    before = rt.stats().dead_letters
    rt.kill(held)
    assert rt.stats().dead_letters == before + 5
    rt.kill(pid)


async def test_a_killed_process_cannot_send_from_its_finally_block(rt: Runtime) -> None:
    out = await probe(rt)
    unwound = asyncio.Event()

    async def body(proc: Process) -> None:
        try:
            await proc.receive()
        finally:
            proc.send(out.pid, "from beyond")
            unwound.set()

    pid = rt.spawn(body)
    await until(waiting(rt, pid))
    before = rt.stats().dead_letters
    rt.kill(pid)
    await asyncio.wait_for(unwound.wait(), 5)
    assert rt.stats().dead_letters == before + 1
    await out.nothing_more()


async def test_exit_messages_and_calls_match_as_events(rt: Runtime) -> None:
    out = await probe(rt, trap=True)

    async def crash(proc: Process) -> None:
        raise ValueError("x")

    out.proc.spawn_link(crash)
    match await out.next():
        case Exit(pid=_, reason=ValueError()):
            pass
        case other:
            pytest.fail(f"unexpected {other!r}")

    async def asker(proc: Process) -> None:
        await proc.call(out.pid, "q", timeout=5)

    rt.spawn(asker)
    match await out.next():
        case Call(caller=_, ref=_, request="q") as c:
            c.reply("a")
        case other:
            pytest.fail(f"unexpected {other!r}")
