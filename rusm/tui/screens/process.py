"""The process view: everything ``info`` returns, the processes it is linked
to or monitors (select one to follow it; each with its label when ``info``'s
``labels`` has one), and its mailbox chart; ``t`` traces its messages
(:mod:`rusm.tui.screens.trace`)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from rusm.actors.errors import RusmError
from rusm.observe.protocol import CommandError
from rusm.tui import format as fmt
from rusm.tui.messages import KillProcess, OpenProcess, TraceProcess
from rusm.tui.model import HISTORY_POINTS, TopModel
from rusm.tui.widgets.charts import Chart
from rusm.tui.widgets.header import NodeHeader

__all__ = ["InfoSource", "ProcessScreen", "describe_error"]

InfoSource = Callable[[str], Awaitable[dict[str, Any]]]

_RELATED = (("waits_on", "waits on"), ("waited_by", "waited on by"), ("links", "linked to"),
            ("monitors", "monitors"), ("monitored_by", "monitored by"))
_PID = re.compile(r"<[^<>\s]+>")
_FACTS = (("label", "label"), ("names", "names"), ("status", "status"),
          ("waiting on", "waiting_on"), ("deadlock", "deadlock"), ("mailbox", "mailbox_depth"),
          ("memory", "memory_bytes"), ("cpu", "cpu_s"), ("trap exits", "trap_exits"),
          ("received", "received"), ("sent", "sent"), ("spawned at", "spawned_at"))
_SECTIONS = frozenset({"where", "messages", "state"})


def describe_error(error: Exception) -> str:
    """One line for a person: RUSM's own errors (a node's refusal, an attach
    that failed) as their message, anything else with its type."""
    if isinstance(error, CommandError):
        return error.message
    if isinstance(error, RusmError) and str(error):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class ProcessScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "refresh_info", "Refresh"),
        Binding("k", "kill", "Kill"),
        Binding("t", "trace", "Trace"),
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]

    def __init__(self, pid: str, info: InfoSource, model: TopModel, target: str) -> None:
        super().__init__(classes="process-screen")
        self.pid = pid
        self.fetch = info
        self.model = model
        self.target = target
        self.info: dict[str, Any] | None = None
        self.depths: deque[int] = deque(maxlen=HISTORY_POINTS)
        """Mailbox depth from each ``info``, for a process the table does not show."""
        self._loading = False
        self._groups: tuple[tuple[str, str, tuple[str, ...]], ...] | None = None
        self._labels: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield NodeHeader(classes="header")
        yield Static(Text(f" process {self.pid}", style="bold"), classes="title")
        with Horizontal(classes="process-body"):
            with VerticalScroll(classes="facts-scroll"):
                yield Static("loading…", classes="facts")
            yield OptionList(classes="related")
        yield Chart("mailbox", id="process-chart")
        yield Static("", classes="process-message", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show(self.model)
        self.query_one(OptionList).focus()

    def show(self, model: TopModel) -> None:
        """Redraw with the latest sample and ask the node for fresh info."""
        self.model = model
        self.query_one(NodeHeader).show(model, self.target)
        self._chart()
        if not self._loading:
            self.load()

    def _chart(self) -> None:
        series = self.model.row_series(self.pid) or self.depths
        self.query_one(Chart).show(list(series))

    def action_refresh_info(self) -> None:
        self.load()

    def action_kill(self) -> None:
        self.post_message(KillProcess(self.pid))

    def action_trace(self) -> None:
        label = self.info.get("label") if self.info else None
        self.post_message(TraceProcess(self.pid, str(label) if label else None))

    @work(exclusive=True, group="info", exit_on_error=False)
    async def load(self) -> None:
        self._loading = True
        message = self.query_one(".process-message", Static)
        try:
            info = await self.fetch(self.pid)
        except Exception as e:  # any failure is shown, never raised into the app
            message.update(describe_error(e))
            message.add_class("-error")
            return
        finally:
            self._loading = False
        message.remove_class("-error")
        message.update("")
        if self.pid not in self.model.rows and isinstance(info.get("mailbox_depth"), int):
            self.depths.append(info["mailbox_depth"])
        self._show_info(info)

    def _show_info(self, info: dict[str, Any]) -> None:
        self.info = info
        label = info.get("label")
        title = Text(f" process {self.pid}", style="bold")
        if label:
            title.append(f"  {label}", style="bold cyan")
        self.query_one(".title", Static).update(title)
        self.query_one(".facts", Static).update(self._facts(info))
        self._related(info)
        self._chart()

    @staticmethod
    def _facts(info: dict[str, Any]) -> Text:
        """The facts a line each; then where it waits (its await chain,
        innermost first), its mailbox's first messages and its state."""
        def value(key: str) -> str:
            v = info.get(key)
            if key == "spawned_at" and isinstance(v, int | float):
                return fmt.timestamp(v) + " (node clock)"
            if key == "memory_bytes" and isinstance(v, int):
                return f"~{fmt.count(v)} bytes"
            if key == "cpu_s" and isinstance(v, int | float):
                return f"{v:.2f}s busy"
            if key == "deadlock" and v:
                return "YES: in a cycle of calls"
            if isinstance(v, bool):
                return "yes" if v else "no"
            if isinstance(v, int):
                return fmt.count(v)
            if isinstance(v, list | tuple):
                return ", ".join(map(str, v)) or "-"
            return "-" if v is None else str(v)

        rows = [(title, key) for title, key in _FACTS if key in info]
        known = {key for _, key in _FACTS} | {"pid", "labels", *(k for k, _ in _RELATED),
                                              *_SECTIONS}
        rows += [(k.replace("_", " "), k) for k in info if k not in known]
        text = Text()
        for i, (title, key) in enumerate(rows):
            text.append(f"{title:<12}", style="dim")
            alarm = key == "deadlock" and info.get(key)
            text.append(value(key), style="bold red" if alarm else "")
            if i < len(rows) - 1:
                text.append("\n")
        if "state" in info:
            text.append("\n\nstate", style="bold")
            state = info.get("state")
            text.append("  (none published)" if state is None else f"\n{state}",
                        style="dim" if state is None else "")
        frames = info.get("where")
        if isinstance(frames, list):
            text.append("\n\nwhere", style="bold")
            text.append("  (innermost first)" if frames else "  (not running)", style="dim")
            for f in frames:
                if isinstance(f, dict):
                    text.append(f"\n{f.get('function')}  ")
                    text.append(f"{Path(str(f.get('file'))).name}:{f.get('line')}", style="dim")
        messages = info.get("messages")
        if isinstance(messages, list):
            depth = info.get("mailbox_depth")
            text.append("\n\nmailbox", style="bold")
            if isinstance(depth, int) and depth > len(messages):
                text.append(f"  (first {len(messages)} of {fmt.count(depth)})", style="dim")
            elif not messages:
                text.append("  (empty)", style="dim")
            for m in messages:
                text.append(f"\n{m}")
        return text

    def _related(self, info: dict[str, Any]) -> None:
        waits_on = _PID.findall(str(info.get("waiting_on") or ""))
        groups = tuple(
            (key, title, tuple(waits_on) if key == "waits_on"
             else tuple(map(str, info.get(key) or ())))
            for key, title in _RELATED
        )
        # Who it waits on and who waits on it: shown when there is someone.
        groups = tuple(g for g in groups if g[2] or g[0] not in ("waits_on", "waited_by"))
        given = info.get("labels")
        labels = ({str(k): str(v) for k, v in given.items() if v}
                  if isinstance(given, dict) else {})
        if (groups, labels) == (self._groups, self._labels):
            return
        self._groups, self._labels = groups, labels
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        for key, title, pids in groups:
            options.add_option(Option(Text(f"{title} ({len(pids)})", style="bold"),
                                      disabled=True))
            for pid in pids:
                text = Text(f"  {pid}")
                if pid in labels:
                    text.append(f"  {labels[pid]}", style="cyan")
                options.add_option(Option(text, id=f"{key}:{pid}"))
        if highlighted is not None and highlighted < options.option_count:
            options.highlighted = highlighted

    @on(OptionList.OptionSelected)
    def _follow(self, event: OptionList.OptionSelected) -> None:
        if event.option_id is not None:
            self.post_message(OpenProcess(event.option_id.partition(":")[2]))
