"""Local benchmark: the RUSM runtime against plain asyncio, measured in one run.

The baseline is what one would write without RUSM: a Task per process with an
``asyncio.Queue`` mailbox. Four measurements, each in a fresh event loop (the
stock asyncio loop) and repeated ``--repeat`` times, alternating RUSM and the
baseline; the best of each is kept (highest rate, lowest size and latency):

1. spawn rate: start N idle processes (each blocked in its first receive);
2. memory per idle process: tracemalloc delta around spawning N idle processes;
3. throughput: one producer sends M messages to one consumer (yielding to the
   loop every ``BATCH`` messages so the consumer interleaves);
4. ping-pong: round-trip latency between two processes (p50 and p99).

Then what observing costs: throughput and ping-pong again, RUSM with what
an observer starts (``Runtime.meter()``: the stack sampler thread and the
loop-lag ticker; ``Runtime.track_filled()``: noting each mailbox that fills
from empty) against RUSM without it, in the same run (target: at most 5 %
slower, ``targets.meter_cost``).

Prints one JSON line on stdout: both sets of figures, the ratios RUSM/baseline
and whether the targets are met. Progress goes to stderr.

    python scripts/bench_local.py [--quick] [--repeat K]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from rusm.actors import Pid, Process, Runtime

BATCH = 1000
"""The producer yields to the loop after this many sends."""

KEYS = ("spawn_per_s", "bytes_per_idle_process", "msgs_per_s", "pingpong_p50_us",
        "pingpong_p99_us")
METER_KEYS = ("msgs_per_s", "pingpong_p50_us", "pingpong_p99_us")
"""The figures measured with the observer's meter on and off."""
HIGHER_IS_BETTER = {"spawn_per_s", "msgs_per_s"}


@dataclass(frozen=True)
class Sizes:
    spawn: int
    memory: int
    messages: int
    rounds: int
    warmup: int


FULL = Sizes(spawn=100_000, memory=100_000, messages=1_000_000, rounds=100_000, warmup=1_000)
QUICK = Sizes(spawn=10_000, memory=10_000, messages=100_000, rounds=10_000, warmup=100)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- shared process bodies -----------------------------------------------------


