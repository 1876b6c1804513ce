"""What happened and what a process says (issue 12 §4, §5), on a real runtime
and through a real observe WebSocket: the event ring of exits, restarts,
nodes up and down and name conflicts; a live trace of one process's
messages that stops by itself."""

from __future__ import annotations

import asyncio
from typing import Any

from rusm.actors import ChildSpec, Process, Runtime, Supervisor
from rusm.actors.events import EventLog
from rusm.actors.trace import Trace

from .helpers import idle, until
from .test_observe import Site, ask, ca, hoarder, site

__all__ = ["ca", "site"]  # test_observe's fixtures


async def crasher(proc: Process) -> None:
    job = await proc.receive()
    raise ValueError(f"bad job {job!r}")


async def echo(proc: Process) -> None:
    while True:
        sender, msg = await proc.receive()
        proc.send(sender, ("echo", msg))


def depth(rt: Runtime, pid: Any) -> int:
    info = rt.process_info(pid)
    return -1 if info is None else info.mailbox_depth


def kinds(rt: Runtime) -> list[str]:
    return [e.kind for e in rt.events.since(0)]


# -- the event log --------------------------------------------------------------


def test_the_ring_keeps_the_last_events_and_the_last_tracebacks() -> None:
    log = EventLog(size=5, crashes=2)
    pid = None
    for i in range(8):
        try:
            raise RuntimeError(f"crash {i}")
        except RuntimeError as e:
            log.exit(pid, "w", e)  # type: ignore[arg-type]
    assert log.seq == 8 and [e.seq for e in log.since(0)] == [4, 5, 6, 7, 8]
    assert [e.seq for e in log.since(6)] == [7, 8]
    assert log.since(8) == [] and [e.seq for e in log.since(0, limit=2)] == [7, 8]
    wire = log.wire(log.since(0))
    assert [("traceback" in w) for w in wire] == [False, False, False, True, True]
    assert "RuntimeError: crash 7" in wire[-1]["traceback"]
    assert wire[-1]["reason"] == "RuntimeError('crash 7')" and wire[-1]["crashed"] is True


async def test_exits_are_recorded_with_their_reasons_and_a_crash_with_its_traceback(
    rt: Runtime,
) -> None:
    pid = rt.spawn(crasher, label="crasher")
    quiet = rt.spawn(idle)
    rt.send(pid, "job-1")
    rt.exit(quiet, "shutdown")
    await until(lambda: len(rt.events.since(0)) == 2, "two exits")
    crash, stop = rt.events.wire(rt.events.since(0))
    by_pid = {crash["pid"]: crash, stop["pid"]: stop}
    crash, stop = by_pid[str(pid)], by_pid[str(quiet)]
    assert crash["kind"] == "exit" and crash["label"] == "crasher" and crash["crashed"]
    assert "bad job 'job-1'" in crash["reason"] and "in crasher" in crash["traceback"]
    assert stop["reason"] == "shutdown" and not stop["crashed"] and "traceback" not in stop


async def test_supervisor_restarts_count_per_child_and_the_intensity_is_recorded(
    rt: Runtime,
) -> None:
    sup = rt.spawn(Supervisor([ChildSpec("c", crasher, name="c")], max_restarts=2,
                              max_seconds=60), label="sup")
    for n in range(3):
        await until(lambda: rt.whereis("c") is not None, "the child registered")
        child = rt.whereis("c")
        rt.send("c", n)
        await until(lambda child=child: rt.whereis("c") != child, "the child replaced")
        if n == 2:
            break
    await until(lambda: "max_restarts" in kinds(rt), "the intensity exceeded")
    events = rt.events.wire(rt.events.since(0))
    restarts = [e for e in events if e["kind"] == "restart"]
    assert [e["restarts"] for e in restarts] == [1, 2]
    assert all(e["child"] == "c" and e["supervisor"] == str(sup) for e in restarts)
    (limit,) = [e for e in events if e["kind"] == "max_restarts"]
    assert limit["pid"] == str(sup) and "more than 2 restarts" in limit["reason"]


