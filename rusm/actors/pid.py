"""Process identifiers and references.

A :class:`Pid` names its node and a serial unique within that node's runtime,
printed like Erlang's ``<london.42>``. It also carries the runtime's
*creation* (Erlang's word): a random number drawn when the runtime starts,
so a pid kept from a node's previous run is not equal to, and reaches none
of, the processes of its next run. Creation 0 means "not known" (a pid
written by hand or parsed from text): it is delivered to whichever process
has the serial now. A :class:`Ref` is a unique token for a
monitor or a call. Both are frozen, hashable and ordered.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["Pid", "Ref"]

_PID_RE = re.compile(r"<(?P<node>[^<>\s]+)\.(?P<serial>\d+)>")


class Pid:
    """A process identifier: ``Pid("london", 42)`` prints as ``<london.42>``."""

    __slots__ = ("_hash", "creation", "node", "serial")
    node: str
    serial: int
    creation: int
    _hash: int

    def __init__(self, node: str, serial: int, creation: int = 0) -> None:
        # The slots' own setters (bound below): quicker than object.__setattr__.
        _pid_node(self, node)
        _pid_serial(self, serial)
        _pid_creation(self, creation)
        _pid_hash(self, hash((node, serial)))  # pids key dicts on every send

    @classmethod
    def parse(cls, text: str) -> Pid:
        """Parse ``<node.serial>``; raises ``ValueError`` for anything else."""
        m = _PID_RE.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"not a pid: {text!r} (expected the form <node.serial>)")
        return cls(m["node"], int(m["serial"]))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Pid is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Pid is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Pid:
            return NotImplemented
        return (
            self.serial == other.serial
            and self.node == other.node
            and self.creation == other.creation
        )

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: Pid) -> bool:
        return (self.node, self.serial) < (other.node, other.serial)

    def __str__(self) -> str:
        return f"<{self.node}.{self.serial}>"

    def __repr__(self) -> str:
        if self.creation:
            return f"Pid({self.node!r}, {self.serial}, creation={self.creation})"
        return f"Pid({self.node!r}, {self.serial})"

    def __reduce__(self) -> tuple[type[Pid], tuple[str, int, int]]:
        return (Pid, (self.node, self.serial, self.creation))


class Ref:
    """A unique reference (monitor or call), ``#Ref<london.7>``."""

    __slots__ = ("_hash", "node", "serial")
    node: str
    serial: int
    _hash: int

    def __init__(self, node: str, serial: int) -> None:
        _ref_node(self, node)
        _ref_serial(self, serial)
        _ref_hash(self, hash((node, serial, "ref")))  # each call keys a dict with one

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Ref is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Ref:
            return NotImplemented
        return self.serial == other.serial and self.node == other.node

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"#Ref<{self.node}.{self.serial}>"

    def __reduce__(self) -> tuple[type[Ref], tuple[str, int]]:
        return (Ref, (self.node, self.serial))


_pid_node = Pid.__dict__["node"].__set__
_pid_serial = Pid.__dict__["serial"].__set__
_pid_creation = Pid.__dict__["creation"].__set__
_pid_hash = Pid.__dict__["_hash"].__set__
_ref_node = Ref.__dict__["node"].__set__
_ref_serial = Ref.__dict__["serial"].__set__
_ref_hash = Ref.__dict__["_hash"].__set__
