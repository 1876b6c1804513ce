"""The main screen: header, charts, the process table, the command pane.

Sorting: ``s`` cycles the sort key, ``S`` (or a second click on the sorted
column's header) reverses the order. Paging: the table asks for the page with
the row the user moved to, and the screen subscribes to that offset. The
command ``limit N`` sets how many rows a page has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from rusm.observe.protocol import ASCENDING, MAX_LIMIT, Sample
from rusm.tui import format as fmt
from rusm.tui.completion import Completions
from rusm.tui.messages import FeedUpdated, KillProcess, SortBy
from rusm.tui.model import TopModel
from rusm.tui.widgets.charts import Charts
from rusm.tui.widgets.command_pane import CommandPane
from rusm.tui.widgets.header import NodeHeader, is_replay
from rusm.tui.widgets.table import ProcessTable

if TYPE_CHECKING:
    from rusm.tui.app import TopApp

__all__ = ["LIMIT_USAGE", "MainScreen"]

LIMIT_USAGE = f"limit N (rows per page, 1 … {MAX_LIMIT})"


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
        Binding("S", "reverse", "Reverse", show=False),
        Binding("d", "app.toggle_detail", "Detail"),
        Binding("space", "app.pause", "Pause"),
        Binding("k", "kill", "Kill"),
        Binding("n", "app.cluster", "Nodes"),
        Binding("L", "app.log", "Log"),
        Binding("T", "app.tree", "Tree"),
        # A replay's: step a sample, jump a tenth, halve or double the speed.
        Binding("comma", "app.replay_step(-1)", "Step back", show=False, key_display=","),
        Binding("full_stop", "app.replay_step(1)", "Step", show=False, key_display="."),
        Binding("left_square_bracket", "app.replay_jump(-1)", "Back 10%", show=False,
                key_display="["),
        Binding("right_square_bracket", "app.replay_jump(1)", "On 10%", show=False,
                key_display="]"),
        Binding("less_than_sign", "app.replay_speed(0.5)", "Slower", show=False,
                key_display="<"),
        Binding("greater_than_sign", "app.replay_speed(2)", "Faster", show=False,
                key_display=">"),
    ]

    def __init__(self, completions: Completions) -> None:
        super().__init__(id="main")
        self.completions = completions
        self.model: TopModel | None = None
        self.filter = ""
        self._status_shown = ""
        self._shown: Sample | None = None
        self._view: tuple[object, ...] | None = None
        """How the last sample shown was sorted, filtered and paged."""

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
        self.set_class(model.stale, "-down")
        detail = sample.detail if sample is not None else True
        self.set_class(not detail, "-detail-off")
        if sample is not None and not paused and sample is not self._shown:
            # Each sample once: a page asked for is judged by the samples after.
            self._shown = sample
            view = (sample.sort, sample.reverse, sample.offset, filter)
            self.table.show(
                sample.rows, model.row_series, offset=sample.offset, total=sample.matched,
                exited=sample.exited, same_view=view == self._view,
            )
            self._view = view
            self.completions.pids = [r.pid for r in sample.rows]
            self.completions.nodes = sample.nodes
        if not paused:
            self.query_one(Charts).show(model, self.table.selected_pid)
        status = self._status(model, paused, filter, is_replay(model, target))
        if status != self._status_shown:
            self._status_shown = status
            self.query_one("#status-line", Static).update(status, layout=False)

    def _status(self, model: TopModel, paused: bool, filter: str, replay: bool) -> str:
        sample = model.sample
        parts: list[str] = []
        age = model.sample_age()
        if model.stale and replay:
            parts.append("the recorded node went away here")
        elif model.stale and age is not None:
            parts.append(f"STALE: the last sample, {fmt.duration(age)} old; the node is not "
                         "answering")
        if paused:
            parts.append("PAUSED (space resumes)")
        if sample is None:
            parts.append("waiting for the first sample")
        elif sample.detail:
            up = (sample.sort in ASCENDING) != sample.reverse
            parts.append(f"sort {sample.sort} {'▲' if up else '▼'}"
                         + (" reversed" if sample.reverse else ""))
            if filter:
                parts.append(f"filter {filter!r}: {fmt.count(sample.matched)} match")
            if sample.rows:
                first, last = sample.offset + 1, sample.offset + len(sample.rows)
                parts.append(f"rows {fmt.count(first)}-{fmt.count(last)} "
                             f"of {fmt.count(sample.matched)}")
            else:
                parts.append(f"no rows of {fmt.count(sample.matched)}")
            kept = self.table.kept
            if kept is not None:
                parts.append(f"{kept.pid} {kept.status}"
                             + (" (move to let go)" if kept.status == "exited" else ""))
        else:
            parts.append(f"detail off: {fmt.count(sample.processes)} processes")
        return " · ".join(parts)

    @property
    def _app(self) -> TopApp:
        return cast("TopApp", self.app)

    def action_kill(self) -> None:
        pid = self.table.selected_pid
        kept = self.table.kept
        if pid is None:
            self.pane.say("no process selected", error=True)
        elif kept is not None and kept.pid == pid and kept.status == "exited":
            self.pane.say(f"{pid} has exited: nothing to kill", error=True)
        else:
            self.post_message(KillProcess(pid))

    def action_reverse(self) -> None:
        self._app.subscribe(reverse=not self._app.view.reverse)

    @on(SortBy)
    def _sort_by(self, event: SortBy) -> None:
        # A click on the sorted column's header reverses; on another, sorts
        # by it in its natural order.
        event.stop()
        view = self._app.view
        if event.key == view.sort:
            self._app.subscribe(reverse=not view.reverse)
        elif view.reverse:
            self._app.subscribe(sort=event.key, reverse=False)
        else:
            self._app.subscribe(sort=event.key)

    @on(ProcessTable.WantRows)
    def _want_rows(self, event: ProcessTable.WantRows) -> None:
        # The page with the wanted row in its middle, so moving on either way
        # stays on it for a while.
        view = self._app.view
        limit = max(1, view.limit)
        total = self.table.total
        offset = max(0, min(event.index - limit // 2, total - limit))
        if offset != view.offset:
            self._app.subscribe(offset=offset)
        else:  # the page there is has no such row (a replay's recorded rows)
            self.table.stay()

    @on(CommandPane.Entered)
    def _limit_entered(self, event: CommandPane.Entered) -> None:
        # ``limit N``: rows per page. (The other commands go on to the app.)
        verb, _, rest = event.line.strip().partition(" ")
        if verb != "limit":
            return
        event.stop()
        rest = rest.strip()
        if not rest.isdigit() or not 1 <= int(rest) <= MAX_LIMIT:
            self.pane.say(f"usage: {LIMIT_USAGE}", error=True)
            return
        self._app.subscribe(limit=int(rest))

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