async def test_nodes_up_and_down_and_a_global_name_conflict_are_logged(site: Site) -> None:
    london = site.node
    paris = await site.bind("paris")
    await paris.connect(london.local_addr())
    await until(lambda: "nodeup" in kinds(london.runtime), "paris up on london")
    (up,) = [e for e in london.runtime.events.wire(london.runtime.events.since(0))
             if e["kind"] == "nodeup"]
    assert up["node"] == "paris" and up["hidden"] is False

    # Both claim "leader" while apart; the conflict resolves when they meet.
    await paris.close()
    await until(lambda: "nodedown" in kinds(london.runtime), "paris down on london")
    paris = await site.bind("paris")
    await london.register_global("leader", london.runtime.spawn(idle))
    await paris.register_global("leader", paris.runtime.spawn(idle))
    await paris.connect(london.local_addr())
    await until(lambda: "name_conflict" in kinds(london.runtime)
                or "name_conflict" in kinds(paris.runtime), "the conflict seen")
    logs = london.runtime.events.since(0) + paris.runtime.events.since(0)
    conflict = next(e for e in logs if e.kind == "name_conflict")
    assert conflict.detail["name"] == "leader" and "kept by <" in (conflict.reason or "")
    down = next(e for e in london.runtime.events.since(0) if e.kind == "nodedown")
    assert down.detail["node"] == "paris" and down.reason


# -- traces ---------------------------------------------------------------------


async def test_a_trace_sees_messages_in_and_out_and_stops_after_count(rt: Runtime) -> None:
    e = rt.spawn(echo, label="echo")
    me = rt.spawn(hoarder)
    trace = rt.trace(e, count=4, seconds=30)
    for i in range(3):
        rt.send(e, (me, i))
        await until(lambda i=i: depth(rt, me) == i + 1, "the echo")
    await until(lambda: trace.stopped is not None, "the trace to stop by count")
    assert trace.stopped == "count"
    got = [(t.direction, t.peer, t.term) for t in trace.read()]
    assert got == [("in", f"<{rt.node}.0>", f"(<{rt.node}.{me.serial}>, 0)"),
                   ("out", str(me), "('echo', 0)"),
                   ("in", f"<{rt.node}.0>", f"(<{rt.node}.{me.serial}>, 1)"),
                   ("out", str(me), "('echo', 1)")]
    rt.send(e, (me, 9))  # after the trace: the path is plain again
    await until(lambda: depth(rt, me) == 4, "the fourth echo")
    assert len(trace.read()) == 4


async def test_a_trace_stops_on_time_on_exit_when_replaced_and_when_unread(
    rt: Runtime,
) -> None:
    e = rt.spawn(echo)
    timed = rt.trace(e, count=100, seconds=0.05)
    await until(lambda: timed.stopped == "time", "stopped by time")
    first = rt.trace(e)
    second = rt.trace(e)
    assert first.stopped == "replaced" and second.stopped is None
    rt.kill(e)
    await until(lambda: second.stopped == "exit", "stopped by the exit")
    loop = asyncio.get_running_loop()
    unread = Trace(rt.spawn(idle), 100, 30, loop, lambda t: None, idle=0.05)
    await until(lambda: unread.stopped == "idle", "stopped, nobody reading")


async def test_a_huge_or_self_referencing_message_is_traced_short() -> None:
    async with Runtime() as rt:
        e = rt.spawn(idle)
        trace = rt.trace(e)
        loop: list[Any] = []
        loop.append(loop)
        rt.send(e, [loop, "x" * 10_000_000])
        (event,) = trace.read()
        assert len(event.term) <= 600 and "[...]" in event.term


# -- through the observe channel -----------------------------------------------


