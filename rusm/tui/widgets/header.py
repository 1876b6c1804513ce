"""The two header lines: which node, whether it is there, and how busy it is."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from rusm.tui import format as fmt
from rusm.tui.model import TopModel

__all__ = ["NodeHeader", "is_replay"]

_STATE_STYLE = {
    "connected": "bold green",
    "connecting": "bold yellow",
    "disconnected": "bold red",
    "closed": "bold red",
}
_REPLAY_STYLE = "bold reverse magenta"
_SEPARATOR = (" · ", "dim")
LATE_MS = 100
"""A loop lag at least this long is shown in red (the meter's threshold)."""
_REPLAY_TARGET = " (replay)"
"""How a recorded feed names its target (``london (replay)``)."""
_REPLAY_STATUS = "replay of "
"""How a recorded feed's own statuses begin (``replay of london.rec``)."""


def is_replay(model: TopModel, target: str) -> bool:
    """Whether the feed replays a recording rather than watching a node."""
    return target.endswith(_REPLAY_TARGET) or model.status.message.startswith(_REPLAY_STATUS)


def _recorded_at(epoch: float) -> str:
    """The recording's clock, as a person reads it: ``2023-11-14 22:15:09``."""
    return fmt.timestamp(epoch).removesuffix("+00:00").replace("T", " ")


def _first_line(model: TopModel, target: str) -> Text:
    sample, status = model.sample, model.status
    parts: list[Text] = []
    replay = is_replay(model, target)
    if replay:  # what and where in the recording first; a recorded disconnection after
        parts.append(Text("▶ REPLAY", style=_REPLAY_STYLE))
        if sample is not None:
            parts.append(Text(_recorded_at(sample.time), style="bold"))
        if model.position is not None:
            at, total = model.position
            parts.append(Text(f"sample {fmt.count(at)}/{fmt.count(total)}"))
        else:
            parts.append(Text(f"sample {fmt.count(model.samples)}"))
        if status.message.endswith(" ended"):
            parts.append(Text("ended", style="bold"))
    if not replay or status.state != "connected":
        state = Text("● ", style=_STATE_STYLE[status.state])
        state.append(status.state, style=_STATE_STYLE[status.state])
        age = model.sample_age()
        if model.stale and not replay and age is not None:  # first: a long reason is cut
            state.append(f" (last sample {fmt.duration(age)} ago)", style="bold")
        if status.message and not status.message.startswith(_REPLAY_STATUS):
            state.append(f": {status.message}")
        parts.append(state)
    if sample is not None:
        parts.append(Text(f"up {fmt.duration(sample.uptime)}"))
    node = sample.node if sample else target.removesuffix(_REPLAY_TARGET)
    first = Text.assemble((f" {node} ", "bold reverse"), "  ")
    return first.append_text(Text(_SEPARATOR[0], style=_SEPARATOR[1]).join(parts))


class NodeHeader(Static):
    """Node, connection state (or REPLAY), uptime, process count, rates and peers."""

    _shown = ""

    def on_mount(self) -> None:
        # Two lines however narrow: a long status is cut, never pushes the
        # figures out. (Belongs in top.tcss, whose owner is asked to move it.)
        self.styles.text_wrap = "nowrap"
        self.styles.text_overflow = "ellipsis"

    def show(self, model: TopModel, target: str) -> None:
        sample, status = model.sample, model.status
        self.set_class(status.state in ("disconnected", "closed"), "-down")
        first = _first_line(model, target)
        second = Text(" ")
        if sample is None:
            second.append("no sample yet", style="dim")
        else:
            t = sample.totals
            if t.deadlocked:  # first: the one thing that never clears up by itself
                second.append(f"DEADLOCK: {t.deadlocked} processes in a cycle of calls",
                              style="bold reverse red")
                second.append("   ")
            for label, value in (
                ("processes", fmt.count(sample.processes)),
                ("msgs/s", fmt.rate(t.msgs_in_per_s)),
                ("dead letters/s", fmt.rate(t.dead_letters_per_s)),
                ("loop lag", f"{t.loop_lag_ms:.0f} ms"),
                ("nodes", ", ".join(sample.nodes) or "none"),
            ):
                second.append(f"{label} ", style="dim")
                late = label == "loop lag" and t.loop_lag_ms >= LATE_MS
                second.append(value, style="bold red" if late else "bold")
                second.append("   ")
            if t.blocked_steps:
                second.append(f"blocked steps {fmt.count(t.blocked_steps)}", style="bold yellow")
                second.append(f" (last {t.last_blocked})", style="yellow")
        text = Text("\n").join([first, second])
        if text.plain != self._shown:  # styles follow the words
            self._shown = text.plain
            self.update(text, layout=False)  # fixed size: no layout pass per sample
