"""`rusm top` against real nodes: Pilot on a live in-process node over its
WebSocket observe channel, and a real terminal (tmux) on `rusm node start`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList

from rusm import ClusterCa, ClusterNode, Runtime
from rusm.demo.stuck import deadlock
from rusm.net.directory import NodeDirectory, NodeEntry
from rusm.net.observe import Subscription, connect, serve_observe
from rusm.tui.app import TopApp, make_app
from rusm.tui.screens.confirm import ConfirmKill
from rusm.tui.screens.process import ProcessScreen
from rusm.tui.widgets.header import NodeHeader

from .node_app import setup

WAIT = 10.0
"""Seconds a test waits for a state it expects before failing."""


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    """A live node has no event to await in the app: poll its state, bounded."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


@pytest.fixture
async def london() -> AsyncIterator[tuple[ClusterNode, NodeEntry]]:
    node = await ClusterNode.bind(
        "london", Runtime(), ("127.0.0.1", 0), ClusterCa.generate().issue("london")
    )
    setup(node)  # the spawnable "worker" and the registered "ledger"
    server = await serve_observe(node, token="t0ken")
    entry = NodeEntry("london", os.getpid(), node.local_addr(), server.local_addr(), "t0ken", 0.0)
    try:
        yield node, entry
    finally:
        await node.close()


def shown(app: TopApp) -> dict[str, tuple[str, int]]:
    """pid -> (label, mailbox) of the rows the table shows."""
    table = app.main.table
    rows = (table.row_of(str(table.get_row_at(i)[0])) for i in range(table.row_count))
    return {r.pid: (r.label or "", r.mailbox) for r in rows if r is not None}


def header_text(app: TopApp) -> str:
    return str(app.main.query_one(NodeHeader).render())


async def command(pilot: Pilot[Any], app: TopApp, line: str) -> None:
    if not app.main.pane.is_open:
        await pilot.press("colon")
    app.main.pane.input.value = line
    await pilot.press("enter")


async def test_send_spawn_and_kill_typed_in_the_pane_act_on_the_live_node(
    london: tuple[ClusterNode, NodeEntry], tmp_path: Path
) -> None:
    node, entry = london
    rt = node.runtime
    ledger = rt.whereis("ledger")
    assert ledger is not None
    feed = await connect(
        "london", entry=entry, subscription=Subscription(interval=0.2), reconnect=False
    )
    app = make_app(feed, audit_path=tmp_path / "audit.log")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: str(ledger) in shown(app), "the ledger row")

        await command(pilot, app, "send ledger ('hello', 1)")
        await until(pilot, lambda: shown(app)[str(ledger)][1] == 1, "the ledger's mailbox to grow")
        assert rt.process_info(ledger).mailbox_depth == 1  # type: ignore[union-attr]

        await command(pilot, app, "spawn worker")
        await until(
            pilot, lambda: [p for p, (label, _) in shown(app).items() if label == "worker"],
            "the spawned worker in the table",
        )
        (worker,) = [p for p, (label, _) in shown(app).items() if label == "worker"]
        assert any(str(i.pid) == worker for i in rt.processes())

        await pilot.press("escape")  # leave the command line; back to the table
        assert app.main.table.select_pid(worker)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmKill), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: worker not in shown(app), "the killed worker to go")
        assert not any(str(i.pid) == worker for i in rt.processes())

    audit = (tmp_path / "audit.log").read_text().splitlines()
    assert [line.split("\t")[2] for line in audit] == [
        "send ledger ('hello', 1)", "spawn worker", f"kill {worker}",
    ]


