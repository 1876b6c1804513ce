"""``rusm attach`` (the line REPL) and the one-shot ops commands
``rusm ps|info|log|trace|tree|send|spawn|kill|restart-child|terminate-child|
reload|purge TARGET ...``.

TARGET is a node name on this machine (found in the node directory) or
``NAME@HOST:PORT`` with ``--identity DIR`` (QUIC, as a hidden node).

send, spawn and kill (one-shot or typed in the REPL) are appended to the
audit log ``rusm top`` writes, and on a terminal they ask first (``--yes``
skips the question). Off a terminal they run without asking, as kubectl's
commands do, so scripts and pipes work unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from . import cli
from .node import load_identity

_IDENTITY = click.option(
    "--identity", "identity_dir", type=click.Path(file_okay=False, path_type=Path),
    help="Cluster identity for a remote NAME@HOST:PORT target.",
)
_YES = click.option("--yes", "-y", is_flag=True,
                    help="Do not ask for confirmation on a terminal.")


def _identity_for(target: str, identity_dir: Path | None) -> Any:
    """The identity, or one line that says which attach it spoiled."""
    try:
        return load_identity(identity_dir)
    except click.ClickException as e:
        from ..net.observe import parse_target

        name, addr = parse_target(target)
        where = f" at {addr[0]}:{addr[1]}" if addr else ""
        raise click.ClickException(f"cannot attach to {name}{where}: {e.message}") from e


CLOSE_TIMEOUT = 3.0
"""Seconds a one-shot command waits for its goodbye to the node."""


def _run(target: str, identity_dir: Path | None, job: Callable[[Any], Awaitable[int]],
         **subscription: Any) -> None:
    """Attach, run ``job(client)``, detach; exit with its status. Errors are one line."""
    from ..net.observe import AttachError, CommandError, Subscription, connect

    try:
        identity = _identity_for(target, identity_dir)
    except AttachError as e:
        raise click.ClickException(str(e)) from e

    async def main() -> int:
        # ^C cancels this task through the loop's own handler: its wakeup fd
        # rouses the loop even when the signal lands on another thread.
        loop, me = asyncio.get_running_loop(), asyncio.current_task()
        assert me is not None
        interrupted = False

        def on_sigint() -> None:
            nonlocal interrupted
            interrupted = True
            me.cancel()

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
            handled = True
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
            handled = False  # asyncio.run's own ^C (KeyboardInterrupt, below) remains
        client = None
        try:
            client = await connect(
                target, identity=identity,
                subscription=Subscription(**subscription), reconnect=False,
            )
            return await job(client)
        except asyncio.CancelledError:
            if interrupted:  # ^C ends a --follow or a trace: what was asked is done
                return 0
            raise
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGINT)
            if client is not None:  # a node that does not answer the goodbye does not hold us
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.close(), CLOSE_TIMEOUT)

    try:
        status = asyncio.run(main())
    except KeyboardInterrupt:  # ^C ends a --follow or a trace: what was asked is done
        status = 0
    except (AttachError, CommandError) as e:
        raise click.ClickException(str(e)) from e
    except TimeoutError as e:
        raise click.ClickException(f"{target} did not answer in time") from e
    sys.exit(status)


def _mutating(target: str, identity_dir: Path | None, yes: bool, line: str, cmd: str,
              args: dict[str, Any]) -> None:
    """Ask (on a terminal, unless --yes), then run ``cmd`` on TARGET and audit it."""
    from .repl import confirm, open_audit

    if not yes and sys.stdin.isatty() and not confirm(f"{line} on {target}?"):
        raise click.ClickException("cancelled")
    audit = open_audit()
    _run(target, identity_dir, lambda c: _command(c, cmd, args, audit, line), detail=False)


async def _command(client: Any, cmd: str, args: dict[str, Any], audit: Any, line: str) -> int:
    from ..net.observe import CommandError
    from .repl import mutate

    try:
        value = await mutate(client, audit, line, cmd, args)
    except CommandError as e:
        click.echo(f"error ({e.kind}): {e.message}", err=True)
        return 1
    click.echo(_show(value))
    return _reload_errors(value) if cmd == "reload" else 0


def _reload_errors(value: dict[str, Any]) -> int:
    """Say (on stderr) each node that refused a reload and each server whose
    code_change raised (it runs on its old code and state); 1 if any."""
    errors = 0
    for r in value.get("results", ()):
        if not r.get("ok"):
            errors += 1
            click.echo(f"error ({r['error']}) on {r['node']}: {r['message']}", err=True)
            continue
        for f in r.get("failed", ()):
            errors += 1
            click.echo(f"error (code_change_failed) on {r['node']}: {f['pid']} ({f['class']}) "
                       f"stays on its old code and state: {f['error']}\n{f['traceback']}",
                       err=True)
    return 1 if errors else 0


def _show(value: Any) -> str:
    if value is None:
        return "ok"
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, default=str)
    return str(value)


@cli.command("ps")
@click.argument("target")
@_IDENTITY
@click.option("--json", "as_json", is_flag=True, help="The whole sample as JSON.")
@click.option("--sort", default="mailbox", show_default=True, help="Sort key.")
@click.option("--limit", type=click.IntRange(0, 1000), default=30, show_default=True)
@click.option("--filter", "filter_", default="", help="Only pids, labels, names containing it.")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True,
              help="Seconds the rates are measured over.")
def ps_command(target: str, identity_dir: Path | None, as_json: bool, sort: str, limit: int,
               filter_: str, interval: float) -> None:
    """Print TARGET's process table once, with its rates over INTERVAL seconds."""
    from .table import format_table

    async def job(client: Any) -> int:
        # A session's first sample has no rates yet (nothing to count from):
        # the second, an interval later, has them.
        await client.next_sample()
        sample = await client.next_sample(timeout=interval + 10.0)
        if as_json:
            d = sample.to_wire()
            d.pop("t")
            click.echo(json.dumps(d, default=list))
        else:
            click.echo(format_table(sample))
        return 0

    _run(target, identity_dir, job, sort=sort, limit=limit, filter=filter_, interval=interval)


