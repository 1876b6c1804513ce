"""A closing node's last messages reach its peers: ``close`` waits (up to
CLOSE_LINGER) for each peer to acknowledge what its links were sent before the
CONNECTION_CLOSE, which would discard what the engine still holds back."""

from __future__ import annotations

import asyncio
from typing import Any

from rusm.actors import Process, Runtime
from rusm.net import ClusterCa, ClusterNode
from rusm.net.messages import NodeDown

LOCAL = ("127.0.0.1", 0)
COUNT = 400
CHUNK = b"c" * 5_000  # 2 MB in all: far more than the engine sends at once


async def test_a_closing_node_delivers_what_it_sent_before_the_close() -> None:
    ca = ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"))
    tokyo = await ClusterNode.bind("tokyo", Runtime(), LOCAL, ca.issue("tokyo"))
    loop = asyncio.get_running_loop()
    received: list[Any] = []
    done: asyncio.Future[None] = loop.create_future()
    sent: asyncio.Future[None] = loop.create_future()
    try:
        async def sink(proc: Process) -> None:
            while True:
                message = await proc.receive()
                if isinstance(message, NodeDown):
                    done.set_result(None)
                    return
                received.append(message)

        sink_pid = tokyo.runtime.spawn(sink)
        tokyo.runtime.register("sink", sink_pid)
        await london.connect(tokyo.local_addr())
        tokyo.monitor_node("london", sink_pid)

        async def sender(proc: Process) -> None:
            for i in range(COUNT):
                proc.send(("sink", "tokyo"), (i, CHUNK))
            sent.set_result(None)

        london.runtime.spawn(sender)
        await asyncio.wait_for(sent, 10)
        await london.close()  # in the same turn: nearly all of it is still queued
        await asyncio.wait_for(done, 10)
        assert [i for i, _ in received] == list(range(COUNT))
    finally:
        await london.close()
        await tokyo.close()
