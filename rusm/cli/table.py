"""The process table as ``rusm ps``, ``rusm attach``'s ``ps`` and the
off-terminal demo print it, a process's ``info`` as ``rusm info`` and
``rusm attach``'s ``info`` print it, and the lines of ``rusm log`` and
``rusm trace`` (and of ``log`` and ``trace`` in ``rusm attach``)."""

from __future__ import annotations

import time
from typing import Any

from rusm.observe.protocol import ProcessRow, Sample

__all__ = ["format_event", "format_info", "format_table", "format_trace", "format_tree",
           "stamp"]

_EVENT_KEYS = frozenset({"seq", "time", "kind", "pid", "label", "reason", "traceback", "crashed"})

_INFO_SECTIONS = ("where", "messages", "state", "labels")
_PID_LISTS = ("links", "monitors", "monitored_by", "waited_by")


def format_info(info: dict[str, Any]) -> str:
    """An ``info`` answer for a person: the facts a line each, then where it
    waits (its await chain, innermost first), its mailbox peek and its state."""
    lines = []
    for key, value in info.items():
        if key in _INFO_SECTIONS:
            continue
        labels = info.get("labels") or {}
        if key in _PID_LISTS and isinstance(value, list):
            value = ", ".join(f"{p} ({labels[p]})" if p in labels else str(p)
                              for p in value) or "-"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        elif value is None:
            value = "-"
        elif key == "deadlock":
            value = "YES: on a cycle of calls" if value else "no"
        lines.append(f"{key:>13}: {value}")
    frames = info.get("where") or []
    lines.append(f"{'where':>13}: " + ("-" if not frames else ""))
    lines.extend(f"{'':>15}{f['function']}  {f['file']}:{f['line']}" for f in frames)
    messages = info.get("messages") or []
    depth = info.get("mailbox_depth")
    more = f" (first {len(messages)} of {depth})" if isinstance(depth, int) and depth > len(
        messages) else ""
    lines.append(f"{'messages':>13}:{more}" + (" -" if not messages else ""))
    lines.extend(f"{'':>15}{m}" for m in messages)
    state = info.get("state")
    lines.append(f"{'state':>13}: " + ("- (none published)" if state is None else str(state)))
    return "\n".join(lines)


def stamp(t: Any) -> str:
    """A node's wall-clock time as ``2026-12-07T03:40:12.123Z`` (UTC)."""
    if not isinstance(t, int | float):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def format_event(e: dict[str, Any]) -> str:
    """One event of the node's log: time, kind, pid, label, reason, the
    kind's own facts (``child=worker restarts=3``), then a crash's traceback
    indented below."""
    parts = [stamp(e.get("time")), f"{e.get('kind', '?'):<13}", str(e.get("pid") or "-"),
             str(e.get("label") or "-"), str(e.get("reason") if e.get("reason") is not None
                                             else "-")]
    parts += [f"{k}={v}" for k, v in e.items() if k not in _EVENT_KEYS and v is not None]
    line = "  ".join(parts)
    tb = e.get("traceback")
    if isinstance(tb, str):
        line += "\n" + "\n".join("    " + t for t in tb.splitlines())
    return line


def format_tree(trees: list[dict[str, Any]]) -> str:
    """The supervision trees as ``rusm tree`` prints them: each supervisor
    with its strategy and intensity, each child with its pid (``-`` while
    stopped), restart type and restart count, nested supervisors indented."""
    lines: list[str] = []

    def supervisor(s: dict[str, Any]) -> str:
        return (f"{s.get('strategy')}, at most {s.get('max_restarts')} restarts in "
                f"{s.get('max_seconds'):g} s")

    def children(s: dict[str, Any], prefix: str) -> None:
        kids = s.get("children") or []
        for n, c in enumerate(kids):
            last = n == len(kids) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{c.get('id')}  "
                         f"{c.get('pid') or '- (stopped)'}  {c.get('restart')}  "
                         f"restarts {c.get('restarts')}"
                         + (f"  [supervisor: {supervisor(c)}]" if c.get("supervisor") else ""))
            if c.get("children") is not None:
                children(c, prefix + ("    " if last else "│   "))

    for s in trees:
        lines.append(f"{s.get('label') or '-'} {s.get('pid')}  [supervisor: {supervisor(s)}]")
        children(s, "")
    return "\n".join(lines) or "(no supervisors)"


def format_trace(e: dict[str, Any]) -> str:
    """One traced message: time, direction, the other end, the term."""
    arrow = "<-" if e.get("direction") == "in" else "->"
    return (f"{stamp(e.get('time'))}  {e.get('pid')} {e.get('direction', '?'):<3} {arrow} "
            f"{e.get('peer')}  {e.get('term')}")


def _row(r: ProcessRow) -> str:
    names = ",".join(r.names)
    return (f"{r.pid:<16} {(r.label or '')[:20]:<20} {names[:16]:<16} {r.mailbox:>7} "
            f"{r.links:>5} {r.monitors:>4} {r.status:<8} {r.received:>9} {r.sent:>9} "
            f"{r.cpu:>5.1f} {_bytes(r.memory):>6}  {r.waiting}").rstrip()


def _bytes(n: int) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def format_table(s: Sample) -> str:
    """A sample as the ``ps`` table (header line, then rows)."""
    t = s.totals
    lines = [
        f"node {s.node}  up {s.uptime:.0f}s  processes {s.processes}  "
        f"in {t.msgs_in_per_s:.0f}/s  out {t.msgs_out_per_s:.0f}/s  "
        f"dead letters {t.dead_letters_per_s:.0f}/s ({t.dead_letters})  mailbox {t.mailbox}  "
        f"loop lag {t.loop_lag_ms:.0f} ms  blocked steps {t.blocked_steps}"
        + (f" (last {t.last_blocked})" if t.last_blocked else "")
        + (f"  DEADLOCK: {t.deadlocked} processes in a cycle of calls" if t.deadlocked else "")
        # the peers last: scripts read the line's end as the node list
        + f"  nodes {', '.join(s.nodes) or '-'}"
    ]
    if not s.detail:
        lines.append("(detail off: detail on shows the process table)")
        return "\n".join(lines)
    lines.append(f"{'PID':<16} {'LABEL':<20} {'NAMES':<16} {'MAILBOX':>7} {'LINKS':>5} "
                 f"{'MON':>4} {'STATUS':<8} {'RECEIVED':>9} {'SENT':>9} {'CPU%':>5} "
                 f"{'MEM':>6}  WAITS ON")
    lines.extend(_row(r) for r in s.rows)
    if s.omitted:
        lines.append(f"... {s.omitted} more not shown (sorted by {s.sort})")
    return "\n".join(lines)
