"""Supervisors: ordinary processes that start, watch and restart children.

::

    sup = Supervisor(
        [ChildSpec("db", db_body, name="db"), ChildSpec("web", web_body, args=(8080,))],
        strategy="rest_for_one", max_restarts=3, max_seconds=5.0,
    )
    sup_pid = rt.spawn(sup, label="app_sup")

As in OTP: children are started in order and linked; the supervisor traps
exits. Strategies: ``one_for_one`` restarts the child that exited,
``one_for_all`` stops the others (in reverse start order) and restarts all,
``rest_for_one`` stops and restarts the children started after it. Restart
types: ``permanent`` always, ``transient`` only after an abnormal exit
(anything but ``normal``/``shutdown``), ``temporary`` never. More than
``max_restarts`` restarts within ``max_seconds`` and the supervisor stops its
children and exits with reason ``shutdown``. A restarted child gets a new pid
and its ``name`` registered again. The supervisor answers ``Call`` requests
``"which_children"`` with ``[(id, pid or None), ...]``,
``("terminate_child", id)`` (it stays stopped) and ``("restart_child", id)``
(stopped first if it runs; an operator's restart does not count towards the
intensity) with ``"ok"`` or ``("error", message)``.

A supervisor publishes its :class:`SupervisorState` (``Process.publish_state``)
whenever a child starts or stops, so an observer sees its children, their
restart types and restart counts; :func:`supervision_tree` assembles the
tree of a runtime's supervisors from them.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ProcessExit, Timeout
from .messages import SHUTDOWN, Call, Exit, is_normal
from .pid import Pid
from .process import Process
from .runtime import Body, Runtime

__all__ = ["ChildSpec", "ChildState", "Restart", "Strategy", "Supervisor", "SupervisorState",
           "supervision_tree"]

log = logging.getLogger("rusm.actors.supervisor")

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
Restart = Literal["permanent", "transient", "temporary"]


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start one child, and when to restart it."""

    id: str
    body: Body
    args: tuple[Any, ...] = ()
    restart: Restart = "permanent"
    name: str | None = None
    """Registered name, registered again on every restart."""
    label: str | None = None
    """Observer label (default: ``id``)."""
    shutdown: float = 5.0
    """Seconds a child gets to exit after a ``shutdown`` signal before it is killed."""


