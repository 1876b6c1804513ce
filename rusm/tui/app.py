"""The ``rusm top`` app and the one factory that builds it (CLI and tests alike).

The app owns a feed (live or recorded, it cannot tell) and a model. A worker
takes every event from the feed into the model and posts a coalescing
:class:`~rusm.tui.messages.FeedUpdated`; rendering reads the model. Feed
calls (subscribe, commands) run in workers so a slow node never freezes the
screen; their failures are shown as one line, never raised.

The log and trace views (``L``, ``:log``; ``:trace``, ``t`` in the process
view) ask the node through :class:`~rusm.tui.calls.NodeCalls`; a replay has
no node to ask, so they are refused there. Traces still running as the app
closes are stopped. The supervision tree view (``T``, ``:tree``) asks it too
(refused in a replay); its restart, terminate and kill go through the shell,
confirmed and audited like the command pane's.

Read-only (``rusm top --readonly``, or attached with an observer
certificate, like k9s ``--readonly``): the shell refuses send, spawn and kill
with a message and sends nothing, ``k`` only says so, and the screen is
marked READ-ONLY.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, AutopilotCallbackType
from textual.binding import Binding
from textual.css.query import NoMatches

from rusm.observe.protocol import SORT_KEYS, TRACE_COUNT, TRACE_SECONDS, Feed, FeedStatus
from rusm.tui.audit import AuditLog, default_audit_path
from rusm.tui.calls import NodeCalls
from rusm.tui.completion import Completions
from rusm.tui.feeds import RecordingFeed, ReplayFeed
from rusm.tui.messages import (
    Attach,
    FeedUpdated,
    KillProcess,
    OpenProcess,
    SortBy,
    TraceProcess,
)
from rusm.tui.model import TopModel
from rusm.tui.screens.cluster import ClusterScreen
from rusm.tui.screens.help import HelpScreen
from rusm.tui.screens.log import LogScreen
from rusm.tui.screens.main import MainScreen
from rusm.tui.screens.process import ProcessScreen, describe_error
from rusm.tui.screens.trace import TraceScreen
from rusm.tui.screens.tree import TreeScreen
from rusm.tui.shell import Done, Shell
from rusm.tui.widgets.command_pane import CommandPane

__all__ = [
    "READ_ONLY", "AttachHandler", "Clock", "TopApp", "freeze_startup_objects", "make_app",
]

log = logging.getLogger("rusm.tui")

Clock = Callable[[], float]
"""Seconds since the epoch, like ``time.time`` (tests pass a fixed one)."""
AttachHandler = Callable[[str], Awaitable[None] | None]
"""Called with a node name when the user picks another node to attach to."""
READ_ONLY = "READ-ONLY"


class TopApp(App[None]):
    CSS_PATH = Path(__file__).with_name("top.tcss")  # absolute: subclasses live elsewhere
    TITLE = "rusm top"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(
        self, feed: Feed, *, audit: AuditLog, clock: Clock,
        on_attach: AttachHandler | None = None, readonly: bool = False,
    ) -> None:
        super().__init__()
        self.readonly = readonly
        """Whether send, spawn and kill are refused here, before any reaches the node."""
        if readonly:
            self.sub_title = READ_ONLY
        self.feed = feed
        self.clock = clock
        self.model = TopModel(clock=clock)
        self.view = replace(feed.subscription)
        """The subscription as this app last set it."""
        self.paused = False
        self.on_attach = on_attach
        self.completions = Completions()
        self.shell = Shell(self, audit)
        self.calls = NodeCalls(lambda: self.feed)
        """The log and trace views' commands (and the traces still running)."""
        self.replay = feed if isinstance(feed, ReplayFeed) else None
        """The recording played, if this app replays one: send, spawn and kill
        are refused, and the replay keys (step, jump, speed) act on it."""
        self._main = MainScreen(self.completions)

    async def run_async(
        self, *, headless: bool = False, inline: bool = False, inline_no_clear: bool = False,
        mouse: bool = True, size: tuple[int, int] | None = None,
        auto_pilot: AutopilotCallbackType | None = None,
    ) -> None:
        freeze_startup_objects()
        return await super().run_async(
            headless=headless, inline=inline, inline_no_clear=inline_no_clear, mouse=mouse,
            size=size, auto_pilot=auto_pilot,
        )

    # -- feed ------------------------------------------------------------------

    def get_default_screen(self) -> MainScreen:
        return self._main

    @property
    def main(self) -> MainScreen:
        return self._main

    @property
    def target(self) -> str:
        return self.feed.target

    def on_mount(self) -> None:
        self._consume(self.feed)
        self.set_interval(1.0, self._tick)
        if self.readonly:
            self._main.add_class("-readonly")
            # After the first refresh: the main screen composes its pane then.
            self.call_after_refresh(
                self.say, f"{READ_ONLY}: watching only; send, spawn and kill are disabled"
            )

    async def on_unmount(self) -> None:
        await self.calls.stop_all()  # best effort: the node stops unread traces too
        await self._close(self.feed)

    @work(exclusive=True, group="feed", exit_on_error=False)
    async def _consume(self, feed: Feed) -> None:
        try:
            async for event in feed:
                self.model.ingest(event)
                if isinstance(feed, ReplayFeed):
                    self.model.position = feed.position
                self.post_message(FeedUpdated())
        except Exception as e:  # a broken feed is shown, not raised
            log.warning("feed %s failed", feed.target, exc_info=True)
            self.model.ingest(FeedStatus("closed", f"the feed failed: {describe_error(e)}"))
            self.post_message(FeedUpdated())

    async def _close(self, feed: Feed) -> None:
        try:
            async with asyncio.timeout(2):
                await feed.close()
        except Exception:
            log.warning("closing feed %s failed", feed.target, exc_info=True)

    async def attach_feed(self, feed: Feed) -> None:
        """Replace the feed (attach to another node); the screen starts over."""
        old, self.feed = self.feed, feed
        self.model = TopModel(clock=self.clock)
        self.view = replace(feed.subscription)
        self._consume(feed)
        await self._close(old)
        self._render()

    @on(FeedUpdated)
    def _feed_updated(self) -> None:
        self._render()

    def _tick(self) -> None:
        # Old figures say how old, second by second, while no sample comes.
        if self.model.stale:
            self._render()

    def _render(self) -> None:
        for screen in self.screen_stack:
            if not screen.is_mounted:
                continue  # it renders itself once mounted
            try:
                if isinstance(screen, MainScreen):
                    screen.show(self.model, self.target, paused=self.paused,
                                filter=self.view.filter)
                elif isinstance(screen, ProcessScreen | ClusterScreen | LogScreen
                                | TraceScreen | TreeScreen):
                    screen.show(self.model)
            except NoMatches:
                continue  # being torn down (the app is closing): nothing to draw on

    # -- subscription ----------------------------------------------------------

    @work(group="subscribe", exit_on_error=False)
    async def subscribe(self, **changes: Any) -> None:
        """Change the subscription; the outcome goes to the message line."""
        await self._subscribe(**changes)

    async def _subscribe(self, **changes: Any) -> None:
        try:
            await self.feed.subscribe(**changes)
        except Exception as e:
            self.say(describe_error(e), error=True)
            return
        for key, value in changes.items():
            setattr(self.view, key, value)
        self.say(", ".join(f"{k} {_show(v)}" for k, v in changes.items()))
        self._render()

    def action_toggle_detail(self) -> None:
        self.subscribe(detail=not self.view.detail)

    def action_sort(self, step: int) -> None:
        at = SORT_KEYS.index(self.view.sort) if self.view.sort in SORT_KEYS else -step
        self.subscribe(sort=SORT_KEYS[(at + step) % len(SORT_KEYS)])

    @on(SortBy)
    def _sort_by(self, event: SortBy) -> None:
        self.subscribe(sort=event.key)

    # -- screens ---------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While the command line has focus, its keys are text: hide the
        # app's single-key bindings from the footer.
        return not (action in ("filter", "command") and self._main.pane.is_open)

    def say(self, text: str, *, error: bool = False) -> None:
        """Show one line on the main screen's message line."""
        self._main.pane.say(text, error=error)

    def action_pause(self) -> None:
        if self.replay is not None:  # a recording: space holds the playback itself
            self.replay.hold()
            self._say_replay()
            return
        self.paused = not self.paused
        self.say("display paused; the feed keeps flowing" if self.paused else "resumed")
        self._render()

    # -- replay keys -------------------------------------------------------------

    def action_replay_step(self, count: int) -> None:
        if self._replaying():
            assert self.replay is not None
            self.replay.step(count)
            self._say_replay()

    def action_replay_jump(self, tenths: int) -> None:
        """Move by ``tenths`` tenths of the recording."""
        if self._replaying():
            assert self.replay is not None
            at, total = self.replay.position
            here = (at - 1) / max(1, total - 1)
            self.replay.jump(here + tenths / 10)
            self._say_replay()

    def action_replay_speed(self, factor: float) -> None:
        if self._replaying():
            assert self.replay is not None
            self.replay.set_speed(self.replay.speed * factor)
            self._say_replay()

    def _replaying(self) -> bool:
        if self.replay is None:
            self.say("that key steps through a recording: rusm top --replay FILE", error=True)
            return False
        return True

    def _say_replay(self) -> None:
        replay = self.replay
        assert replay is not None
        at, total = replay.position
        state = "held (space plays on)" if replay.held else "playing"
        self.say(f"replay: sample {at} of {total}, {state}, speed {replay.speed:g}x"
                 + ("" if replay.realtime else " (as fast as it reads)"))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_command(self) -> None:
        self._main.pane.open()
        self.shell.refresh_names()

    def action_filter(self) -> None:
        self._main.pane.open(f"filter {self.view.filter}", live_filter=True)

    @on(CommandPane.Filtering)
    def _filtering(self, event: CommandPane.Filtering) -> None:
        if event.text != self.view.filter:
            self._filter_now(event.text)

    @work(exclusive=True, group="filter", exit_on_error=False)
    async def _filter_now(self, text: str) -> None:
        # Exclusive: while typing, only the latest text matters.
        await self._subscribe(filter=text)

    def action_cluster(self) -> None:
        self.push_screen(ClusterScreen(self.shell.nodes, self.model, self.target))

    def action_log(self) -> None:
        self.open_log()

    def open_log(self, kind: str | None = None) -> None:
        """The node's event log, filtered on ``kind`` to start with."""
        if self.replay is not None:
            self.shell.need_node("log")
            return
        self.push_screen(LogScreen(self.calls.log, self.model, self.target, kind))

    def open_trace(self, pid: str, count: int = TRACE_COUNT, seconds: float = TRACE_SECONDS,
                   *, label: str | None = None) -> None:
        """Trace ``pid``'s messages (``label`` defaults to its row's)."""
        if self.replay is not None:
            self.shell.need_node("trace")
            return
        if label is None:
            sample = self.model.sample
            row = next((r for r in sample.rows if r.pid == pid), None) if sample else None
            label = row.label if row else None
        self.push_screen(TraceScreen(self.calls, pid, count, seconds, self.model, self.target,
                                     label=label))

    def action_tree(self) -> None:
        self.open_tree()

    def open_tree(self) -> None:
        """The node's supervision trees."""
        if self.replay is not None:
            self.shell.need_node("tree")
            return
        if not isinstance(self.screen, TreeScreen):
            self.push_screen(TreeScreen(self.calls.tree, self.model, self.target))

    @on(TraceProcess)
    def _trace_process(self, event: TraceProcess) -> None:
        self.open_trace(event.pid, label=event.label)

    def open_process(self, pid: str) -> None:
        self.push_screen(ProcessScreen(pid, self.shell.info, self.model, self.target))

    @on(OpenProcess)
    def _open_process(self, event: OpenProcess) -> None:
        self.open_process(event.pid)

    @on(KillProcess)
    def _kill_process(self, event: KillProcess) -> None:
        self.kill(event.pid)

    def kill(self, pid: str, *, label: str | None = None, done: Done | None = None) -> None:
        """Kill ``pid`` once the user says yes (audited; refused read-only
        and in a replay); ``done`` is told the outcome too."""
        if self.readonly or self.replay is not None:
            self.shell.refuse("kill", done=done)
            return
        self.shell.confirm_kill(pid, None, f"kill {pid}", label=label, done=done)

    @on(CommandPane.Entered)
    def _command_entered(self, event: CommandPane.Entered) -> None:
        self.shell.run(event.line)

    @on(Attach)
    async def _attach_picked(self, event: Attach) -> None:
        await self.attach(event.node)

    async def attach(self, node: str) -> None:
        """Attach to ``node`` with the CLI's handler, or say how to."""
        while len(self.screen_stack) > 1:
            self.pop_screen()
        if self.on_attach is None:
            self.say(f"to watch {node}, run: rusm top {node}")
            return
        try:
            result = self.on_attach(node)
            if inspect.isawaitable(result):
                await result
        except Exception as e:
            self.say(f"cannot attach to {node}: {describe_error(e)}", error=True)


