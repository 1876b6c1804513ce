"""The trace view: every message one process sends and receives, live.

It starts a trace on the node (bounded: ``count`` messages or ``seconds``
seconds, whichever comes first), reads it every ``POLL_EVERY`` seconds and
shows a line per message: the time (UTC, the node's clock), ``in`` or
``out``, the peer and the message. The status line says ``tracing…`` until
the node says why the trace stopped. Leaving the view stops a trace still
running (best effort: the node also stops one nobody reads).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, RichLog, Static

from rusm.observe.protocol import CommandError
from rusm.tui import format as fmt
from rusm.tui.calls import TRANSIENT, NodeCalls, TraceStarted
from rusm.tui.model import TopModel
from rusm.tui.screens.process import describe_error
from rusm.tui.widgets.header import NodeHeader

if TYPE_CHECKING:
    from textual.worker import WorkType

__all__ = ["TraceScreen", "trace_line"]

_DIRECTIONS = {"in": "bold cyan", "out": "bold blue"}
KEPT = 10_000
"""Lines the view keeps (a trace's largest count)."""


def trace_line(event: dict[str, Any]) -> Text:
    """``HH:MM:SS.mmm  in   <peer>  term``, the direction and peer in its colour."""
    when = event.get("time")
    clock = fmt.clock(when) if isinstance(when, int | float) else "--:--:--.---"
    direction = str(event.get("direction") or "?")
    text = Text(f"{clock}  ")
    text.append(f"{direction:<4} {event.get('peer')!s:<14}", style=_DIRECTIONS.get(direction, ""))
    text.append(f" {event.get('term')}")
    return text


class TraceScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back (stops the trace)"),
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]
    POLL_EVERY = 0.25
    """Seconds between two reads of the trace."""

    def __init__(self, calls: NodeCalls, pid: str, count: int, seconds: float,
                 model: TopModel, target: str, *, label: str | None = None) -> None:
        super().__init__(classes="trace-screen")
        self.calls = calls
        self.pid = pid
        self.count = count
        self.seconds = seconds
        self.label = label
        self.model = model
        self.target = target
        self.started: TraceStarted | None = None
        self.stopped: str | None = None
        """Why the trace ended, once the node says."""
        self.lines: list[str] = []
        """Every message's line, as text, in order."""
        self._texts: list[Text] = []
        self.next = 0
        self._polling = False
        self._timer: Timer | None = None

    @property
    def running(self) -> bool:
        return self.started is not None and self.stopped is None

    def compose(self) -> ComposeResult:
        yield NodeHeader(classes="header")
        yield Static(self._title(), classes="title")
        yield RichLog(max_lines=KEPT, wrap=True, markup=False, highlight=False,
                      classes="trace-lines")
        yield Static("starting the trace…", classes="trace-status", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show(self.model)
        self.query_one(RichLog).focus()
        self.start()

    def show(self, model: TopModel) -> None:
        self.model = model
        self.query_one(NodeHeader).show(model, self.target)

    def _title(self) -> Text:
        n = len(self.lines)
        title = Text(f" trace {self.pid}", style="bold")
        if self.label:
            title.append(f" {self.label}", style="bold cyan")
        title.append(f" — {fmt.count(n)} message{'s' if n != 1 else ''}, up to "
                     f"{fmt.count(self.count)} or {self.seconds:g} s")
        return title

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one(".trace-status", Static)
        status.set_class(error, "-error")
        status.update(text)

    @work(group="trace", exit_on_error=False)
    async def start(self) -> None:
        try:
            started = await self.calls.trace(self.pid, self.count, self.seconds)
        except Exception as e:  # shown, never raised into the app
            self._status(f"cannot trace {self.pid}: {describe_error(e)}", error=True)
            return
        self.started = started
        self.pid, self.count, self.seconds = started.pid, started.count, started.seconds
        self.query_one(".title", Static).update(self._title())
        self._status("tracing…")
        self.poll()
        self._timer = self.set_interval(self.POLL_EVERY, self.poll)

    @work(group="trace-read", exit_on_error=False)
    async def poll(self) -> None:
        """Read the messages traced since the last read."""
        started = self.started
        if started is None or self.stopped is not None or self._polling:
            return
        self._polling = True
        try:
            page = await self.calls.trace_read(started.trace, self.next)
        except CommandError as e:
            if e.kind in TRANSIENT:  # the link is down: read again later
                self._status(e.message, error=True)
            else:  # the node knows no such trace (any more): it is over
                self._stop(f"stopped: {e.message}", error=True)
            return
        except Exception as e:  # shown, never raised into the app; read again later
            self._status(describe_error(e), error=True)
            return
        finally:
            self._polling = False
        self.next = page.next
        view = self.query_one(RichLog)
        for event in page.events:
            line = trace_line(event)
            self.lines.append(line.plain)
            self._texts.append(line)
            view.write(line, expand=True)
        if page.events:
            self.query_one(".title", Static).update(self._title())
        if page.stopped is not None:
            self.stopped = page.stopped
            self._stop(f"stopped: {page.stopped}")
        else:
            self._status("tracing…")

    def _stop(self, text: str, *, error: bool = False) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self.stopped is None:
            self.stopped = text
        self._status(text, error=error)

    def on_resize(self) -> None:
        # The lines were wrapped to the old width: wrap them again.
        self.call_after_refresh(self._rewrite)

    def _rewrite(self) -> None:
        view = self.query_one(RichLog)
        view.clear()
        for line in self._texts:
            view.write(line, expand=True, scroll_end=True)

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_unmount(self) -> None:
        # However the view goes (esc, attaching elsewhere, quitting): a trace
        # still running is stopped. In the app's worker, not this screen's:
        # it outlives the screen. (As the app closes, it stops them itself.)
        started = self.started
        if started is not None and self.running:
            untrace: WorkType[None] = partial(self.calls.untrace, started.trace)
            self.app.run_worker(untrace, group="untrace", exit_on_error=False)
