"""rusm top's supervision tree view (``T``, ``:tree``), its restart, terminate
and kill, the pane's ``restart`` and ``terminate``, and labels in the process
view, driven with Pilot against a fake feed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList

from rusm.observe.protocol import MUTATING, CommandError
from rusm.tui.app import TopApp, make_app
from rusm.tui.calls import trees
from rusm.tui.commands import (
    MUTATIONS,
    CommandLineError,
    RestartChild,
    TerminateChild,
    Tree,
    parse,
)
from rusm.tui.screens.confirm import ConfirmAction, ConfirmKill
from rusm.tui.screens.main import MainScreen
from rusm.tui.screens.process import ProcessScreen
from rusm.tui.screens.tree import TreeScreen

from .tui_helpers import (
    Answer,
    FakeFeed,
    drained,
    info_of,
    london_samples,
    run_line,
    supervision_trees,
    until,
)

CLOCK = 1_700_003_600.0
W1 = ("<london.7>", "w1")
POOL = ("<london.1>", "pool")


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


def top(feed: FakeFeed, audit: Path, **kw: Any) -> TopApp:
    return make_app(feed, audit_path=audit, clock=lambda: CLOCK, **kw)


def fake(**answers: Answer) -> FakeFeed:
    answers.setdefault("tree", lambda: supervision_trees())
    return FakeFeed(london_samples(1), answers=answers)


def sent(feed: FakeFeed, cmd: str) -> list[dict[str, Any]]:
    return [args for c, args in feed.commands if c == cmd]


def audited(path: Path) -> list[str]:
    """The audit log's commands and results (no times, no target)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return ["\t".join(line.split("\t")[2:]) for line in lines]


async def tree_open(pilot: Pilot[Any], feed: FakeFeed, key: str = "T") -> TreeScreen:
    await drained(pilot, feed)
    if key == "T":
        await pilot.press("T")
    else:
        await run_line(pilot, key)
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, TreeScreen) and app.screen.loads > 0,
                "the tree view to show the node's supervisors")
    assert isinstance(app.screen, TreeScreen)
    return app.screen


async def on_line(pilot: Pilot[Any], screen: TreeScreen, key: tuple[str | None, str]) -> None:
    screen.supervision.move_cursor(screen.lines[key])
    await pilot.pause()
    line = screen.highlighted
    assert line is not None and line.key == key


def message(screen: TreeScreen) -> str:
    return str(screen.query_one(".tree-message").render())


def shown(screen: TreeScreen) -> list[str]:
    """The tree's lines, indented by depth."""
    out = []
    for node in screen.lines.values():
        depth, up = 0, node.parent
        while up is not None and up.parent is not None:
            depth, up = depth + 1, up.parent
        out.append("  " * depth + node.label.plain)
    return out


def test_tree_answers_are_checked_and_the_pane_verbs_parse() -> None:
    (sup, empty) = trees(supervision_trees())
    assert (sup.label, sup.strategy, sup.max_restarts, sup.max_seconds) == (
        "demo_sup", "one_for_one", 3, 5.0)
    pool = sup.children[1]
    assert pool.supervisor and pool.tree is not None and pool.tree.pid == "<london.7>"
    assert [(c.id, c.pid, c.restarts) for c in pool.tree.children] == [
        ("w1", "<london.8>", 2), ("w2", None, 0)]
    assert empty.label is None and empty.children == ()
    for bad in ({"pid": "<london.1>"}, [{"pid": 1}], [{**supervision_trees()[1],
                                                       "children": [{"id": 3}]}]):
        with pytest.raises(CommandError, match="tree: the node answered"):
            trees(bad)
    assert parse("tree") == Tree()
    assert parse("restart <london.7> w1") == RestartChild("<london.7>", "w1")
    assert parse("terminate pool w1") == TerminateChild("pool", "w1")
    assert RestartChild in MUTATIONS and TerminateChild in MUTATIONS and Tree not in MUTATIONS
    for line in ("restart pool", "terminate a b c", "tree x"):
        with pytest.raises(CommandLineError, match="usage: "):
            parse(line)


