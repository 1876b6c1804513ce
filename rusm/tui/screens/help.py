"""The help screen: every key and every command."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from rusm.observe.protocol import SORT_KEYS
from rusm.tui.commands import USAGE
from rusm.tui.screens.main import LIMIT_USAGE

__all__ = ["KEYS", "HelpScreen"]

Section = tuple[str, tuple[tuple[str, str], ...]]

KEYS: tuple[Section, ...] = (
    ("main screen", (
        ("↑ ↓ pgup pgdn", "move; past the page: more"),
        ("home / end", "first / last process"),
        ("← →", "columns sideways; PID stays"),
        ("enter", "open the process (or click)"),
        ("s / S", "next sort key / reverse"),
        ("click a header", "sort by it; again: reverse"),
        ("/", "filter pid, label, name; !x: not x"),
        ("d", "detail on/off: rows or totals"),
        ("space", "pause / resume (jump to now)"),
        ("k", "kill the selected process"),
        ("n", "cluster view: nodes, attach"),
        ("L", "the node's event log"),
        ("T", "supervision tree"),
        (":", "command line"),
        ("?", "this help"),
        ("q", "quit"),
    )),
    ("process view", (
        ("↑ ↓ enter", "follow a link or a monitor"),
        ("r", "refresh its info"),
        ("k", "kill it"),
        ("t", "trace its messages"),
        ("esc", "back"),
    )),
    ("cluster view", (
        ("enter", "attach to the node"),
        ("r", "refresh the list"),
        ("esc", "back"),
    )),
    ("tree view", (
        ("enter", "open the process"),
        ("space", "fold / unfold a supervisor"),
        ("R / x", "restart / terminate the child"),
        ("K", "kill it (with its subtree)"),
        ("r", "refresh; esc: back"),
    )),
    ("log view", (
        ("type", "show only lines with the text"),
        ("pgup / pgdn", "scroll; at the end: follow"),
        ("esc", "back"),
    )),
    ("trace view", (
        ("esc", "stop the trace, back"),
    )),
    ("replay (--replay FILE)", (
        ("space", "hold / play on"),
        (", / .", "step a sample back / on"),
        ("[ / ]", "jump a tenth back / on"),
        ("< / >", "half / double speed"),
    )),
)

SHELL: tuple[Section, ...] = (
    ("command line", (
        ("enter / esc", "run / close"),
        ("↑ ↓", "history"),
        ("tab / →", "take the suggestion"),
    )),
    ("kill confirmation", (
        ("y / n, esc", "kill / keep it"),
    )),
)

NOTES = (
    f"KEY: {', '.join(SORT_KEYS)}.",
    "TERM, ARGS, REASON: Python literals",
    "({'job': 1}, [1, 'x'], 'stop'); ARGS may be",
    "space-separated; a bare-word REASON is text.",
    "Changes (send, spawn, kill, reload, purge,",
    "restart, terminate) go to the audit log.",
)


def _grid(sections: tuple[Section, ...]) -> Group:
    parts: list[RenderableType] = []
    for i, (section, keys) in enumerate(sections):
        parts.append(Text(("\n" if i else "") + section, style="bold underline"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True, width=15)
        grid.add_column(no_wrap=True)
        for key, what in keys:
            grid.add_row(key, what)
        parts.append(grid)
    return Group(*parts)


def _commands() -> Group:
    lines = [Text(""), Text("commands", style="bold underline")]
    lines += [Text(usage, style="bold") for usage in (*USAGE.values(), LIMIT_USAGE)]
    lines += [Text(note, style="dim") for note in NOTES]
    return Group(_grid(SHELL), *lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", key_display="?"),
        Binding("q", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Text("rusm top: keys and commands (esc closes)", style="bold"),
                         id="help-title")
            with Horizontal(id="help-columns"):
                yield Static(_grid(KEYS), classes="help-column")
                yield Static(_commands(), classes="help-column")
