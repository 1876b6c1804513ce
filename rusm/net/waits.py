"""Who waits on whom across the cluster: cycles of calls that span nodes
(issue 12 §1).

Each node knows its own callers (``Runtime.calls_waiting`` for callees on
the node, ``Runtime.remote_calls_waiting`` for callees elsewhere). A cycle
that leaves a node must come back to it, so :func:`cluster_calls` starts
from this node's calls to other nodes and asks those nodes (the control RPC
``waits``) for their own calls, then the nodes *those* call, up to
``max_nodes`` nodes. Names (``(name, node)`` callees) are resolved by the
node that holds them. A peer's answer is checked like any input from the
network: what is malformed is left out, and at most ``MAX_EDGES`` calls are
taken from one node.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from rusm.actors.pid import Pid
from rusm.actors.runtime import Runtime

if TYPE_CHECKING:
    from .node import ClusterNode

__all__ = ["MAX_EDGES", "MAX_NODES", "cluster_calls", "local_waits", "merge"]

log = logging.getLogger("rusm.net.waits")

MAX_EDGES = 10_000
"""The most calls taken from one node's answer."""
MAX_NODES = 8
"""The most nodes one search asks."""

Callee = Pid | tuple[str, str]


def local_waits(rt: Runtime, names: Any) -> dict[str, Any]:
    """This node's answer to ``waits``: every blocked call of its processes
    (``edges``: [caller, callee]) and the pids of those of ``names`` it has
    registered (a peer's process calls one of them)."""
    edges: list[list[Any]] = [[a, b] for a, b in rt.calls_waiting().items()]
    edges += [[a, list(b) if isinstance(b, tuple) else b]
              for a, b in rt.remote_calls_waiting().items()]
    wanted = names if isinstance(names, list) else []
    found = {n: rt.whereis(n) for n in wanted[:MAX_EDGES] if isinstance(n, str)}
    return {"edges": edges[:MAX_EDGES], "names": {n: p for n, p in found.items() if p}}


def _callee(value: Any) -> Callee | None:
    if isinstance(value, Pid):
        return value
    if (isinstance(value, list | tuple) and len(value) == 2
            and all(isinstance(x, str) for x in value)):
        return (value[0], value[1])
    return None


def _node_of(callee: Callee) -> str:
    return callee.node if isinstance(callee, Pid) else callee[1]


async def cluster_calls(node: ClusterNode, timeout: float = 1.0,
                        max_nodes: int = MAX_NODES) -> dict[Pid, Pid]:
    """Caller -> callee for the blocked calls reachable from this node's
    calls to other nodes, over every node they lead to (a node that does not
    answer in ``timeout`` ends the paths through it)."""
    rt = node.runtime
    graph: dict[Pid, Callee] = {**rt.calls_waiting(), **rt.remote_calls_waiting()}
    names: dict[tuple[str, str], Pid] = {}
    asked = {node.name}
    while len(asked) < max_nodes:
        want: dict[str, set[str]] = {}
        for callee in graph.values():
            where = _node_of(callee)
            if where not in asked:
                wanted = want.setdefault(where, set())
                if isinstance(callee, tuple):
                    wanted.add(callee[0])
        if not want:
            break
        targets = list(want)[: max_nodes - len(asked)]
        answers = await asyncio.gather(
            *(node.request(n, "waits", (sorted(want[n]),), timeout) for n in targets),
            return_exceptions=True,
        )
        asked.update(targets)
        for where, answer in zip(targets, answers, strict=True):
            if isinstance(answer, BaseException) or not isinstance(answer, dict):
                log.debug("waits: no answer from %s (%r)", where, answer)
                continue
            merge(graph, names, where, answer)
    calls: dict[Pid, Pid] = {}
    for caller, callee in graph.items():
        pid = names.get(callee) if isinstance(callee, tuple) else callee
        if pid is not None:
            calls[caller] = pid
    return calls


def merge(graph: dict[Pid, Callee], names: dict[tuple[str, str], Pid], where: str,
           answer: dict[str, Any]) -> None:
    """Add one node's answer: only its own callers, only well-formed calls."""
    edges = answer.get("edges")
    for edge in (edges if isinstance(edges, list) else [])[:MAX_EDGES]:
        if not isinstance(edge, list | tuple) or len(edge) != 2:
            continue
        caller, callee = edge[0], _callee(edge[1])
        if isinstance(caller, Pid) and caller.node == where and callee is not None:
            graph.setdefault(caller, callee)
    found = answer.get("names")
    for name, pid in (found.items() if isinstance(found, dict) else ()):
        if isinstance(name, str) and isinstance(pid, Pid) and pid.node == where:
            names[(name, where)] = pid
