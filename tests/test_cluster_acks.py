"""A link's ACKs ride on its answers (rusm.net.quic.ACK_DELAY).

qh3 acknowledges application data after a fraction of the round trip, in a
datagram of its own that wakes the peer: in a ping-pong, about one round trip
in six, and every time the answer takes longer than that. The link holds that
ACK up to ACK_DELAY (qh3 tells the peer it may wait 25 ms), so the answer
carries it. A UDP relay that sees every datagram between the nodes counts the
small ones (ACK-only: a QUIC short header, an AEAD tag and an ACK frame, far
under the size of a message's datagram).
"""

from __future__ import annotations

import asyncio
from typing import Any

from rusm.actors import Process, Runtime
from rusm.net import ClusterCa, ClusterNode

from .test_cluster_lossy import LOCAL, LossyRelay

ROUNDS = 200
WORK = 0.0008
"""Seconds the echo takes to answer: longer than qh3 holds an ACK, shorter
than ACK_DELAY."""
PAYLOAD = b"m" * 100
SMALL = 60
"""Bytes under which a datagram carries no message (one of them is ~150)."""


class CountingRelay(LossyRelay):
    """A relay that loses nothing and keeps the size of each datagram it passes."""

    def __init__(self, target: tuple[str, int], seed: int, **damage: float) -> None:
        super().__init__(target, seed, drop=0.0, reorder=0.0)
        self.sizes: list[int] = []

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.sizes.append(len(data))
        super().datagram_received(data, addr)


async def echo(proc: Process) -> None:
    """Answers each message after about a millisecond's work (a wait: qh3's
    ACK timer, due after a fraction of the round trip, fires meanwhile)."""
    while True:
        sender, body = await proc.receive()
        await asyncio.sleep(WORK)
        proc.send(sender, body)


async def pinger(proc: Process, rounds: int, done: asyncio.Future[int]) -> None:
    for i in range(rounds):
        proc.send(("echo", "london"), (proc.pid, (i, PAYLOAD)))
        assert await proc.receive(timeout=10) == (i, PAYLOAD)
    done.set_result(rounds)


async def test_a_ping_pong_sends_its_acks_on_the_answers() -> None:
    ca = ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"))
    tokyo = await ClusterNode.bind("tokyo", Runtime(), LOCAL, ca.issue("tokyo"))
    relay = await CountingRelay.start(london.local_addr(), seed=1)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(30):
            london.runtime.register("echo", london.runtime.spawn(echo))
            await tokyo.connect(relay.address())
            warm: asyncio.Future[int] = loop.create_future()
            tokyo.runtime.spawn(pinger, 20, warm)
            await warm
            relay.sizes.clear()
            done: asyncio.Future[int] = loop.create_future()
            tokyo.runtime.spawn(pinger, ROUNDS, done)
            await done
            sizes = list(relay.sizes)
    finally:
        relay.close()
        await tokyo.close()
        await london.close()

    big = [n for n in sizes if n >= SMALL]
    small = [n for n in sizes if n < SMALL]
    assert len(big) >= 2 * ROUNDS, sizes[:40]  # every ping and pong went through
    # Without the hold, about one ACK-only datagram from london a round (it
    # acknowledges each ping while the echo works); with it, the pong carries
    # the ACK, but for the rare turn slower than ACK_DELAY.
    assert len(small) <= ROUNDS // 4, (len(small), len(big))
