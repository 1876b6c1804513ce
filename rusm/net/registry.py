"""The global registry: names known on every node of a cluster, kept by gossip.

Each node keeps the whole table. A registration is gossiped to every peer;
a node that joins gets the whole table (``sync``) and gives its own. A change
that alters a node's table is passed on to its other peers, so names spread
through any connected cluster. Names go when their process exits (its node
gossips ``remove``) or when their node goes down.

Conflicts (two nodes registered one name concurrently, or two clusters
joined): on every node independently, the registration whose pid sorts first
(node name, then serial) wins, so all nodes agree without a round of
messages. The node of the losing process removes the loser's claim and sends
the loser :class:`GlobalNameConflict` (Erlang's ``global`` resolver kills one
of them; RUSM tells it and lets it decide).

Gossip is untrusted input: a peer's entries for this node's own pids are
ignored (this node alone says what its processes hold), and a node's names
are capped (``max_per_node``), so one peer cannot grow every table without
bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from rusm.actors.errors import NameTaken, NotRegistered
from rusm.actors.pid import Pid

from .messages import GlobalNameConflict

__all__ = ["GlobalRegistry"]

log = logging.getLogger("rusm.net.registry")

Entries = tuple[tuple[str, Pid], ...]


class GlobalRegistry:
    """One node's copy of the table. Sans-I/O: ``broadcast`` and ``tell`` are
    the node's, called with what to gossip and whom to tell."""

    def __init__(
        self,
        node: str,
        broadcast: Callable[[str, Entries, str | None], None],
        tell: Callable[[Pid, object], None],
        watch: Callable[[Pid], None],
        max_per_node: int = 100_000,
        conflict: Callable[[str, Pid, Pid], None] | None = None,
    ) -> None:
        self.node = node
        self.names: dict[str, Pid] = {}
        self.max_per_node = max_per_node
        self._per_node: dict[str, int] = {}  # names held by each node's pids
        self._refused: set[str] = set()  # nodes already warned about the cap
        self._broadcast = broadcast  # (op, entries, except_node)
        self._tell = tell
        self._watch = watch
        self._conflict = conflict  # (name, winner, loser), for the node's event log

    def register(self, name: str, pid: Pid) -> None:
        holder = self.names.get(name)
        if holder is not None and holder != pid:
            raise NameTaken(name, holder)
        if holder is None:
            self.names[name] = pid
            self._per_node[pid.node] = self._per_node.get(pid.node, 0) + 1
            if pid.node == self.node:
                self._watch(pid)
            self._broadcast("add", ((name, pid),), None)

    def unregister(self, name: str) -> None:
        pid = self.names.get(name)
        if pid is None:
            raise NotRegistered(name)
        self._drop(name, pid)
        self._broadcast("remove", ((name, pid),), None)

    def whereis(self, name: str) -> Pid | None:
        return self.names.get(name)

    def entries(self) -> Entries:
        return tuple(sorted(self.names.items()))

    def gossip(self, op: str, entries: Iterable[tuple[str, Pid]], from_node: str) -> None:
        """Apply a peer's gossip; pass on what changed our table."""
        changed = []
        for name, pid in entries:
            if pid.node == self.node:
                continue  # our own processes' names are ours to say
            if op == "remove":
                if self.names.get(name) == pid:
                    self._drop(name, pid)
                    changed.append((name, pid))
            elif self._add(name, pid):
                changed.append((name, pid))
        if changed:
            self._broadcast("remove" if op == "remove" else "add", tuple(changed), from_node)

    def _add(self, name: str, pid: Pid) -> bool:
        holder = self.names.get(name)
        if holder == pid:
            return False
        if holder is not None:
            winner, loser = (holder, pid) if holder < pid else (pid, holder)
            log.info("global name %r claimed by %s and %s: %s wins", name, holder, pid, winner)
            if self._conflict is not None:
                self._conflict(name, winner, loser)
            if loser.node == self.node:
                self._tell(loser, GlobalNameConflict(name, winner))
            if winner == holder:
                return False
        held = self._per_node.get(pid.node, 0)
        if held >= self.max_per_node and pid.node != self.node:
            if pid.node not in self._refused:
                self._refused.add(pid.node)
                log.warning("global names of node %s past the cap of %d: the rest are ignored",
                            pid.node, self.max_per_node)
            return False
        if holder is not None:
            self._drop(name, holder)
        self.names[name] = pid
        self._per_node[pid.node] = self._per_node.get(pid.node, 0) + 1
        return True

    def _drop(self, name: str, pid: Pid) -> None:
        del self.names[name]
        left = self._per_node.get(pid.node, 0) - 1
        if left > 0:
            self._per_node[pid.node] = left
        else:
            self._per_node.pop(pid.node, None)
            self._refused.discard(pid.node)

    def process_exited(self, pid: Pid) -> None:
        gone = tuple((n, p) for n, p in self.names.items() if p == pid)
        for name, p in gone:
            self._drop(name, p)
        if gone:
            self._broadcast("remove", gone, None)

    def node_down(self, node: str) -> None:
        gone = tuple((n, p) for n, p in self.names.items() if p.node == node)
        for name, p in gone:
            self._drop(name, p)
        if gone:
            self._broadcast("remove", gone, node)
