"""call/reply: answers, missing callees, callee crashes, timeouts and late replies."""

import asyncio

import pytest

from rusm.actors import Call, CallFailed, NoProc, Process, Runtime, Timeout

from .helpers import idle, probe


async def echo(proc: Process) -> None:
    while True:
        msg = await proc.receive()
        if isinstance(msg, Call):
            msg.reply(("echo", msg.request))


async def test_call_returns_the_reply(rt: Runtime) -> None:
    pid = rt.spawn(echo)
    rt.register("echo", pid)
    assert await rt.call(pid, 1) == ("echo", 1)
    assert await rt.call("echo", "by name") == ("echo", "by name")


async def test_a_call_from_a_process_leaves_its_mailbox_clean(rt: Runtime) -> None:
    out = await probe(rt)
    pid = rt.spawn(echo)

    async def caller(proc: Process) -> None:
        proc.send(proc.pid, "mine")
        answer = await proc.call(pid, "q", timeout=5)
        rest = await proc.receive(timeout=0)
        proc.send(out.pid, (answer, rest, proc._mailbox is None or len(proc._mailbox)))

    rt.spawn(caller)
    assert await out.next() == (("echo", "q"), "mine", 0)


async def test_calling_a_missing_process_raises_noproc(rt: Runtime) -> None:
    with pytest.raises(NoProc):
        await rt.call("nobody", "q")
    gone = rt.spawn(idle)
    rt.kill(gone)
    with pytest.raises(NoProc):
        await rt.call(gone, "q")


async def test_a_callee_that_exits_before_replying_fails_the_call(rt: Runtime) -> None:
    async def crasher(proc: Process) -> None:
        await proc.receive()
        raise RuntimeError("no answer for you")

    with pytest.raises(CallFailed) as info:
        await rt.call(rt.spawn(crasher), "q")
    assert isinstance(info.value.reason, RuntimeError)


async def test_a_call_times_out_and_a_late_reply_is_dropped_not_left_in_the_mailbox(
    rt: Runtime,
) -> None:
    out = await probe(rt)
    held: list[Call] = []
    got_call = asyncio.Event()

    async def slow(proc: Process) -> None:
        held.append(await proc.receive())
        got_call.set()
        await proc.receive()

    callee = rt.spawn(slow)

    async def caller(proc: Process) -> None:
        try:
            await proc.call(callee, "q", timeout=0.05)
        except Timeout:
            proc.send(out.pid, "timed out")
        msg = await proc.receive()
        proc.send(out.pid, ("next message", msg))

    caller_pid = rt.spawn(caller)
    assert await out.next() == "timed out"
    await got_call.wait()
    before = rt.stats().dead_letters
    held[0].reply("too late")
    assert rt.stats().dead_letters == before + 1
    assert rt.process_info(caller_pid).mailbox_depth == 0  # type: ignore[union-attr]
    rt.send(caller_pid, "real")
    assert await out.next() == ("next message", "real")


async def test_a_second_reply_to_the_same_call_is_a_dead_letter(rt: Runtime) -> None:
    async def twice(proc: Process) -> None:
        msg = await proc.receive()
        msg.reply(1)
        msg.reply(2)

    before = rt.stats().dead_letters
    assert await rt.call(rt.spawn(twice), "q") == 1
    assert rt.stats().dead_letters == before + 1


async def test_call_from_outside_cleans_up_its_caller_process(rt: Runtime) -> None:
    pid = rt.spawn(echo)
    for i in range(10):
        await rt.call(pid, i)
    assert [info.label for info in rt.processes()] == ["echo"]
