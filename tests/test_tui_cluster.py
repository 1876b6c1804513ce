"""The cluster view (issue 11 §3.1-3.2) and the header on every view (§2.4, §2.6):
Pilot against recorded feeds, and against real nodes linked over QUIC."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList

from rusm import ClusterCa, ClusterNode, Runtime
from rusm.net.directory import NodeEntry
from rusm.net.observe import (
    CommandError,
    FeedStatus,
    Sample,
    Subscription,
    connect,
    serve_observe,
)
from rusm.net.observe.session import Session, observatory
from rusm.tui.app import TopApp, make_app
from rusm.tui.feeds import ReplayFeed, read_recording
from rusm.tui.screens.cluster import ClusterScreen
from rusm.tui.screens.main import MainScreen
from rusm.tui.screens.process import ProcessScreen
from rusm.tui.widgets.header import NodeHeader

from .tui_helpers import LONDON, FakeFeed, drained, info_of, london_samples, until

CLOCK = 1_700_003_600.0
WAIT = 10.0

TOKYO = {"node": "tokyo", "address": "10.0.0.7:4370", "state": "up", "hidden": False,
         "up_for": 61.0, "rtt": 0.00042}
PARIS = {"node": "paris", "address": "10.0.0.9:4370", "state": "up", "hidden": False,
         "up_for": 3.0, "rtt": 0.0213}


def top(feed: Any, tmp_path: Path, **kw: Any) -> TopApp:
    return make_app(feed, audit_path=tmp_path / "audit.log", clock=lambda: CLOCK, **kw)


def nodes_answer(*peers: dict[str, Any]) -> Callable[..., Any]:
    """A node's answer to ``nodes``: names, or each link's figures with ``detail``."""
    def answer(detail: bool = False) -> Any:
        return list(peers) if detail else [p["node"] for p in peers]
    return answer


def header_text(app: TopApp) -> str:
    return str(app.screen.query_one(NodeHeader).render())


def row_texts(screen: ClusterScreen) -> list[str]:
    options = screen.query_one(OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


def row_of(screen: ClusterScreen, node: str) -> str:
    return next(t for t in row_texts(screen) if t.startswith(node + " "))


async def cluster_view(pilot: Pilot[Any], app: TopApp) -> ClusterScreen:
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, ClusterScreen)
                and app.screen.nodes is not None, "the cluster view's nodes")
    assert isinstance(app.screen, ClusterScreen)
    return app.screen


async def live_until(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    """A live node has no event to await in the app: poll its state, bounded."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


# -- rows ------------------------------------------------------------------------


async def test_each_peer_row_shows_its_address_link_state_and_round_trip(
    tmp_path: Path,
) -> None:
    feed = FakeFeed(london_samples(1), answers={"nodes": nodes_answer(TOKYO, PARIS)})
    async with top(feed, tmp_path).run_test(size=(120, 30)) as pilot:
        await drained(pilot, feed)
        screen = await cluster_view(pilot, pilot.app)  # type: ignore[arg-type]
        assert screen.nodes == ["paris", "tokyo"]
        tokyo = row_of(screen, "tokyo").split()
        assert tokyo[1:3] == ["10.0.0.7:4370", "up"]
        assert tokyo[-2:] == ["0.42", "ms"]
        assert row_of(screen, "paris").split()[-2:] == ["21", "ms"]
        assert ("nodes", {"detail": True}) in feed.commands


async def test_the_attached_node_row_shows_its_process_count_and_messages_per_second(
    tmp_path: Path,
) -> None:
    sample = london_samples(1)[0]
    feed = FakeFeed([sample], answers={"nodes": nodes_answer(TOKYO)})
    async with top(feed, tmp_path).run_test(size=(120, 30)) as pilot:
        await drained(pilot, feed)
        screen = await cluster_view(pilot, pilot.app)  # type: ignore[arg-type]
        london = row_of(screen, "london").split()
        assert london[1:4] == ["this", "machine", "attached"]
        assert london[4] == f"{sample.processes:,}"
        assert london[5] == f"{sample.totals.msgs_in_per_s:,.0f}"


