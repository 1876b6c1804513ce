"""rusm top driven with Pilot against a fake feed the test controls."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import OptionList

from rusm.actors.errors import RusmError
from rusm.observe.protocol import SORT_KEYS, CommandError, FeedStatus, Sample
from rusm.tui.app import TopApp, make_app
from rusm.tui.feeds import ReplayFeed, read_recording
from rusm.tui.screens.cluster import ClusterScreen
from rusm.tui.screens.confirm import ConfirmAction, ConfirmKill
from rusm.tui.screens.help import HelpScreen
from rusm.tui.screens.log import LogScreen
from rusm.tui.screens.main import MainScreen
from rusm.tui.screens.process import ProcessScreen
from rusm.tui.screens.trace import TraceScreen
from rusm.tui.widgets.table import COLUMNS, ProcessTable

from .tui_helpers import LONDON, FakeFeed, drained, info_of, london_samples, run_line, until

CLOCK = 1_700_003_600.0
CLOCK_ISO = "2023-11-14T23:13:20+00:00"


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    return tmp_path / "home" / "audit.log"


def top(feed: FakeFeed, audit: Path, **kw: Any) -> TopApp:
    return make_app(feed, audit_path=audit, clock=lambda: CLOCK, **kw)


def table(app: TopApp) -> ProcessTable:
    return app.main.table


def shown_pids(app: TopApp) -> list[str]:
    return table(app).pids


def audit_lines(path: Path) -> list[str]:
    """The audit log's lines; none if it was never written."""
    return path.read_text().splitlines() if path.exists() else []


def ran(feed: FakeFeed) -> list[tuple[str, dict[str, Any]]]:
    """The commands the app ran, less the ``names`` it asks for completion."""
    return [c for c in feed.commands if c[0] != "names"]


def subscribed_more(feed: FakeFeed, before: int) -> Callable[[], bool]:
    return lambda: len(feed.subscribed) > before


def status_line(app: TopApp) -> str:
    return str(app.main.query_one("#status-line").render())


def message(app: TopApp) -> str:
    return app.main.pane.message


async def started(pilot: Pilot[Any], feed: FakeFeed) -> TopApp:
    await drained(pilot, feed)
    app = pilot.app
    assert isinstance(app, TopApp)
    return app


async def test_the_table_shows_the_nodes_rows_in_its_order_and_which_of_how_many(
    audit: Path,
) -> None:
    samples = london_samples(3)
    feed = FakeFeed(samples)
    async with top(feed, audit).run_test(size=(100, 30)) as pilot:
        app = await started(pilot, feed)
        assert shown_pids(app) == [r.pid for r in samples[-1].rows]
        status = str(app.main.query_one("#status-line").render())
        last = samples[-1]
        assert f"rows 1-{len(last.rows)} of {last.matched:,}" in status
        assert "not shown" not in status
        assert "london" in str(app.main.query_one("#header").render())


async def test_rows_are_updated_in_place_and_only_changed_rows_are_redrawn(
    audit: Path,
) -> None:
    first = london_samples(1)[0]
    # The same moment again (the charts do not move), then one counter changes.
    same = replace(first, seq=2, history=None)
    again = replace(first, seq=3, history=None)
    bumped = replace(same, seq=4, rows=(
        replace(first.rows[3], received=first.rows[3].received + 1),
        *first.rows[:3], *first.rows[4:],
    ))
    feed = FakeFeed([first])
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        feed.push(same)
        await drained(pilot, feed)
        # Every row built once, and once more if the first sample's scrollbar
        # changed the width the columns are laid out in.
        built = table(app).rebuilt
        assert built in (len(first.rows), 2 * len(first.rows))
        feed.push(again)
        await drained(pilot, feed)
        assert table(app).rebuilt == built
        feed.push(bumped)
        await drained(pilot, feed)
        assert table(app).rebuilt == built + 1
        assert shown_pids(app) == [r.pid for r in bumped.rows]
        row = bumped.rows[0]
        assert table(app).cell_text(row.pid, "received") == f"{row.received:,}"


