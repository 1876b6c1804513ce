"""How numbers and durations read on screen."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["clock", "count", "duration", "rate", "timestamp"]


def count(n: int) -> str:
    return f"{n:,}"


def rate(per_s: float) -> str:
    if per_s >= 10_000:
        return f"{per_s / 1000:,.0f}k"
    if per_s >= 100:
        return f"{per_s:,.0f}"
    return f"{per_s:.1f}"


def duration(seconds: float) -> str:
    """``45s``, ``3m07s``, ``2h05m``, ``4d03h``: two units at most."""
    s = max(0, int(seconds))
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


def timestamp(epoch: float) -> str:
    """A node's wall-clock time as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def clock(epoch: float) -> str:
    """A node's wall-clock time of day, UTC, to the millisecond: ``22:15:09.042``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S.%f")[:-3]
