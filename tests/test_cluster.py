"""ClusterNode between nodes in one process: messages, calls, names, spawn, failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rusm.actors import Call, CallFailed, Down, Exit, NoProc, Pid, Process, Runtime, Timeout
from rusm.net import (
    ClusterCa,
    ClusterConfig,
    ClusterNode,
    GlobalNameConflict,
    LinkRejected,
    NodeDown,
    NodeNotConnected,
    SpawnFailed,
    UnknownFactory,
)

from .helpers import idle, probe, until

LOCAL = ("127.0.0.1", 0)


@pytest.fixture(scope="module")
def ca() -> ClusterCa:
    return ClusterCa.generate()


class Cluster:
    """Nodes made for one test; all closed at its end, leaving no task."""

    def __init__(self, ca: ClusterCa) -> None:
        self.ca = ca
        self.nodes: list[ClusterNode] = []

    async def node(self, name: str, **config: Any) -> ClusterNode:
        node = await ClusterNode.bind(
            name, Runtime(), LOCAL, self.ca.issue(name), ClusterConfig(**config)
        )
        self.nodes.append(node)
        return node

    async def pair(self) -> tuple[ClusterNode, ClusterNode]:
        london, tokyo = await self.node("london"), await self.node("tokyo")
        await tokyo.connect(london.local_addr())
        return london, tokyo


@pytest.fixture
async def cluster(ca: ClusterCa) -> AsyncIterator[Cluster]:
    c = Cluster(ca)
    try:
        yield c
    finally:
        for node in c.nodes:
            await node.close()
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"closed nodes left tasks behind: {left}"


async def echo(proc: Process) -> None:
    while True:
        msg = await proc.receive()
        if isinstance(msg, Call):
            msg.reply(("echo", msg.request))
        elif isinstance(msg, tuple) and msg[0] == "reply_to":
            proc.send(msg[1], ("echoed", msg[2]))


def serve_echo(node: ClusterNode, name: str = "echo") -> Pid:
    pid = node.runtime.spawn(echo)
    node.runtime.register(name, pid)
    return pid


async def test_connected_nodes_list_each_other(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    assert london.nodes() == ["tokyo"] and tokyo.nodes() == ["london"]


async def test_a_message_by_name_arrives_with_tuples_kept(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    p = await probe(london.runtime)
    london.runtime.register("inbox", p.pid)
    tokyo.send("london", "inbox", b"hi")
    assert await p.next() == b"hi"
    tokyo.runtime.send(("inbox", "london"), ("a", [1, {"k": (2, 3)}], None))
    assert await p.next() == ("a", [1, {"k": (2, 3)}], None)


async def test_a_remote_node_handle_sends_and_calls(cluster: Cluster) -> None:
    london, tokyo = await cluster.node("london"), await cluster.node("tokyo")
    serve_echo(london)
    remote = await tokyo.connect(london.local_addr())
    assert remote.name == "london"
    assert await remote.call("echo", 7) == ("echo", 7)


async def test_a_pid_received_in_a_message_can_be_replied_to(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    serve_echo(london)
    p = await probe(tokyo.runtime)
    p.proc.send(("echo", "london"), ("reply_to", p.pid, "x"))
    assert await p.next() == ("echoed", "x")


async def test_a_call_across_nodes_returns_the_reply_or_fails_typed(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    serve_echo(london)
    assert await tokyo.call("london", "echo", {"q": 1}) == ("echo", {"q": 1})
    with pytest.raises(NoProc):
        await tokyo.call("london", "nobody", 1)

    async def silent(proc: Process) -> None:
        await proc.receive()
        await proc.receive()

    london.runtime.register("silent", london.runtime.spawn(silent))
    with pytest.raises(Timeout):
        await tokyo.call("london", "silent", 1, timeout=0.2)
    with pytest.raises(CallFailed) as failed:  # at once, not after the timeout
        await tokyo.call("paris", "echo", 1, timeout=60)
    assert failed.value.reason == "noconnection"


async def test_a_remote_call_monitors_the_callee_only_until_it_is_answered(
    cluster: Cluster,
) -> None:
    london, tokyo = await cluster.pair()
    held: list[Call] = []
    got = asyncio.Event()

    async def holder(proc: Process) -> None:
        while True:
            msg = await proc.receive()
            held.append(msg)
            got.set()

    callee = london.runtime.spawn(holder)
    london.runtime.register("holder", callee)

    def monitored_by() -> tuple[Pid, ...]:
        return london.runtime.process_info(callee).monitored_by  # type: ignore[union-attr]

    # While the call is open the callee is monitored (the CallRequest implies it) ...
    call = asyncio.ensure_future(tokyo.call("london", "holder", "q"))
    await got.wait()
    caller = held[0].caller
    assert monitored_by() == (caller,)
    # ... and the reply ends it on both sides: no Demonitor is needed.
    held[0].reply("a")
    assert await call == "a"
    assert monitored_by() == ()
    # A caller that gives up sends Demonitor, so the callee is left unmonitored.
    got.clear()
    with pytest.raises(Timeout):
        await tokyo.call("london", "holder", "q2", timeout=0.1)
    await _until(lambda: monitored_by() == ())
    # A callee that exits before replying fails the call with its reason.
    got.clear()
    call = asyncio.ensure_future(tokyo.call("london", "holder", "q3"))
    await got.wait()
    london.runtime.exit(callee, "gone")
    with pytest.raises(CallFailed) as failed:
        await call
    assert failed.value.reason == "gone"


async def test_a_term_that_cannot_cross_the_wire_fails_at_the_sender(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    serve_echo(london)
    with pytest.raises(TypeError, match="set"):
        tokyo.send("london", "echo", {1, 2})
    # the pair's sequence has no gap: the next message still arrives
    assert await tokyo.call("london", "echo", "after") == ("echo", "after")


async def test_messages_of_one_pair_arrive_in_order(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    p = await probe(london.runtime)
    london.runtime.register("sink", p.pid)

    async def sender(proc: Process) -> None:
        for i in range(3000):
            proc.send(("sink", "london"), i)
            if i % 50 == 0:
                await asyncio.sleep(0)  # many loop turns: many streams in flight

    tokyo.runtime.spawn(sender)
    assert [await p.next() for _ in range(3000)] == list(range(3000))


async def test_a_global_name_is_known_on_every_node_including_late_joiners(
    cluster: Cluster,
) -> None:
    london, tokyo = await cluster.pair()
    p = await probe(london.runtime)
    await london.register_global("svc", p.pid)
    paris = await cluster.node("paris")
    await paris.connect(tokyo.local_addr())  # paris never talks to london directly
    await _until(lambda: paris.whereis_global_pid("svc") == p.pid)
    assert tokyo.whereis_global_pid("svc") == p.pid
    assert paris.whereis_global("svc") == tokyo.whereis_global("svc") == "london"  # the owner
    paris.send_global("svc", "via paris")  # paris has no link to london: dead letter
    tokyo.send_global("svc", "via tokyo")
    assert await p.next() == "via tokyo"


async def test_a_global_name_goes_when_its_process_exits_or_its_node_goes_down(
    cluster: Cluster,
) -> None:
    london, tokyo = await cluster.pair()
    a, b = london.runtime.spawn(idle), london.runtime.spawn(idle)
    await london.register_global("a", a)
    await london.register_global("b", b)
    await _until(lambda: tokyo.whereis_global_pid("b") == b)
    london.runtime.kill(a)
    await _until(lambda: tokyo.whereis_global("a") is None)
    assert london.whereis_global("a") is None
    await london.close()
    await _until(lambda: tokyo.whereis_global("b") is None)


async def test_a_global_name_conflict_resolves_the_same_everywhere_and_tells_the_loser(
    cluster: Cluster,
) -> None:
    london, tokyo = await cluster.node("london"), await cluster.node("tokyo")
    lp, tp = await probe(london.runtime), await probe(tokyo.runtime)
    await london.register_global("svc", lp.pid)
    await tokyo.register_global("svc", tp.pid)  # two clusters with one name, then they join
    await tokyo.connect(london.local_addr())
    winner = min(lp.pid, tp.pid)  # the documented rule: the pid that sorts first
    loser = tp if winner == lp.pid else lp
    assert await loser.next() == GlobalNameConflict("svc", winner)
    await _until(
        lambda: london.whereis_global_pid("svc") == tokyo.whereis_global_pid("svc") == winner
    )


async def test_a_node_spawns_only_what_it_was_taught(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    started: asyncio.Queue[Any] = asyncio.Queue()

    async def worker(proc: Process, a: int, b: str) -> None:
        started.put_nowait((proc.pid, a, b))
        await proc.receive()

    london.register_spawnable("worker", worker)
    pid = await tokyo.spawn_remote("london", "worker", [1, "x"])
    assert pid.node == "london"
    assert await asyncio.wait_for(started.get(), 5) == (pid, 1, "x")
    assert pid in await tokyo.remote_pids("london")
    info = await tokyo.remote_process_info("london", pid)
    assert info is not None and info["label"] == "worker" and info["status"] == "waiting"
    with pytest.raises(UnknownFactory, match="no spawnable 'nope'"):
        await tokyo.spawn_remote("london", "nope", [])
    with pytest.raises(SpawnFailed):
        await tokyo.spawn_remote("london", "worker", [1])  # missing an argument
    with pytest.raises(NodeNotConnected):
        await tokyo.spawn_remote("paris", "worker", [1, "x"])
    assert london.nodes() == ["tokyo"]  # the node stayed up through the bad requests


async def test_monitors_and_links_across_nodes_report_the_exit_reason(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    target = london.runtime.spawn(idle)
    watcher = await probe(tokyo.runtime, trap=True)
    ref = watcher.proc.monitor(target)
    watcher.proc.link(target)
    await _until(_watched(london, target, watcher.pid))
    london.runtime.exit(target, "bye")
    got = {await watcher.next(), await watcher.next()}
    assert got == {Down(ref, target, "bye"), Exit(target, "bye")}


async def test_a_monitor_of_a_missing_remote_process_gives_noproc(cluster: Cluster) -> None:
    _, tokyo = await cluster.pair()
    watcher = await probe(tokyo.runtime)
    ghost = Pid("london", 999)
    ref = watcher.proc.monitor(ghost)
    assert await watcher.next() == Down(ref, ghost, "noproc")


async def test_when_a_node_goes_down_monitors_links_and_node_monitors_fire_once(
    cluster: Cluster,
) -> None:
    london, tokyo = await cluster.pair()
    serve_echo(london)
    target = london.runtime.spawn(idle)
    watcher = await probe(tokyo.runtime, trap=True)
    ref = watcher.proc.monitor(target)
    watcher.proc.link(target)
    tokyo.monitor_node("london", watcher.pid)
    await _until(_watched(london, target, watcher.pid))
    await london.close()
    got = [await watcher.next() for _ in range(3)]
    assert Down(ref, target, "noconnection") in got or Down(ref, target, "shutdown") in got
    assert NodeDown("london") in got
    await watcher.nothing_more()
    assert tokyo.nodes() == []


async def test_a_lost_link_gives_noconnection(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    target = london.runtime.spawn(idle)
    watcher = await probe(tokyo.runtime, trap=True)
    ref = watcher.proc.monitor(target)
    watcher.proc.link(target)
    tokyo.monitor_node("london", watcher.pid)
    await _until(_watched(london, target, watcher.pid))
    assert tokyo.disconnect("london", "cable cut")  # the link only: both nodes stay up
    got = {await watcher.next() for _ in range(3)}
    assert got == {Down(ref, target, "noconnection"), Exit(target, "noconnection"),
                   NodeDown("london")}
    await watcher.nothing_more()
    assert london.runtime.is_alive(target)


async def test_monitoring_a_node_that_is_not_connected_reports_it_down_at_once(
    cluster: Cluster,
) -> None:
    tokyo = await cluster.node("tokyo")
    watcher = await probe(tokyo.runtime)
    tokyo.monitor_node("atlantis", watcher.pid)
    assert await watcher.next() == NodeDown("atlantis")


async def test_a_node_can_reconnect_after_its_peer_restarts(cluster: Cluster) -> None:
    london, tokyo = await cluster.pair()
    addr = london.local_addr()
    await london.close()
    await _until(lambda: tokyo.nodes() == [])
    london2 = await ClusterNode.bind("london", Runtime(), addr, cluster.ca.issue("london"))
    cluster.nodes.append(london2)
    serve_echo(london2)
    await tokyo.connect(addr)
    assert tokyo.nodes() == ["london"]
    assert await tokyo.call("london", "echo", 1) == ("echo", 1)


async def test_a_second_node_with_a_taken_name_is_refused(cluster: Cluster) -> None:
    london, _ = await cluster.pair()
    impostor = await ClusterNode.bind(
        "tokyo", Runtime(), LOCAL, cluster.ca.issue("tokyo")
    )
    cluster.nodes.append(impostor)
    with pytest.raises(LinkRejected, match="already connected"):
        await impostor.connect(london.local_addr())
    assert london.nodes() == ["tokyo"]


async def test_bind_refuses_an_identity_issued_for_another_node(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="identity is for node 'paris'"):
        await ClusterNode.bind("tokyo", Runtime(), LOCAL, cluster.ca.issue("paris"))


async def _until(condition: Any) -> None:
    """Gossip and signals have no reply to wait on: yield until the state shows them."""
    await until(condition)


def _watched(node: ClusterNode, target: Pid, watcher: Pid) -> Any:
    """Signals of different pairs travel independently: look at the target's side."""
    def check() -> bool:
        info = node.runtime.process_info(target)
        return info is not None and watcher in info.monitored_by and watcher in info.links
    return check


