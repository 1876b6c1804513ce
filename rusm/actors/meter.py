"""What each process costs, and how healthy the event loop is (issue 12 §3).

A sampling meter, as py-spy samples a program from outside, so nothing runs
on the message path:

- a daemon thread looks at the loop thread's Python stack ``hz`` times a
  second (``sys._current_frames``). The process whose step is running (the
  ``Runtime._main`` frame on that stack) is charged ``1/hz`` s of busy time:
  its ``cpu_s``, what reductions are on the BEAM, measured statistically;
- a ticker on the loop wakes every ``tick`` s and records how late it woke:
  the loop lag, what every timer and every message of the node waits extra;
- when the ticker is late by more than ``threshold`` s (default 100 ms), one
  step held the loop all that time: the sampler, which saw the stack
  meanwhile, names the process, its label and the file:line where it ran,
  and the meter keeps a :class:`BlockedStep` (the last ``keep`` of them).
  A step the sampler never saw (it held the GIL throughout, in C) is kept
  with no process.

The meter is started by whoever observes the runtime (``Runtime.meter()``)
and stopped by ``Runtime.close``; its thread and ticker go with it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from .diagnose import Frame
from .pid import Pid

__all__ = ["HZ", "THRESHOLD", "TICK", "BlockedStep", "Meter"]

HZ = 100
"""Stack samples a second (busy time resolution: 10 ms)."""
TICK = 0.05
"""Seconds between the loop ticker's wake-ups."""
THRESHOLD = 0.1
"""A step that holds the loop longer than this (seconds) is recorded."""
LAG_WINDOW = 120.0
"""Seconds of loop lag kept (the header's chart reads them)."""
MAX_DEPTH = 256
"""Frames walked up from the innermost looking for the process's own."""


@dataclass(frozen=True, slots=True)
class BlockedStep:
    """One step that held the event loop longer than the threshold."""

    at: float
    """Wall-clock time (``time.time()``) it ended."""
    ms: float
    """How long the loop was held, in milliseconds."""
    pid: Pid | None
    """The process whose step it was; None if the sampler saw none (code
    outside any process, or C code that never released the GIL)."""
    label: str | None
    where: Frame | None
    """The innermost Python frame running while it blocked."""


class Meter:
    """Busy time per process, loop lag and blocked steps, for one runtime."""

    def __init__(
        self, main_code: CodeType, hz: int = HZ, tick: float = TICK,
        threshold: float = THRESHOLD, keep: int = 64,
    ) -> None:
        self.hz = hz
        self.tick = tick
        self.threshold = threshold
        self.blocked: deque[BlockedStep] = deque(maxlen=keep)
        """The last steps that held the loop longer than ``threshold``."""
        self.blocked_total = 0
        self.samples = 0
        """Stack samples taken."""
        self.busy_samples = 0
        """Samples that found a process's step running."""
        self._main_code = main_code
        self._lags: deque[tuple[float, float]] = deque(maxlen=int(LAG_WINDOW / tick) + 1)
        self._due = 0.0
        self._suspects: Counter[tuple[Pid, str | None, Frame]] = Counter()
        """What the sampler saw running while the loop was held, how often."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_thread = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start sampling the thread that runs ``loop`` (call it on that thread)."""
        if self._thread is not None:
            return
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._due = time.perf_counter() + self.tick
        self._timer = loop.call_later(self.tick, self._on_tick)
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample_loop, name="rusm-meter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sampler thread and the ticker; idempotent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(1.0)

    # -- loop lag (on the loop) -------------------------------------------

    def _on_tick(self) -> None:
        now = time.perf_counter()
        lag = max(0.0, now - self._due)
        self._lags.append((now, lag))
        if lag > self.threshold:
            # The frame seen most often while it held the loop is where it spun
            # (not where the step ended, say making the next receive's future).
            seen = self._suspects.most_common(1)
            pid, label, where = seen[0][0] if seen else (None, None, None)
            self.blocked.append(BlockedStep(time.time(), round(lag * 1000, 1), pid, label, where))
            self.blocked_total += 1
        self._suspects = Counter()
        self._due = now + self.tick
        if self._loop is not None and self._thread is not None:
            self._timer = self._loop.call_later(self.tick, self._on_tick)

    def lag_ms(self, seconds: float) -> float:
        """The worst loop lag of the last ``seconds``, in milliseconds (the
        lag going on now counts too: a loop blocked at this moment)."""
        now = time.perf_counter()
        since = now - seconds
        worst = max((lag for t, lag in reversed(self._lags) if t >= since), default=0.0)
        if self._thread is not None:
            worst = max(worst, now - self._due)
        return round(max(0.0, worst) * 1000, 1)

    # -- stack samples (on the meter's thread) ----------------------------

    def _sample_loop(self) -> None:
        period = 1.0 / self.hz
        while not self._stop.wait(period):
            try:
                self._sample()
            except Exception:  # never let the meter's thread die on a racing frame
                continue

    def _sample(self) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        self.samples += 1
        if frame is None:
            return
        innermost = frame
        f: FrameType | None = frame
        for _ in range(MAX_DEPTH):
            if f is None:
                return
            if f.f_code is self._main_code:
                break
            f = f.f_back
        else:
            return
        proc = f.f_locals.get("proc")
        if proc is None:
            return
        self.busy_samples += 1
        proc._ticks += 1
        if time.perf_counter() - self._due > self.threshold / 2:  # the loop is held now
            code = innermost.f_code
            self._suspects[(proc.pid, proc.label, Frame(code.co_qualname, code.co_filename,
                                                        innermost.f_lineno or 0))] += 1

    def busy_s(self, ticks: int) -> float:
        """Seconds of busy time that ``ticks`` samples stand for."""
        return ticks / self.hz

    def stats(self) -> dict[str, Any]:
        """What the meter saw, for the observer and for benchmarks."""
        return {
            "hz": self.hz,
            "samples": self.samples,
            "busy_samples": self.busy_samples,
            "blocked_total": self.blocked_total,
        }
