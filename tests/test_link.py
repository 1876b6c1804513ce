"""The link protocol alone, sans I/O: two LinkProtocols pumped into each other
in memory, no socket and no engine (as the codec tests pump FrameDecoders).
The nodes are real ClusterNodes that were never bound to an address."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rusm.actors import Process, Runtime
from rusm.actors.pid import Ref
from rusm.net import ClusterCa, ClusterConfig, ClusterNode
from rusm.net.errors import DuplicateNode, HelloExpected, HelloTimeout, NodeNotConnected
from rusm.net.link import FLUSH_BYTES, FLUSH_FIRST, LinkProtocol, LinkState, lane_of
from rusm.net.wire import Monitor, Msg, encode_frame

from .helpers import probe, until


class Wire:
    """Two protocols and what each side sends the other, delivered on pump()."""

    def __init__(self, connector: LinkProtocol, listener: LinkProtocol) -> None:
        self.sides = ((connector, listener), (listener, connector))
        self.lanes_seen: set[int] = set()

    def pump(self) -> int:
        """Deliver until both sides are quiet; returns the bytes moved."""
        moved = 0
        while True:
            before = moved
            for sender, receiver in self.sides:
                control, lanes = sender.data_to_send()
                if control:
                    receiver.receive_control(control, False)
                    moved += len(control)
                for lane, data in lanes.items():
                    self.lanes_seen.add(lane)
                    receiver.receive_lane((id(sender), lane), data, False)
                    moved += len(data)
            if moved == before:
                return moved


NODES: list[ClusterNode] = []


def node(ca: ClusterCa, name: str, **config: Any) -> ClusterNode:
    made = ClusterNode(name, Runtime(), ca.issue(name), ClusterConfig(**config), hidden=False)
    NODES.append(made)
    return made


@pytest.fixture(autouse=True)
async def close_nodes() -> Any:
    yield
    while NODES:
        await NODES.pop().close()


def linked(
    a: ClusterNode, b: ClusterNode, wakeup: Any = lambda: None, flush: Any = None
) -> tuple[LinkProtocol, LinkProtocol, Wire]:
    """a connects to b: their protocols, the handshake done, nothing sent yet.
    ``wakeup`` is what a's side calls when it has something to send, and
    ``flush`` (if given) when it holds enough to send at once."""
    a_side = LinkProtocol(a, True, lambda: list(b.identity.chain), wakeup, flush)
    b_side = LinkProtocol(b, False, lambda: list(a.identity.chain), lambda: None)
    for side in (a_side, b_side):
        side.handshake_done()
    return a_side, b_side, Wire(a_side, b_side)


@pytest.fixture(scope="module")
def ca() -> ClusterCa:
    return ClusterCa.generate()


async def test_the_hello_exchange_brings_both_sides_up_and_lists_them(ca: ClusterCa) -> None:
    london, tokyo = node(ca, "london"), node(ca, "tokyo")
    conn, lis, wire = linked(tokyo, london)
    assert (conn.state, lis.state) == (LinkState.HELLO, LinkState.HELLO)
    wire.pump()
    assert (conn.state, lis.state) == (LinkState.UP, LinkState.UP)
    assert await asyncio.wait_for(conn.ready, 1) is conn
    assert tokyo.nodes() == ["london"] and london.nodes() == ["tokyo"]


async def test_messages_of_many_pairs_cross_in_each_pairs_order_on_few_lanes(
    ca: ClusterCa,
) -> None:
    london, tokyo = node(ca, "london", lanes=2), node(ca, "tokyo", lanes=2)
    *_, wire = linked(tokyo, london)
    wire.pump()
    received: dict[Any, list[int]] = {}

    async def sink(proc: Process) -> None:
        while True:
            sender, n = await proc.receive()
            received.setdefault((sender, proc.pid), []).append(n)

    sinks = [london.runtime.spawn(sink) for _ in range(5)]
    senders = [await probe(tokyo.runtime) for _ in range(5)]
    for n in range(50):
        for p in senders:
            for s in sinks:
                p.proc.send(s, (p.pid, n))
    wire.pump()
    await until(lambda: sum(map(len, received.values())) == 5 * 5 * 50, "every message")
    assert all(ns == list(range(50)) for ns in received.values())
    assert len(received) == 25
    assert len(wire.lanes_seen) <= 2  # 25 pairs, two lanes
    assert {lane_of(p.pid, s, 2) for p in senders for s in sinks} <= wire.lanes_seen


async def test_a_pair_frame_before_the_hello_is_refused(ca: ClusterCa) -> None:
    london, tokyo = node(ca, "london"), node(ca, "tokyo")
    _, listener, _ = linked(tokyo, london)
    frame = encode_frame(Msg(tokyo.runtime.node_pid, "echo", "early"))
    with pytest.raises(HelloExpected):
        listener.receive_lane(1, frame, False)


async def test_a_silent_peer_times_out_in_hello_and_an_up_link_does_not(ca: ClusterCa) -> None:
    london, tokyo = node(ca, "london"), node(ca, "tokyo")
    _, listener, wire = linked(tokyo, london)
    with pytest.raises(HelloTimeout):
        listener.hello_timed_out()
    wire.pump()
    listener.hello_timed_out()  # up: nothing to say


async def test_a_second_link_to_a_connected_node_is_refused(ca: ClusterCa) -> None:
    london, tokyo = node(ca, "london"), node(ca, "tokyo")
    _, _, first = linked(tokyo, london)
    first.pump()
    _, _, second = linked(tokyo, london)
    with pytest.raises(DuplicateNode):
        second.pump()


async def test_a_lost_link_fails_its_pending_requests_and_reports_the_node_down(
    ca: ClusterCa,
) -> None:
    london, tokyo = node(ca, "london"), node(ca, "tokyo")
    queued = asyncio.Event()
    conn, _, wire = linked(tokyo, london, queued.set)
    wire.pump()
    queued.clear()
    pending = asyncio.ensure_future(conn.request("pids", (), 5))
    await asyncio.wait_for(queued.wait(), 1)  # the request is queued, not delivered
    conn.connection_lost(0, "cable cut")
    with pytest.raises(NodeNotConnected):
        await pending
    assert conn.state is LinkState.CLOSED and tokyo.nodes() == []


async def test_a_large_lump_is_flushed_in_doubling_pieces_and_a_new_turn_starts_small(
    ca: ClusterCa,
) -> None:
    """What one step sends is not held to the turn's end: the protocol asks
    the adapter to flush at FLUSH_FIRST lane bytes, then at twice that, up to
    FLUSH_BYTES; the turn's own flush starts the count again."""
    london, tokyo = node(ca, "london"), node(ca, "tokyo")
    pieces: list[int] = []

    def flush() -> None:  # what the QUIC adapter does: take it all now
        _, lanes = conn.data_to_send()
        pieces.append(sum(map(len, lanes.values())))
        for lane, data in lanes.items():
            lis.receive_lane((id(conn), lane), data, False)  # the key Wire uses

    conn, lis, wire = linked(tokyo, london, flush=flush)
    wire.pump()
    got: list[int] = []

    async def sink(proc: Process) -> None:
        while True:
            got.append(await proc.receive())

    target = london.runtime.spawn(sink)
    src = await probe(tokyo.runtime)
    frame = len(encode_frame(Msg(src.pid, target, 0)))
    for i in range(3000):  # one step's worth: about 30 times FLUSH_BYTES
        src.proc.send(target, i % 100)
    assert len(pieces) > 3
    want = FLUSH_FIRST
    for piece in pieces:
        assert want <= piece < want + frame, pieces
        want = min(2 * want, FLUSH_BYTES)
    assert max(pieces) < FLUSH_BYTES + frame
    wire.pump()  # the end of the turn: what is left goes
    before = len(pieces)
    for _ in range(FLUSH_FIRST // frame + 1):  # the next turn flushes at FLUSH_FIRST again
        src.proc.send(target, 0)
    assert len(pieces) == before + 1 and FLUSH_FIRST <= pieces[-1] < FLUSH_FIRST + frame
    wire.pump()
    await until(lambda: len(got) == 3000 + FLUSH_FIRST // frame + 1, "every message")
    assert got[:3000] == [i % 100 for i in range(3000)]  # in order, across the pieces


async def test_without_a_flush_callback_everything_waits_for_the_turn(ca: ClusterCa) -> None:
    london, tokyo = node(ca, "london"), node(ca, "tokyo")
    conn, _, wire = linked(tokyo, london)
    wire.pump()
    target = (await probe(london.runtime)).pid
    src = await probe(tokyo.runtime)
    for i in range(3000):
        src.proc.send(target, i)
    _, lanes = conn.data_to_send()
    assert sum(map(len, lanes.values())) > 10 * FLUSH_BYTES  # all of it, held


async def test_answers_to_the_peers_frames_never_flush_early(ca: ClusterCa) -> None:
    """Handling a batch of the peer's frames only queues what it answers
    (noproc signals here): a flush in the middle of the batch could close the
    link (max_outbound_bytes) and then hand a process the rest of the batch
    after its noconnection Down. They go at the turn's end, in order."""
    london, tokyo = node(ca, "london"), node(ca, "tokyo")
    early: list[int] = []
    conn = LinkProtocol(tokyo, True, lambda: list(london.identity.chain), lambda: None)
    lis = LinkProtocol(
        london, False, lambda: list(tokyo.identity.chain), lambda: None, lambda: early.append(1)
    )
    for side in (conn, lis):
        side.handshake_done()
    wire = Wire(conn, lis)
    wire.pump()
    src = await probe(tokyo.runtime)
    watcher = await probe(london.runtime)
    # 40 Monitors of names london does not have, each answered with a
    # DownSignal (together well over FLUSH_FIRST bytes), then a message.
    frames = [Monitor(src.pid, f"nobody{i}", Ref("tokyo", i)) for i in range(40)]
    chunk = b"".join(encode_frame(f) for f in frames) + encode_frame(Msg(src.pid, watcher.pid, "m"))
    lis.receive_lane(("from tokyo", 0), chunk, False)
    assert early == []
    _, lanes = lis.data_to_send()
    assert sum(map(len, lanes.values())) > FLUSH_FIRST  # all 40 answers, queued
    assert await watcher.next() == "m"