def test_nodes_run_on_uvloop_too(ca: ClusterCa) -> None:
    """uvloop's datagram transport differs from the stock one (no ``max_size``)."""
    import uvloop

    async def main() -> tuple[Any, str]:
        c = Cluster(ca)
        try:
            london, tokyo = await c.pair()
            serve_echo(london)
            loop_module = type(asyncio.get_running_loop()).__module__
            return await tokyo.call("london", "echo", 7), loop_module
        finally:
            for node in c.nodes:
                await node.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        reply, loop_module = runner.run(main())
    assert loop_module.startswith("uvloop")
    assert reply == ("echo", 7)


def lanes_open(*nodes: ClusterNode) -> int:
    """The most lanes any link of these nodes has open, in or out."""
    return max(
        max(link.stats()["lanes_in"], link.stats()["lanes_out"])
        for node in nodes
        for link in map(node.link_to, node.nodes())
        if link is not None
    )


async def worker(proc: Process, echo_pid: Pid, done: asyncio.Queue[Any]) -> None:
    """Uses every kind of pair with london's echo, then exits."""
    ref = proc.monitor(echo_pid)
    proc.link(echo_pid)
    proc.send(("echo", "london"), ("reply_to", proc.pid, 1))
    echoed = await proc.receive()
    answer = await proc.call(echo_pid, 2)
    proc.demonitor(ref)
    proc.unlink(echo_pid)
    await done.put((echoed, answer))


