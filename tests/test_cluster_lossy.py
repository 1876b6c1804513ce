"""Links through a lossy UDP relay: per-pair order survives the network, and a
lost packet stalls only the pairs of its lane.

All frames of one (sender, receiver) pair ride one long-lived QUIC stream, a
lane (``ClusterConfig.lanes`` per direction, chosen by ``lane_of``): QUIC
retransmits what the relay drops and delivers each stream's bytes in order,
so the pair's FIFO needs no sequence numbers. The relay cannot decrypt, so
the head-of-line test tells lanes apart by datagram size: one pair sends a
message that fills full-size datagrams, another a trickle of tiny ones.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, cast

import pytest

from rusm.actors import Process, Runtime
from rusm.net import ClusterCa, ClusterConfig, ClusterNode
from rusm.net.link import lane_of

from .helpers import probe, until

LOCAL = ("127.0.0.1", 0)
Address = tuple[str, int]

MESSAGES = 10_000
BURST = 100
PAYLOAD = b"p" * 64
DEADLINE = 45.0
"""Seconds the whole transfer may take before the test fails (it takes a few)."""


class LossyRelay(asyncio.DatagramProtocol):
    """Forwards datagrams between one client and ``target``, both ways, badly.

    Of the datagrams it receives, a fraction ``drop`` is dropped and a fraction
    ``reorder`` is held back and sent right after the next datagram going the
    same way (or after ``max_hold`` seconds if none comes: delay is bounded).
    Decisions come from a seeded ``random.Random``, in arrival order.

    While ``blackout_above`` is set, every datagram from the client larger
    than that many bytes is dropped before any of that (the other direction
    and smaller datagrams pass); ``blacked_out`` counts them, and
    ``blackout_sizes`` keeps the size of every client datagram seen meanwhile
    (negative: dropped), to show what went through.
    """

    def __init__(
        self,
        target: Address,
        seed: int,
        drop: float = 0.05,
        reorder: float = 0.05,
        max_hold: float = 0.02,
    ) -> None:
        self.target = target
        self.rng = random.Random(seed)
        self.drop, self.reorder, self.max_hold = drop, reorder, max_hold
        self.client: Address | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.received = self.dropped = self.reordered = self.delayed = 0
        self.blackout_above: int | None = None
        self.blacked_out = 0
        self.blackout_sizes: list[int] = []
        self._held: dict[Address, tuple[bytes, asyncio.TimerHandle]] = {}

    @classmethod
    async def start(cls, target: Address, seed: int, **damage: float) -> LossyRelay:
        loop = asyncio.get_running_loop()
        _, relay = await loop.create_datagram_endpoint(
            lambda: cls(target, seed, **damage), local_addr=LOCAL
        )
        return relay

    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = (addr[0], addr[1])
        if source == self.target:
            if self.client is None:
                return
            dest = self.client
        else:
            if self.client is None:
                self.client = source
            elif source != self.client:
                return  # one client only
            dest = self.target
            if self.blackout_above is not None:
                if len(data) > self.blackout_above:
                    self.blacked_out += 1
                    self.blackout_sizes.append(-len(data))
                    return
                self.blackout_sizes.append(len(data))
        self.received += 1
        roll = self.rng.random()
        if roll < self.drop:
            self.dropped += 1
            return
        held = self._held.pop(dest, None)
        if held is None and roll < self.drop + self.reorder:
            timer = asyncio.get_running_loop().call_later(self.max_hold, self._release, dest)
            self._held[dest] = (data, timer)
            return
        self._sendto(data, dest)
        if held is not None:
            held[1].cancel()
            self._sendto(held[0], dest)  # after the one that came after it
            self.reordered += 1

    def _release(self, dest: Address) -> None:
        held = self._held.pop(dest, None)
        if held is not None:
            self.delayed += 1
            self._sendto(held[0], dest)

    def _sendto(self, data: bytes, dest: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, dest)

    def close(self) -> None:
        for _, timer in self._held.values():
            timer.cancel()
        self._held.clear()
        if self.transport is not None:
            self.transport.close()


async def collector(proc: Process, done: asyncio.Future[list[Any]]) -> None:
    """Keeps every message until ("done", n), then hands them all to the test."""
    got: list[Any] = []
    while True:
        msg = await proc.receive()
        if isinstance(msg, tuple) and msg[0] == "done":
            done.set_result(got)
            return
        got.append(msg)


async def sender(proc: Process, n: int) -> None:
    """Sends n messages in bursts, one burst per loop turn: each burst is one
    write on the pair's lane, so the relay's damage falls inside the stream."""
    for i in range(n):
        proc.send(("collector", "london"), (i, PAYLOAD))
        if i % BURST == BURST - 1:
            await asyncio.sleep(0)
    proc.send(("collector", "london"), ("done", n))


def link_stats(tokyo: ClusterNode, london: ClusterNode) -> tuple[dict[str, int], ...]:
    """Each side's ``stats()`` of the tokyo-london link."""
    there, here = tokyo.link_to("london"), london.link_to("tokyo")
    assert there is not None and here is not None, "the link is down"
    return there.stats(), here.stats()


