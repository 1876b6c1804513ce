"""Nodes in separate OS processes: the peer is tests/nodeproc.py, killed for real.

Our node ("tokyo") runs in the test's event loop; "london" is a child Python
process that prints its port as one JSON line. The tests wait on events
(probe mailboxes, process exit), never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rusm.actors import Down, Exit, Runtime
from rusm.net import ClusterCa, ClusterConfig, ClusterNode, NodeDown

from .helpers import EVENT_TIMEOUT, Probe, probe

LOCAL = ("127.0.0.1", 0)
REPO = Path(__file__).resolve().parent.parent
NODEPROC = Path(__file__).with_name("nodeproc.py")
STARTUP_TIMEOUT = 20.0
"""Seconds a child node may take to import, bind and print its port."""
EXIT_TIMEOUT = 10.0
"""Seconds a child may take to exit once told to (or killed)."""
IDLE = 2.0
"""The idle timeout of both ends in the failure-detection tests."""


@dataclass
class Certs:
    ca: ClusterCa
    london: Path
    """Where london's identity is saved, for the child processes."""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = ClusterCa.generate()
    london = tmp_path_factory.mktemp("certs") / "london"
    ca.issue("london").save(london)
    return Certs(ca, london)


@dataclass
class Child:
    """A node in a child process, as it announced itself."""

    proc: asyncio.subprocess.Process
    name: str
    port: int

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