class StartGate:
    """Counts processes that have started; resolves once all ``n`` have."""

    __slots__ = ("all_started", "count", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.all_started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def arrived(self) -> None:
        self.count += 1
        if self.count == self.n:
            self.all_started.set_result(None)


async def consume(receive: Callable[[], Awaitable[Any]], n: int, done: asyncio.Future[float]
                  ) -> None:
    """Take ``n`` messages, then resolve ``done`` with the time of the last one."""
    msg = None
    for _ in range(n):
        msg = await receive()
    assert msg == n - 1, msg
    done.set_result(time.perf_counter())


async def ping(send: Callable[[], None], receive: Callable[[], Awaitable[Any]], rounds: int,
               warmup: int, done: asyncio.Future[list[int]]) -> None:
    """Time ``warmup + rounds`` round trips; resolve ``done`` with the last ``rounds`` (ns)."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    for _ in range(warmup + rounds):
        t0 = clock()
        send()
        await receive()
        samples.append(clock() - t0)
    done.set_result(samples[warmup:])


# -- RUSM ----------------------------------------------------------------------


async def rusm_idle(proc: Process, gate: StartGate) -> None:
    gate.arrived()
    await proc.receive()


async def rusm_consumer(proc: Process, n: int, done: asyncio.Future[float]) -> None:
    await consume(proc.receive, n, done)


async def rusm_producer(proc: Process, dest: Pid, n: int) -> None:
    for start in range(0, n, BATCH):
        for i in range(start, min(start + BATCH, n)):
            proc.send(dest, i)
        await asyncio.sleep(0)


async def rusm_ponger(proc: Process) -> None:
    while True:
        sender = await proc.receive()
        proc.send(sender, None)


async def rusm_pinger(proc: Process, ponger: Pid, rounds: int, warmup: int,
                      done: asyncio.Future[list[int]]) -> None:
    await ping(partial(proc.send, ponger, proc.pid), proc.receive, rounds, warmup, done)


@asynccontextmanager
async def rusm_fleet(n: int) -> AsyncIterator[None]:
    """``n`` idle RUSM processes, all waiting in receive, torn down on exit."""
    async with Runtime() as rt:
        gate = StartGate(n)
        for _ in range(n):
            last = rt.spawn(rusm_idle, gate)
        await gate.all_started
        info = rt.process_info(last)
        assert info is not None and info.status == "waiting", info
        yield


async def rusm_throughput(n: int, metered: bool = False) -> float:
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    async with Runtime() as rt:
        if metered:  # what an observer starts: the stack sampler, the loop ticker
            rt.meter()  # and the noting of mailboxes that fill (census.Mailboxes)
            rt.track_filled()
        consumer = rt.spawn(rusm_consumer, n, done)
        await asyncio.sleep(0)  # the consumer reaches its first receive
        t0 = time.perf_counter()
        rt.spawn(rusm_producer, consumer, n)
        t1 = await done
    return n / (t1 - t0)


async def rusm_pingpong(rounds: int, warmup: int, metered: bool = False) -> list[int]:
    done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
    async with Runtime() as rt:
        if metered:
            rt.meter()
            rt.track_filled()
        ponger = rt.spawn(rusm_ponger)
        rt.spawn(rusm_pinger, ponger, rounds, warmup, done)
        return await done


# -- baseline: a Task per process, an asyncio.Queue as its mailbox -------------


async def base_idle(inbox: asyncio.Queue[Any], gate: StartGate) -> None:
    gate.arrived()
    await inbox.get()


async def base_producer(dest: asyncio.Queue[int], n: int) -> None:
    for start in range(0, n, BATCH):
        for i in range(start, min(start + BATCH, n)):
            dest.put_nowait(i)
        await asyncio.sleep(0)


async def base_ponger(inbox: asyncio.Queue[asyncio.Queue[None]]) -> None:
    while True:
        sender = await inbox.get()
        sender.put_nowait(None)


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def base_fleet(n: int) -> AsyncIterator[None]:
    """``n`` idle baseline processes, all waiting in ``get``, torn down on exit.
    Their mailboxes are kept in a list: that is how they would be addressed."""
    loop = asyncio.get_running_loop()
    gate = StartGate(n)
    mailboxes: list[asyncio.Queue[Any]] = []
    tasks: list[asyncio.Task[None]] = []
    for _ in range(n):
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        mailboxes.append(inbox)
        tasks.append(loop.create_task(base_idle(inbox, gate)))
    await gate.all_started
    try:
        yield
    finally:
        await stop(tasks)


async def base_throughput(n: int) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    inbox: asyncio.Queue[int] = asyncio.Queue()
    consumer = loop.create_task(consume(inbox.get, n, done))
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    producer = loop.create_task(base_producer(inbox, n))
    t1 = await done
    await stop([consumer, producer])
    return n / (t1 - t0)


async def base_pingpong(rounds: int, warmup: int) -> list[int]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[int]] = loop.create_future()
    pinger_inbox: asyncio.Queue[None] = asyncio.Queue()
    ponger_inbox: asyncio.Queue[asyncio.Queue[None]] = asyncio.Queue()
    tasks = [
        loop.create_task(base_ponger(ponger_inbox)),
        loop.create_task(ping(partial(ponger_inbox.put_nowait, pinger_inbox), pinger_inbox.get,
                              rounds, warmup, done)),
    ]
    samples = await done
    await stop(tasks)
    return samples


# -- measurements (each one run in its own event loop) -------------------------

Fleet = Callable[[int], AbstractAsyncContextManager[None]]


async def spawn_rate(fleet: Fleet, n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    async with fleet(n):
        elapsed = time.perf_counter() - t0
    return {"spawn_per_s": n / elapsed}


async def idle_memory(fleet: Fleet, n: int) -> dict[str, float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    async with fleet(n):
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()  # the teardown runs untraced
    return {"bytes_per_idle_process": (after - before) / n}


async def throughput(run: Callable[[int], Awaitable[float]], n: int) -> dict[str, float]:
    return {"msgs_per_s": await run(n)}


async def pingpong(run: Callable[[int, int], Awaitable[list[int]]], rounds: int, warmup: int
                   ) -> dict[str, float]:
    samples = sorted(await run(rounds, warmup))
    return {
        "pingpong_p50_us": samples[len(samples) // 2] / 1000,
        "pingpong_p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000,
    }


Measure = Callable[[], Coroutine[Any, Any, dict[str, float]]]


def measurements(sizes: Sizes) -> list[tuple[str, Measure, Measure]]:
    """(name, RUSM measurement, baseline measurement) for every figure."""
    return [
        ("spawn", partial(spawn_rate, rusm_fleet, sizes.spawn),
         partial(spawn_rate, base_fleet, sizes.spawn)),
        ("memory", partial(idle_memory, rusm_fleet, sizes.memory),
         partial(idle_memory, base_fleet, sizes.memory)),
        ("throughput", partial(throughput, rusm_throughput, sizes.messages),
         partial(throughput, base_throughput, sizes.messages)),
        ("pingpong", partial(pingpong, rusm_pingpong, sizes.rounds, sizes.warmup),
         partial(pingpong, base_pingpong, sizes.rounds, sizes.warmup)),
    ]


def metered(sizes: Sizes) -> list[tuple[str, Measure, Measure]]:
    """(name, RUSM with the meter on, RUSM without it): what observing costs."""
    return [
        ("throughput", partial(throughput, partial(rusm_throughput, metered=True), sizes.messages),
         partial(throughput, rusm_throughput, sizes.messages)),
        ("pingpong", partial(pingpong, partial(rusm_pingpong, metered=True), sizes.rounds,
                             sizes.warmup),
         partial(pingpong, rusm_pingpong, sizes.rounds, sizes.warmup)),
    ]


def run_once(measure: Measure) -> dict[str, float]:
    gc.collect()
    return asyncio.run(measure())


def keep_best(best: dict[str, float], figures: dict[str, float]) -> None:
    for key, value in figures.items():
        if key not in best:
            best[key] = value
        elif key in HIGHER_IS_BETTER:
            best[key] = max(best[key], value)
        else:
            best[key] = min(best[key], value)


def bench(pairs: list[tuple[str, Measure, Measure]], repeat: int, sides: tuple[str, str]
          ) -> tuple[dict[str, float], dict[str, float]]:
    rusm: dict[str, float] = {}
    base: dict[str, float] = {}
    for name, rusm_measure, base_measure in pairs:
        for k in range(repeat):
            # Alternate which side goes first, so neither always runs on a warmer machine.
            order = [(sides[0], rusm_measure, rusm), (sides[1], base_measure, base)]
            for side, measure, best in order if k % 2 == 0 else order[::-1]:
                figures = run_once(measure)
                keep_best(best, figures)
                shown = ", ".join(f"{key}={value:,.2f}" for key, value in figures.items())
                note(f"{name} [{k + 1}/{repeat}] {side}: {shown}")
    return rusm, base


def targets(rusm: dict[str, float], ratio: dict[str, float]) -> dict[str, dict[str, Any]]:
    checks = [
        ("bytes_per_idle_process", "rusm <= 2048", rusm["bytes_per_idle_process"], 2048.0),
        ("msgs_per_s", "ratio >= 1.0", ratio["msgs_per_s"], 1.0),
        ("pingpong_p50_us", "ratio <= 1.2", ratio["pingpong_p50_us"], 1.2),
        ("spawn_per_s", "rusm >= 100000", rusm["spawn_per_s"], 100_000.0),
    ]
    return {
        key: {"target": text, "value": round(value, 3),
              "met": value >= bound if ">=" in text else value <= bound}
        for key, text, value, bound in checks
    }


async def loop_name() -> str:
    return type(asyncio.get_running_loop()).__name__


def rounded(figures: dict[str, float]) -> dict[str, float]:
    return {key: round(figures[key], 1 if key in HIGHER_IS_BETTER else 2) for key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10x smaller counts (smoke test)")
    parser.add_argument("--repeat", type=int, default=3, metavar="K",
                        help="run each measurement K times, keep the best (default 3)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    sizes = QUICK if args.quick else FULL

    started = time.perf_counter()
    rusm, base = bench(measurements(sizes), args.repeat, ("rusm", "baseline"))
    ratio = {key: rusm[key] / base[key] for key in KEYS}
    on, off = bench(metered(sizes), args.repeat, ("meter on", "meter off"))
    meter = {key: {"on": round(on[key], 2), "off": round(off[key], 2),
                   "ratio": round(on[key] / off[key], 3)} for key in METER_KEYS}
    # Slower by: the throughput lost, or the latency gained, with the meter on.
    cost = max(1 - on["msgs_per_s"] / off["msgs_per_s"],
               on["pingpong_p50_us"] / off["pingpong_p50_us"] - 1)
    result = {
        "bench": "local",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "loop": asyncio.run(loop_name()),
        "quick": args.quick,
        "repeat": args.repeat,
        "sizes": {**asdict(sizes), "batch": BATCH},
        "rusm": rounded(rusm),
        "baseline": rounded(base),
        "ratio": {key: round(value, 3) for key, value in ratio.items()},
        "targets": {**targets(rusm, ratio),
                    "meter_cost": {"target": "<= 0.05", "value": round(cost, 3),
                                   "met": cost <= 0.05}},
        "meter": meter,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