async def test_a_link_keeps_no_state_per_pair_however_many_processes_used_it(
    cluster: Cluster,
) -> None:
    """Pairs ride lanes: a node that talks with ever new processes keeps a
    fixed number of streams, not a state per pair."""
    london, tokyo = await cluster.pair()
    echo_pid = serve_echo(london)
    done: asyncio.Queue[Any] = asyncio.Queue()
    for _round in range(2):  # a second round of new processes on the same lanes
        for _ in range(30):
            tokyo.runtime.spawn(worker, echo_pid, done)
        for _ in range(30):
            assert await asyncio.wait_for(done.get(), 5) == (("echoed", 1), ("echo", 2))
    assert lanes_open(london, tokyo) <= ClusterConfig().lanes
    assert london.runtime.dead_letters == 0 and tokyo.runtime.dead_letters == 0


async def test_signals_to_a_dead_remote_process_answer_noproc_and_count_dead_letters(
    cluster: Cluster,
) -> None:
    london, tokyo = await cluster.pair()
    ghost = london.runtime.spawn(idle)
    london.runtime.kill(ghost)
    watcher = await probe(tokyo.runtime, trap=True)
    for _ in range(3):
        watcher.proc.send(ghost, "lost")
        ref = watcher.proc.monitor(ghost)
        assert await watcher.next() == Down(ref, ghost, "noproc")
        watcher.proc.link(ghost)
        assert await watcher.next() == Exit(ghost, "noproc")
    await until(lambda: london.runtime.dead_letters == 3, "three dead letters on london")