@cli.command("info")
@click.argument("target")
@click.argument("process")
@_IDENTITY
@click.option("--json", "as_json", is_flag=True, help="One JSON object (keys in docs/PROTOCOL.md).")
@click.option("--messages", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="How many of its mailbox's first messages to show.")
def info_command(target: str, process: str, identity_dir: Path | None, as_json: bool,
                 messages: int) -> None:
    """Why is PROCESS (a pid or registered name) on TARGET stuck: where it
    waits (its await chain), on whom, who waits on it, a deadlock, its
    mailbox's first messages, its state, links, monitors and counters."""
    from ..net.observe import CommandError
    from .table import format_info

    async def job(client: Any) -> int:
        try:
            info = await client.command("info", pid=process, messages=messages)
        except CommandError as e:
            click.echo(f"error ({e.kind}): {e.message}", err=True)
            return 1
        click.echo(json.dumps(info, default=str) if as_json else format_info(info))
        return 0

    _run(target, identity_dir, job, detail=False)


FOLLOW_POLL = 0.5
"""Seconds between two asks for newer events (``rusm log --follow``)."""


@cli.command("log")
@click.argument("target")
@_IDENTITY
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (^C stops).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@click.option("--limit", type=click.IntRange(1, 1000), default=200, show_default=True,
              help="How many of the latest events to print first.")
