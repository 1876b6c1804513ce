"""Hot code reload of one module on a running runtime (the BEAM's code:load_file).

Python cannot swap the code of a running coroutine, so a reload does what
can be done and says what it could not:

- the module is imported again, in place (``importlib.reload``): a module
  that fails to import (a syntax error, an exception at import) leaves the
  old namespace exactly as it was and raises :class:`ReloadFailed` with the
  traceback;
- every GenServer whose callbacks class comes from the module is moved to
  the new class of the same name between two messages, after the new
  ``code_change`` migrated its state (:func:`rusm.actors.gen_server.upgrade`);
  one whose ``code_change`` raises keeps its old code and state and is
  reported, the others are not affected;
- processes whose plain coroutine bodies come from the module keep running
  the old code: they are marked ``old_code`` (the observer shows it) and
  :func:`purge` kills them, so that their supervisors restart them on the
  new code.

Only modules already imported can be reloaded, and only those the caller
allows (``allowed``: a capability list, empty by default on a node).
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .errors import RusmError
from .gen_server import CodeChangeFailed, GenServer, servers, upgrade
from .messages import KILL
from .pid import Pid
from .runtime import Runtime

__all__ = ["ReloadFailed", "ReloadRefused", "ReloadReport", "old_code", "purge", "reload"]

log = logging.getLogger("rusm.actors.reload")


class ReloadRefused(RusmError):
    """The module may not be reloaded here: not allowed, or not loaded."""


class ReloadFailed(RusmError):
    """The new code did not import; the old code runs on everywhere.
    ``traceback`` is the import's traceback, as text."""

    def __init__(self, module: str, error: BaseException, tb: str) -> None:
        super().__init__(f"reload of {module} failed, the old code runs on: {error!r}")
        self.module = module
        self.error = error
        self.traceback = tb


@dataclass
class ReloadReport:
    """What one reload did."""

    module: str
    upgraded: list[dict[str, Any]] = field(default_factory=list)
    """GenServers now on the new code: ``pid``, ``class``, ``old_vsn``, ``vsn``."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    """GenServers left on their old code: ``pid``, ``class``, ``error``, ``traceback``."""
    old_code: list[str] = field(default_factory=list)
    """Pids still running the old code (plain bodies, and failed servers)."""
    rebound: list[str] = field(default_factory=list)
    """Spawnable factories re-bound to the new definitions (filled by the node)."""

    def to_wire(self) -> dict[str, Any]:
        return {"module": self.module, "upgraded": self.upgraded, "failed": self.failed,
                "old_code": self.old_code, "rebound": self.rebound}


def loaded(module: str, allowed: frozenset[str] | set[str] | tuple[str, ...]) -> ModuleType:
    """The loaded module ``module`` if ``allowed`` lets it be reloaded;
    raises ReloadRefused otherwise."""
    if module not in allowed:
        names = ", ".join(sorted(allowed)) or "none (start the node with --allow-reload MODULE)"
        raise ReloadRefused(f"reload of {module!r} is not allowed here (allowed: {names})")
    mod = sys.modules.get(module)
    if mod is None:
        raise ReloadRefused(f"module {module!r} is not loaded here: only loaded modules reload")
    return mod


def reimport(mod: ModuleType) -> ModuleType:
    """Import ``mod`` again in place; on failure its namespace is restored and
    ReloadFailed raised (with the traceback)."""
    saved = dict(mod.__dict__)
    try:
        return importlib.reload(mod)
    except BaseException as e:  # a SyntaxError, or anything the module raised
        mod.__dict__.clear()
        mod.__dict__.update(saved)
        sys.modules[mod.__name__] = mod
        tb = traceback.format_exc()
        log.warning("reload of %s failed, the old code runs on: %r", mod.__name__, e)
        if not isinstance(e, Exception):
            raise
        raise ReloadFailed(mod.__name__, e, tb) from e


def definition(mod: ModuleType, qualname: str) -> Any:
    """What ``mod`` defines now under ``qualname`` (``Outer.Inner`` too), or None."""
    value: Any = mod
    for part in qualname.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _current(mod: ModuleType, fn: Any) -> bool:
    return definition(mod, getattr(fn, "__qualname__", "")) is fn


def old_code(rt: Runtime, module: str) -> list[Pid]:
    """The processes of ``rt`` running code from ``module`` that the module no
    longer defines (plain bodies, and GenServers of a replaced class)."""
    mod = sys.modules.get(module)
    if mod is None:
        return []
    found: list[Pid] = []
    gen = {s.pid: s.callbacks for s in servers(rt)}
    for pid, body in rt.process_bodies():
        code = gen.get(pid, body)
        if getattr(code, "__module__", None) == module and not _current(mod, code):
            found.append(pid)
    return found


async def reload(
    rt: Runtime, module: str, allowed: frozenset[str] | set[str] | tuple[str, ...],
    extra: Any = None, timeout: float = 5.0,
) -> ReloadReport:
    """Reload ``module`` (see the module's doc); raises ReloadRefused or ReloadFailed."""
    mod = reimport(loaded(module, allowed))
    report = ReloadReport(module)
    for server in servers(rt):
        cls = server.callbacks
        if cls.__module__ != module:
            continue
        new = definition(mod, cls.__qualname__)
        entry: dict[str, Any] = {"pid": str(server.pid), "class": cls.__qualname__}
        if not (isinstance(new, type) and issubclass(new, GenServer)):
            report.failed.append({**entry, "error": f"{module} no longer defines the "
                                  f"GenServer {cls.__qualname__}", "traceback": ""})
            continue
        try:
            old_vsn, vsn = await upgrade(rt, server.pid, new, extra, timeout)
        except CodeChangeFailed as e:
            log.warning("reload of %s: %s stays on its old code: %r", module, server.pid, e.reason)
            report.failed.append({**entry, "error": repr(e.reason), "traceback": e.traceback})
        except RusmError as e:  # it exited meanwhile, or did not answer in time
            report.failed.append({**entry, "error": str(e), "traceback": ""})
        else:
            rt.mark_old_code(server.pid, False)
            report.upgraded.append({**entry, "old_vsn": old_vsn, "vsn": vsn})
    for pid in old_code(rt, module):
        rt.mark_old_code(pid)
        report.old_code.append(str(pid))
    log.info("reloaded %s: %d servers upgraded, %d failed, %d processes on old code",
             module, len(report.upgraded), len(report.failed), len(report.old_code))
    return report


def purge(rt: Runtime, module: str) -> list[Pid]:
    """Kill the processes still running ``module``'s old code (their
    supervisors restart them on the new code); returns their pids."""
    pids = old_code(rt, module)
    for pid in pids:
        rt.exit(pid, KILL)
    log.info("purged %s: killed %d processes on its old code", module, len(pids))
    return pids
