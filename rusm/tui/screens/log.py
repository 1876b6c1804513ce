"""The event log view: what happened on the node (exits, restarts, nodes up
and down, name conflicts), one line per event, following the node's log.

It asks the node for the events after the last it has (``log since=next``)
as it opens and every ``POLL_EVERY`` seconds, and keeps the last ``KEPT``.
Typing in the filter line shows only the lines with that text in them (any
case); ``log KIND`` opens it filtered on that kind. Long lines wrap; crash
tracebacks are shown indented under their line. pgup/pgdn scroll; it follows
the newest events while scrolled to the end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, RichLog, Static

from rusm.tui import format as fmt
from rusm.tui.calls import LogPage
from rusm.tui.model import TopModel
from rusm.tui.screens.process import describe_error
from rusm.tui.widgets.header import NodeHeader

__all__ = ["KEPT", "LogEntry", "LogScreen", "LogSource", "log_entry"]

LogSource = Callable[[int], Awaitable[LogPage]]
"""The node's events after a sequence number (:meth:`NodeCalls.log`)."""
KEPT = 1000
"""Events (and lines) the view keeps; the oldest go first."""

_STYLES = {"restart": "yellow", "max_restarts": "bold red", "nodedown": "red",
           "nodeup": "green"}


@dataclass(frozen=True, slots=True)
class LogEntry:
    line: str
    """The event's line as text: what the filter looks in."""
    text: Text
    """The line styled, its traceback (if any) indented under it."""


def _extra(event: dict[str, Any]) -> str:
    kind = event.get("kind")
    if kind == "restart":
        return f"child {event.get('child')} restart #{event.get('restarts')}"
    if kind in ("nodeup", "nodedown"):
        return str(event.get("node") or "")
    if kind == "name_conflict":
        return f"name {event.get('name')!r}, winner {event.get('winner')}"
    return ""


def _style(event: dict[str, Any]) -> str:
    if event.get("kind") == "exit":
        return "red" if event.get("crashed") else ""
    return _STYLES.get(str(event.get("kind")), "")


def log_entry(event: dict[str, Any]) -> LogEntry:
    """One event as the log shows it:
    ``HH:MM:SS.mmm  KIND  PID  LABEL  REASON  extra`` (UTC, the node's clock)."""
    when = event.get("time")
    clock = fmt.clock(when) if isinstance(when, int | float) else "--:--:--.---"
    kind, pid, label = (str(event.get(k) or "-") for k in ("kind", "pid", "label"))
    tail = "  ".join(p for p in (str(event.get("reason") or ""), _extra(event)) if p)
    line = f"{clock}  {kind:<13} {pid:<14} {label:<12} {tail}".rstrip()
    text = Text(line, style=_style(event))
    trace = event.get("traceback")
    if isinstance(trace, str) and trace:
        for row in trace.splitlines():
            text.append("\n    " + row, style="dim")
    return LogEntry(line, text)


class LogScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        # Priority: the filter line (focused) would take them to scroll itself.
        Binding("pageup", "page(-1)", "Scroll", key_display="pgup", priority=True),
        Binding("pagedown", "page(1)", "Scroll down", show=False, key_display="pgdn",
                priority=True),
    ]
    POLL_EVERY = 1.0
    """Seconds between two asks for newer events."""

    def __init__(self, source: LogSource, model: TopModel, target: str,
                 kind: str | None = None) -> None:
        super().__init__(classes="log-screen")
        self.fetch = source
        self.model = model
        self.target = target
        self.filter = kind or ""
        self.entries: deque[LogEntry] = deque(maxlen=KEPT)
        self.next = 0
        """The ``since`` of the next ask: the node's last event seen."""
        self.polls = 0
        """Asks answered (tests wait on it)."""
        self._polling = False

    def compose(self) -> ComposeResult:
        yield NodeHeader(classes="header")
        yield Static(Text(" event log (follows the node; esc: back)", style="bold"),
                     classes="title")
        yield Input(self.filter, placeholder="filter: type to show only the lines with it",
                    classes="log-filter", select_on_focus=False)
        yield RichLog(max_lines=KEPT, wrap=True, markup=False, highlight=False,
                      classes="log-lines")
        yield Static("", classes="log-message", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show(self.model)
        self.query_one(Input).focus()
        self.poll()
        self.set_interval(self.POLL_EVERY, self.poll)

    def show(self, model: TopModel) -> None:
        self.model = model
        self.query_one(NodeHeader).show(model, self.target)

    @property
    def shown(self) -> list[str]:
        """The lines the filter lets through, the oldest first."""
        return [e.line for e in self.entries if self._matches(e)]

    def _matches(self, entry: LogEntry) -> bool:
        return self.filter.casefold() in entry.line.casefold()

    @work(group="log", exit_on_error=False)
    async def poll(self) -> None:
        """Ask for the events after the last seen, and append them."""
        if self._polling:  # a slow node: one ask at a time
            return
        self._polling = True
        message = self.query_one(".log-message", Static)
        try:
            page = await self.fetch(self.next)
        except Exception as e:  # any failure is shown, never raised into the app
            message.update(describe_error(e))
            message.add_class("-error")
            return
        finally:
            self._polling = False
        message.remove_class("-error")
        self.next = page.next
        view = self.query_one(RichLog)
        follow = view.is_vertical_scroll_end or view.max_scroll_y == 0
        for event in page.events:
            entry = log_entry(event)
            self.entries.append(entry)
            if self._matches(entry):
                view.write(entry.text, expand=True, scroll_end=follow)
        self.polls += 1
        self._count()

    def _count(self) -> None:
        total = len(self.entries)
        text = f"{fmt.count(total)} event{'s' if total != 1 else ''}"
        if self.filter:
            text += f", {fmt.count(len(self.shown))} with {self.filter!r}"
        self.query_one(".log-message", Static).update(text)

    @on(Input.Changed, ".log-filter")
    def _filtered(self, event: Input.Changed) -> None:
        if event.value == self.filter:
            return
        self.filter = event.value
        self._rewrite()
        if not self.query_one(".log-message", Static).has_class("-error"):
            self._count()

    def on_resize(self) -> None:
        # The lines were wrapped to the old width: wrap them again.
        self.call_after_refresh(self._rewrite)

    def _rewrite(self) -> None:
        view = self.query_one(RichLog)
        view.clear()
        for entry in self.entries:
            if self._matches(entry):
                view.write(entry.text, expand=True, scroll_end=True)

    def action_page(self, step: int) -> None:
        view = self.query_one(RichLog)
        if step < 0:
            view.scroll_page_up()
        else:
            view.scroll_page_down()
