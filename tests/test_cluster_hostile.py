"""Hostile but authenticated peers on a real link: silent peers, withheld
stream bytes, oversized RPCs, too many lanes, terms over the wire limits.

Each hostile peer is the hand-driven aioquic client of test_cluster_badframes
(a certificate from the cluster CA, so it gets past mutual TLS); the node
under test is a real ClusterNode on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rusm.actors import Call, Down, Pid, Process, Runtime
from rusm.net import (
    ClusterCa,
    ClusterConfig,
    ClusterNode,
    NodeDown,
    RemoteError,
    SpawnFailed,
)
from rusm.net.terms import TermTooLarge
from rusm.net.wire import ErrorCode, Gossip, HelloAck, Msg, WireLimits, encode_frame

from .helpers import probe, until, waiting
from .test_cluster_badframes import HELLO, LOCAL, RawPeer, raw_peer

MiB = 1024 * 1024

QUIC_FLOW_CONTROL_ERROR = 0x3
"""The QUIC transport error code (RFC 9000 §20.1) the engine closes with."""


def rss() -> int:
    """This process's resident set size now, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss() -> int:
    """The process's peak resident set size so far, in bytes (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def echo(proc: Process) -> None:
    while True:
        msg = await proc.receive()
        if isinstance(msg, Call):
            msg.reply(msg.request)


async def no_args(proc: Process) -> None:
    """A spawnable that takes no arguments: any argument list is refused."""
    await proc.receive()


class Cluster:
    """Nodes and raw peers of one test, all closed at its end."""

    def __init__(self, ca: ClusterCa) -> None:
        self.ca = ca
        self.nodes: list[ClusterNode] = []
        self.transports: list[Any] = []

    async def node(self, name: str, config: ClusterConfig | None = None) -> ClusterNode:
        node = await ClusterNode.bind(name, Runtime(), LOCAL, self.ca.issue(name), config)
        node.runtime.register("echo", node.runtime.spawn(echo, label="echo"))
        self.nodes.append(node)
        return node

    async def raw(self, name: str, node: ClusterNode) -> RawPeer:
        peer, transport = await raw_peer(self.ca, name, node.local_addr())
        self.transports.append(transport)
        return peer

    async def raw_up(self, name: str, node: ClusterNode) -> RawPeer:
        """A raw peer that has exchanged hellos with ``node``: its link is up.

        The listener processes the control stream in order, so the HelloAck
        written right behind our Hello acknowledges the Hello it answers with."""
        peer = await self.raw(name, node)
        peer.write(HELLO + encode_frame(HelloAck()))
        await until(lambda: node.is_connected(name), f"{name} up at {node.name}")
        return peer

    async def close(self) -> None:
        for transport in self.transports:
            transport.close()
        for node in reversed(self.nodes):
            await node.close()


@pytest.fixture(scope="module")
def ca() -> ClusterCa:
    return ClusterCa.generate()


@pytest.fixture
async def cluster(ca: ClusterCa) -> AsyncIterator[Cluster]:
    c = Cluster(ca)
    try:
        yield c
    finally:
        await c.close()


def rusm_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("rusm.net") and r.levelno >= logging.WARNING
    ]


async def round_trip(a: ClusterNode, b: ClusterNode) -> None:
    """``a`` calls ``b``'s echo and gets its answer."""
    assert await a.call(b.name, "echo", ("ping", a.name)) == ("ping", a.name)


# -- 1. hello deadline -------------------------------------------------------------------


