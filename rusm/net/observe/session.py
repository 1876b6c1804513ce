"""The node side of the observe protocol, whatever the transport.

An :class:`Observatory` belongs to one :class:`ClusterNode`: it keeps the
node's short history (a tick task owned by the observatory, stopped when the
node closes) and runs commands. Each attached client gets a :class:`Session`
(its subscription, its sample counter, the counters its rates are computed
from). The WebSocket server pushes ``session.sample()`` at the subscription's
interval; a QUIC attacher polls for it over the control RPC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from rusm.actors import census
from rusm.actors.diagnose import deadlocks
from rusm.actors.errors import RusmError
from rusm.actors.events import KINDS
from rusm.actors.gen_server import server_info
from rusm.actors.info import ProcessInfo
from rusm.actors.messages import KILL
from rusm.actors.meter import BlockedStep
from rusm.actors.pid import Pid
from rusm.actors.runtime import Runtime
from rusm.actors.supervisor import SupervisorState, supervision_tree
from rusm.actors.trace import Trace
from rusm.observe.protocol import (
    ANSWER_BUDGET,
    COMMANDS,
    INFO_MESSAGES,
    LOG_LIMIT,
    MAX_INFO_MESSAGES,
    MAX_LOG_LIMIT,
    MAX_TRACE_COUNT,
    MAX_TRACE_SECONDS,
    MAX_TRACES,
    SORT_FIELDS,
    TRACE_COUNT,
    TRACE_SECONDS,
    CommandError,
    History,
    ProcessRow,
    Sample,
    Subscription,
    Totals,
    contains,
    encode,
    select,
)

from ..errors import RemoteError
from ..node import ClusterNode
from ..terms import UnsendableTerm
from ..waits import cluster_calls

__all__ = ["Observatory", "Session", "observatory"]

log = logging.getLogger("rusm.net.observe")

HISTORY_POINTS = 120
"""Points of history kept per series."""
HISTORY_STEP = 1.0
"""Seconds between history points."""
TRACKED_MAX = 2000
"""Most processes whose mailbox history is kept (those samples showed lately)."""
NODE_LABEL_PREFIX = "rusm."
"""Labels reserved for the node's own processes (the global registry's keeper
is ``rusm.global``): observers cannot kill them, as nothing would restart them."""


def observatory(node: ClusterNode) -> Observatory:
    """The node's observatory, made (and its history started) on first use."""
    obs = node.services.get("observatory")
    if obs is None:
        obs = node.services["observatory"] = Observatory(node)
        node.on_close(obs.close)
    assert isinstance(obs, Observatory)
    return obs


