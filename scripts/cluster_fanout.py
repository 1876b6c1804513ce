"""Cluster benchmark: RUSM between two OS processes, against bare qh3 on one stream.

Two nodes on loopback, each in its own OS process: this script is ``tokyo``
and re-executes itself as the ``london`` child (``--serve``). The
certificates are made by a fresh cluster CA in a temporary directory and
loaded from there by both processes. Both sides use mutual TLS
(:mod:`rusm.net.mtls`: the server demands and checks the client's
certificate), so their handshakes are comparable.

RUSM: ``ClusterConfig(lanes=K, busy_wait=S)`` on both nodes (``--lanes``,
``--busy-wait``, default RUSM's; the ceiling never busy-waits). London runs a
registered ``echo`` process that replies to every Call with its request,
and a registered ``window_echo`` process that answers every
``("ping", pid, ref, payload)`` by sending ``("pong", ref, payload)`` to
``pid``. Tokyo's callers call ``echo`` with a 64-byte payload (two
cross-node hops and two process hops per round trip).

Ceiling: the engine's best, with the same two processes, certificates,
flow-control windows and payload: bare qh3, one long-lived unidirectional
stream each way. The client writes length-prefixed msgpack ``[id, payload]``
frames (4-byte big-endian length, as RUSM's framing; ormsgpack) on its
stream, the server decodes each and echoes it on its own stream. Each side
writes its stream at most once per loop turn (all the frames of that turn)
and transmits once per turn, as RUSM does; received datagrams are not
answered at once but in that same flush. Callers are tasks waiting on a
future; the window's one consumer is a task with a mailbox (a deque).

Workloads, measured the same way on each side:

1. ``unloaded``: one caller, ``--calls`` sequential calls after a warm-up;
2. ``c8``, ``c32``: 8 and 32 callers, each with one call in flight, looping;
3. ``window``: one process (RUSM) or task (ceiling) keeps 1,000 pings in
   flight: sends (not calls) them, and sends one new ping per pong, for a
   few seconds after a warm-up; then it stops and drains the pongs.

Each reports round trips/s, the round trip's p50/p99 and the CPU time per
round trip of each process (``cpu_us_per_rt``: tokyo from
``time.process_time``, london from /proc: its threads' ``schedstat``, in ns,
or else the 10 ms ticks of ``/proc/<pid>/stat``; None where there is no
/proc). On a shared machine the CPU figures are the steadier ones.

Handshakes: before its runs each side connects 20 times (5 with
``--quick``) and reports the median (and min, max) in ms. RUSM's
``connect_ms`` is ``ClusterNode.connect``: a new endpoint, TLS with the
client certificate, then the hello exchange (Hello, Hello, HelloAck both
ways; the link is up), each from a fresh node of its own name (bound and
closed untimed: after a disconnect, london keeps the old link through QUIC's
draining period, ~80 ms, and refuses the same name until then). The
ceiling's ``handshake_ms`` is a new endpoint and TLS with the client
certificate as the client sees it done, ``first_echo_ms`` that plus one
echo: by then the server has checked the client and answered, the
ceiling's analogue of "up"; ``ratio.handshake`` compares it with RUSM's.

Prints one JSON line on stdout: both sides' figures, the ratios
RUSM/ceiling (``ratio``; per workload: round trips/s, p50, p99, CPU per
round trip, both processes and each) and, with ``--profile``, where tokyo's
time goes. Progress goes to stderr.

    python scripts/cluster_fanout.py [--quick] [--uvloop] [--lanes K] [--busy-wait S]
                                     [--calls N] [--repeat R] [--profile FILE [--profile-clock C]]

With ``--repeat R`` it runs R rounds of RUSM-then-ceiling: ``rusm`` and
``ceiling`` are the last round's figures, ``medians`` the median of each
figure over the rounds, ``ratio`` each ratio's median (each round's ratio is
RUSM against the ceiling measured right after it) and ``ratio_rounds``
every round's ratios.

With ``--profile FILE`` tokyo is profiled (cProfile) during RUSM's loaded
workloads (c8, c32, window); FILE gets the stats of all three and the JSON's
``profile`` the top 10 functions of each by own time (``tottime``), with
their share of the profiled time, and the shares by area (rusm.actors,
rusm.net, qh3, asyncio...). The profile's clock (``--profile-clock``) is
wall time by default, as cProfile's: time tokyo spends descheduled counts
too (on a small machine the ``sendto`` that wakes london, which may then
take tokyo's CPU, can inflate the link's ``transmit``). ``cpu`` uses the
thread's CPU time instead, but each read of it costs ~0.4 us, charged to
the function being timed, which inflates small, frequent ones (``len``,
``dict.get``) and slows the run ~10x (wall: ~3x). Native code called
without a builtin-function object (uvloop's transport methods) counts as
its Python caller's own time. The figures of a profiled run suffer.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import logging
import os
import platform
import pstats
import statistics
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import ormsgpack
import qh3
from qh3.asyncio.protocol import QuicConnectionProtocol
from qh3.asyncio.server import serve
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.quic.events import QuicEvent, StreamDataReceived

from rusm import Call, ClusterCa, ClusterConfig, ClusterNode, Identity, Process, Runtime
from rusm.net.mtls import make_configuration, require_client_certificates
from rusm.net.quic import tune_transport

SCRIPT = Path(__file__).resolve()
HOST = "127.0.0.1"
PAYLOAD = bytes(range(64))
ECHO = ("echo", "london")
WINDOW_ECHO = ("window_echo", "london")
LEVELS = (8, 32)
"""Concurrent callers of the loaded call runs (one call in flight each)."""
WINDOW = 1000
"""Pings the window workload keeps in flight."""
WORKLOADS = ("unloaded", *(f"c{c}" for c in LEVELS), "window")
PROFILED = (*(f"c{c}" for c in LEVELS), "window")
"""The RUSM workloads ``--profile`` profiles."""
CEILING_ALPN = "rusm-bench-ceiling"

DEFAULTS = ClusterConfig()
IDLE_TIMEOUT = DEFAULTS.idle_timeout
"""QUIC idle timeout of both sides (RUSM's default)."""
MAX_DATA = DEFAULTS.max_inbound_bytes
MAX_STREAM_DATA = DEFAULTS.limits.max_message_frame + 4
"""The ceiling's flow-control windows: RUSM's (see ClusterNode._configuration)."""
CALL_TIMEOUT = 5.0
"""Seconds one call may take before the run fails."""
CONNECT_TIMEOUT = 10.0
READY_TIMEOUT = 15.0
"""Seconds the child may take to start and listen."""
STOP_GRACE = 3.0
"""Seconds the child may take to exit once told to; then it is killed."""
CHILD_LIFETIME = 900.0
"""A child exits by itself after this long, should its parent vanish."""
RECONNECT_PAUSE = 0.02
"""Seconds between two handshake samples."""

_HEADER = struct.Struct(">I")


@dataclass(frozen=True)
class Sizes:
    calls: int
    """Sequential calls of the unloaded measurement."""
    warmup: int
    saturation: int
    """Calls of each loaded call level, shared among its callers."""
    window_s: float
    """Seconds the window workload is measured, after ``window_warmup_s``."""
    window_warmup_s: float
    handshakes: int
    """Handshakes timed on each side."""
    phase_timeout: float
    """Seconds one measurement may take."""


FULL = Sizes(calls=10_000, warmup=1_000, saturation=40_000, window_s=3.0,
             window_warmup_s=0.5, handshakes=20, phase_timeout=180.0)
QUICK = Sizes(calls=300, warmup=50, saturation=1_200, window_s=0.5,
              window_warmup_s=0.2, handshakes=5, phase_timeout=10.0)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- shared measurement helpers ------------------------------------------------

CallFn = Callable[[bytes], Awaitable[Any]]
Job = Callable[[CallFn], Coroutine[Any, Any, list[int]]]
SendFn = Callable[[int], None]
"""Send the ping with this id."""
ReceiveFn = Callable[[], Awaitable[tuple[int, Any]]]
"""The next pong: (its id, its payload)."""
WindowJob = Callable[[SendFn, ReceiveFn], Coroutine[Any, Any, dict[str, Any]]]


class Client(Protocol):
    """One side's way to run a caller: ``start(job)`` runs ``job(call)`` in a
    caller of its own (a RUSM process or a task) and returns its result;
    ``start_window(job)`` runs ``job(send, receive)`` likewise."""

    def start(self, job: Job) -> asyncio.Future[list[int]]: ...

    def start_window(self, job: WindowJob) -> asyncio.Future[dict[str, Any]]: ...


async def call_loop(call: CallFn, n: int, warmup: int = 0) -> list[int]:
    """Make ``warmup + n`` sequential calls; the round trips (ns) of the last ``n``."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    for i in range(warmup + n):
        t0 = clock()
        reply = await call(PAYLOAD)
        t1 = clock()
        if reply != PAYLOAD:
            raise RuntimeError(f"the echo answered {reply!r}")
        if i >= warmup:
            samples.append(t1 - t0)
    return samples


def percentiles(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(ordered[len(ordered) // 2] / 1000, 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000, 1),
    }


class CpuMeter:
    """CPU seconds used by this process (tokyo) and by the london child, whose
    figure comes from /proc (None where there is no /proc): the nanoseconds of
    each of its threads' ``schedstat`` where the kernel keeps them, else the
    clock ticks (10 ms) of ``/proc/<pid>/stat``."""

    def __init__(self, child_pid: int) -> None:
        self.proc = Path(f"/proc/{child_pid}")
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.schedstat = (self.proc / "schedstat").exists()

    def _child(self) -> float | None:
        try:
            if self.schedstat:
                return sum(
                    int((task / "schedstat").read_text().split()[0])
                    for task in (self.proc / "task").iterdir()
                ) / 1e9
            fields = (self.proc / "stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        except (OSError, IndexError, ValueError):
            return None

    def read(self) -> tuple[float, float | None]:
        return time.process_time(), self._child()

    def per_call(self, before: tuple[float, float | None], calls: int) -> dict[str, float | None]:
        """CPU microseconds per call of each process since ``before``."""
        (tokyo0, london0), (tokyo1, london1) = before, self.read()
        london = None if london0 is None or london1 is None else (london1 - london0)
        return {
            "tokyo": round((tokyo1 - tokyo0) * 1e6 / calls, 1),
            "london": None if london is None else round(london * 1e6 / calls, 1),
        }


async def measure_unloaded(client: Client, meter: CpuMeter, sizes: Sizes) -> dict[str, Any]:
    job = partial(call_loop, n=sizes.calls, warmup=sizes.warmup)
    before = meter.read()
    samples = await client.start(job)
    return {
        "callers": 1,
        "round_trips": len(samples),
        "round_trips_per_s": round(1e9 * len(samples) / sum(samples), 1),
        **percentiles(samples),
        "cpu_us_per_rt": meter.per_call(before, sizes.calls + sizes.warmup),
    }


async def measure_saturation(
    client: Client, meter: CpuMeter, callers: int, total: int
) -> dict[str, Any]:
    each = max(1, total // callers)
    before = meter.read()
    t0 = time.perf_counter()
    runs = await asyncio.gather(*(client.start(partial(call_loop, n=each)) for _ in range(callers)))
    elapsed = time.perf_counter() - t0
    samples = [s for run in runs for s in run]
    return {
        "callers": callers,
        "round_trips": len(samples),
        "elapsed_s": round(elapsed, 3),
        "round_trips_per_s": round(len(samples) / elapsed, 1),
        **percentiles(samples),
        "cpu_us_per_rt": meter.per_call(before, len(samples)),
    }


async def window_loop(
    send: SendFn, receive: ReceiveFn, meter: CpuMeter, sizes: Sizes
) -> dict[str, Any]:
    """Keep WINDOW pings in flight, one new ping per pong: warm up, measure
    for ``sizes.window_s``, then stop sending and drain the pongs."""
    clock = time.perf_counter_ns
    ids = itertools.count()
    sent_at: dict[int, int] = {}
    for _ in range(WINDOW):
        rid = next(ids)
        sent_at[rid] = clock()
        send(rid)
    start = clock() + int(sizes.window_warmup_s * 1e9)
    end = start + int(sizes.window_s * 1e9)
    samples: list[int] = []
    before = None
    t0 = now = 0
    while True:
        rid, payload = await receive()
        now = clock()
        if payload != PAYLOAD:
            raise RuntimeError(f"the window echo answered {payload!r}")
        t = sent_at.pop(rid)
        if now >= start:
            if before is None:
                before, t0 = meter.read(), now
            elif now >= end:
                break
            samples.append(now - t)
        rid = next(ids)
        sent_at[rid] = clock()
        send(rid)
    cpu = meter.per_call(before, len(samples)) if before is not None else None
    elapsed = (now - t0) / 1e9
    while sent_at:  # the pings still in flight: london has nothing left over
        rid, _ = await receive()
        sent_at.pop(rid)
    return {
        "in_flight": WINDOW,
        "round_trips": len(samples),
        "elapsed_s": round(elapsed, 3),
        "round_trips_per_s": round(len(samples) / elapsed, 1) if elapsed else 0.0,
        **percentiles(samples or [0]),
        "cpu_us_per_rt": cpu,
    }


async def measure_window(client: Client, meter: CpuMeter, sizes: Sizes) -> dict[str, Any]:
    async def job(send: SendFn, receive: ReceiveFn) -> dict[str, Any]:
        return await window_loop(send, receive, meter, sizes)

    return await client.start_window(job)


def summary(figures: dict[str, Any]) -> str:
    return (f"{figures['round_trips_per_s']:,.0f} round trips/s, p50 {figures['p50_us']} us, "
            f"p99 {figures['p99_us']} us, cpu us/rt {figures['cpu_us_per_rt']}")


async def measure_all(
    side: str, client: Client, meter: CpuMeter, sizes: Sizes,
    profiles: dict[str, cProfile.Profile] | None,
) -> dict[str, Any]:
    """Every workload, each under a timeout; ``profiles[workload]``, if any,
    runs during that workload."""
    figures: dict[str, Any] = {}
    for workload in WORKLOADS:
        profile = None if profiles is None else profiles.get(workload)
        if profile is not None:
            profile.enable()
        try:
            async with asyncio.timeout(sizes.phase_timeout):
                if workload == "unloaded":
                    result = await measure_unloaded(client, meter, sizes)
                elif workload == "window":
                    result = await measure_window(client, meter, sizes)
                else:
                    callers = int(workload[1:])
                    result = await measure_saturation(client, meter, callers, sizes.saturation)
        finally:
            if profile is not None:
                profile.disable()
        figures[workload] = result
        note(f"{side} {workload}: {summary(result)}")
    return figures


def handshake_figures(samples: dict[str, list[float]]) -> dict[str, Any]:
    """Median, min and max (ms) of each list of handshake times (seconds)."""
    out: dict[str, Any] = {"samples": len(next(iter(samples.values())))}
    for key, values in samples.items():
        out[f"{key}_ms"] = round(statistics.median(values) * 1e3, 2)
        out[f"{key}_min_ms"] = round(min(values) * 1e3, 2)
        out[f"{key}_max_ms"] = round(max(values) * 1e3, 2)
    return out


# -- the london child ----------------------------------------------------------


@asynccontextmanager
async def london(
    kind: str, certs: Path, use_uvloop: bool, config: ClusterConfig
) -> AsyncIterator[tuple[int, CpuMeter]]:
    """Run this script as the london child serving ``kind``; yields its UDP port.
    The child is told to stop (its stdin closes) on exit, and killed if it lingers."""
    cmd = [sys.executable, str(SCRIPT), "--serve", kind, "--certs", str(certs),
           "--lanes", str(config.lanes), "--busy-wait", repr(config.busy_wait)]
    if use_uvloop:
        cmd.append("--uvloop")
    child = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), READY_TIMEOUT)
        if not line.startswith(b"READY "):
            raise RuntimeError(f"the london child ({kind}) did not start: {line!r}")
        yield int(line.split()[1]), CpuMeter(child.pid)
    finally:
        child.stdin.close()
        try:
            with suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), STOP_GRACE)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()


async def until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def echo(proc: Process) -> None:
    while True:
        msg = await proc.receive()
        if isinstance(msg, Call):
            msg.reply(msg.request)


async def window_echo(proc: Process) -> None:
    """Answer ``("ping", pid, ref, payload)`` with ``("pong", ref, payload)`` to ``pid``."""
    while True:
        msg = await proc.receive()
        if msg.__class__ is tuple and len(msg) == 4 and msg[0] == "ping":
            proc.send(msg[1], ("pong", msg[2], msg[3]))


async def serve_london(kind: str, certs: Path, config: ClusterConfig) -> None:
    """The child: serve ``kind`` on a free port, say ``READY port``, run until told."""
    stop: Callable[[], Awaitable[None]]
    identity = Identity.load(certs / "london")
    if kind == "rusm":
        node = await ClusterNode.bind(
            "london", Runtime(), (HOST, 0), identity, config
        )
        node.runtime.register("echo", node.runtime.spawn(echo, label="echo"))
        node.runtime.register("window_echo", node.runtime.spawn(window_echo, label="window_echo"))
        port = node.local_addr()[1]
        stop = node.close
    else:
        server = await serve(
            HOST, 0,
            configuration=ceiling_configuration(identity, is_client=False),
            create_protocol=partial(CeilingServer, identity=identity),
        )
        assert server._transport is not None
        tune_transport(server._transport)
        port = server._transport.get_extra_info("sockname")[1]

        async def stop() -> None:
            server.close()  # type: ignore[no-untyped-call]

    print(f"READY {port}", flush=True)
    try:
        async with asyncio.timeout(CHILD_LIFETIME):
            await until_stdin_closes()
    finally:
        await stop()


# -- RUSM ----------------------------------------------------------------------


class RusmClient:
    """Callers are processes of tokyo's runtime calling ``echo`` on london; the
    window is one process sending pings to ``window_echo``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def start(self, job: Job) -> asyncio.Future[list[int]]:
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()

        async def caller(proc: Process) -> None:
            try:
                done.set_result(await job(lambda payload: proc.call(ECHO, payload, CALL_TIMEOUT)))
            except Exception as e:
                done.set_exception(e)

        self.runtime.spawn(caller, label="bench.caller")
        return done

    def start_window(self, job: WindowJob) -> asyncio.Future[dict[str, Any]]:
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def pinger(proc: Process) -> None:
            pid = proc.pid

            def send(rid: int) -> None:
                proc.send(WINDOW_ECHO, ("ping", pid, rid, PAYLOAD))

            async def receive() -> tuple[int, Any]:
                msg = await proc.receive(CALL_TIMEOUT)
                return msg[1], msg[2]

            try:
                done.set_result(await job(send, receive))
            except Exception as e:
                done.set_exception(e)

        self.runtime.spawn(pinger, label="bench.window")
        return done


def handshake_name(i: int) -> str:
    return f"tokyo{i}"


async def rusm_handshakes(
    certs: Path, port: int, count: int, config: ClusterConfig
) -> dict[str, Any]:
    """Time ``count`` full connects (handshake and hello exchange), each from
    a fresh node of its own name (bound and closed untimed): after a
    disconnect, london holds the old link through QUIC's draining period and
    refuses the same name again until it ends."""
    samples: list[float] = []
    for i in range(count):
        name = handshake_name(i)
        node = await ClusterNode.bind(
            name, Runtime(), (HOST, 0), Identity.load(certs / name), config
        )
        try:
            t0 = time.perf_counter()
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await node.connect((HOST, port))
            samples.append(time.perf_counter() - t0)
        finally:
            await node.close()
        await asyncio.sleep(RECONNECT_PAUSE)
    return handshake_figures({"connect": samples})


async def bench_rusm(
    certs: Path, sizes: Sizes, use_uvloop: bool, config: ClusterConfig,
    profiles: dict[str, cProfile.Profile] | None,
) -> dict[str, Any]:
    async with london("rusm", certs, use_uvloop, config) as (port, meter):
        identity = Identity.load(certs / "tokyo")
        tokyo = await ClusterNode.bind(
            "tokyo", Runtime(), (HOST, 0), identity, config
        )
        try:
            handshake = await rusm_handshakes(certs, port, sizes.handshakes, config)
            note(f"rusm handshake: connect median {handshake['connect_ms']} ms")
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await tokyo.connect((HOST, port))
            figures = await measure_all("rusm", RusmClient(tokyo.runtime), meter, sizes, profiles)
            link = tokyo.link_to("london")
            stats = link.stats() if link is not None else None
            return {"handshake": handshake, **figures, "link_stats": stats}
        finally:
            await tokyo.close()


# -- ceiling: bare qh3, one long-lived stream each way --------------------------


def ceiling_configuration(identity: Identity, *, is_client: bool) -> QuicConfiguration:
    """RUSM's qh3 configuration (mutual TLS, the same windows) with its own ALPN."""
    config = make_configuration(
        identity, is_client=is_client, idle_timeout=IDLE_TIMEOUT,
        max_data=MAX_DATA, max_stream_data=MAX_STREAM_DATA,
    )
    config.alpn_protocols = [CEILING_ALPN]
    return config


class CeilingLink(QuicConnectionProtocol):
    """Length-prefixed msgpack ``[id, payload]`` frames on one long-lived
    unidirectional stream each way. Frames queued in a loop turn go out in
    one write, then one transmit; a received datagram's acks wait for that
    flush too (as RUSM's QuicLink)."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None, *,
                 identity: Identity | None = None) -> None:
        if not quic.configuration.is_client:
            assert identity is not None
            require_client_certificates(quic, identity)
        super().__init__(quic, stream_handler)
        self._out: list[bytes] = []
        self._sid: int | None = None
        self._flush: asyncio.Handle | None = None
        self._inbuf = bytearray()

    def send_frame(self, rid: int, payload: bytes) -> None:
        body = ormsgpack.packb([rid, payload])
        self._out.append(_HEADER.pack(len(body)) + body)
        if self._flush is None:
            self._flush = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush = None
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out = []
            quic = self._quic
            if self._sid is None:
                self._sid = quic.get_next_available_stream_id(is_unidirectional=True)
            quic.send_stream_data(self._sid, data)
        self.transmit()

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        if self._flush is None:
            self._flush = self._loop.call_soon(self.flush)

    def datagrams_received(self, data: list[bytes], addr: Any) -> None:
        self._quic.receive_many_datagrams(data, addr, now=self._loop.time())
        self._process_events()
        if self._flush is None:
            self._flush = self._loop.call_soon(self.flush)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._stream_data(event.data)
        else:
            super().quic_event_received(event)

    def _stream_data(self, data: bytes) -> None:
        buf: bytes | bytearray = data
        if self._inbuf:
            self._inbuf += data
            buf = self._inbuf
        end, pos = len(buf), 0
        unpack = ormsgpack.unpackb
        while end - pos >= 4:
            size = _HEADER.unpack_from(buf, pos)[0]
            start = pos + 4
            if end - start < size:
                break
            pos = start + size
            rid, payload = unpack(bytes(buf[start:pos]))
            self.message_received(rid, payload)
        if buf is self._inbuf:
            del self._inbuf[:pos]
        elif pos < end:
            self._inbuf = bytearray(buf[pos:])

    def message_received(self, rid: int, payload: Any) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Cancel the pending flush and the engine's timer (the endpoint goes)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class CeilingServer(CeilingLink):
    def message_received(self, rid: int, payload: Any) -> None:
        self.send_frame(rid, payload)


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError(f"no echo within {CALL_TIMEOUT} s"))


class CeilingClient(CeilingLink):
    """Callers are tasks; each request carries an id that its echo carries
    back. The window's task reads a mailbox (a deque and a waiter), as a
    process would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._mailbox: deque[tuple[int, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None

    async def call(self, payload: bytes) -> bytes:
        rid = next(self._ids)
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting[rid] = fut
        self.send_frame(rid, payload)
        timer = self._loop.call_later(CALL_TIMEOUT, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            del self._waiting[rid]

    def message_received(self, rid: int, payload: Any) -> None:
        fut = self._waiting.get(rid)
        if fut is not None:
            if not fut.done():
                fut.set_result(payload)
            return
        self._mailbox.append((rid, payload))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> tuple[int, Any]:
        mailbox = self._mailbox
        while not mailbox:
            self._waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    await self._waiter
            finally:
                self._waiter = None
        return mailbox.popleft()

    def start(self, job: Job) -> asyncio.Future[list[int]]:
        return self._loop.create_task(job(self.call))

    def start_window(self, job: WindowJob) -> asyncio.Future[dict[str, Any]]:
        window_ids = itertools.count(1 << 40)  # apart from the calls' ids

        ids: dict[int, int] = {}

        def send(rid: int) -> None:
            wid = next(window_ids)
            ids[wid] = rid
            self.send_frame(wid, PAYLOAD)

        async def receive() -> tuple[int, Any]:
            wid, payload = await self.receive()
            return ids.pop(wid), payload

        return self._loop.create_task(job(send, receive))


@asynccontextmanager
async def ceiling_client(
    config: QuicConfiguration, port: int
) -> AsyncIterator[tuple[CeilingClient, float]]:
    """A connected ceiling client (on its own endpoint) and the seconds its
    handshake took, endpoint included; closed on exit."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    transport, client = await loop.create_datagram_endpoint(
        lambda: CeilingClient(QuicConnection(configuration=config)), local_addr=("0.0.0.0", 0)
    )
    try:
        tune_transport(transport)
        client.connect((HOST, port))
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await client.wait_connected()
        yield client, time.perf_counter() - t0
    finally:
        client.close()
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE):
                    await client.wait_closed()
        finally:
            client.stop()
            transport.close()


async def ceiling_handshakes(config: QuicConfiguration, port: int, count: int) -> dict[str, Any]:
    """Time ``count`` connects: the handshake as the client sees it done, and
    that plus one echo (the server has checked the client by then)."""
    handshake: list[float] = []
    first_echo: list[float] = []
    for _ in range(count):
        t0 = time.perf_counter()
        async with ceiling_client(config, port) as (client, took):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if await client.call(PAYLOAD) != PAYLOAD:
                    raise RuntimeError("the ceiling's first echo is wrong")
            first_echo.append(time.perf_counter() - t0)
            handshake.append(took)
        await asyncio.sleep(RECONNECT_PAUSE)
    return handshake_figures({"handshake": handshake, "first_echo": first_echo})


async def bench_ceiling(certs: Path, sizes: Sizes, use_uvloop: bool) -> dict[str, Any]:
    config = ceiling_configuration(Identity.load(certs / "tokyo"), is_client=True)
    async with london("ceiling", certs, use_uvloop, DEFAULTS) as (port, meter):
        handshake = await ceiling_handshakes(config, port, sizes.handshakes)
        note(f"ceiling handshake: median {handshake['handshake_ms']} ms, "
             f"with the first echo {handshake['first_echo_ms']} ms")
        async with ceiling_client(config, port) as (client, _):
            figures = await measure_all("ceiling", client, meter, sizes, None)
        return {"handshake": handshake, **figures}


# -- profile summary -----------------------------------------------------------


def _function_label(key: tuple[str, int, str]) -> str:
    file, line, name = key
    if file == "~":
        return name  # a builtin: "<method 'x' of 'y' objects>"
    parts = Path(file).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    elif "rusm" in parts:
        parts = parts[len(parts) - 1 - parts[::-1].index("rusm"):]
    else:
        parts = parts[-2:]
    return f"{'/'.join(parts)}:{line}({name})"


def _area(key: tuple[str, int, str]) -> str:
    file, _, name = key
    if file == "~":
        for area in ("qh3", "ormsgpack", "uvloop", "asyncio", "_asyncio"):
            if area in name:
                return area.lstrip("_") + " (native)"
        return "builtins"
    parts = Path(file).parts
    if "rusm" in parts:
        i = len(parts) - 1 - parts[::-1].index("rusm")
        return ".".join(parts[i:i + 2]) if i + 2 < len(parts) else "rusm"
    for area in ("qh3", "uvloop", "asyncio", "cryptography"):
        if area in parts:
            return area
    if Path(file).resolve() == SCRIPT:
        return "this script"
    return "other python"


def where_the_time_goes(profile: cProfile.Profile, top: int = 10) -> dict[str, Any]:
    """The ``top`` functions by own time, with their share, and the shares by area."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1e-9
    ranked = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    areas: dict[str, float] = {}
    for key, value in raw.items():
        area = _area(key)
        areas[area] = areas.get(area, 0.0) + value[2]
    return {
        "profiled_s": round(total, 3),
        "top": [
            {"function": _function_label(key), "calls": value[1],
             "tottime_s": round(value[2], 3), "share": round(value[2] / total, 3)}
            for key, value in ranked
        ],
        "by_area": {
            area: round(t / total, 3)
            for area, t in sorted(areas.items(), key=lambda kv: kv[1], reverse=True)
            if t / total >= 0.005
        },
    }


# -- the run -------------------------------------------------------------------


def make_certs(directory: Path, handshakes: int) -> Path:
    """A cluster CA's identities for london, tokyo and the nodes that time
    the handshakes, saved under ``directory``."""
    ca = ClusterCa.generate()
    for name in ("london", "tokyo", *map(handshake_name, range(handshakes))):
        ca.issue(name).save(directory / name)
    return directory


def pick_loop(want_uvloop: bool) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str, str]:
    """(loop factory or None for the stock loop, loop name, what became of --uvloop)."""
    if not want_uvloop:
        return None, "asyncio", "not requested"
    try:
        import uvloop
    except ImportError:
        return None, "asyncio", "requested but not installed: ran on the stock asyncio loop"
    return uvloop.new_event_loop, "uvloop", "used"


def cpu_per_rt(figures: dict[str, Any]) -> float | None:
    """CPU microseconds per round trip, both processes together."""
    cpu = figures["cpu_us_per_rt"]
    if cpu is None or cpu["london"] is None:
        return None
    return float(cpu["tokyo"] + cpu["london"])


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def ratios(rusm: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    """RUSM / ceiling, per workload, and of the handshake (RUSM's connect
    against the ceiling's handshake plus first echo)."""
    out: dict[str, Any] = {}
    for w in WORKLOADS:
        r, c = rusm[w], ceiling[w]
        rc, cc = r["cpu_us_per_rt"] or {}, c["cpu_us_per_rt"] or {}
        out[w] = {
            "round_trips_per_s": _ratio(r["round_trips_per_s"], c["round_trips_per_s"]),
            "p50": _ratio(r["p50_us"], c["p50_us"]),
            "p99": _ratio(r["p99_us"], c["p99_us"]),
            "cpu_per_rt": _ratio(cpu_per_rt(r), cpu_per_rt(c)),
            "cpu_per_rt_tokyo": _ratio(rc.get("tokyo"), cc.get("tokyo")),
            "cpu_per_rt_london": _ratio(rc.get("london"), cc.get("london")),
        }
    out["handshake"] = _ratio(rusm["handshake"]["connect_ms"],
                              ceiling["handshake"]["first_echo_ms"])
    return out


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *path, leaf = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def medians(trees: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric leaf's median over ``trees`` (same shape); None stays None."""
    flats = [_flatten(t) for t in trees]
    out: dict[str, Any] = {}
    for key, first in flats[0].items():
        values = [f.get(key) for f in flats]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(values):
            out[key] = round(statistics.median(numbers), 3)
        else:
            out[key] = first
    return _unflatten(out)


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures worth a median: per workload and the handshake."""
    keep = ("round_trips_per_s", "p50_us", "p99_us", "cpu_us_per_rt")
    out: dict[str, Any] = {w: {k: figures[w][k] for k in keep} for w in WORKLOADS}
    out["handshake"] = {k: v for k, v in figures["handshake"].items()
                        if k.endswith("_ms") and not k.endswith(("_min_ms", "_max_ms"))}
    return out


async def bench(
    sizes: Sizes, use_uvloop: bool, config: ClusterConfig,
    profiles: dict[str, cProfile.Profile] | None, repeat: int,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``repeat`` rounds of (RUSM, then the ceiling), with the same certificates."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="rusm-bench-") as tmp:
        certs = make_certs(Path(tmp), sizes.handshakes)
        for i in range(repeat):
            if repeat > 1:
                note(f"round {i + 1} of {repeat}")
            rusm = await bench_rusm(certs, sizes, use_uvloop, config, profiles)
            ceiling = await bench_ceiling(certs, sizes, use_uvloop)
            runs.append((rusm, ceiling))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (CI smoke test)")
    parser.add_argument("--uvloop", action="store_true", help="use uvloop if it is installed")
    parser.add_argument("--lanes", type=int, default=DEFAULTS.lanes, metavar="K",
                        help=f"ClusterConfig(lanes=K) on both RUSM nodes "
                             f"(default {DEFAULTS.lanes}, at most {DEFAULTS.max_open_streams})")
    parser.add_argument("--busy-wait", type=float, default=DEFAULTS.busy_wait, metavar="S",
                        help=f"ClusterConfig(busy_wait=S) on both RUSM nodes "
                             f"(default {DEFAULTS.busy_wait}; 0 = off)")
    parser.add_argument("--calls", type=int, metavar="N",
                        help="sequential calls of the unloaded run (default 10000, quick 300); "
                             "each loaded call level makes 4N calls")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile this (tokyo) process during RUSM's loaded workloads, "
                             "write the stats to FILE and summarise them in the JSON "
                             "(the figures then suffer)")
    parser.add_argument("--profile-clock", choices=("wall", "cpu"), default="wall",
                        help="the profile's clock: wall time (default, cProfile's; time "
                             "tokyo spends descheduled counts too) or this thread's CPU time "
                             "(each read costs ~0.4 us, which inflates small functions and "
                             "slows the run ~10x)")
    parser.add_argument("--repeat", type=int, default=1, metavar="R",
                        help="rounds of RUSM-then-ceiling; the ratios are the medians "
                             "(default 1; the run-to-run spread is wide on a shared machine)")
    parser.add_argument("--serve", choices=("rusm", "ceiling"), help=argparse.SUPPRESS)
    parser.add_argument("--certs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("quic").setLevel(logging.ERROR)  # qh3 warns of every peer's close
    if not 1 <= args.lanes <= DEFAULTS.max_open_streams:
        parser.error(f"--lanes must be 1 .. {DEFAULTS.max_open_streams}")
    try:
        config = ClusterConfig(lanes=args.lanes, busy_wait=args.busy_wait)
    except ValueError as e:
        parser.error(str(e))
    factory, loop_name, uvloop_status = pick_loop(args.uvloop)

    if args.serve:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve_london(args.serve, Path(args.certs), config))
        return

    sizes = QUICK if args.quick else FULL
    if args.calls is not None:
        if args.calls < 1:
            parser.error("--calls must be at least 1")
        sizes = Sizes(calls=args.calls, warmup=max(1, args.calls // 10),
                      saturation=4 * args.calls, window_s=sizes.window_s,
                      window_warmup_s=sizes.window_warmup_s, handshakes=sizes.handshakes,
                      phase_timeout=sizes.phase_timeout)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    profiles = None
    if args.profile:
        timer = time.thread_time if args.profile_clock == "cpu" else time.perf_counter
        profiles = {w: cProfile.Profile(timer) for w in PROFILED}

    started = time.perf_counter()
    with asyncio.Runner(loop_factory=factory) as runner:
        runs = runner.run(bench(sizes, factory is not None, config, profiles, args.repeat))
    profile_summary = None
    if profiles is not None:
        combined = pstats.Stats(*profiles.values())
        combined.dump_stats(args.profile)
        note(f"profile of RUSM's loaded workloads ({', '.join(PROFILED)}) "
             f"written to {args.profile}")
        profile_summary = {"clock": args.profile_clock,
                           **{w: where_the_time_goes(p) for w, p in profiles.items()}}
    rusm, ceiling = runs[-1]
    per_round = [ratios(r, c) for r, c in runs]
    result = {
        "bench": "cluster_fanout",
        "python": platform.python_version(),
        "qh3": qh3.__version__,
        "loop": loop_name,
        "uvloop": uvloop_status,
        "quick": args.quick,
        "lanes": args.lanes,
        "busy_wait": args.busy_wait,
        "profiled": profiles is not None,
        "sizes": {**asdict(sizes), "levels": list(LEVELS), "window": WINDOW,
                  "payload_bytes": len(PAYLOAD)},
        "repeat": args.repeat,
        "rusm": rusm,
        "ceiling": ceiling,
        "medians": {
            "rusm": medians([headline(r) for r, _ in runs]),
            "ceiling": medians([headline(c) for _, c in runs]),
        } if args.repeat > 1 else None,
        "ratio": medians(per_round),
        "ratio_rounds": per_round if args.repeat > 1 else None,
        "profile": profile_summary,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