async def test_the_selected_pid_stays_selected_when_its_row_moves(audit: Path) -> None:
    samples = london_samples(12)
    feed = FakeFeed(samples[:1])
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        pid = samples[0].rows[5].pid
        assert table(app).select_pid(pid)
        await pilot.pause()
        moved = False
        for sample in samples[1:]:
            feed.push(sample)
            await drained(pilot, feed)
            rows = [r.pid for r in sample.rows]
            if pid in rows:
                moved |= rows.index(pid) != 5
                assert table(app).selected_pid == pid
                assert table(app).cursor_row == rows.index(pid)
        assert moved, "the fixture should move the selected row"


async def test_s_cycles_the_sort_key_on_the_node_and_capital_s_reverses_it(audit: Path) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("s")
        await until(pilot, lambda: len(feed.subscribed) == 1)
        await pilot.press("s")
        await until(pilot, lambda: len(feed.subscribed) == 2)
        await pilot.press("S")
        await until(pilot, lambda: len(feed.subscribed) == 3)
        assert feed.subscribed == [{"sort": "received"}, {"sort": "sent"}, {"reverse": True}]
        await drained(pilot, feed)
        assert "sort sent ▲ reversed" in status_line(app)
        sent = [r.sent for r in app.model.sample.rows] if app.model.sample else []
        assert sent == sorted(sent) and sent
        await pilot.press("S")
        await until(pilot, lambda: feed.subscribed[-1:] == [{"reverse": False}])
        await drained(pilot, feed)
        assert "sort sent ▼" in status_line(app) and "reversed" not in status_line(app)


async def test_s_reaches_every_column_status_and_names_included(audit: Path) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test() as pilot:
        await started(pilot, feed)
        for _ in SORT_KEYS[1:]:
            more = subscribed_more(feed, len(feed.subscribed))
            await pilot.press("s")
            await until(pilot, more)
        keys = ["mailbox", *(c["sort"] for c in feed.subscribed)]
        assert sorted(keys) == sorted(SORT_KEYS)
        assert {c.sort for c in COLUMNS if c.sort} == set(SORT_KEYS)
        assert {c.key for c in COLUMNS if c.sort is None} == {"trend", "waiting"}


def header_x(app: Any, key: str) -> int:
    """A cell inside column ``key``'s header (the table lays its columns out)."""
    x = table(app).column_x(key)
    assert x is not None, f"{key} is not shown"
    return x + 2


async def test_clicking_a_column_header_sorts_by_that_column(audit: Path) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test(size=(160, 30)) as pilot:
        app = await started(pilot, feed)
        await pilot.click(ProcessTable, offset=(header_x(app, "links"), 0))
        await until(pilot, lambda: feed.subscribed == [{"sort": "links"}])


async def test_a_second_click_on_the_sorted_header_reverses_and_status_sorts_too(
    audit: Path,
) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test(size=(160, 30)) as pilot:
        app = await started(pilot, feed)
        await pilot.click(ProcessTable, offset=(header_x(app, "status"), 0))
        await until(pilot, lambda: feed.subscribed == [{"sort": "status"}])
        await drained(pilot, feed)
        await pilot.click(ProcessTable, offset=(header_x(app, "status"), 0))
        await until(pilot, lambda: feed.subscribed[-1:] == [{"reverse": True}])
        await drained(pilot, feed)
        statuses = [r.status for r in app.model.sample.rows] if app.model.sample else []
        assert statuses == sorted(statuses, reverse=True) and len(set(statuses)) == 2
        # Another column: its natural order.
        await pilot.click(ProcessTable, offset=(header_x(app, "links"), 0))
        await until(pilot, lambda: feed.subscribed[-1:] == [{"sort": "links", "reverse": False}])


async def test_slash_filters_on_the_node_and_the_table_shows_the_matches(audit: Path) -> None:
    feed = FakeFeed(london_samples(2))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("slash", *"cons", "enter")
        await until(pilot, lambda: feed.subscribed[-1:] == [{"filter": "cons"}])
        await drained(pilot, feed)
        assert shown_pids(app) == ["<london.3>"]
        assert "filter 'cons': 1 match" in str(app.main.query_one("#status-line").render())
        await pilot.press("slash")
        assert app.main.pane.input.value == "filter cons"


