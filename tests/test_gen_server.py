"""GenServer: callbacks, call/cast/reply later, stop, timeouts, supervision, names,
code upgrade between two messages, the state the observer reads, cross-node calls."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rusm.actors import (
    Call,
    CallFailed,
    ChildSpec,
    CodeChangeFailed,
    Down,
    From,
    GenServer,
    IdleTimeout,
    NameTaken,
    NoProc,
    NoReply,
    Process,
    Reply,
    Runtime,
    StartFailed,
    Stop,
    Supervisor,
    Timeout,
)
from rusm.actors.gen_server import server_info, servers
from rusm.net import ClusterCa, ClusterNode

from .helpers import EVENT_TIMEOUT, probe, until

LOCAL = ("127.0.0.1", 0)


async def next_event(events: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(events.get(), EVENT_TIMEOUT)


class Recorder(GenServer):
    """Keeps a list of what it was told; reports its callbacks to a queue."""

    def init(self, events: asyncio.Queue[Any], *items: Any) -> Any:
        self.events = events
        events.put_nowait(("init", items))
        return list(items)

    def handle_call(self, request: Any, from_: From, state: Any) -> Any:
        match request:
            case "get":
                return Reply(state, state)
            case ("put", x):
                return Reply("ok", [*state, x])
            case ("stop", reason):
                return Stop(reason, [*state, "stopping"], reply="stopping")
            case "bad":
                return "not a result"
            case "crash":
                raise ValueError("crashed in handle_call")
        raise AssertionError(request)

    async def handle_cast(self, request: Any, state: Any) -> Any:  # callbacks may be async
        await asyncio.sleep(0)
        return NoReply([*state, ("cast", request)])

    def handle_info(self, message: Any, state: Any) -> Any:
        self.events.put_nowait(("info", message))
        return NoReply([*state, ("info", message)])

    def terminate(self, reason: Any, state: Any) -> None:
        self.events.put_nowait(("terminate", reason, state))


async def test_init_call_cast_info_and_terminate_see_the_state_in_order(rt: Runtime) -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()
    pid = await Recorder.start(rt, events, "a")
    assert await next_event(events) == ("init", ("a",))
    assert await GenServer.call(rt, pid, ("put", "b")) == "ok"
    GenServer.cast(rt, pid, "c")
    rt.send(pid, "d")
    assert await next_event(events) == ("info", "d")
    assert await rt.call(pid, "get") == ["a", "b", ("cast", "c"), ("info", "d")]
    await GenServer.stop(rt, pid, "done")
    assert not rt.is_alive(pid)
    assert await next_event(events) == (
        "terminate", "done", ["a", "b", ("cast", "c"), ("info", "d")])


async def test_a_reply_may_come_later_from_another_process(rt: Runtime) -> None:
    class Deferring(GenServer):
        async def handle_call(self, request: Any, from_: From, state: Any) -> Any:
            async def later(proc: Process, caller: From) -> None:
                GenServer.reply(caller, ("later", request))

            self.proc.spawn(later, from_)
            return NoReply(state + 1)

    pid = await Deferring.start(rt, 0)
    assert await GenServer.call(rt, pid, "q") == ("later", "q")
    assert await GenServer.get_state(rt, pid) == 1


async def test_stop_with_a_reason_runs_terminate_and_a_monitor_sees_the_reason(
    rt: Runtime,
) -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()
    watcher = await probe(rt)
    pid = await Recorder.start(rt, events)
    await next_event(events)
    ref = watcher.proc.monitor(pid)
    await GenServer.stop(rt, pid, "maintenance")
    assert await watcher.next() == Down(ref, pid, "maintenance")
    assert await next_event(events) == ("terminate", "maintenance", [])
    with pytest.raises(NoProc):
        await GenServer.stop(rt, pid)


async def test_returning_stop_replies_after_terminate_then_exits_with_its_reason(
    rt: Runtime,
) -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()
    watcher = await probe(rt)
    pid = await Recorder.start(rt, events, "x")
    await next_event(events)
    ref = watcher.proc.monitor(pid)
    assert await rt.call(pid, ("stop", "asked to")) == "stopping"
    assert await next_event(events) == ("terminate", "asked to", ["x", "stopping"])
    assert await watcher.next() == Down(ref, pid, "asked to")


async def test_a_crash_or_a_bad_return_value_runs_terminate_and_fails_the_call(
    rt: Runtime,
) -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()
    for request, error in (("crash", ValueError), ("bad", TypeError)):
        pid = await Recorder.start(rt, events, request)
        await next_event(events)
        with pytest.raises(CallFailed) as info:
            await rt.call(pid, request)
        assert isinstance(info.value.reason, error)
        kind, reason, state = await next_event(events)
        assert (kind, reason, state) == ("terminate", info.value.reason, [request])


async def test_a_call_that_is_not_answered_in_time_raises_the_runtimes_timeout(
    rt: Runtime,
) -> None:
    class Silent(GenServer):
        def handle_call(self, request: Any, from_: From, state: Any) -> Any:
            return NoReply(state)  # and nobody replies

    pid = await Silent.start(rt)
    with pytest.raises(Timeout):
        await GenServer.call(rt, pid, "anyone?", timeout=0.05)
    assert rt.is_alive(pid)


async def test_an_idle_timeout_delivers_idle_timeout_to_handle_info(rt: Runtime) -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()

    class Idle(GenServer):
        def init(self) -> Any:
            return NoReply("started", timeout=0.01)  # init may ask for one too

        def handle_call(self, request: Any, from_: From, state: Any) -> Any:
            return Reply(state, state, timeout=0.01)

        def handle_info(self, message: Any, state: Any) -> Any:
            events.put_nowait(message)
            return NoReply("timed out")  # no timeout: none comes again

    pid = await Idle.start(rt)
    assert await next_event(events) == IdleTimeout(0.01)
    assert await rt.call(pid, "state?") == "timed out"
    assert await next_event(events) == IdleTimeout(0.01)
    assert await GenServer.get_state(rt, pid) == "timed out"
    assert events.empty()


async def test_a_named_server_is_reached_by_name_and_its_name_cannot_be_taken_twice(
    rt: Runtime,
) -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()
    pid = await Recorder.start(rt, events, "one", name="recorder")
    assert rt.whereis("recorder") == pid
    assert await GenServer.call(rt, "recorder", "get") == ["one"]
    count = rt.process_count()
    with pytest.raises(NameTaken):
        await Recorder.start(rt, events, "two", name="recorder")
    assert rt.process_count() == count
    await GenServer.stop(rt, "recorder")
    assert rt.whereis("recorder") is None


async def test_start_fails_when_init_raises_or_stops_and_leaves_no_process(rt: Runtime) -> None:
    class Refuses(GenServer):
        def init(self, how: str) -> Any:
            if how == "raise":
                raise RuntimeError("no config")
            return Stop("not today")

    with pytest.raises(StartFailed) as raised:
        await Refuses.start(rt, "raise", name="refuses")
    assert isinstance(raised.value.reason, RuntimeError)
    assert raised.value.__cause__ is raised.value.reason
    with pytest.raises(StartFailed) as stopped:
        await Refuses.start(rt, "stop")
    assert stopped.value.reason == "not today"
    assert rt.process_count() == 0 and rt.registered() == []


async def test_start_gives_up_on_a_slow_init_with_the_runtimes_timeout(rt: Runtime) -> None:
    class Slow(GenServer):
        async def init(self) -> Any:
            await asyncio.Event().wait()

    with pytest.raises(Timeout):
        await Slow.start(rt, timeout=0.05)
    assert rt.process_count() == 0


async def test_a_trapping_server_stops_on_its_parents_exit_and_runs_terminate(
    rt: Runtime,
) -> None:
    events: asyncio.Queue[Any] = asyncio.Queue()

    class Trapping(Recorder):
        def init(self, events: asyncio.Queue[Any], *items: Any) -> Any:
            self.proc.trap_exits = True
            return super().init(events, *items)

    parent = await probe(rt)
    watcher = await probe(rt)
    started: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def linked_start(proc: Process) -> None:
        started.set_result(await Trapping.start(proc, events, link=True))
        await proc.receive()

    starter = parent.proc.spawn_link(linked_start)
    pid = await asyncio.wait_for(started, EVENT_TIMEOUT)
    await next_event(events)
    assert rt.process_info(pid).links == (starter,)  # type: ignore[union-attr]
    ref = watcher.proc.monitor(pid)
    rt.exit(starter, "parent failed")
    assert await watcher.next() == Down(ref, pid, "parent failed")
    assert await next_event(events) == ("terminate", "parent failed", [])


class Crashy(GenServer):
    def init(self, n: int) -> Any:
        return n

    def handle_call(self, request: Any, from_: From, state: Any) -> Any:
        return Reply(state, state)

    def handle_cast(self, request: Any, state: Any) -> Any:
        if request == "crash":
            raise RuntimeError("bad cast")
        return NoReply(state + request)


async def test_a_supervisor_restarts_a_crashing_server_under_its_name_with_fresh_state(
    rt: Runtime,
) -> None:
    watcher = await probe(rt)
    sup = rt.spawn(Supervisor([Crashy.child_spec(10, id="crashy", name="crashy")]))
    before = dict(await rt.call(sup, "which_children"))["crashy"]
    assert before is not None
    GenServer.cast(rt, "crashy", 5)
    assert await GenServer.call(rt, "crashy", "get") == 15
    ref = watcher.proc.monitor(before)
    GenServer.cast(rt, "crashy", "crash")
    down = await watcher.next()
    assert down.ref == ref and isinstance(down.reason, RuntimeError)
    after = dict(await rt.call(sup, "which_children"))["crashy"]
    assert after not in (None, before) and rt.whereis("crashy") == after
    assert await GenServer.call(rt, "crashy", "get") == 10
    assert rt.process_info(after).label == "crashy"  # type: ignore[union-attr]


async def test_a_plain_child_spec_can_run_a_server_too(rt: Runtime) -> None:
    sup = rt.spawn(Supervisor([ChildSpec("c", Crashy.serve, (1,), name="c")]))
    await rt.call(sup, "which_children")
    assert await GenServer.call(rt, "c", "get") == 1


# -- code upgrade ---------------------------------------------------------------


class CounterV1(GenServer):
    """State: the list of casts seen, each tagged with the code that took it."""

    vsn = 1

    def init(self) -> Any:
        return []

    def handle_call(self, request: Any, from_: From, state: Any) -> Any:
        return Reply(("v1", state), state)

    def handle_cast(self, request: Any, state: Any) -> Any:
        return NoReply([*state, ("v1", request)])


class CounterV2(GenServer):
    """State: a dict, migrated by code_change; code_change waits for ``gate``."""

    vsn = 2
    gate: asyncio.Event
    entered: asyncio.Event

    async def code_change(self, old_vsn: Any, state: Any, extra: Any) -> Any:
        self.entered.set()
        await self.gate.wait()  # messages sent meanwhile queue up
        return {"from": old_vsn, "extra": extra, "seen": list(state)}

    def handle_call(self, request: Any, from_: From, state: Any) -> Any:
        return Reply(("v2", state), state)

    def handle_cast(self, request: Any, state: Any) -> Any:
        return NoReply({**state, "seen": [*state["seen"], ("v2", request)]})


class BrokenV2(CounterV2):
    def code_change(self, old_vsn: Any, state: Any, extra: Any) -> Any:
        raise KeyError("cannot migrate")

    def handle_call(self, request: Any, from_: From, state: Any) -> Any:
        return Reply(("broken", state), state)


async def test_upgrade_migrates_the_state_between_two_messages_and_loses_none(
    rt: Runtime,
) -> None:
    CounterV2.gate, CounterV2.entered = asyncio.Event(), asyncio.Event()
    pid = await CounterV1.start(rt, name="counter")
    for i in range(50):
        GenServer.cast(rt, "counter", i)
    upgrading = asyncio.ensure_future(GenServer.upgrade(rt, "counter", CounterV2, "reload"))
    await asyncio.wait_for(CounterV2.entered.wait(), EVENT_TIMEOUT)  # behind the 50 casts
    for i in range(50, 100):
        GenServer.cast(rt, "counter", i)
    mid_call = asyncio.ensure_future(GenServer.call(rt, pid, "get"))
    await until(lambda: rt.process_info(pid).mailbox_depth == 51, "the call queued")  # type: ignore[union-attr]
    for i in range(100, 150):
        GenServer.cast(rt, "counter", i)
    info = server_info(rt, pid)  # mid-change: still the old code and state
    assert info is not None and (info.vsn, len(info.state)) == (1, 50)
    CounterV2.gate.set()
    assert await asyncio.wait_for(upgrading, EVENT_TIMEOUT) == (1, 2)
    code, state = await mid_call
    assert code == "v2" and state["from"] == 1 and state["extra"] == "reload"
    assert state["seen"] == [("v1", i) for i in range(50)] + [("v2", i) for i in range(50, 100)]
    code, state = await GenServer.call(rt, pid, "get")
    assert [n for _, n in state["seen"]] == list(range(150))
    info = server_info(rt, "counter")
    assert info is not None and (info.callbacks, info.vsn, info.state) == (CounterV2, 2, state)


async def test_a_code_change_that_raises_keeps_the_old_code_and_state_and_reports_it(
    rt: Runtime,
) -> None:
    pid = await CounterV1.start(rt)
    GenServer.cast(rt, pid, "kept")
    with pytest.raises(CodeChangeFailed) as failed:
        await GenServer.upgrade(rt, pid, BrokenV2, None)
    assert isinstance(failed.value.reason, KeyError)
    assert failed.value.__cause__ is failed.value.reason
    assert "cannot migrate" in failed.value.traceback and "code_change" in failed.value.traceback
    assert await GenServer.call(rt, pid, "get") == ("v1", [("v1", "kept")])
    GenServer.cast(rt, pid, "after")
    assert await GenServer.call(rt, pid, "get") == ("v1", [("v1", "kept"), ("v1", "after")])
    assert server_info(rt, pid).callbacks is CounterV1  # type: ignore[union-attr]


async def test_upgrade_refuses_what_is_not_a_running_gen_server(rt: Runtime) -> None:
    async def plain(proc: Process) -> None:
        await proc.receive()

    with pytest.raises(TypeError):
        await GenServer.upgrade(rt, rt.spawn(plain), CounterV2)
    with pytest.raises(NoProc):
        await GenServer.upgrade(rt, "nobody", CounterV2)
    with pytest.raises(TypeError):
        await GenServer.upgrade(rt, await CounterV1.start(rt), object)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="other"):
        await GenServer.upgrade(rt, ("counter", "other"), CounterV2)


async def test_callbacks_are_looked_up_on_the_class_at_each_message(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Patched(CounterV1):
        pass

    pid = await Patched.start(rt)
    assert await rt.call(pid, "get") == ("v1", [])
    monkeypatch.setattr(
        Patched, "handle_call", lambda self, request, from_, state: Reply("patched", state))
    assert await rt.call(pid, "get") == "patched"


# -- the state the observer shows ------------------------------------------------


async def test_the_state_is_readable_without_a_message_even_while_a_callback_is_stuck(
    rt: Runtime,
) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    class Stuck(GenServer):
        async def handle_call(self, request: Any, from_: From, state: Any) -> Any:
            entered.set()
            await release.wait()
            return Reply(state, state + 1)

    pid = await Stuck.start(rt, 41, name="stuck")
    call = asyncio.ensure_future(rt.call(pid, "q"))
    await asyncio.wait_for(entered.wait(), EVENT_TIMEOUT)
    assert server_info(rt, "stuck") == server_info(rt, pid)
    assert server_info(rt, pid).state == 41  # type: ignore[union-attr]
    assert [(s.pid, s.callbacks, s.vsn) for s in servers(rt)] == [(pid, Stuck, 1)]
    release.set()
    assert await call == 41
    assert server_info(rt, pid).state == 42  # type: ignore[union-attr]
    await GenServer.stop(rt, pid)
    assert server_info(rt, pid) is None


# -- across nodes ------------------------------------------------------------------


@pytest.fixture
async def two_nodes() -> AsyncIterator[tuple[ClusterNode, ClusterNode]]:
    ca = ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"))
    tokyo = await ClusterNode.bind("tokyo", Runtime(), LOCAL, ca.issue("tokyo"))
    try:
        await tokyo.connect(london.local_addr())
        yield london, tokyo
    finally:
        await tokyo.close()
        await london.close()


async def test_a_server_answers_calls_casts_and_stop_from_another_node(
    two_nodes: tuple[ClusterNode, ClusterNode],
) -> None:
    london, tokyo = two_nodes
    pid = await Crashy.start(london.runtime, 1, name="counter")
    where = ("counter", "london")
    GenServer.cast(tokyo, where, 2)
    assert await GenServer.call(tokyo, where, "get") == 3
    assert await tokyo.call("london", "counter", "get") == 3  # the node's own call API
    assert await GenServer.get_state(tokyo.runtime, pid) == 3
    watcher = await probe(london.runtime)
    ref = watcher.proc.monitor(pid)
    await GenServer.stop(tokyo, where, "moved")
    assert await watcher.next() == Down(ref, pid, "moved")


# -- the docs ------------------------------------------------------------------------


def test_the_gen_server_example_in_the_docs_runs_as_written() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "ACTORS.md").read_text()
    section = doc.split("## GenServer", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "15", "(1, 2)", "{'count': 16, 'upgraded_from': 1}", "bye", "True",
    ]


def test_call_is_the_runtimes_own_call_protocol() -> None:
    assert From is Call
