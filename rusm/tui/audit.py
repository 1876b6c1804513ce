"""The audit log: one line per mutating command run from ``rusm top``.

Each line is tab-separated: ISO 8601 UTC time, target node, the command as
typed, and ``ok`` (with the node's answer) or ``error: MESSAGE``::

    2025-01-01T12:00:00+00:00\tlondon\tkill <london.12>\tok <london.12>
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["AuditLog", "default_audit_path"]


def default_audit_path() -> Path:
    """``$RUSM_HOME/audit.log``; RUSM_HOME defaults to ``~/.rusm``."""
    home = os.environ.get("RUSM_HOME") or str(Path.home() / ".rusm")
    return Path(home) / "audit.log"


def _one_line(text: str) -> str:
    return " ".join(text.split())


class AuditLog:
    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = path
        self.clock = clock

    def append(self, target: str, command: str, result: str) -> None:
        """Append one line; raises OSError if the log cannot be written."""
        when = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")
        line = "\t".join((when, _one_line(target), _one_line(command), _one_line(result)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
