"""Charts over time: a title line with the latest value, and a sparkline."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from rusm.tui import format as fmt
from rusm.tui.model import TopModel

__all__ = ["Chart", "Charts"]


class Chart(Vertical):
    """One series: ``title  latest (max M)`` over a sparkline."""

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="chart")
        self.title = title
        self._shown = ""

    def compose(self) -> ComposeResult:
        yield Label(self.title, classes="chart-title")
        yield Sparkline([], classes="chart-line")

    def show(self, values: Sequence[int], title: str | None = None) -> None:
        if title is not None:
            self.title = title
        text = self.title
        if values:
            text += f" {fmt.count(values[-1])} max {fmt.count(max(values))}"
        label = self.query_one(".chart-title", Label)
        if text != self._shown:
            self._shown = text
            label.update(text, layout=False)  # fixed size: no layout pass per sample
        # The renderable scales from the minimum; a leading 0 scales from zero.
        self.query_one(".chart-line", Sparkline).data = [0, *values] if values else []


class Charts(Horizontal):
    """Process count, total mailbox depth, the event loop's lag, and the
    selected process's mailbox."""

    def compose(self) -> ComposeResult:
        yield Chart("procs", id="chart-processes")
        yield Chart("mailboxes", id="chart-mailbox")
        yield Chart("loop lag ms", id="chart-lag")
        yield Chart("selected", id="chart-selected")

    _shown: tuple[int, int, str | None] | None = None

    def show(self, model: TopModel, selected: str | None) -> None:
        if self._shown == (id(model), model.samples, selected):
            return  # nothing new to draw
        self._shown = (id(model), model.samples, selected)
        self.query_one("#chart-processes", Chart).show(model.processes)
        self.query_one("#chart-mailbox", Chart).show(model.mailbox)
        self.query_one("#chart-lag", Chart).show(model.lag)
        series = model.row_series(selected) if selected else ()
        title = f"{selected} mbox" if selected else "no process selected"
        self.query_one("#chart-selected", Chart).show(series, title)
