"""Runs what the command pane (and the kill key) ask for, against the feed.

Mutating commands (``MUTATING``: send, spawn, kill, reload, purge,
restart_child, terminate_child) are written to the audit log with their
outcome; in a read-only app they are refused here, with a message, and
nothing reaches the feed. ``log``, ``trace`` and ``tree`` open their views
(refused in a replay: there is no node to ask). Every failure, a node's typed
error or anything the feed raises, ends up as one line on the message line;
a view that acts through the shell (the tree view) passes ``done`` to be told
each such line too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rusm.observe.protocol import MUTATING, CommandError
from rusm.tui.commands import (
    MUTATIONS,
    CommandLineError,
    Detail,
    Filter,
    Help,
    Info,
    Kill,
    Log,
    Node,
    Purge,
    Reload,
    RestartChild,
    Send,
    Sort,
    Spawn,
    TerminateChild,
    Trace,
    Tree,
    parse,
)
from rusm.tui.screens.confirm import ConfirmAction, ConfirmKill
from rusm.tui.screens.process import describe_error

if TYPE_CHECKING:
    from textual.worker import WorkType

    from rusm.tui.app import TopApp
    from rusm.tui.audit import AuditLog

__all__ = ["CHILD_OPS", "Done", "Shell"]

log = logging.getLogger("rusm.tui")

Done = Callable[[str, bool], None]
"""Told what the shell said of a command (its text, whether an error)."""
CHILD_OPS = {
    "restart_child": ("Restart", "The supervisor stops it if it runs and starts it again; "
                      "an operator's restart does not count towards its restart limit."),
    "terminate_child": ("Terminate", "The supervisor stops it, and it stays stopped until "
                        "restarted (restart SUP CHILD, or R in the tree view)."),
}
"""Each supervisor command's confirm button and what it does, said before it is done."""