async def test_colon_tree_and_T_show_the_nested_supervisors_children_and_counts(
    audit: Path,
) -> None:
    feed = fake()
    async with top(feed, audit).run_test() as pilot:
        screen = await tree_open(pilot, feed, "T")
        assert shown(screen) == [
            "demo_sup <london.1>  one_for_one (max 3 in 5 s)",
            "  producer  <london.2>  permanent  restarts 0",
            "  pool  <london.7>  permanent  restarts 1  rest_for_one (max 10 in 60 s)",
            "    w1 (worker)  <london.8>  transient  restarts 2",
            "    w2  stopped  temporary  restarts 0",
            "<london.20>  one_for_all (max 1 in 0.5 s)",
        ]
        assert all(node.is_expanded for node in screen.lines.values() if node.allow_expand)
        w1, w2 = screen.lines[W1].label, screen.lines[("<london.7>", "w2")].label
        assert any(w1.plain[s.start:s.end] == "restarts 2" and s.style == "yellow"
                   for s in w1.spans)
        assert any(s.style == "dim" and s.end - s.start == len(w2.plain) for s in w2.spans)
        assert message(screen) == "3 supervisors, 4 children, 1 stopped"
        assert sent(feed, "tree") == [{}]
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, MainScreen)
        await tree_open(pilot, feed, "tree")


async def test_R_asks_sends_nothing_on_no_and_on_yes_restarts_audits_and_stays_on_it(
    audit: Path,
) -> None:
    node = supervision_trees()

    def restart(supervisor: str, child: str) -> str:
        node[0]["children"][1]["children"][0].update(pid="<london.99>", restarts=3)
        return f"restarted {child} of {supervisor}"

    feed = fake(tree=lambda: node, restart_child=restart)
    async with top(feed, audit).run_test() as pilot:
        app = pilot.app
        screen = await tree_open(pilot, feed)
        await on_line(pilot, screen, W1)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmAction))
        assert str(app.screen.query_one("#confirm-question").render()) == (
            "Restart w1 of <london.7> on london?")
        await pilot.press("n")
        await until(pilot, lambda: "cancelled" in message(screen))
        assert sent(feed, "restart_child") == [] and audited(audit) == []
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("y")
        await until(pilot, lambda: "restarted" in message(screen))
        assert sent(feed, "restart_child") == [{"supervisor": "<london.7>", "child": "w1"}]
        assert message(screen) == "restart_child ok: restarted w1 of <london.7>"
        assert audited(audit) == ["restart <london.7> w1\tok restarted w1 of <london.7>"]
        await until(pilot, lambda: "<london.99>" in screen.lines[W1].label.plain,
                    "the tree asked again")
        assert screen.highlighted is not None and screen.highlighted.pid == "<london.99>"


async def test_x_terminates_the_child_and_K_on_a_supervisor_kills_its_pid(
    audit: Path,
) -> None:
    feed = fake(terminate_child=lambda supervisor, child: f"terminated {child} of {supervisor}",
                kill=lambda pid: pid)
    async with top(feed, audit).run_test() as pilot:
        app = pilot.app
        screen = await tree_open(pilot, feed)
        await on_line(pilot, screen, W1)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmAction))
        assert "Terminate w1 of <london.7>" in str(
            app.screen.query_one("#confirm-question").render())
        await pilot.press("y")
        await until(pilot, lambda: "terminated" in message(screen))
        assert sent(feed, "terminate_child") == [{"supervisor": "<london.7>", "child": "w1"}]
        await on_line(pilot, screen, POOL)
        await pilot.press("K")
        await until(pilot, lambda: isinstance(app.screen, ConfirmKill))
        assert isinstance(app.screen, ConfirmKill) and app.screen.pid == "<london.7>"
        await pilot.press("y")
        await until(pilot, lambda: "kill ok" in message(screen))
        assert sent(feed, "kill") == [{"pid": "<london.7>"}]
        assert audited(audit) == ["terminate <london.7> w1\tok terminated w1 of <london.7>",
                                  "kill <london.7>\tok <london.7>"]
        await on_line(pilot, screen, ("<london.7>", "w2"))
        await pilot.press("K")  # a stopped child: nothing to kill, nothing asked
        assert message(screen) == "kill: w2 is stopped, there is nothing to kill"
        assert isinstance(app.screen, TreeScreen)


