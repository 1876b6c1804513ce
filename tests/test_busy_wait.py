"""Busy-waiting (rusm.net.busywait, ClusterConfig.busy_wait): after a send a
node's loop keeps polling for a while, then sleeps again; 0 turns it off, and
closing the node stops it. What it buys is measured, not asserted here
(docs/PROTOCOL.md, "Busy-waiting")."""

from __future__ import annotations

import asyncio
import time

import pytest

from rusm.actors import Process, Runtime
from rusm.net import ClusterCa, ClusterConfig, ClusterNode
from rusm.net.busywait import DEFAULT_BUSY_WAIT, MAX_BUSY_WAIT, BusyWait

LOCAL = ("127.0.0.1", 0)


async def stopped(busy: BusyWait) -> None:
    """Until ``busy`` lets its loop sleep again (a later send may wake it)."""
    async with asyncio.timeout(5):
        await busy.wait_stopped()


async def test_a_poke_keeps_the_loop_turning_for_its_seconds_then_it_stops() -> None:
    loop = asyncio.get_running_loop()
    busy = BusyWait(0.003)
    started = time.perf_counter()
    busy.poke(loop)
    assert busy.active
    await stopped(busy)
    assert not busy.active
    assert time.perf_counter() - started >= 0.003
    assert busy.turns > 0 and busy.pokes == 1
    turns = busy.turns
    busy.poke(loop)  # a later send starts it again
    assert busy.active
    await stopped(busy)
    assert busy.turns > turns and busy.pokes == 2


async def test_zero_seconds_never_spins_and_close_stops_it_for_good() -> None:
    loop = asyncio.get_running_loop()
    off = BusyWait(0)
    off.poke(loop)
    assert not off.active
    busy = BusyWait(MAX_BUSY_WAIT)
    busy.poke(loop)
    assert busy.active
    waiting = asyncio.ensure_future(busy.wait_stopped())
    await asyncio.sleep(0)
    busy.close()
    turns = busy.turns
    assert not busy.active
    await asyncio.wait_for(waiting, 5)  # close wakes whoever waits
    busy.poke(loop)
    assert not busy.active
    await asyncio.sleep(0)
    assert busy.turns == turns  # the cancelled turn never ran


@pytest.mark.parametrize("seconds", [-0.001, MAX_BUSY_WAIT * 2, float("nan")])
def test_a_busy_wait_out_of_range_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="busy_wait must be 0"):
        BusyWait(seconds)
    with pytest.raises(ValueError, match="busy_wait must be 0"):
        ClusterConfig(busy_wait=seconds)


def test_the_default_is_on_and_short() -> None:
    assert ClusterConfig().busy_wait == DEFAULT_BUSY_WAIT
    assert 0 < DEFAULT_BUSY_WAIT <= 0.001


async def echo(proc: Process) -> None:
    while True:
        sender, body = await proc.receive()
        proc.send(sender, body)


async def round_trip(tokyo: ClusterNode) -> None:
    done: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def ping(proc: Process) -> None:
        proc.send(("echo", "london"), (proc.pid, "ping"))
        done.set_result(await proc.receive(timeout=10))

    tokyo.runtime.spawn(ping)
    assert await done == "ping"


@pytest.mark.parametrize("seconds", [0.002, 0.0])
async def test_a_node_spins_after_it_sends_only_when_configured(seconds: float) -> None:
    ca = ClusterCa.generate()
    config = ClusterConfig(busy_wait=seconds)
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"), config)
    tokyo = await ClusterNode.bind("tokyo", Runtime(), LOCAL, ca.issue("tokyo"), config)
    try:
        async with asyncio.timeout(30):
            london.runtime.register("echo", london.runtime.spawn(echo))
            await tokyo.connect(london.local_addr())
            for node in (tokyo, london):
                await stopped(node.busy_wait)
            before = {node.name: node.busy_wait.turns for node in (tokyo, london)}
            await round_trip(tokyo)
            for node in (tokyo, london):
                await stopped(node.busy_wait)  # it does not spin on while idle
                spun = node.busy_wait.turns - before[node.name]
                assert (spun > 0) == (seconds > 0), (node.name, spun)
                assert (node.busy_wait.pokes > 0) == (seconds > 0), node.name
            await round_trip(tokyo)
    finally:
        await tokyo.close()
        await london.close()
    for node in (tokyo, london):
        assert not node.busy_wait.active  # closing leaves nothing scheduled


def test_it_follows_a_node_to_a_new_loop_and_ignores_a_closed_one() -> None:
    busy = BusyWait(MAX_BUSY_WAIT)
    first = asyncio.new_event_loop()
    busy.poke(first)  # pending when its loop ends
    first.close()
    busy.poke(first)  # a closed loop: nothing to do, no error
    second = asyncio.new_event_loop()
    try:
        async def on_second() -> None:
            busy.poke(asyncio.get_running_loop())
            assert busy.active
            await stopped(busy)

        second.run_until_complete(on_second())
        assert not busy.active and busy.turns > 0
    finally:
        second.close()
