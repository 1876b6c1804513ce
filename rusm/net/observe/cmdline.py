"""Operator command lines (``kill <london.12> shutdown``) -> protocol commands.

Used by ``rusm attach`` and the one-shot commands. Terms are Python literals
read with ``ast.literal_eval``: never evaluated.
"""

from __future__ import annotations

import ast
from typing import Any

from .protocol import CommandError, ProcessRow, Sample

__all__ = ["HELP", "format_table", "parse", "parse_term"]

HELP = """\
ps                      the process table (top rows by the sort key)
detail on|off           process rows in samples, or totals only
info PID                everything the node knows about a process
send DEST TERM          send TERM (a Python literal) to a pid or registered name
spawn FACTORY [ARGS]    start a registered factory; ARGS a literal list or values
kill PID [REASON]       exit signal to PID (default reason: kill, untrappable)
nodes                   the nodes this node is connected to
sort COL | filter TEXT | limit N | interval SECONDS   change what ps shows
help | quit"""

LOCAL = frozenset({"ps", "help", "quit", "exit", "?"})


def parse_term(text: str) -> Any:
    """A Python literal; raises CommandError with an example of what works."""
    text = text.strip()
    if not text:
        raise CommandError("bad_request", "a term is missing")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise CommandError(
            "bad_request",
            f"{text!r} is not a Python literal (examples: 'text', 42, (1, 'a'), {{'k': [1]}})",
        ) from e


def _split(line: str, n: int) -> list[str]:
    return line.strip().split(None, n)


def parse(line: str) -> tuple[str, dict[str, Any]]:
    """``(command, args)``; commands in LOCAL are the client's own."""
    words = _split(line, 1)
    if not words:
        raise CommandError("bad_request", "empty command")
    cmd, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
    if cmd in LOCAL:
        return cmd, {}
    if cmd == "detail":
        if rest not in ("on", "off"):
            raise CommandError("bad_request", "detail on|off")
        return "detail", {"on": rest == "on"}
    if cmd == "info":
        return "info", {"pid": _one(rest, "info PID")}
    if cmd in ("kill", "exit"):
        parts = _split(rest, 1)
        if not parts:
            raise CommandError("bad_request", "kill PID [REASON]")
        args: dict[str, Any] = {"pid": parts[0]}
        if len(parts) > 1:
            reason = parts[1].strip()
            args["reason"] = reason if reason.isidentifier() else parse_term(reason)
        return "kill", args
    if cmd == "send":
        parts = _split(rest, 1)
        if len(parts) < 2:
            raise CommandError("bad_request", "send DEST TERM")
        return "send", {"dest": parts[0], "msg": parse_term(parts[1])}
    if cmd == "spawn":
        parts = _split(rest, 1)
        if not parts:
            raise CommandError("bad_request", "spawn FACTORY [ARGS]")
        spawn_args: list[Any] = []
        if len(parts) > 1:
            value = parse_term(parts[1])
            spawn_args = list(value) if isinstance(value, list | tuple) else [value]
        return "spawn", {"factory": parts[0], "args": spawn_args}
    if cmd == "nodes":
        return "nodes", {}
    if cmd == "sort":
        return "subscribe", {"sort": _one(rest, "sort COL")}
    if cmd == "filter":
        return "subscribe", {"filter": rest.strip()}
    if cmd == "limit":
        return "subscribe", {"limit": _int(rest, "limit N")}
    if cmd == "interval":
        value = parse_term(rest)
        return "subscribe", {"interval": value}
    raise CommandError("unknown_command", f"unknown command {cmd!r}; type help")


def _one(rest: str, usage: str) -> str:
    parts = rest.split()
    if len(parts) != 1:
        raise CommandError("bad_request", usage)
    return parts[0]


def _int(rest: str, usage: str) -> int:
    word = _one(rest, usage)
    if not word.isdigit():
        raise CommandError("bad_request", usage)
    return int(word)


def _row(r: ProcessRow) -> str:
    names = ",".join(r.names)
    return (f"{r.pid:<16} {(r.label or '')[:20]:<20} {names[:16]:<16} {r.mailbox:>7} "
            f"{r.links:>5} {r.monitors:>4} {r.status:<8} {r.received:>9} {r.sent:>9}")


def format_table(s: Sample) -> str:
    """A sample as the ``ps`` table (header line, then rows)."""
    t = s.totals
    lines = [
        f"node {s.node}  up {s.uptime:.0f}s  processes {s.processes}  "
        f"in {t.msgs_in_per_s:.0f}/s  out {t.msgs_out_per_s:.0f}/s  "
        f"dead letters {t.dead_letters_per_s:.0f}/s ({t.dead_letters})  mailbox {t.mailbox}  "
        f"nodes {', '.join(s.nodes) or '-'}"
    ]
    if not s.detail:
        lines.append("(detail off: detail on shows the process table)")
        return "\n".join(lines)
    lines.append(f"{'PID':<16} {'LABEL':<20} {'NAMES':<16} {'MAILBOX':>7} {'LINKS':>5} "
                 f"{'MON':>4} {'STATUS':<8} {'RECEIVED':>9} {'SENT':>9}")
    lines.extend(_row(r) for r in s.rows)
    if s.omitted:
        lines.append(f"... {s.omitted} more not shown (sorted by {s.sort})")
    return "\n".join(lines)