async def test_a_node_error_is_shown_on_the_views_message_line_not_raised(
    audit: Path,
) -> None:
    refused = CommandError("bad_request", "restart_child: no child 'w1' (children: w2)")
    feed = fake(restart_child=refused)
    async with top(feed, audit).run_test() as pilot:
        app = pilot.app
        screen = await tree_open(pilot, feed)
        await on_line(pilot, screen, W1)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("y")
        await until(pilot, lambda: "failed" in message(screen))
        assert message(screen) == f"restart_child failed: {refused.message}"
        assert screen.query_one(".tree-message").has_class("-error") and app.is_running
        assert audited(audit) == [f"restart <london.7> w1\terror: {refused.message}"]
        feed.answers["tree"] = CommandError("timeout", "london did not answer in time")
        await pilot.press("r")
        await until(pilot, lambda: message(screen) == "london did not answer in time")
        assert len(screen.lines) == 6  # the last answer stays shown


async def test_read_only_refuses_restart_terminate_and_kill_without_sending(
    audit: Path,
) -> None:
    feed = fake()
    async with top(feed, audit, readonly=True).run_test() as pilot:
        app = pilot.app
        screen = await tree_open(pilot, feed)
        await on_line(pilot, screen, POOL)
        for key, verb in (("R", "restart"), ("x", "terminate"), ("K", "kill")):
            await pilot.press(key)
            assert message(screen).startswith(f"read-only: {verb} is disabled")
            assert isinstance(app.screen, TreeScreen)
        await pilot.press("escape")
        await run_line(pilot, "restart <london.7> w1")
        assert app.main.pane.message.startswith("read-only: restart is disabled")
        assert [c for c, _ in feed.commands if c in MUTATING] == [] and audited(audit) == []


async def test_the_pane_verbs_restart_and_terminate_confirm_and_send(audit: Path) -> None:
    feed = fake(restart_child=lambda supervisor, child: f"restarted {child} of {supervisor}",
                terminate_child=lambda supervisor, child: f"terminated {child} of {supervisor}")
    async with top(feed, audit).run_test() as pilot:
        app = pilot.app
        assert isinstance(app, TopApp)
        await drained(pilot, feed)
        await run_line(pilot, "restart <london.7> w1")
        await until(pilot, lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("y")
        await until(pilot, lambda: "restarted" in app.main.pane.message)
        await run_line(pilot, "terminate pool w1")
        await until(pilot, lambda: isinstance(app.screen, ConfirmAction))
        await pilot.press("y")
        await until(pilot, lambda: "terminated" in app.main.pane.message)
        assert app.main.pane.message == "terminate_child ok: terminated w1 of pool"
        assert sent(feed, "restart_child") == [{"supervisor": "<london.7>", "child": "w1"}]
        assert sent(feed, "terminate_child") == [{"supervisor": "pool", "child": "w1"}]
        assert audited(audit) == ["restart <london.7> w1\tok restarted w1 of <london.7>",
                                  "terminate pool w1\tok terminated w1 of pool"]


async def test_enter_opens_the_process_view_with_labels_next_to_related_pids(
    audit: Path,
) -> None:
    def info(pid: str) -> dict[str, Any]:
        return {**info_of("<london.3>"), "pid": pid,
                "labels": {"<london.1>": "demo_sup", "<london.4>": "cache"}}

    feed = fake(info=info)
    async with top(feed, audit).run_test() as pilot:
        app = pilot.app
        screen = await tree_open(pilot, feed)
        await on_line(pilot, screen, W1)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen)
                    and app.screen.info is not None)
        assert isinstance(app.screen, ProcessScreen) and app.screen.pid == "<london.8>"
        options = app.screen.query_one(OptionList)
        related = {options.get_option_at_index(i).id: str(options.get_option_at_index(i).prompt)
                   for i in range(options.option_count)}
        assert related["links:<london.1>"] == "  <london.1>  demo_sup"
        assert related["monitors:<london.4>"] == "  <london.4>  cache"
        assert related["monitored_by:<london.2>"] == "  <london.2>"  # no label given
        assert "labels" not in str(app.screen.query_one(".facts").render())
