"""Cluster benchmark: RUSM calls between two OS processes, against bare aioquic.

Two nodes on loopback, each in its own OS process: this script is ``tokyo``
and re-executes itself as the ``london`` child (``--serve``). The
certificates are made by a fresh cluster CA in a temporary directory and
loaded from there by both processes.

RUSM: london runs a registered ``echo`` process that replies to every Call
with its request; on tokyo, caller processes call it with a 64-byte payload
(two cross-node hops and two process hops per round trip).

Ceiling: the same two processes with bare aioquic, the same certificates
and the same payload: the client sends ``[id, payload]`` (msgpack, by
ormsgpack) on a new unidirectional stream, the server echoes it on a new
unidirectional stream; one transmit per loop turn, as RUSM does.

Each side is measured the same way:

1. unloaded round trip: one caller, ``--calls`` sequential calls after a
   warm-up (p50 and p99);
2. saturation: 8 and 32 callers (N outstanding requests), each looping
   calls; round trips/s and cross-node messages/s (two per round trip: a
   RUSM call's monitor is implied by its CallRequest, so a call is two
   frames), with the round-trip p50/p99 under that load.

Both also report the CPU time per round trip of each process
(``cpu_us_per_rt``; london's read from /proc, so None elsewhere). Saturation
is CPU-bound, so on a shared machine this is the steadier figure.

Prints one JSON line on stdout: both sets of figures, the ratios
RUSM/ceiling (``msgs_per_s``: the best level of each side) and whether the
targets are met. Progress goes to stderr.

    python scripts/cluster_fanout.py [--quick] [--uvloop] [--calls N] [--repeat R] [--profile FILE]

With ``--repeat R`` it runs R rounds of RUSM-then-ceiling and reports each
ratio's median (``rusm`` and ``ceiling`` are the last round's figures;
``ratio_rounds`` lists every round's ratios).
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
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import ormsgpack
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent, StreamDataReceived

from rusm import Call, ClusterCa, ClusterNode, Identity, Process, Runtime
from rusm.net.quic import tune_transport
from rusm.net.tls import CERT_FILE, KEY_FILE, TRUST_FILE

SCRIPT = Path(__file__).resolve()
HOST = "127.0.0.1"
PAYLOAD = bytes(range(64))
ECHO = ("echo", "london")
LEVELS = (8, 32)
"""Concurrent callers of the saturation runs."""
CEILING_ALPN = "rusm-bench-ceiling"

IDLE_TIMEOUT = 10.0
"""QUIC idle timeout of both sides (RUSM's default)."""
CALL_TIMEOUT = 5.0
"""Seconds one call may take before the run fails."""
CONNECT_TIMEOUT = 10.0
READY_TIMEOUT = 15.0
"""Seconds the child may take to start and listen."""
STOP_GRACE = 3.0
"""Seconds the child may take to exit once told to; then it is killed."""
CHILD_LIFETIME = 900.0
"""A child exits by itself after this long, should its parent vanish."""


@dataclass(frozen=True)
class Sizes:
    calls: int
    """Sequential calls of the unloaded measurement."""
    warmup: int
    saturation: int
    """Calls of each saturation level, shared among its callers."""
    phase_timeout: float
    """Seconds one measurement may take."""


FULL = Sizes(calls=10_000, warmup=1_000, saturation=40_000, phase_timeout=180.0)
QUICK = Sizes(calls=300, warmup=50, saturation=1_200, phase_timeout=10.0)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- shared measurement helpers ------------------------------------------------

CallFn = Callable[[bytes], Awaitable[Any]]
Job = Callable[[CallFn], Coroutine[Any, Any, list[int]]]


class Client(Protocol):
    """One side's way to run a caller: ``start(job)`` runs ``job(call)`` in a
    caller of its own (a RUSM process or a task) and returns its result."""

    def start(self, job: Job) -> asyncio.Future[list[int]]: ...


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
    figure comes from /proc (None where there is no /proc)."""

    def __init__(self, child_pid: int) -> None:
        self.stat = Path(f"/proc/{child_pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def read(self) -> tuple[float, float | None]:
        try:
            fields = self.stat.read_text().rpartition(")")[2].split()
            child = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        except (OSError, IndexError, ValueError):
            child = None
        return time.process_time(), child

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
        "calls": len(samples),
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
    rate = len(samples) / elapsed
    return {
        "callers": callers,
        "round_trips": len(samples),
        "elapsed_s": round(elapsed, 3),
        "round_trips_per_s": round(rate, 1),
        "msgs_per_s": round(2 * rate, 1),
        **percentiles(samples),
        "cpu_us_per_rt": meter.per_call(before, len(samples)),
    }


async def measure_all(
    side: str, client: Client, meter: CpuMeter, sizes: Sizes, profile: cProfile.Profile | None
) -> dict[str, Any]:
    """The unloaded round trip, then every saturation level, each under a timeout.
    ``profile``, if any, runs during the saturation levels only."""
    async with asyncio.timeout(sizes.phase_timeout):
        figures: dict[str, Any] = await measure_unloaded(client, meter, sizes)
    note(f"{side} unloaded: p50 {figures['p50_us']} us, p99 {figures['p99_us']} us, "
         f"cpu us/rt {figures['cpu_us_per_rt']}")
    for callers in LEVELS:
        if profile is not None:
            profile.enable()
        try:
            async with asyncio.timeout(sizes.phase_timeout):
                level = await measure_saturation(client, meter, callers, sizes.saturation)
        finally:
            if profile is not None:
                profile.disable()
        figures[f"c{callers}"] = level
        note(f"{side} {callers} callers: {level['round_trips_per_s']:,.0f} round trips/s, "
             f"p50 {level['p50_us']} us, p99 {level['p99_us']} us, "
             f"cpu us/rt {level['cpu_us_per_rt']}")
    figures["msgs_per_s"] = max(figures[f"c{c}"]["msgs_per_s"] for c in LEVELS)
    return figures


# -- the london child ----------------------------------------------------------


@asynccontextmanager
async def london(
    kind: str, certs: Path, use_uvloop: bool
) -> AsyncIterator[tuple[int, CpuMeter]]:
    """Run this script as the london child serving ``kind``; yields its UDP port.
    The child is told to stop (its stdin closes) on exit, and killed if it lingers."""
    cmd = [sys.executable, str(SCRIPT), "--serve", kind, "--certs", str(certs)]
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


async def serve_london(kind: str, certs: Path) -> None:
    """The child: serve ``kind`` on a free port, say ``READY port``, run until told."""
    stop: Callable[[], Awaitable[None]]
    if kind == "rusm":
        identity = Identity.load(certs / "london")
        node = await ClusterNode.bind("london", Runtime(), (HOST, 0), identity)
        node.runtime.register("echo", node.runtime.spawn(echo, label="echo"))
        port = node.local_addr()[1]
        stop = node.close
    else:
        config = ceiling_configuration(certs, "london")
        server = await serve(HOST, 0, configuration=config, create_protocol=CeilingServer)
        assert server._transport is not None
        tune_transport(server._transport)
        port = server._transport.get_extra_info("sockname")[1]

        async def stop() -> None:
            server.close()

    print(f"READY {port}", flush=True)
    try:
        async with asyncio.timeout(CHILD_LIFETIME):
            await until_stdin_closes()
    finally:
        await stop()


# -- RUSM ----------------------------------------------------------------------


class RusmClient:
    """Callers are processes of tokyo's runtime calling ``echo`` on london."""

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


async def bench_rusm(
    certs: Path, sizes: Sizes, use_uvloop: bool, profile: cProfile.Profile | None
) -> dict[str, Any]:
    async with london("rusm", certs, use_uvloop) as (port, meter):
        identity = Identity.load(certs / "tokyo")
        tokyo = await ClusterNode.bind("tokyo", Runtime(), (HOST, 0), identity)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await tokyo.connect((HOST, port))
            return await measure_all("rusm", RusmClient(tokyo.runtime), meter, sizes, profile)
        finally:
            await tokyo.close()


# -- ceiling: bare aioquic -----------------------------------------------------


def ceiling_configuration(certs: Path, name: str, *, is_client: bool = False) -> QuicConfiguration:
    """``name``'s certificate and trust anchor, as files, the aioquic way."""
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[CEILING_ALPN],
        idle_timeout=IDLE_TIMEOUT,
        verify_mode=ssl.CERT_REQUIRED,
        server_name="london" if is_client else None,
    )
    config.load_cert_chain(certs / name / CERT_FILE, certs / name / KEY_FILE)
    config.load_verify_locations(cadata=(certs / name / TRUST_FILE).read_bytes())
    return config