class Supervisor:
    """A supervisor spec; spawn it like a body: ``rt.spawn(Supervisor([...]))``.

    The spec holds no run state, so one spec may be spawned many times.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec],
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
    ) -> None:
        if strategy not in ("one_for_one", "one_for_all", "rest_for_one"):
            raise ValueError(f"unknown supervisor strategy {strategy!r}")
        ids = [c.id for c in children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"child ids must be unique: {ids}")
        self.children = tuple(children)
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds

    async def __call__(self, proc: Process) -> None:
        await _Run(self, proc).loop()


@dataclass(frozen=True, slots=True)
class ChildState:
    """One child as its supervisor last published it."""

    id: str
    pid: Pid | None
    """None while it is stopped (terminated, or temporary and gone)."""
    label: str
    restart: Restart
    restarts: int
    """Restarts by the supervisor since it started (an operator's not counted)."""
    supervisor: bool
    """Whether the child is itself a supervisor."""


@dataclass(frozen=True, slots=True)
class SupervisorState:
    """What a supervisor publishes: its strategy, intensity and children."""

    strategy: Strategy
    max_restarts: int
    max_seconds: float
    children: tuple[ChildState, ...]


def supervision_tree(rt: Runtime) -> list[dict[str, Any]]:
    """The runtime's supervisors as trees: the supervisors no other one
    supervises, each ``{pid, label, strategy, max_restarts, max_seconds,
    children}``, a child ``{id, pid, label, restart, restarts, supervisor}``
    and, for a supervisor, its own ``strategy``... and ``children``."""
    states: dict[Pid, SupervisorState] = rt.published(SupervisorState)
    supervised = {c.pid for s in states.values() for c in s.children if c.pid is not None}

    def node(pid: Pid, seen: frozenset[Pid]) -> dict[str, Any]:
        state = states[pid]
        info = rt.process_info(pid)
        out: dict[str, Any] = {
            "pid": pid, "label": info.label if info else None, "strategy": state.strategy,
            "max_restarts": state.max_restarts, "max_seconds": state.max_seconds,
            "children": [],
        }
        for c in state.children:
            child: dict[str, Any] = {"id": c.id, "pid": c.pid, "label": c.label,
                                     "restart": c.restart, "restarts": c.restarts,
                                     "supervisor": c.supervisor}
            if c.pid in states and c.pid not in seen:
                child.update({k: v for k, v in node(c.pid, seen | {c.pid}).items()
                              if k not in ("pid", "label")})
            out["children"].append(child)
        return out

    return [node(pid, frozenset({pid})) for pid in sorted(states) if pid not in supervised]


class _Run:
    """The state of one running supervisor."""

    def __init__(self, spec: Supervisor, proc: Process) -> None:
        self.spec = spec
        self.proc = proc
        self.pids: list[Pid | None] = [None] * len(spec.children)
        self.restarts: deque[float] = deque()
        self.counts = [0] * len(spec.children)
        """Restarts of each child since the supervisor started."""
        info = proc.runtime.process_info(proc.pid)
        self.parents = set(info.links) if info else set()

    def publish(self) -> None:
        """Tell observers what the children are now (SupervisorState)."""
        spec = self.spec
        self.proc.publish_state(SupervisorState(spec.strategy, spec.max_restarts,
                                                spec.max_seconds, tuple(
            ChildState(c.id, pid, c.label or c.id, c.restart, n, isinstance(c.body, Supervisor))
            for c, pid, n in zip(spec.children, self.pids, self.counts, strict=True))))

    async def loop(self) -> None:
        proc = self.proc
        proc.trap_exits = True
        for i in range(len(self.pids)):
            self.start(i)
        self.publish()
        while True:
            msg = await proc.receive()
            if isinstance(msg, Exit):
                await self.on_exit(msg.pid, msg.reason)
            elif isinstance(msg, Call):
                msg.reply(await self.request(msg.request))
            else:
                log.warning("supervisor %s: unexpected message %r", proc.pid, msg)
            self.publish()

    async def request(self, request: Any) -> Any:
        """A Call's answer: which_children, terminate_child, restart_child."""
        if request == "which_children":
            ids = [c.id for c in self.spec.children]
            return list(zip(ids, self.pids, strict=True))
        if (isinstance(request, tuple) and len(request) == 2
                and request[0] in ("terminate_child", "restart_child")):
            ids = [c.id for c in self.spec.children]
            if request[1] not in ids:
                return ("error", f"no child {request[1]!r} (children: {', '.join(ids)})")
            i = ids.index(request[1])
            await self.terminate(i)
            if request[0] == "restart_child":
                self.start(i)
                child = self.spec.children[i]
                self.proc.runtime.events.record(
                    "restart", self.pids[i], child.label or child.id,
                    reason="restarted by an operator", child=child.id,
                    restarts=self.counts[i], supervisor=str(self.proc.pid))
            log.info("supervisor %s: %s %s", self.proc.pid, request[0], request[1])
            return "ok"
        return ("error", f"unknown supervisor request {request!r}")

    def start(self, i: int) -> None:
        child = self.spec.children[i]
        body = current_code(child.body)
        pid = self.proc.spawn_link(body, *child.args, label=child.label or child.id)
        if child.name is not None:
            self.proc.runtime.register(child.name, pid)
        self.pids[i] = pid

    async def terminate(self, i: int) -> None:
        pid = self.pids[i]
        if pid is None:
            return
        self.pids[i] = None

        def exit_of(m: Any) -> bool:
            return isinstance(m, Exit) and m.pid == pid

        self.proc.exit(pid, SHUTDOWN)
        try:
            await self.proc.receive(self.spec.children[i].shutdown, exit_of)
        except Timeout:
            log.warning("supervisor %s: child %s ignored shutdown; killing", self.proc.pid, pid)
            self.proc.kill(pid)
            await self.proc.receive(None, exit_of)

    async def shutdown(self, reason: Any) -> None:
        for i in reversed(range(len(self.pids))):
            await self.terminate(i)
        raise ProcessExit(reason)

    async def on_exit(self, pid: Pid, reason: Any) -> None:
        if pid not in self.pids:
            if pid in self.parents and not is_normal(reason):
                await self.shutdown(reason)
            elif pid not in self.parents:
                log.warning("supervisor %s: exit from unknown %s (%r)", self.proc.pid, pid, reason)
            return
        i = self.pids.index(pid)
        child = self.spec.children[i]
        self.pids[i] = None
        if child.restart == "temporary" or (child.restart == "transient" and is_normal(reason)):
            return
        if self.intensity_exceeded():
            log.error(
                "supervisor %s: more than %d restarts in %.1f s; shutting down",
                self.proc.pid, self.spec.max_restarts, self.spec.max_seconds,
            )
            self.proc.runtime.events.record(
                "max_restarts", self.proc.pid, self.proc.label,
                reason=f"more than {self.spec.max_restarts} restarts in "
                       f"{self.spec.max_seconds:g} s", child=child.id,
                max_restarts=self.spec.max_restarts, max_seconds=self.spec.max_seconds,
            )
            await self.shutdown(SHUTDOWN)
        strategy = self.spec.strategy
        group: Sequence[int]
        if strategy == "one_for_one":
            group = [i]
        else:
            first = 0 if strategy == "one_for_all" else i
            group = range(first, len(self.pids))
        # Children that had stopped for good (temporary, transient after a
        # clean exit) stay stopped; temporary ones are never restarted.
        restart = [
            j for j in group
            if (j == i or self.pids[j] is not None)
            and (j == i or self.spec.children[j].restart != "temporary")
        ]
        for j in reversed(group):
            await self.terminate(j)
        for j in restart:
            self.start(j)
            self.counts[j] += 1
            self.proc.runtime.events.record(
                "restart", self.pids[j], self.spec.children[j].label or self.spec.children[j].id,
                reason=reason if j == i else f"restarted with {child.id}",
                child=self.spec.children[j].id, restarts=self.counts[j],
                supervisor=str(self.proc.pid),
            )

    def intensity_exceeded(self) -> bool:
        loop = self.proc.runtime._loop
        assert loop is not None
        now = loop.time()
        self.restarts.append(now)
        while self.restarts and self.restarts[0] < now - self.spec.max_seconds:
            self.restarts.popleft()
        return len(self.restarts) > self.spec.max_restarts


def current_code(body: Body) -> Body:
    """``body`` as its module defines it now: a child is (re)started with a
    fully qualified lookup, as the BEAM's supervisors call ``M:F(A)``, so one
    restarted after a hot reload runs the new code. A method of a class (a
    GenServer's ``serve``) is looked up on the class of the same name; a body
    that is not a module-level name (a closure, an instance) is itself."""
    owner = getattr(body, "__self__", None)
    if isinstance(owner, type):
        cls = _defined(owner)
        new = getattr(cls, getattr(body, "__name__", ""), None) if cls is not None else None
    else:
        new = _defined(body)
    return new if new is not None and type(new) is type(body) else body


def _defined(obj: Any) -> Any:
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    qualname = getattr(obj, "__qualname__", "")
    if module is None or not qualname or "<locals>" in qualname:
        return None
    value: Any = module
    for part in qualname.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value