@click.option("--kind", "kinds", multiple=True, help="Only events of this kind (repeatable).")
def log_command(target: str, identity_dir: Path | None, follow: bool, as_json: bool,
                limit: int, kinds: tuple[str, ...]) -> None:
    """What happened on TARGET: exits with their reasons (crash tracebacks
    for the last crashes), supervisor restarts, nodes up and down, global-name
    conflicts; the node keeps its last 1,000 events."""
    from ..net.observe import CommandError
    from .table import format_event

    async def job(client: Any) -> int:
        since = 0
        args: dict[str, Any] = {"limit": limit}
        if kinds:
            args["kinds"] = list(kinds)
        while True:
            try:
                answer = await client.command("log", since=since, **args)
            except CommandError as e:
                click.echo(f"error ({e.kind}): {e.message}", err=True)
                return 1
            for event in answer["events"]:
                click.echo(json.dumps(event, default=str) if as_json else format_event(event))
            since = answer["next"]
            if answer.get("more"):  # the rest did not fit one answer: ask at once
                args["limit"] = 1000
                continue
            if not follow:
                return 0
            args["limit"] = 1000
            await asyncio.sleep(FOLLOW_POLL)

    _run(target, identity_dir, job, detail=False)


@cli.command("trace")
@click.argument("target")
@click.argument("process")
@_IDENTITY
@click.option("--count", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Stop after this many messages.")
@click.option("--seconds", type=click.FloatRange(0, 600, min_open=True), default=10.0,
              show_default=True, help="Stop after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def trace_command(target: str, process: str, identity_dir: Path | None, count: int,
                  seconds: float, as_json: bool) -> None:
    """Print every message PROCESS (a pid or registered name) on TARGET sends
    (out) and receives (in), with the time, the other end and the term,
    until COUNT messages or SECONDS seconds (^C stops it sooner)."""
    from ..net.observe import CommandError
    from .repl import follow_trace, untrace

    async def job(client: Any) -> int:
        try:
            started = await client.command("trace", pid=process, count=count, seconds=seconds)
        except CommandError as e:
            click.echo(f"error ({e.kind}): {e.message}", err=True)
            return 1
        click.echo(f"tracing {started['pid']}: up to {count} messages or {seconds:g} s",
                   err=True)
        try:
            shown, why = await follow_trace(client, started["trace"], as_json)
        except asyncio.CancelledError:
            await untrace(client, started["trace"])
            raise
        click.echo(f"trace of {started['pid']} stopped ({why}): {shown} messages", err=True)
        return 0

    _run(target, identity_dir, job, detail=False)


@cli.command("tree")
@click.argument("target")
@_IDENTITY
@click.option("--json", "as_json", is_flag=True, help="The trees as one JSON list.")
def tree_command(target: str, identity_dir: Path | None, as_json: bool) -> None:
    """TARGET's supervision trees: each supervisor's strategy and intensity,
    each child's pid, label, restart type and restart count."""
    from ..net.observe import CommandError
    from .table import format_tree

    async def job(client: Any) -> int:
        try:
            trees = await client.command("tree")
        except CommandError as e:
            click.echo(f"error ({e.kind}): {e.message}", err=True)
            return 1
        click.echo(json.dumps(trees) if as_json else format_tree(trees))
        return 0

    _run(target, identity_dir, job, detail=False)


@cli.command("restart-child")
@click.argument("target")
@click.argument("supervisor")
@click.argument("child")
@_IDENTITY
@_YES
def restart_child_command(target: str, supervisor: str, child: str, identity_dir: Path | None,
                          yes: bool) -> None:
    """Restart CHILD (its id) of SUPERVISOR (a pid or name) on TARGET: stopped
    first if it runs, then started again by its supervisor."""
    _mutating(target, identity_dir, yes, f"restart {supervisor} {child}", "restart_child",
              {"supervisor": supervisor, "child": child})


@cli.command("terminate-child")
@click.argument("target")
@click.argument("supervisor")
@click.argument("child")
@_IDENTITY
@_YES
def terminate_child_command(target: str, supervisor: str, child: str,
                            identity_dir: Path | None, yes: bool) -> None:
    """Stop CHILD of SUPERVISOR on TARGET; it stays stopped until
    restart-child. (To stop a whole subtree, kill its supervisor.)"""
    _mutating(target, identity_dir, yes, f"terminate {supervisor} {child}", "terminate_child",
              {"supervisor": supervisor, "child": child})


@cli.command("send")
@click.argument("target")
@click.argument("dest")
@click.argument("term")
@_IDENTITY
@_YES
def send_command(target: str, dest: str, term: str, identity_dir: Path | None,
                 yes: bool) -> None:
    """Send TERM (a Python literal) to DEST (a pid or registered name) on TARGET."""
    from ..tui.commands import literal

    msg = _literal(literal, term)
    _mutating(target, identity_dir, yes, f"send {dest} {term}", "send",
              {"dest": dest, "msg": msg})


@cli.command("spawn")
@click.argument("target")
@click.argument("factory")
@click.argument("args", required=False, default="")
@_IDENTITY
@_YES
def spawn_command(target: str, factory: str, args: str, identity_dir: Path | None,
                  yes: bool) -> None:
    """Start FACTORY on TARGET with ARGS (a Python literal list); prints the pid."""
    from ..tui.commands import literal

    value = _literal(literal, args) if args else []
    arglist = list(value) if isinstance(value, list | tuple) else [value]
    _mutating(target, identity_dir, yes, f"spawn {factory} {args}".rstrip(), "spawn",
              {"factory": factory, "args": arglist})


@cli.command("kill")
@click.argument("target")
@click.argument("pid")
@click.argument("reason", required=False)
@_IDENTITY
@_YES
def kill_command(target: str, pid: str, reason: str | None, identity_dir: Path | None,
                 yes: bool) -> None:
    """Send PID on TARGET an exit signal (default reason kill: untrappable)."""
    args: dict[str, Any] = {"pid": pid}
    if reason is not None:
        args["reason"] = reason
    line = f"kill {pid}" if reason is None else f"kill {pid} {reason}"
    _mutating(target, identity_dir, yes, line, "kill", args)


@cli.command("reload")
@click.argument("target")
@click.argument("module")
@click.option("--all-nodes", is_flag=True, help="Also on every node TARGET is linked to.")
@_IDENTITY
@_YES
def reload_command(target: str, module: str, all_nodes: bool, identity_dir: Path | None,
                   yes: bool) -> None:
    """Hot-reload MODULE on TARGET: its GenServers take the new code after
    their code_change, its spawnables are re-bound, processes on its old code
    are listed (purge kills them). The node must allow it (--allow-reload).
    A module that fails to import leaves the old code running: its traceback
    is printed and the exit status is 1."""
    args: dict[str, Any] = {"module": module}
    if all_nodes:
        args["all_nodes"] = True
    line = f"reload {module}" + (" --all-nodes" if all_nodes else "")
    _mutating(target, identity_dir, yes, line, "reload", args)


@cli.command("purge")
@click.argument("target")
@click.argument("module")
@_IDENTITY
@_YES
def purge_command(target: str, module: str, identity_dir: Path | None, yes: bool) -> None:
    """Kill the processes on TARGET still running MODULE's old code (after a
    reload); their supervisors restart them on the new code."""
    _mutating(target, identity_dir, yes, f"purge {module}", "purge", {"module": module})


def _literal(parse: Callable[[str], Any], text: str) -> Any:
    from ..tui.commands import CommandLineError

    try:
        return parse(text)
    except CommandLineError as e:
        raise click.BadParameter(str(e)) from e


@cli.command("attach")
@click.argument("target")
@_IDENTITY
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True)
@_YES
def attach_command(target: str, identity_dir: Path | None, interval: float, yes: bool) -> None:
    """A line REPL on TARGET: ps, info, send, spawn, kill, nodes... (type help).

    On a terminal it has history and tab completion of pids, names and
    factories, and asks before send, spawn and kill (--yes: never);
    otherwise it reads commands from stdin, one per line, and exits 1 if
    any failed. send, spawn and kill go to $RUSM_HOME/audit.log.
    """
    from .repl import Repl

    tty = sys.stdin.isatty()
    _run(target, identity_dir, lambda c: Repl(c, tty, ask=tty and not yes).run(),
         interval=interval)