async def test_d_toggles_detail_through_the_feed_and_hides_the_table(audit: Path) -> None:
    feed = FakeFeed(london_samples(2))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("d")
        await until(pilot, lambda: feed.subscribed == [{"detail": False}])
        await drained(pilot, feed)
        assert app.main.has_class("-detail-off")
        assert not table(app).display or table(app).row_count == 0
        await pilot.press("d")
        await until(pilot, lambda: feed.subscribed[-1] == {"detail": True})
        await drained(pilot, feed)
        assert not app.main.has_class("-detail-off")
        assert table(app).row_count > 0


async def test_space_pauses_the_display_while_the_feed_keeps_flowing(audit: Path) -> None:
    first, *rest = london_samples(6)
    feed = FakeFeed([first])
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("space")
        feed.push(*rest)
        await drained(pilot, feed)
        assert app.model.samples == 6
        assert shown_pids(app) == [r.pid for r in first.rows]
        assert "PAUSED" in str(app.main.query_one("#status-line").render())
        await pilot.press("space")
        await pilot.pause()
        assert shown_pids(app) == [r.pid for r in rest[-1].rows]


async def test_a_disconnected_feed_is_shown_and_the_next_samples_fill_the_screen(
    audit: Path,
) -> None:
    first, second = london_samples(2)
    now = [CLOCK]
    feed = FakeFeed([first, FeedStatus("disconnected", "connection lost; retrying in 2 s")])
    async with make_app(feed, audit_path=audit, clock=lambda: now[0]).run_test() as pilot:
        app = await started(pilot, feed)
        header = str(app.main.query_one("#header").render())
        assert "disconnected (last sample 0s ago): connection lost; retrying in 2 s" in header
        assert app.main.has_class("-down")  # the table and charts are dimmed
        now[0] += 75  # the age goes on without a sample: the app's tick redraws it
        for _ in range(100):  # the tick comes once a second; 5 s at most
            if "last sample 1m15s ago" in str(app.main.query_one("#header").render()):
                break
            await pilot.pause(0.05)
        assert "last sample 1m15s ago" in str(app.main.query_one("#header").render())
        assert "STALE: the last sample, 1m15s old" in str(
            app.main.query_one("#status-line").render())
        feed.push(FeedStatus("connecting", "reconnecting (attempt 1)"))
        await drained(pilot, feed)
        assert app.main.has_class("-down")  # reconnecting is not live either
        assert "connecting (last sample 1m15s ago)" in str(app.main.query_one("#header").render())
        feed.push(FeedStatus("connected"), second)
        await drained(pilot, feed)
        assert "● connected" in str(app.main.query_one("#header").render())
        assert not app.main.has_class("-down")
        assert shown_pids(app) == [r.pid for r in second.rows]


async def test_a_feed_that_fails_is_shown_as_closed_with_its_error(audit: Path) -> None:
    class Broken(FakeFeed):
        async def __aiter__(self) -> Any:
            yield london_samples(1)[0]
            raise OSError("socket exploded")

    feed = Broken()
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await until(pilot, lambda: app.model.status.state == "closed")
        await pilot.pause()
        assert "the feed failed: OSError: socket exploded" in str(
            app.main.query_one("#header").render()
        )


async def test_a_node_error_is_shown_as_its_message_and_audited(audit: Path) -> None:
    error = CommandError("no_such_process", "no process is registered as 'nobody' on london")
    feed = FakeFeed(london_samples(1), answers={"send": error})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "send nobody 'hi'")
        await until(pilot, lambda: bool(ran(feed)) and bool(audit_lines(audit)))
        assert ran(feed) == [("send", {"dest": "nobody", "msg": "hi"})]
        assert message(app) == f"send failed: {error.message}"
        assert "Traceback" not in message(app)
        assert audit_lines(audit) == [
            f"{CLOCK_ISO}\tlondon\tsend nobody 'hi'\terror: {error.message}"
        ]


async def test_any_other_exception_from_the_feed_is_one_line(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={"spawn": ConnectionResetError("peer reset")})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "spawn worker 1 'x'")
        await until(pilot, lambda: "failed" in message(app))
        assert ran(feed) == [("spawn", {"factory": "worker", "args": [1, "x"]})]
        assert message(app) == "spawn failed: ConnectionResetError: peer reset"


