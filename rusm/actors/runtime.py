"""The local actor runtime: spawning, delivery, names, links, monitors, exits.

One :class:`Runtime` owns every process task. Each process is one asyncio
Task running its body; the process context keeps its state in ``__slots__``
and its mailbox is created on first delivery, so an idle process costs about
1.8 KB. Delivery is synchronous and never blocks: ``send`` appends to the
target's mailbox and wakes it if it waits in ``receive``.

Exits follow the BEAM. When a process dies, at once (before ``send`` or
``kill`` returns): its names are released, its monitors fire (one ``Down``
each), its links get exit signals, and messages left in its mailbox are
counted as dead letters. A process killed by a signal is marked dead at once
and its task is cancelled; its ``finally`` blocks still run (Python cannot
stop a coroutine without unwinding it) but it can no longer send or receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import secrets
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from . import diagnose as dg
from .errors import NameTaken, NoProc, NotRegistered, ProcessExit, RuntimeClosed, RusmError
from .events import EventLog
from .info import ProcessInfo, RuntimeStats, Status
from .messages import KILL, KILLED, NOCONNECTION, NOPROC, NORMAL, SHUTDOWN, Call, Down, Exit, Reply
from .meter import Meter
from .pid import Pid, Ref
from .process import UNPUBLISHED, Process
from .remote import RemoteDest, RemoteRouter
from .trace import Trace

_RECEIVE = Process.receive.__code__
_CALL = Process.call.__code__

__all__ = ["Body", "Runtime", "RuntimeConfig"]

log = logging.getLogger("rusm.actors")

Body = Callable[..., Coroutine[Any, Any, Any]]


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Settings of a :class:`Runtime`."""

    shutdown_timeout: float = 5.0
    """Seconds ``wait_closed`` waits for cancelled process tasks to unwind
    before it reports the stuck ones and raises."""


def _check_async_callable(body: object) -> bool:
    if inspect.iscoroutinefunction(body):
        return True
    call = getattr(type(body), "__call__", None)  # noqa: B004 - we want the type's method
    return call is not None and inspect.iscoroutinefunction(call)


_async_bodies: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()


def _is_async_callable(body: object) -> bool:
    """``_check_async_callable``, remembered per body (inspect is slow on the spawn path)."""
    try:
        return _async_bodies[body]
    except (KeyError, TypeError):  # TypeError: not weak-referenceable or unhashable
        pass
    ok = _check_async_callable(body)
    with contextlib.suppress(TypeError):
        _async_bodies[body] = ok
    return ok


def _is(reason: Any, constant: str) -> bool:
    return reason.__class__ is str and reason == constant