class Harness:
    """Child nodes and our own node for one test; everything stopped at its end."""

    def __init__(self, certs: Certs) -> None:
        self.certs = certs
        self.children: list[asyncio.subprocess.Process] = []
        self.nodes: list[ClusterNode] = []

    async def child(self, *options: str) -> Child:
        """Start london in a child process and wait for its JSON line."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(NODEPROC),
            "london",
            str(self.certs.london),
            *options,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
            env=env,
        )
        self.children.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), STARTUP_TIMEOUT)
        assert line, f"the child node exited before it listened (code {await proc.wait()})"
        info = json.loads(line)
        return Child(proc, info["name"], info["port"])

    async def node(self, **config: Any) -> ClusterNode:
        node = await ClusterNode.bind(
            "tokyo", Runtime(), LOCAL, self.certs.ca.issue("tokyo"), ClusterConfig(**config)
        )
        self.nodes.append(node)
        return node

    async def close(self) -> None:
        for node in self.nodes:
            await node.close()
        for proc in self.children:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            if proc.stdin is not None:
                proc.stdin.close()
            await asyncio.wait_for(proc.wait(), EXIT_TIMEOUT)


@pytest.fixture
async def harness(certs: Certs) -> AsyncIterator[Harness]:
    h = Harness(certs)
    try:
        yield h
    finally:
        await h.close()
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"the test left tasks behind: {left}"
    alive = [p.pid for p in h.children if p.returncode is None]
    assert not alive, f"the test left child processes behind: {alive}"


async def node_down(watcher: Probe, timeout: float = EVENT_TIMEOUT) -> Any:
    return await asyncio.wait_for(watcher.inbox.get(), timeout)


async def test_a_node_in_another_os_process_answers_calls_and_messages_and_spawns(
    harness: Harness,
) -> None:
    london = await harness.child()
    assert london.name == "london"
    tokyo = await harness.node()
    remote = await tokyo.connect(london.addr)
    assert remote.name == "london"
    assert tokyo.nodes() == ["london"]

    assert await remote.call("echo", "hi") == ("echo", "hi")
    assert await tokyo.call("london", "echo", (1, b"two", [3.0])) == ("echo", (1, b"two", [3.0]))

    # Location transparency: the remote echo replies to a pid it was sent.
    p = await probe(tokyo.runtime)
    remote.send("echo", ("echo_to", p.pid, ("back", 42)))
    assert await p.next() == ("back", 42)

    worker = await tokyo.spawn_remote("london", "worker", [p.pid])
    assert worker.node == "london"
    assert await p.next() == ("worker_up", worker)
    assert worker in await tokyo.remote_pids("london")
    p.proc.send(worker, ("ping", p.pid))
    assert await p.next() == ("pong", worker)
    await p.nothing_more()


async def test_a_killed_node_is_noticed_within_the_idle_timeout_by_every_watcher(
    harness: Harness,
) -> None:
    london = await harness.child("--idle-timeout", str(IDLE))
    tokyo = await harness.node(idle_timeout=IDLE)
    await tokyo.connect(london.addr)
    rt = tokyo.runtime
    watcher = await probe(rt)
    monitor = await probe(rt)
    linked = await probe(rt, trap=True)

    w1 = await tokyo.spawn_remote("london", "worker", [monitor.pid])
    assert await monitor.next() == ("worker_up", w1)
    w2 = await tokyo.spawn_remote("london", "worker", [linked.pid])
    assert await linked.next() == ("worker_up", w2)

    # A ping after the monitor (and the link) travels on the same pair: its
    # pong proves the remote side has set them up.
    ref = monitor.proc.monitor(w1)
    monitor.proc.send(w1, ("ping", monitor.pid))
    assert await monitor.next() == ("pong", w1)
    linked.proc.link(w2)
    linked.proc.send(w2, ("ping", linked.pid))
    assert await linked.next() == ("pong", w2)
    info1 = await tokyo.remote_process_info("london", w1)
    info2 = await tokyo.remote_process_info("london", w2)
    assert info1 is not None and info1["monitored_by"] == [monitor.pid]
    assert info2 is not None and info2["links"] == [linked.pid]

    tokyo.monitor_node("london", watcher.pid)
    loop = asyncio.get_running_loop()
    london.proc.kill()
    killed_at = loop.time()

    assert await node_down(watcher, IDLE + 5.0) == NodeDown("london")
    elapsed = loop.time() - killed_at
    assert elapsed <= IDLE + 1.0, f"NodeDown came {elapsed:.2f} s after the kill"
    assert await monitor.next() == Down(ref, w1, "noconnection")
    assert await linked.next() == Exit(w2, "noconnection")
    # Exactly once, and nothing from london after it.
    await watcher.nothing_more()
    await monitor.nothing_more()
    await linked.nothing_more()
    assert tokyo.nodes() == []
    assert await asyncio.wait_for(london.proc.wait(), EXIT_TIMEOUT) == -signal.SIGKILL


async def test_a_node_can_be_connected_again_after_it_restarts(harness: Harness) -> None:
    first = await harness.child("--idle-timeout", str(IDLE))
    tokyo = await harness.node(idle_timeout=IDLE)
    await tokyo.connect(first.addr)
    watcher = await probe(tokyo.runtime)
    tokyo.monitor_node("london", watcher.pid)
    first.proc.kill()
    assert await node_down(watcher, IDLE + 5.0) == NodeDown("london")
    await asyncio.wait_for(first.proc.wait(), EXIT_TIMEOUT)

    second = await harness.child("--idle-timeout", str(IDLE))  # same name and certificate
    remote = await tokyo.connect(second.addr)
    assert remote.name == "london"
    assert tokyo.nodes() == ["london"]
    assert await remote.call("echo", "again") == ("echo", "again")
    tokyo.monitor_node("london", watcher.pid)  # watches the new link, not the old one
    await watcher.nothing_more()


async def test_a_pid_of_a_previous_run_of_a_node_reaches_nobody(harness: Harness) -> None:
    first = await harness.child()
    tokyo = await harness.node()
    await tokyo.connect(first.addr)
    p = await probe(tokyo.runtime)
    tokyo.monitor_node("london", p.pid)
    old = await tokyo.spawn_remote("london", "worker", [p.pid])
    assert await p.next() == ("worker_up", old)
    first.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.proc.wait(), EXIT_TIMEOUT) == 0
    assert await p.next() == NodeDown("london")

    second = await harness.child()
    await tokyo.connect(second.addr)
    new = await tokyo.spawn_remote("london", "worker", [p.pid])
    assert await p.next() == ("worker_up", new)
    # The stale ping goes first; if it reached the new worker, its pong would
    # come before the fresh one (same pair both ways when the pids are equal).
    p.proc.send(old, ("ping", p.pid, "stale"))
    p.proc.send(new, ("ping", p.pid, "fresh"))
    assert await p.next() == ("pong", new, "fresh")
    assert new != old


async def test_sigterm_stops_the_node_cleanly_and_its_peers_see_it_go(harness: Harness) -> None:
    london = await harness.child()
    tokyo = await harness.node()  # idle_timeout 10 s: a NodeDown within 5 s is the close
    await tokyo.connect(london.addr)
    watcher = await probe(tokyo.runtime)
    monitor = await probe(tokyo.runtime)
    worker = await tokyo.spawn_remote("london", "worker", [monitor.pid])
    assert await monitor.next() == ("worker_up", worker)
    ref = monitor.proc.monitor(worker)
    monitor.proc.send(worker, ("ping", monitor.pid))
    assert await monitor.next() == ("pong", worker)
    tokyo.monitor_node("london", watcher.pid)

    london.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(london.proc.wait(), EXIT_TIMEOUT) == 0
    assert await node_down(watcher) == NodeDown("london")
    # The closing node stopped its processes and told us before it went.
    assert await monitor.next() == Down(ref, worker, "shutdown")
    await watcher.nothing_more()
    await monitor.nothing_more()
    assert tokyo.nodes() == []
