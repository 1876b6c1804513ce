"""Completion for the command pane: command words, pids, names, factories, nodes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual.suggester import Suggester

from rusm.observe.protocol import SORT_KEYS
from rusm.tui.commands import VERBS

__all__ = ["CommandSuggester", "Completions"]


class Completions:
    """What may be typed where; the app refreshes it from samples and ``names``."""

    def __init__(self) -> None:
        self.pids: Sequence[str] = ()
        self.names: Sequence[str] = ()
        self.factories: Sequence[str] = ()
        self.nodes: Sequence[str] = ()

    def candidates(self, before: Sequence[str]) -> Iterable[str]:
        """Words that may follow the words ``before`` (the verb first)."""
        if not before:
            return VERBS
        verb, position = before[0], len(before)
        if position != 1:
            return ()
        match verb:
            case "send" | "kill" | "info" | "restart" | "terminate":
                return (*self.names, *self.pids)
            case "spawn":
                return self.factories
            case "detail":
                return ("on", "off")
            case "sort":
                return SORT_KEYS
            case "node":
                return self.nodes
        return ()

    def suggest(self, value: str) -> str | None:
        """``value`` with its last word completed, or None."""
        head, _, last = value.rpartition(" ")
        if not last and not head.strip():
            return None  # nothing typed yet: no verb is more likely than another
        # After "kill " (an empty last word) the first thing that fits is offered.
        for word in self.candidates(head.split()):
            if word.startswith(last) and word != last:
                return f"{head} {word}" if head else word
        return None


class CommandSuggester(Suggester):
    def __init__(self, completions: Completions) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.completions = completions

    async def get_suggestion(self, value: str) -> str | None:
        return self.completions.suggest(value)