async def test_log_and_trace_commands_and_their_bad_arguments(site: Site) -> None:
    rt = site.rt
    pid = rt.spawn(crasher, label="crasher")
    rt.send(pid, "x")
    await until(lambda: "exit" in kinds(rt), "the crash")
    ws = await site.raw()
    log = (await ask(ws, "log"))["value"]
    assert [e["kind"] for e in log["events"]] == ["exit"] and log["next"] == rt.events.seq
    assert (await ask(ws, "log", since=log["next"]))["value"]["events"] == []
    for bad in ({"since": -1}, {"limit": 0}, {"kinds": ["nope"]}, {"since": "1"}):
        reply = await ask(ws, "log", **bad)
        assert not reply["ok"] and reply["error"] == "bad_request", bad

    e = rt.spawn(echo)
    rt.register("echo", e)
    started = (await ask(ws, "trace", pid="echo", count=2))["value"]
    assert started["pid"] == str(e) and started["count"] == 2
    me = rt.spawn(hoarder)
    rt.send(e, (me, "hi"))
    await until(lambda: depth(rt, me) == 1, "the echo")
    read = (await ask(ws, "trace_read", trace=started["trace"]))["value"]
    assert [x["direction"] for x in read["events"]] == ["in", "out"]
    assert read["stopped"] == "count" and read["next"] == 2
    for cmd, bad in (("trace", {"pid": "echo", "count": 0}),
                     ("trace", {"pid": "echo", "seconds": True}),
                     ("trace", {"pid": "echo", "seconds": 601}),
                     ("trace_read", {"trace": 99}), ("untrace", {"trace": "1"})):
        reply = await ask(ws, cmd, **bad)
        assert not reply["ok"] and reply["error"] == "bad_request", (cmd, bad)
    gone = await ask(ws, "trace", pid="<london.99999>")
    assert not gone["ok"] and gone["error"] in ("no_such_process", "bad_request")

    # A trace the observer leaves behind stops when it disconnects.
    running = (await ask(ws, "trace", pid="echo", seconds=60))["value"]
    assert running["trace"] != started["trace"]
    assert rt.tracing(e)
    await ws.close()
    await until(lambda: not rt.tracing(e), "the trace stopped with its observer")


async def test_big_answers_come_in_pages_that_fit_a_remote_attach(site: Site) -> None:
    """A remote (QUIC) attacher reads answers in one control frame (64 KiB):
    a long log, a long trace and a big mailbox peek still come through."""
    rt = site.rt
    for i in range(25):  # crashes, with tracebacks
        rt.send(rt.spawn(crasher), i)
    await until(lambda: len(rt.events.since(0)) >= 25, "the crashes")
    for i in range(400):  # and a long log of long reasons (a str reason is bounded too)
        rt.events.record("exit", reason=f"{i} " + "x" * 10_000)
    client = await site.attacher()
    seen: list[dict[str, Any]] = []
    since, pages = 0, 0
    while True:
        page = await client.command("log", since=since, limit=1000)
        seen += page["events"]
        since, pages = page["next"], pages + 1
        if not page["more"]:
            break
    assert [e["seq"] for e in seen] == [e.seq for e in rt.events.since(0)] and pages > 1
    assert sum("traceback" in e for e in seen) == 20  # the last 20 crashes keep theirs

    box = rt.spawn(hoarder)
    for i in range(1000):
        rt.send(box, ("order", i, "y" * 400))
    info = await client.command("info", pid=str(box), messages=1000)
    assert 0 < len(info["messages"]) < 1000 and info["mailbox_depth"] == 1000
    assert info["messages"][0].startswith("('order', 0, 'yyy")

    e = rt.spawn(echo)
    started = await client.command("trace", pid=str(e), count=400, seconds=30)
    me = rt.spawn(hoarder)
    for _ in range(200):
        rt.send(e, (me, "z" * 500))
    await until(lambda: depth(rt, me) == 200, "the echoes")
    traced: list[dict[str, Any]] = []
    while True:
        page = await client.command("trace_read", trace=started["trace"], since=len(traced))
        traced += page["events"]
        if page["stopped"] is not None:
            break
    assert len(traced) == 400 and page["stopped"] == "count"
    assert [t["direction"] for t in traced].count("out") == 200  # every echo, and its ask
    assert all(len(t["term"]) <= 600 for t in traced)
