"""The ``rusm attach`` REPL over an observe client, and what it shares with
the one-shot ops commands: every mutating command (send, spawn, kill) is
appended to the TUI's audit log with its outcome, and asked about first on
a terminal (not when commands come from a pipe or a file: scripts run as
they did, as kubectl's do)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import click

from rusm.observe.protocol import MUTATING

from ..net.observe import CommandError, FeedStatus
from ..tui import commands as lang
from ..tui.audit import AuditLog, default_audit_path
from .table import format_event, format_info, format_table, format_trace, format_tree

HELP = """\
ps                      the process table (top rows by the sort key)
detail on|off           process rows in samples, or totals only
info PID|NAME           where it waits, on whom, its mailbox and state
send DEST TERM          send TERM (a Python literal) to a pid or registered name
spawn FACTORY [ARGS]    start a registered factory; ARGS literals or one literal list
kill PID [REASON]       exit signal to PID (default reason: kill, untrappable)
reload MODULE [--all-nodes]  hot-reload MODULE (GenServers take the new code)
purge MODULE            kill the processes still running MODULE's old code
log [KIND]              the node's last events (exit, restart, nodeup, nodedown...)
trace PID|NAME [COUNT] [SECONDS]  its messages in and out, live (default 100 or 10 s)
tree                    the supervision trees: children, restart types and counts
restart SUP CHILD       stop and start a child of a supervisor (kill SUP: the subtree)
terminate SUP CHILD     stop a child of a supervisor; it stays stopped
nodes                   the nodes this node is connected to
sort KEY | filter [TEXT] | limit N | interval SECONDS   change what ps shows
help | quit"""

LOCAL = ("ps", "nodes", "limit", "interval", "quit", "exit", "?")
WORDS = (*LOCAL, *lang.VERBS)


def parse(line: str) -> tuple[str, dict[str, Any]]:
    """A REPL line -> (command, args): the command pane's language
    (rusm.tui.commands) plus ps, nodes, limit, interval and quit."""
    verb, _, rest = line.strip().partition(" ")
    rest = rest.strip()
    try:
        if verb in ("ps", "quit", "exit", "help", "?", "nodes"):
            return ("help" if verb == "?" else verb), {}
        if verb == "limit":
            if not rest.isdigit():
                raise lang.CommandLineError("usage: limit N")
            return "subscribe", {"limit": int(rest)}
        if verb == "interval":
            return "subscribe", {"interval": lang.literal(rest)}
        if verb not in lang.VERBS:
            raise CommandError("unknown_command", f"unknown command {verb!r}; type help")
        match lang.parse(line):
            case lang.Send(dest, msg):
                return "send", {"dest": dest, "msg": msg}
            case lang.Spawn(factory, args):
                return "spawn", {"factory": factory, "args": args}
            case lang.Kill(pid, reason):
                return "kill", {"pid": pid} if reason is None else {"pid": pid, "reason": reason}
            case lang.Info(pid):
                return "info", {"pid": pid}
            case lang.Detail(on):
                return "detail", {"on": on}
            case lang.Sort(key):
                return "subscribe", {"sort": key}
            case lang.Filter(text):
                return "subscribe", {"filter": text}
            case lang.Reload(module, all_nodes):
                return "reload", {"module": module, "all_nodes": True} if all_nodes else {
                    "module": module}
            case lang.Purge(module):
                return "purge", {"module": module}
            case lang.Log(kind):
                return "log", {} if kind is None else {"kinds": [kind]}
            case lang.Trace(pid, count, seconds):
                return "trace", {"pid": pid, "count": count, "seconds": seconds}
            case lang.Tree():
                return "tree", {}
            case lang.RestartChild(sup, child):
                return "restart_child", {"supervisor": sup, "child": child}
            case lang.TerminateChild(sup, child):
                return "terminate_child", {"supervisor": sup, "child": child}
            case lang.Node(name):
                raise lang.CommandLineError(f"to watch {name}, run: rusm attach {name}")
            case _:
                return "help", {}
    except lang.CommandLineError as e:
        raise CommandError("bad_request", str(e)) from e


def open_audit() -> AuditLog:
    """The audit log ``rusm top`` writes, created 0600 if it is new."""
    audit = AuditLog(default_audit_path(), time.time)
    # AuditLog.append creates the file with the umask's mode: create it private first.
    try:
        audit.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(audit.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW,
                         0o600))
    except OSError as e:
        click.echo(f"cannot create the audit log {audit.path}: {e.strerror}", err=True)
    return audit


def _audit(audit: AuditLog, target: str, line: str, result: str) -> None:
    try:
        audit.append(target, line, result)
    except OSError as e:
        click.echo(f"cannot write the audit log {audit.path}: {e.strerror}", err=True)


async def mutate(client: Any, audit: AuditLog, line: str, cmd: str, args: dict[str, Any]) -> Any:
    """Run mutating command ``cmd`` on the client's node and audit it (as typed,
    with its outcome); the node's refusal is re-raised after it is logged."""
    assert cmd in MUTATING
    try:
        value = await client.command(cmd, **args)
    except CommandError as e:
        _audit(audit, client.target, line, f"error: {e.message}")
        raise
    except TimeoutError:
        _audit(audit, client.target, line, "error: the node did not answer in time")
        raise
    _audit(audit, client.target, line, "ok" if value is None else f"ok {value}")
    return value


