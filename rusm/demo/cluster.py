"""``rusm demo``: an embedded two-node cluster (london, tokyo) with a live workload.

::

    async with demo_cluster() as (london, tokyo):
        ...  # attach an observer to london; the mailboxes rise and fall

Both nodes run in this process on 127.0.0.1 (any free port), under a fresh
cluster CA. The workload is made of ordinary processes, each driven by its
own ``receive(timeout=...)`` timers, so what the observer shows is what the
runtime does:

london
    ``demo_sup`` supervises three bursty ``producer`` processes
    (``producer.1`` .. ``producer.3``: a burst, then quiet, each on its own
    period so the bursts sometimes pile up), the slow ``consumer`` they feed
    (its mailbox grows during bursts and drains after), ``flaky`` (a worker
    that crashes every few seconds and is restarted), and ``sink`` (a fast
    drain, the default victim of the ``flood`` scenario). ``crash_watch``
    counts the restarts. ``pool_sup`` supervises a ``dispatcher`` and its
    ``worker.1`` .. ``worker.N``, which serve jobs from tokyo. ``tally`` counts
    the pings from tokyo and ``stats`` (both GenServers) answers calls with the runtime's
    counters; both are also global names.
tokyo
    ``tokyo_sup`` supervises ``pinger`` (a steady stream of pings to london's
    ``tally``), ``poller`` (calls the global ``stats`` twice a second),
    ``feeder`` (bursts of jobs to london's ``dispatcher``) and ``ledger``, a
    slow consumer of the acks that london's workers send back.

london also registers spawnable scenarios for the command pane, each finite:
``flood [N [TARGET]]``, ``fanout [N [EACH]]`` and ``crashloop [RESTARTS [EVERY]]``,
and three that stay until killed, for ``info``: ``deadlock``, ``backlog [EVERY]``
and ``blocker [EVERY [MS]]`` (rusm.demo.stuck).

Every period and rate is a field of :class:`DemoConfig`, so tests run the same
workload faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from rusm.actors import (
    Call,
    ChildSpec,
    Down,
    GenServer,
    NoReply,
    Pid,
    Process,
    ProcessExit,
    Reply,
    Runtime,
    RusmError,
    Supervisor,
    Timeout,
)
from rusm.net import ClusterCa, ClusterNode

from . import stuck

__all__ = [
    "SCENARIOS",
    "DemoConfig",
    "close_cluster",
    "crashloop",
    "demo_cluster",
    "fanout",
    "flood",
    "start_cluster",
]

SCENARIOS = ("flood", "fanout", "crashloop")
"""The spawnables london registers (``spawn NAME [ARGS]`` in the command pane)."""

MAX_FLOOD = 1_000_000
MAX_FANOUT_MESSAGES = 1_000_000
MAX_CRASHLOOP_RESTARTS = 10_000

Dest = Pid | str | tuple[str, str]


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """Periods (seconds), rates (messages per second) and sizes of the workload.

    The defaults are the demo's: mailboxes visibly rise and fall over a few
    seconds at a few percent of one core.
    """

    tick: float = 0.1
    """Granularity of the paced loops (bursts, drains, floods)."""
    producers: int = 3
    burst: int = 200
    """Messages per burst, per producer."""
    burst_for: float = 0.5
    """A burst is spread over this long."""
    burst_every: float = 5.0
    """Period of the first producer; the others are 1.3 and 1.7 times longer."""
    consume_rate: float = 120.0
    """How many messages per second the slow consumer handles."""
    flaky_share: int = 10
    """One job in this many also goes to the flaky worker."""
    flaky_job_time: float = 0.05
    """How long the flaky worker takes over one job (what it holds when it
    crashes is lost: the observer counts those as dead letters)."""
    crash_every: float = 4.0
    """The flaky worker crashes after this long (and is restarted)."""
    sink_rate: float = 1000.0
    """How fast ``sink`` drains (the flood's default victim)."""
    workers: int = 8
    job_time: float = 0.2
    """How long a pool worker takes over one job from tokyo."""
    ping_every: float = 0.1
    """tokyo's pinger sends one ping to london's ``tally`` this often."""
    poll_every: float = 0.5
    """tokyo's poller calls london's global ``stats`` this often."""
    feed_burst: int = 40
    feed_every: float = 5.0
    ledger_rate: float = 20.0
    """How many acks per second tokyo's ``ledger`` records."""
    flood_n: int = 5000
    """Default messages of ``spawn flood``."""
    flood_rate: float = 10_000.0
    fanout_children: int = 20
    fanout_each: int = 50
    """Default messages per child of ``spawn fanout``."""
    fanout_spread: float = 2.0
    """Each fan-out child spreads its messages over this long."""
    collect_rate: float = 250.0
    """How fast the fan-out collector takes its messages."""
    crashloop_restarts: int = 10
    crashloop_every: float = 0.5


# -- helpers -------------------------------------------------------------------


def _now() -> float:
    return asyncio.get_running_loop().time()


def _dest(target: Any) -> Dest:
    """A destination given as a term (a list from the command pane becomes (name, node))."""
    if isinstance(target, list | tuple) and len(target) == 2 and all(
        isinstance(x, str) for x in target
    ):
        return (target[0], target[1])
    if isinstance(target, Pid | str):
        return target
    raise ValueError(f"not a destination (pid, name or [name, node]): {target!r}")


def _per_tick(rate: float, tick: float) -> int:
    return max(1, round(rate * tick))


async def _pause(proc: Process, seconds: float, answer: Any = None) -> None:
    """Wait ``seconds`` on a ``receive`` timer, answering calls with ``answer``
    and dropping anything else that arrives meanwhile."""
    deadline = _now() + seconds
    while (left := deadline - _now()) > 0:
        try:
            msg = await proc.receive(timeout=left)
        except Timeout:
            return
        if isinstance(msg, Call):
            msg.reply(answer)


async def _take(proc: Process, most: int, timeout: float | None = None) -> int:
    """Wait for one message, then take what else is there, up to ``most``.
    Returns how many were taken; raises Timeout after ``timeout`` with none."""
    taken = 0
    while taken < most:
        try:
            msg = await proc.receive(timeout=timeout if taken == 0 else 0)
        except Timeout:
            if taken == 0:
                raise
            break
        if isinstance(msg, Call):
            msg.reply("busy")
        taken += 1
    return taken


async def _work(seconds: float) -> None:
    """Simulated work: the process is busy (``running``), not waiting in receive."""
    await asyncio.sleep(seconds)


# -- london --------------------------------------------------------------------


async def producer(proc: Process, cfg: DemoConfig, period: float, offset: float) -> None:
    """Bursts of ``cfg.burst`` jobs to ``consumer`` (some also to ``flaky``), then quiet."""
    sent = 0
    await _pause(proc, offset, sent)
    ticks = max(1, round(cfg.burst_for / cfg.tick))
    per_tick = math.ceil(cfg.burst / ticks)
    while True:
        start = _now()
        left = cfg.burst
        while left > 0:
            for _ in range(min(per_tick, left)):
                sent += 1
                proc.send("consumer", ("job", sent))
                if sent % cfg.flaky_share == 0:
                    proc.send("flaky", ("job", sent))
            left -= per_tick
            await _pause(proc, cfg.tick, sent)
        await _pause(proc, period - (_now() - start), sent)


async def drain(proc: Process, rate: float, tick: float) -> None:
    """A consumer that handles ``rate`` messages a second, whatever arrives:
    its mailbox grows while more comes in, and drains after."""
    most = _per_tick(rate, tick)
    while True:
        await _take(proc, most)
        await _work(tick)


async def flaky(proc: Process, crash_every: float, job_time: float) -> None:
    """Takes ``job_time`` over each job and crashes after ``crash_every`` seconds,
    whatever it was doing."""
    deadline = _now() + crash_every
    done = 0
    while (left := deadline - _now()) > 0:
        try:
            msg = await proc.receive(timeout=left)
        except Timeout:
            break
        if isinstance(msg, Call):
            msg.reply({"done": done})
            continue
        await _work(min(job_time, max(0.0, deadline - _now())))
        done += 1
    raise RuntimeError(f"flaky worker crashed after {done} jobs")


async def crash_watch(proc: Process, sup: str, child: str) -> None:
    """Monitors the supervisor's ``child`` and counts its restarts; answers
    ``Call("restarts")`` with the count."""
    restarts = 0
    while True:
        try:
            pid = dict(await proc.call(sup, "which_children")).get(child)
        except RusmError:  # the supervisor is restarting or gone: look again soon
            pid = None
        if pid is None:
            await _pause(proc, 0.1, restarts)
            continue
        ref = proc.monitor(pid)
        while True:
            msg = await proc.receive()
            if isinstance(msg, Call):
                msg.reply(restarts)
            elif isinstance(msg, Down) and msg.ref == ref:
                # noproc too: it crashed between the answer and the monitor
                restarts += 1
                break


class Tally(GenServer):
    """Counts what it receives (tokyo's pings); ``Call("count")`` returns the count."""

    def init(self) -> int:
        return 0

    def handle_call(self, request: Any, from_: Any, count: int) -> Reply:
        return Reply(count, count)

    def handle_info(self, message: Any, count: int) -> NoReply:
        return NoReply(count + 1)


class Stats(GenServer):
    """Answers every call with this runtime's counters and the consumer's mailbox."""

    def init(self) -> None:
        return None

    def handle_call(self, request: Any, from_: Any, state: None) -> Reply:
        rt = self.proc.runtime
        s = rt.stats()
        consumer = rt.whereis("consumer")
        info = rt.process_info(consumer) if consumer is not None else None
        return Reply({
            "node": s.node,
            "processes": s.processes,
            "messages": s.messages,
            "dead_letters": s.dead_letters,
            "consumer_mailbox": info.mailbox_depth if info else 0,
        }, state)


async def dispatcher(proc: Process, workers: int) -> None:
    """Hands each job to the next ``worker.K`` in turn."""
    k = 0
    while True:
        msg = await proc.receive()
        if isinstance(msg, Call):
            msg.reply(k)
            continue
        k = k % workers + 1
        proc.send(f"worker.{k}", msg)


async def worker(proc: Process, job_time: float) -> None:
    """Takes ``job_time`` over a ``("job", n, reply_to)`` and acks ``("done", n)``."""
    while True:
        msg = await proc.receive()
        if isinstance(msg, Call):
            msg.reply("idle")
            continue
        await _work(job_time)
        if isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "job":
            with contextlib.suppress(ValueError, TypeError):
                proc.send(_dest(msg[2]), ("done", msg[1]))


# -- tokyo ---------------------------------------------------------------------


async def pinger(proc: Process, every: float, node: str, name: str) -> None:
    """One ping to ``name`` on ``node`` every ``every`` seconds."""
    n = 0
    while True:
        n += 1
        proc.send((name, node), ("ping", n))
        await _pause(proc, every, n)


async def poller(proc: Process, cluster: ClusterNode, every: float, name: str) -> None:
    """Calls the global ``name`` every ``every`` seconds; ``Call`` returns its last answer."""
    last: Any = None
    while True:
        pid = cluster.whereis_global_pid(name)
        if pid is not None:
            try:
                last = await proc.call(pid, "stats", timeout=max(every, 1.0))
            except RusmError as e:  # london restarting or gone: keep polling
                last = {"error": str(e)}
        await _pause(proc, every, last)


async def feeder(proc: Process, cfg: DemoConfig, node: str) -> None:
    """Bursts of jobs to ``dispatcher`` on ``node``; their acks go to ``ledger``."""
    n = 0
    await _pause(proc, cfg.feed_every / 2, n)
    while True:
        ledger = ("ledger", proc.runtime.node)
        for _ in range(cfg.feed_burst):
            n += 1
            proc.send(("dispatcher", node), ("job", n, ledger))
        await _pause(proc, cfg.feed_every, n)


# -- scenarios (spawnables on london) --------------------------------------------


async def flood(
    proc: Process, n: int | None = None, target: Any = "sink", *, cfg: DemoConfig
) -> None:
    """``spawn flood [N [TARGET]]``: sends N messages to TARGET (default
    ``sink``, which drains them) at ``cfg.flood_rate`` a second, then exits."""
    n = cfg.flood_n if n is None else n
    if not isinstance(n, int) or not 0 <= n <= MAX_FLOOD:
        raise ValueError(f"flood: N must be an int from 0 to {MAX_FLOOD}, not {n!r}")
    dest = _dest(target)
    per_tick = _per_tick(cfg.flood_rate, cfg.tick)
    sent = 0
    while sent < n:
        for _ in range(min(per_tick, n - sent)):
            sent += 1
            proc.send(dest, ("flood", sent))
        if sent < n:
            await _pause(proc, cfg.tick, sent)


async def _fanout_child(proc: Process, collector: Pid, each: int, cfg: DemoConfig) -> None:
    ticks = max(1, round(cfg.fanout_spread / cfg.tick))
    per_tick = math.ceil(each / ticks)
    sent = 0
    while sent < each:
        for _ in range(min(per_tick, each - sent)):
            sent += 1
            proc.send(collector, ("fan", proc.pid, sent))
        if sent < each:
            await _pause(proc, cfg.tick, sent)


async def fanout(
    proc: Process, n: int | None = None, each: int | None = None, *, cfg: DemoConfig
) -> None:
    """``spawn fanout [N [EACH]]``: spawns N linked children that each send EACH
    messages to this process, which collects them at ``cfg.collect_rate`` a
    second and exits (normally) when it has them all."""
    n = cfg.fanout_children if n is None else n
    each = cfg.fanout_each if each is None else each
    if not (isinstance(n, int) and isinstance(each, int) and n >= 0 and each >= 0
            and n * each <= MAX_FANOUT_MESSAGES):
        raise ValueError(f"fanout: N and EACH must be ints with N*EACH <= {MAX_FANOUT_MESSAGES}")
    for _ in range(n):
        proc.spawn_link(_fanout_child, proc.pid, each, cfg, label="fanout.child")
    expected = n * each
    got = 0
    most = _per_tick(cfg.collect_rate, cfg.tick)
    idle_limit = cfg.fanout_spread + 10.0
    while got < expected:
        try:
            got += await _take(proc, min(most, expected - got), timeout=idle_limit)
        except Timeout:
            raise ProcessExit(("incomplete", got, expected)) from None
        await _work(cfg.tick)


async def _crasher(proc: Process, every: float) -> None:
    await _pause(proc, every)
    raise RuntimeError(f"crashloop worker {proc.pid} crashed")


async def crashloop(
    proc: Process, restarts: int | None = None, every: float | None = None, *, cfg: DemoConfig
) -> None:
    """``spawn crashloop [RESTARTS [EVERY]]``: this process is a supervisor whose
    worker crashes every EVERY seconds. It restarts it RESTARTS times; the
    next crash exceeds its restart intensity and it gives up (exits with
    reason ``shutdown``), as an OTP supervisor does."""
    restarts = cfg.crashloop_restarts if restarts is None else restarts
    every = cfg.crashloop_every if every is None else float(every)
    if not isinstance(restarts, int) or not 0 <= restarts <= MAX_CRASHLOOP_RESTARTS:
        raise ValueError(f"crashloop: RESTARTS must be an int from 0 to {MAX_CRASHLOOP_RESTARTS}")
    if not every > 0:
        raise ValueError("crashloop: EVERY must be > 0 seconds")
    spec = Supervisor(
        [ChildSpec("worker", _crasher, args=(every,), label="crashloop.worker")],
        strategy="one_for_one",
        max_restarts=restarts,
        max_seconds=(restarts + 1) * every * 2 + 1.0,
    )
    await spec(proc)


# -- the cluster -----------------------------------------------------------------


def _start_london(node: ClusterNode, cfg: DemoConfig) -> None:
    rt = node.runtime
    periods = [cfg.burst_every * f for f in (1.0, 1.3, 1.7)]
    producers = [
        ChildSpec(
            f"producer.{i + 1}", producer,
            args=(cfg, periods[i % 3] * (1 + i // 3 * 0.1), i * cfg.burst_for),
            name=f"producer.{i + 1}", label="producer",
        )
        for i in range(cfg.producers)
    ]
    demo_sup = rt.spawn(
        Supervisor(
            [
                ChildSpec("consumer", drain, args=(cfg.consume_rate, cfg.tick),
                          name="consumer", label="consumer"),
                ChildSpec("sink", drain, args=(cfg.sink_rate, cfg.tick),
                          name="sink", label="sink"),
                ChildSpec("flaky", flaky, args=(cfg.crash_every, cfg.flaky_job_time),
                          name="flaky", label="flaky"),
                *producers,
            ],
            strategy="one_for_one",
            # flaky crashes on schedule; only a storm of other crashes stops the demo
            max_restarts=math.ceil(10.0 / cfg.crash_every) + 10,
            max_seconds=10.0,
        ),
        label="demo_sup",
    )
    rt.register("demo_sup", demo_sup)
    rt.register("crash_watch", rt.spawn(crash_watch, "demo_sup", "flaky", label="crash_watch"))
    pool_sup = rt.spawn(
        Supervisor(
            [
                ChildSpec("dispatcher", dispatcher, args=(cfg.workers,),
                          name="dispatcher", label="dispatcher"),
                *(
                    ChildSpec(f"worker.{k}", worker, args=(cfg.job_time,),
                              name=f"worker.{k}", label="worker")
                    for k in range(1, cfg.workers + 1)
                ),
            ],
            strategy="one_for_one",
            max_restarts=10,
            max_seconds=10.0,
        ),
        label="pool_sup",
    )
    rt.register("pool_sup", pool_sup)
    for name, server in (("tally", Tally), ("stats", Stats)):
        rt.register(name, rt.spawn(server.serve, label=name))
    node.register_spawnable("flood", functools.partial(flood, cfg=cfg))
    node.register_spawnable("fanout", functools.partial(fanout, cfg=cfg))
    node.register_spawnable("crashloop", functools.partial(crashloop, cfg=cfg))
    for name, scenario in (("deadlock", stuck.deadlock), ("backlog", stuck.backlog),
                           ("blocker", stuck.blocker)):
        node.register_spawnable(name, scenario)


def _start_tokyo(node: ClusterNode, cfg: DemoConfig, london: str) -> None:
    rt = node.runtime
    sup = rt.spawn(
        Supervisor(
            [
                ChildSpec("ledger", drain, args=(cfg.ledger_rate, cfg.tick),
                          name="ledger", label="ledger"),
                ChildSpec("pinger", pinger, args=(cfg.ping_every, london, "tally"),
                          name="pinger", label="pinger"),
                ChildSpec("poller", poller, args=(node, cfg.poll_every, "stats"),
                          name="poller", label="poller"),
                ChildSpec("feeder", feeder, args=(cfg, london), name="feeder", label="feeder"),
            ],
            strategy="one_for_one",
            max_restarts=10,
            max_seconds=10.0,
        ),
        label="tokyo_sup",
    )
    rt.register("tokyo_sup", sup)


async def start_cluster(
    config: DemoConfig | None = None,
    *,
    ca: ClusterCa | None = None,
    host: str = "127.0.0.1",
) -> tuple[ClusterNode, ClusterNode]:
    """Bind london and tokyo on ``host`` (free ports), connect them and start
    the workload. The caller closes both (:func:`close_cluster`)."""
    cfg = config or DemoConfig()
    ca = ca or ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), (host, 0), ca.issue("london"))
    try:
        tokyo = await ClusterNode.bind("tokyo", Runtime(), (host, 0), ca.issue("tokyo"))
    except BaseException:
        await london.close()
        raise
    try:
        _start_london(london, cfg)
        await london.register_global("tally", _whereis(london, "tally"))
        await london.register_global("stats", _whereis(london, "stats"))
        await tokyo.connect(london.local_addr())
        _start_tokyo(tokyo, cfg, "london")
    except BaseException:
        await close_cluster(london, tokyo)
        raise
    return london, tokyo


def _whereis(node: ClusterNode, name: str) -> Pid:
    pid = node.runtime.whereis(name)
    assert pid is not None, name
    return pid


async def close_cluster(london: ClusterNode, tokyo: ClusterNode) -> None:
    """Close both nodes (tokyo first, so london's processes see no node go down)."""
    try:
        await tokyo.close()
    finally:
        await london.close()


@contextlib.asynccontextmanager
async def demo_cluster(
    config: DemoConfig | None = None,
    *,
    ca: ClusterCa | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[tuple[ClusterNode, ClusterNode]]:
    """:func:`start_cluster` as a context manager: yields (london, tokyo) and
    closes both at exit, leaving no task behind."""
    london, tokyo = await start_cluster(config, ca=ca, host=host)
    try:
        yield london, tokyo
    finally:
        await close_cluster(london, tokyo)
