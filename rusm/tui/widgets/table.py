"""The process table: rows keyed by pid, updated in place, drawn line by line.

A ScrollView with one cached Strip per row (toolong's approach), not a
DataTable: DataTable keys its render caches on one table-wide update counter
and re-lays out the screen on every row removal, so each sample would
re-render every visible cell (scripts/bench_tui.py measured 40+ ms a frame
for 200 rows). Here a sample rebuilds the strips of the rows that changed,
drops the rows that left, adds the rows that came, re-orders by the node's
order, and repaints once; the highlighted pid stays highlighted wherever its
row moves. When it leaves the sample (it exited, or its sort position left
the page), its last row stays under the cursor, marked ``exited`` or
``moved``, until the user moves: the cursor never lands on another process by
itself, so ``k`` cannot aim at one the user did not pick.

The rows are one page (``offset``) of the node's ``total``: moving past either
end of the page posts :class:`ProcessTable.WantRows` for the row wanted, and
the cursor lands on it once a sample brings it.

Keys: up/down, pgup/pgdn, home/end move; left/right scroll sideways a whole
column at a time, PID staying first (the columns dropped for want of width
come into view, in table order); enter opens the
highlighted process. Mouse: a click highlights a row, a click on the
highlighted row opens it, a click on a header sorts by that column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from rusm.observe.protocol import ProcessRow
from rusm.tui import format as fmt
from rusm.tui.messages import OpenProcess, SortBy
from rusm.tui.model import trend

__all__ = ["COLUMNS", "PRIORITY", "Column", "ProcessTable", "layout"]

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
    grow: int = 0
    """Cells it may take beyond ``width`` when the table has room."""


def _percent(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _n(field: str) -> Callable[[ProcessRow, str], str]:
    return lambda row, _: fmt.count(getattr(row, field))


COLUMNS: tuple[Column, ...] = (
    Column("pid", "PID", 14, lambda r, _: r.pid, sort="pid"),
    Column("label", "LABEL", 12, lambda r, _: r.label or "", sort="label", grow=12),
    Column("mailbox", "MBOX", 6, _n("mailbox"), right=True, sort="mailbox"),
    Column("trend", "TREND", TREND_WIDTH, lambda _, spark: spark),
    Column("status", "STATUS", 8, lambda r, _: r.status, sort="status"),
    Column("waiting", "WAITS ON", 14, lambda r, _: r.waiting, grow=16),
    Column("cpu", "CPU%", 5, lambda r, _: _percent(r.cpu), right=True, sort="cpu"),
    Column("links", "LINKS", 5, _n("links"), right=True, sort="links"),
    Column("monitors", "MONS", 4, _n("monitors"), right=True, sort="monitors"),
    Column("received", "RECV", 8, _n("received"), right=True, sort="received"),
    Column("sent", "SENT", 8, _n("sent"), right=True, sort="sent"),
    Column("names", "NAMES", 16, lambda r, _: ", ".join(r.names), sort="names", grow=1000),
    Column("age", "AGE", 6, lambda r, _: fmt.duration(r.age), right=True, sort="age"),
    Column("memory", "MEM", 7, _n("memory"), right=True, sort="memory"),
)
PADDING = 1
"""Blank cells on each side of a cell."""
WIDTH = sum(c.width + 2 * PADDING for c in COLUMNS)
"""Cells every column takes at its own width."""
PRIORITY = ("pid", "mailbox", "label", "status", "waiting", "received", "sent", "cpu",
            "names", "trend", "age", "links", "monitors", "memory")
"""Which columns stay when the table is narrow, most useful first."""

Layout = tuple[tuple[Column, int], ...]
"""The columns shown, in table order, each with its width."""


def layout(width: int, skip: int = 0) -> Layout:
    """The columns that fit in ``width`` cells, whole, never cut; room to
    spare goes to LABEL (up to 24), WAITS ON (up to 30), then NAMES.

    ``skip`` 0: columns are dropped by PRIORITY. ``skip`` N (scrolled
    sideways): PID stays first, then the columns after the N that follow it,
    in table order, as many as fit."""
    by_key = {c.key: c for c in COLUMNS}
    order = PRIORITY if skip <= 0 else (COLUMNS[0].key, *(c.key for c in COLUMNS[1 + skip:]))
    shown: dict[str, int] = {}
    used = 0
    for key in order:
        need = by_key[key].width + 2 * PADDING
        if skip > 0 and shown and used + need > width:
            break  # scrolled: a run of columns in table order, no gaps
        if used + need <= width or not shown:
            shown[key] = by_key[key].width
            used += need
    spare = max(0, width - used)
    for column in COLUMNS:
        if column.key in shown and column.grow and spare:
            more = min(spare, column.grow)
            shown[column.key] += more
            spare -= more
    return tuple((c, shown[c.key]) for c in COLUMNS if c.key in shown)


def _layout_width(columns: Layout) -> int:
    return sum(w + 2 * PADDING for _, w in columns)


GONE = Style(dim=True, italic=True)
"""How a kept row whose process left the sample is drawn."""


def _short(text: str, width: int) -> str:
    """A number too wide for its cell, in fewer digits (``1.2M``), never cut."""
    try:
        n = int(text.replace(",", ""))
    except ValueError:
        return text
    for unit, size in (("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)):
        for digits in (1, 0):
            short = f"{n / size:.{digits}f}{unit}"
            if cell_len(short) <= width:
                return short
    return text


def _cell(text: str, width: int, right: bool) -> str:
    if right and cell_len(text) > width:
        text = _short(text, width)
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
        Binding("left", "sideways(-1)", "Columns left", show=False),
        Binding("right", "sideways(1)", "Columns right", show=False),
        Binding("enter", "open", "Open", show=False),
    ]

    cursor_row = reactive(0, always_update=True)
    """Index of the highlighted row."""

    class WantRows(Message):
        """The user moved to row ``index`` (of all), outside the page shown."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

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
        self.first = 0
        """Position of the first row shown among all ``total`` (the page's offset)."""
        self.total = 0
        """Rows there are (the node's count of matching processes)."""
        self._pending: int | None = None
        """The row (of all) the user moved to, until a sample brings its page."""
        self._kept: str | None = None
        """The pid of the row kept under the cursor after it left the sample."""
        self.skip = 0
        """Columns after PID scrolled past sideways (0: laid out by priority)."""
        self.columns: Layout = layout(WIDTH)
        """The columns shown, each with its width (they follow the table's width)."""

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
        """The row shown for ``pid``; None if none is, or if it is only kept
        under the cursor after it left the sample."""
        return None if pid == self._kept else self._rows.get(pid)

    @property
    def kept(self) -> ProcessRow | None:
        """The row kept under the cursor after its process left the sample
        (status ``exited`` or ``moved``), if there is one."""
        return self._rows.get(self._kept) if self._kept is not None else None

    def get_row_at(self, index: int) -> list[str]:
        """The cells' texts of the row at ``index`` (as DataTable has it; pid first)."""
        pid = self._order[index]
        return [c.text(self._rows[pid], self._trends[pid]).strip() for c in COLUMNS]

    def cell_text(self, pid: str, column: str) -> str:
        """What the table shows in one cell (stripped)."""
        col = next(c for c in COLUMNS if c.key == column)
        return col.text(self._rows[pid], self._trends[pid]).strip()

    def show(
        self, rows: Sequence[ProcessRow], series: Callable[[str], Sequence[int]], *,
        offset: int = 0, total: int | None = None, exited: Sequence[str] = (),
        same_view: bool = True,
    ) -> None:
        """Apply one sample's rows (page ``offset`` of ``total``). ``exited``:
        pids whose processes exited; ``same_view``: whether the rows are
        sorted and filtered as the last sample's were (if not, a highlighted
        row that left is not kept, unless it exited)."""
        current = self.selected_pid
        if current != self._placed or self._wanted is None:
            # The user moved the cursor since the last sample (or the first
            # row was highlighted by default): that process is the selection.
            self._wanted = current
        self.first, self.total = offset, len(rows) if total is None else total
        incoming = {r.pid for r in rows}
        keep = self._keep(incoming, exited, same_view)
        self._fit()  # before the strips are built: a scrollbar may have come or gone
        for pid in set(self._order) - incoming - {self._kept}:
            del self._rows[pid], self._strips[pid], self._trends[pid]
        for row in rows:
            spark = trend(series(row.pid), TREND_WIDTH)
            if self._rows.get(row.pid) != row or self._trends.get(row.pid) != spark:
                self._rows[row.pid] = row
                self._trends[row.pid] = spark
                self._strips[row.pid] = self._build(row, spark)
        self._order = [r.pid for r in rows]
        if keep is not None and self._kept is not None:
            self._order.insert(min(keep, len(self._order)), self._kept)
        self.virtual_size = Size(_layout_width(self.columns), len(self._order) + 1)
        pending = self._pending
        if pending is not None and offset <= pending < offset + len(rows):
            self._pending = None
            self._wanted = rows[pending - offset].pid
        elif pending is not None:
            # The feed has no page with that row (a replay has only the rows
            # it recorded; the rows went): the nearest row of this page.
            self._pending = None
            if rows:
                near = rows[0] if pending < offset else rows[-1]
                self._wanted = near.pid
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

    def _keep(self, incoming: set[str], exited: Sequence[str], same_view: bool) -> int | None:
        """Where to keep the highlighted row that left the sample, if it is
        to be kept (the user has not moved since); drops a kept row otherwise."""
        wanted = self._wanted
        if self._kept is not None and (self._kept != wanted or wanted in incoming):
            self._kept = None  # show() drops its row
        if wanted is None or wanted in incoming or wanted not in self._rows:
            return None
        if self._pending is not None:
            return None  # the user is paging away from it
        gone = wanted in exited or (self._kept == wanted
                                    and self._rows[wanted].status == "exited")
        if not same_view and not gone:
            self._kept = None
            return None  # a new sort, filter or page left it out: nothing to keep
        row = self._rows[wanted]
        if self._kept is None or (wanted in exited and row.status != "exited"):
            row = replace(row, status="exited" if wanted in exited else "moved")
            self._rows[wanted] = row
            self._strips[wanted] = self._build(row, self._trends[wanted], GONE)
        self._kept = wanted
        return self._order.index(wanted) if wanted in self._order else 0

    def _build(self, row: ProcessRow, spark: str, style: Style | None = None) -> Strip:
        self.rebuilt += 1
        # One segment per cell, unstyled (but for a kept row): render_line
        # styles the whole line.
        return Strip(
            [Segment(_cell(c.text(row, spark), w, c.right), style) for c, w in self.columns],
            _layout_width(self.columns),
        )

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def watch_show_vertical_scrollbar(self, shown: bool) -> None:
        # The scrollbar takes cells from the columns: lay them out again once
        # the new region is known.
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        """Lay the columns out for the width there is now."""
        if not self.is_mounted:
            return
        columns = layout(self.scrollable_content_region.width, self.skip)
        if columns == self.columns:
            return
        self.columns = columns
        for pid, row in self._rows.items():
            style = GONE if pid == self._kept else None
            self._strips[pid] = self._build(row, self._trends[pid], style)
        self.virtual_size = Size(_layout_width(columns), len(self._order) + 1)
        self.refresh()

    def column_x(self, key: str) -> int | None:
        """The first cell of column ``key``'s header, if it is shown."""
        x = 0
        for column, width in self.columns:
            if column.key == key:
                return x
            x += width + 2 * PADDING
        return None

    def select_pid(self, pid: str) -> bool:
        """Highlight ``pid``'s row; False if the table does not show it."""
        if pid not in self._rows or pid not in self._order:
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
            strip = Strip(
                [Segment(_cell(self._label(c), w, c.right), style) for c, w in self.columns],
                _layout_width(self.columns),
            )
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

    def _label(self, column: Column) -> str:
        """A header's text; PID's says when columns are scrolled past (``PID «``)."""
        return f"{column.label} «" if column is COLUMNS[0] and self.skip else column.label

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
        """Move ``step`` rows; past the page, ask for the page with that row."""
        if not self._order:
            return
        here = self._pending if self._pending is not None else self.first + self.cursor_row
        last = max(self.total, self.first + len(self._order)) - 1
        target = max(0, min(last, here + step))
        if self.first <= target < self.first + len(self._order):
            self._pending = None
            self.cursor_row = target - self.first
        elif target != here:
            self._pending = target
            self.post_message(self.WantRows(target))

    def stay(self) -> None:
        """Give up the row asked for with WantRows: the feed has no page for it."""
        self._pending = None

    def action_sideways(self, step: int) -> None:
        """Scroll ``step`` whole columns sideways; PID stays first. Right stops
        once the last column is in view; left back to 0 lays out by priority."""
        skip = max(0, self.skip + step)
        if step > 0:
            shown = {c.key for c, _ in self.columns}
            if COLUMNS[-1].key in shown and (self.skip > 0 or len(shown) == len(COLUMNS)):
                return  # everything to the right is in view already
            skip = min(skip, len(COLUMNS) - 2)
        if skip != self.skip:
            self.skip = skip
            self.columns = ()  # force _fit to lay out again
            self._fit()
            self.refresh()

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
        for column, width in self.columns:
            x -= width + 2 * PADDING
            if x < 0:
                if column.sort is not None:
                    self.post_message(SortBy(column.sort))
                return
