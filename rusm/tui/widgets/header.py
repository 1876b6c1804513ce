"""The two header lines: which node, whether it is there, and how busy it is."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from rusm.tui import format as fmt
from rusm.tui.model import TopModel

__all__ = ["NodeHeader"]

_STATE_STYLE = {
    "connected": "bold green",
    "connecting": "bold yellow",
    "disconnected": "bold red",
    "closed": "bold red",
}


class NodeHeader(Static):
    """Node, uptime, connection state, process count, rates and peers."""

    _shown = ""

    def show(self, model: TopModel, target: str) -> None:
        sample, status = model.sample, model.status
        self.set_class(status.state in ("disconnected", "closed"), "-down")
        first = Text()
        first.append(f" {sample.node if sample else target} ", style="bold reverse")
        first.append("  ● ", style=_STATE_STYLE[status.state])
        first.append(status.state, style=_STATE_STYLE[status.state])
        if status.message:
            first.append(f": {status.message}")
        if sample is not None:
            first.append(f"   up {fmt.duration(sample.uptime)}")
        second = Text(" ")
        if sample is None:
            second.append("no sample yet", style="dim")
        else:
            t = sample.totals
            for label, value in (
                ("processes", fmt.count(sample.processes)),
                ("msgs/s", fmt.rate(t.msgs_in_per_s)),
                ("dead letters/s", fmt.rate(t.dead_letters_per_s)),
                ("nodes", ", ".join(sample.nodes) or "none"),
            ):
                second.append(f"{label} ", style="dim")
                second.append(value, style="bold")
                second.append("   ")
        text = Text("\n").join([first, second])
        if text.plain != self._shown:  # styles follow the words
            self._shown = text.plain
            self.update(text, layout=False)  # fixed size: no layout pass per sample
