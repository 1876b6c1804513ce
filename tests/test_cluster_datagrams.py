"""Datagram sizes: a link between two ends on this host sends loopback-sized
datagrams both ways (LOOPBACK_DATAGRAM_SIZE); other links keep qh3's size.

A relay on 127.0.0.1 sees every datagram of the link, in each direction.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rusm.actors import Process, Runtime
from rusm.net import ClusterCa, ClusterNode
from rusm.net.mtls import QH3_CLIENT_UDP_PAYLOAD, make_configuration
from rusm.net.quic import LOOPBACK_DATAGRAM_SIZE, is_loopback

from .test_cluster_lossy import LossyRelay

LOCAL = ("127.0.0.1", 0)
BIG = b"b" * 60_000  # one message of a few loopback datagrams


class MeasuringRelay(LossyRelay):
    """A relay that loses nothing and notes the largest datagram each way."""

    def __init__(self, target: Any, seed: int) -> None:
        super().__init__(target, seed, drop=0.0, reorder=0.0)
        self.largest = {"to server": 0, "to client": 0}

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        way = "to client" if (addr[0], addr[1]) == self.target else "to server"
        self.largest[way] = max(self.largest[way], len(data))
        super().datagram_received(data, addr)


async def echo(proc: Process) -> None:
    while True:
        sender, payload = await proc.receive()
        proc.send(sender, payload)


async def test_a_loopback_link_sends_large_datagrams_both_ways() -> None:
    ca = ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"))
    tokyo = await ClusterNode.bind("tokyo", Runtime(), LOCAL, ca.issue("tokyo"))
    relay = await MeasuringRelay.start(london.local_addr(), seed=1)
    assert isinstance(relay, MeasuringRelay)
    try:
        london.runtime.register("echo", london.runtime.spawn(echo))
        await tokyo.connect(relay.address())
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def asker(proc: Process) -> None:
            proc.send(("echo", "london"), (proc.pid, BIG))
            got.set_result(await proc.receive())

        tokyo.runtime.spawn(asker)
        assert await asyncio.wait_for(got, 10) == BIG
    finally:
        relay.close()
        await tokyo.close()
        await london.close()
    # The client (tokyo) sends them, and the server may answer in them
    # because the client advertised that it takes them. Far larger than the
    # handshake's padded Initial (about 1,800 bytes): the message's datagrams.
    for way, largest in relay.largest.items():
        assert LOOPBACK_DATAGRAM_SIZE // 2 < largest <= LOOPBACK_DATAGRAM_SIZE, (way, relay.largest)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True),
        ("10.0.0.7", False), ("192.168.1.20", False), ("::", False), ("0.0.0.0", False),
        ("fe80::1", False), ("london.example", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_other_links_keep_the_engines_datagram_size() -> None:
    identity = ClusterCa.generate().issue("london")
    default = make_configuration(identity, is_client=True, idle_timeout=10.0)
    assert default.max_datagram_size <= QH3_CLIENT_UDP_PAYLOAD  # qh3's, with MTU probing
    wide = make_configuration(
        identity, is_client=True, idle_timeout=10.0, max_datagram_size=LOOPBACK_DATAGRAM_SIZE
    )
    assert wide.max_datagram_size == LOOPBACK_DATAGRAM_SIZE
