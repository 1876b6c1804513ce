"""GenServer: OTP's gen_server behaviour, its callbacks looked up on every message.

::

    class Counter(GenServer):
        vsn = 1

        def init(self, start=0):
            return start                                  # the state

        def handle_call(self, request, from_, state):
            return Reply(state, state)                    # {reply, State, State}

        def handle_cast(self, request, state):
            return NoReply(state + request)               # {noreply, State + N}

    pid = await Counter.start(rt, 0, name="counter")
    GenServer.cast(rt, "counter", 5)
    assert await GenServer.call(rt, "counter", "get") == 5
    await GenServer.stop(rt, "counter")

A server is an ordinary process (links, monitors, names, supervisors,
cross-node calls). It answers the runtime's own ``Call``, so ``rt.call``,
``proc.call`` and ``ClusterNode.call`` reach it as they reach any process.
Casts are the term ``("$gen_cast", request)`` and stop and get_state requests
``("$gen_system", ...)`` calls, so both cross the wire; those two tags are
reserved.

Callbacks are looked up on the server object at each message, never bound
at start, so the code can change between two messages: :func:`upgrade`
switches a running server to another class (its reload) and lets the new
class's ``code_change`` migrate the state; if ``code_change`` raises, the
server keeps its old class and state and the caller gets the error.

The current state of every running server is readable without a message
(:func:`server_info`, :func:`servers`), for the observer.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import traceback
import weakref
from collections.abc import Awaitable
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, Final, Protocol, TypeAlias

from .errors import CallFailed, NoProc, ProcessExit, RusmError, Timeout
from .messages import NORMAL, Call, Down, Exit, is_normal
from .pid import Pid, Ref
from .process import Process
from .runtime import Runtime
from .supervisor import ChildSpec, Restart

__all__ = [
    "CAST",
    "SYSTEM",
    "CallResult",
    "CodeChangeFailed",
    "From",
    "GenServer",
    "IdleTimeout",
    "InfoResult",
    "NoReply",
    "Reply",
    "ServerInfo",
    "StartFailed",
    "Stop",
    "Via",
    "call",
    "cast",
    "get_state",
    "reply",
    "server_info",
    "servers",
    "stop",
    "upgrade",
]

log = logging.getLogger("rusm.actors.gen_server")

CAST: Final = "$gen_cast"
"""Tag of a cast: a server takes ``(CAST, request)`` to ``handle_cast``."""
SYSTEM: Final = "$gen_system"
"""Tag of the system requests (stop, get_state) a server answers itself."""

Dest: TypeAlias = Pid | str | tuple[str, str]
From: TypeAlias = Call
"""Who called: the ``Call`` itself. Reply with ``reply(from_, value)`` (or
``from_.reply(value)``), now or later, from this process or another one of
the same node."""


class _Unset(enum.Enum):
    UNSET = "unset"


_UNSET: Final = _Unset.UNSET


# -- what callbacks return ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """From ``handle_call``: answer ``value`` and go on with ``state``
    (OTP's ``{reply, Value, State}``, or ``{reply, Value, State, Timeout}``
    with ``timeout``)."""

    value: Any
    state: Any
    timeout: float | None = None
    """Seconds without a message before ``handle_info(IdleTimeout(...))``."""


@dataclass(frozen=True, slots=True)
class NoReply:
    """Go on with ``state`` (OTP's ``{noreply, State}``); from ``handle_call``
    it means the reply comes later, with :func:`reply`. ``init`` may return
    it to start with an idle ``timeout``."""

    state: Any
    timeout: float | None = None
    """Seconds without a message before ``handle_info(IdleTimeout(...))``."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop with ``reason`` (OTP's ``{stop, Reason, State}``): ``terminate``
    runs with ``state`` (default: the current one), then the reply (from
    ``handle_call``, if given) is sent and the process exits with ``reason``.
    From ``init``: refuse to start."""

    reason: Any = NORMAL
    state: Any = _UNSET
    _: KW_ONLY
    reply: Any = _UNSET


CallResult: TypeAlias = Reply | NoReply | Stop
InfoResult: TypeAlias = NoReply | Stop
"""What ``handle_cast`` and ``handle_info`` return."""


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    """The message ``handle_info`` gets when a result's ``timeout`` passed
    with no message (OTP's ``timeout``)."""

    after: float


# -- errors --------------------------------------------------------------------


class StartFailed(RusmError):
    """Raised by ``start`` when the server's ``init`` raised or returned
    ``Stop``: ``reason`` is its exit reason (the exception, chained)."""

    def __init__(self, server: type[GenServer], reason: Any) -> None:
        super().__init__(f"{server.__qualname__} did not start: {reason!r}")
        self.reason = reason


class CodeChangeFailed(RusmError):
    """Raised by ``upgrade`` when the new code's ``code_change`` raised (or the
    class cannot replace the old one): the server runs on with its old code
    and state. ``reason`` is the exception, ``traceback`` its text."""

    def __init__(self, target: Any, reason: BaseException, tb: str) -> None:
        super().__init__(f"code change of {target} failed: {reason!r}")
        self.target = target
        self.reason = reason
        self.traceback = tb


# -- client helpers -----------------------------------------------------------


class _HasRuntime(Protocol):
    @property
    def runtime(self) -> Runtime: ...


Via: TypeAlias = Runtime | Process | _HasRuntime
"""Where a request is sent from: a process (inside one), a runtime (outside
any), or anything with a ``runtime`` such as a ``ClusterNode``."""


def _via(via: Via) -> Runtime | Process:
    return via if isinstance(via, Runtime | Process) else via.runtime


async def call(via: Via, target: Dest, request: Any, timeout: float = 5.0) -> Any:
    """``handle_call(request)``'s reply: the runtime's own ``call``, so it raises
    ``NoProc``, ``CallFailed`` and ``Timeout`` as it does."""
    return await _via(via).call(target, request, timeout)


def cast(via: Via, target: Dest, request: Any) -> None:
    """``handle_cast(request)``, fire-and-forget (a dead target is a dead letter)."""
    _via(via).send(target, (CAST, request))


def reply(from_: From, value: Any) -> None:
    """Answer a call whose ``handle_call`` returned ``NoReply``; never raises."""
    from_.reply(value)


async def stop(via: Via, target: Dest, reason: Any = NORMAL, timeout: float = 5.0) -> None:
    """Stop a server with ``reason`` (its ``terminate`` runs) and return once
    it has exited. Raises ``NoProc`` if there is none, ``CallFailed`` if it
    exited with another reason (``terminate`` raised), ``Timeout``."""
    try:
        await _via(via).call(target, (SYSTEM, "stop", reason), timeout)
    except CallFailed as e:  # the server's exit ends the call: that is the answer
        if e.reason == reason:
            return
        raise
    raise RusmError(f"{target} answered a stop request: it is not a GenServer")


async def get_state(via: Via, target: Dest, timeout: float = 5.0) -> Any:
    """A server's state, asked by message (OTP's ``sys:get_state``); works
    across nodes. Locally, :func:`server_info` reads it without a message."""
    return await _via(via).call(target, (SYSTEM, "get_state"), timeout)


async def upgrade(
    via: Via, target: Dest, callbacks: type[GenServer], extra: Any = None,
    timeout: float = 5.0,
) -> tuple[Any, Any]:
    """Switch a running local server to the class ``callbacks`` (a reload's new
    code) between two messages; returns ``(old_vsn, new_vsn)``.

    The request waits its turn in the mailbox: messages before it are handled
    by the old code, messages after it by the new one, none lost. The new
    class's ``code_change(old_vsn, state, extra)`` migrates the state; if it
    raises, the server keeps its old code and state and this raises
    :class:`CodeChangeFailed`.
    """
    if not (isinstance(callbacks, type) and issubclass(callbacks, GenServer)):
        raise TypeError(f"upgrade needs a GenServer subclass, not {callbacks!r}")
    sender = _via(via)
    rt = sender if isinstance(sender, Runtime) else sender.runtime
    node = target[1] if isinstance(target, tuple) else getattr(target, "node", rt.node)
    if node != rt.node:  # a class cannot cross the wire
        raise ValueError(f"{target} is on node {node}: upgrade it there")
    pid = _local_pid(rt, target)
    if pid is None:
        raise NoProc(target)
    if server_info(rt, pid) is None:
        raise TypeError(f"{target} is not a GenServer")
    answer = await sender.call(pid, _CodeChange(callbacks, extra), timeout)
    if isinstance(answer, _Refused):
        raise CodeChangeFailed(target, answer.error, answer.traceback) from answer.error
    return answer  # type: ignore[no-any-return]


def _local_pid(rt: Runtime, target: Dest) -> Pid | None:
    """The live local process ``target`` names, if any."""
    if isinstance(target, tuple):
        name, node = target
        if node != rt.node:
            return None
        target = name
    pid = rt.whereis(target) if isinstance(target, str) else target
    return pid if pid is not None and rt.is_alive(pid) else None


# -- the behaviour -----------------------------------------------------------


class GenServer:
    """Subclass it and override the callbacks; each may be ``def`` or ``async def``.

    The server object (``self``) is made by the server process with no
    arguments; ``self.proc`` is its process context (send, monitor, spawn,
    ``trap_exits``). Keep what changes in the state, which the observer
    shows, not on ``self``.
    """

    vsn: ClassVar[Any] = 1
    """The code's version, passed as ``old_vsn`` to the next code's ``code_change``."""

    proc: Process

    @property
    def pid(self) -> Pid:
        return self.proc.pid

    # -- callbacks ------------------------------------------------------------

    def init(self, *args: Any) -> Any:
        """Return the initial state (or ``NoReply(state, timeout)``, or
        ``Stop(reason)`` / raise to refuse to start). The default: the one
        argument, the arguments as a tuple, or None."""
        return args[0] if len(args) == 1 else (args or None)

    def handle_call(
        self, request: Any, from_: From, state: Any
    ) -> CallResult | Awaitable[CallResult]:
        raise NotImplementedError(f"{type(self).__qualname__} has no handle_call ({request!r})")

    def handle_cast(self, request: Any, state: Any) -> InfoResult | Awaitable[InfoResult]:
        raise NotImplementedError(f"{type(self).__qualname__} has no handle_cast ({request!r})")

    def handle_info(self, message: Any, state: Any) -> InfoResult | Awaitable[InfoResult]:
        """Any other message: ``Down``, trapped ``Exit``, ``IdleTimeout``, plain
        sends. The default logs it and goes on."""
        log.warning("%s %s: unexpected message %r", type(self).__qualname__, self.pid, message)
        return NoReply(state)

    def terminate(self, reason: Any, state: Any) -> Any:
        """Called before the server exits on ``Stop``, ``stop``, a crash of a
        callback, or (when trapping exits) an exit signal from its parent.
        Not called when it is killed."""
        return None

    def code_change(self, old_vsn: Any, state: Any, extra: Any) -> Any:
        """Called on the new code by :func:`upgrade`: return the migrated state,
        or raise to stay on the old code."""
        return state

    # -- starting -------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        via: Via,
        *args: Any,
        name: str | None = None,
        link: bool = False,
        label: str | None = None,
        timeout: float | None = None,
    ) -> Pid:
        """Spawn a server, wait until its ``init`` returned, and return its pid.

        ``name`` is registered before ``init`` runs (``NameTaken`` if it is
        held). ``link`` links it to ``via``, which must then be a process.
        Raises :class:`StartFailed` if ``init`` fails, ``Timeout`` (and kills
        it) if it takes longer than ``timeout`` seconds.
        """
        sender = _via(via)
        if isinstance(sender, Process):
            return await _start(sender, cls, args, name, link, label, timeout)
        if link:
            raise ValueError("link=True links to the calling process: start from a process")
        done: asyncio.Future[Pid] = asyncio.get_running_loop().create_future()

        async def starter(proc: Process) -> None:
            try:
                done.set_result(await _start(proc, cls, args, name, False, label, timeout))
            except Exception as e:
                done.set_exception(e)
            finally:
                if not done.done():  # killed, or the runtime closed
                    done.set_exception(RusmError(f"{cls.__qualname__}.start was stopped"))

        helper = sender.spawn(starter, label=f"{cls.__qualname__}.start")
        try:
            return await done
        except asyncio.CancelledError:
            sender.kill(helper)
            raise

    @classmethod
    async def serve(cls, proc: Process, *args: Any) -> None:
        """The process body of a server: ``ChildSpec("c", Counter.serve, args)``
        or ``register_spawnable("counter", Counter.serve)``."""
        await _Server(cls, proc).run(args, None)

    @classmethod
    def child_spec(
        cls,
        *args: Any,
        id: str | None = None,
        name: str | None = None,
        restart: Restart = "permanent",
        shutdown: float = 5.0,
        label: str | None = None,
    ) -> ChildSpec:
        """A supervisor child that runs this server with ``init(*args)``."""
        cid = id or cls.__qualname__
        return ChildSpec(cid, cls.serve, args, restart, name, label or cid, shutdown)

    # The client helpers, also reachable as GenServer.call(...) and so on.
    call = staticmethod(call)
    cast = staticmethod(cast)
    reply = staticmethod(reply)
    stop = staticmethod(stop)
    upgrade = staticmethod(upgrade)
    get_state = staticmethod(get_state)


# -- introspection ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A running server as the observer sees it."""

    pid: Pid
    callbacks: type[GenServer]
    """The class whose code it runs now."""
    vsn: Any
    state: Any
    """Its state after the last message it finished handling."""


_running: weakref.WeakKeyDictionary[Runtime, dict[Pid, _Server]] = weakref.WeakKeyDictionary()


def server_info(rt: Runtime, target: Pid | str | tuple[str, str]) -> ServerInfo | None:
    """The class, version and current state of a local server, or None if
    ``target`` is not a running GenServer. Reads it directly: it answers
    even while the server is stuck in a callback."""
    pid = _local_pid(rt, target)
    srv = None if pid is None else _running.get(rt, {}).get(pid)
    return None if srv is None else srv.info()


def servers(rt: Runtime) -> list[ServerInfo]:
    """Every running GenServer of ``rt``, in pid order."""
    table = _running.get(rt, {})
    return [table[pid].info() for pid in sorted(table)]


# -- the server process --------------------------------------------------------


class _CodeChange:
    __slots__ = ("callbacks", "extra")

    def __init__(self, callbacks: type[GenServer], extra: Any) -> None:
        self.callbacks = callbacks
        self.extra = extra


class _Refused:
    __slots__ = ("error", "traceback")

    def __init__(self, error: BaseException, tb: str) -> None:
        self.error = error
        self.traceback = tb


class _Started:
    """The ack of ``init`` to ``start`` (proc_lib's ``init_ack``)."""

    __slots__ = ("ref",)

    def __init__(self, ref: Ref) -> None:
        self.ref = ref


class _Body:
    """The body ``start`` spawns: ``serve`` plus the ack it owes its starter."""

    __slots__ = ("ack", "callbacks")

    def __init__(self, callbacks: type[GenServer], ack: tuple[Pid, Ref]) -> None:
        self.callbacks = callbacks
        self.ack = ack

    async def __call__(self, proc: Process, *args: Any) -> None:
        await _Server(self.callbacks, proc).run(args, self.ack)


async def _start(
    starter: Process, cls: type[GenServer], args: tuple[Any, ...], name: str | None,
    link: bool, label: str | None, timeout: float | None,
) -> Pid:
    rt = starter.runtime
    ack = rt.make_ref()
    pid = starter.spawn(_Body(cls, (starter.pid, ack)), *args, label=label or cls.__qualname__)
    # All synchronous: the server's first step comes after its name and link.
    if name is not None:
        try:
            rt.register(name, pid)
        except BaseException:
            rt.kill(pid)
            raise
    if link:
        starter.link(pid)
    down = starter.monitor(pid)

    def answer(m: Any) -> bool:
        return (m.__class__ is _Started and m.ref == ack) or (
            m.__class__ is Down and m.ref == down)

    try:
        msg = await starter.receive(timeout, answer)
    except BaseException as e:
        starter.demonitor(down, flush=True)
        if link:
            starter.unlink(pid)
        rt.kill(pid)
        if isinstance(e, Timeout):
            raise Timeout(f"{cls.__qualname__} {pid}: init took over {timeout} s") from e
        raise
    starter.demonitor(down, flush=True)
    if msg.__class__ is Down:
        cause = msg.reason if isinstance(msg.reason, BaseException) else None
        raise StartFailed(cls, msg.reason) from cause
    return pid


class _Server:
    """One running server: its callbacks object, state and idle timeout."""

    __slots__ = ("_state", "callbacks", "code", "parents", "proc", "timeout")

    def __init__(self, cls: type[GenServer], proc: Process) -> None:
        self.callbacks = cls()
        self.callbacks.proc = proc
        self.code = cls
        """The code it runs, as the observer sees it: the old one until a code
        change has finished."""
        self.proc = proc
        self._state: Any = None
        self.timeout: float | None = None
        info = proc.runtime.process_info(proc.pid)
        # As OTP: an exit signal from the process that spawn-linked it (its
        # supervisor, or a start(link=True)) stops it, if it traps exits.
        self.parents = frozenset(info.links) if info else frozenset()

    @property
    def state(self) -> Any:
        return self._state

    @state.setter
    def state(self, state: Any) -> None:
        self._state = state
        self.proc.publish_state(state)  # what the observer shows

    def info(self) -> ServerInfo:
        return ServerInfo(self.proc.pid, self.code, self.code.vsn, self.state)

    async def run(self, args: tuple[Any, ...], ack: tuple[Pid, Ref] | None) -> None:
        proc = self.proc
        rt = proc.runtime
        table = _running.get(rt)
        if table is None:
            table = _running[rt] = {}
        table[proc.pid] = self
        try:
            result = await self.invoke("init", *args)
            if isinstance(result, Stop):
                raise ProcessExit(result.reason)
            if isinstance(result, Reply):
                raise TypeError(f"{self.name}.init returned {result!r}")
            if isinstance(result, NoReply):
                self.state, self.timeout = result.state, result.timeout
            else:
                self.state = result
            if ack is not None:
                proc.send(ack[0], _Started(ack[1]))
            while True:
                try:
                    msg = await proc.receive(self.timeout)
                except Timeout:
                    assert self.timeout is not None
                    msg = IdleTimeout(self.timeout)
                await self.handle(msg)
        finally:
            table.pop(proc.pid, None)

    @property
    def name(self) -> str:
        return type(self.callbacks).__qualname__

    async def invoke(self, callback: str, *args: Any) -> Any:
        # Looked up now, on the object's class as it is now: an upgrade or a
        # patched class takes effect from the next message.
        result = getattr(self.callbacks, callback)(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def handle(self, msg: Any) -> None:
        if msg.__class__ is Call:
            req = msg.request
            if req.__class__ is _CodeChange:
                await self.change_code(msg, req)
            elif req.__class__ is tuple and req and req[0] == SYSTEM:
                await self.system(msg, req)
            else:
                await self.dispatch("handle_call", (req, msg, self.state), msg)
        elif msg.__class__ is tuple and len(msg) == 2 and msg[0] == CAST:
            await self.dispatch("handle_cast", (msg[1], self.state), None)
        elif msg.__class__ is Exit and msg.pid in self.parents:
            await self.terminate(msg.reason)
            raise ProcessExit(msg.reason)
        else:
            await self.dispatch("handle_info", (msg, self.state), None)

    async def dispatch(self, callback: str, args: tuple[Any, ...], from_: Call | None) -> None:
        try:
            result = await self.invoke(callback, *args)
            if isinstance(result, NoReply):
                self.state, self.timeout = result.state, result.timeout
                return
            if isinstance(result, Reply) and from_ is not None:
                self.state, self.timeout = result.state, result.timeout
                from_.reply(result.value)
                return
            if not isinstance(result, Stop) or (result.reply is not _UNSET and from_ is None):
                allowed = "Reply, NoReply or Stop" if from_ else "NoReply or Stop"
                raise TypeError(f"{self.name}.{callback} returned {result!r}, not {allowed}")
        except ProcessExit as e:
            await self.terminate(e.reason)
            raise
        except Exception as e:
            await self.terminate(e)
            raise
        if result.state is not _UNSET:
            self.state = result.state
        await self.terminate(result.reason)
        if result.reply is not _UNSET and from_ is not None:
            from_.reply(result.reply)
        if not is_normal(result.reason):
            log.error("%s %s stopped: %r", self.name, self.proc.pid, result.reason)
        raise ProcessExit(result.reason)

    async def terminate(self, reason: Any) -> None:
        await self.invoke("terminate", reason, self.state)

    async def system(self, msg: Call, req: tuple[Any, ...]) -> None:
        match req[1:]:
            case ("stop", reason):
                # No reply: the caller's call fails with this reason when it exits.
                await self.terminate(reason)
                raise ProcessExit(reason)
            case ("get_state",):
                msg.reply(self.state)
            case _:
                msg.reply(("error", f"unknown system request {req!r}"))

    async def change_code(self, msg: Call, req: _CodeChange) -> None:
        callbacks = self.callbacks
        old = type(callbacks)
        try:
            callbacks.__class__ = req.callbacks  # same object, new code
            state = await self.invoke("code_change", old.vsn, self.state, req.extra)
        except Exception as e:
            callbacks.__class__ = old
            tb = traceback.format_exc()
            log.error("%s %s: code change to %s failed, old code kept",
                      self.name, self.proc.pid, req.callbacks.__qualname__, exc_info=e)
            msg.reply(_Refused(e, tb))
            return
        self.state, self.code = state, req.callbacks
        log.info("%s %s: code changed from vsn %r to %r",
                 self.name, self.proc.pid, old.vsn, req.callbacks.vsn)
        msg.reply((old.vsn, req.callbacks.vsn))