async def test_a_node_that_knows_only_names_still_lists_its_peers_with_unknowns(
    tmp_path: Path,
) -> None:
    def old_node(**args: Any) -> list[str]:
        if args:
            raise CommandError("bad_request", "nodes: unexpected keyword argument 'detail'")
        return ["tokyo"]

    feed = FakeFeed(london_samples(1), answers={"nodes": old_node})
    async with top(feed, tmp_path).run_test(size=(120, 30)) as pilot:
        await drained(pilot, feed)
        screen = await cluster_view(pilot, pilot.app)  # type: ignore[arg-type]
        assert screen.nodes == ["tokyo"]
        assert row_of(screen, "tokyo").split()[1:] == ["?"] * 5


async def test_a_failing_nodes_command_is_shown_as_its_message(tmp_path: Path) -> None:
    feed = FakeFeed(london_samples(1),
                    answers={"nodes": CommandError("not_connected", "not connected to london")})
    async with top(feed, tmp_path).run_test(size=(120, 30)) as pilot:
        app = pilot.app
        await drained(pilot, feed)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ClusterScreen))
        message = app.screen.query_one(".cluster-message")
        await until(pilot, lambda: "not connected to london" in str(message.render()))
        assert message.has_class("-error")


async def test_enter_on_a_peer_row_attaches_to_that_node(tmp_path: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={"nodes": nodes_answer(TOKYO, PARIS)})
    picked: list[str] = []
    async with top(feed, tmp_path, on_attach=picked.append).run_test(size=(120, 30)) as pilot:
        app = pilot.app
        await drained(pilot, feed)
        await cluster_view(pilot, app)  # type: ignore[arg-type]
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: picked == ["tokyo"])
        assert isinstance(app.screen, MainScreen)


# -- the nodes command on a real node ------------------------------------------------


@pytest.fixture
async def linked() -> AsyncIterator[tuple[ClusterNode, ClusterNode]]:
    ca = ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), ("127.0.0.1", 0), ca.issue("london"))
    tokyo = await ClusterNode.bind("tokyo", Runtime(), ("127.0.0.1", 0), ca.issue("tokyo"))
    try:
        await london.connect(tokyo.local_addr())
        yield london, tokyo
    finally:
        await london.close()
        await tokyo.close()


async def test_nodes_with_detail_gives_each_links_address_state_and_round_trip(
    linked: tuple[ClusterNode, ClusterNode],
) -> None:
    london, tokyo = linked
    session = Session(observatory(london))
    [link] = session.handle({"t": "cmd", "cmd": "nodes", "args": {"detail": True}})
    host, port = tokyo.local_addr()
    assert link["node"] == "tokyo"
    assert link["address"] == f"{host}:{port}"
    assert link["state"] == "up"
    assert isinstance(link["rtt"], float) and 0 < link["rtt"] < 1.0


async def test_nodes_without_detail_still_answers_names_for_older_clients(
    linked: tuple[ClusterNode, ClusterNode],
) -> None:
    london, _ = linked
    session = Session(observatory(london))
    assert session.handle({"t": "cmd", "cmd": "nodes", "args": {}}) == ["tokyo"]


async def test_link_stats_of_a_node_that_is_not_connected_is_none(
    linked: tuple[ClusterNode, ClusterNode],
) -> None:
    london, _ = linked
    assert london.link_stats("paris") is None


async def test_the_cluster_view_of_a_live_node_shows_its_peer_and_enter_attaches(
    linked: tuple[ClusterNode, ClusterNode], tmp_path: Path,
) -> None:
    london, tokyo = linked
    server = await serve_observe(london, token="t0ken")
    entry = NodeEntry("london", os.getpid(), london.local_addr(), server.local_addr(),
                      "t0ken", 0.0)
    feed = await connect("london", entry=entry, subscription=Subscription(interval=0.2),
                         reconnect=False)
    picked: list[str] = []
    app = top(feed, tmp_path, on_attach=picked.append)
    async with app.run_test(size=(120, 30)) as pilot:
        await live_until(pilot, lambda: app.model.sample is not None, "a first sample")
        await pilot.press("n")
        await live_until(pilot, lambda: isinstance(app.screen, ClusterScreen)
                         and app.screen.nodes is not None, "the cluster view's nodes")
        screen = app.screen
        assert isinstance(screen, ClusterScreen)
        host, port = tokyo.local_addr()
        tokyo_row = row_of(screen, "tokyo").split()
        assert tokyo_row[1:3] == [f"{host}:{port}", "up"]
        assert tokyo_row[-1] == "ms"
        await pilot.press("down", "enter")
        await live_until(pilot, lambda: picked == ["tokyo"], "the attach to tokyo")