async def test_a_term_that_is_not_a_literal_is_refused_inline_and_nothing_is_sent(
    audit: Path,
) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "send worker __import__('os').system('true')")
        await until(pilot, lambda: "cannot read" in message(app))
        assert ran(feed) == []
        assert audit_lines(audit) == []
        assert app.main.pane.query_one("#message").has_class("-error")


async def test_k_asks_first_and_kills_the_selected_process_on_yes(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={"kill": "<london.3>"})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        assert table(app).selected_pid == "<london.3>"
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmKill))
        assert ran(feed) == []
        await pilot.press("y")
        await until(pilot, lambda: bool(audit_lines(audit)))
        assert ran(feed) == [("kill", {"pid": "<london.3>"})]
        assert audit_lines(audit) == [f"{CLOCK_ISO}\tlondon\tkill <london.3>\tok <london.3>"]
        assert message(app) == "kill ok: <london.3>"


async def test_a_kill_answered_no_kills_nothing_and_is_not_audited(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={"kill": "<london.3>"})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "kill <london.3> shutdown")
        await until(pilot, lambda: isinstance(app.screen, ConfirmKill))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert ran(feed) == []
        assert audit_lines(audit) == []
        assert message(app) == "kill cancelled: <london.3> left running"


async def test_kill_with_a_reason_from_the_command_line_passes_the_reason(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={"kill": "<london.7>"})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "kill <london.7> shutdown")
        await until(pilot, lambda: isinstance(app.screen, ConfirmKill))
        await pilot.click("#yes")
        await until(pilot, lambda: bool(ran(feed)))
        assert ran(feed) == [("kill", {"pid": "<london.7>", "reason": "shutdown"})]


async def test_every_mutating_command_is_one_audit_line_and_the_others_none(
    audit: Path,
) -> None:
    feed = FakeFeed(london_samples(1), answers={
        "send": "<london.3>", "spawn": CommandError("unknown_factory", "no factory 'nope'"),
        "info": lambda pid: info_of(pid),
    })
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "send consumer {'job': (1, 2)}")
        await until(pilot, lambda: "send ok" in message(app))
        await run_line(pilot, "spawn nope")
        await until(pilot, lambda: "spawn failed" in message(app))
        await run_line(pilot, "sort links")
        await until(pilot, lambda: bool(feed.subscribed))
        await run_line(pilot, "detail on")
        await until(pilot, lambda: len(feed.subscribed) == 2)
        assert audit_lines(audit) == [
            f"{CLOCK_ISO}\tlondon\tsend consumer {{'job': (1, 2)}}\tok <london.3>",
            f"{CLOCK_ISO}\tlondon\tspawn nope\terror: no factory 'nope'",
        ]
        assert ran(feed)[0] == ("send", {"dest": "consumer", "msg": {"job": (1, 2)}})


async def test_the_audit_log_defaults_to_rusm_home(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("RUSM_HOME", str(tmp_path / "rusm"))
    feed = FakeFeed(london_samples(1), answers={"send": "<london.3>"})
    async with make_app(feed, clock=lambda: CLOCK).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "send consumer 1")
        await until(pilot, lambda: "send ok" in message(app))
    assert (tmp_path / "rusm" / "audit.log").read_text().endswith("\tok <london.3>\n")


async def test_enter_opens_the_process_view_and_a_link_can_be_followed(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={"info": lambda pid: info_of(pid)})
    async with top(feed, audit).run_test(size=(100, 30)) as pilot:
        app = await started(pilot, feed)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen)
                    and app.screen.info is not None)
        view = app.screen
        assert isinstance(view, ProcessScreen) and view.pid == "<london.3>"
        facts = str(view.query_one(".facts").render())
        for text in ("consumer, jobs", "12,345", "2023-11-14T22:23:20+00:00"):
            assert text in facts
        options = view.query_one(OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert ids == [None, "links:<london.1>", None, "monitors:<london.4>", None,
                       "monitored_by:<london.2>", "monitored_by:<london.5>"]
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen)
                    and app.screen.pid == "<london.1>" and app.screen.info is not None)
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, MainScreen)