def freeze_startup_objects() -> None:
    """Move every object alive now out of the cyclic collector's scans.

    A full collection walks Textual's and rich's many objects and stalls a
    frame by 50-80 ms every few seconds (scripts/bench_tui.py); frozen, they
    are skipped. ``rusm top`` owns its process, so this is done once as it
    starts (not under ``run_test``, which shares the test process).
    """
    gc.collect()
    gc.freeze()


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, str) else str(value)


def make_app(
    feed: Feed,
    *,
    audit_path: Path | None = None,
    clock: Clock = time.time,
    on_attach: AttachHandler | None = None,
    record_path: Path | None = None,
    readonly: bool = False,
) -> TopApp:
    """The app, as ``rusm top`` runs it.

    ``audit_path`` defaults to ``$RUSM_HOME/audit.log``; ``clock`` stamps the
    audit log; ``on_attach(node)`` is called when the user picks another node
    (the CLI may then call ``app.attach_feed(new_feed)``); ``record_path``
    records every event the feed yields (see :mod:`rusm.tui.feeds`);
    ``readonly`` refuses send, spawn and kill in the app itself.
    """
    if record_path is not None:
        feed = RecordingFeed(feed, record_path)
    audit = AuditLog(audit_path or default_audit_path(), clock)
    return TopApp(feed, audit=audit, clock=clock, on_attach=on_attach, readonly=readonly)