class CeilingLink(QuicConnectionProtocol):
    """One msgpack message per unidirectional stream, both ways; the datagrams
    go out once per loop turn (or at once after a received datagram)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[int, bytes] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            data = event.data
            held = self._held.pop(event.stream_id, None)
            if held is not None:
                data = held + data
            if event.end_stream:
                self.message_received(ormsgpack.unpackb(data))
            else:
                self._held[event.stream_id] = data

    def message_received(self, message: Any) -> None:
        raise NotImplementedError

    def send_message(self, message: Any) -> None:
        quic = self._quic
        sid = quic.get_next_available_stream_id(is_unidirectional=True)
        quic.send_stream_data(sid, ormsgpack.packb(message), end_stream=True)
        self._transmit_soon()

    def transmit(self) -> None:
        if self._transmit_task is not None:  # this transmit sends what it would have
            self._transmit_task.cancel()
        super().transmit()


class CeilingServer(CeilingLink):
    def message_received(self, message: Any) -> None:
        rid, payload = message
        self.send_message((rid, payload))


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError(f"no echo within {CALL_TIMEOUT} s"))


class CeilingClient(CeilingLink):
    """Callers are tasks; each request carries an id that its echo carries back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[bytes]] = {}

    async def call(self, payload: bytes) -> bytes:
        rid = next(self._ids)
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting[rid] = fut
        self.send_message((rid, payload))
        timer = self._loop.call_later(CALL_TIMEOUT, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            del self._waiting[rid]

    def message_received(self, message: Any) -> None:
        rid, payload = message
        fut = self._waiting.get(rid)
        if fut is not None and not fut.done():
            fut.set_result(payload)

    def start(self, job: Job) -> asyncio.Future[list[int]]:
        return self._loop.create_task(job(self.call))


async def bench_ceiling(certs: Path, sizes: Sizes, use_uvloop: bool) -> dict[str, Any]:
    config = ceiling_configuration(certs, "tokyo", is_client=True)
    loop = asyncio.get_running_loop()
    async with london("ceiling", certs, use_uvloop) as (port, meter):
        transport, client = await loop.create_datagram_endpoint(
            lambda: CeilingClient(QuicConnection(configuration=config)), local_addr=("0.0.0.0", 0)
        )
        tune_transport(transport)
        try:
            client.connect((HOST, port))
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await client.wait_connected()
            return await measure_all("ceiling", client, meter, sizes, None)
        finally:
            client.close()
            try:
                with suppress(TimeoutError):
                    async with asyncio.timeout(STOP_GRACE):
                        await client.wait_closed()
            finally:
                transport.close()


# -- the run -------------------------------------------------------------------


def make_certs(directory: Path) -> Path:
    """A cluster CA's identities for london and tokyo, saved under ``directory``."""
    ca = ClusterCa.generate()
    for name in ("london", "tokyo"):
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
    return None if cpu["london"] is None else cpu["tokyo"] + cpu["london"]


def ratios(rusm: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, float]:
    ratio = {
        "p50": rusm["p50_us"] / ceiling["p50_us"],
        "p99": rusm["p99_us"] / ceiling["p99_us"],
        "msgs_per_s": rusm["msgs_per_s"] / ceiling["msgs_per_s"],
    }
    for c in LEVELS:
        rusm_c, ceiling_c = rusm[f"c{c}"], ceiling[f"c{c}"]
        ratio[f"msgs_per_s_c{c}"] = rusm_c["msgs_per_s"] / ceiling_c["msgs_per_s"]
        rusm_cpu, ceiling_cpu = cpu_per_rt(rusm_c), cpu_per_rt(ceiling_c)
        if rusm_cpu is not None and ceiling_cpu:
            ratio[f"cpu_per_rt_c{c}"] = rusm_cpu / ceiling_cpu
    return {key: round(value, 3) for key, value in ratio.items()}


async def bench(
    sizes: Sizes, use_uvloop: bool, profile: cProfile.Profile | None, repeat: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``repeat`` rounds of (RUSM, then the ceiling), with the same certificates."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="rusm-bench-") as tmp:
        certs = make_certs(Path(tmp))
        for i in range(repeat):
            if repeat > 1:
                note(f"round {i + 1} of {repeat}")
            rusm = await bench_rusm(certs, sizes, use_uvloop, profile)
            ceiling = await bench_ceiling(certs, sizes, use_uvloop)
            runs.append((rusm, ceiling))
    return runs


def median_ratios(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, float]:
    """Each ratio's median over the rounds (each round's ratio is RUSM against
    the ceiling measured right after it, so the machine's drift cancels)."""
    per_round = [ratios(rusm, ceiling) for rusm, ceiling in runs]
    return {key: round(statistics.median(r[key] for r in per_round), 3) for key in per_round[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (CI smoke test)")
    parser.add_argument("--uvloop", action="store_true", help="use uvloop if it is installed")
    parser.add_argument("--calls", type=int, metavar="N",
                        help="sequential calls of the unloaded run (default 10000, quick 300); "
                             "each saturation level makes 4N calls")
    parser.add_argument("--profile", metavar="FILE",
                        help="cProfile this (tokyo) process during the RUSM saturation runs "
                             "and write the stats to FILE (the figures then suffer)")
    parser.add_argument("--repeat", type=int, default=1, metavar="R",
                        help="rounds of RUSM-then-ceiling; the ratios are the medians "
                             "(default 1; the run-to-run spread is wide on a shared machine)")
    parser.add_argument("--serve", choices=("rusm", "ceiling"), help=argparse.SUPPRESS)
    parser.add_argument("--certs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    factory, loop_name, uvloop_status = pick_loop(args.uvloop)

    if args.serve:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve_london(args.serve, Path(args.certs)))
        return

    sizes = QUICK if args.quick else FULL
    if args.calls is not None:
        if args.calls < 1:
            parser.error("--calls must be at least 1")
        sizes = Sizes(calls=args.calls, warmup=max(1, args.calls // 10),
                      saturation=4 * args.calls, phase_timeout=sizes.phase_timeout)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    profile = cProfile.Profile() if args.profile else None

    started = time.perf_counter()
    with asyncio.Runner(loop_factory=factory) as runner:
        runs = runner.run(bench(sizes, factory is not None, profile, args.repeat))
    if profile is not None:
        profile.dump_stats(args.profile)
        note(f"profile of the RUSM saturation runs written to {args.profile}")
    rusm, ceiling = runs[-1]
    ratio = median_ratios(runs)
    result = {
        "bench": "cluster_fanout",
        "python": platform.python_version(),
        "loop": loop_name,
        "uvloop": uvloop_status,
        "quick": args.quick,
        "profiled": profile is not None,
        "sizes": {**asdict(sizes), "levels": list(LEVELS), "payload_bytes": len(PAYLOAD)},
        "repeat": args.repeat,
        "rusm": rusm,
        "ceiling": ceiling,
        "ratio": ratio,
        "ratio_rounds": [ratios(r, c) for r, c in runs] if args.repeat > 1 else None,
        "targets": {
            "p50_ratio<=1.3": ratio["p50"] <= 1.3,
            "saturation_ratio>=1.0": ratio["msgs_per_s"] >= 1.0,
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