async def test_a_peer_that_says_nothing_after_the_handshake_is_closed_with_hello_timeout(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    london = await cluster.node("london", ClusterConfig(hello_timeout=0.5))
    with caplog.at_level(logging.WARNING, logger="rusm.net"):
        peer = await cluster.raw("mute", london)
        code, reason = await asyncio.wait_for(peer.terminated, 5)
    assert code == ErrorCode.HELLO_TIMEOUT, reason
    assert "hello" in reason
    warnings = rusm_warnings(caplog)
    assert len(warnings) == 1 and "no hello" in warnings[0], warnings
    assert london.nodes() == []


async def test_a_hundred_silent_peers_are_all_closed_and_forgotten_and_a_real_node_still_joins(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    london = await cluster.node("london", ClusterConfig(hello_timeout=0.5))
    server = london._server
    assert server is not None

    async def wave() -> tuple[int, int]:
        """A hundred peers connect at once and say nothing; returns the RSS
        while they are connected and once the node has forgotten them."""
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rusm.net"):
            peers = await asyncio.gather(*(cluster.raw(f"mute{i}", london) for i in range(100)))
            connected = rss()
            closes = await asyncio.wait_for(asyncio.gather(*(p.terminated for p in peers)), 10)
        assert [code for code, _ in closes] == [ErrorCode.HELLO_TIMEOUT] * 100
        warnings = rusm_warnings(caplog)
        assert len(warnings) == 100 and all("no hello" in w for w in warnings)
        # The node keeps nothing for them. No public view shows links that
        # never came up (nodes() and link_to() show only links that are up),
        # so this reads the node's and the QUIC server's own tables: the node
        # drops a link at its close, the server once the connection drained.
        await until(lambda: not london._links, "the node forgets the silent links")
        await until(lambda: not server._protocols, "the QUIC server drops their connections")
        assert london.nodes() == []
        for transport in cluster.transports:
            transport.close()
        cluster.transports.clear()
        return connected, rss()

    before = rss()
    first = await wave()
    second = await wave()
    print(
        f"\nRSS (peers and node share this process): before {before / MiB:.1f} MiB; "
        f"first 100 silent peers connected {first[0] / MiB:.1f}, forgotten "
        f"{first[1] / MiB:.1f}; second 100 connected {second[0] / MiB:.1f}, forgotten "
        f"{second[1] / MiB:.1f} MiB; peak {peak_rss() / MiB:.1f} MiB"
    )

    tokyo = await cluster.node("tokyo")
    await asyncio.wait_for(tokyo.connect(london.local_addr()), 2)
    assert london.nodes() == ["tokyo"]
    await round_trip(tokyo, london)
    await round_trip(london, tokyo)


# -- 2. inbound memory, including what the engine holds out of order ---------------------


WITHHELD = 1000
"""Bytes at the start of the hostile stream that the peer never sends."""
PAYLOAD = 50_000_000


def withhold_start(peer: RawPeer, data: bytes) -> Any:
    """Write ``data`` on a new lane of ``peer`` but never send its first
    WITHHELD bytes: the receiving engine can deliver nothing and must hold
    whatever else it accepts out of order. Returns aioquic's stream."""
    quic = peer._quic
    sid = quic.get_next_available_stream_id(is_unidirectional=True)
    quic.send_stream_data(sid, data)
    stream = quic._streams[sid]
    # aioquic's QuicStreamSender sends the ranges in ``_pending``; a range
    # taken out is never sent (nor retransmitted: it was never in flight).
    stream.sender._pending.subtract(0, WITHHELD)
    return stream


def acked_through(stream: Any) -> int:
    """The end of the first range of the stream's data the receiver acknowledged."""
    acked = stream.sender._acked
    return acked[0].stop if len(acked) else 0


async def test_data_the_engine_holds_out_of_order_stays_within_the_inbound_bound(
    cluster: Cluster,
) -> None:
    bound = 4 * MiB
    config = ClusterConfig(
        limits=WireLimits(max_message_frame=64 * MiB), max_inbound_bytes=bound
    )
    london = await cluster.node("london", config)
    peer = await cluster.raw_up("evil", london)
    quic = peer._quic
    window = quic._remote_max_data  # the connection credit london gave
    data = struct.pack(">I", PAYLOAD) + b"x" * PAYLOAD  # a legal 50 MB frame
    stream = withhold_start(peer, data)
    del data
    before = rss()
    peer.transmit()

    def stuck() -> bool:
        # Blocked by the connection window with everything sent acknowledged
        # (london holds it all), or done sending, or cut off.
        sent = stream.sender.highest_offset
        blocked = quic._remote_max_data_used >= quic._remote_max_data
        return peer.terminated.done() or (
            (blocked or sent >= PAYLOAD + 4) and acked_through(stream) >= sent
        )

    await until(stuck, "the hostile stream to stop")
    grown = rss() - before
    sent = stream.sender.highest_offset - WITHHELD
    print(
        f"\nwithheld-start stream: window {window} B (max_inbound_bytes {bound}); the peer got "
        f"{sent} B out of order acknowledged of {PAYLOAD}; credit now "
        f"{quic._remote_max_data} B; RSS grew {grown / MiB:.2f} MiB"
    )
    assert window <= bound
    assert quic._remote_max_data == window  # no credit for data it cannot deliver
    assert sent <= bound
    assert grown < bound + 8 * MiB
    if peer.terminated.done():
        code, reason = peer.terminated.result()
        assert code == ErrorCode.LIMIT_EXCEEDED, reason
    else:
        link = london.link_to("evil")
        assert link is not None and link.stats()["inbound_bytes"] == 0


async def test_partial_frames_and_out_of_order_data_together_stay_within_the_inbound_bound(
    cluster: Cluster,
) -> None:
    bound = 4 * MiB
    config = ClusterConfig(
        limits=WireLimits(max_message_frame=64 * MiB), max_inbound_bytes=bound
    )
    london = await cluster.node("london", config)
    peer = await cluster.raw_up("evil", london)
    link = london.link_to("evil")
    assert link is not None
    # Lane A: most of an unfinished frame, in order, up to the link's half of
    # the bound. The engine delivered it (and so credited the peer with as
    # much again); the link's decoder holds it.
    partial = bound // 2 - 64 * 1024
    peer.write(struct.pack(">I", PAYLOAD) + b"y" * (partial - 4), uni=True)
    await until(lambda: link.stats()["inbound_bytes"] == partial, "lane A's bytes held")
    # Lane B: a withheld start, so the engine holds whatever else comes.
    quic = peer._quic
    stream = withhold_start(peer, struct.pack(">I", PAYLOAD) + b"x" * PAYLOAD)
    peer.transmit()

    def stuck() -> bool:
        sent = stream.sender.highest_offset
        return peer.terminated.done() or (
            quic._remote_max_data_used >= quic._remote_max_data
            and acked_through(stream) >= sent
        )

    await until(stuck, "the hostile stream to stop")
    in_engine = max(acked_through(stream) - WITHHELD, 0)
    in_link = link.stats()["inbound_bytes"] if link.up else 0
    print(f"\npartial + withheld: link decoders hold {in_link} B, the engine {in_engine} B "
          f"out of order: {in_link + in_engine} B for a bound of {bound} B")
    if peer.terminated.done():
        assert peer.terminated.result()[0] == ErrorCode.LIMIT_EXCEEDED
    assert in_link + in_engine <= bound + 64 * 1024


async def test_a_peer_that_ignores_the_window_is_closed_by_the_engine(
    cluster: Cluster,
) -> None:
    bound = 4 * MiB
    config = ClusterConfig(
        limits=WireLimits(max_message_frame=64 * MiB), max_inbound_bytes=bound
    )
    london = await cluster.node("london", config)
    tokyo = await cluster.node("tokyo")
    await tokyo.connect(london.local_addr())
    peer = await cluster.raw_up("evil", london)
    stream = withhold_start(peer, struct.pack(">I", PAYLOAD) + b"x" * PAYLOAD)
    # Cheat: pretend london granted far more credit than it did.
    peer._quic._remote_max_data = 2**40
    stream.max_stream_data_remote = 2**40
    before = rss()
    peer.transmit()
    code, reason = await asyncio.wait_for(peer.terminated, 5)
    grown = rss() - before
    sent = stream.sender.highest_offset - WITHHELD
    print(f"\nwindow cheat: closed with {code:#x} {reason!r} after {sent} B; RSS grew "
          f"{grown / MiB:.2f} MiB")
    assert code == QUIC_FLOW_CONTROL_ERROR, reason
    assert sent <= bound + 2 * MiB  # what was in flight when the engine noticed
    await until(lambda: not london.is_connected("evil"), "evil down at london")
    assert london.nodes() == ["tokyo"]
    await round_trip(tokyo, london)


# -- 3. control RPC: exactly one response per request -------------------------------------


@pytest.fixture
async def rpc_pair(cluster: Cluster) -> tuple[ClusterNode, ClusterNode]:
    london = await cluster.node("london")
    tokyo = await cluster.node("tokyo")
    london.register_spawnable("no_args", no_args)

    def boom(peer: Any, args: tuple[Any, ...]) -> Any:
        raise KeyError("a handler bug")

    london.handle_requests("big", lambda peer, args: "x" * 100_000)
    london.handle_requests("boom", boom)
    london.handle_requests("echo", lambda peer, args: args)
    await tokyo.connect(london.local_addr())
    return london, tokyo


async def test_a_spawn_refused_with_long_args_answers_at_once_with_a_typed_error(
    rpc_pair: tuple[ClusterNode, ClusterNode],
) -> None:
    london, tokyo = rpc_pair
    args = ["a" * 20_000, "b" * 20_000, "c" * 20_000]  # 60 KB, under the 64 KiB frame limit
    with pytest.raises(RemoteError) as info:
        await asyncio.wait_for(tokyo.spawn_remote("london", "no_args", args, timeout=30), 2)
    err = info.value
    assert isinstance(err, SpawnFailed) or err.kind == "too_large", (err.kind, err)
    if isinstance(err, SpawnFailed):
        assert "no_args" in str(err) and "aaaa" in str(err)
    await round_trip(tokyo, london)


async def test_an_answer_over_the_control_frame_limit_comes_back_as_too_large(
    rpc_pair: tuple[ClusterNode, ClusterNode], caplog: pytest.LogCaptureFixture
) -> None:
    london, tokyo = rpc_pair
    link = tokyo.link_to("london")
    assert link is not None
    with caplog.at_level(logging.WARNING, logger="rusm.net"), pytest.raises(RemoteError) as info:
        await asyncio.wait_for(link.request("big", (), timeout=30), 2)
    assert info.value.kind == "too_large", info.value
    assert len(rusm_warnings(caplog)) == 1
    assert await link.request("echo", (1, 2), timeout=2) == (1, 2)
    await round_trip(tokyo, london)


async def test_a_handler_that_raises_answers_with_an_error_and_the_link_stays_up(
    rpc_pair: tuple[ClusterNode, ClusterNode],
) -> None:
    london, tokyo = rpc_pair
    link = tokyo.link_to("london")
    assert link is not None
    with pytest.raises(RemoteError) as info:
        await asyncio.wait_for(link.request("boom", (), timeout=30), 2)
    assert info.value.kind == "error" and "a handler bug" in str(info.value)
    assert tokyo.link_to("london") is link and link.up
    assert await link.request("echo", ("after",), timeout=2) == ("after",)
    await round_trip(tokyo, london)


async def test_a_request_whose_own_args_are_over_the_limit_fails_at_the_caller_at_once(
    rpc_pair: tuple[ClusterNode, ClusterNode],
) -> None:
    london, tokyo = rpc_pair
    link = tokyo.link_to("london")
    assert link is not None
    with pytest.raises(TermTooLarge):
        await asyncio.wait_for(tokyo.spawn_remote("london", "no_args", ["x" * 70_000], 30), 1)
    with pytest.raises(TermTooLarge):
        await asyncio.wait_for(link.request("echo", ("x" * 70_000,), timeout=30), 1)
    assert link.up
    await round_trip(tokyo, london)


async def test_many_concurrent_requests_each_get_exactly_their_own_answer(
    rpc_pair: tuple[ClusterNode, ClusterNode],
) -> None:
    _, tokyo = rpc_pair
    link = tokyo.link_to("london")
    assert link is not None

    async def one(i: int) -> Any:
        method = ("echo", "boom", "big", "nothing")[i % 4]
        try:
            return await link.request(method, (i,), timeout=30)
        except RemoteError as e:
            return (method, e.kind)

    answers = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 5)
    expected = [
        (i,) if i % 4 == 0 else (("echo", "boom", "big", "nothing")[i % 4],
                                ("error", "error", "too_large", "error")[i % 4])
        for i in range(200)
    ]
    assert answers == expected


# -- 4. lanes ---------------------------------------------------------------------------


async def test_more_lanes_than_max_open_streams_closes_the_link_with_limit_exceeded(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    london = await cluster.node("london", ClusterConfig(max_open_streams=8))
    tokyo = await cluster.node("tokyo")
    await tokyo.connect(london.local_addr())
    peer = await cluster.raw_up("evil", london)
    dead_before = london.runtime.stats().dead_letters
    frame = encode_frame(Msg(Pid("evil", 1), "nobody", b"hi"))
    with caplog.at_level(logging.WARNING, logger="rusm.net"):
        for _ in range(8):
            peer.write(frame, uni=True)  # eight lanes, left open: allowed
        await until(lambda: london.runtime.stats().dead_letters == dead_before + 8,
                    "eight messages through eight lanes")
        assert london.is_connected("evil")
        peer.write(frame, uni=True)  # a ninth
        code, reason = await asyncio.wait_for(peer.terminated, 5)
    assert code == ErrorCode.LIMIT_EXCEEDED and "lanes" in reason, (code, reason)
    warnings = rusm_warnings(caplog)
    assert len(warnings) == 1 and "lanes" in warnings[0], warnings
    await until(lambda: not london.is_connected("evil"), "evil down at london")
    assert london.nodes() == ["tokyo"]
    await round_trip(tokyo, london)
    await round_trip(london, tokyo)


# -- 5. wire limits when sending ----------------------------------------------------------


async def test_a_message_over_the_senders_frame_limit_fails_at_the_sender(
    cluster: Cluster,
) -> None:
    london = await cluster.node("london")
    tokyo = await cluster.node(
        "tokyo", ClusterConfig(limits=WireLimits(max_message_frame=1024))
    )
    await tokyo.connect(london.local_addr())
    big = b"x" * 2048
    received = london.runtime.stats().messages

    with pytest.raises(TermTooLarge, match="1024"):
        tokyo.runtime.send(("echo", "london"), big)
    with pytest.raises(TermTooLarge):
        tokyo.send("london", "echo", big)

    # From a process: the send raises in the process; uncaught, it ends the
    # process with that error as its exit reason.
    watcher = await probe(tokyo.runtime)
    echo_pid = london.runtime.whereis("echo")
    assert echo_pid is not None

    async def careful(proc: Process) -> None:
        try:
            proc.send(echo_pid, big)
        except TermTooLarge as e:
            proc.send(watcher.pid, ("refused", str(e)))

    async def careless(proc: Process) -> None:
        proc.send(echo_pid, big)

    tokyo.runtime.spawn(careful)
    refused, message = await watcher.next()
    assert refused == "refused" and "1024" in message
    pid = tokyo.runtime.spawn(careless)
    watcher.proc.monitor(pid)
    down = await watcher.next()
    assert isinstance(down, Down) and isinstance(down.reason, TermTooLarge), down

    # Nothing crossed, and the link is fine for what fits.
    await round_trip(tokyo, london)
    assert london.runtime.stats().messages == received + 1  # just the round trip's call
    assert tokyo.is_connected("london")


async def test_a_call_over_the_senders_frame_limit_fails_at_the_caller(cluster: Cluster) -> None:
    london = await cluster.node("london")
    tokyo = await cluster.node(
        "tokyo", ClusterConfig(limits=WireLimits(max_message_frame=1024))
    )
    await tokyo.connect(london.local_addr())
    watcher = await probe(tokyo.runtime)

    async def caller(proc: Process) -> None:
        try:
            await proc.call(("echo", "london"), b"x" * 2048, timeout=30)
        except TermTooLarge as e:
            proc.send(watcher.pid, ("refused", str(e)))
        proc.send(watcher.pid, ("small", await proc.call(("echo", "london"), b"ok")))
        await proc.receive()

    pid = tokyo.runtime.spawn(caller)
    refused, message = await watcher.next()
    assert refused == "refused" and "CallRequest" in message and "1024" in message
    assert await watcher.next() == ("small", b"ok")
    await until(waiting(tokyo.runtime, pid), "the caller waiting")
    assert tokyo.is_connected("london")
    # What the failed call leaves behind in the caller: the next test.


async def test_a_call_that_could_not_be_sent_leaves_no_monitor_behind(cluster: Cluster) -> None:
    london = await cluster.node("london")
    tokyo = await cluster.node(
        "tokyo", ClusterConfig(limits=WireLimits(max_message_frame=1024))
    )
    await tokyo.connect(london.local_addr())
    watcher = await probe(tokyo.runtime)

    async def caller(proc: Process) -> None:
        try:
            await proc.call(("echo", "london"), b"x" * 2048, timeout=30)
        except TermTooLarge:
            proc.send(watcher.pid, "refused")
        await proc.receive()

    pid = tokyo.runtime.spawn(caller)
    assert await watcher.next() == "refused"
    await until(waiting(tokyo.runtime, pid), "the caller waiting")
    info = tokyo.runtime.process_info(pid)
    assert info is not None and info.monitors == ()


async def test_a_peer_that_exceeds_the_receivers_frame_limit_is_closed_with_frame_too_large(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    london = await cluster.node("london")  # default limits: 1 MiB frames
    tokyo = await cluster.node(
        "tokyo", ClusterConfig(limits=WireLimits(max_message_frame=1024))
    )
    await london.connect(tokyo.local_addr())
    await round_trip(london, tokyo)
    watcher = await probe(london.runtime)
    london.monitor_node("tokyo", watcher.pid)
    with caplog.at_level(logging.INFO, logger="rusm.net"):
        london.send("tokyo", "echo", b"x" * 2048)  # fits london's limit, not tokyo's
        assert await watcher.next() == NodeDown("tokyo")
    closing = [r.getMessage() for r in caplog.records
               if r.name.startswith("rusm.net") and r.levelno >= logging.WARNING]
    assert len(closing) == 1 and "1024" in closing[0], closing
    downs = [r.getMessage() for r in caplog.records
             if r.name == "rusm.net.node" and "london: link to tokyo down" in r.getMessage()]
    assert len(downs) == 1 and f"code {int(ErrorCode.FRAME_TOO_LARGE)}" in downs[0], downs
    assert london.nodes() == [] and tokyo.nodes() == []


# -- streams a peer resets or stops, a peer that stops reading ------------------------


def link_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rusm.net.quic"]


async def test_a_peer_that_stops_one_of_our_lanes_is_closed_and_reported_down(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    london = await cluster.node("london")
    peer = await cluster.raw_up("evil", london)
    watcher = await probe(london.runtime)
    london.monitor_node("evil", watcher.pid)
    lanes: list[int] = []
    original = peer.quic_event_received

    def record(event: Any) -> None:
        if type(event).__name__ == "StreamDataReceived" and event.stream_id & 0x2:
            lanes.append(event.stream_id)
        original(event)

    peer.quic_event_received = record  # type: ignore[method-assign]
    london.runtime.send(Pid("evil", 1), "opens a lane")
    await until(lambda: bool(lanes), "london's lane to reach the peer")
    with caplog.at_level(logging.WARNING, logger="rusm.net"):
        peer._quic.stop_stream(lanes[0], 0)
        peer.transmit()
        code, reason = await asyncio.wait_for(peer.terminated, 5)
    assert code == ErrorCode.PROTOCOL_VIOLATION and "stopped stream" in reason, reason
    assert await watcher.next() == NodeDown("evil")  # not a link that looks up and drops all
    assert len(link_warnings(caplog)) == 1, link_warnings(caplog)


async def test_a_peer_that_resets_its_lane_is_closed(cluster: Cluster) -> None:
    london = await cluster.node("london")
    peer = await cluster.raw_up("evil", london)
    sid = peer._quic.get_next_available_stream_id(is_unidirectional=True)
    peer._quic.send_stream_data(sid, struct.pack(">I", 1000) + b"x" * 500)
    peer.transmit()
    link = london.link_to("evil")
    assert link is not None
    await until(lambda: link.stats()["inbound_bytes"] == 504, "half a frame held")
    peer._quic.reset_stream(sid, 0)
    peer.transmit()
    code, reason = await asyncio.wait_for(peer.terminated, 5)
    assert code == ErrorCode.PROTOCOL_VIOLATION and "reset stream" in reason, reason
    assert not london.is_connected("evil")


async def paced_flood(node: ClusterNode, to: Pid) -> None:
    """512 KiB in 8 KiB messages, one every 2 ms: easy for a peer that reads."""
    for _ in range(64):
        node.runtime.send(to, b"x" * 8192)
        await asyncio.sleep(0.002)  # pacing the sender, not synchronisation


async def test_a_peer_that_stops_reading_is_closed_before_its_backlog_grows_past_the_bound(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    config = ClusterConfig(max_outbound_bytes=256 * 1024)
    london = await cluster.node("london", config)
    tokyo = await cluster.node("tokyo")
    await tokyo.connect(london.local_addr())
    await paced_flood(london, Pid("tokyo", 10**6))  # dead letters there, but read
    assert london.is_connected("tokyo")  # a node that reads keeps up
    peer = await cluster.raw_up("evil", london)
    watcher = await probe(london.runtime)
    london.monitor_node("evil", watcher.pid)
    peer.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="rusm.net"):
        await paced_flood(london, Pid("evil", 1))
        assert await watcher.next() == NodeDown("evil")
    assert any("pile up unread" in w for w in link_warnings(caplog)), link_warnings(caplog)
    assert london.is_connected("tokyo")


# -- gossip from a peer ------------------------------------------------------------------


async def test_a_peer_cannot_claim_names_for_this_nodes_processes_nor_grow_the_table_past_the_cap(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    london = await cluster.node("london", ClusterConfig(max_global_names_per_node=100))
    peer = await cluster.raw_up("evil", london)
    own = london.runtime.spawn(echo)
    with caplog.at_level(logging.WARNING, logger="rusm.net"):
        peer.write(encode_frame(Gossip("add", (("stolen", own),))))
        for start in range(0, 150, 50):  # 150 names for evil's own pids, in three frames
            batch = tuple((f"evil-{i}", Pid("evil", i + 1)) for i in range(start, start + 50))
            peer.write(encode_frame(Gossip("add", batch)))
        peer.write(encode_frame(Gossip("add", (("barrier", Pid("paris", 1)),))))
        await until(lambda: london.whereis_global("barrier") == "paris", "the last frame")
    assert london.whereis_global("stolen") is None  # london alone names its processes
    evil_names = [n for n, p in london.registry.names.items() if p.node == "evil"]
    assert len(evil_names) == 100
    assert sum("past the cap" in w for w in rusm_warnings(caplog)) == 1
    assert london.is_connected("evil")