async def test_info_for_a_process_that_is_gone_says_so_in_the_view(audit: Path) -> None:
    gone = CommandError("no_such_process", "no process <london.99> on london")
    feed = FakeFeed(london_samples(1), answers={"info": gone})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "info <london.99>")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen))
        msg = app.screen.query_one(".process-message")
        await until(pilot, lambda: str(msg.render()) == gone.message)


async def test_clicking_a_selected_row_opens_its_process(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={"info": lambda pid: info_of(pid)})
    async with top(feed, audit).run_test(size=(100, 30)) as pilot:
        app = await started(pilot, feed)
        second = london_samples(1)[0].rows[1].pid
        await pilot.click(ProcessTable, offset=(3, 2))
        assert table(app).selected_pid == second
        await pilot.click(ProcessTable, offset=(3, 2))
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen))
        assert app.screen.pid == second


async def test_the_cluster_view_lists_nodes_and_picking_one_calls_on_attach(
    audit: Path,
) -> None:
    feed = FakeFeed(london_samples(1), answers={"nodes": ["tokyo", "paris"]})
    picked: list[str] = []
    async with top(feed, audit, on_attach=picked.append).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ClusterScreen)
                    and app.screen.nodes is not None)
        assert app.screen.nodes == ["paris", "tokyo"]
        await pilot.press("down", "enter")
        await until(pilot, lambda: picked == ["paris"])
        assert isinstance(app.screen, MainScreen)


async def test_without_on_attach_picking_a_node_says_how_to_attach(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={"nodes": ["tokyo"]})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "node tokyo")
        await until(pilot, lambda: message(app) == "to watch tokyo, run: rusm top tokyo")


async def test_attach_feed_replaces_the_feed_and_closes_the_old_one(audit: Path) -> None:
    old = FakeFeed(london_samples(1))
    new = FakeFeed([s.__class__(**{**_fields(s), "node": "tokyo"}) for s in london_samples(1)],
                   target="tokyo")

    async with top(old, audit).run_test() as pilot:
        app = await started(pilot, old)
        app.on_attach = lambda node: app.attach_feed(new)
        await run_line(pilot, "node tokyo")
        await until(pilot, lambda: app.feed is new and old.closed)
        await drained(pilot, new)
        assert "tokyo" in str(app.main.query_one("#header").render())


def _fields(sample: Sample) -> dict[str, Any]:
    return {f: getattr(sample, f) for f in sample.__dataclass_fields__}


async def test_the_command_line_has_history_and_completion(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={
        "names": {"local": ["consumer"], "global": ["jobs"], "factories": ["worker"]},
        "info": lambda pid: info_of(pid),
    })
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "sort links")
        await run_line(pilot, "detail on")
        assert app.main.pane.is_open, "the command line stays open for the next command"
        await pilot.press("up", "up")
        field = app.main.pane.input
        assert field.value == "sort links"
        await pilot.press("down")
        assert field.value == "detail on"
        field.value = ""
        await pilot.press(*"ki", "tab")
        assert field.value == "kill"
        await until(pilot, lambda: "worker" in app.completions.factories)
        field.value = "spawn wo"
        await until(pilot, lambda: field._suggestion == "spawn worker")
        await pilot.press("tab")
        assert field.value == "spawn worker"
        field.value = "info <london.3"
        await until(pilot, lambda: field._suggestion.startswith("info <london.3"))
        await pilot.press("escape")
        assert not app.main.pane.is_open


async def test_help_shows_every_key_of_every_screen(audit: Path) -> None:
    from rusm.tui.screens.help import KEYS

    listed = " ".join(key for _, keys in KEYS for key, _ in keys)
    for screen in (MainScreen, ProcessScreen, ClusterScreen, LogScreen, TraceScreen):
        for binding in screen.BINDINGS:
            shown = binding.key_display or binding.key  # type: ignore[union-attr]
            assert shown.replace("escape", "esc") in listed, (screen.__name__, shown)
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_keys_typed_in_the_command_line_are_text_not_actions(audit: Path) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("colon", *"dksnq", "space", "slash")
        assert app.main.pane.input.value == "dksnq /"
        assert feed.subscribed == [] and app.is_running and not app.paused
        assert isinstance(app.screen, MainScreen)


