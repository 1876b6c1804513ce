"""The process table: rows keyed by pid, updated in place, drawn line by line.

A ScrollView with one cached Strip per row (toolong's approach), not a
DataTable: DataTable keys its render caches on one table-wide update counter
and re-lays out the screen on every row removal, so each sample would
re-render every visible cell (scripts/bench_tui.py measured 40+ ms a frame
for 200 rows). Here a sample rebuilds the strips of the rows that changed,
drops the rows that left, adds the rows that came, re-orders by the node's
order, and repaints once; the highlighted pid stays highlighted wherever its
row moves.

Keys: up/down, pgup/pgdn, home/end move; left/right scroll; enter opens the
highlighted process. Mouse: a click highlights a row, a click on the
highlighted row opens it, a click on a header sorts by that column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from rusm.net.observe.protocol import ProcessRow
from rusm.tui import format as fmt
from rusm.tui.messages import OpenProcess, SortBy
from rusm.tui.model import trend

__all__ = ["COLUMNS", "Column", "ProcessTable"]

TREND_WIDTH = 8


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int
    text: Callable[[ProcessRow, str], str]
    """The cell's text, from the row and its trend."""
    right: bool = False
    sort: str | None = None
    """The subscription sort key this column sorts by, if any."""


def _n(field: str) -> Callable[[ProcessRow, str], str]:
    return lambda row, _: fmt.count(getattr(row, field))


COLUMNS: tuple[Column, ...] = (
    Column("pid", "PID", 14, lambda r, _: r.pid, sort="pid"),
    Column("label", "LABEL", 12, lambda r, _: r.label or "", sort="label"),
    Column("mailbox", "MBOX", 6, _n("mailbox"), right=True, sort="mailbox"),
    Column("trend", "TREND", TREND_WIDTH, lambda _, spark: spark),
    Column("status", "STATUS", 7, lambda r, _: r.status),
    Column("links", "LINKS", 5, _n("links"), right=True, sort="links"),
    Column("monitors", "MONS", 4, _n("monitors"), right=True, sort="monitors"),
    Column("received", "RECV", 8, _n("received"), right=True, sort="received"),
    Column("sent", "SENT", 8, _n("sent"), right=True, sort="sent"),
    Column("names", "NAMES", 16, lambda r, _: ", ".join(r.names)),
    Column("age", "AGE", 6, lambda r, _: fmt.duration(r.age), right=True, sort="age"),
)
PADDING = 1
"""Blank cells on each side of a cell."""
WIDTH = sum(c.width + 2 * PADDING for c in COLUMNS)


def _cell(text: str, width: int, right: bool) -> str:
    if cell_len(text) > width:
        text = set_cell_size(text, width - 1) + "…"
    elif right:
        text = " " * (width - cell_len(text)) + text
    pad = " " * PADDING
    return pad + set_cell_size(text, width) + pad


