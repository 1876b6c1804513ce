"""TUI benchmark: ``rusm top`` fed a 10,000-process node at 4 Hz, headless.

A simulated node of 10,000 processes (seeded, so every run sees the same
data) changes a few hundred mailboxes per tick; each sample carries the 200
busiest rows, as the node sends them. The samples are encoded beforehand;
the feed decodes each one as it yields it, as a live client does, every
250 ms. Measured in the same run:

- ``apply_ms``: the app taking one sample into its widgets (model, header,
  charts, the table updated in place), p50/p99;
- ``to_screen_ms``: from the feed yielding a sample to the next frame the
  screen composes (includes waiting for Textual's refresh timer), p50/p99;
- ``cpu_share``: the process's CPU time over wall time while fed (one core = 1);
- baselines: decoding one sample alone, and a plain DataTable that clears and
  re-adds the 200 rows per sample, measured the same way (``ratio`` is ours
  over that rebuild).

Prints one JSON line on stdout; progress goes to stderr. Targets: to-screen
p99 under 50 ms, under 25 % of one core.

    python scripts/bench_tui.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable

from rusm.observe.protocol import (
    FeedStatus,
    ProcessRow,
    Sample,
    Subscription,
    Totals,
    decode,
    encode,
)
from rusm.tui.app import TopApp, freeze_startup_objects
from rusm.tui.audit import AuditLog
from rusm.tui.widgets.table import COLUMNS

PROCESSES = 10_000
ROWS = 200
HZ = 4.0
CHANGED_PER_TICK = 400
"""Processes whose mailbox changes between two samples."""
SIZE = (120, 40)
TARGET_P99_MS = 50.0
TARGET_CPU_SHARE = 0.25


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def node_samples(n: int, seed: int = 7) -> list[bytes]:
    """``n`` encoded samples of a simulated 10,000-process node."""
    rng = random.Random(seed)
    mailbox = [rng.choice((0, 0, 0, 1, 2, 5, 20)) for _ in range(PROCESSES)]
    received = [rng.randrange(10_000) for _ in range(PROCESSES)]
    labels = ("worker", "fetcher", "parser", "cache", None)
    out = []
    for seq in range(1, n + 1):
        for i in rng.sample(range(PROCESSES), CHANGED_PER_TICK):
            mailbox[i] = max(0, mailbox[i] + rng.randint(-8, 10))
            received[i] += rng.randrange(50)
        top = heapq.nlargest(ROWS, range(PROCESSES), key=lambda i: (mailbox[i], -i))
        rows = tuple(
            ProcessRow(
                pid=f"<bench.{i + 1}>", label=labels[i % 5],
                names=(f"svc_{i}",) if i % 50 == 0 else (), mailbox=mailbox[i],
                links=i % 3, monitors=i % 2, status="running" if mailbox[i] else "waiting",
                received=received[i], sent=received[i] // 2, age=1_000.0 + seq - i / 100,
            )
            for i in top
        )
        total = sum(mailbox)
        sample = Sample(
            node="bench", seq=seq, time=1_700_000_000.0 + seq / HZ, uptime=1_000.0 + seq / HZ,
            processes=PROCESSES,
            totals=Totals(5_000.0, 4_900.0, 0.0, total, 1_000_000 + seq * 1_250, 0,
                          PROCESSES, 0),
            nodes=("tokyo",), detail=True, sort="mailbox", rows=rows, matched=PROCESSES,
            omitted=PROCESSES - ROWS,
        )
        out.append(encode(sample.to_wire()))
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 2), "p99": round(p99, 2)}


class PacedFeed:
    """Yields the samples at HZ, decoding each as a live client would."""

    def __init__(self, encoded: list[bytes]) -> None:
        self.target = "bench"
        self.subscription = Subscription(limit=ROWS)
        self.encoded = encoded
        self.yielded: list[float] = []
        self.done = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[Sample | FeedStatus]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, data in enumerate(self.encoded):
            await asyncio.sleep(max(0.0, start + i / HZ - loop.time()))
            sample = Sample.from_wire(decode(data))
            self.yielded.append(time.perf_counter())
            yield sample
        await asyncio.sleep(1 / HZ)
        self.done.set()
        await asyncio.Event().wait()  # a live feed stays open

    async def subscribe(self, **changes: Any) -> None:
        self.subscription.update(changes)

    async def command(self, cmd: str, **args: Any) -> Any:
        return None

    async def close(self) -> None:
        pass


class FrameClock:
    """Mixed into an app: when each frame was composed, and apply times."""

    frames: list[float]
    applies: list[float]

    def _display(self, screen: Screen[Any], renderable: RenderableType | None) -> None:
        # Textual calls this with each composed frame (headless: not written).
        super()._display(screen, renderable)  # type: ignore[misc]
        self.frames.append(time.perf_counter())


class BenchTopApp(FrameClock, TopApp):
    def __init__(self, feed: PacedFeed, audit: Path) -> None:
        super().__init__(feed, audit=AuditLog(audit, time.time), clock=time.time)
        self.frames, self.applies = [], []

    def _render(self) -> None:
        start = time.perf_counter()
        super()._render()
        self.applies.append((time.perf_counter() - start) * 1000)


def _cells(row: ProcessRow) -> list[str | Text]:
    return [Text(c.text(row, ""), justify="right") if c.right else c.text(row, "")
            for c in COLUMNS]


class RebuildApp(FrameClock, App[None]):
    """The baseline: a plain DataTable cleared and refilled with every sample."""

    def __init__(self, feed: PacedFeed) -> None:
        super().__init__()
        self.feed = feed
        self.frames, self.applies = [], []

    def compose(self) -> ComposeResult:
        table: DataTable[str | Text] = DataTable(cursor_type="row")
        for c in COLUMNS:
            table.add_column(c.label, width=c.width, key=c.key)
        yield table

    def on_mount(self) -> None:
        self.consume()

    @work
    async def consume(self) -> None:
        table = self.query_one(DataTable)
        async for event in self.feed:
            if isinstance(event, Sample):
                start = time.perf_counter()
                table.clear()
                table.add_rows(_cells(r) for r in event.rows)
                self.applies.append((time.perf_counter() - start) * 1000)


def latencies(yielded: list[float], frames: list[float]) -> list[float]:
    out, j = [], 0
    for t in yielded:
        while j < len(frames) and frames[j] < t:
            j += 1
        if j < len(frames):
            out.append((frames[j] - t) * 1000)
    return out


async def run(app: BenchTopApp | RebuildApp, feed: PacedFeed) -> dict[str, Any]:
    freeze_startup_objects()  # as TopApp.run_async does (run_test does not)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        wall, cpu = time.perf_counter(), time.process_time()
        async with asyncio.timeout(len(feed.encoded) / HZ + 30):
            await feed.done.wait()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "apply_ms": percentiles(app.applies),
        "to_screen_ms": percentiles(latencies(feed.yielded, app.frames)),
        "cpu_share": round(cpu / wall, 3),
    }


def decode_ms(encoded: list[bytes]) -> dict[str, float]:
    times = []
    for data in encoded:
        start = time.perf_counter()
        Sample.from_wire(decode(data))
        times.append((time.perf_counter() - start) * 1000)
    return percentiles(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds of samples (smoke test, under 15 s)")
    args = parser.parse_args()
    seconds = (4.0, 2.0) if args.quick else (30.0, 10.0)
    started = time.perf_counter()
    note(f"building samples of a {PROCESSES:,}-process node...")
    encoded = node_samples(int(seconds[0] * HZ))
    with tempfile.TemporaryDirectory() as tmp:
        note(f"rusm top: {len(encoded)} samples at {HZ:g} Hz...")
        feed = PacedFeed(encoded)
        ours = asyncio.run(run(BenchTopApp(feed, Path(tmp) / "audit.log"), feed))
    base_samples = encoded[: int(seconds[1] * HZ)]
    note(f"baseline: a DataTable rebuilt per sample, {len(base_samples)} samples...")
    base_feed = PacedFeed(base_samples)
    rebuild = asyncio.run(run(RebuildApp(base_feed), base_feed))
    result = {
        "bench": "tui",
        "python": platform.python_version(),
        "quick": args.quick,
        "processes": PROCESSES,
        "rows": ROWS,
        "hz": HZ,
        "terminal": list(SIZE),
        "samples": len(encoded),
        "rusm_top": ours,
        "baseline": {
            "decode_ms": decode_ms(encoded),
            "rebuild_table": rebuild,
        },
        "ratio": {
            key: round(ours[key]["p50"] / max(rebuild[key]["p50"], 1e-6), 2)
            for key in ("apply_ms", "to_screen_ms")
        },
        "targets": {
            "to_screen_p99_ms": TARGET_P99_MS,
            "cpu_share": TARGET_CPU_SHARE,
            "met": ours["to_screen_ms"]["p99"] < TARGET_P99_MS
            and ours["cpu_share"] < TARGET_CPU_SHARE,
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