async def test_make_app_records_what_the_feed_yields(audit: Path, tmp_path: Path) -> None:
    samples = london_samples(3)
    feed = FakeFeed([*samples, FeedStatus("disconnected", "gone")])
    async with top(feed, audit, record_path=tmp_path / "top.rec").run_test() as pilot:
        app = await started(pilot, feed)
        assert app.model.status.state == "disconnected"
    assert list(read_recording(tmp_path / "top.rec")) == [
        *samples, FeedStatus("disconnected", "gone"),
    ]


async def test_an_attach_that_fails_is_shown_as_its_message(audit: Path) -> None:
    def refuse(node: str) -> None:
        raise RusmError(f"{node} is not a node of this machine")

    feed = FakeFeed(london_samples(1))
    async with top(feed, audit, on_attach=refuse).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "node tokyo")
        await until(pilot, lambda: message(app)
                    == "cannot attach to tokyo: tokyo is not a node of this machine")


async def test_q_quits_and_closes_the_feed(audit: Path) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test() as pilot:
        await started(pilot, feed)
        await pilot.press("q")
        await pilot.pause()
        assert not pilot.app.is_running
    assert feed.closed


async def test_quitting_as_the_command_line_opens_leaves_no_coroutine_unawaited(
    audit: Path,
) -> None:
    feed = FakeFeed(london_samples(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with top(feed, audit).run_test() as pilot:
            app = await started(pilot, feed)
            app.action_command()  # asks the node for names in a worker...
            app.exit()  # ...that never starts
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


async def test_a_pasted_colon_command_lands_in_the_command_line(audit: Path) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        app.main.table.post_message(events.Paste(":q"))
        await until(pilot, lambda: app.main.pane.is_open)
        assert app.main.pane.input.value == "q" and app.is_running


async def test_info_and_kill_take_a_registered_name(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={
        "info": lambda pid: info_of(pid), "kill": "<london.3>",
    })
    async with top(feed, audit).run_test(size=(100, 30)) as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "info consumer")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen)
                    and app.screen.info is not None)
        assert isinstance(app.screen, ProcessScreen) and app.screen.pid == "<london.3>"
        await pilot.press("escape")
        await run_line(pilot, "kill jobs")  # consumer's second name
        await until(pilot, lambda: isinstance(app.screen, ConfirmKill))
        assert isinstance(app.screen, ConfirmKill) and app.screen.pid == "<london.3>"
        await pilot.press("y")
        await until(pilot, lambda: ("kill", {"pid": "<london.3>"}) in ran(feed))


async def test_a_name_nobody_registered_is_said_at_once(audit: Path) -> None:
    feed = FakeFeed(london_samples(1), answers={"info": lambda pid: info_of(pid)})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "info nobody")
        await until(pilot, lambda: "nobody" in message(app))
        assert message(app) == "no process is registered as 'nobody' on london"
        assert isinstance(app.screen, MainScreen) and ran(feed) == []


async def test_kill_of_a_pid_that_does_not_exist_says_so_without_asking(audit: Path) -> None:
    gone = CommandError("no_such_process", "no process <london.999> on london")
    feed = FakeFeed(london_samples(1), answers={"info": gone})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "kill <london.999>")
        await until(pilot, lambda: "london.999" in message(app))
        assert message(app) == "kill: no process <london.999> on london"
        assert isinstance(app.screen, MainScreen)
        assert ran(feed) == [("info", {"pid": "<london.999>"})]
        assert audit_lines(audit) == []


async def test_the_filter_applies_as_it_is_typed_and_escape_clears_it(audit: Path) -> None:
    feed = FakeFeed(london_samples(2))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("slash", *"cons")  # no enter
        await until(pilot, lambda: app.view.filter == "cons")
        await drained(pilot, feed)
        assert shown_pids(app) == ["<london.3>"]
        assert app.main.pane.is_open
        await pilot.press("escape")
        await until(pilot, lambda: app.view.filter == "")
        await drained(pilot, feed)
        assert not app.main.pane.is_open
        assert len(shown_pids(app)) > 1