class ProcessTable(ScrollView, can_focus=True):
    """Rows keyed by pid; :meth:`show` applies one sample's rows."""

    COMPONENT_CLASSES = {
        "process-table--header",
        "process-table--cursor",
        "process-table--cursor-blurred",
    }
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "move(-1_000_000)", "First", show=False),
        Binding("end", "move(1_000_000)", "Last", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        Binding("enter", "open", "Open", show=False),
    ]

    cursor_row = reactive(0, always_update=True)
    """Index of the highlighted row."""

    class Highlighted(Message):
        """The highlighted pid changed (by the user or by a sample)."""

        def __init__(self, pid: str | None) -> None:
            super().__init__()
            self.pid = pid

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: dict[str, ProcessRow] = {}
        self._strips: dict[str, Strip] = {}
        self._trends: dict[str, str] = {}
        self._order: list[str] = []
        self._wanted: str | None = None
        """The pid the user highlighted (it may have left the table for now)."""
        self._placed: str | None = None
        """The pid under the cursor when the last sample was applied."""
        self.rebuilt = 0
        """Row strips built so far (unchanged rows are not rebuilt)."""
        self._highlighted: str | None = None

    # -- data ------------------------------------------------------------------

    @property
    def pids(self) -> list[str]:
        """The pids shown, top to bottom."""
        return list(self._order)

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def selected_pid(self) -> str | None:
        """The pid of the highlighted row, if there is one."""
        if 0 <= self.cursor_row < len(self._order):
            return self._order[self.cursor_row]
        return None

    def row_of(self, pid: str) -> ProcessRow | None:
        return self._rows.get(pid)

    def get_row_at(self, index: int) -> list[str]:
        """The cells' texts of the row at ``index`` (as DataTable has it; pid first)."""
        pid = self._order[index]
        return [c.text(self._rows[pid], self._trends[pid]).strip() for c in COLUMNS]

    def cell_text(self, pid: str, column: str) -> str:
        """What the table shows in one cell (stripped)."""
        col = next(c for c in COLUMNS if c.key == column)
        return col.text(self._rows[pid], self._trends[pid]).strip()

    def show(self, rows: Sequence[ProcessRow], series: Callable[[str], Sequence[int]]) -> None:
        current = self.selected_pid
        if current != self._placed:  # the user moved the cursor since the last sample
            self._wanted = current
        for pid in set(self._order) - {r.pid for r in rows}:
            del self._rows[pid], self._strips[pid], self._trends[pid]
        for row in rows:
            spark = trend(series(row.pid), TREND_WIDTH)
            if self._rows.get(row.pid) != row or self._trends.get(row.pid) != spark:
                self._rows[row.pid] = row
                self._trends[row.pid] = spark
                self._strips[row.pid] = self._build(row, spark)
        self._order = [r.pid for r in rows]
        self.virtual_size = Size(WIDTH, len(self._order) + 1)
        at = self._order.index(self._wanted) if self._wanted in self._rows else None
        if at is not None:
            self.cursor_row = at
        elif self.cursor_row >= len(self._order):
            self.cursor_row = max(0, len(self._order) - 1)
        # A highlighted pid that left the table is highlighted again when it
        # returns, unless the user moves the cursor in between.
        self._placed = self.selected_pid
        self._announce()
        self.refresh()

    def _build(self, row: ProcessRow, spark: str) -> Strip:
        self.rebuilt += 1
        # One segment per cell, unstyled: render_line styles the whole line.
        return Strip([Segment(_cell(c.text(row, spark), c.width, c.right)) for c in COLUMNS],
                     WIDTH)

    def select_pid(self, pid: str) -> bool:
        """Highlight ``pid``'s row; False if the table does not show it."""
        if pid not in self._rows:
            return False
        self.cursor_row = self._order.index(pid)
        self._wanted = self._placed = pid
        return True

    # -- drawing ---------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("process-table--header")
            strip = Strip([Segment(_cell(c.label, c.width, c.right), style) for c in COLUMNS],
                          WIDTH)
        else:
            index = scroll_y + y - 1
            if index >= len(self._order):
                return Strip.blank(width, base)
            style = base
            if index == self.cursor_row:
                name = "process-table--cursor" if self.has_focus else (
                    "process-table--cursor-blurred")
                style = base + self.get_component_rich_style(name)
            strip = self._strips[self._order[index]].apply_style(style)
        return strip.crop_extend(scroll_x, scroll_x + width, base).apply_offsets(scroll_x, y)

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        self._announce()

    def _announce(self) -> None:
        pid = self.selected_pid
        if pid != self._highlighted:
            self._highlighted = pid
            self.post_message(self.Highlighted(pid))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- input -----------------------------------------------------------------

    def action_move(self, step: int) -> None:
        if self._order:
            self.cursor_row = max(0, min(len(self._order) - 1, self.cursor_row + step))

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.scrollable_content_region.height - 2))

    def action_open(self) -> None:
        pid = self.selected_pid
        if pid is not None:
            self.post_message(OpenProcess(pid))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            self._header_clicked(offset.x + round(self.scroll_x))
            return
        index = round(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self._order):
            if index == self.cursor_row:
                self.action_open()
            else:
                self.cursor_row = index

    def _header_clicked(self, x: int) -> None:
        for column in COLUMNS:
            x -= column.width + 2 * PADDING
            if x < 0:
                if column.sort is not None:
                    self.post_message(SortBy(column.sort))
                return
