"""rusm top's event log and trace views, driven with Pilot against a fake feed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, RichLog

from rusm.observe.protocol import CommandError
from rusm.tui.app import TopApp, make_app
from rusm.tui.feeds import ReplayFeed
from rusm.tui.screens.log import LogScreen, log_entry
from rusm.tui.screens.main import MainScreen
from rusm.tui.screens.process import ProcessScreen
from rusm.tui.screens.trace import TraceScreen, trace_line

from .tui_helpers import (
    CRASH,
    LONDON,
    Answer,
    FakeFeed,
    NodeLog,
    NodeTrace,
    drained,
    info_of,
    london_samples,
    node_events,
    run_line,
    trace_events,
    until,
)

CLOCK = 1_700_003_600.0


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def top(feed: FakeFeed | ReplayFeed, audit: Path) -> TopApp:
    return make_app(feed, audit_path=audit, clock=lambda: CLOCK)


def fake(**answers: Answer) -> FakeFeed:
    return FakeFeed(london_samples(1), answers=answers)


async def started(pilot: Pilot[Any], feed: FakeFeed) -> TopApp:
    await drained(pilot, feed)
    app = pilot.app
    assert isinstance(app, TopApp)
    return app


def sent(feed: FakeFeed, cmd: str) -> list[dict[str, Any]]:
    return [args for c, args in feed.commands if c == cmd]


async def log_open(pilot: Pilot[Any], polls: int = 1) -> LogScreen:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.polls >= polls,
                "the log view to show the node's events")
    assert isinstance(app.screen, LogScreen)
    return app.screen


async def trace_open(pilot: Pilot[Any]) -> TraceScreen:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, TraceScreen)
                and app.screen.started is not None, "the trace to start")
    assert isinstance(app.screen, TraceScreen)
    return app.screen


def status(screen: TraceScreen) -> str:
    return str(screen.query_one(".trace-status").render())


def title(screen: TraceScreen) -> str:
    return str(screen.query_one(".title").render())


# -- lines --------------------------------------------------------------------------


def test_a_log_line_has_the_time_kind_pid_label_reason_and_the_kinds_facts() -> None:
    events = node_events()
    lines = [log_entry(e).line for e in events]
    assert lines[0] == "23:13:21.000  nodeup        -              -            paris"
    assert lines[1] == "23:13:21.125  exit          <london.7>     worker       normal"
    assert lines[3].endswith("ZeroDivisionError('division by zero')  child parser restart #1")
    assert lines[5].endswith("connection lost  tokyo")
    assert lines[6].endswith("'jobs' kept by <paris.4>  name 'jobs', winner <paris.4>")
    styles = [log_entry(e).text.style for e in events]
    assert styles == ["green", "", "red", "yellow", "bold red", "red", ""]
    crash = log_entry(events[2]).text.plain.splitlines()
    assert crash[1:] == ["    " + row for row in CRASH.splitlines()]


def test_a_trace_line_has_the_time_direction_peer_and_term_in_two_colours() -> None:
    first, second = (trace_line(e) for e in trace_events()[:2])
    assert first.plain == "23:13:21.000  in   <london.2>     {'job': 1}"
    assert second.plain == "23:13:21.250  out  <london.5>     ('ok', 1)"
    colour = {t.plain[s.start:s.end].split()[0]: s.style for t in (first, second)
              for s in t.spans}
    assert colour["in"] != colour["out"]


# -- the log view ---------------------------------------------------------------------


async def test_colon_log_opens_the_log_with_the_nodes_events(audit: Path) -> None:
    feed = fake(log=NodeLog(node_events()))
    async with top(feed, audit).run_test(size=(160, 30)) as pilot:  # no line wraps
        await started(pilot, feed)
        await run_line(pilot, "log")
        screen = await log_open(pilot)
        assert screen.shown == [log_entry(e).line for e in node_events()]
        assert sent(feed, "log")[0] == {"since": 0, "limit": 200}
        view = screen.query_one(RichLog)
        await until(pilot, lambda: len(view.lines) == 7 + len(CRASH.splitlines()))
        written = [strip.text.rstrip() for strip in view.lines]
        assert written[3] == "    Traceback (most recent call last):"
        assert "7 events" in str(screen.query_one(".log-message").render())
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, MainScreen)


async def test_the_log_follows_asking_only_for_the_events_after_the_last(audit: Path) -> None:
    events = node_events()
    node = NodeLog(events[:3])
    feed = fake(log=node)
    async with top(feed, audit).run_test() as pilot:
        await started(pilot, feed)
        await pilot.press("L")
        screen = await log_open(pilot)
        assert len(screen.shown) == 3
        node.events += events[3:5]
        screen.poll()
        await until(pilot, lambda: len(screen.entries) == 5, "the newer events")
        assert screen.shown == [log_entry(e).line for e in events[:5]]
        assert {"since": 3, "limit": 200} in sent(feed, "log")
        assert screen.next == 5


async def test_typing_in_the_log_filters_the_lines_shown(audit: Path) -> None:
    feed = fake(log=NodeLog(node_events()))
    async with top(feed, audit).run_test(size=(120, 30)) as pilot:
        await started(pilot, feed)
        await pilot.press("L")
        screen = await log_open(pilot)
        await pilot.press(*"PARSER")
        assert screen.query_one(Input).value == "PARSER"
        await until(pilot, lambda: screen.filter == "PARSER")
        assert len(screen.shown) == 2 and all("parser" in line for line in screen.shown)
        screen.query_one(Input).value = "tokyo"  # as if retyped (fewer key presses)
        await until(pilot, lambda: len(screen.shown) == 1)
        view = screen.query_one(RichLog)
        await until(pilot, lambda: len(view.lines) == 1)
        assert "nodedown" in view.lines[0].text
        assert "1 with 'tokyo'" in str(screen.query_one(".log-message").render())


async def test_log_kind_opens_the_log_filtered_on_that_kind(audit: Path) -> None:
    feed = fake(log=NodeLog(node_events()))
    async with top(feed, audit).run_test() as pilot:
        await started(pilot, feed)
        await run_line(pilot, "log restart")
        screen = await log_open(pilot)
        assert screen.query_one(Input).value == "restart"
        assert [line.split()[1] for line in screen.shown] == ["restart", "max_restarts"]
        assert len(screen.entries) == 7  # all kept: clearing the filter shows them


async def test_a_node_error_is_shown_in_the_log_and_not_raised(audit: Path) -> None:
    feed = fake(log=CommandError("bad_request", "unknown command 'log'"))
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await pilot.press("L")
        await until(pilot, lambda: isinstance(app.screen, LogScreen))
        message = app.screen.query_one(".log-message")
        await until(pilot, lambda: str(message.render()) == "unknown command 'log'")
        assert message.has_class("-error") and app.is_running


async def test_log_and_trace_are_refused_in_a_replay(audit: Path) -> None:
    feed = ReplayFeed(LONDON)
    async with top(feed, audit).run_test() as pilot:
        app = pilot.app
        assert isinstance(app, TopApp)
        await until(pilot, feed.ended.is_set, "the replay to end")
        await pilot.press("L")
        assert "replay: log asks a live node" in app.main.pane.message
        await run_line(pilot, "trace consumer")
        await until(pilot, lambda: "replay: trace asks a live node" in app.main.pane.message)
        assert isinstance(app.screen, MainScreen)


# -- the trace view -----------------------------------------------------------------------


async def test_trace_of_a_name_resolves_it_and_shows_each_message_until_it_stops(
    audit: Path,
) -> None:
    events = trace_events("<london.99>")
    node = NodeTrace("<london.99>", events[:2])
    feed = fake(names={"local": ["worker"], "global": [], "factories": []},
                info=lambda pid: {"pid": "<london.99>"} if pid == "worker" else info_of(pid),
                **node.answers())
    async with top(feed, audit).run_test(size=(100, 30)) as pilot:
        app = await started(pilot, feed)
        await pilot.press("colon")
        await until(pilot, lambda: "worker" in app.completions.names, "the node's names")
        await run_line(pilot, "trace worker 5 2")
        screen = await trace_open(pilot)
        assert sent(feed, "trace") == [{"pid": "<london.99>", "count": 5, "seconds": 2.0}]
        await until(pilot, lambda: len(screen.lines) == 2)
        assert screen.lines == [trace_line(e).plain for e in events[:2]]
        assert status(screen) == "tracing…"
        assert title(screen) == " trace <london.99> — 2 messages, up to 5 or 2 s"
        node.events += events[2:]
        node.stopped = "count"
        screen.poll()
        await until(pilot, lambda: screen.stopped is not None, "the trace to stop")
        assert screen.lines == [trace_line(e).plain for e in events]
        assert {"trace": 7, "since": 2} in sent(feed, "trace_read")
        assert status(screen) == "stopped: count"
        assert "4 messages" in title(screen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await pilot.pause()
        assert sent(feed, "untrace") == []  # it had stopped by itself


async def test_escape_stops_a_running_trace(audit: Path) -> None:
    node = NodeTrace("<london.3>", trace_events())
    feed = fake(**node.answers())
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "trace <london.3>")
        screen = await trace_open(pilot)
        assert "consumer" in title(screen)  # its row's label
        await until(pilot, lambda: len(screen.lines) == 4)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await until(pilot, lambda: sent(feed, "untrace") == [{"trace": 7}], "the untrace")


async def test_closing_the_app_stops_a_running_trace(audit: Path) -> None:
    node = NodeTrace("<london.3>")
    feed = fake(**node.answers())
    async with top(feed, audit).run_test() as pilot:
        await started(pilot, feed)
        await run_line(pilot, "trace <london.3> 10 60")
        await trace_open(pilot)
        assert sent(feed, "untrace") == []
    assert sent(feed, "untrace") == [{"trace": 7}]
    assert feed.closed


async def test_trace_of_a_name_nobody_registered_says_so_and_opens_nothing(
    audit: Path,
) -> None:
    feed = fake(**NodeTrace("<london.3>").answers())
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "trace nobody")
        await until(pilot, lambda: "nobody" in app.main.pane.message)
        assert app.main.pane.message == "no process is registered as 'nobody' on london"
        assert isinstance(app.screen, MainScreen) and sent(feed, "trace") == []


async def test_a_node_refusing_the_trace_is_shown_not_raised(audit: Path) -> None:
    gone = CommandError("no_such_process", "no process <london.99> on london")
    feed = fake(trace=gone)
    async with top(feed, audit).run_test() as pilot:
        app = await started(pilot, feed)
        await run_line(pilot, "trace <london.99>")
        await until(pilot, lambda: isinstance(app.screen, TraceScreen))
        screen = app.screen
        assert isinstance(screen, TraceScreen)
        expected = "cannot trace <london.99>: no process <london.99> on london"
        await until(pilot, lambda: status(screen) == expected)
        assert screen.query_one(".trace-status").has_class("-error") and app.is_running
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen) and sent(feed, "untrace") == []


async def test_a_trace_the_node_no_longer_knows_stops_with_its_message(audit: Path) -> None:
    feed = fake(trace=NodeTrace("<london.3>").start,
                trace_read=CommandError("bad_request", "no trace 7 in this session"))
    async with top(feed, audit).run_test() as pilot:
        await started(pilot, feed)
        await run_line(pilot, "trace <london.3>")
        screen = await trace_open(pilot)
        await until(pilot, lambda: screen.stopped is not None)
        assert status(screen) == "stopped: no trace 7 in this session"


async def test_t_in_the_process_view_traces_that_process(audit: Path) -> None:
    node = NodeTrace("<london.3>", trace_events())
    feed = fake(info=lambda pid: info_of(pid), **node.answers())
    async with top(feed, audit).run_test(size=(100, 30)) as pilot:
        app = await started(pilot, feed)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen)
                    and app.screen.info is not None)
        await pilot.press("t")
        screen = await trace_open(pilot)
        assert sent(feed, "trace") == [{"pid": "<london.3>", "count": 100, "seconds": 10.0}]
        assert title(screen).startswith(" trace <london.3> consumer")
        await pilot.press("escape")
        assert isinstance(app.screen, ProcessScreen)
