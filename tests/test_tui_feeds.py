"""Recorded feeds (record, replay, subscription changes) and the TUI's model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rusm.observe.protocol import FeedStatus, Sample, Subscription
from rusm.tui.feeds import (
    MAGIC,
    RecordingFeed,
    ReplayFeed,
    read_recording,
    view,
    write_recording,
)
from rusm.tui.model import TopModel, trend

from .tui_helpers import (
    LONDON,
    LONDON_DOWN,
    FakeFeed,
    london_disconnected,
    london_samples,
)


async def take(feed: Any, n: int) -> list[Sample | FeedStatus]:
    events: list[Sample | FeedStatus] = []
    async with asyncio.timeout(5):
        async for event in feed:
            events.append(event)
            if len(events) == n:
                break
    return events


def test_the_checked_in_recordings_are_what_the_builder_makes() -> None:
    assert list(read_recording(LONDON)) == london_samples()
    assert list(read_recording(LONDON_DOWN)) == london_disconnected()


def test_a_recording_round_trips_samples_and_statuses(tmp_path: Path) -> None:
    events = [*london_samples(2), FeedStatus("disconnected", "gone"), FeedStatus("connected")]
    write_recording(tmp_path / "r.rec", events)
    assert list(read_recording(tmp_path / "r.rec")) == events


def test_a_truncated_last_frame_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "r.rec"
    write_recording(path, london_samples(2))
    path.write_bytes(path.read_bytes()[:-10])
    assert list(read_recording(path)) == london_samples(1)


def test_a_file_that_is_not_a_recording_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.rec"
    path.write_bytes(b"hello" + MAGIC)
    with pytest.raises(ValueError, match="not a rusm top recording"):
        list(read_recording(path))


async def test_a_recording_feed_writes_every_event_it_passes_on(tmp_path: Path) -> None:
    events = [*london_samples(3), FeedStatus("disconnected", "gone")]
    inner = FakeFeed(events)
    feed = RecordingFeed(inner, tmp_path / "out.rec")
    assert await take(feed, 4) == events
    await feed.close()
    assert inner.closed
    assert list(read_recording(tmp_path / "out.rec")) == events


async def test_a_replay_yields_the_recording_then_says_it_ended() -> None:
    feed = ReplayFeed(LONDON)
    events = await take(feed, len(london_samples()) + 2)
    assert events[0] == FeedStatus("connected", "replay of london.rec")
    assert events[1:-1] == london_samples()
    assert events[-1] == FeedStatus("connected", "replay of london.rec ended")
    assert feed.ended.is_set()
    await feed.close()


async def test_a_replay_ending_on_a_status_keeps_that_status() -> None:
    feed = ReplayFeed(LONDON_DOWN)
    events = await take(feed, 12)
    assert events[-1] == FeedStatus("disconnected", "connection lost; retrying in 2 s")
    await feed.close()


async def test_a_replay_applies_a_new_subscription_to_the_latest_sample() -> None:
    feed = ReplayFeed(LONDON)
    iterator = aiter(feed)
    async with asyncio.timeout(5):
        while not feed.ended.is_set():
            last = await anext(iterator)
        assert last == FeedStatus("connected", "replay of london.rec ended")
        await feed.subscribe(filter="WORKER", sort="pid")
        again = await anext(iterator)
    assert isinstance(again, Sample)
    assert again.rows and all(r.label == "worker" for r in again.rows)
    serials = [int(r.pid[8:-1]) for r in again.rows]
    assert serials == sorted(serials)
    assert (again.matched, again.omitted, again.sort) == (len(again.rows), 0, "pid")
    await feed.close()
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(5):
            await anext(iterator)


async def test_a_realtime_replay_spaces_samples_by_the_nodes_clock_over_speed() -> None:
    feed = ReplayFeed(LONDON, realtime=True, speed=100.0)  # 1 s apart -> 10 ms
    loop = asyncio.get_running_loop()
    start = loop.time()
    await take(feed, 6)  # status + 5 samples: 4 gaps
    assert loop.time() - start >= 0.04
    await feed.close()


async def test_a_replay_answers_nodes_and_names_and_refuses_other_commands() -> None:
    feed = ReplayFeed(LONDON)
    await take(feed, 2)
    assert await feed.command("nodes") == ["paris", "tokyo"]
    assert "consumer" in (await feed.command("names"))["local"]
    from rusm.observe.protocol import CommandError

    with pytest.raises(CommandError, match="a replay has no node") as e:
        await feed.command("kill", pid="<london.3>")
    assert e.value.kind == "not_connected"
    await feed.close()


def test_a_view_with_detail_off_has_no_rows_and_counts_them_all_as_omitted() -> None:
    sample = london_samples(1)[0]
    off = view(sample, Subscription(detail=False))
    assert (off.detail, off.rows, off.omitted) == (False, (), sample.matched)


def test_a_view_keeps_the_row_limit() -> None:
    sample = london_samples(1)[0]
    small = view(sample, Subscription(limit=5))
    assert small.rows == sample.rows[:5]
    assert small.omitted == sample.matched - 5


def test_the_model_starts_charts_from_history_and_appends_each_sample() -> None:
    first, second = london_samples(2)
    model = TopModel()
    model.ingest(first)
    assert first.history is not None
    assert list(model.processes) == [*first.history.processes, first.processes]
    pid = first.rows[0].pid
    assert list(model.row_series(pid)) == [*first.history.rows[pid], first.rows[0].mailbox]
    model.ingest(second)
    assert list(model.mailbox)[-2:] == [first.totals.mailbox, second.totals.mailbox]
    assert model.samples == 2 and model.connected


def test_the_model_does_not_add_a_point_for_the_same_moment_seen_again() -> None:
    first, second = london_samples(2)
    model = TopModel()
    model.ingest(first)
    model.ingest(second)
    before = len(model.processes)
    model.ingest(view(second, Subscription(filter="consumer")))
    assert len(model.processes) == before


def test_the_model_keeps_at_most_its_points_per_series() -> None:
    model = TopModel(points=10)
    for sample in london_samples(15):
        model.ingest(sample)
    assert len(model.processes) == 10
    assert all(len(s) <= 10 for s in model.rows.values())


def test_the_model_takes_a_status_change_without_losing_the_sample() -> None:
    model = TopModel()
    model.ingest(london_samples(1)[0])
    model.ingest(FeedStatus("disconnected", "gone"))
    assert model.sample is not None and not model.connected


def test_a_trend_is_scaled_from_zero_to_the_maximum_of_its_window() -> None:
    assert trend([0, 1, 2, 4, 8]) == "▁▂▃▅█"
    assert trend([5, 5, 5]) == "███"
    assert trend([0, 0]) == "▁▁"
    assert trend(list(range(20)), width=4) == "▇▇██"
    assert trend([]) == ""


def test_a_view_negates_a_filter_with_a_bang() -> None:
    sample = london_samples(1)[0]
    rest = view(sample, Subscription(filter="!WORKER"))
    assert rest.rows and all(r.label != "worker" for r in rest.rows)
    workers = view(sample, Subscription(filter="worker"))
    assert rest.matched + workers.matched == len(sample.rows)
    assert view(sample, Subscription(filter="!")).matched == sample.matched


def test_a_view_reverses_before_it_caps_and_pages_with_an_offset() -> None:
    sample = london_samples(1)[0]
    by_mailbox = sorted(sample.rows, key=lambda r: (-r.mailbox, int(r.pid[8:-1])))
    assert list(sample.rows) == by_mailbox  # the node's order
    quietest = view(sample, Subscription(reverse=True, limit=5))
    assert quietest.reverse and len(quietest.rows) == 5
    assert [r.mailbox for r in quietest.rows] == sorted(r.mailbox for r in sample.rows)[:5]
    page = view(sample, Subscription(offset=10, limit=5))
    assert page.rows == sample.rows[10:15] and page.offset == 10
    assert page.omitted == sample.matched - 5


@pytest.mark.parametrize("key", ["status", "names"])
def test_a_view_sorts_by_status_and_names_with_no_text_last(key: str) -> None:
    sample = london_samples(1)[0]
    rows = view(sample, Subscription(sort=key)).rows
    texts = [r.status if key == "status" else ", ".join(r.names) for r in rows]
    filled = [t for t in texts if t]
    assert filled == sorted(filled) and texts == filled + [""] * (len(texts) - len(filled))
    assert len(set(texts)) > 1