class Runtime:
    """An actor runtime. Use as ``async with Runtime() as rt:``.

    ``node`` names the node in every pid (``<node.serial>``). Pid serial 0 is
    the runtime itself: it is the sender of exit signals that come from
    outside any process.
    """

    def __init__(self, node: str = "local", config: RuntimeConfig | None = None) -> None:
        self.node = node
        self.config = config or RuntimeConfig()
        self.creation = secrets.randbits(32) or 1
        """This run's number, in every pid it makes (see :class:`Pid`)."""
        self._self_pid = Pid(node, 0, self.creation)
        self._router: RemoteRouter | None = None
        self._by_node: dict[str, set[Process]] = {}
        self.spawned = 0
        self.exited = 0
        self.messages = 0
        self.dead_letters = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serials = itertools.count(1)
        self._refs = itertools.count(1)
        self._procs: dict[int, Process] = {}
        self._unwinding: dict[int, Process] = {}
        self._calling: set[Process] = set()  # processes blocked in call (diagnose)
        self._meter: Meter | None = None
        self._filled: list[Process] | None = None  # see track_filled
        self.events = EventLog()
        """What happened: exits, restarts, nodes up and down (rusm.actors.events)."""
        self._names: dict[str, Process] = {}
        self._dying: deque[tuple[Process, Any, bool]] = deque()
        self._draining = False
        self._closing = False

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        self._bind_loop()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        await self.wait_closed()

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("a Runtime is bound to the event loop it first ran on")
        return loop

    def set_router(self, router: RemoteRouter | None, node: str | None = None) -> None:
        """Install the cluster layer that reaches other nodes (``rusm.net`` does).

        ``node`` renames this runtime's node, which is only possible before
        the first spawn (pids carry the node name).
        """
        if node is not None and node != self.node:
            if self.spawned:
                raise RuntimeError("a runtime's node name can only change before its first spawn")
            self.node = node
            self._self_pid = Pid(node, 0, self.creation)
        self._router = router

    @property
    def node_pid(self) -> Pid:
        """``<node.0>``: the node itself, as the sender of what no process sent."""
        return self._self_pid

    def count_dead_letter(self) -> None:
        """Count a message a cluster layer could not deliver (no link to its node)."""
        self.dead_letters += 1

    @property
    def closed(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop every process (reason ``shutdown``). Idempotent; see ``wait_closed``."""
        if self._closing:
            return
        self._closing = True
        if self._meter is not None:
            self._meter.stop()
        for proc in list(self._procs.values()):
            self._exit_now(proc, SHUTDOWN, cancel=True)

    async def wait_closed(self) -> None:
        """Wait until every process task has finished. Raises :class:`RusmError`
        naming the processes that refused to stop within ``shutdown_timeout``."""
        deadline = asyncio.get_running_loop().time() + self.config.shutdown_timeout
        while self._unwinding:
            tasks = {p._task for p in self._unwinding.values() if p._task is not None}
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                stuck = ", ".join(str(p.pid) for p in self._unwinding.values())
                log.error("runtime %s: processes did not stop: %s", self.node, stuck)
                raise RusmError(f"processes did not stop within the shutdown timeout: {stuck}")
            await asyncio.wait(tasks, timeout=remaining)
            for p in list(self._unwinding.values()):
                if p._task is not None and not p._task.done():
                    p._task.cancel()  # it swallowed the first cancellation

    # -- spawning ------------------------------------------------------------

    def spawn(self, body: Body, *args: Any, label: str | None = None) -> Pid:
        """Start ``body(proc, *args)`` as a new process and return its pid at once.

        ``label`` (default: the body's qualified name) is what the observer shows.
        """
        return self._spawn(body, args, label, None).pid

    def _spawn(
        self, body: Body, args: tuple[Any, ...], label: str | None, link_to: Process | None
    ) -> Process:
        if self._closing:
            raise RuntimeClosed(f"runtime {self.node} is closed")
        if not _is_async_callable(body):
            raise TypeError(f"a process body must be an async function, not {body!r}")
        loop = self._loop or self._bind_loop()
        proc = Process(
            self, Pid(self.node, next(self._serials), self.creation), label, time.time()
        )
        if label is None:
            proc.label = getattr(body, "__qualname__", None) or type(body).__qualname__
        proc.body = body
        self._procs[proc.pid.serial] = proc
        self.spawned += 1
        if link_to is not None:
            self._add_link(link_to, proc)
        proc._task = loop.create_task(self._main(proc, body, args))
        return proc

    async def _main(self, proc: Process, body: Body, args: tuple[Any, ...]) -> None:
        # The body's coroutine is made here, not at spawn, so that a process
        # killed before its first step leaves no never-awaited coroutine.
        reason: Any = NORMAL
        try:
            await body(proc, *args)
        except ProcessExit as e:
            reason = e.reason
        except asyncio.CancelledError:
            reason = SHUTDOWN
        except Exception as e:
            reason = e
            if not proc._dead:
                log.error("process %s (%s) crashed", proc.pid, proc.label, exc_info=e)
        except BaseException as e:  # KeyboardInterrupt, SystemExit: die, then pass it on
            if not proc._dead:
                self._exit_now(proc, e, cancel=False)
            raise
        if not proc._dead:
            self._exit_now(proc, reason, cancel=False)

    # -- delivery ------------------------------------------------------------

    def send(self, dest: Pid | str | tuple[str, str], msg: Any) -> None:
        """Deliver ``msg`` to a pid, a registered name, or ``(name, node)``.

        Never blocks, never raises for a dead pid or unknown name: that
        message is a dead letter. Sent from ``<node.0>``, the runtime itself.
        """
        self._send(self._self_pid, dest, msg)

    def _send(self, src: Pid, dest: Pid | str | tuple[str, str], msg: Any) -> None:
        cls = dest.__class__
        if cls is Pid:
            if dest.node != self.node:  # type: ignore[union-attr]
                self._send_remote(src, dest, msg)  # type: ignore[arg-type]
                return
            proc = self._procs.get(dest.serial)  # type: ignore[union-attr]
            c = dest.creation  # type: ignore[union-attr]
            if c and c != self.creation:
                proc = None  # a pid of this node's previous run
        elif cls is str:
            proc = self._names.get(dest)  # type: ignore[arg-type]
        elif (
            isinstance(dest, tuple) and len(dest) == 2
            and isinstance(dest[0], str) and isinstance(dest[1], str)
        ):
            name, node = dest
            if node != self.node:
                self._send_remote(src, (name, node), msg)
                return
            proc = self._names.get(name)
        else:
            raise TypeError(
                "send: destination must be a Pid, a registered name or (name, node), "
                f"not {type(dest).__name__}"
            )
        if proc is None:
            self.dead_letters += 1
            log.debug("dead letter to %s", dest)
            return
        self._enqueue(src, proc, msg)

    def _enqueue(self, src: Pid, proc: Process, msg: Any) -> None:
        """Put ``msg`` from ``src`` in a live local process's mailbox."""
        mb = proc._mailbox
        if not mb:  # it fills from empty: an observer keeping totals hears of it
            if mb is None:
                mb = proc._mailbox = deque()
            filled = self._filled
            if filled is not None:
                filled.append(proc)
        mb.append(msg)
        proc._received += 1
        self.messages += 1
        if proc._trace is not None:
            proc._trace.message("in", src, msg)
        w = proc._waiter
        if w is not None:
            proc._waiter = None
            if not w.done():
                w.set_result(None)

    def _send_remote(self, src: Pid, dest: RemoteDest, msg: Any) -> None:
        router = self._router
        if router is None:
            self.dead_letters += 1
            log.debug("dead letter to %s: not in a cluster", dest)
        elif msg.__class__ is Call:
            router.call(src, dest, msg.ref, msg.request)
        else:
            router.send(src, dest, msg)

    def _deliver(self, proc: Process, msg: Any) -> None:
        self._send(self._self_pid, proc.pid, msg)

    def _reply(self, caller: Pid, ref: Ref, value: Any, replier: Pid | None = None) -> None:
        if caller.node != self.node:
            if self._router is None:
                self.dead_letters += 1
                return
            if replier is not None:  # the reply ends the call's implied monitor
                callee = self._procs.get(replier.serial)
                if callee is None:
                    # The callee exited: its caller has had Down and given up.
                    self.dead_letters += 1
                    log.debug("reply to %s from %s after it exited dropped", caller, replier)
                    return
                if callee._monitored_by:
                    callee._monitored_by.pop(ref, None)
            self._router.reply(replier or self._self_pid, caller, ref, value)
            return
        proc = self._procs.get(caller.serial)
        if proc is None or proc._calls is None or ref not in proc._calls:
            self.dead_letters += 1
            log.debug("late or unexpected reply to %s dropped", caller)
            return
        proc._calls.discard(ref)
        self._deliver(proc, Reply(ref, value))

    async def call(
        self, dest: Pid | str | tuple[str, str], request: Any, timeout: float = 5.0
    ) -> Any:
        """``call`` from outside any process (a short-lived caller process is spawned)."""
        fut: asyncio.Future[Any] = (self._loop or self._bind_loop()).create_future()

        async def caller(proc: Process) -> None:
            try:
                fut.set_result(await proc.call(dest, request, timeout))
            except Exception as e:
                fut.set_exception(e)

        pid = self.spawn(caller, label="rt.call")
        try:
            return await fut
        except asyncio.CancelledError:
            self.exit(pid, KILL)
            raise

    # -- names ---------------------------------------------------------------

    def register(self, name: str, pid: Pid) -> None:
        """Register ``name`` for a live local process. A process may hold several
        names; each is released when it exits."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a registered name must be a non-empty str, not {name!r}")
        holder = self._names.get(name)
        if holder is not None:
            raise NameTaken(name, holder.pid)
        proc = self._local(pid)
        if proc is None:
            raise NoProc(pid)
        self._names[name] = proc
        if proc._names is None:
            proc._names = []
        proc._names.append(name)

    def unregister(self, name: str) -> None:
        proc = self._names.pop(name, None)
        if proc is None:
            raise NotRegistered(name)
        if proc._names is not None:
            proc._names.remove(name)

    def whereis(self, name: str) -> Pid | None:
        proc = self._names.get(name)
        return None if proc is None else proc.pid

    def registered(self) -> list[str]:
        return sorted(self._names)

    def _local(self, pid: Pid) -> Process | None:
        if pid.__class__ is not Pid:
            raise TypeError(f"expected a Pid, not {type(pid).__name__}")
        if pid.node != self.node or (pid.creation and pid.creation != self.creation):
            return None
        return self._procs.get(pid.serial)

    def _resolve(self, target: Pid | str) -> Process | None:
        if isinstance(target, str):
            return self._names.get(target)
        return self._local(target)

    def is_alive(self, pid: Pid) -> bool:
        return self._local(pid) is not None

    # -- links and monitors --------------------------------------------------

    def _add_link(self, a: Process, b: Process) -> None:
        if a._links is None:
            a._links = {}
        if b._links is None:
            b._links = {}
        a._links[b] = None
        b._links[a] = None

    def _link(self, proc: Process, pid: Pid) -> None:
        if proc._dead:  # an exited process unwinding: it has no links any more
            return
        if pid.__class__ is Pid and pid.node != self.node:
            if self._router is None:
                self._signal(proc, pid, NOCONNECTION)
                return
            if proc._links is None:
                proc._links = {}
            if pid not in proc._links:
                proc._links[pid] = None
                self._index(pid.node, proc)
                self._router.link(proc.pid, pid)
            return
        other = self._local(pid)
        if other is proc:
            return
        if other is None:
            self._signal(proc, pid, NOPROC)
        else:
            self._add_link(proc, other)

    def _unlink(self, proc: Process, pid: Pid) -> None:
        if pid.__class__ is Pid and pid.node != self.node:
            if proc._links and pid in proc._links:
                proc._links.pop(pid, None)
                if self._router is not None:
                    self._router.unlink(proc.pid, pid)
            return
        other = self._local(pid)
        if other is not None and proc._links and other in proc._links:
            proc._links.pop(other, None)
            if other._links:
                other._links.pop(proc, None)

    def _index(self, node: str, proc: Process) -> None:
        """Remember that ``proc`` has links or monitors with ``node`` (for node_down)."""
        procs = self._by_node.get(node)
        if procs is None:
            procs = self._by_node[node] = set()
        procs.add(proc)

    def make_ref(self) -> Ref:
        return Ref(self.node, next(self._refs))

    def _monitor(
        self, watcher: Process, target: Pid | str | tuple[str, str], by_call: bool = False
    ) -> Ref:
        """Monitor ``target``. With ``by_call``, a remote target's monitor is
        implied by the ``CallRequest`` that follows (no ``Monitor`` frame)."""
        ref = self.make_ref()
        if watcher._dead:  # an exited process unwinding: nothing to watch for
            return ref
        remote = _remote_node(target, self.node)
        if remote is not None:
            if self._router is None:
                self._deliver(watcher, Down(ref, target, NOCONNECTION))
                return ref
            if watcher._monitors is None:
                watcher._monitors = {}
            watcher._monitors[ref] = target  # type: ignore[assignment]
            self._index(remote, watcher)
            if not by_call:
                self._router.monitor(watcher.pid, target, ref)  # type: ignore[arg-type]
            return ref
        if target.__class__ is tuple:
            target = target[0]  # (name, this node)
        proc = self._resolve(target)  # type: ignore[arg-type]
        if proc is None:
            self._deliver(watcher, Down(ref, target, NOPROC))
            return ref
        if watcher._monitors is None:
            watcher._monitors = {}
        if proc._monitored_by is None:
            proc._monitored_by = {}
        watcher._monitors[ref] = proc
        proc._monitored_by[ref] = watcher
        return ref

    def _demonitor(self, watcher: Process, ref: Ref, answered: bool = False) -> None:
        """Cancel a monitor. ``answered``: a remote call's reply came, and the
        callee's node dropped the call's implied monitor when it replied."""
        if watcher._monitors is None:
            return
        proc = watcher._monitors.pop(ref, None)
        if proc.__class__ is not Process:
            if proc is not None and self._router is not None and not answered:
                self._router.demonitor(watcher.pid, proc, ref)  # type: ignore[arg-type]
        elif proc._monitored_by is not None:
            proc._monitored_by.pop(ref, None)

    # -- exits ---------------------------------------------------------------

    def exit(self, pid: Pid, reason: Any) -> None:
        """Send an exit signal from outside any process (sender ``<node.0>``)."""
        self._signal_pid(pid, self._self_pid, reason)

    def kill(self, pid: Pid) -> None:
        """Kill ``pid``: an exit signal ``kill`` that cannot be trapped."""
        self.exit(pid, KILL)

    def _signal_pid(self, pid: Pid, sender: Pid, reason: Any) -> None:
        if pid.__class__ is Pid and pid.node != self.node:
            if self._router is not None:
                self._router.exit(sender, pid, reason)
            return
        proc = self._local(pid)
        if proc is None:
            log.debug("exit signal to %s: no such process", pid)
            return
        if _is(reason, KILL):
            self._exit_now(proc, KILLED, cancel=True)
        else:
            self._signal(proc, sender, reason)

    def _signal(self, proc: Process, sender: Pid, reason: Any) -> None:
        """A trappable exit signal from ``sender`` (a link, or ``exit/2``)."""
        if proc._dead:
            return
        if proc._trap:
            self._deliver(proc, Exit(sender, reason))
        elif not _is(reason, NORMAL):
            self._exit_now(proc, reason, cancel=True)

    def _exit_now(self, proc: Process, reason: Any, cancel: bool) -> None:
        """Mark ``proc`` dead and deliver its exit signals. Cascades are
        processed from a queue, not recursively, so long link chains are fine."""
        if proc._dead:
            return
        proc._dead = True
        self._dying.append((proc, reason, cancel))
        if self._draining:
            return
        self._draining = True
        try:
            while self._dying:
                self._finish(*self._dying.popleft())
        finally:
            self._draining = False

    def _finish(self, proc: Process, reason: Any, cancel: bool) -> None:
        serial = proc.pid.serial
        del self._procs[serial]
        self.exited += 1
        if not self._closing:
            self.events.exit(proc.pid, proc.label, reason)
        if proc._trace is not None:
            proc._trace.stop("exit")
        task = proc._task
        if cancel and task is not None and not task.done():
            self._unwinding[serial] = proc
            task.add_done_callback(lambda _t: self._unwinding.pop(serial, None))
            task.cancel()
        if proc._names:
            for name in proc._names:
                if self._names.get(name) is proc:
                    del self._names[name]
            proc._names = None
        if proc._mailbox:
            self.dead_letters += len(proc._mailbox)
        proc._mailbox = None
        proc._calls = None
        router = self._router
        if proc._monitors:
            for ref, target in proc._monitors.items():
                if target.__class__ is not Process:
                    if router is not None:
                        router.demonitor(proc.pid, target, ref)  # type: ignore[arg-type]
                elif target._monitored_by:
                    target._monitored_by.pop(ref, None)
            proc._monitors = None
        if proc._monitored_by:
            for ref, watcher in proc._monitored_by.items():
                if watcher.__class__ is not Process:
                    if router is not None:
                        router.down(proc.pid, watcher, ref, reason)  # type: ignore[arg-type]
                    continue
                if watcher._monitors:
                    watcher._monitors.pop(ref, None)
                if not watcher._dead:
                    self._deliver(watcher, Down(ref, proc.pid, reason))
            proc._monitored_by = None
        if proc._links:
            link_reason = KILLED if _is(reason, KILL) else reason
            for other in proc._links:
                if other.__class__ is not Process:
                    if router is not None:
                        router.exit(proc.pid, other, link_reason)  # type: ignore[arg-type]
                    continue
                if other._links:
                    other._links.pop(proc, None)
                self._signal(other, proc.pid, link_reason)
            proc._links = None
        if self._by_node:
            for procs in self._by_node.values():
                procs.discard(proc)
        if router is not None:
            router.exited(proc.pid)

    # -- from other nodes (called by the cluster layer, in pair order) --------

    def _local_dest(self, dst: Pid | str) -> Process | None:
        if dst.__class__ is str:
            return self._names.get(dst)
        if dst.__class__ is Pid and dst.node == self.node:
            c = dst.creation
            return None if c and c != self.creation else self._procs.get(dst.serial)
        return None

    def remote_send(self, src: Pid, dst: Pid | str, msg: Any) -> None:
        """A message from ``src`` on another node to a local pid or name."""
        proc = self._local_dest(dst)
        if proc is None:
            self.dead_letters += 1
            log.debug("dead letter from %s to %s", src, dst)
            return
        self._enqueue(src, proc, msg)  # the trace of proc names its sender

    def remote_call(self, src: Pid, dst: Pid | str, ref: Ref, request: Any) -> None:
        """A call from another node. It implies a monitor of the callee by the
        caller, which the reply (or the callee's exit) ends."""
        proc = self._monitored_remotely(src, dst, ref)
        if proc is None:
            self.dead_letters += 1
            return
        self._deliver(proc, Call(src, ref, request, self, proc.pid))

    def remote_reply(self, src: Pid, dst: Pid, ref: Ref, value: Any) -> None:
        self._reply(dst, ref, value)

    def remote_link(self, src: Pid, dst: Pid) -> None:
        proc = self._local_dest(dst)
        if proc is None:
            if self._router is not None:
                self._router.exit(dst, src, NOPROC, dead=True)
            return
        if proc._links is None:
            proc._links = {}
        proc._links[src] = None
        self._index(src.node, proc)

    def remote_unlink(self, src: Pid, dst: Pid) -> None:
        proc = self._local_dest(dst)
        if proc is not None and proc._links:
            proc._links.pop(src, None)

    def remote_exit(self, src: Pid, dst: Pid, reason: Any) -> None:
        """An exit signal from ``src``: its link fired, or it called ``exit/2``."""
        proc = self._local_dest(dst)
        if proc is None:
            return
        if proc._links:
            proc._links.pop(src, None)
        if _is(reason, KILL):
            self._exit_now(proc, KILLED, cancel=True)
        else:
            self._signal(proc, src, reason)

    def remote_monitor(self, src: Pid, dst: Pid | str, ref: Ref) -> None:
        self._monitored_remotely(src, dst, ref)

    def _monitored_remotely(self, src: Pid, dst: Pid | str, ref: Ref) -> Process | None:
        """``src`` monitors ``dst``: the monitored process, or None after
        answering ``noproc``."""
        proc = self._local_dest(dst)
        if proc is None:
            if self._router is not None:
                self._router.down(dst, src, ref, NOPROC, dead=True)
            return None
        if proc._monitored_by is None:
            proc._monitored_by = {}
        proc._monitored_by[ref] = src
        self._index(src.node, proc)
        return proc

    def remote_demonitor(self, src: Pid, dst: Pid | str, ref: Ref) -> None:
        proc = self._local_dest(dst)
        if proc is not None and proc._monitored_by:
            proc._monitored_by.pop(ref, None)

    def remote_down(self, src: Pid | str, dst: Pid, ref: Ref, reason: Any) -> None:
        watcher = self._local_dest(dst)
        if watcher is None or not watcher._monitors or watcher._monitors.pop(ref, None) is None:
            return
        self._deliver(watcher, Down(ref, src, reason))

    def node_down(self, node: str) -> None:
        """``node`` is unreachable: every link to it fires and every monitor of
        one of its processes delivers ``Down`` with reason ``noconnection``."""
        for proc in list(self._by_node.pop(node, ())):
            if proc._dead:
                continue
            if proc._monitored_by:
                for ref, watcher in list(proc._monitored_by.items()):
                    if watcher.__class__ is Pid and watcher.node == node:
                        del proc._monitored_by[ref]
            if proc._monitors:
                for ref, target in list(proc._monitors.items()):
                    if _remote_node(target, self.node) == node:
                        del proc._monitors[ref]
                        self._deliver(proc, Down(ref, target, NOCONNECTION))  # type: ignore[arg-type]
            if proc._links:
                for other in list(proc._links):
                    if other.__class__ is Pid and other.node == node:
                        proc._links.pop(other, None)
                        self._signal(proc, other, NOCONNECTION)

    # -- introspection -------------------------------------------------------

    def process_info(self, pid: Pid) -> ProcessInfo | None:
        """Everything known about a live (or unwinding) process, else None."""
        if pid.node != self.node:
            return None
        if pid.creation and pid.creation != self.creation:
            return None
        proc = self._procs.get(pid.serial) or self._unwinding.get(pid.serial)
        return None if proc is None else self._info(proc)

    def processes(self) -> Iterator[ProcessInfo]:
        """Info on every live process, made lazily from a snapshot of the table."""
        for proc in list(self._procs.values()):
            yield self._info(proc)

    def process_count(self) -> int:
        """How many processes are alive now (cheap: no snapshot)."""
        return len(self._procs)

    def stats(self) -> RuntimeStats:
        return RuntimeStats(
            node=self.node,
            processes=len(self._procs),
            spawned=self.spawned,
            exited=self.exited,
            messages=self.messages,
            dead_letters=self.dead_letters,
        )

    @staticmethod
    def _status(proc: Process) -> Status:
        if proc._dead:
            return "exiting"
        return "waiting" if proc._waiter is not None else "running"

    def _info(self, proc: Process) -> ProcessInfo:
        return ProcessInfo(
            pid=proc.pid,
            label=proc.label,
            names=tuple(proc._names or ()),
            mailbox_depth=len(proc._mailbox) if proc._mailbox else 0,
            links=tuple(sorted(_pid_of(p) for p in proc._links or ())),
            monitors=tuple(_pid_of(p) for p in (proc._monitors or {}).values()),
            monitored_by=tuple(_pid_of(p) for p in (proc._monitored_by or {}).values()),
            status=self._status(proc),
            trap_exits=proc._trap,
            received=proc._received,
            sent=proc._sent,
            spawned_at=proc.spawned_at,
            old_code=proc.old_code,
            cpu_s=proc._ticks / self._meter.hz if self._meter is not None else 0.0,
            memory_bytes=dg.memory_estimate(proc, proc._mailbox, dg.ROW_MEASURED),
        )

    def track_filled(self, on: bool = True) -> None:
        """From now on (``on``), note each process whose mailbox fills from
        empty, for :meth:`take_filled`: what lets an observer keep the total
        mailbox and the fullest mailboxes without scanning every process
        (rusm.actors.census.Mailboxes). Off again with ``on=False``."""
        if not on:
            self._filled = None
        elif self._filled is None:
            self._filled = []

    def take_filled(self) -> list[Process]:
        """The processes whose mailbox filled from empty since the last call
        (perhaps more than once each, perhaps gone or drained since)."""
        filled = self._filled
        if filled is None:
            return []
        self._filled = []
        return filled

    def meter(self) -> Meter:
        """The runtime's meter (rusm.actors.meter: busy time per process,
        loop lag, blocked steps), started on first use from the loop's
        thread; it stops when the runtime closes. Observers start it."""
        if self._meter is None:
            self._meter = Meter(_MAIN)
            if not self._closing:
                self._meter.start(self._loop or self._bind_loop())
        return self._meter

    @property
    def metered(self) -> bool:
        """Whether the meter runs (``cpu_s`` figures are measured)."""
        return self._meter is not None and self._meter.running

    # -- tracing (rusm.actors.trace) ------------------------------------------

    def trace(self, target: Pid | str, count: int = 100, seconds: float = 10.0) -> Trace:
        """Trace every message a live local process (a pid or a registered
        name) sends and receives, until ``count`` messages or ``seconds``
        seconds (or nobody reads it for a while); a second trace of the same
        process replaces the first. Raises :class:`NoProc` if it is not alive."""
        proc = self._resolve(target)
        if proc is None or proc._dead:
            raise NoProc(target)
        if proc._trace is not None:
            proc._trace.stop("replaced")
        trace = proc._trace = Trace(proc.pid, count, seconds, self._loop or self._bind_loop(),
                                    self._untrace)
        return trace

    def published(self, cls: type) -> dict[Pid, Any]:
        """The states of type ``cls`` that live processes published
        (``Process.publish_state``), by pid: how an observer finds, say, every
        supervisor (on demand; it looks at every process)."""
        return {p.pid: p._state for p in self._procs.values() if isinstance(p._state, cls)}

    def tracing(self, target: Pid | str) -> bool:
        """Whether a live process's messages are being traced."""
        proc = self._resolve(target)
        return proc is not None and proc._trace is not None

    def _untrace(self, trace: Trace) -> None:
        proc = self._procs.get(trace.pid.serial)
        if proc is not None and proc._trace is trace:
            proc._trace = None

    # -- why is it stuck (rusm.actors.diagnose) ----------------------------

    def wait_of(self, pid: Pid) -> dg.Wait | None:
        """What a live process waits on (``receive``, ``call <pid> 2.3s``,
        ``sleep 1s``...), read from its await chain; None if it is gone."""
        proc = self._local(pid)
        if proc is None:
            return None
        return self._wait(proc, self._now())

    def calls_waiting(self) -> dict[Pid, Pid]:
        """Caller -> callee, for each local process blocked in a call to a
        local process (a call to another node ends the path here)."""
        out: dict[Pid, Pid] = {}
        now = self._now()
        for proc in list(self._calling):
            wait = self._wait(proc, now)
            if wait.kind == "call":
                target = wait.target
                if isinstance(target, tuple) and len(target) == 2 and target[1] == self.node:
                    target = target[0]
                callee = self._resolve(target) if isinstance(target, Pid | str) else None
                if callee is not None:
                    out[proc.pid] = callee.pid
        return out

    def remote_calls_waiting(self) -> dict[Pid, Pid | tuple[str, str]]:
        """Caller -> callee, for each local process blocked in a call to a
        process on another node (a pid, or ``(name, node)``): where a cycle of
        calls may leave this node (rusm.net.waits follows it)."""
        out: dict[Pid, Pid | tuple[str, str]] = {}
        now = self._now()
        for proc in list(self._calling):
            wait = self._wait(proc, now)
            target = wait.target
            if wait.kind != "call":
                continue
            if target.__class__ is Pid and target.node != self.node:
                out[proc.pid] = target
            elif (isinstance(target, tuple) and len(target) == 2
                  and all(isinstance(x, str) for x in target) and target[1] != self.node):
                out[proc.pid] = (target[0], target[1])
        return out

    def deadlocked(self) -> set[Pid]:
        """The local processes on a cycle of calls (each waits on the next)."""
        return dg.deadlocks(self.calls_waiting())

    def diagnose(self, pid: Pid, messages: int = 20) -> dg.Diagnosis | None:
        """Where a process is, what it waits on and who waits on it, the first
        ``messages`` of its mailbox, its state and size; None if it is gone.
        On demand only: nothing here runs on the message path."""
        proc = self._local(pid) or (
            self._unwinding.get(pid.serial) if pid.node == self.node else None
        )
        if proc is None:
            return None
        calls = self.calls_waiting()
        state = proc._state
        return dg.Diagnosis(
            info=self._info(proc),
            where=dg.where(proc._task, _WRAPPERS),
            wait=self._wait(proc, self._now()),
            waited_by=tuple(sorted(c for c, callee in calls.items() if callee == proc.pid)),
            deadlocked=proc.pid in dg.deadlocks(calls),
            messages=dg.peek(proc._mailbox, messages),
            state=None if state is UNPUBLISHED else dg.bounded_repr(state),
            memory_bytes=dg.memory_estimate(proc, proc._mailbox),
        )

    @staticmethod
    def _wait(proc: Process, now: float) -> dg.Wait:
        return dg.wait_of(proc._task, _RECEIVE, _CALL, now, _WRAPPERS)

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def process_bodies(self) -> list[tuple[Pid, Body]]:
        """Each live process's pid and the function it runs, in pid order."""
        return [(p.pid, p.body) for _, p in sorted(self._procs.items()) if not p._dead]

    def mark_old_code(self, pid: Pid, old: bool = True) -> None:
        """Mark ``pid`` as running code a reload replaced (the observer shows
        ``old code``); nothing if it is gone."""
        proc = self._procs.get(pid.serial) if pid.node == self.node else None
        if proc is not None and proc.pid == pid:
            proc.old_code = old


def _remote_node(target: Any, node: str) -> str | None:
    """The other node that ``target`` (a pid or ``(name, node)``) lives on, if any."""
    if target.__class__ is Pid:
        return None if target.node == node else target.node
    if target.__class__ is tuple and len(target) == 2:
        return None if target[1] == node else target[1]
    return None


def _pid_of(peer: Any) -> Any:
    """The pid of a local peer (a Process) or a remote one (already a pid or name)."""
    return peer.pid if peer.__class__ is Process else peer


_MAIN = Runtime._main.__code__
_WRAPPERS = (_MAIN,)