async def test_a_registry_larger_than_one_control_frame_reaches_a_new_peer_whole(
    cluster: Cluster,
) -> None:
    london = await cluster.node("london")
    p = await probe(london.runtime)
    for i in range(3000):  # ~160 KB of names: the sync is split over several frames
        await london.register_global(f"service-number-{i:05}", p.pid)
    tokyo = await cluster.node("tokyo")
    await tokyo.connect(london.local_addr())
    await until(lambda: len(tokyo.registry.names) == 3000, "all 3000 names on tokyo")
    assert tokyo.whereis_global("service-number-02999") == "london"


async def test_two_nodes_connecting_to_each_other_at_once_end_with_one_link(
    cluster: Cluster,
) -> None:
    """Both connects succeed and both nodes keep the same link (the one the
    node whose name sorts first opened), as BEAM distribution settles it."""
    for _ in range(5):
        london, tokyo = await cluster.node("london"), await cluster.node("tokyo")
        serve_echo(london)
        remotes = await asyncio.gather(
            london.connect(tokyo.local_addr()), tokyo.connect(london.local_addr())
        )
        assert [r.name for r in remotes] == ["tokyo", "london"]
        assert london.nodes() == ["tokyo"] and tokyo.nodes() == ["london"]
        assert await tokyo.call("london", "echo", 1) == ("echo", 1)
        await london.close()
        await tokyo.close()
        cluster.nodes.clear()


