"""The node directory: what epmd is to the BEAM, as files and without a daemon.

``$RUSM_HOME`` (default ``~/.rusm``) ``/nodes/NAME.json``, mode 0600, holds a
running node's OS pid, its cluster and observe addresses and its observe
token. An entry whose OS process is gone is stale: it is ignored by lookups
and replaced by the next node of that name.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from rusm.actors.errors import RusmError

__all__ = ["NoSuchNode", "NodeDirectory", "NodeEntry", "NodeRunning", "rusm_home"]


def rusm_home() -> Path:
    return Path(os.environ.get("RUSM_HOME") or Path.home() / ".rusm")


class NodeRunning(RusmError):
    """Raised when starting a node whose name is taken by a running node."""


class NoSuchNode(RusmError):
    """Raised when looking up a name that no running node has."""


@dataclass(frozen=True, slots=True)
class NodeEntry:
    name: str
    os_pid: int
    cluster: tuple[str, int]
    observe: tuple[str, int]
    token: str
    started: float

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(32)


def _alive(os_pid: int) -> bool:
    try:
        os.kill(os_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NodeDirectory:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or rusm_home()
        self.dir = self.home / "nodes"

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _read(self, path: Path) -> NodeEntry | None:
        try:
            d = json.loads(path.read_text())
            return NodeEntry(
                name=d["name"], os_pid=int(d["os_pid"]), cluster=tuple(d["cluster"]),
                observe=tuple(d["observe"]), token=d["token"], started=float(d["started"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def lookup(self, name: str) -> NodeEntry:
        """The running node ``name``; raises NoSuchNode (stale entries do not count)."""
        entry = self._read(self.path(name))
        if entry is None or not _alive(entry.os_pid):
            raise NoSuchNode(
                f"no node named {name!r} is running on this machine "
                f"(directory {self.dir}; see `rusm node ls`)"
            )
        return entry

    def lookup_free(self, name: str) -> None:
        """Raise NodeRunning if a live node is called ``name``."""
        old = self._read(self.path(name))
        if old is not None and old.os_pid != os.getpid() and _alive(old.os_pid):
            raise NodeRunning(
                f"a node named {name!r} is already running (OS pid {old.os_pid}); "
                f"stop it or choose another name"
            )

    def claim(self, entry: NodeEntry) -> None:
        """Write ``entry``; raises NodeRunning if a live node has its name.
        A stale entry is replaced."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.path(entry.name)
        self.lookup_free(entry.name)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(entry), f)
        os.replace(tmp, path)

    def release(self, entry: NodeEntry) -> None:
        """Remove ``entry`` if it is still ours."""
        current = self._read(self.path(entry.name))
        if current is not None and current.os_pid == entry.os_pid:
            self.path(entry.name).unlink(missing_ok=True)

    def running(self) -> list[NodeEntry]:
        if not self.dir.is_dir():
            return []
        entries = (self._read(p) for p in sorted(self.dir.glob("*.json")))
        return [e for e in entries if e is not None and _alive(e.os_pid)]
