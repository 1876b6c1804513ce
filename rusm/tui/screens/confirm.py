"""Confirmations: nothing is killed, reloaded or purged until the user says yes."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

__all__ = ["ConfirmAction", "ConfirmKill"]


class _Confirm(ModalScreen[bool]):
    """A yes/no question; "no" has the focus. Dismisses with the answer."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No"),
    ]

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class ConfirmKill(_Confirm):
    """Dismisses with True to kill, False to keep the process."""

    def __init__(self, pid: str, *, label: str | None, node: str, reason: str) -> None:
        super().__init__()
        self.pid, self.label, self.node, self.reason = pid, label, node, reason

    def compose(self) -> ComposeResult:
        question = Text.assemble("Kill ", (self.pid, "bold"))
        if self.label:
            question.append(f" ({self.label})")
        question.append(f" on {self.node}?")
        with Vertical(id="confirm-box"):
            yield Static(question, id="confirm-question")
            yield Static(f"exit reason: {self.reason}. Linked processes get the exit signal.",
                         id="confirm-detail", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button("Kill (y)", variant="error", id="yes")
                yield Button("Keep (n)", variant="primary", id="no")


class ConfirmAction(_Confirm):
    """Dismisses with True to go ahead (a reload, a purge), False not to."""

    def __init__(self, question: str, detail: str, verb: str) -> None:
        super().__init__()
        self.question, self.detail, self.verb = question, detail, verb

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-question", markup=False)
            yield Static(self.detail, id="confirm-detail", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.verb} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", variant="primary", id="no")