async def test_an_exit_reason_too_large_for_a_frame_still_reaches_linked_processes(
    cluster: Cluster,
) -> None:
    london, tokyo = await cluster.pair()
    remote_watcher = await probe(tokyo.runtime, trap=True)
    local_watcher = await probe(london.runtime, trap=True)
    target = london.runtime.spawn(idle)
    remote_watcher.proc.link(target)
    local_watcher.proc.link(target)
    await until(lambda: len(london.runtime.process_info(target).links) == 2, "both links")
    london.runtime.exit(target, b"x" * 2_000_000)  # over the 1 MiB message frame
    local = await local_watcher.next()
    assert local == Exit(target, b"x" * 2_000_000)
    remote = await remote_watcher.next()
    assert isinstance(remote, Exit) and remote.pid == target
    assert isinstance(remote.reason, str) and remote.reason.endswith("(2000003 characters)")
    assert len(remote.reason) < 1100  # its start, with the length of the whole


async def test_connecting_again_to_a_linked_node_is_refused_and_leaves_the_link_alone(
    cluster: Cluster,
) -> None:
    london, tokyo = await cluster.pair()  # tokyo connected to london
    watcher = await probe(london.runtime)
    london.monitor_node("tokyo", watcher.pid)
    with pytest.raises(LinkRejected, match="already connected"):
        await london.connect(tokyo.local_addr())  # london's name sorts first: no matter
    serve_echo(tokyo)
    assert await london.call("tokyo", "echo", 2) == ("echo", 2)
    info = london.runtime.process_info(watcher.pid)
    assert info is not None and info.mailbox_depth == 0  # no NodeDown: the link stayed