async def test_ten_thousand_messages_through_a_lossy_relay_arrive_complete_and_in_order() -> None:
    ca = ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"))
    tokyo = await ClusterNode.bind("tokyo", Runtime(), LOCAL, ca.issue("tokyo"))
    relay = await LossyRelay.start(london.local_addr(), seed=20240611)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(DEADLINE):
            done: asyncio.Future[list[Any]] = loop.create_future()
            london.runtime.register("collector", london.runtime.spawn(collector, done))
            await tokyo.connect(relay.address())
            tokyo.runtime.spawn(sender, MESSAGES)
            got = await done
            tokyo_stats, london_stats = link_stats(tokyo, london)
    finally:
        relay.close()
        await tokyo.close()
        await london.close()

    assert len(got) == MESSAGES
    assert got == [(i, PAYLOAD) for i in range(MESSAGES)]  # complete, in order, no duplicate
    assert london.runtime.dead_letters == 0
    # The relay did damage, or this test proves nothing.
    assert relay.dropped > 0, relay.received
    assert relay.reordered > 0, relay.received
    # One pair, one lane: the order came from that stream alone.
    assert tokyo_stats == {"lanes_in": 0, "lanes_out": 1, "inbound_bytes": 0}, tokyo_stats
    assert london_stats == {"lanes_in": 1, "lanes_out": 0, "inbound_bytes": 0}, london_stats
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"closed nodes left tasks behind: {left}"


PAD = b"p" * 1000  # 2 MB in all: over a hundred loopback datagrams to damage


async def short_sender(proc: Process, i: int, n: int) -> None:
    """Sends n messages in one turn, then exits."""
    for j in range(n):
        proc.send(("collector", "london"), (i, j, PAD))


async def test_short_lived_senders_through_a_lossy_relay_keep_order_on_a_few_lanes() -> None:
    """200 pairs that each live for one burst share the link's few lanes:
    each keeps its order, and a pair's end leaves nothing behind (lanes
    are per link, not per pair)."""
    ca = ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"))
    tokyo = await ClusterNode.bind("tokyo", Runtime(), LOCAL, ca.issue("tokyo"))
    relay = await LossyRelay.start(london.local_addr(), seed=20261121, drop=0.1, reorder=0.1)
    loop = asyncio.get_running_loop()
    senders, each = 200, 10
    try:
        async with asyncio.timeout(DEADLINE):
            done: asyncio.Future[list[Any]] = loop.create_future()
            london.runtime.register("collector", london.runtime.spawn(collector, done))
            await tokyo.connect(relay.address())
            for i in range(senders):
                tokyo.runtime.spawn(short_sender, i, each)
                if i % 20 == 19:
                    await asyncio.sleep(0)
            await until(lambda: london.runtime.messages >= senders * each, "every message")
            london.runtime.send("collector", ("done", 0))
            got = await done
            tokyo_stats, london_stats = link_stats(tokyo, london)
    finally:
        relay.close()
        await tokyo.close()
        await london.close()
    by_sender: dict[int, list[int]] = {}
    for i, j, pad in got:
        assert pad == PAD
        by_sender.setdefault(i, []).append(j)
    assert by_sender == {i: list(range(each)) for i in range(senders)}  # complete, each in order
    assert relay.dropped > 0 and relay.reordered > 0, relay.received
    lanes = ClusterConfig().lanes
    # 200 pairs, at most ``lanes`` streams each way; all of them used, none
    # holding a partial frame once every message is in.
    assert tokyo_stats == {"lanes_in": 0, "lanes_out": lanes, "inbound_bytes": 0}, tokyo_stats
    assert london_stats == {"lanes_in": lanes, "lanes_out": 0, "inbound_bytes": 0}, london_stats


# -- head-of-line blocking: per lane, not per link ------------------------------

