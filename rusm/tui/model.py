"""What the screen shows, kept apart from the widgets that show it.

:class:`TopModel` ingests every event a feed yields (a sample or a status
change), keeps the latest sample and the recent past of the charts, and is
read by the widgets when they render. The UI may skip rendering samples
(coalescing, pause); the model never skips one, so charts have no gaps.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from rusm.observe.protocol import FeedStatus, Sample

__all__ = ["HISTORY_POINTS", "TopModel", "trend"]

HISTORY_POINTS = 120
"""Points kept per chart series (one per sample)."""

BARS = "▁▂▃▄▅▆▇█"


def trend(values: Sequence[int], width: int = 8) -> str:
    """The last ``width`` values as sparkline characters, scaled from 0 to their maximum.

    Scaled from zero rather than from the minimum so a flat, full mailbox
    reads as high and a flat, empty one as low.
    """
    tail = list(itertools.islice(values, max(0, len(values) - width), None))
    if not tail:
        return ""
    top = max(tail)
    if top <= 0:
        return BARS[0] * len(tail)
    last = len(BARS) - 1
    # Rounded to the nearest bar, but never down to the empty one for a non-empty mailbox.
    return "".join(BARS[max(1, (2 * v * last + top) // (2 * top))] if v > 0 else BARS[0]
                   for v in tail)


class TopModel:
    """The latest sample, the connection state and the charts' series."""

    def __init__(
        self, points: int = HISTORY_POINTS, clock: Callable[[], float] = time.time
    ) -> None:
        self.points = points
        self.clock = clock
        """Seconds, for the age of a sample: the app's clock (``time.time``)."""
        self.received_at: float | None = None
        """When the latest sample arrived (``clock()``)."""
        self.sample: Sample | None = None
        self.status = FeedStatus("connecting", "waiting for the first sample")
        self.processes: deque[int] = deque(maxlen=points)
        self.mailbox: deque[int] = deque(maxlen=points)
        self.lag: deque[int] = deque(maxlen=points)
        """The node's worst event-loop lag per sample, in milliseconds."""
        self.rows: dict[str, deque[int]] = {}
        """Mailbox depth series of each process the latest sample shows, by pid."""
        self.samples = 0
        """Samples ingested so far (rendered or not)."""
        self.position: tuple[int, int] | None = None
        """In a replay: which recorded sample is shown (1-based), of how many."""

    @property
    def connected(self) -> bool:
        return self.status.state == "connected"

    @property
    def stale(self) -> bool:
        """Whether the figures shown are old: a sample, and no node behind it now."""
        return self.sample is not None and not self.connected

    def sample_age(self) -> float | None:
        """Seconds since the latest sample arrived, or None before the first."""
        return None if self.received_at is None else max(0.0, self.clock() - self.received_at)

    def ingest(self, event: Sample | FeedStatus) -> None:
        if isinstance(event, FeedStatus):
            self.status = event
            return
        self.samples += 1
        self.received_at = self.clock()
        if self.status.state != "connected":
            self.status = FeedStatus("connected")
        history = event.history
        if history is not None:
            self._reset(self.processes, history.processes)
            self._reset(self.mailbox, history.mailbox)
            self._reset(self.lag, (round(v) for v in history.lag))
        # The same moment seen again (a replay re-viewed with a new
        # subscription) replaces the last point instead of adding one.
        again = (
            history is None and self.sample is not None
            and (self.sample.node, self.sample.time) == (event.node, event.time)
        )
        self._put(self.processes, event.processes, again)
        self._put(self.mailbox, event.totals.mailbox, again)
        self._put(self.lag, round(event.totals.loop_lag_ms), again)
        rows: dict[str, deque[int]] = {}
        for row in event.rows:
            series = self.rows.get(row.pid)
            if history is not None and row.pid in history.rows:
                series = deque(history.rows[row.pid], maxlen=self.points)
                self._put(series, row.mailbox, False)
            elif series is None:
                series = deque([row.mailbox], maxlen=self.points)
            else:
                self._put(series, row.mailbox, again)
            rows[row.pid] = series
        self.rows = rows
        self.sample = event

    def row_series(self, pid: str) -> Sequence[int]:
        return self.rows.get(pid, ())

    @staticmethod
    def _put(series: deque[int], value: int, replace_last: bool) -> None:
        if replace_last and series:
            series[-1] = value
        else:
            series.append(value)

    def _reset(self, series: deque[int], values: Iterable[int]) -> None:
        series.clear()
        series.extend(values)