async def test_a_term_no_node_could_be_sent_is_refused_in_words_and_nothing_is_sent(
    audit: Path,
) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "send tally {1, 2}")
        await until(pilot, lambda: "set" in message(app))
        assert message(app) == "a set cannot be sent; use a list or a tuple"
        await run_line(pilot, "send slow hello")
        await until(pilot, lambda: "hello" in message(app))
        assert message(app).endswith("hello is not a value; a string needs quotes: 'hello'")
        assert ran(feed) == [] and audit_lines(audit) == []


def every_row(count: int = 60) -> Sample:
    """One sample carrying every one of ``count`` processes (the fake feed pages it)."""
    sample = london_samples(1, limit=count)[0]
    return replace(sample, matched=len(sample.rows), omitted=0)


async def test_moving_past_the_last_row_fetches_the_next_page_from_the_node(
    audit: Path,
) -> None:
    sample = every_row()
    every = [r.pid for r in sample.rows]
    feed = FakeFeed([sample])  # 40 rows a page
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        assert shown_pids(app) == every[:40]
        await pilot.press(*["down"] * 39)
        assert table(app).selected_pid == every[39] and not feed.subscribed
        await pilot.press("down")  # past the page: the page around row 41
        await until(pilot, lambda: feed.subscribed == [{"offset": 20}])
        await until(pilot, lambda: table(app).selected_pid == every[40], "row 41")
        assert shown_pids(app) == every[20:60]
        assert "rows 21-60 of 60" in status_line(app)
        await pilot.press("home")  # the first of all, not of the page
        await until(pilot, lambda: feed.subscribed[-1:] == [{"offset": 0}])
        await until(pilot, lambda: table(app).selected_pid == every[0], "the first")
        await pilot.press("end")  # the last of all
        await until(pilot, lambda: feed.subscribed[-1:] == [{"offset": 20}])
        await until(pilot, lambda: table(app).selected_pid == every[59], "the very last")


async def test_limit_n_in_the_command_line_sets_the_rows_per_page(audit: Path) -> None:
    feed = FakeFeed([every_row()])
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "limit 10")
        await until(pilot, lambda: feed.subscribed == [{"limit": 10}])
        await drained(pilot, feed)
        assert len(shown_pids(app)) == 10 and "rows 1-10 of 60" in status_line(app)
        await run_line(pilot, "limit lots")
        assert "usage: limit N" in message(app) and feed.subscribed == [{"limit": 10}]


async def test_the_selected_process_that_exits_stays_selected_and_marked_until_you_move(
    audit: Path,
) -> None:
    first = london_samples(1)[0]
    pid = first.rows[5].pid
    gone = replace(first, seq=2, history=None,
                   rows=first.rows[:5] + first.rows[6:], exited=(pid,))
    feed = FakeFeed([first])
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press(*["down"] * 5)
        assert table(app).selected_pid == pid
        feed.push(gone)
        await drained(pilot, feed)
        assert table(app).selected_pid == pid and table(app).cursor_row == 5
        assert table(app).cell_text(pid, "status") == "exited"
        assert f"{pid} exited" in status_line(app)
        await pilot.press("k")  # aims at nothing else, and there is nothing to kill
        assert not isinstance(app.screen, ConfirmKill)
        assert "has exited" in message(app) and not ran(feed)
        feed.push(replace(gone, seq=3))  # it stays while you do not move
        await drained(pilot, feed)
        assert table(app).selected_pid == pid
        await pilot.press("down")
        assert table(app).selected_pid == first.rows[6].pid
        feed.push(replace(gone, seq=4, exited=()))
        await drained(pilot, feed)
        assert pid not in shown_pids(app)
        assert table(app).selected_pid == first.rows[6].pid


async def test_a_selected_row_that_leaves_the_page_stays_put_and_is_followed_back(
    audit: Path,
) -> None:
    first = london_samples(1)[0]
    pid = first.rows[2].pid
    left = replace(first, seq=2, history=None, rows=first.rows[:2] + first.rows[3:])
    back = replace(first, seq=3, history=None, rows=(first.rows[2], *left.rows))
    feed = FakeFeed([first])
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("down", "down")
        feed.push(left)
        await drained(pilot, feed)
        assert table(app).selected_pid == pid and table(app).cursor_row == 2
        assert table(app).cell_text(pid, "status") == "moved"
        assert table(app).row_of(pid) is None  # kept, not shown as alive
        feed.push(back)
        await drained(pilot, feed)
        assert table(app).selected_pid == pid and table(app).cursor_row == 0
        assert table(app).cell_text(pid, "status") == first.rows[2].status


