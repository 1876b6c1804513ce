"""The ``rusm demo`` cluster: real london and tokyo nodes in this process, the
workload sped up (same processes, shorter periods)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rusm.actors import Pid, Runtime
from rusm.demo.cluster import DemoConfig, close_cluster, demo_cluster, start_cluster
from rusm.net import ClusterCa, ClusterNode

from .helpers import probe, until

FAST = DemoConfig(
    tick=0.02,
    burst=200,
    burst_for=0.1,
    burst_every=1.0,
    consume_rate=1000.0,
    flaky_job_time=0.002,
    crash_every=0.3,
    sink_rate=20_000.0,
    job_time=0.01,
    ping_every=0.02,
    poll_every=0.1,
    feed_burst=20,
    feed_every=0.3,
    ledger_rate=200.0,
    flood_n=2000,
    flood_rate=50_000.0,
    fanout_children=5,
    fanout_each=20,
    fanout_spread=0.1,
    collect_rate=2000.0,
    crashloop_restarts=3,
    crashloop_every=0.05,
)

Demo = tuple[ClusterNode, ClusterNode]


@pytest.fixture(scope="module")
def ca() -> ClusterCa:
    return ClusterCa.generate()


def _no_task_left() -> None:
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"the closed demo cluster left tasks behind: {left}"


@pytest.fixture
async def demo(ca: ClusterCa) -> AsyncIterator[Demo]:
    async with demo_cluster(FAST, ca=ca) as nodes:
        yield nodes
    _no_task_left()


def labels(rt: Runtime) -> set[str]:
    return {i.label for i in rt.processes() if i.label is not None}


def info_of(rt: Runtime, name: str) -> tuple[Pid | None, int, int]:
    """(pid, mailbox depth, messages received) of the process registered as ``name``."""
    pid = rt.whereis(name)
    info = rt.process_info(pid) if pid is not None else None
    return (pid, info.mailbox_depth, info.received) if info else (None, 0, 0)


async def test_both_nodes_run_the_labelled_and_named_demo_processes(demo: Demo) -> None:
    london, tokyo = demo
    assert london.nodes() == ["tokyo"] and tokyo.nodes() == ["london"]
    london_labels = {"demo_sup", "producer", "consumer", "flaky", "sink", "crash_watch",
                     "pool_sup", "dispatcher", "worker", "tally", "stats"}
    tokyo_labels = {"tokyo_sup", "ledger", "pinger", "poller", "feeder"}
    await until(lambda: london_labels <= labels(london.runtime), "london's processes")
    await until(lambda: tokyo_labels <= labels(tokyo.runtime), "tokyo's processes")
    names = set(london.runtime.registered())
    assert {"producer.1", "producer.2", "producer.3", "consumer", "flaky", "sink",
            "dispatcher", "tally", "stats", "crash_watch"} <= names
    assert {f"worker.{k}" for k in range(1, FAST.workers + 1)} <= names
    assert 20 <= london.runtime.stats().processes + tokyo.runtime.stats().processes <= 40
    stats = london.runtime.whereis("stats")
    await until(lambda: tokyo.whereis_global_pid("stats") == stats, "the global name on tokyo")


async def test_pings_from_tokyo_keep_raising_the_tally_on_london(demo: Demo) -> None:
    london, tokyo = demo
    _, _, before = info_of(london.runtime, "tally")
    await until(lambda: info_of(london.runtime, "tally")[2] >= before + 10, "pings")
    assert await tokyo.call("london", "tally", "count") >= 10


async def test_jobs_from_tokyo_are_served_on_london_and_acked_back(demo: Demo) -> None:
    london, tokyo = demo
    await until(lambda: info_of(london.runtime, "dispatcher")[2] >= FAST.feed_burst, "jobs")
    await until(lambda: info_of(tokyo.runtime, "ledger")[2] >= FAST.feed_burst, "acks")
    await until(lambda: info_of(london.runtime, "stats")[2] >= 2, "the poller's calls")
    answer = await tokyo.runtime.call("poller", "last")
    assert isinstance(answer, dict) and answer["node"] == "london"


async def test_the_slow_consumer_mailbox_rises_during_bursts_and_drains_after(
    demo: Demo,
) -> None:
    london, _ = demo

    def depth() -> int:
        return info_of(london.runtime, "consumer")[1]

    await until(lambda: depth() >= 50, "the consumer's mailbox to rise")
    await until(lambda: depth() <= 5, "the consumer's mailbox to drain")
    await until(lambda: depth() >= 50, "the next burst")


async def test_the_supervisor_keeps_restarting_the_crashing_worker(demo: Demo) -> None:
    london, _ = demo
    seen: set[Pid] = set()

    def restarted_twice() -> bool:
        pid = london.runtime.whereis("flaky")
        if pid is not None:
            seen.add(pid)
        return len(seen) >= 3

    await until(restarted_twice, "two restarts of flaky")
    assert await london.runtime.call("crash_watch", "restarts") >= 2


async def test_spawn_flood_with_no_args_floods_the_sink_which_drains(demo: Demo) -> None:
    london, tokyo = demo
    _, _, before = info_of(london.runtime, "sink")
    pid = await tokyo.spawn_remote("london", "flood", [])
    await until(lambda: info_of(london.runtime, "sink")[2] >= before + FAST.flood_n, "the flood")
    await until(lambda: not london.runtime.is_alive(pid), "the flood to end")
    await until(lambda: info_of(london.runtime, "sink")[1] == 0, "the sink to drain")


async def test_spawn_flood_takes_a_count_and_a_victim(demo: Demo) -> None:
    london, tokyo = demo
    _, _, before = info_of(london.runtime, "consumer")
    await tokyo.spawn_remote("london", "flood", [300, "consumer"])
    await until(lambda: info_of(london.runtime, "consumer")[2] >= before + 300, "the flood")


async def test_spawn_fanout_with_no_args_collects_every_child_message(demo: Demo) -> None:
    london, tokyo = demo
    watcher = await probe(london.runtime)
    spawned = london.runtime.spawned
    pid = await tokyo.spawn_remote("london", "fanout", [])
    watcher.proc.monitor(pid)
    down = await watcher.next()
    assert down.pid == pid and down.reason == "normal"  # it exits so only with all messages
    assert london.runtime.spawned - spawned >= 1 + FAST.fanout_children


async def test_spawn_crashloop_with_no_args_restarts_its_worker_until_it_gives_up(
    demo: Demo,
) -> None:
    london, tokyo = demo
    watcher = await probe(london.runtime)
    pid = await tokyo.spawn_remote("london", "crashloop", [])
    watcher.proc.monitor(pid)
    workers: set[Pid] = set()

    def every_worker_seen() -> bool:
        workers.update(i.pid for i in london.runtime.processes()
                       if i.label == "crashloop.worker" and pid in i.links)
        return len(workers) == FAST.crashloop_restarts + 1  # the first, then each restart

    await until(every_worker_seen, "the crash loop's workers")
    down = await watcher.next()
    assert down.pid == pid and down.reason == "shutdown"


async def test_start_cluster_returns_nodes_that_close_without_leaving_a_task(
    ca: ClusterCa,
) -> None:
    london, tokyo = await start_cluster(FAST, ca=ca)
    assert (london.name, tokyo.name) == ("london", "tokyo")
    await close_cluster(london, tokyo)
    _no_task_left()
