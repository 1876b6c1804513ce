"""A link through a lossy, reordering UDP relay: per-pair order survives the network.

QUIC retransmits what the relay drops and each stream reassembles its own
bytes, but the frames of one pair travel on many streams that can complete in
any order; the peer's reorder buffer must put them back in sequence.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, cast

from rusm.actors import Process, Runtime
from rusm.net import ClusterCa, ClusterNode

from .helpers import until

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
        self._held: dict[Address, tuple[bytes, asyncio.TimerHandle]] = {}

    @classmethod
    async def start(cls, target: Address, seed: int) -> LossyRelay:
        loop = asyncio.get_running_loop()
        _, relay = await loop.create_datagram_endpoint(
            lambda: cls(target, seed), local_addr=LOCAL
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
    """Sends n messages in bursts: one burst per loop turn, so one stream each."""
    for i in range(n):
        proc.send(("collector", "london"), (i, PAYLOAD))
        if i % BURST == BURST - 1:
            await asyncio.sleep(0)
    proc.send(("collector", "london"), ("done", n))


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
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"closed nodes left tasks behind: {left}"


async def short_sender(proc: Process, i: int, n: int) -> None:
    """Sends n messages in one turn, then exits: its PairEnd follows them."""
    for j in range(n):
        proc.send(("collector", "london"), (i, j))


async def test_short_lived_senders_through_a_lossy_relay_keep_order_and_leave_no_pair_state() -> (
    None
):
    """A sender's PairEnd can overtake its last messages on the wire; the
    receiver forgets the pair only when it reaches the PairEnd in order."""
    ca = ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"))
    tokyo = await ClusterNode.bind("tokyo", Runtime(), LOCAL, ca.issue("tokyo"))
    relay = await LossyRelay.start(london.local_addr(), seed=20261121)
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
            peers = [*london._peers.values(), *tokyo._peers.values()]
            await until(
                lambda: not any(any(p.pair_state().values()) for p in peers), "no pair state"
            )
    finally:
        relay.close()
        await tokyo.close()
        await london.close()
    by_sender: dict[int, list[int]] = {}
    for i, j in got:
        by_sender.setdefault(i, []).append(j)
    assert by_sender == {i: list(range(each)) for i in range(senders)}  # complete, each in order
    assert relay.dropped > 0 and relay.reordered > 0, relay.received
