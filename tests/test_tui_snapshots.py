"""SVG snapshots of every rusm top screen, from recorded feeds at fixed sizes.

The SVGs live in the top-level snapshots/ folder, as
snapshots/test_tui_snapshots/<test name>.svg: the ``snapshot`` fixture below
points pytest-textual-snapshot's syrupy extension there. After a
deliberate change of the screens: ``pytest tests/test_tui_snapshots.py
--snapshot-update``, then look at the SVGs before committing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_textual_snapshot import SVGImageExtension
from syrupy.assertion import SnapshotAssertion
from syrupy.location import PyTestLocation
from textual.pilot import Pilot
from textual.widgets import Input

from rusm.observe.protocol import CommandError
from rusm.tui.app import TopApp, make_app
from rusm.tui.feeds import ReplayFeed, read_recording
from rusm.tui.screens.cluster import ClusterScreen
from rusm.tui.screens.confirm import ConfirmKill
from rusm.tui.screens.log import LogScreen
from rusm.tui.screens.process import ProcessScreen
from rusm.tui.screens.trace import TraceScreen
from rusm.tui.screens.tree import TreeScreen

from .tui_helpers import (
    LONDON,
    LONDON_DOWN,
    FakeFeed,
    NodeLog,
    NodeTrace,
    drained,
    info_of,
    node_events,
    supervision_trees,
    trace_events,
    until,
)

SNAPSHOTS = Path(__file__).resolve().parent.parent / "snapshots"
CLOCK = 1_700_003_600.0
SIZE = (100, 30)

SnapCompare = Callable[..., bool]


class TopLevelSnapshots(SVGImageExtension):
    """Stores each snapshot as snapshots/<test module>/<test name>.svg."""

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(SNAPSHOTS / test_location.basename)


class _TopLevelAssertion(SnapshotAssertion):
    def use_extension(self, extension_class: Any = None) -> SnapshotAssertion:
        # snap_compare asks for its own SVG extension; keep ours (same format).
        return super().use_extension(TopLevelSnapshots)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return _TopLevelAssertion(
        update_snapshots=snapshot.update_snapshots,
        extension_class=TopLevelSnapshots,
        test_location=snapshot.test_location,
        session=snapshot.session,
    )


def app_for(feed: Any, tmp_path: Path) -> TopApp:
    return make_app(feed, audit_path=tmp_path / "audit.log", clock=lambda: CLOCK)


def replayed(feed: ReplayFeed) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await until(pilot, feed.ended.is_set, "the replay to end")
        await pilot.pause()

    return run_before


def recorded(**answers: Any) -> FakeFeed:
    """The london recording, with answers to commands."""
    return FakeFeed(read_recording(LONDON), answers=answers)


def test_main_screen_with_detail_on(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = ReplayFeed(LONDON)
    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=replayed(feed))


def test_main_screen_at_80x24(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = ReplayFeed(LONDON)
    assert snap_compare(app_for(feed, tmp_path), terminal_size=(80, 24),
                        run_before=replayed(feed))


def test_main_screen_at_80x24_scrolled_two_columns_right(
    snap_compare: SnapCompare, tmp_path: Path,
) -> None:
    feed = ReplayFeed(LONDON)
    assert snap_compare(app_for(feed, tmp_path), terminal_size=(80, 24), press=["right", "right"],
                        run_before=replayed(feed))


def test_main_screen_with_detail_off(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = ReplayFeed(LONDON)

    async def run_before(pilot: Pilot[Any]) -> None:
        await replayed(feed)(pilot)
        await pilot.press("d")
        app = pilot.app
        assert isinstance(app, TopApp)
        await until(pilot, lambda: app.model.sample is not None and not app.model.sample.detail)
        await pilot.pause()

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_filtered_table(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = ReplayFeed(LONDON)

    async def run_before(pilot: Pilot[Any]) -> None:
        await replayed(feed)(pilot)
        await pilot.press("slash", *"worker", "enter")
        app = pilot.app
        assert isinstance(app, TopApp)
        await until(pilot, lambda: app.model.sample is not None
                    and all(r.label == "worker" for r in app.model.sample.rows))
        await pilot.pause()

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_process_view(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = recorded(info=lambda pid: info_of(pid))

    async def run_before(pilot: Pilot[Any]) -> None:
        await drained(pilot, feed)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProcessScreen)
                    and pilot.app.screen.info is not None)

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_cluster_view(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = recorded(nodes=["tokyo", "paris"])

    async def run_before(pilot: Pilot[Any]) -> None:
        await drained(pilot, feed)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, ClusterScreen)
                    and pilot.app.screen.nodes is not None)

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_command_pane_showing_a_node_error(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = recorded(send=CommandError("no_such_process",
                                      "no process is registered as 'nobody' on london"))

    async def run_before(pilot: Pilot[Any]) -> None:
        await drained(pilot, feed)
        await pilot.press("colon")
        app = pilot.app
        assert isinstance(app, TopApp)
        app.main.pane.input.cursor_blink = False  # a blink would make the SVG flaky
        app.main.pane.input.value = "send nobody {'job': 1}"
        await pilot.press("enter")
        await until(pilot, lambda: "failed" in app.main.pane.message)
        await pilot.press(*"spawn")

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_kill_confirmation(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = recorded()

    async def run_before(pilot: Pilot[Any]) -> None:
        await drained(pilot, feed)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmKill))

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = ReplayFeed(LONDON)
    assert snap_compare(app_for(feed, tmp_path), press=["question_mark"], terminal_size=SIZE,
                        run_before=replayed(feed))


def test_disconnected_state(snap_compare: SnapCompare, tmp_path: Path) -> None:
    # A live feed whose node went away: the figures are marked stale.
    feed = FakeFeed(read_recording(LONDON_DOWN))

    async def run_before(pilot: Pilot[Any]) -> None:
        await drained(pilot, feed)

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_log_view(snap_compare: SnapCompare, tmp_path: Path) -> None:
    # The node's events at fixed times, shown in UTC: the same on every machine.
    feed = recorded(log=NodeLog(node_events()))

    async def run_before(pilot: Pilot[Any]) -> None:
        await drained(pilot, feed)
        await pilot.press("L")
        await until(pilot, lambda: isinstance(pilot.app.screen, LogScreen)
                    and pilot.app.screen.polls > 0)
        pilot.app.screen.query_one(Input).cursor_blink = False  # a blink would be flaky
        await pilot.pause()

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_trace_view(snap_compare: SnapCompare, tmp_path: Path) -> None:
    feed = recorded(**NodeTrace("<london.3>", trace_events(), stopped="count").answers())

    async def run_before(pilot: Pilot[Any]) -> None:
        await drained(pilot, feed)
        await pilot.press("colon")
        app = pilot.app
        assert isinstance(app, TopApp)
        app.main.pane.input.value = "trace consumer 4 5"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TraceScreen)
                    and app.screen.stopped is not None)
        await pilot.pause()

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_tree_view(snap_compare: SnapCompare, tmp_path: Path) -> None:
    # Fixed trees: nested supervisors, a restarted child, a stopped one.
    feed = recorded(tree=supervision_trees())

    async def run_before(pilot: Pilot[Any]) -> None:
        await drained(pilot, feed)
        await pilot.press("T")
        await until(pilot, lambda: isinstance(pilot.app.screen, TreeScreen)
                    and pilot.app.screen.loads > 0)
        await pilot.pause()

    assert snap_compare(app_for(feed, tmp_path), terminal_size=SIZE, run_before=run_before)
