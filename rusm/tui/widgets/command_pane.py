"""The command pane: a command line with history and completion, and a
message line where results and errors appear."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static

from rusm.tui.completion import CommandSuggester, Completions

__all__ = ["HINT", "CommandInput", "CommandPane"]

HINT = "press : for a command (send, spawn, kill, info…), ? for every key"


class CommandInput(Input):
    """An Input with history (up/down) and tab to take the suggestion."""

    BINDINGS = [
        Binding("enter", "submit", "Run"),
        Binding("escape", "dismiss", "Close"),
        Binding("up", "history(-1)", "History", key_display="↑↓"),
        Binding("down", "history(1)", "Next command", show=False),
        Binding("tab", "complete", "Complete"),
    ]

    class Dismissed(Message):
        """The user closed the command line without running anything."""

    def __init__(self, completions: Completions, *, id: str | None = None) -> None:
        super().__init__(
            placeholder="command (help lists them); up/down: history, tab: complete",
            suggester=CommandSuggester(completions),
            select_on_focus=False,
            id=id,
        )
        self.history: list[str] = []
        self._at = 0

    def remember(self, line: str) -> None:
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
        self._at = len(self.history)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._at = max(0, min(len(self.history), self._at + step))
        self.value = self.history[self._at] if self._at < len(self.history) else ""
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        self.action_end()
        self.action_cursor_right()  # at the end, this takes the suggestion

    def action_dismiss(self) -> None:
        self.post_message(self.Dismissed())


class CommandPane(Vertical):
    """Posts :class:`CommandPane.Entered` with each command line typed.

    Enter on an empty line, or escape, closes the command line."""

    class Entered(Message):
        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    class Closed(Message):
        """The command line closed (run or dismissed): focus may go back."""

    class Filtering(Message):
        """The filter line (``/``) changed, or was dismissed (text ""): apply it now."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, completions: Completions, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.completions = completions
        self.one_shot = False
        self.live_filter = False
        """Opened by ``/``: the filter applies as it is typed; escape clears it."""

    def compose(self) -> ComposeResult:
        yield CommandInput(self.completions, id="command-input")
        yield Static(HINT, id="message", markup=False)

    @property
    def input(self) -> CommandInput:
        return self.query_one(CommandInput)

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def open(self, text: str = "", *, one_shot: bool = False, live_filter: bool = False) -> None:
        """Open the command line with ``text`` in it. It stays open for the
        next command (escape closes it), or closes after one when ``one_shot``.
        With ``live_filter`` it posts :class:`Filtering` as ``filter TEXT`` is edited."""
        self.one_shot = one_shot or live_filter
        self.live_filter = live_filter
        self.add_class("-open")
        self.input.value = text
        self.input.cursor_position = len(text)
        # Focus now, not a tick later as ``focus()`` does: the app routes the
        # very next key to the focused widget.
        self.screen.set_focus(self.input)

    def close(self) -> None:
        self.live_filter = False
        self.remove_class("-open")
        self.post_message(self.Closed())

    def say(self, text: str, *, error: bool = False) -> None:
        """Show a result (or an error) on the message line."""
        message = self.query_one("#message", Static)
        message.set_class(error, "-error")
        message.update(text)

    @property
    def message(self) -> str:
        return str(self.query_one("#message", Static).content)

    @on(Input.Submitted, "#command-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        line = event.value.strip()
        self.input.remember(line)
        self.input.value = ""
        if self.one_shot or not line:
            self.close()
        if line:
            self.post_message(self.Entered(line))

    @on(Input.Changed, "#command-input")
    def _changed(self, event: Input.Changed) -> None:
        verb, space, text = event.value.partition(" ")
        if self.live_filter and verb == "filter" and (space or not text):
            self.post_message(self.Filtering(text.strip()))

    @on(CommandInput.Dismissed)
    def _dismissed(self, event: CommandInput.Dismissed) -> None:
        event.stop()
        if self.live_filter:
            self.post_message(self.Filtering(""))
        self.live_filter = False  # before the value changes: clearing it is no filter to apply
        self.input.value = ""
        self.close()