# -- the header ------------------------------------------------------------------


async def test_the_header_separates_the_state_from_the_uptime_on_every_view(
    tmp_path: Path,
) -> None:
    feed = FakeFeed(london_samples(1), answers={"nodes": nodes_answer(TOKYO),
                                                "info": lambda pid: info_of(pid)})
    async with top(feed, tmp_path).run_test(size=(120, 30)) as pilot:
        app = pilot.app
        assert isinstance(app, TopApp)
        await drained(pilot, feed)
        texts = [header_text(app)]
        await cluster_view(pilot, app)
        texts.append(header_text(app))
        await pilot.press("escape", "enter")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen))
        texts.append(header_text(app))
        for text in texts:
            first = text.splitlines()[0]
            assert "connectedup" not in first
            assert first.endswith("connected · up 1h01m"), first


async def test_a_status_message_is_its_own_field_of_the_header(tmp_path: Path) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, tmp_path).run_test(size=(120, 30)) as pilot:
        app = pilot.app
        assert isinstance(app, TopApp)
        await drained(pilot, feed)
        feed.push(FeedStatus("disconnected", "connection lost; retrying in 2 s"))
        await drained(pilot, feed)
        first = header_text(app).splitlines()[0]
        assert ("disconnected (last sample 0s ago): connection lost; retrying in 2 s · up 1h01m"
                in first)


async def test_a_replay_says_replay_with_the_recordings_time_and_position(
    tmp_path: Path,
) -> None:
    feed = ReplayFeed(LONDON)
    async with top(feed, tmp_path).run_test(size=(120, 30)) as pilot:
        app = pilot.app
        assert isinstance(app, TopApp)
        await until(pilot, feed.ended.is_set, "the replay to end")
        await pilot.pause()
        sample = app.model.sample
        assert sample is not None
        first = header_text(app).splitlines()[0]
        assert "▶ REPLAY" in first
        assert "connected" not in first
        when = datetime.fromtimestamp(sample.time, UTC).strftime("%Y-%m-%d %H:%M:%S")
        total = sum(1 for e in read_recording(LONDON) if isinstance(e, Sample))
        assert f"▶ REPLAY · {when} · sample {total:,}/{total:,} · ended" in first, first


async def test_replay_keys_step_jump_hold_and_change_speed_and_send_is_disabled(
    tmp_path: Path,
) -> None:
    samples = [e for e in read_recording(LONDON) if isinstance(e, Sample)]
    total = len(samples)
    feed = ReplayFeed(LONDON)
    async with top(feed, tmp_path).run_test(size=(120, 30)) as pilot:
        app = pilot.app
        assert isinstance(app, TopApp)
        await until(pilot, feed.ended.is_set, "the replay to end")

        async def at(nth: int) -> None:
            await until(pilot, lambda: app.model.sample is not None
                        and app.model.sample.time == samples[nth - 1].time
                        and f"sample {nth}/{total}" in header_text(app), f"sample {nth}")

        await at(total)
        await pilot.press("comma")
        await at(total - 1)
        assert f"replay: sample {total - 1} of {total}, held" in app.main.pane.message
        await pilot.press("comma", "comma", "full_stop")
        await at(total - 2)
        await pilot.press("left_square_bracket")  # a tenth of the way back
        back = total - 2 - round((total - 1) / 10)
        await at(back)
        await pilot.press("right_square_bracket")
        await at(total - 2)
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert feed.speed == 4
        assert "speed 4x" in app.main.pane.message
        await pilot.press("less_than_sign")
        assert feed.speed == 2
        await pilot.press("space")  # plays on from where it was held, to the end
        assert not feed.held
        await at(total)
        app.shell.run("send worker_40 'hi'")
        await until(pilot, lambda: "replay: send is disabled" in app.main.pane.message,
                    "the refusal")
        await pilot.press("k")
        await until(pilot, lambda: "replay: kill is disabled" in app.main.pane.message,
                    "the kill refusal")
