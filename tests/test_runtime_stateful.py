"""A stateful property test: random programs run on a real Runtime, checked against a model.

Hypothesis drives a real :class:`Runtime` on a real asyncio event loop (one
fresh loop per example, closed at teardown; no mocks). Every test process
runs :func:`actor`: it loops on ``receive``, records each message it gets in a
shared log, and executes the commands the test sends it (send a burst, link,
monitor, return, raise). After every rule the test lets the system settle:
it yields to the loop until every live process waits in ``receive`` with an
empty mailbox and every dead one has finished unwinding (no timed sleeps).
Then it compares what each process received during the step with what a
model of the semantics predicts, and the runtime's tables with the model's.

The model follows the BEAM. When a process dies, at once: each monitor of it
delivers one ``Down``; each process linked to it gets an exit signal (an
``Exit`` message if it traps exits, else death with the same reason unless
the reason is ``normal``); messages left in its mailbox are dead letters, as
are messages sent to it later. A cascade runs breadth first from the process
that died first. One count depends on the order in which the runtime walks a
process's links (a set of objects hashed by id, so it varies from run to
run): a ``Down`` sent inside a cascade to a watcher that the same cascade
kills is either dropped (the watcher was already marked dead) or delivered and
then counted as a dead letter. For those the model bounds the count of dead
letters instead of predicting it.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from hypothesis import Phase, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from rusm.actors import KILLED, NOPROC, NORMAL, Down, Exit, Pid, Process, Ref, Runtime

MIN_LIVE, MAX_LIVE = 4, 6
"""Live processes per example: few, so that links and monitors form dense
graphs and deaths cascade; never fewer than MIN_LIVE after a step (a step that
kills some spawns fresh ones), so that a run of kills cannot leave only the dead."""

MAX_SETTLE_ROUNDS = 1_000
"""Loop iterations a step may take to settle before the test fails (a step
needs a handful; a runtime that never settles is a bug, not a slow test)."""


class Crash(Exception):
    """The reason of a process that raised (the ``raise`` command)."""

    def __init__(self, tag: int) -> None:
        super().__init__(f"crash #{tag}")
        self.tag = tag


Log = list[tuple[Pid, Any]]


async def actor(proc: Process, trap: bool, log: Log, refs: dict[int, Ref]) -> None:
    """A test process: record every message, then obey it if it is a command."""
    proc.trap_exits = trap
    while True:
        msg = await proc.receive()
        log.append((proc.pid, msg))
        match msg:
            case ("send", Pid() as dest, tuple() as seqs):
                for seq in seqs:
                    proc.send(dest, ("msg", proc.pid, seq))
            case ("link", Pid() as dest):
                proc.link(dest)
            case ("monitor", Pid() as dest, int() as tag):
                refs[tag] = proc.monitor(dest)
            case ("return",):
                return
            case ("raise", int() as tag):
                raise Crash(tag)


def reason_key(reason: Any) -> Hashable:
    return ("crash", reason.tag) if isinstance(reason, Crash) else reason


def msg_key(msg: Any) -> Hashable:
    """A message as the model writes it: Down and Exit become plain tuples."""
    if isinstance(msg, Down):
        return ("DOWN", msg.ref, msg.pid, reason_key(msg.reason))
    if isinstance(msg, Exit):
        return ("EXIT", msg.pid, reason_key(msg.reason))
    assert isinstance(msg, tuple)  # a command or ("msg", sender, seq)
    return msg


@dataclass
class ModelProc:
    trap: bool
    alive: bool = True
    reason: Hashable = None


Expected = defaultdict[Pid, list[Hashable]]

traps = st.sampled_from([False, True, False])
"""Whether a new process traps exits: one in three does, so that links among
the others make cascades."""


@settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    # A failure shrinks in seconds; the explain phase would add about a minute
    # (past pytest-timeout), and one bug reported is enough.
    phases=[phase for phase in Phase if phase is not Phase.explain],
    report_multiple_bugs=False,
)
class RuntimeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.rt = Runtime()
        self.log: Log = []
        self.refs: dict[int, Ref] = {}
        self.checked = 0  # log entries already checked
        # The model.
        self.procs: dict[Pid, ModelProc] = {}
        self.links: set[frozenset[Pid]] = set()
        self.monitors: dict[Ref, tuple[Pid, Pid]] = {}  # live ref -> (watcher, target)
        self.dead_letters = 0
        self.last_seq: dict[tuple[Pid, Pid], int] = {}  # (sender, receiver) -> last seq
        self.downs_seen: Counter[Ref] = Counter()
        self.counter = 0  # seqs and tags

    def teardown(self) -> None:
        loop = self.loop

        async def shut_down() -> set[asyncio.Task[Any]]:
            self.rt.close()
            await self.rt.wait_closed()
            return asyncio.all_tasks() - {asyncio.current_task()}

        try:
            leaked = loop.run_until_complete(shut_down())
            assert not leaked, f"tasks left after the runtime closed: {leaked}"
        finally:
            rest = asyncio.all_tasks(loop)
            if rest:  # only after a failure above
                for task in rest:
                    task.cancel()
                loop.run_until_complete(asyncio.wait(rest))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # -- the model ------------------------------------------------------------

    def alive(self, pid: Pid) -> bool:
        return self.procs[pid].alive

    def live_pids(self) -> set[Pid]:
        return {p for p, m in self.procs.items() if m.alive}

    def neighbours(self, pid: Pid) -> set[Pid]:
        return {q for link in self.links if pid in link for q in link if q != pid}

    def next_tag(self) -> int:
        self.counter += 1
        return self.counter

    def die(self, root: Pid, reason: Hashable, expected: Expected) -> tuple[int, int]:
        """``root`` dies with ``reason``: update the model, add what the
        survivors receive to ``expected``, return bounds on the dead letters."""
        depth = {root: 0}  # the processes that die, at their breadth-first depth
        if reason != NORMAL:
            queue = deque([root])
            while queue:
                x = queue.popleft()
                for y in sorted(self.neighbours(x)):
                    if y not in depth and not self.procs[y].trap:
                        depth[y] = depth[x] + 1
                        queue.append(y)
        lo = hi = 0
        for ref, (watcher, target) in list(self.monitors.items()):
            if target in depth:
                if watcher not in depth:
                    expected[watcher].append(("DOWN", ref, target, reason))
                elif depth[watcher] > depth[target]:
                    # The watcher dies later in this cascade. If it is not yet
                    # marked dead when the target finishes, the Down lands in
                    # its mailbox and becomes a dead letter. It is marked when
                    # the first of its neighbours one level up finishes: after
                    # the target if that level is below the target's, or if
                    # the target is its only neighbour there (a process fires
                    # its monitors before its links); otherwise it depends on
                    # the order of the runtime's link sets.
                    d = depth[target]
                    killers = {q for q in self.neighbours(watcher) if depth.get(q) == d}
                    if depth[watcher] >= d + 2 or killers == {target}:
                        lo += 1
                    hi += 1
            if target in depth or watcher in depth:
                del self.monitors[ref]
        for x in depth:
            for y in self.neighbours(x):
                if y not in depth and self.procs[y].trap:
                    expected[y].append(("EXIT", x, reason))
        self.links = {link for link in self.links if not link & depth.keys()}
        for x in depth:
            self.procs[x].alive = False
            self.procs[x].reason = reason
        event(f"a death takes {len(depth)} process(es) down")
        if lo != hi:
            event("dead letters of a cascade depend on link order")
        note(f"model: {sorted(depth)} die with {reason!r}; dead letters in [{lo}, {hi}]")
        return lo, hi

    # -- driving the runtime --------------------------------------------------

    async def settle(self) -> None:
        """Yield to the loop until the system is quiescent: every live process
        waits in receive with an empty mailbox, no dead one is still unwinding."""
        for _ in range(MAX_SETTLE_ROUNDS):
            infos = list(self.rt.processes())
            if all(i.status == "waiting" and i.mailbox_depth == 0 for i in infos) and all(
                self.rt.process_info(p) is None for p in self.procs.keys() - {i.pid for i in infos}
            ):
                return
            await asyncio.sleep(0)
        stuck = [i for i in self.rt.processes() if i.status != "waiting" or i.mailbox_depth]
        raise AssertionError(f"no quiescence after {MAX_SETTLE_ROUNDS} loop rounds: {stuck}")

    def run(self, action: Callable[[], Any]) -> Any:
        """Call ``action`` inside the loop, then let the system settle."""

        async def step() -> Any:
            result = action()
            await self.settle()
            return result

        return self.loop.run_until_complete(step())

    def check_step(self, before: set[Pid], expected: Expected, lo: int, hi: int) -> None:
        """Compare the messages received in this step with ``expected`` (per
        receiver, as multisets), and the new dead letters with ``[lo, hi]``."""
        got: defaultdict[Pid, Counter[Hashable]] = defaultdict(Counter)
        for pid, msg in self.log[self.checked :]:
            assert pid in before, (
                f"{pid} received {msg!r} after it died ({self.procs[pid].reason!r})"
            )
            match msg:
                case ("msg", Pid() as sender, int() as seq):
                    last = self.last_seq.get((sender, pid), 0)
                    assert seq > last, f"{pid} got seq {seq} from {sender} after seq {last}"
                    self.last_seq[sender, pid] = seq
                case Down(ref=ref):
                    self.downs_seen[ref] += 1
                    assert self.downs_seen[ref] == 1, f"a second Down for {ref}: {msg}"
            got[pid][msg_key(msg)] += 1
        self.checked = len(self.log)
        want = {pid: Counter(msgs) for pid, msgs in expected.items() if msgs}
        assert dict(got) == want, "messages received in this step: runtime (left), model (right)"
        new = self.rt.stats().dead_letters - self.dead_letters
        assert lo <= new <= hi, f"{new} new dead letters, the model expects {lo}..{hi}"
        self.dead_letters += new

    def command(self, pid: Pid, cmd: tuple[Any, ...], expected: Expected) -> bool:
        """Account for sending ``cmd`` to ``pid``; True if it will be executed."""
        if self.alive(pid):
            expected[pid].append(cmd)
            return True
        return False

    # -- rules ----------------------------------------------------------------

    def pick(self, data: st.DataObject, label: str, live_odds: int = 4) -> Pid:
        """A process to act on: a live one ``live_odds`` times as often as a dead
        one (so that commands and signals to the dead are exercised too)."""
        live = sorted(self.live_pids())
        dead = sorted(self.procs.keys() - live)
        weight = math.ceil(live_odds * len(dead) / len(live)) if live else 0
        pid: Pid = data.draw(st.sampled_from(live * weight + dead if dead else live), label=label)
        return pid

    @initialize(flags=st.lists(traps, min_size=MIN_LIVE, max_size=MAX_LIVE))
    def spawn_some(self, flags: list[bool]) -> None:
        for trap in flags:
            self.spawn(trap)

    @precondition(lambda self: len(self.live_pids()) < MAX_LIVE)
    @rule(trap=traps)
    def spawn(self, trap: bool) -> None:
        before = self.live_pids()
        pid: Pid = self.run(lambda: self.rt.spawn(actor, trap, self.log, self.refs))
        assert pid not in self.procs
        self.procs[pid] = ModelProc(trap)
        note(f"spawned {pid}, trap_exits={trap}")
        self.check_step(before, defaultdict(list), 0, 0)

    def replenish(self) -> None:
        """Spawn fresh processes (one in three trapping exits) up to MIN_LIVE."""
        while len(self.live_pids()) < MIN_LIVE:
            self.spawn(len(self.procs) % 3 == 2)

    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        """One to three senders each send a burst of messages ``("msg", sender,
        seq)`` to a receiver, all commanded at once so that bursts interleave."""
        before = self.live_pids()
        expected: Expected = defaultdict(list)
        orders: list[tuple[Pid, tuple[str, Pid, tuple[int, ...]]]] = []
        dead = 0
        for _ in range(data.draw(st.integers(1, 3), label="senders")):
            a, b = self.pick(data, "sender"), self.pick(data, "receiver")
            n = data.draw(st.integers(1, 3), label="burst")
            seqs = tuple(self.next_tag() for _ in range(n))
            cmd = ("send", b, seqs)
            orders.append((a, cmd))
            if not self.command(a, cmd, expected):
                dead += 1
            elif self.alive(b):
                expected[b] += [("msg", a, seq) for seq in seqs]
            else:
                dead += n

        def command_all() -> None:
            for a, cmd in orders:
                self.rt.send(a, cmd)

        self.run(command_all)
        self.check_step(before, expected, dead, dead)

    @rule(data=st.data())
    def link(self, data: st.DataObject) -> None:
        """``a`` links to ``b``."""
        a, b = self.pick(data, "a"), self.pick(data, "b")
        before = self.live_pids()
        expected: Expected = defaultdict(list)
        cmd = ("link", b)
        lo = hi = 0
        if not self.command(a, cmd, expected):
            lo = hi = 1
        elif a == b:
            pass
        elif self.alive(b):
            self.links.add(frozenset((a, b)))
        elif self.procs[a].trap:
            expected[a].append(("EXIT", b, NOPROC))
        else:
            lo, hi = self.die(a, NOPROC, expected)
        self.run(lambda: self.rt.send(a, cmd))
        self.check_step(before, expected, lo, hi)
        self.replenish()

    @rule(data=st.data())
    def monitor(self, data: st.DataObject) -> None:
        """``a`` monitors ``b``."""
        a, b = self.pick(data, "watcher"), self.pick(data, "target")
        before = self.live_pids()
        expected: Expected = defaultdict(list)
        tag = self.next_tag()
        cmd = ("monitor", b, tag)
        self.run(lambda: self.rt.send(a, cmd))
        ref = self.refs.pop(tag, None)
        if self.command(a, cmd, expected):
            assert ref is not None, f"{a} did not run {cmd}"
            if self.alive(b):
                self.monitors[ref] = (a, b)
            else:
                expected[a].append(("DOWN", ref, b, NOPROC))
            self.check_step(before, expected, 0, 0)
        else:
            assert ref is None, f"dead {a} ran {cmd}"
            self.check_step(before, expected, 1, 1)

    @rule(data=st.data(), queued=st.integers(0, 2))
    def kill(self, data: st.DataObject, queued: int) -> None:
        """``rt.kill(pid)`` right after ``queued`` messages were sent to it: they
        are still in its mailbox when it dies, so they are dead letters."""
        pid = self.pick(data, "pid", live_odds=1)
        before = self.live_pids()
        expected: Expected = defaultdict(list)
        lo = hi = 0  # an exit signal to a dead process is not a message
        if self.alive(pid):
            lo, hi = self.die(pid, KILLED, expected)

        def kill() -> None:
            for i in range(queued):
                self.rt.send(pid, ("queued", i))
            self.rt.kill(pid)

        self.run(kill)
        self.check_step(before, expected, lo + queued, hi + queued)
        self.replenish()

    @rule(data=st.data(), crash=st.booleans(), queued=st.integers(0, 2))
    def exit(self, data: st.DataObject, crash: bool, queued: int) -> None:
        """``pid`` returns from its body (reason normal) or raises, on a command
        followed by ``queued`` messages: those are left in its mailbox."""
        pid = self.pick(data, "pid", live_odds=1)
        before = self.live_pids()
        expected: Expected = defaultdict(list)
        tag = self.next_tag()
        cmd, reason = (("raise", tag), ("crash", tag)) if crash else (("return",), NORMAL)
        lo = hi = 1
        if self.command(pid, cmd, expected):
            lo, hi = self.die(pid, reason, expected)

        def command() -> None:
            self.rt.send(pid, cmd)
            for i in range(queued):
                self.rt.send(pid, ("queued", i))

        self.run(command)
        self.check_step(before, expected, lo + queued, hi + queued)
        self.replenish()

    # -- invariants -----------------------------------------------------------

    @invariant()
    def runtime_agrees_with_model(self) -> None:
        infos = {info.pid: info for info in self.rt.processes()}
        assert set(infos) == self.live_pids(), "live pids: runtime (left), model (right)"
        for pid, info in infos.items():
            assert info.status == "waiting" and info.mailbox_depth == 0
            assert info.trap_exits == self.procs[pid].trap
            assert set(info.links) == self.neighbours(pid), f"links of {pid}: runtime, model"
            watched = sorted(t for w, t in self.monitors.values() if w == pid)
            assert sorted(info.monitors) == watched, f"monitored by {pid}: runtime, model"
        stats = self.rt.stats()
        assert stats.dead_letters == self.dead_letters
        assert (stats.spawned, stats.exited) == (len(self.procs), len(self.procs) - len(infos))

    @invariant()
    def fired_monitors_are_gone(self) -> None:
        """A monitor that delivered its Down is no longer live, and a live one
        has delivered nothing."""
        assert not self.downs_seen.keys() & self.monitors.keys()


class TestRuntimeAgreesWithItsModel(RuntimeMachine.TestCase):  # type: ignore[misc,valid-type]
    """Any sequence of spawn, send, link, monitor, kill and exit leaves the runtime
    where the BEAM model says: same live processes, links and monitors; each
    message delivered once and in order per sender; one Down per monitor and
    one Exit per trapped link; dead letters counted for every message to the dead."""
