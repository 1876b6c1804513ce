"""The command pane's language: one line in, one typed command out.

Terms are Python literals read with :func:`ast.literal_eval` (never
``eval``): ``send worker {"job": 1, "tags": ("a", "b")}``. Parsing is pure;
running a command is the shell's job (:mod:`rusm.tui.shell`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from rusm.actors.events import KINDS
from rusm.net.terms import TermTooLarge, UnsendableTerm, encode_term
from rusm.observe.protocol import (
    MAX_TRACE_COUNT,
    MAX_TRACE_SECONDS,
    SORT_KEYS,
    TRACE_COUNT,
    TRACE_SECONDS,
    CommandError,
)

__all__ = [
    "MUTATIONS",
    "USAGE",
    "VERBS",
    "CommandLineError",
    "Detail",
    "Filter",
    "Help",
    "Info",
    "Kill",
    "Log",
    "Node",
    "Purge",
    "Reload",
    "RestartChild",
    "Send",
    "Sort",
    "Spawn",
    "TerminateChild",
    "Trace",
    "Tree",
    "literal",
    "parse",
    "sendable",
    "split_literals",
    "term",
]


class CommandLineError(ValueError):
    """Raised when a command line cannot be parsed; the message says what to type."""


@dataclass(frozen=True, slots=True)
class Send:
    dest: str
    msg: Any


@dataclass(frozen=True, slots=True)
class Spawn:
    factory: str
    args: list[Any]


@dataclass(frozen=True, slots=True)
class Kill:
    pid: str
    reason: Any = None
    """None: the node's default (``kill``)."""


@dataclass(frozen=True, slots=True)
class Info:
    pid: str


@dataclass(frozen=True, slots=True)
class Detail:
    on: bool


@dataclass(frozen=True, slots=True)
class Sort:
    key: str


@dataclass(frozen=True, slots=True)
class Filter:
    text: str


@dataclass(frozen=True, slots=True)
class Node:
    name: str


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Reload:
    module: str
    all_nodes: bool = False


@dataclass(frozen=True, slots=True)
class Purge:
    module: str


@dataclass(frozen=True, slots=True)
class Log:
    kind: str | None = None
    """Only events of this kind (exit, restart, nodeup, ...); None: all."""


@dataclass(frozen=True, slots=True)
class Trace:
    pid: str
    count: int = TRACE_COUNT
    seconds: float = TRACE_SECONDS


@dataclass(frozen=True, slots=True)
class Tree:
    """Open the supervision tree view."""


@dataclass(frozen=True, slots=True)
class RestartChild:
    supervisor: str
    """The supervisor's pid or registered name."""
    child: str
    """The child's id in the supervisor's spec."""


@dataclass(frozen=True, slots=True)
class TerminateChild:
    supervisor: str
    child: str
    """Stays stopped until restarted."""


Command = (Send | Spawn | Kill | Info | Detail | Sort | Filter | Node | Help | Reload | Purge
           | Log | Trace | Tree | RestartChild | TerminateChild)
MUTATIONS = (Send, Spawn, Kill, Reload, Purge, RestartChild, TerminateChild)
"""The commands that change a node (refused read-only and in a replay)."""

USAGE = {
    "send": "send DEST TERM",
    "spawn": "spawn FACTORY [ARGS]",
    "kill": "kill PID [REASON]",
    "info": "info PID|NAME",
    "detail": "detail on|off",
    "sort": "sort KEY",
    "filter": "filter [TEXT]",
    "node": "node NAME",
    "reload": "reload MODULE [--all-nodes]",
    "purge": "purge MODULE",
    "log": "log [KIND]",
    "trace": "trace PID|NAME [COUNT] [SECONDS]",
    "tree": "tree",
    "restart": "restart SUP CHILD",
    "terminate": "terminate SUP CHILD",
    "help": "help",
}
VERBS = tuple(USAGE)


def literal(text: str) -> Any:
    """One Python literal; raises CommandLineError saying what is wrong, in
    the words of the one who typed it (never an ``ast`` object)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return ast.literal_eval(tree)
    except SyntaxError as e:
        raise CommandLineError(f"cannot read {text!r} as a Python literal: {e.msg}") from e
    except (ValueError, TypeError, MemoryError, RecursionError) as e:
        raise CommandLineError(f"cannot read {text!r} as a Python literal: {_why(tree)}") from e


def _why(tree: ast.Expression) -> str:
    """What in ``tree`` is not a literal, said for a person."""
    for node in ast.walk(tree.body):
        if isinstance(node, ast.Name):
            return f"{node.id} is not a value; a string needs quotes: {node.id!r}"
        if isinstance(node, ast.Call):
            return f"{ast.unparse(node)} is a call; only literals can be sent"
        if isinstance(node, ast.Attribute | ast.Subscript | ast.Lambda | ast.JoinedStr):
            return f"{ast.unparse(node)} is not a literal"
    return ("only literals: numbers, 'strings', b'bytes', True, False, None, "
            "and lists, tuples and dicts of them")


def term(text: str) -> Any:
    """A literal that can be sent to a process; raises CommandLineError, or
    CommandError("unsendable") for a literal no node could be sent."""
    value = literal(text)
    sendable(value)
    return value


def sendable(value: Any) -> None:
    """Raise CommandError("unsendable") if ``value`` cannot cross the wire (the
    same kind a node answers), saying where in what was typed (``[1]['k']``),
    with no path of the protocol around it."""
    try:
        encode_term(value)
    except UnsendableTerm as e:
        message = str(e).removeprefix("cannot send ")
        what, _, where = message.partition(" (at ")
        where = where.rstrip(")")
        hint = "; use a list or a tuple" if what in ("a set", "a frozenset") else ""
        place = "" if where == "the top level" else f" (at {where})"
        raise CommandError("unsendable", f"{what} cannot be sent{place}{hint}") from e
    except TermTooLarge as e:
        raise CommandError("unsendable", str(e)) from e


def split_literals(text: str) -> list[str]:
    """Split at spaces outside quotes and brackets: ``1 "a b" [2, 3]`` -> 3 parts."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote, escaped = 0, "", False
    for ch in text:
        if quote:
            current.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch.isspace() and depth == 0:
            if current:
                parts.append("".join(current))
                current = []
            continue
        current.append(ch)
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    if quote or depth > 0:
        raise CommandLineError(f"unclosed {quote or 'bracket'} in {text!r}")
    if current:
        parts.append("".join(current))
    return parts