class Shell:
    def __init__(self, app: TopApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    def run(self, line: str) -> None:
        """Run one command line in a worker."""
        self.app.run_worker(self._run(line), group="command", exit_on_error=False)

    async def _run(self, line: str) -> None:
        app = self.app
        try:
            command = parse(line)
        except CommandLineError as e:
            app.say(str(e), error=True)
            return
        except CommandError as e:  # a term no node could be sent: nothing is sent
            app.say(e.message, error=True)
            return
        if (app.readonly or app.replay is not None) and isinstance(command, MUTATIONS):
            self.refuse(line.split()[0])  # the verb typed: kill, restart...
            return
        match command:
            case Send(dest, msg):
                await self.mutate(line, "send", dest=dest, msg=msg)
            case Spawn(factory, args):
                await self.mutate(line, "spawn", factory=factory, args=args)
            case Kill(target, reason):
                pid = await self.resolve(target)
                if pid is not None and await self.exists(pid, "kill"):
                    self.confirm_kill(pid, reason, line)
            case Reload(module, all_nodes):
                where = "every node linked to " + self.node if all_nodes else self.node
                wanted: dict[str, Any] = {"module": module}
                if all_nodes:
                    wanted["all_nodes"] = True
                self.confirm(line, "reload", wanted, f"Reload {module} on {where}?",
                             "Its GenServers take the new code after code_change; processes "
                             "on its old code keep running it (purge kills them).")
            case Purge(module):
                self.confirm(line, "purge", {"module": module},
                             f"Purge {module} on {self.node}?",
                             "Kills every process still running its old code; supervisors "
                             "restart them on the new code.")
            case RestartChild(supervisor, child):
                self.confirm_child(line, "restart_child", supervisor, child)
            case TerminateChild(supervisor, child):
                self.confirm_child(line, "terminate_child", supervisor, child)
            case Tree():
                app.open_tree()
            case Info(target):
                pid = await self.resolve(target)
                if pid is not None:
                    app.open_process(pid)
            case Detail(on):
                app.subscribe(detail=on)
            case Sort(key):
                app.subscribe(sort=key)
            case Filter(text):
                app.subscribe(filter=text)
            case Node(name):
                await app.attach(name)
            case Log(kind):
                app.open_log(kind)
            case Trace(target, count, seconds):
                if app.replay is not None:  # before resolving: a replay has no node to ask
                    self.need_node("trace")
                    return
                pid = await self.resolve(target)
                if pid is not None:
                    app.open_trace(pid, count, seconds)
            case Help():
                app.action_help()

    @property
    def node(self) -> str:
        return self.app.model.sample.node if self.app.model.sample else self.app.target

    async def resolve(self, target: str) -> str | None:
        """The pid ``target`` names: a pid as written, or a registered name
        (local, then global): from the rows shown, else the node's own answer.
        None, said on the message line, when there is none."""
        if target.startswith("<"):
            return target
        sample = self.app.model.sample
        rows = sample.rows if sample is not None else ()
        # The node lists its local names before its global ones in a row.
        for row in rows:
            if target in row.names:
                return row.pid
        if target not in self.app.completions.names:  # the node's names, kept fresh
            self.app.say(f"no process is registered as {target!r} on {self.node}", error=True)
            return None
        try:  # registered, but not among the rows shown: the node resolves it
            info = await self.info(target)
        except CommandError as e:
            self.app.say(e.message, error=True)
            return None
        except Exception as e:
            self.app.say(describe_error(e), error=True)
            return None
        return str(info.get("pid")) if info.get("pid") else None

    async def exists(self, pid: str, verb: str) -> bool:
        """Whether ``pid`` is alive (shown in the table, or known to the node);
        if not, say so."""
        if self.app.main.table.row_of(pid) is not None:
            return True
        try:
            await self.info(pid)
        except Exception as e:
            self.app.say(f"{verb}: {describe_error(e)}", error=True)
            return False
        return True

    def say(self, text: str, *, error: bool = False, done: Done | None = None) -> None:
        """Say ``text`` on the message line, and tell ``done``."""
        self.app.say(text, error=error)
        if done is not None:
            done(text, error)

    def confirm_kill(self, pid: str, reason: Any, line: str, *, label: str | None = None,
                     done: Done | None = None) -> None:
        """Ask first; kill ``pid`` only on yes. ``label`` defaults to its row's."""
        row = self.app.main.table.row_of(pid)
        node = self.node
        shown = "kill (the default)" if reason is None else repr(reason)

        def answered(kill: bool | None) -> None:
            if not kill:
                self.say(f"kill cancelled: {pid} left running", done=done)
                return
            args: dict[str, Any] = {"pid": pid}
            if reason is not None:
                args["reason"] = reason
            self.app.run_worker(self.mutate(line, "kill", done=done, **args), group="command",
                                exit_on_error=False)

        self.app.push_screen(
            ConfirmKill(pid, label=label or (row.label if row else None), node=node,
                        reason=shown),
            answered,
        )

    def confirm(self, line: str, cmd: str, args: dict[str, Any], question: str,
                detail: str, *, verb: str | None = None, done: Done | None = None) -> None:
        """Ask first; run mutating ``cmd`` only on yes (``verb`` on the button)."""

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say(f"{cmd} cancelled: nothing was done", done=done)
                return
            self.app.run_worker(self.mutate(line, cmd, done=done, **args), group="command",
                                exit_on_error=False)

        self.app.push_screen(ConfirmAction(question, detail, verb or cmd.capitalize()),
                             answered)

    def confirm_child(self, line: str, cmd: str, supervisor: str, child: str, *,
                      done: Done | None = None) -> None:
        """Ask first; restart or terminate (``cmd``) ``supervisor``'s ``child`` on yes."""
        verb, detail = CHILD_OPS[cmd]
        self.confirm(line, cmd, {"supervisor": supervisor, "child": child},
                     f"{verb} {child} of {supervisor} on {self.node}?", detail, verb=verb,
                     done=done)

    def refuse(self, cmd: str, *, done: Done | None = None) -> None:
        """Say that ``cmd`` is not available in a read-only app or a replay."""
        if self.app.replay is not None:
            self.say(f"replay: {cmd} is disabled, a recording has no node to act on; "
                     "nothing was sent", error=True, done=done)
            return
        self.say(f"read-only: {cmd} is disabled (rusm top --readonly, or an observer "
                 "certificate); nothing was sent", error=True, done=done)

    def need_node(self, cmd: str) -> None:
        """Say that ``cmd`` asks a live node, which a replay has not."""
        self.app.say(f"replay: {cmd} asks a live node, and a recording has none; "
                     "nothing was sent", error=True)

    async def mutate(self, line: str, cmd: str, *, done: Done | None = None,
                     **args: Any) -> None:
        """Run a command that changes the node, say how it went, audit it."""
        assert cmd in MUTATING
        if self.app.readonly or self.app.replay is not None:  # every path to the node
            self.refuse(cmd, done=done)
            return
        try:
            result = await self.app.feed.command(cmd, **args)
        except Exception as e:
            message = describe_error(e)
            self.say(f"{cmd} failed: {message}", error=True, done=done)
            self._audit(line, f"error: {message}", done)
            return
        answer = "" if result is None else f" {result}"
        self.say(f"{cmd} ok:{answer}" if answer else f"{cmd} ok", done=done)
        self._audit(line, f"ok{answer}", done)

    def _audit(self, line: str, result: str, done: Done | None = None) -> None:
        try:
            self.audit.append(self.app.target, line, result)
        except OSError as e:
            self.say(f"cannot write the audit log {self.audit.path}: {e.strerror}",
                     error=True, done=done)

    async def info(self, pid: str) -> dict[str, Any]:
        info = await self.app.feed.command("info", pid=pid)
        if not isinstance(info, dict):
            raise CommandError("bad_request", f"info {pid}: the node answered {info!r}")
        return info

    async def nodes(self) -> list[str]:
        nodes = await self.app.feed.command("nodes")
        if not isinstance(nodes, list | tuple):
            raise CommandError("bad_request", f"nodes: the node answered {nodes!r}")
        return [str(n) for n in nodes]

    def refresh_names(self) -> None:
        """Fetch registered names and factories for completion (in a worker)."""
        # The function, not a coroutine made now: one the app never starts (it
        # quit first) would be "never awaited".
        names: WorkType[None] = self._names
        self.app.run_worker(names, group="names", exclusive=True, exit_on_error=False)

    async def _names(self) -> None:
        try:
            names = await self.app.feed.command("names")
        except Exception as e:
            log.debug("names for completion: %s", describe_error(e))
            return
        if isinstance(names, dict):
            completions = self.app.completions
            completions.names = [*names.get("local", ()), *names.get("global", ())]
            completions.factories = list(names.get("factories", ()))
