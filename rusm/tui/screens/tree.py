"""The supervision tree view (``T``, ``:tree``): the node's supervisors, their
children and how often each was restarted.

A supervisor's line is ``label pid  strategy (max N in S s)``, a child's
``id  pid  restart  restarts N`` (``stopped`` for the pid of a stopped child,
which is dim; a restarted one's count in yellow); a child that is itself a
supervisor also has its strategy and its own children, one level deeper.
Everything is expanded at first; space folds a supervisor.

It asks the node (``tree``) as it opens, every ``POLL_EVERY`` seconds and on
``r``; the cursor stays on the same line (a child: by its supervisor's pid and
its id) while that still exists. On the highlighted line: ``R`` restarts the
child, ``x`` terminates it (it stays stopped until restarted), ``K`` kills the
process, for a supervisor its whole subtree; ``enter`` opens its process
view. Each is asked first, written to the audit log and refused read-only
and in a replay, through the app's shell, as the command pane's are; the
outcome is shown on the message line and the tree asked again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static, Tree
from textual.widgets.tree import TreeNode

from rusm.tui.calls import TreeChild, TreeSupervisor
from rusm.tui.messages import OpenProcess
from rusm.tui.model import TopModel
from rusm.tui.screens.process import describe_error
from rusm.tui.widgets.header import NodeHeader

if TYPE_CHECKING:
    from rusm.tui.app import TopApp

__all__ = ["Line", "TreeScreen", "TreeSource", "child_text", "supervisor_text"]

TreeSource = Callable[[], Awaitable[list[TreeSupervisor]]]
"""The node's supervision trees (:meth:`NodeCalls.tree`)."""

Key = tuple[str | None, str | None]


@dataclass(frozen=True, slots=True)
class Line:
    """What one line of the tree stands for."""

    supervisor: str | None
    """The pid of the supervisor it is a child of; None for a root supervisor."""
    child: str | None
    """Its id as that supervisor's child; None for a root supervisor."""
    pid: str | None
    """None while the child is stopped."""
    label: str | None
    is_supervisor: bool

    @property
    def key(self) -> Key:
        """The same line in the next answer (a restarted child has a new pid)."""
        return (self.supervisor, self.child) if self.child is not None else (None, self.pid)

    @property
    def name(self) -> str:
        return self.child or self.label or str(self.pid)


def _policy(sup: TreeSupervisor) -> str:
    return f"{sup.strategy} (max {sup.max_restarts} in {sup.max_seconds:g} s)"


def supervisor_text(sup: TreeSupervisor) -> Text:
    """A root supervisor's line: ``label pid  strategy (max N in S s)``."""
    text = Text()
    if sup.label:
        text.append(f"{sup.label} ", style="bold")
    text.append(sup.pid)
    text.append(f"  {_policy(sup)}", style="cyan")
    return text


def child_text(child: TreeChild) -> Text:
    """A child's line: ``id  pid  restart  restarts N``, and its strategy if
    it is a supervisor."""
    text = Text()
    text.append(child.id, style="bold")
    if child.label != child.id:
        text.append(f" ({child.label})")
    text.append(f"  {child.pid or 'stopped'}  {child.restart}  ")
    text.append(f"restarts {child.restarts}", style="yellow" if child.restarts else "")
    if child.tree is not None:
        text.append(f"  {_policy(child.tree)}", style="cyan")
    elif child.supervisor:
        text.append("  supervisor", style="cyan")
    if child.pid is None:
        text.stylize("dim")
    return text


def _count(trees: list[TreeSupervisor]) -> str:
    supervisors = children = stopped = 0
    todo = list(trees)
    while todo:
        sup = todo.pop()
        supervisors += 1
        for child in sup.children:
            children += 1
            stopped += child.pid is None
            if child.tree is not None:
                todo.append(child.tree)
    if not supervisors:
        return "no supervisors on this node"
    text = (f"{supervisors} supervisor{'s' if supervisors != 1 else ''}, "
            f"{children} child{'ren' if children != 1 else ''}")
    return text + (f", {stopped} stopped" if stopped else "")


def _nodes(node: TreeNode[Line]) -> Iterator[TreeNode[Line]]:
    for child in node.children:
        yield child
        yield from _nodes(child)


class TreeScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "refresh_tree", "Refresh"),
        Binding("R", "child('restart_child')", "Restart"),
        Binding("x", "child('terminate_child')", "Terminate"),
        Binding("K", "kill", "Kill subtree"),
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]
    POLL_EVERY = 2.0
    """Seconds between two asks for the tree."""

    def __init__(self, source: TreeSource, model: TopModel, target: str) -> None:
        super().__init__(classes="tree-screen")
        self.fetch = source
        self.model = model
        self.target = target
        self.trees: list[TreeSupervisor] | None = None
        """The node's last answer; None until one came."""
        self.loads = 0
        """Answers taken (tests wait on it)."""
        self.note: tuple[str, bool] | None = None
        """The last action's outcome (text, error), shown until the next or ``r``."""
        self.lines: dict[Key, TreeNode[Line]] = {}
        """Each line's node, in the order shown."""
        self._loading = False
        self._again = False

    def compose(self) -> ComposeResult:
        yield NodeHeader(classes="header")
        yield Static(Text(" supervision tree (enter: its process; space: fold; esc: back)",
                          style="bold"), classes="title")
        tree: Tree[Line] = Tree("supervisors", classes="supervision")
        tree.show_root = False
        tree.auto_expand = False  # enter opens the process; space folds
        yield tree
        yield Static("", classes="tree-message", markup=False)
        yield Footer(compact=True)

    @property
    def supervision(self) -> Tree[Line]:
        return cast("Tree[Line]", self.query_one(Tree))

    @property
    def _app(self) -> TopApp:
        return cast("TopApp", self.app)

    def on_mount(self) -> None:
        self.show(self.model)
        self.supervision.focus()
        self.load()
        self.set_interval(self.POLL_EVERY, self.load)

    def show(self, model: TopModel) -> None:
        self.model = model
        self.query_one(NodeHeader).show(model, self.target)

    def say(self, text: str, *, error: bool = False) -> None:
        """Show one line on this view's message line."""
        message = self.query_one(".tree-message", Static)
        message.update(text)
        message.set_class(error, "-error")

    # -- the node's answer -------------------------------------------------------

    @work(group="tree", exit_on_error=False)
    async def load(self) -> None:
        """Ask for the trees, and redraw them if they changed."""
        if self._loading:  # a slow node: one ask at a time, and one more after it
            self._again = True
            return
        self._loading = True
        try:
            trees = await self.fetch()
        except Exception as e:  # any failure is shown, never raised into the app
            self.say(describe_error(e), error=True)
            return
        finally:
            self._loading = False
            if self._again:
                self._again = False
                self.load()
        if trees != self.trees:
            self.trees = trees
            self._rebuild(trees)
        self.loads += 1
        if self.note is not None:
            self.say(self.note[0], error=self.note[1])
        else:
            self.say(_count(trees))

    def _rebuild(self, trees: list[TreeSupervisor]) -> None:
        tree = self.supervision
        at = tree.cursor_node.data if tree.cursor_node is not None else None
        folded = {n.data.key for n in _nodes(tree.root)
                  if n.data is not None and n.allow_expand and not n.is_expanded}
        tree.clear()
        self.lines = {}
        for sup in trees:
            line = Line(None, None, sup.pid, sup.label, True)
            node = tree.root.add(supervisor_text(sup), line, expand=line.key not in folded,
                                 allow_expand=bool(sup.children))
            self.lines[line.key] = node
            self._add(node, sup, folded)
        tree.get_node_at_line(0)  # lays the lines out now: each node knows its line
        again = self.lines.get(at.key) if at is not None else None
        if again is not None:
            tree.move_cursor(again)
        elif tree.root.children:
            tree.move_cursor(tree.root.children[0])

    def _add(self, parent: TreeNode[Line], sup: TreeSupervisor, folded: set[Key]) -> None:
        for child in sup.children:
            line = Line(sup.pid, child.id, child.pid, child.label, child.supervisor)
            if child.tree is not None:
                node = parent.add(child_text(child), line, expand=line.key not in folded,
                                  allow_expand=bool(child.tree.children))
                self.lines[line.key] = node
                self._add(node, child.tree, folded)
            else:
                self.lines[line.key] = parent.add_leaf(child_text(child), line)

    @property
    def highlighted(self) -> Line | None:
        """What the cursor is on."""
        node = self.supervision.cursor_node
        return node.data if node is not None else None

    # -- keys ------------------------------------------------------------------------

    def action_refresh_tree(self) -> None:
        self.note = None
        self.load()

    def _done(self, text: str, error: bool) -> None:
        # The shell's word on an action: shown here too, then the tree asked again.
        self.note = (text, error)
        if self.is_attached:
            self.say(text, error=error)
            self.load()

    def _tell(self, text: str) -> None:
        # Why a key did nothing: kept on the message line over the next asks.
        self.note = (text, True)
        self.say(text, error=True)

    def action_child(self, cmd: str) -> None:
        """Restart or terminate (``cmd``) the highlighted child."""
        line = self.highlighted
        verb = "restart" if cmd == "restart_child" else "terminate"
        if line is None:
            self._tell(f"{verb}: nothing is highlighted")
            return
        if line.supervisor is None or line.child is None:
            self._tell(f"{verb}: {line.pid} is a root supervisor, no supervisor's child "
                       "(K kills it)")
            return
        app = self._app
        if app.readonly or app.replay is not None:
            app.shell.refuse(verb, done=self._done)
            return
        app.shell.confirm_child(f"{verb} {line.supervisor} {line.child}", cmd,
                                line.supervisor, line.child, done=self._done)

    def action_kill(self) -> None:
        """Kill the highlighted process: a supervisor takes its subtree with it."""
        line = self.highlighted
        if line is None:
            self._tell("kill: nothing is highlighted")
        elif line.pid is None:
            self._tell(f"kill: {line.name} is stopped, there is nothing to kill")
        else:
            self._app.kill(line.pid, label=line.label, done=self._done)

    @on(Tree.NodeSelected)
    def _open(self, event: Tree.NodeSelected[Line]) -> None:
        event.stop()
        line = event.node.data
        if line is None:
            return
        if line.pid is None:
            self._tell(f"{line.name} is stopped: no process to open")
        else:
            self.post_message(OpenProcess(line.pid))