TRACE_POLL = 0.2
"""Seconds between two reads of a running trace."""


async def follow_trace(client: Any, trace: int, as_json: bool) -> tuple[int, str]:
    """Print a running trace's events until it stops; (how many, why)."""
    since = 0
    while True:
        answer = await client.command("trace_read", trace=trace, since=since)
        for event in answer["events"]:
            click.echo(json.dumps(event) if as_json else format_trace(event))
        since = answer["next"]
        if answer["stopped"] is not None:
            return since, answer["stopped"]
        if not answer.get("more"):  # more: the rest did not fit one answer, ask at once
            await asyncio.sleep(TRACE_POLL)


async def untrace(client: Any, trace: int) -> None:
    try:
        await asyncio.shield(client.command("untrace", trace=trace))
    except Exception:  # the node stops an unread trace by itself in seconds
        return


def confirm(question: str) -> bool:
    """Ask on the terminal; False unless the answer is yes."""
    return click.confirm(question, default=False)


class Repl:
    def __init__(self, client: Any, tty: bool, *, audit: AuditLog | None = None,
                 ask: bool | None = None) -> None:
        self.client = client
        self.tty = tty
        self.audit = audit or open_audit()
        self.ask = tty if ask is None else ask
        """Confirm each mutating command (on a terminal, unless --yes)."""
        self.failed = 0
        self.stale = True  # the subscription changed: ps waits for a fresh sample
        self.names: list[str] = []

    async def run(self) -> int:
        watcher = asyncio.create_task(self._watch())
        try:
            if self.tty:
                await self._refresh_names()
                self._setup_readline()
                click.echo(f"attached to {self.client.target}; type help")
            while True:
                line = await self._read()
                if line is None:
                    break
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if not await self.execute(line):
                    break
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        return 1 if self.failed and not self.tty else 0

    async def _read(self) -> str | None:
        if self.tty:
            try:
                return await asyncio.to_thread(input, f"{self.client.target}> ")
            except EOFError:
                return None
        line = await asyncio.to_thread(sys.stdin.readline)
        return line or None

    async def _watch(self) -> None:
        """Say when the link to the node drops or comes back."""
        async for event in self.client:
            if isinstance(event, FeedStatus) and event.state != "connected":
                click.echo(f"[{event.state}] {event.message}", err=True)

    async def execute(self, line: str) -> bool:
        """Run one line; False to quit."""
        try:
            cmd, args = parse(line)
            if cmd in ("quit", "exit"):
                return False
            if cmd in ("help", "?"):
                click.echo(HELP)
            elif cmd == "ps":
                await self._ps()
            elif cmd == "trace":
                await self._trace(args)
            elif cmd in MUTATING:
                question = f"{line.strip()} on {self.client.target}?"
                if self.ask and not await asyncio.to_thread(confirm, question):
                    click.echo("cancelled")
                    return True
                await self._answer(cmd, await mutate(
                    self.client, self.audit, line.strip(), cmd, args))
            else:
                await self._answer(cmd, await self.client.command(cmd, **args))
        except CommandError as e:
            self.failed += 1
            click.echo(f"error ({e.kind}): {e.message}")
        except TimeoutError:
            self.failed += 1
            click.echo("error (timeout): the node did not answer in time")
        return True

    async def _answer(self, cmd: str, value: Any) -> None:
        self.stale = True  # the node sends a fresh sample after a command
        click.echo(_show(cmd, value))
        if cmd == "spawn":
            await self._refresh_names()

    async def _trace(self, args: dict[str, Any]) -> None:
        started = await self.client.command("trace", **args)
        click.echo(f"tracing {started['pid']}: up to {args['count']} messages or "
                   f"{args['seconds']:g} s")
        try:
            shown, why = await follow_trace(self.client, started["trace"], as_json=False)
        except asyncio.CancelledError:
            await untrace(self.client, started["trace"])
            raise
        click.echo(f"trace of {started['pid']} stopped ({why}): {shown} messages")

    async def _ps(self) -> None:
        client = self.client
        if self.stale or client.latest is None:
            client.changed.clear()
            async with asyncio.timeout(10):
                await client.changed.wait()
            self.stale = False
        click.echo(format_table(client.latest))

    async def _refresh_names(self) -> None:
        try:
            names = await self.client.command("names")
        except CommandError:
            return
        self.names = [*names["local"], *names["global"], *names["factories"]]

    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # pragma: no cover - not on every platform
            return

        def complete(text: str, state: int) -> str | None:
            latest = self.client.latest
            pids = [r.pid for r in latest.rows] if latest is not None else []
            options = [w for w in (*WORDS, *pids, *self.names) if w.startswith(text)]
            return options[state] if state < len(options) else None

        readline.set_completer(complete)
        readline.set_completer_delims(" \t")
        readline.parse_and_bind("tab: complete")


def _show(cmd: str, value: Any) -> str:
    if cmd == "info" and isinstance(value, dict):
        return format_info(value)
    if cmd == "tree" and isinstance(value, list):
        return format_tree(value)
    if cmd == "log" and isinstance(value, dict):
        return "\n".join(map(format_event, value["events"])) or "(no events)"
    if cmd == "nodes":
        return ", ".join(value) or "(no connected nodes)"
    if value is None:
        return "ok"
    return f"ok: {value}"