def parse(line: str) -> Command:
    """The command a line asks for; raises CommandLineError with its usage,
    or CommandError("unsendable") (see :func:`term`)."""
    verb, _, rest = line.strip().partition(" ")
    rest = rest.strip()
    if verb not in USAGE:
        raise CommandLineError(f"unknown command {verb!r}; commands: {', '.join(VERBS)}")
    usage = "usage: " + USAGE[verb]
    match verb:
        case "send":
            dest, _, text = rest.partition(" ")
            if not dest or not text.strip():
                raise CommandLineError(usage)
            return Send(dest, term(text.strip()))
        case "spawn":
            factory, _, args = rest.partition(" ")
            if not factory:
                raise CommandLineError(usage)
            return Spawn(factory, _spawn_args(args.strip()))
        case "kill":
            pid, _, reason = rest.partition(" ")
            if not pid:
                raise CommandLineError(usage)
            reason = reason.strip()
            return Kill(pid, _reason(reason)) if reason else Kill(pid)
        case "info" | "node":
            words = rest.split()
            if len(words) != 1:
                raise CommandLineError(usage)
            return Info(words[0]) if verb == "info" else Node(words[0])
        case "detail":
            if rest not in ("on", "off"):
                raise CommandLineError(usage)
            return Detail(rest == "on")
        case "sort":
            if rest not in SORT_KEYS:
                raise CommandLineError(f"{usage}; keys: {', '.join(SORT_KEYS)}")
            return Sort(rest)
        case "filter":
            return Filter(rest)
        case "reload" | "purge":
            words = rest.split()
            all_nodes = verb == "reload" and "--all-nodes" in words
            words = [w for w in words if w != "--all-nodes"] if verb == "reload" else words
            if len(words) != 1 or not all(p.isidentifier() for p in words[0].split(".")):
                raise CommandLineError(usage)
            return Reload(words[0], all_nodes) if verb == "reload" else Purge(words[0])
        case "log":
            words = rest.split()
            if len(words) > 1 or (words and words[0] not in KINDS):
                raise CommandLineError(f"{usage}; kinds: {', '.join(KINDS)}")
            return Log(words[0] if words else None)
        case "trace":
            return _trace(rest.split(), usage)
        case "tree":
            if rest:
                raise CommandLineError(usage)
            return Tree()
        case "restart" | "terminate":
            words = rest.split()
            if len(words) != 2:
                raise CommandLineError(f"{usage} (SUP: its pid or name; CHILD: the child's id)")
            kind = RestartChild if verb == "restart" else TerminateChild
            return kind(words[0], words[1])
        case _:
            if rest:
                raise CommandLineError(usage)
            return Help()


def _trace(words: list[str], usage: str) -> Trace:
    if not 1 <= len(words) <= 3:
        raise CommandLineError(usage)
    try:
        count = int(words[1]) if len(words) > 1 else TRACE_COUNT
        seconds = float(words[2]) if len(words) > 2 else TRACE_SECONDS
    except ValueError as e:
        raise CommandLineError(f"{usage}; COUNT is a whole number, SECONDS a number") from e
    if not 1 <= count <= MAX_TRACE_COUNT or not 0 < seconds <= MAX_TRACE_SECONDS:
        raise CommandLineError(
            f"{usage}; COUNT from 1 to {MAX_TRACE_COUNT}, SECONDS up to {MAX_TRACE_SECONDS:g}")
    return Trace(words[0], count, seconds)


def _reason(text: str) -> Any:
    """A literal, or a bare word taken as text: ``kill <n.3> shutdown``."""
    try:
        return term(text)
    except CommandLineError:
        if text.isidentifier():
            return text
        raise


def _spawn_args(text: str) -> list[Any]:
    if not text:
        return []
    parts = split_literals(text)
    if len(parts) == 1:
        value = term(parts[0])
        return list(value) if isinstance(value, list | tuple) else [value]
    return [term(p) for p in parts]
