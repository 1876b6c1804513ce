"""The cluster view: the nodes this node is connected to; pick one to attach to it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from rusm.tui.messages import Attach
from rusm.tui.model import TopModel
from rusm.tui.screens.process import describe_error
from rusm.tui.widgets.header import NodeHeader

__all__ = ["ClusterScreen", "NodesSource"]

NodesSource = Callable[[], Awaitable[list[str]]]


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

    def compose(self) -> ComposeResult:
        yield NodeHeader(classes="header")
        yield Static(Text(" cluster: nodes connected to this one (enter attaches)",
                          style="bold"), classes="title")
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

    @work(exclusive=True, group="nodes", exit_on_error=False)
    async def load(self) -> None:
        message = self.query_one(".cluster-message", Static)
        try:
            nodes = sorted(await self.fetch())
        except Exception as e:  # shown, never raised into the app
            message.update(describe_error(e))
            message.add_class("-error")
            return
        message.remove_class("-error")
        self.nodes = nodes
        options = self.query_one(OptionList)
        options.clear_options()
        here = self.model.sample.node if self.model.sample else None
        if here is not None:
            options.add_option(Option(Text.assemble((here, "bold"), "  (attached)"),
                                      id=here, disabled=True))
        for node in nodes:
            options.add_option(Option(node, id=node))
        message.update(
            f"{len(nodes)} connected node{'s' if len(nodes) != 1 else ''}"
            if nodes else "no other node is connected to this one"
        )

    @on(OptionList.OptionSelected)
    def _node_picked(self, event: OptionList.OptionSelected) -> None:
        if event.option_id is not None:
            self.post_message(Attach(event.option_id))