async def test_a_deadlock_shows_in_the_header_the_waits_column_and_the_process_view(
    london: tuple[ClusterNode, NodeEntry], tmp_path: Path
) -> None:
    node, entry = london
    node.register_spawnable("deadlock", deadlock)
    feed = await connect(
        "london", entry=entry, subscription=Subscription(interval=0.2), reconnect=False
    )
    app = make_app(feed, audit_path=tmp_path / "audit.log")
    async with app.run_test(size=(160, 40)) as pilot:
        await command(pilot, app, "spawn deadlock")
        await until(pilot, lambda: "DEADLOCK: 2 processes" in header_text(app), "the header flag")

        def waits() -> dict[str, str]:
            """label -> its WAITS ON cell, as the table shows it."""
            table = app.main.table
            return {table.row_of(p).label or "": table.cell_text(p, "waiting")  # type: ignore[union-attr]
                    for p in table.pids if table.row_of(p) is not None}

        await until(pilot, lambda: waits().get("deadlock.a", "").startswith("call <london."),
                    "WAITS ON of deadlock.a")
        a, b = (next(p for p, (label, _) in shown(app).items() if label == f"deadlock.{x}")
                for x in "ab")
        assert waits()["deadlock.a"].split()[1] == b and waits()["deadlock.b"].split()[1] == a
        assert waits()["ledger"] == "await Future"
        assert app.main.table.column_x("waiting") is not None  # shown at 160 columns

        await pilot.press("escape")
        assert app.main.table.select_pid(a)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ProcessScreen)
                    and app.screen.info is not None, "the process view")
        facts = str(app.screen.query_one(".facts").render())
        assert "YES: in a cycle of calls" in facts and "stuck.py:" in facts
        options = app.screen.query_one(OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        assert f"waits_on:{b}" in ids and f"waited_by:{b}" in ids


# -- a real terminal ---------------------------------------------------------


def _rusm() -> str:
    return str(Path(sys.executable).parent / "rusm")


@pytest.fixture
def node_process(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    env = {**os.environ, "RUSM_HOME": str(tmp_path / "home"), "PYTHONPATH": os.getcwd()}
    name = f"london{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [_rusm(), "node", "start", name, "--app", "tests.node_app:setup"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    try:
        directory = NodeDirectory(tmp_path / "home")
        deadline = time.monotonic() + WAIT
        while not directory.path(name).exists():  # the entry is its readiness signal
            assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.05)
        yield env, name
    finally:
        proc.terminate()
        proc.wait(10)


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed on this machine")
def test_rusm_top_in_a_real_terminal_shows_the_nodes_processes_and_obeys_keys(
    node_process: tuple[dict[str, str], str],
) -> None:
    env, name = node_process
    session = f"rusm-top-{uuid.uuid4().hex[:8]}"
    home = env["RUSM_HOME"]
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30",
          f"RUSM_HOME={home} {_rusm()} top {name} --interval 0.2")
    try:
        def pane() -> str:
            return _tmux("capture-pane", "-p", "-t", session)

        def wait_for(text: str) -> str:
            deadline = time.monotonic() + WAIT
            while text not in (screen := pane()):
                assert time.monotonic() < deadline, f"{text!r} never showed:\n{screen}"
                time.sleep(0.1)
            return screen

        screen = wait_for("ledger")
        assert name in screen and "connected" in screen
        _tmux("send-keys", "-t", session, "?")
        wait_for("this help")
        # Not Escape: tmux holds it back to see whether a sequence follows.
        _tmux("send-keys", "-t", session, "?")
        deadline = time.monotonic() + WAIT
        while "this help" in pane():
            assert time.monotonic() < deadline, "? did not close the help"
            time.sleep(0.1)
        _tmux("send-keys", "-t", session, ":")
        wait_for("help lists them")  # the command line is open: now keys are text
        _tmux("send-keys", "-t", session, "-l", "spawn worker")
        _tmux("send-keys", "-t", session, "Enter")
        wait_for("spawn ok")
        wait_for("worker")
        _tmux("send-keys", "-t", session, "C-c")  # quits from anywhere, the command line too
        deadline = time.monotonic() + WAIT
        while subprocess.run(["tmux", "has-session", "-t", session],
                             capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "ctrl+c did not quit"
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


class Terminal:
    """``rusm top`` in a tmux session: send keys, wait for the screen to show a text."""

    def __init__(self, session: str) -> None:
        self.session = session

    def screen(self) -> str:
        return _tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str, literal: bool = False) -> None:
        _tmux("send-keys", "-t", self.session, *(["-l"] if literal else []), *keys)

    def wait_for(self, text: str, *, gone: bool = False) -> str:
        deadline = time.monotonic() + WAIT
        while (text in (screen := self.screen())) == gone:
            what = "stayed" if gone else "never showed"
            assert time.monotonic() < deadline, f"{text!r} {what}:\n{screen}"
            time.sleep(0.1)
        return screen


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed on this machine")
def test_everything_typed_after_colon_in_one_burst_goes_to_the_command_line(
    node_process: tuple[dict[str, str], str],
) -> None:
    env, name = node_process
    session = f"rusm-top-{uuid.uuid4().hex[:8]}"
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30",
          f"RUSM_HOME={env['RUSM_HOME']} {_rusm()} top {name} --interval 0.2")
    term = Terminal(session)
    try:
        term.wait_for("ledger")
        term.wait_for("sort mailbox")
        term.keys(":sort pid", literal=True)  # one write: as fast as a terminal sends keys
        screen = term.wait_for("sort pid")
        assert "sort mailbox" in screen, "s changed the sort instead of being typed"
        assert "PAUSED" not in screen and "detail is off" not in screen
        term.keys("Enter")
        screen = term.wait_for("sort pid ▲")
        assert "PAUSED" not in screen and "detail is off" not in screen
        term.keys("Enter")  # an empty line closes the command line
        term.wait_for("help lists them", gone=True)

        term.keys(":q", literal=True)  # pasted: q is text, not quit
        term.keys("BSpace")
        term.wait_for("help lists them")  # still running, the command line open and empty
        term.keys("C-c")
        deadline = time.monotonic() + WAIT
        while subprocess.run(["tmux", "has-session", "-t", session],
                             capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "ctrl+c did not quit"
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
