"""The main screen: header, charts, the process table, the command pane."""

from __future__ import annotations

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from rusm.tui import format as fmt
from rusm.tui.completion import Completions
from rusm.tui.messages import FeedUpdated, KillProcess
from rusm.tui.model import TopModel
from rusm.tui.widgets.charts import Charts
from rusm.tui.widgets.command_pane import CommandPane
from rusm.tui.widgets.header import NodeHeader
from rusm.tui.widgets.table import ProcessTable

__all__ = ["MainScreen"]


class MainScreen(Screen[None]):
    """Shows the model; user intents go to the app as actions or messages."""

    BINDINGS = [
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
        # Priority: the app acts on them as it reads them, before it routes the
        # next key, so a burst typed after ":" lands in the command line.
        Binding("colon", "app.command", "Command", key_display=":", priority=True),
        Binding("slash", "app.filter", "Filter", key_display="/", priority=True),
        Binding("s", "app.sort(1)", "Sort"),
        Binding("S", "app.sort(-1)", "Sort back", show=False),
        Binding("d", "app.toggle_detail", "Detail"),
        Binding("space", "app.pause", "Pause"),
        Binding("k", "kill", "Kill"),
        Binding("n", "app.cluster", "Nodes"),
    ]

    def __init__(self, completions: Completions) -> None:
        super().__init__(id="main")
        self.completions = completions
        self.model: TopModel | None = None
        self.filter = ""
        self._status_shown = ""

    def compose(self) -> ComposeResult:
        yield NodeHeader(id="header")
        yield Charts(id="charts")
        with Vertical(id="body"):
            yield ProcessTable(id="processes")
            yield Static(
                "detail is off: the node sends totals only. Press d to see its processes.",
                id="detail-off",
            )
        yield Static("", id="status-line")
        yield CommandPane(self.completions, id="command-pane")
        yield Footer(compact=True)

    @property
    def table(self) -> ProcessTable:
        return self.query_one(ProcessTable)

    @property
    def pane(self) -> CommandPane:
        return self.query_one(CommandPane)

    def on_mount(self) -> None:
        self.table.focus()
        self.post_message(FeedUpdated())  # the app renders the model into it

    def show(self, model: TopModel, target: str, *, paused: bool, filter: str) -> None:
        self.model, self.filter = model, filter
        self.query_one(NodeHeader).show(model, target)
        sample = model.sample
        self.set_class(model.status.state in ("disconnected", "closed"), "-down")
        detail = sample.detail if sample is not None else True
        self.set_class(not detail, "-detail-off")
        if sample is not None and not paused:
            self.table.show(sample.rows, model.row_series)
            self.completions.pids = [r.pid for r in sample.rows]
            self.completions.nodes = sample.nodes
        if not paused:
            self.query_one(Charts).show(model, self.table.selected_pid)
        status = self._status(model, paused, filter)
        if status != self._status_shown:
            self._status_shown = status
            self.query_one("#status-line", Static).update(status, layout=False)

    def _status(self, model: TopModel, paused: bool, filter: str) -> str:
        sample = model.sample
        parts: list[str] = []
        if model.status.state in ("disconnected", "closed") and sample is not None:
            parts.append("showing the last sample before the node went away")
        if paused:
            parts.append("PAUSED (space resumes)")
        if sample is None:
            parts.append("waiting for the first sample")
        elif sample.detail:
            arrow = "▲" if sample.sort in ("pid", "label") else "▼"
            parts.append(f"sort {sample.sort} {arrow}")
            if filter:
                parts.append(f"filter {filter!r}: {fmt.count(sample.matched)} match")
            parts.append(f"{fmt.count(len(sample.rows))} shown")
            if sample.omitted:
                parts.append(f"{fmt.count(sample.omitted)} more not shown")
        else:
            parts.append(f"detail off: {fmt.count(sample.processes)} processes")
        return " · ".join(parts)

    def action_kill(self) -> None:
        pid = self.table.selected_pid
        if pid is None:
            self.pane.say("no process selected", error=True)
        else:
            self.post_message(KillProcess(pid))

    @on(ProcessTable.Highlighted)
    def _row_highlighted(self, event: ProcessTable.Highlighted) -> None:
        # Redraw the selected-process chart for the row the cursor is on now.
        if self.model is not None:
            self.query_one(Charts).show(self.model, event.pid)

    def on_paste(self, event: events.Paste) -> None:
        # A pasted ":cmd" (bracketed paste) goes to the command line as text.
        if event.text.startswith(":") and not self.pane.is_open:
            event.stop()
            self.pane.open(event.text[1:].partition("\n")[0])

    @on(CommandPane.Closed)
    def _pane_closed(self) -> None:
        self.table.focus()
