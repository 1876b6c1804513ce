"""The node directory: what epmd is to the BEAM, as files and without a daemon.

``$RUSM_HOME`` (default ``~/.rusm``) ``/nodes/NAME.json``, mode 0600, holds a
running node's OS pid, its cluster and observe addresses and its observe
token. An entry whose OS process is gone is stale: it is ignored by lookups
and replaced by the next node of that name.

A name is claimed atomically: ``nodes/NAME.lock`` (0600, holding the pid)
carries an exclusive ``flock`` for as long as the node runs, so of two nodes
started together exactly one gets the name. The kernel drops the lock when
its process dies, so a dead node's claim is taken over by the next node of
that name with no guessing from pids. Files are opened without following
symlinks, entries are written to a temporary file created exclusively and
then renamed over ``NAME.json``, and ``nodes/`` must be a directory of ours:
a loose mode (group or others may enter or write) is tightened to 0700 with
a warning; a symlink or another user's directory is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import NodeRunning, NoSuchNode, UnsafeDirectory

__all__ = [
    "NoSuchNode",
    "NodeDirectory",
    "NodeEntry",
    "NodeRunning",
    "UnsafeDirectory",
    "rusm_home",
]

log = logging.getLogger("rusm.net.directory")

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_held: dict[str, tuple[int, int]] = {}
"""Claims this process holds: lock path -> (OS pid that took it, lock fd).
The pid keeps a forked child from believing it holds its parent's claims."""


def rusm_home() -> Path:
    return Path(os.environ.get("RUSM_HOME") or Path.home() / ".rusm")


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


def _holder(fd: int) -> bytes:
    """The pid in a lock file another process holds. It writes it right after
    taking the lock: give it a moment (at most 0.2 s) if it is not there yet."""
    deadline = time.monotonic() + 0.2
    while not (pid := os.pread(fd, 32, 0).strip()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return pid


def _ours(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()


class NodeDirectory:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or rusm_home()
        self.dir = self.home / "nodes"

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _read(self, path: Path) -> NodeEntry | None:
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except OSError:
            return None
        try:
            with os.fdopen(fd, "rb") as f:
                if not _ours(os.fstat(f.fileno())):
                    return None  # planted by someone else: not an entry
                d = json.loads(f.read())
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
            raise NodeRunning(self._running(name, old.os_pid))

    def _running(self, name: str, os_pid: int | None) -> str:
        if os_pid is None:
            return (
                f"a node named {name!r} is already being started by another process "
                f"(its claim is {self.dir / name}.lock); stop it or choose another name"
            )
        return (
            f"a node named {name!r} is already running (OS pid {os_pid}); "
            f"stop it or choose another name"
        )

    def claim(self, entry: NodeEntry) -> None:
        """Claim ``entry.name`` for this process and write ``entry``; raises
        NodeRunning if another live process has the name (a stale entry is
        replaced), UnsafeDirectory if the directory or a file of the name is
        not safely ours."""
        dfd = self._open_dir()
        try:
            self._lock(dfd, entry.name)
            try:
                self.lookup_free(entry.name)  # a node that took the name without a lock
                self._write(dfd, entry)
            except BaseException:
                self._unlock(dfd, entry.name)
                raise
        finally:
            os.close(dfd)

    def _open_dir(self) -> int:
        """``nodes/`` as a directory fd: created 0700, a loose mode tightened."""
        self.home.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.dir, 0o700)
        try:
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise UnsafeDirectory(
                f"the node directory {self.dir} is a symlink or not a directory; "
                f"remove it (rusm makes it again) or set RUSM_HOME elsewhere"
            ) from e
        st = os.fstat(dfd)
        if st.st_uid != os.getuid():
            os.close(dfd)
            raise UnsafeDirectory(
                f"the node directory {self.dir} belongs to uid {st.st_uid}, not to you; "
                f"remove it (rusm makes it again) or set RUSM_HOME elsewhere"
            )
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.warning(
                "node directory %s had mode %03o: tightened to 0700",
                self.dir, stat.S_IMODE(st.st_mode),
            )
            os.fchmod(dfd, 0o700)
        return dfd

    def _lock_key(self, name: str) -> str:
        return str(self.dir / f"{name}.lock")

    def _lock(self, dfd: int, name: str) -> None:
        """Hold ``NAME.lock``'s exclusive flock; raises NodeRunning if taken."""
        key, lock = self._lock_key(name), f"{name}.lock"
        held = _held.get(key)
        if held is not None and held[0] == os.getpid():
            return  # ours already: this process writes its entry again
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600, dir_fd=dfd)
            except OSError as e:
                if e.errno != errno.ELOOP:
                    raise
                raise UnsafeDirectory(
                    f"{self.dir / lock} is a symlink; remove it and start again"
                ) from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                old = self._read(self.path(name))
                os_pid = int(holder) if holder.isdigit() else None
                if os_pid is None and old is not None and _alive(old.os_pid):
                    os_pid = old.os_pid
                raise NodeRunning(self._running(name, os_pid)) from None
            st = os.fstat(fd)
            try:
                now = os.stat(lock, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)  # its holder released and removed it meanwhile: try the new one
                continue
            if not _ours(st):
                os.close(fd)
                raise UnsafeDirectory(
                    f"{self.dir / lock} is not a file of yours; remove it and start again"
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _held[key] = (os.getpid(), fd)
            return

    def _unlock(self, dfd: int, name: str) -> None:
        """Give up the claim on ``name`` if this process holds it: remove the
        lock file (while still locked, so nobody takes a file on its way
        out), then drop the lock."""
        held = _held.pop(self._lock_key(name), None)
        if held is None or held[0] != os.getpid():
            return
        fd = held[1]
        st = os.fstat(fd)
        with contextlib.suppress(FileNotFoundError):
            now = os.stat(f"{name}.lock", dir_fd=dfd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(f"{name}.lock", dir_fd=dfd)
        os.close(fd)

    def _write(self, dfd: int, entry: NodeEntry) -> None:
        """Write ``NAME.json`` through a temporary file made with O_EXCL (a
        file or symlink already at its name is never opened), then renamed
        over the entry (a symlink there is replaced, not followed)."""
        data = json.dumps(asdict(entry)).encode()
        tmp = f"{entry.name}.{os.getpid()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        for _ in range(100):
            try:
                fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
                break
            except FileExistsError:  # leftover or planted: leave it, pick another name
                tmp = f"{entry.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
        else:  # pragma: no cover - 100 random names all taken
            raise UnsafeDirectory(f"cannot create a temporary file in {self.dir}")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, f"{entry.name}.json", src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            raise

    def release(self, entry: NodeEntry) -> None:
        """Remove ``entry`` if it is still ours, and give up its name."""
        try:
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
        except OSError:
            return
        try:
            current = self._read(self.path(entry.name))
            if current is not None and current.os_pid == entry.os_pid:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{entry.name}.json", dir_fd=dfd)
            self._unlock(dfd, entry.name)
        finally:
            os.close(dfd)

    def running(self) -> list[NodeEntry]:
        if not self.dir.is_dir():
            return []
        entries = (self._read(p) for p in sorted(self.dir.glob("*.json")))
        return [e for e in entries if e is not None and _alive(e.os_pid)]
