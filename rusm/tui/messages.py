"""Messages screens post up to the app (attributes down, messages up)."""

from __future__ import annotations

from textual.message import Message

__all__ = ["Attach", "FeedUpdated", "KillProcess", "OpenProcess", "SortBy", "TraceProcess"]


class FeedUpdated(Message):
    """The model took new events; render it. Coalesces: one render per burst."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FeedUpdated)


class OpenProcess(Message):
    def __init__(self, pid: str) -> None:
        super().__init__()
        self.pid = pid


class KillProcess(Message):
    """Ask (confirm first) to kill ``pid``."""

    def __init__(self, pid: str) -> None:
        super().__init__()
        self.pid = pid


class SortBy(Message):
    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


class Attach(Message):
    """The user picked another node to attach to."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node


class TraceProcess(Message):
    """Trace ``pid``'s messages (with the default count and time)."""

    def __init__(self, pid: str, label: str | None = None) -> None:
        super().__init__()
        self.pid = pid
        self.label = label