async def test_a_bang_filter_shows_the_rows_that_do_not_match(audit: Path) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("slash", *"!worker", "enter")
        await until(pilot, lambda: feed.subscribed[-1:] == [{"filter": "!worker"}])
        await drained(pilot, feed)
        labels = [table(app).cell_text(p, "label") for p in shown_pids(app)]
        assert labels and "worker" not in labels and "fetcher" in labels


async def test_moving_past_the_rows_a_replay_recorded_stops_at_its_last_row(
    audit: Path,
) -> None:
    feed = ReplayFeed(LONDON)  # 40 rows recorded of some 1,200 processes
    async with top(feed, audit).run_test() as pilot:  # type: ignore[arg-type]
        app = pilot.app
        assert isinstance(app, TopApp)
        await until(pilot, lambda: feed.ended.is_set() and table(app).row_count == 40)
        await pilot.press("end")  # to the last row recorded
        await until(pilot, lambda: table(app).cursor_row == 39, "the last row recorded")
        assert table(app).row_count == 40
        await pilot.press("up")
        assert table(app).cursor_row == 38  # moves on from there: not stuck


async def test_left_and_right_scroll_whole_columns_and_pid_stays_first(audit: Path) -> None:
    """Issue 11 §2.1: at 80 columns some columns are dropped; right brings
    them into view a column at a time with PID still first, never cut; left
    goes back to the layout by priority."""
    feed = FakeFeed(london_samples())
    async with top(feed, audit).run_test(size=(80, 24)) as pilot:
        app = await started(pilot, feed)
        t = table(app)
        first = [c.key for c, _ in t.columns]
        hidden = [c.key for c in COLUMNS if c.key not in first]
        assert hidden, first  # 80 columns cannot hold them all
        seen: set[str] = set(first)
        for _ in range(len(COLUMNS)):
            await pilot.press("right")
            keys = [c.key for c, _ in t.columns]
            assert keys[0] == "pid"
            seen |= set(keys)
            line = t.render_line(1).text
            assert line.split()[0] == t.pids[0]  # the first row still starts with its pid
        assert set(hidden) <= seen
        assert keys[-1] == COLUMNS[-1].key  # stops once the last column shows
        assert "PID «" in t.render_line(0).text
        assert sum(w + 2 for _, w in t.columns) <= t.scrollable_content_region.width
        for _ in range(len(COLUMNS)):
            await pilot.press("left")
        assert [c.key for c, _ in t.columns] == first
        assert "«" not in t.render_line(0).text


async def test_reload_and_purge_ask_first_then_run_on_the_node_and_are_audited(
    audit: Path,
) -> None:
    report = {"results": [{"node": "london", "ok": True, "upgraded": [], "failed": [],
                           "old_code": ["<london.5>"], "rebound": []}]}
    feed = FakeFeed(london_samples(1), answers={"reload": report, "purge": ["<london.5>"]})
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "reload hotmod")
        await until(pilot, lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        assert ran(feed) == [] and audit_lines(audit) == []
        assert message(app) == "reload cancelled: nothing was done"
        await run_line(pilot, "reload hotmod --all-nodes")
        await until(pilot, lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("y")
        await until(pilot, lambda: bool(audit_lines(audit)))
        assert ran(feed) == [("reload", {"module": "hotmod", "all_nodes": True})]
        await run_line(pilot, "purge hotmod")
        await until(pilot, lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("y")
        await until(pilot, lambda: len(audit_lines(audit)) == 2)
        assert ran(feed)[-1] == ("purge", {"module": "hotmod"})
        assert audit_lines(audit)[1].startswith(f"{CLOCK_ISO}\tlondon\tpurge hotmod\tok")


async def test_reload_is_refused_read_only_and_in_a_replay(audit: Path) -> None:
    feed = FakeFeed(london_samples(1))
    async with top(feed, audit, readonly=True).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "reload hotmod")
        assert "read-only: reload is disabled" in message(app)
        assert ran(feed) == []
