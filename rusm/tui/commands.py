"""The command pane's language: one line in, one typed command out.

Terms are Python literals read with :func:`ast.literal_eval` (never
``eval``): ``send worker {"job": 1, "tags": ("a", "b")}``. Parsing is pure;
running a command is the shell's job (:mod:`rusm.tui.shell`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from rusm.net.observe.protocol import SORT_KEYS

__all__ = [
    "USAGE",
    "VERBS",
    "CommandLineError",
    "Detail",
    "Filter",
    "Help",
    "Info",
    "Kill",
    "Node",
    "Send",
    "Sort",
    "Spawn",
    "parse",
    "split_literals",
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


Command = Send | Spawn | Kill | Info | Detail | Sort | Filter | Node | Help

USAGE = {
    "send": "send DEST TERM",
    "spawn": "spawn FACTORY [ARGS]",
    "kill": "kill PID [REASON]",
    "info": "info PID",
    "detail": "detail on|off",
    "sort": "sort KEY",
    "filter": "filter [TEXT]",
    "node": "node NAME",
    "help": "help",
}
VERBS = tuple(USAGE)


def literal(text: str) -> Any:
    """One Python literal; raises CommandLineError saying what is wrong."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        detail = e.msg if isinstance(e, SyntaxError) else str(e)
        raise CommandLineError(f"cannot read {text!r} as a Python literal: {detail}") from e


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
    """The command a line asks for; raises CommandLineError with its usage."""
    verb, _, rest = line.strip().partition(" ")
    rest = rest.strip()
    if verb not in USAGE:
        raise CommandLineError(f"unknown command {verb!r}; commands: {', '.join(VERBS)}")
    usage = "usage: " + USAGE[verb]
    match verb:
        case "send":
            dest, _, term = rest.partition(" ")
            if not dest or not term.strip():
                raise CommandLineError(usage)
            return Send(dest, literal(term.strip()))
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
        case _:
            if rest:
                raise CommandLineError(usage)
            return Help()


def _reason(text: str) -> Any:
    """A literal, or a bare word taken as text: ``kill <n.3> shutdown``."""
    try:
        return literal(text)
    except CommandLineError:
        if text.isidentifier():
            return text
        raise


def _spawn_args(text: str) -> list[Any]:
    if not text:
        return []
    parts = split_literals(text)
    if len(parts) == 1:
        value = literal(parts[0])
        return list(value) if isinstance(value, list | tuple) else [value]
    return [literal(p) for p in parts]
