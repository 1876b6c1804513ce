"""The cluster view: the nodes this node is connected to; pick one to attach to it.

Each row is a node: its address, the state of its link, its process count,
its messages/s and the link's round-trip time. The attached node's figures
come from its samples; a peer's link figures from the ``nodes`` command with
``detail`` (a node older than that answers names only, and the row says
``?`` for what it does not know).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from rusm.observe.protocol import CommandError
from rusm.tui import format as fmt
from rusm.tui.messages import Attach
from rusm.tui.model import TopModel
from rusm.tui.screens.process import describe_error
from rusm.tui.widgets.header import NodeHeader

__all__ = ["ClusterScreen", "NodeRow", "NodesSource", "node_rows"]

NodesSource = Callable[[], Awaitable[list[str]]]
UNKNOWN = "?"

_COLUMNS = (("NODE", 16, "<"), ("ADDRESS", 22, "<"), ("LINK", 10, "<"),
            ("PROCESSES", 10, ">"), ("MSGS/S", 9, ">"), ("RTT", 9, ">"))


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node as the cluster view shows it; None is not known."""

    node: str
    address: str | None = None
    state: str | None = None
    processes: int | None = None
    msgs_per_s: float | None = None
    rtt: float | None = None
    """Seconds."""

    def cells(self) -> tuple[str, ...]:
        return (
            self.node,
            self.address or UNKNOWN,
            self.state or UNKNOWN,
            UNKNOWN if self.processes is None else fmt.count(self.processes),
            UNKNOWN if self.msgs_per_s is None else fmt.rate(self.msgs_per_s),
            UNKNOWN if self.rtt is None else round_trip(self.rtt),
        )


def round_trip(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:,.0f} ms"


def _line(cells: tuple[str, ...]) -> str:
    return " ".join(f"{c[:w]:{a}{w}}" for c, (_, w, a) in zip(cells, _COLUMNS, strict=True))


def node_rows(answer: Any) -> list[NodeRow]:
    """The ``nodes`` command's answer, names or maps (``detail``), as rows by name."""
    if not isinstance(answer, list | tuple):
        raise CommandError("bad_request", f"nodes: the node answered {answer!r}")
    rows = []
    for item in answer:
        if isinstance(item, dict):
            rtt = item.get("rtt")
            rate = item.get("msgs_per_s")
            procs = item.get("processes")
            rows.append(NodeRow(
                node=str(item.get("node")),
                address=item.get("address") if isinstance(item.get("address"), str) else None,
                state=str(item["state"]) if item.get("state") else None,
                processes=procs if isinstance(procs, int) else None,
                msgs_per_s=float(rate) if isinstance(rate, int | float) else None,
                rtt=float(rtt) if isinstance(rtt, int | float) else None,
            ))
        else:
            rows.append(NodeRow(node=str(item)))
    return sorted(rows, key=lambda r: r.node)


class ClusterScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "refresh_nodes", "Refresh"),
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]

    def __init__(self, nodes: NodesSource, model: TopModel, target: str) -> None:
        super().__init__(classes="cluster-screen")
        self.fetch = nodes
        self.model = model
        self.target = target
        self.nodes: list[str] | None = None
        """The connected nodes' names, once fetched."""
        self.rows: list[NodeRow] = []
        """Every row shown, the attached node's first."""

    def compose(self) -> ComposeResult:
        yield NodeHeader(classes="header")
        yield Static(Text(" cluster: nodes connected to this one (enter attaches)",
                          style="bold"), classes="title")
        yield Static(Text(" " + _line(tuple(name for name, _, _ in _COLUMNS)), style="bold dim"),
                     classes="nodes-columns")
        yield OptionList(classes="nodes")
        yield Static("", classes="cluster-message", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(NodeHeader).show(self.model, self.target)
        self.query_one(OptionList).focus()
        self.load()

    def show(self, model: TopModel) -> None:
        self.model = model
        self.query_one(NodeHeader).show(model, self.target)

    def action_refresh_nodes(self) -> None:
        self.load()

    async def _peers(self) -> list[NodeRow]:
        """The peers with their links' figures; names only from a node that
        does not know ``detail`` (or a feed without a node)."""
        feed = getattr(self.app, "feed", None)
        if feed is not None:
            try:
                return node_rows(await feed.command("nodes", detail=True))
            except CommandError as e:
                if e.kind != "bad_request":
                    raise
        return node_rows(await self.fetch())

    def _here(self) -> NodeRow | None:
        sample = self.model.sample
        if sample is None:
            return None
        where = self.target.partition("@")[2] or "this machine"
        return NodeRow(node=sample.node, address=where, state="attached",
                       processes=sample.processes,
                       msgs_per_s=sample.totals.msgs_in_per_s, rtt=None)

    @work(exclusive=True, group="nodes", exit_on_error=False)
    async def load(self) -> None:
        message = self.query_one(".cluster-message", Static)
        try:
            peers = await self._peers()
        except Exception as e:  # shown, never raised into the app
            message.update(describe_error(e))
            message.add_class("-error")
            return
        message.remove_class("-error")
        self.nodes = [row.node for row in peers]
        here = self._here()
        self.rows = ([here] if here else []) + peers
        options = self.query_one(OptionList)
        options.clear_options()
        if here is not None:
            cells = here.cells()
            options.add_option(Option(Text(_line((*cells[:5], "-")), style="bold"),
                                      id=here.node, disabled=True))
        for row in peers:
            options.add_option(Option(_line(row.cells()), id=row.node))
        count = len(peers)
        message.update(
            f"{count} connected node{'s' if count != 1 else ''}"
            if peers else "no other node is connected to this one"
        )

    @on(OptionList.OptionSelected)
    def _node_picked(self, event: OptionList.OptionSelected) -> None:
        if event.option_id is not None:
            self.post_message(Attach(event.option_id))
