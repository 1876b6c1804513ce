"""The process table: rows keyed by pid, updated in place.

Each sample changes only the cells whose values changed, removes the rows
that left and adds the rows that came; when the node's order differs from
the table's, the rows are re-ordered (not rebuilt). The highlighted pid
stays highlighted wherever its row moves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from rusm.net.observe.protocol import ProcessRow
from rusm.tui import format as fmt
from rusm.tui.model import trend

__all__ = ["COLUMNS", "Cell", "Column", "ProcessTable"]

Cell = str | Text


def _num(n: int) -> Text:
    return Text(fmt.count(n), justify="right")


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int
    field: str
    """The ProcessRow field the cell shows."""
    cell: Callable[[ProcessRow], Cell]
    sort: str | None
    """The subscription sort key this column sorts by, if any."""


COLUMNS: tuple[Column, ...] = (
    Column("pid", "PID", 14, "pid", lambda r: r.pid, "pid"),
    Column("label", "LABEL", 12, "label", lambda r: r.label or "", "label"),
    Column("mailbox", "MBOX", 6, "mailbox", lambda r: _num(r.mailbox), "mailbox"),
    Column("trend", "TREND", 8, "mailbox", lambda r: "", None),
    Column("status", "STATUS", 7, "status", lambda r: r.status, None),
    Column("links", "LINKS", 5, "links", lambda r: _num(r.links), "links"),
    Column("monitors", "MONS", 4, "monitors", lambda r: _num(r.monitors), "monitors"),
    Column("received", "RECV", 8, "received", lambda r: _num(r.received), "received"),
    Column("sent", "SENT", 8, "sent", lambda r: _num(r.sent), "sent"),
    Column("names", "NAMES", 16, "names", lambda r: ", ".join(r.names), None),
    Column("age", "AGE", 6, "age", lambda r: Text(fmt.duration(r.age), justify="right"), "age"),
)
_UPDATABLE = tuple(c for c in COLUMNS if c.key not in ("pid", "trend"))
TREND_WIDTH = 8


class ProcessTable(DataTable[Cell]):
    """Rows keyed by pid; :meth:`show` applies one sample's rows."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._rows: dict[str, ProcessRow] = {}
        self._trends: dict[str, str] = {}
        self._order: list[str] = []
        self._wanted: str | None = None
        """The pid the user selected (it may have left the table for now)."""
        self._placed: str | None = None
        """The pid under the cursor when the last sample was applied."""

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column.label, width=column.width, key=column.key)

    @property
    def selected_pid(self) -> str | None:
        """The pid of the highlighted row, if there is one."""
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        try:
            key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key
        except RowDoesNotExist:
            return None
        return key.value

    def show(self, rows: Sequence[ProcessRow], series: Callable[[str], Sequence[int]]) -> None:
        current = self.selected_pid
        if current != self._placed:  # the user moved the cursor since the last sample
            self._wanted = current
        selected = self._wanted
        wanted = [r.pid for r in rows]
        keep = set(wanted)
        for pid in [p for p in self._order if p not in keep]:
            self.remove_row(pid)
            del self._rows[pid], self._trends[pid]
        order = [p for p in self._order if p in keep]
        for row in rows:
            spark = trend(series(row.pid), TREND_WIDTH)
            old = self._rows.get(row.pid)
            if old is None:
                cells: list[Cell] = [c.cell(row) if c.key != "trend" else spark for c in COLUMNS]
                self.add_row(*cells, key=row.pid)
                order.append(row.pid)
            else:
                if old != row:
                    self._update(old, row)
                if self._trends[row.pid] != spark:
                    self.update_cell(row.pid, "trend", spark)
            self._rows[row.pid] = row
            self._trends[row.pid] = spark
        if order != wanted:
            rank = {pid: i for i, pid in enumerate(wanted)}
            self.sort("pid", key=rank.__getitem__)
        self._order = wanted
        if selected in keep:
            at = wanted.index(selected)
            if at != self.cursor_row:
                self.move_cursor(row=at, animate=False)
        # A selected pid that left the table is selected again when it returns,
        # unless the user moves the cursor in between.
        self._placed = self.selected_pid

    def _update(self, old: ProcessRow, new: ProcessRow) -> None:
        for column in _UPDATABLE:
            if getattr(old, column.field) != getattr(new, column.field):
                value: Cell = column.cell(new)
                if value != column.cell(old):
                    self.update_cell(new.pid, column.key, value)

    def select_pid(self, pid: str) -> bool:
        """Highlight ``pid``'s row; False if the table does not show it."""
        if pid not in self._rows:
            return False
        self.move_cursor(row=self._order.index(pid), animate=False)
        self._wanted = self._placed = pid
        return True

    def row_of(self, pid: str) -> ProcessRow | None:
        return self._rows.get(pid)
