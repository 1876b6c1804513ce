"""An ``--app`` for tests/test_node_cli.py (not a test module)::

    rusm node start london --app tests.node_app:setup

``setup`` teaches the node the spawnable ``worker`` and starts ``ledger``,
registered under that name, which never receives: what it is sent stays in
its mailbox, so its depth counts the messages that reached it.
``worker(name=None)`` registers itself as ``name`` if given, then takes
every message out of its mailbox (its ``received`` counts them).
``stuck`` also starts the demo's deadlock and backlog scenarios.
``watched`` also starts, for the log, the trace and the tree: the
supervisor ``services`` (``flaky``: any message makes it crash; ``pool``, a
supervisor of two workers ``w1`` and ``w2``) and ``pinger``, which pings
``echo`` every 20 ms and takes each pong.
``broken`` is a setup that fails.
"""

from __future__ import annotations

import asyncio

from rusm.actors import ChildSpec, Process, Supervisor
from rusm.demo.stuck import backlog, deadlock
from rusm.net import ClusterNode


async def ledger(proc: Process) -> None:
    await asyncio.get_running_loop().create_future()


async def worker(proc: Process, name: str | None = None) -> None:
    if name is not None:
        proc.register(name)
    while True:
        await proc.receive()


def setup(node: ClusterNode) -> None:
    node.register_spawnable("worker", worker)
    node.runtime.register("ledger", node.runtime.spawn(ledger, label="ledger"))


def stuck(node: ClusterNode) -> None:
    """``setup``, and the demo's stuck scenarios running: ``deadlock_a`` (in a
    cycle of calls with its ``deadlock.b``) and ``backlog`` (its mailbox
    filling with orders, its state published)."""
    setup(node)
    rt = node.runtime
    rt.register("deadlock_a", rt.spawn(deadlock, label="deadlock.a"))
    rt.register("backlog", rt.spawn(backlog, 0.001, label="backlog"))


async def flaky(proc: Process) -> None:
    job = await proc.receive()
    raise ValueError(f"bad job {job!r}")


async def echo(proc: Process) -> None:
    while True:
        _ping, sender, n = await proc.receive()
        proc.send(sender, ("pong", n))


async def pinger(proc: Process) -> None:
    n = 0
    while True:
        n += 1
        proc.send("echo", ("ping", proc.pid, n))
        await proc.receive()
        await asyncio.sleep(0.02)


def watched(node: ClusterNode) -> None:
    setup(node)
    rt = node.runtime
    pool = Supervisor([ChildSpec("w1", worker), ChildSpec("w2", worker)])
    rt.register("services", rt.spawn(Supervisor([
        ChildSpec("flaky", flaky, name="flaky"), ChildSpec("pool", pool, label="pool"),
    ], max_restarts=100), label="services"))
    rt.register("echo", rt.spawn(echo, label="echo"))
    rt.register("pinger", rt.spawn(pinger, label="pinger"))


def broken(node: ClusterNode) -> None:
    raise RuntimeError("the app refused to start")