class Observatory:
    def __init__(self, node: ClusterNode, step: float = HISTORY_STEP) -> None:
        self.node = node
        self.rt = node.runtime
        self.step = step
        self.processes: deque[int] = deque(maxlen=HISTORY_POINTS)
        self.mailbox: deque[int] = deque(maxlen=HISTORY_POINTS)
        self.rows: dict[int, deque[int]] = {}
        """Mailbox history by serial, for processes shown lately."""
        self._seen: dict[int, float] = {}
        self.lag: deque[float] = deque(maxlen=HISTORY_POINTS)
        self.meter = self.rt.meter()  # busy time, loop lag, blocked steps: from now on
        self.mailboxes = census.Mailboxes(self.rt)  # the total and the fullest, kept as they fill
        self.cluster_calls: dict[Pid, Pid] = {}
        """Blocked calls that leave this node and those they lead to on other
        nodes (rusm.net.waits), refreshed each history step while there are any."""
        self._waits: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._ticker(), name=f"rusm.observe.history:{node.name}"
        )

    async def close(self) -> None:
        tasks = [t for t in (self._task, self._waits) if t is not None]
        self._task = self._waits = None
        self.mailboxes.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _refresh_waits(self) -> None:
        self.cluster_calls = await cluster_calls(self.node, timeout=self.step)

    def deadlocked(self) -> set[Pid]:
        """This node's processes on a cycle of calls, within the node or
        through others (as of the last history step for the others)."""
        calls: dict[Pid, Pid] = {**self.cluster_calls, **self.rt.calls_waiting()}
        return {p for p in deadlocks(calls) if p.node == self.node.name}

    async def _ticker(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.step)

    def tick(self) -> None:
        """Append one history point: process count, total mailbox, tracked rows."""
        self.processes.append(self.rt.process_count())
        self.mailbox.append(self.mailboxes.refresh())
        self.lag.append(self.meter.lag_ms(self.step))
        if self._waits is None or self._waits.done():
            if self.rt.remote_calls_waiting():
                self._waits = asyncio.get_running_loop().create_task(
                    self._refresh_waits(), name=f"rusm.observe.waits:{self.node.name}")
            else:
                self.cluster_calls = {}
        if not self.rows:
            return
        horizon = time.monotonic() - HISTORY_POINTS * self.step
        for serial in [s for s, t in self._seen.items() if t < horizon]:
            del self._seen[serial]
            self.rows.pop(serial, None)
        serials = list(self.rows)
        for serial, depth in zip(serials, census.mailbox_depths(self.rt, serials), strict=True):
            self.rows[serial].append(depth)

    def track(self, infos: list[ProcessInfo]) -> None:
        now = time.monotonic()
        for info in infos:
            serial = info.pid.serial
            if serial not in self.rows:
                if len(self.rows) >= TRACKED_MAX:
                    continue
                self.rows[serial] = deque([info.mailbox_depth], maxlen=HISTORY_POINTS)
            self._seen[serial] = now

    # -- commands --------------------------------------------------------------

    def command(self, session: Session, cmd: str, args: dict[str, Any]) -> Any:
        """Run one command; raises CommandError with a message a person can act on."""
        handler = getattr(self, f"_cmd_{cmd}", None) if cmd in COMMANDS else None
        if handler is None:
            raise CommandError(
                "unknown_command", f"unknown command {cmd!r}; commands: {', '.join(COMMANDS)}"
            )
        try:
            return handler(session, **args)
        except TypeError as e:
            raise CommandError("bad_request", f"{cmd}: {e}") from e

    def _cmd_subscribe(self, session: Session, **changes: Any) -> None:
        session.subscription.update(changes)
        session.history_due = True

    def _cmd_detail(self, session: Session, on: Any) -> None:
        session.subscription.update({"detail": on})

    def _pid(self, text: Any) -> Pid:
        if isinstance(text, Pid):
            return text
        if not isinstance(text, str):
            raise CommandError("bad_request", f"a pid is text like <{self.node.name}.12>")
        try:
            return Pid.parse(text if text.startswith("<") else f"<{text}>")
        except (ValueError, RusmError) as e:
            raise CommandError(
                "bad_request", f"{text!r} is not a pid (write it like <{self.node.name}.12>)"
            ) from e

    def _live(self, text: Any) -> Pid:
        pid = self._pid(text)
        if pid.node != self.node.name:
            raise CommandError(
                "bad_request", f"{pid} is a process of node {pid.node}; attach to that node"
            )
        info = self.rt.process_info(pid)
        if info is None:
            raise CommandError("no_such_process", f"no process {pid} on {self.node.name}")
        return info.pid  # as the runtime knows it (with its creation)

    def _named(self, text: Any) -> Pid:
        """A live local process by pid or by its (local or global) name."""
        if isinstance(text, str) and not text.startswith("<"):
            pid = self.rt.whereis(text) or self.node.whereis_global_pid(text)
            if pid is not None:
                return self._live(pid)
            if "." not in text:
                raise CommandError(
                    "bad_request", f"{text!r} is neither a pid (write it like "
                    f"<{self.node.name}.12>) nor a name registered on {self.node.name}")
        return self._live(text)

    def _dest(self, dest: Any) -> Pid | str:
        if isinstance(dest, str) and not dest.startswith("<"):
            if self.rt.whereis(dest) is not None:
                return dest
            pid = self.node.whereis_global_pid(dest)
            if pid is not None:
                return pid
            raise CommandError(
                "no_such_process", f"no process is registered as {dest!r} on {self.node.name}"
            )
        pid = self._pid(dest)
        if pid.node == self.node.name and self.rt.process_info(pid) is None:
            raise CommandError("no_such_process", f"no process {pid} on {self.node.name}")
        return pid

    def _cmd_send(self, session: Session, dest: Any, msg: Any) -> str:
        target = self._dest(dest)
        try:
            encode({"t": "check", "msg": msg})  # a term, or a clear error
        except (UnsendableTerm, RusmError) as e:
            raise CommandError("unsendable", str(e)) from e
        self.rt.send(target, msg)
        log.info("observe: send to %s from an observer", target)
        return str(target)

    def _cmd_spawn(self, session: Session, factory: Any, args: Any = ()) -> str:
        if not isinstance(factory, str):
            raise CommandError("bad_request", "spawn: the factory is a name (text)")
        if not isinstance(args, list | tuple):
            raise CommandError("bad_request", "spawn: args is a list")
        try:
            pid = self.node.spawn_factory(factory, tuple(args))
        except RemoteError as e:
            raise CommandError(e.kind, str(e)) from e
        log.info("observe: spawned %s %s from an observer", factory, pid)
        return str(pid)

    def _protected(self, pid: Pid) -> str | None:
        """Why ``pid`` is one of the node's own processes, or None."""
        info = self.rt.process_info(pid)
        if info is not None and (info.label or "").startswith(NODE_LABEL_PREFIX):
            return f"{pid} ({info.label}) is one of node {self.node.name}'s own processes"
        for service, value in self.node.services.items():
            if value == pid:
                return f"{pid} runs node {self.node.name}'s {service} service"
        return None

    def _cmd_kill(self, session: Session, pid: Any, reason: Any = KILL) -> str:
        target = self._live(pid)
        why = self._protected(target)
        if why is not None:
            log.warning("observe: refused to exit %s from an observer: %s", target, why)
            raise CommandError(
                "protected", f"{why}: it cannot be killed from an observer (it stops with the node)"
            )
        self.rt.exit(target, reason)
        log.info("observe: exit %s reason %r from an observer", target, reason)
        return str(target)

    _cmd_exit = _cmd_kill

    def _cmd_info(
        self, session: Session, pid: Any, messages: Any = INFO_MESSAGES
    ) -> dict[str, Any]:
        if type(messages) is not int or not 0 <= messages <= MAX_INFO_MESSAGES:
            raise CommandError(
                "bad_request", f"info: messages is a count from 0 to {MAX_INFO_MESSAGES}")
        found = self.rt.diagnose(self._named(pid), messages)
        if found is None:  # pragma: no cover - exited between the two lookups
            raise CommandError("no_such_process", f"no process {pid} on {self.node.name}")
        info = found.info
        # The first messages that fit one answer with the rest (a remote
        # attach reads it in one control frame); mailbox_depth says how many.
        shown = [{"m": m} for m in found.messages]
        messages = [m["m"] for m in _fit(shown, ANSWER_BUDGET // 2)] if shown else []
        waited_by = sorted({*found.waited_by, *(
            c for c, callee in self.cluster_calls.items() if callee == info.pid)})
        return {
            **_texts(info.facts()),
            **_server_code(self.rt, info.pid),
            "state": found.state,
            "where": [{"function": f.function, "file": f.file, "line": f.line}
                      for f in found.where],
            "waiting_on": found.wait.text,
            "waited_by": [str(p) for p in waited_by],
            "deadlock": found.deadlocked or info.pid in self.deadlocked(),
            "messages": messages,
            "memory_bytes": found.memory_bytes,  # measured closer than the row's
            "labels": self._labels([*info.links, *info.monitors, *info.monitored_by,
                                    *waited_by]),
        }

    def _labels(self, pids: list[Any]) -> dict[str, str]:
        """The labels of those of ``pids`` that are live local processes
        with one: what link and monitor lists show next to a pid."""
        out: dict[str, str] = {}
        for pid in pids:
            if isinstance(pid, Pid) and pid.node == self.node.name:
                other = self.rt.process_info(pid)
                if other is not None and other.label:
                    out[str(pid)] = other.label
        return out

    async def _cmd_reload(
        self, session: Session, module: Any, all_nodes: Any = False,
    ) -> dict[str, Any]:
        """Hot-reload ``module`` here (ClusterNode.reload); with ``all_nodes``,
        on every connected node too. Returns ``{"results": [...]}``, one map
        per node: ``node``, ``ok`` and the report, or ``error`` and ``message``."""
        if not isinstance(module, str) or not module:
            raise CommandError("bad_request", "reload: the module is a name (text)")
        results: list[dict[str, Any]] = []
        for name in [self.node.name, *(self.node.nodes() if all_nodes else ())]:
            try:
                if name == self.node.name:
                    report = await self.node.reload(module)
                else:
                    report = await self.node.request(name, "reload", (module,))
            except RemoteError as e:
                if not all_nodes:
                    raise CommandError(e.kind, str(e)) from e
                results.append({"node": name, "ok": False, "error": e.kind, "message": str(e)})
            except (RusmError, TimeoutError) as e:
                results.append({"node": name, "ok": False, "error": "not_connected",
                                "message": str(e) or "no answer in time"})
            else:
                results.append({"node": name, "ok": True, **report})
        log.info("observe: reload %s from an observer (%s)", module,
                 ", ".join(f"{r['node']} {'ok' if r['ok'] else r['error']}" for r in results))
        return {"results": results}

    def _cmd_purge(self, session: Session, module: Any) -> list[str]:
        """Kill the processes still on ``module``'s old code; their pids."""
        if not isinstance(module, str) or not module:
            raise CommandError("bad_request", "purge: the module is a name (text)")
        try:
            pids = self.node.purge(module)
        except RemoteError as e:
            raise CommandError(e.kind, str(e)) from e
        log.info("observe: purge %s from an observer: %d killed", module, len(pids))
        return [str(p) for p in pids]

    def _cmd_nodes(self, session: Session, detail: Any = False) -> list[Any]:
        """The connected nodes' names; with ``detail``, a map per node with its
        link's figures (``ClusterNode.link_stats``), for the cluster view."""
        names = self.node.nodes()
        if not detail:
            return names  # what clients before ``detail`` expect
        return [s for s in map(self.node.link_stats, names) if s is not None]

    def _cmd_log(self, session: Session, since: Any = 0, limit: Any = LOG_LIMIT,
                 kinds: Any = None) -> dict[str, Any]:
        """The node's events after sequence number ``since`` (the last
        ``limit``; only ``kinds`` if given), and ``next``: the ``since`` that
        asks for what comes after them. Following the log is asking again."""
        if type(since) is not int or since < 0:
            raise CommandError("bad_request", "log: since is an event number (0 for all)")
        if type(limit) is not int or not 1 <= limit <= MAX_LOG_LIMIT:
            raise CommandError("bad_request", f"log: limit is a count from 1 to {MAX_LOG_LIMIT}")
        if kinds is not None and (not isinstance(kinds, list | tuple)
                                  or not all(k in KINDS for k in kinds)):
            raise CommandError("bad_request", f"log: kinds are among {', '.join(KINDS)}")
        events = self.rt.events
        found = events.since(since, MAX_LOG_LIMIT)
        if kinds is not None:
            found = [e for e in found if e.kind in kinds]
        asked = found[-limit:]
        wire = _fit(events.wire(asked))
        # What did not fit comes with the next ask, from the last one sent.
        more = len(wire) < len(asked)
        return {"events": wire, "next": wire[-1]["seq"] if more else events.seq, "more": more}

    def _cmd_trace(self, session: Session, pid: Any, count: Any = TRACE_COUNT,
                   seconds: Any = TRACE_SECONDS) -> dict[str, Any]:
        """Start tracing a process's messages: ``{"trace": id, ...}``; read
        them with ``trace_read``. It stops by itself (count, seconds, or
        nobody reading it for a few seconds) or with ``untrace``."""
        if type(count) is not int or not 1 <= count <= MAX_TRACE_COUNT:
            raise CommandError("bad_request", f"trace: count is from 1 to {MAX_TRACE_COUNT}")
        if (not isinstance(seconds, int | float) or isinstance(seconds, bool)
                or not 0 < seconds <= MAX_TRACE_SECONDS):
            raise CommandError(
                "bad_request", f"trace: seconds is a number up to {MAX_TRACE_SECONDS:g}")
        target = self._named(pid)
        for tid in [t for t, tr in session.traces.items() if tr.stopped is not None]:
            del session.traces[tid]  # finished: the client has had them or gave up
        if len(session.traces) >= MAX_TRACES:
            raise CommandError("busy", f"trace: at most {MAX_TRACES} traces at once per observer")
        try:
            trace = self.rt.trace(target, count, float(seconds))
        except RusmError as e:
            raise CommandError("no_such_process", f"no process {pid} on {self.node.name}") from e
        tid = session.add_trace(trace)
        log.info("observe: trace of %s started (%d messages, %g s)", trace.pid, count, seconds)
        return {"trace": tid, "pid": str(trace.pid), "count": count,
                "seconds": float(seconds)}

    def _cmd_trace_read(self, session: Session, trace: Any, since: Any = 0) -> dict[str, Any]:
        """A trace's events from index ``since``; ``next`` is the ``since``
        to ask with next; ``stopped`` says why it ended (None: it runs)."""
        found = session.traces.get(trace) if type(trace) is int else None
        if found is None:
            raise CommandError("bad_request", f"no trace {trace!r} in this session")
        if type(since) is not int or since < 0:
            raise CommandError("bad_request", "trace_read: since is an event index")
        events = _fit([e.to_wire(found.pid) for e in found.read(since)])
        more = since + len(events) < found.seen
        return {"events": events, "next": since + len(events), "more": more,
                "stopped": None if more else found.stopped}

    def _cmd_untrace(self, session: Session, trace: Any) -> None:
        found = session.traces.pop(trace, None) if type(trace) is int else None
        if found is None:
            raise CommandError("bad_request", f"no trace {trace!r} in this session")
        found.stop()

    def _cmd_tree(self, session: Session) -> list[dict[str, Any]]:
        """The supervision trees (rusm.actors.supervisor.supervision_tree),
        pids as text."""
        trees: list[dict[str, Any]] = _texts(supervision_tree(self.rt))
        return trees

    async def _cmd_restart_child(self, session: Session, supervisor: Any, child: Any) -> str:
        return await self._child(supervisor, child, "restart_child")

    async def _cmd_terminate_child(self, session: Session, supervisor: Any, child: Any) -> str:
        return await self._child(supervisor, child, "terminate_child")

    async def _child(self, supervisor: Any, child: Any, op: str) -> str:
        sup = self._named(supervisor)
        if not isinstance(child, str) or not child:
            raise CommandError("bad_request", f"{op}: the child is its id (text)")
        if sup not in self.rt.published(SupervisorState):
            raise CommandError("bad_request", f"{op}: {sup} is not a supervisor")
        try:
            answer = await self.rt.call(sup, (op, child), timeout=10.0)
        except (RusmError, TimeoutError) as e:
            raise CommandError("no_such_process", f"{op}: {sup} did not answer: {e}") from e
        if answer != "ok":
            message = answer[1] if isinstance(answer, tuple) and len(answer) == 2 else answer
            raise CommandError("bad_request", f"{op}: {message}")
        log.info("observe: %s %s of %s from an observer", op, child, sup)
        done = "restarted" if op == "restart_child" else "terminated"
        return f"{done} {child} of {sup}"

    def _cmd_names(self, session: Session) -> dict[str, list[str]]:
        return {
            "local": sorted(self.rt.registered()),
            "global": sorted(self.node.registry.names),
            "factories": self.node.spawnables(),
        }


class Session:
    """One attached client: its subscription and what its rates start from."""

    def __init__(self, obs: Observatory, subscription: Subscription | None = None) -> None:
        self.obs = obs
        self.subscription = subscription or Subscription()
        self.seq = 0
        self.history_due = True
        self._last: tuple[float, int, int, int] | None = None
        self._shown: dict[str, Pid] = {}
        self._cpu: dict[str, float] = {}  # pid -> cpu_s at the last sample (shown rows)
        self._last_sample = 0.0
        """The pids of the last sample's rows, to tell which of them exited."""
        self.traces: dict[int, Trace] = {}
        """The traces this client started, by the id it reads them with."""
        self._trace_ids = 0

    def add_trace(self, trace: Trace) -> int:
        """Keep a trace this client started; the id it reads it with."""
        self._trace_ids += 1
        self.traces[self._trace_ids] = trace
        return self._trace_ids

    def close(self) -> None:
        """The client went away: its traces stop."""
        for trace in self.traces.values():
            trace.stop("detached")
        self.traces.clear()

    def handle(self, message: dict[str, Any]) -> Any:
        """A command message ``{"t": "cmd", "cmd": ..., "args": {...}}``: its value."""
        cmd, args = message.get("cmd"), message.get("args", {})
        if not isinstance(cmd, str) or not isinstance(args, dict):
            raise CommandError("bad_request", "a command is {cmd: text, args: map}")
        if not all(isinstance(k, str) for k in args):
            raise CommandError("bad_request", "command arguments are named by text")
        return self.obs.command(self, cmd, args)

    def _row(self, info: ProcessInfo, wall: float, dt: float) -> ProcessRow:
        """A shown row, with its CPU % over the interval and what it waits on."""
        pid = str(info.pid)
        before = self._cpu.get(pid)
        cpu = 100 * (info.cpu_s - before) / dt if before is not None and dt else 0.0
        wait = self.obs.rt.wait_of(info.pid)
        return _row(info, wall, cpu=round(max(0.0, cpu), 1),
                    waiting=wait.text if wait is not None else "exited")

    def sample(self, max_rows: int | None = None) -> Sample:
        obs, rt, sub = self.obs, self.obs.rt, self.subscription
        now = time.monotonic()
        stats = rt.stats()
        mailbox = obs.mailboxes.refresh()
        rates = (0.0, 0.0, 0.0)
        if self._last is not None:
            then, messages, dead, mb = self._last
            dt = max(now - then, 1e-6)
            msgs_in = (stats.messages - messages) / dt
            msgs_out = max(0.0, (stats.messages - messages - (mailbox - mb)) / dt)
            rates = (msgs_in, msgs_out, (stats.dead_letters - dead) / dt)
        self._last = (now, stats.messages, stats.dead_letters, mailbox)
        wall = time.time()
        infos: list[ProcessInfo] = []
        rows: tuple[ProcessRow, ...] = ()
        matched = stats.processes
        if sub.detail:
            limit = sub.limit if max_rows is None else min(sub.limit, max_rows)
            field = SORT_FIELDS[sub.sort]
            if field in census.FIELDS and not sub.reverse and not sub.filter.startswith("!"):
                # census's heap picks the same rows as select() would, and
                # builds a record only for them (100k processes at 2 Hz).
                if sub.sort == "mailbox" and not sub.filter:  # what changed, not every process
                    infos, matched = obs.mailboxes.top(sub.offset + limit), stats.processes
                else:
                    needle = sub.filter.lower()
                    infos, matched = census.top(
                        rt, sub.offset + limit, field,
                        partial(contains, needle) if needle else None)
                infos = infos[sub.offset:]
            else:
                # Every row, then the protocol's one selection: filter, sort,
                # reverse, then offset and limit (so reversed is of all rows).
                every = {str(i.pid): i for i in rt.processes()}
                shown, matched = select(
                    (_row(i, wall) for i in every.values()), replace(sub, limit=limit)
                )
                infos = [every[r.pid] for r in shown]
            dt = max(now - self._last_sample, 1e-6) if self._last_sample else 0.0
            rows = tuple(self._row(i, wall, dt) for i in infos)
            self._cpu = {r.pid: r.cpu_s for r in rows}
            obs.track(infos)
        self._last_sample = now
        exited = tuple(
            s for s, pid in self._shown.items()
            if s not in {r.pid for r in rows} and not rt.is_alive(pid)
        )
        self._shown = {str(i.pid): i.pid for i in infos}
        history = None
        if self.history_due:
            self.history_due = False
            history = History(
                step=obs.step,
                processes=tuple(obs.processes),
                mailbox=tuple(obs.mailbox),
                rows={
                    str(i.pid): tuple(obs.rows.get(i.pid.serial, ()))
                    for i in infos
                },
                lag=tuple(obs.lag),
            )
        self.seq += 1
        return Sample(
            node=obs.node.name,
            seq=self.seq,
            time=wall,
            uptime=round(now - obs.node.started, 3),
            processes=stats.processes,
            totals=Totals(
                msgs_in_per_s=round(rates[0], 1),
                msgs_out_per_s=round(rates[1], 1),
                dead_letters_per_s=round(rates[2], 1),
                mailbox=mailbox,
                messages=stats.messages,
                dead_letters=stats.dead_letters,
                spawned=stats.spawned,
                exited=stats.exited,
                loop_lag_ms=obs.meter.lag_ms(max(sub.interval, obs.meter.tick)),
                blocked_steps=obs.meter.blocked_total,
                last_blocked=_blocked_text(obs.meter.blocked[-1]) if obs.meter.blocked else "",
                deadlocked=len(obs.deadlocked()),
            ),
            nodes=tuple(obs.node.nodes()),
            detail=sub.detail,
            sort=sub.sort,
            rows=rows,
            matched=matched,
            omitted=max(0, matched - len(rows)) if sub.detail else matched,
            history=history,
            reverse=sub.reverse,
            offset=sub.offset if sub.detail else 0,
            exited=exited,
        )


def _server_code(rt: Runtime, pid: Pid) -> dict[str, Any]:
    """A GenServer's ``code``: its class and vsn."""
    server = server_info(rt, pid)
    if server is None:
        return {}
    cls = server.callbacks
    return {"code": f"{cls.__module__}.{cls.__qualname__} vsn {server.vsn!r}"}


def _fit(items: list[dict[str, Any]], budget: int = ANSWER_BUDGET) -> list[dict[str, Any]]:
    """The first of ``items`` whose encoded size fits ``budget`` (at least
    one: no single item is near the frame limit)."""
    used = 0
    for n, item in enumerate(items):
        used += len(encode(item))
        if used > budget and n:
            return items[:n]
    return items


def _texts(value: Any) -> Any:
    """``value`` with every pid as its text, for the wire."""
    if isinstance(value, Pid):
        return str(value)
    if isinstance(value, dict):
        return {k: _texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_texts(v) for v in value]
    return value


def _blocked_text(step: BlockedStep) -> str:
    who = f"{step.label or '?'} {step.pid}" if step.pid is not None else "(no process)"
    where = f" ({Path(step.where.file).name}:{step.where.line})" if step.where else ""
    return f"{step.ms:.0f} ms  {who}{where}"


def _row(info: ProcessInfo, wall: float, **more: Any) -> ProcessRow:
    return ProcessRow(
        pid=str(info.pid),
        label=info.label,
        names=info.names,
        mailbox=info.mailbox_depth,
        links=len(info.links),
        monitors=len(info.monitors) + len(info.monitored_by),
        status="old code" if info.old_code and info.status != "exiting" else info.status,
        received=info.received,
        sent=info.sent,
        age=round(max(0.0, wall - info.spawned_at), 3),
        cpu_s=info.cpu_s,
        memory=info.memory_bytes,
        **more,
    )