BIG = b"x" * 300_000
"""X's one message: over 200 full-size datagrams."""
BLACKOUT_ABOVE = 1000
"""Bytes: the blackout drops larger datagrams. X's data fills full-size ones
(about 1420 bytes on loopback, never under QUIC's 1200); Y's datagrams carry
the few ticks sent since the last one got out, under 400 bytes."""
TICK = 0.01
"""Seconds between Y's messages."""
DURING = 10
"""Y's messages that must arrive while X's message is held up."""
STALL = 0.5
"""Seconds during which nothing of Y's may arrive when it shares X's lane."""


async def forwarder(proc: Process, dst: Any) -> None:
    """Sends on to ``dst`` whatever it receives: the pair (this process, dst)."""
    while True:
        proc.send(dst, await proc.receive())


async def ticker(proc: Process, dst: Any) -> None:
    """Once told to go, sends 0, 1, 2... to ``dst``, one every TICK."""
    await proc.receive()
    i = 0
    while True:
        proc.send(dst, i)
        i += 1
        await asyncio.sleep(TICK)


class HeadOfLine:
    """Pair X (forwarder on tokyo to probe xr on london) and pair Y (ticker to
    probe yr) over a link of ``lanes`` lanes through a relay that damages
    nothing until a blackout starts."""

    tokyo: ClusterNode
    london: ClusterNode
    relay: LossyRelay

    def __init__(self, lanes: int) -> None:
        self.config = ClusterConfig(lanes=lanes)

    async def __aenter__(self) -> HeadOfLine:
        ca = ClusterCa.generate()
        self.london = await ClusterNode.bind(
            "london", Runtime(), LOCAL, ca.issue("london"), self.config
        )
        self.tokyo = await ClusterNode.bind(
            "tokyo", Runtime(), LOCAL, ca.issue("tokyo"), self.config
        )
        self.relay = await LossyRelay.start(
            self.london.local_addr(), seed=20250301, drop=0.0, reorder=0.0
        )
        await self.tokyo.connect(self.relay.address())
        self.xr = await probe(self.london.runtime)
        self.yr = await probe(self.london.runtime)
        self.xs = self.tokyo.runtime.spawn(forwarder, self.xr.pid)
        lanes = self.config.lanes
        self.x_lane = lane_of(self.xs, self.xr.pid, lanes)
        while True:  # pids are numbered in order: the same pick every run
            self.ys = self.tokyo.runtime.spawn(ticker, self.yr.pid)
            self.y_lane = lane_of(self.ys, self.yr.pid, lanes)
            if lanes == 1 or self.y_lane != self.x_lane:
                break
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.relay.close()
        await self.tokyo.close()
        await self.london.close()

    async def start(self) -> None:
        """Start the blackout, send X's message, and once its first datagrams
        are on the wire (so Y's frames cannot share them), start Y."""
        self.relay.blackout_above = BLACKOUT_ABOVE
        self.tokyo.runtime.send(self.xs, BIG)
        await until(lambda: self.relay.blacked_out > 0, "X's first datagrams")
        self.tokyo.runtime.send(self.ys, "go")

    def end(self) -> None:
        self.relay.blackout_above = None


async def test_a_blackout_of_one_lanes_datagrams_stalls_only_that_lane() -> None:
    async with asyncio.timeout(DEADLINE), HeadOfLine(lanes=4) as hol:
        assert hol.x_lane != hol.y_lane
        await hol.start()
        during = [await hol.yr.next() for _ in range(DURING)]
        x_held = hol.xr.inbox.empty()
        sizes = hol.relay.blackout_sizes
        hol.end()
        assert await hol.xr.next() == BIG  # whole, once its datagrams pass again
    # Y flowed, in order, while every datagram of X's was dropped.
    assert during == list(range(DURING)), sizes
    assert x_held, "X's message arrived during the blackout"
    assert hol.relay.blacked_out > 0 and any(n > 0 for n in sizes), sizes


async def test_on_one_lane_a_blackout_of_one_pairs_datagrams_stalls_the_other() -> None:
    """The control experiment: with one lane, Y's frames queue behind X's
    bytes on the same stream and nothing of Y's arrives until X's does."""
    async with asyncio.timeout(DEADLINE), HeadOfLine(lanes=1) as hol:
        assert hol.x_lane == hol.y_lane == 0
        await hol.start()
        with pytest.raises(TimeoutError):  # nothing arrives: no event to wait for
            await asyncio.wait_for(hol.yr.inbox.get(), STALL)
        assert hol.xr.inbox.empty()
        sizes = hol.relay.blackout_sizes
        hol.end()
        assert await hol.xr.next() == BIG
        after = [await hol.yr.next() for _ in range(DURING)]
    assert after == list(range(DURING))  # held back, not lost
    assert hol.relay.blacked_out > 0, sizes
