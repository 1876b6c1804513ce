"""The observe channel in one process: samples, commands, errors, the WebSocket
guardrails, hidden attachers over QUIC, and reconnection.

Node "london" runs in the test's event loop with ``serve_observe`` and
``serve_attachers``; its entry in a node directory under ``tmp_path`` names
this test process, so clients find it by name as they would a real node.
Tests wait on events or poll a state with a bound, never on sleeps.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from rusm.actors import Down, Pid, Process, Runtime
from rusm.actors.info import ProcessInfo
from rusm.net import ClusterCa, ClusterNode
from rusm.net.directory import NodeDirectory, NodeEntry
from rusm.net.observe import (
    AttachError,
    CommandError,
    FeedStatus,
    ObserveClient,
    ObserveServer,
    Sample,
    Subscription,
    connect,
    parse_target,
    serve_attachers,
    serve_observe,
)
from rusm.net.observe.session import observatory
from rusm.observe.protocol import SORT_KEYS, decode, encode

from .helpers import EVENT_TIMEOUT, idle, probe, until

LOCAL = ("127.0.0.1", 0)
TOKEN = "observe-test-token-0123456789abcdefghij"
MAX_MESSAGE = 64 * 1024
"""The server's ``max_size`` (the brief: 64 KiB)."""


@pytest.fixture(scope="module")
def ca() -> ClusterCa:
    return ClusterCa.generate()


class Site:
    """Node london with its observe channel and directory entry, plus whatever
    a test adds (peers, clients, raw sockets); all closed at the end."""

    def __init__(self, ca: ClusterCa, home: Path) -> None:
        self.ca = ca
        self.home = home
        self.directory = NodeDirectory(home)
        self.nodes: list[ClusterNode] = []
        self.clients: list[ObserveClient] = []
        self.sockets: list[ClientConnection] = []
        self.node: ClusterNode
        self.server: ObserveServer

    async def start(self) -> None:
        self.node = await self.bind("london")
        self.server = await self.serve()
        self.claim(self.server)
        serve_attachers(self.node)

    @property
    def rt(self) -> Runtime:
        return self.node.runtime

    async def bind(self, name: str) -> ClusterNode:
        node = await ClusterNode.bind(name, Runtime(), LOCAL, self.ca.issue(name))
        self.nodes.append(node)
        return node

    async def serve(self, **options: Any) -> ObserveServer:
        return await serve_observe(self.node, token=TOKEN, **options)

    def claim(self, server: ObserveServer) -> NodeEntry:
        entry = NodeEntry(
            name="london", os_pid=os.getpid(), cluster=self.node.local_addr(),
            observe=server.local_addr(), token=TOKEN, started=time.time(),
        )
        self.directory.claim(entry)
        return entry

    def url(self, server: ObserveServer | None = None) -> str:
        host, port = (server or self.server).local_addr()
        return f"ws://{host}:{port}/"

    async def client(self, reconnect: bool = False, **subscription: Any) -> ObserveClient:
        c = await connect(
            "london", home=self.home, subscription=Subscription(**subscription),
            reconnect=reconnect,
        )
        self.clients.append(c)
        return c

    @property
    def quic_target(self) -> str:
        return f"london@127.0.0.1:{self.node.local_addr()[1]}"

    async def attacher(self, name: str = "ops", **subscription: Any) -> ObserveClient:
        c = await connect(
            self.quic_target, identity=self.ca.issue(name),
            subscription=Subscription(**subscription), reconnect=False,
        )
        self.clients.append(c)
        return c

    async def raw(self, server: ObserveServer | None = None, **options: Any) -> ClientConnection:
        """A WebSocket with the token, past the node's hello."""
        ws = await ws_connect(
            self.url(server), additional_headers={"Authorization": f"Bearer {TOKEN}"},
            compression=None, **options,
        )
        self.sockets.append(ws)
        hello = decode(await asyncio.wait_for(ws.recv(decode=False), EVENT_TIMEOUT))
        assert hello == {"t": "hello", "node": "london", "version": 1}
        return ws

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for ws in self.sockets:
            await ws.close()
        for node in self.nodes:
            await node.close()


@pytest.fixture
async def site(ca: ClusterCa, tmp_path: Path) -> AsyncIterator[Site]:
    s = Site(ca, tmp_path)
    try:
        await s.start()
        yield s
    finally:
        await s.close()
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"closed node and clients left tasks behind: {left}"


# -- helpers -------------------------------------------------------------------


async def sample_where(
    client: ObserveClient, condition: Callable[[Sample], bool], what: str = "a sample"
) -> Sample:
    """The first sample that satisfies ``condition`` (fails after EVENT_TIMEOUT)."""
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            s = await client.next_sample()
            if condition(s):
                return s
    raise AssertionError(f"no {what}")  # pragma: no cover


async def status_where(client: ObserveClient, state: str) -> FeedStatus:
    """The next FeedStatus in ``state`` (samples skipped; bounded)."""
    events = client.__aiter__()
    try:
        async with asyncio.timeout(2 * EVENT_TIMEOUT):
            async for event in events:
                if isinstance(event, FeedStatus) and event.state == state:
                    return event
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    raise AssertionError(f"the feed ended without a {state!r} status")


async def settle(rt: Runtime) -> None:
    """Wait until every process with work is waiting in receive (hoarders excepted)."""
    def settled() -> bool:
        return all(
            i.status == "waiting" or i.label in ("hoarder",) for i in rt.processes()
        )
    await until(settled, "processes to settle")


async def poll(condition: Callable[[], bool], what: str, timeout: float = EVENT_TIMEOUT) -> None:
    """For states that change on a timer (history ticks): check every 20 ms, bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def reply_of(ws: ClientConnection) -> dict[str, Any]:
    """The next reply on a raw socket (samples skipped)."""
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            message = decode(await ws.recv(decode=False))
            if message["t"] == "reply":
                return message


async def ask(ws: ClientConnection, cmd: str, rid: int = 1, **args: Any) -> dict[str, Any]:
    await ws.send(encode({"t": "cmd", "id": rid, "cmd": cmd, "args": args}))
    return await reply_of(ws)


async def hoarder(proc: Process) -> None:
    """Never receives: what it is sent piles up in its mailbox."""
    await asyncio.get_running_loop().create_future()


async def puppet(proc: Process) -> None:
    """Does what it is told: link, monitor, send N messages, or hold (stop receiving)."""
    while True:
        msg = await proc.receive()
        if msg[0] == "link":
            proc.link(msg[1])
        elif msg[0] == "monitor":
            proc.monitor(msg[1])
        elif msg[0] == "send":
            for i in range(msg[2]):
                proc.send(msg[1], i)
        elif msg[0] == "hold":
            await asyncio.get_running_loop().create_future()


async def worker(proc: Process, reply_to: Pid | None = None, name: str | None = None) -> None:
    """The spawnable of these tests: says it is up, may register, waits."""
    if name is not None:
        proc.register(name)
    if reply_to is not None:
        proc.send(reply_to, ("worker_up", proc.pid))
    while True:
        if await proc.receive() == "stop":
            return


class Population:
    """Processes whose keys differ: mailbox, received, sent, links, monitors, labels."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.zulu = rt.spawn(puppet, label="zulu")  # holds 5 messages
        self.mike = rt.spawn(puppet, label="mike")  # links to 2
        self.alpha = rt.spawn(puppet, label="alpha")  # sends 7
        self.kilo = rt.spawn(puppet, label="kilo")  # monitors 3
        self.ledger = rt.spawn(idle, label="bravo")  # receives everything alpha sends
        rt.register("ledger", self.ledger)
        rt.send(self.zulu, ("hold",))
        for i in range(5):
            rt.send(self.zulu, ("filler", i))
        rt.send(self.mike, ("link", self.alpha))
        rt.send(self.mike, ("link", self.kilo))
        rt.send(self.alpha, ("send", self.ledger, 7))
        for target in (self.zulu, self.mike, self.alpha):
            rt.send(self.kilo, ("monitor", target))

    async def ready(self) -> None:
        def done() -> bool:
            z = self.rt.process_info(self.zulu)
            k = self.rt.process_info(self.kilo)
            led = self.rt.process_info(self.ledger)
            return (
                z is not None and z.mailbox_depth == 5
                and k is not None and len(k.monitors) == 3
                and led is not None and led.received == 7 and led.mailbox_depth == 0
                and all(
                    i.status == "waiting" for i in self.rt.processes()
                    if i.pid != self.zulu
                )
            )
        await until(done, "the population to settle")

    def infos(self) -> list[ProcessInfo]:
        return list(self.rt.processes())


EXPECTED_ORDER: dict[str, Callable[[ProcessInfo], Any]] = {
    "mailbox": lambda i: -i.mailbox_depth,
    "received": lambda i: -i.received,
    "sent": lambda i: -i.sent,
    "links": lambda i: -len(i.links),
    "monitors": lambda i: -(len(i.monitors) + len(i.monitored_by)),
    "pid": lambda i: i.pid.serial,
    "label": lambda i: (not i.label, (i.label or "").lower()),
    "status": lambda i: i.status,
    "names": lambda i: (not i.names, ", ".join(i.names).lower()),
    "age": lambda i: i.spawned_at,
    "cpu": lambda i: -i.cpu_s,
    "memory": lambda i: -i.memory_bytes,
}
"""What each sort key means (docs: numeric largest first, text ascending with
no text last, age oldest first); ties in pid order."""


def expected_top(
    infos: list[ProcessInfo], key: str, limit: int, reverse: bool = False
) -> list[str]:
    """Reversed: the order is reversed, ties stay in pid order."""
    ranked = sorted(infos, key=lambda i: i.pid.serial)
    ranked.sort(key=EXPECTED_ORDER[key], reverse=reverse)
    return [str(i.pid) for i in ranked[:limit]]


# -- samples -------------------------------------------------------------------


async def test_a_sample_carries_the_node_its_totals_and_a_row_per_process(site: Site) -> None:
    pop = Population(site.rt)
    await pop.ready()
    client = await site.client()
    s = await sample_where(client, lambda s: s.detail and len(s.rows) == len(pop.infos()))
    infos = {str(i.pid): i for i in pop.infos()}
    assert s.node == "london"
    assert s.uptime > 0
    assert s.processes == len(infos) == s.matched
    assert s.omitted == 0
    assert s.nodes == ()
    assert s.totals.mailbox == sum(i.mailbox_depth for i in infos.values()) == 5
    stats = site.rt.stats()
    assert s.totals.messages == stats.messages
    assert s.totals.spawned == stats.spawned and s.totals.exited == stats.exited
    for row in s.rows:
        info = infos[row.pid]
        assert row.label == info.label
        assert row.names == info.names
        assert row.mailbox == info.mailbox_depth
        assert row.links == len(info.links)
        assert row.monitors == len(info.monitors) + len(info.monitored_by)
        assert row.status == info.status
        assert (row.received, row.sent) == (info.received, info.sent)
        assert row.age >= 0
    ledger = next(r for r in s.rows if r.pid == str(pop.ledger))
    assert ledger.names == ("ledger",) and ledger.received == 7
    assert client.latest is not None and client.latest.seq >= s.seq


async def test_the_first_sample_a_client_gets_follows_its_subscription(site: Site) -> None:
    Population(site.rt)
    client = await site.client(sort="pid", limit=1)
    first = await client.next_sample()
    assert (first.sort, len(first.rows)) == ("pid", 1), (
        "the first sample was made before the client's subscription arrived"
    )


@pytest.mark.parametrize("key", SORT_KEYS)
async def test_rows_are_the_top_n_by_each_sort_key_selected_by_the_node(
    site: Site, key: str
) -> None:
    pop = Population(site.rt)
    await pop.ready()
    client = await site.client()
    await client.subscribe(sort=key, limit=3)
    s = await sample_where(client, lambda s: s.sort == key and len(s.rows) == 3)
    infos = pop.infos()
    assert [r.pid for r in s.rows] == expected_top(infos, key, 3)
    assert s.matched == len(infos)
    assert s.omitted == len(infos) - 3


@pytest.mark.parametrize("key", SORT_KEYS)
async def test_a_reversed_sort_shows_the_last_of_all_rows_not_of_the_first_n(
    site: Site, key: str
) -> None:
    pop = Population(site.rt)
    await pop.ready()
    client = await site.client()
    await client.subscribe(sort=key, reverse=True, limit=3)
    s = await sample_where(client, lambda s: s.sort == key and s.reverse and len(s.rows) == 3)
    infos = pop.infos()
    if key == "age":  # processes spawned in the same millisecond tie: check the ages
        ages = [r.age for r in s.rows]
        youngest = max(i.spawned_at for i in infos)
        assert ages == sorted(ages) and abs(ages[0] - (s.time - youngest)) < 0.01
        return
    assert [r.pid for r in s.rows] == expected_top(infos, key, 3, reverse=True)
    if key != "cpu":  # idle processes all tie at no busy time: reversed, ties keep pid order
        assert expected_top(infos, key, 3, reverse=True) != expected_top(infos, key, 3)
    assert s.matched == len(infos) and s.omitted == len(infos) - 3


def at(offset: int) -> Callable[[Sample], bool]:
    return lambda s: s.offset == offset and s.sort == "pid"


async def test_an_offset_pages_through_every_process_and_the_sample_says_where(
    site: Site,
) -> None:
    pop = Population(site.rt)
    await pop.ready()
    infos = pop.infos()
    every = expected_top(infos, "pid", len(infos))
    client = await site.client()
    seen: list[str] = []
    for offset in range(0, len(every), 2):
        await client.subscribe(sort="pid", offset=offset, limit=2)
        s = await sample_where(client, at(offset))
        assert s.matched == len(every) and s.omitted == len(every) - len(s.rows)
        seen += [r.pid for r in s.rows]
    assert seen == every
    with pytest.raises(CommandError) as e:
        await client.subscribe(offset=-1)
    assert e.value.kind == "bad_request"


async def test_a_filter_with_a_leading_bang_shows_the_rows_that_do_not_match(
    site: Site,
) -> None:
    pop = Population(site.rt)
    await pop.ready()
    total = len(pop.infos())
    client = await site.client()
    await client.subscribe(filter="!ALPHA", limit=1000)
    s = await sample_where(client, lambda s: s.matched == total - 1)
    assert str(pop.alpha) not in [r.pid for r in s.rows]
    assert len(s.rows) == total - 1 and s.omitted == 0
    await client.subscribe(filter="!")  # nothing to negate: every row
    s = await sample_where(client, lambda s: s.matched == total)


async def test_the_sort_keys_give_different_orders_so_each_key_is_really_tested(
    site: Site,
) -> None:
    pop = Population(site.rt)
    await pop.ready()
    orders = {tuple(expected_top(pop.infos(), key, 3)) for key in SORT_KEYS}
    assert len(orders) >= 6, orders  # pid and age agree; so may one numeric key


async def test_limit_bounds_the_rows_and_the_rest_are_counted_as_omitted(site: Site) -> None:
    pop = Population(site.rt)
    await pop.ready()
    total = len(pop.infos())
    client = await site.client()
    await client.subscribe(limit=0)
    s = await sample_where(client, lambda s: not s.rows)
    assert s.detail and (s.matched, s.omitted) == (total, total)
    await client.subscribe(limit=2)
    s = await sample_where(client, lambda s: len(s.rows) == 2)
    assert s.omitted == total - 2
    await client.subscribe(limit=1000)
    s = await sample_where(client, lambda s: len(s.rows) == total)
    assert s.omitted == 0
    with pytest.raises(CommandError) as e:
        await client.subscribe(limit=1001)
    assert e.value.kind == "bad_request"
    assert client.subscription.limit == 1000, "a refused change must not stick"


async def test_a_filter_matches_labels_names_and_pids_case_insensitively(site: Site) -> None:
    pop = Population(site.rt)
    await pop.ready()
    client = await site.client()

    await client.subscribe(filter="ALPHA")
    s = await sample_where(client, lambda s: s.matched == 1)
    assert [r.pid for r in s.rows] == [str(pop.alpha)] and s.omitted == 0

    await client.subscribe(filter="Ledger")  # a registered name, not its label
    s = await sample_where(client, lambda s: s.rows and s.rows[0].pid == str(pop.ledger))
    assert [r.pid for r in s.rows] == [str(pop.ledger)] and s.matched == 1

    await client.subscribe(filter=str(pop.kilo))
    s = await sample_where(client, lambda s: s.rows and s.rows[0].pid == str(pop.kilo))
    assert s.matched == 1 and len(s.rows) == 1

    await client.subscribe(filter="K", limit=1)  # mike and kilo; mike is older
    s = await sample_where(client, lambda s: s.matched == 2)
    assert [r.pid for r in s.rows] == [str(pop.mike)] and s.omitted == 1


async def test_detail_off_gives_totals_without_rows_and_on_brings_them_back(site: Site) -> None:
    pop = Population(site.rt)
    await pop.ready()
    client = await site.client()
    await client.command("detail", on=False)
    s = await sample_where(client, lambda s: not s.detail)
    assert s.rows == ()
    assert s.processes == len(pop.infos()) and s.totals.mailbox == 5
    await client.command("detail", on=True)
    s = await sample_where(client, lambda s: s.detail)
    assert len(s.rows) == len(pop.infos())

    off = await site.client(detail=False)
    s = await sample_where(off, lambda s: not s.detail)
    assert s.rows == ()


async def test_totals_count_messages_in_out_and_dead_letters_per_second(site: Site) -> None:
    rt = site.rt
    hold = rt.spawn(hoarder, label="hoarder")
    sink = rt.spawn(idle, label="sink")
    gone = rt.spawn(idle)
    rt.kill(gone)
    client = await site.client()
    # A long interval: samples come only after commands, so the window of the
    # rates is exactly the sends below.
    await client.subscribe(interval=60)
    t0 = time.time()
    assert (await client.command("nodes")) == []  # a sample at once after it
    base = await sample_where(client, lambda s: s.time >= t0)
    for i in range(200):
        rt.send(hold, i)
    for i in range(100):
        rt.send(sink, i)
    for i in range(50):
        rt.send(gone, i)
    await settle(rt)
    assert (await client.command("nodes")) == []
    s = await sample_where(client, lambda s: s.seq > base.seq)
    t = s.totals
    assert t.messages - base.totals.messages == 300
    assert t.dead_letters - base.totals.dead_letters == 50
    assert t.mailbox - base.totals.mailbox == 200
    assert t.msgs_in_per_s > 0 and t.msgs_out_per_s > 0 and t.dead_letters_per_s > 0
    # One window, so the rates stand as the counts: in 300, out 100, dead 50.
    assert t.msgs_in_per_s == pytest.approx(3 * t.msgs_out_per_s, rel=0.05)
    assert t.msgs_out_per_s == pytest.approx(2 * t.dead_letters_per_s, rel=0.05)


async def test_history_comes_with_the_first_sample_and_again_after_a_resubscribe(
    site: Site,
) -> None:
    rt = site.rt
    hold = rt.spawn(hoarder, label="hoarder")
    first = await site.client(interval=0.1)
    s = await first.next_sample()
    assert s.history is not None
    assert len(s.history.processes) >= 1 and len(s.history.mailbox) >= 1
    assert set(s.history.rows) == {r.pid for r in s.rows}
    # Later samples carry none ...
    await sample_where(first, lambda s: s.history is None, "a sample without history")
    # ... until the subscription changes: the first sample of the new one has it.
    await first.subscribe(sort="pid")
    s = await sample_where(first, lambda s: s.sort == "pid")
    assert s.history is not None and str(hold) in s.history.rows

    # The node keeps history between attaches: a fresh client draws at once.
    obs = observatory(site.node)
    points = len(obs.processes)
    for i in range(3):
        rt.send(hold, i)
    await poll(lambda: len(obs.processes) >= points + 2, "two more history ticks", 10.0)
    fresh = await site.client()
    h = (await fresh.next_sample()).history
    assert h is not None and h.step > 0
    assert len(h.processes) >= points + 2
    assert h.processes[-1] == len(list(rt.processes()))
    assert h.mailbox[-1] == 3
    series = h.rows[str(hold)]  # tracked since the first client showed it
    assert len(series) >= 2 and series[0] == 0 and series[-1] == 3


async def test_a_sample_names_the_shown_processes_that_exited_not_those_that_left_the_page(
    site: Site,
) -> None:
    rt = site.rt
    hold = rt.spawn(hoarder, label="hoarder")
    quiet = rt.spawn(hoarder, label="quiet")
    rt.send(hold, "x")
    client = await site.client(interval=0.1)
    await client.subscribe(limit=1000)
    await sample_where(client, lambda s: {str(hold), str(quiet)} <= {r.pid for r in s.rows})
    await client.subscribe(filter="hoarder")  # quiet leaves the page, still alive
    s = await sample_where(client, lambda s: [r.pid for r in s.rows] == [str(hold)])
    assert s.exited == ()
    rt.exit(hold, "kill")
    s = await sample_where(client, lambda s: not s.rows)
    assert s.exited == (str(hold),)
    await sample_where(client, lambda s: not s.exited, "a sample after the exit is reported")


# -- commands ------------------------------------------------------------------


async def test_send_to_a_name_or_a_pid_delivers_the_term(site: Site) -> None:
    p = await probe(site.rt)
    site.rt.register("inbox", p.pid)
    client = await site.client()
    term = ("hello", [1, {"k": (2, 3)}], None, b"raw")
    assert await client.command("send", dest="inbox", msg=term) == "inbox"
    assert await p.next() == term
    assert await client.command("send", dest=str(p.pid), msg=42) == str(p.pid)
    assert await p.next() == 42
    assert await client.command("send", dest=p.pid, msg="by Pid") == str(p.pid)
    assert await p.next() == "by Pid"
    await p.nothing_more()


async def test_send_to_a_process_that_does_not_receive_grows_its_mailbox(site: Site) -> None:
    hold = site.rt.spawn(hoarder, label="hoarder")
    client = await site.client(interval=0.1)
    await client.command("send", dest=str(hold), msg="one")
    await client.command("send", dest=str(hold), msg="two")
    s = await sample_where(client, lambda s: any(r.mailbox == 2 for r in s.rows))
    assert [r.pid for r in s.rows if r.mailbox == 2] == [str(hold)]


async def test_spawn_starts_a_registered_factory_and_kill_and_exit_stop_processes(
    site: Site,
) -> None:
    site.node.register_spawnable("worker", worker)
    p = await probe(site.rt)
    client = await site.client()
    text = await client.command("spawn", factory="worker", args=[p.pid, "w1"])
    up, pid = await p.next()
    assert (up, str(pid)) == ("worker_up", text)
    assert site.rt.is_alive(pid) and site.rt.whereis("w1") == pid
    info = site.rt.process_info(pid)
    assert info is not None and info.label == "worker"

    ref = p.proc.monitor(pid)
    assert await client.command("kill", pid=text) == text
    assert await p.next() == Down(ref, pid, "killed")
    assert not site.rt.is_alive(pid) and site.rt.whereis("w1") is None

    other = Pid.parse(await client.command("spawn", factory="worker", args=[p.pid]))
    _, other = await p.next()
    ref = p.proc.monitor(other)
    assert await client.command("exit", pid=str(other), reason="shutdown") == str(other)
    assert await p.next() == Down(ref, other, "shutdown")
    # A pid may be written without its brackets.
    third = Pid.parse(await client.command("spawn", factory="worker", args=()))
    await client.command("kill", pid=str(third).strip("<>"))
    assert not site.rt.is_alive(third)


async def test_info_reports_what_process_info_knows(site: Site) -> None:
    pop = Population(site.rt)
    await pop.ready()
    client = await site.client()
    info = await client.command("info", pid=str(pop.mike))
    assert info["pid"] == str(pop.mike) and info["label"] == "mike"
    assert sorted(info["links"]) == sorted([str(pop.alpha), str(pop.kilo)])
    assert info["monitored_by"] == [str(pop.kilo)]
    assert info["status"] == "waiting" and info["trap_exits"] is False
    assert info["received"] == 2 and info["sent"] == 0
    ledger = await client.command("info", pid=str(pop.ledger))
    assert ledger["names"] == ["ledger"] and ledger["received"] == 7
    zulu = await client.command("info", pid=str(pop.zulu))
    assert zulu["mailbox_depth"] == 5
    assert abs(zulu["spawned_at"] - time.time()) < 60


async def test_nodes_and_names_list_peers_registered_names_and_factories(site: Site) -> None:
    site.node.register_spawnable("worker", worker)
    p = await probe(site.rt)
    site.rt.register("inbox", p.pid)
    await site.node.register_global("svc", p.pid)
    client = await site.client()
    assert await client.command("nodes") == []
    tokyo = await site.bind("tokyo")
    await tokyo.connect(site.node.local_addr())
    assert await client.command("nodes") == ["tokyo"]
    s = await sample_where(client, lambda s: s.nodes == ("tokyo",))
    assert s.node == "london"
    names = await client.command("names")
    assert "inbox" in names["local"]
    assert names["global"] == ["svc"]
    assert names["factories"] == ["worker"]


# -- typed errors --------------------------------------------------------------


async def refused(client: ObserveClient, kind: str, cmd: str, **args: Any) -> str:
    """Run a command that must fail with ``kind``; the node must still answer after."""
    with pytest.raises(CommandError) as e:
        await client.command(cmd, **args)
    assert e.value.kind == kind, e.value.message
    assert e.value.message
    assert await client.command("nodes") == [], "the node stopped answering"
    return e.value.message


async def test_every_refused_command_gets_its_typed_error_and_the_node_still_answers(
    site: Site,
) -> None:
    site.node.register_spawnable("worker", worker)
    gone = site.rt.spawn(idle)
    site.rt.kill(gone)
    client = await site.client()

    assert "frobnicate" in await refused(client, "unknown_command", "frobnicate")
    await refused(client, "bad_request", "info")  # pid missing
    await refused(client, "bad_request", "info", pid=42)
    assert "<london.12>" in await refused(client, "bad_request", "info", pid="nonsense")
    assert "tokyo" in await refused(client, "bad_request", "info", pid="<tokyo.3>")
    await refused(client, "bad_request", "nodes", extra=1)
    await refused(client, "bad_request", "detail", on="yes")
    await refused(client, "bad_request", "subscribe", sort="colour")
    await refused(client, "bad_request", "subscribe", interval=0.001)
    await refused(client, "bad_request", "subscribe", shape="round")
    await refused(client, "bad_request", "spawn", factory="worker", args="not a list")
    await refused(client, "bad_request", "spawn", factory=7)
    await refused(client, "no_such_process", "info", pid=str(gone))
    await refused(client, "no_such_process", "kill", pid=str(gone))
    await refused(client, "no_such_process", "send", dest=str(gone), msg=1)
    assert "nobody" in await refused(client, "no_such_process", "send", dest="nobody", msg=1)
    assert "worker" in await refused(client, "unknown_factory", "spawn", factory="nope")
    await refused(client, "spawn_failed", "spawn", factory="worker", args=[1, 2, 3, 4])


async def test_an_unsendable_term_is_a_typed_error_over_websocket(site: Site) -> None:
    p = await probe(site.rt)
    site.rt.register("inbox", p.pid)
    client = await site.client()
    message = await refused(client, "unsendable", "send", dest="inbox", msg={1, 2})
    assert "set" in message
    await p.nothing_more()


async def test_an_unsendable_term_is_a_typed_error_over_quic(site: Site) -> None:
    p = await probe(site.rt)
    attacher = await site.attacher()
    with pytest.raises(CommandError) as e:
        await attacher.command("send", dest=str(p.pid), msg={1, 2})
    assert e.value.kind == "unsendable" and "set" in e.value.message
    assert await attacher.command("nodes") == []
    await p.nothing_more()


async def test_the_node_refuses_an_unsendable_term_it_is_handed_in_process(site: Site) -> None:
    # A set cannot cross the wire; a session handed one directly must still refuse it.
    from rusm.net.observe.session import Session

    p = await probe(site.rt)
    session = Session(observatory(site.node))
    with pytest.raises(CommandError) as e:
        session.handle({"t": "cmd", "cmd": "send", "args": {"dest": str(p.pid), "msg": {1}}})
    assert e.value.kind == "unsendable"
    await p.nothing_more()


async def test_malformed_messages_get_error_replies_and_the_connection_stays_up(
    site: Site,
) -> None:
    ws = await site.raw()
    bad: list[bytes | str] = [
        b"\xc1",  # never valid msgpack
        b"\x92\x01",  # an array cut short
        b"",
        "a text frame",
        encode([1, 2]),  # not a map
        encode({"cmd": "nodes"}),  # no "t"
        encode({"t": 5}),
        encode({"t": "sample"}),  # not a client's message
        encode({"t": "cmd", "cmd": 5, "args": {}}),
        encode({"t": "cmd", "cmd": "info", "args": [1]}),
        encode({"t": "cmd", "cmd": "info", "args": {1: "x"}}),
    ]
    for rid, data in enumerate(bad, start=100):
        await ws.send(data)
        reply = await reply_of(ws)
        assert reply["ok"] is False and reply["error"] == "bad_request", (data, reply)
        assert reply["message"]
        ok = await ask(ws, "nodes", rid)
        assert ok == {"t": "reply", "id": rid, "cmd": "nodes", "ok": True, "value": []}


async def test_a_reply_carries_the_id_of_its_command(site: Site) -> None:
    ws = await site.raw()
    reply = await ask(ws, "info", 77, pid="<london.999>")
    assert reply["id"] == 77 and reply["cmd"] == "info"
    assert (reply["ok"], reply["error"]) == (False, "no_such_process")


async def test_a_command_just_under_the_size_limit_is_answered(site: Site) -> None:
    p = await probe(site.rt)
    site.rt.register("inbox", p.pid)
    ws = await site.raw()
    big = "x" * (MAX_MESSAGE - 200)
    reply = await ask(ws, "send", 3, dest="inbox", msg=big)
    assert reply["ok"] is True
    assert await p.next() == big


async def test_an_oversized_message_closes_that_connection_with_1009_only(site: Site) -> None:
    ws = await site.raw()
    bystander = await site.client()
    await ws.send(b"\x00" * (MAX_MESSAGE + 1))
    await asyncio.wait_for(ws.wait_closed(), EVENT_TIMEOUT)
    assert ws.close_code == 1009
    assert await bystander.command("nodes") == []
    again = await site.raw()
    assert (await ask(again, "nodes"))["ok"] is True


# -- WebSocket guardrails -------------------------------------------------------


async def refusal(url: str, **options: Any) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as e:
        await ws_connect(url, open_timeout=EVENT_TIMEOUT, **options)
    return e.value.response.status_code, e.value.response.body or b""


async def test_no_token_or_a_wrong_one_is_refused_with_401_and_no_hint(site: Site) -> None:
    url = site.url()
    status, no_token_body = await refusal(url)
    assert status == 401
    status, wrong_body = await refusal(
        url, additional_headers={"Authorization": f"Bearer {TOKEN[:-1]}X"}
    )
    assert status == 401
    assert wrong_body == no_token_body, "the refusal tells a wrong token from a missing one"
    assert TOKEN.encode() not in wrong_body and TOKEN[:8].encode() not in wrong_body
    status, _ = await refusal(url, additional_headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    status, _ = await refusal(url, additional_headers={"Authorization": "Bearer"})
    assert status == 401
    assert (await ask(await site.raw(), "nodes"))["ok"] is True


async def test_a_request_with_an_origin_header_is_refused_with_403(site: Site) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for origin in ("http://evil.example", "http://127.0.0.1", "null"):
        status, _ = await refusal(site.url(), origin=origin, additional_headers=auth)
        assert status == 403, origin


async def handshake_status(addr: tuple[str, int], host: str | None) -> int:
    """Send a WebSocket handshake with the token and this Host; the HTTP status."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        lines = [
            "GET / HTTP/1.1",
            *([f"Host: {host}"] if host is not None else []),
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            f"Authorization: Bearer {TOKEN}",
            "",
            "",
        ]
        writer.write("\r\n".join(lines).encode())
        status = await asyncio.wait_for(reader.readline(), EVENT_TIMEOUT)
        return int(status.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_host_that_is_not_loopback_is_refused_with_403(site: Site) -> None:
    addr = site.server.local_addr()
    port = addr[1]
    # The same handshake passes with a loopback Host: the 403s are the Host's doing.
    assert await handshake_status(addr, f"127.0.0.1:{port}") == 101
    assert await handshake_status(addr, f"localhost:{port}") == 101
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example",
                 f"localhost.evil.example:{port}", "10.0.0.5", f"[2001:db8::1]:{port}"):
        assert await handshake_status(addr, host) == 403, host
    assert await handshake_status(addr, None) in (400, 403)
    await until(lambda: not site.server.observers, "the accepted handshakes to detach")


async def test_observers_beyond_the_cap_are_refused_with_503(site: Site) -> None:
    capped = await site.serve(max_observers=2)
    url = site.url(capped)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def attempt() -> ClientConnection | int:
        try:
            ws = await ws_connect(url, additional_headers=auth, open_timeout=EVENT_TIMEOUT)
        except InvalidStatus as e:
            return e.response.status_code
        site.sockets.append(ws)
        return ws

    results = await asyncio.gather(*(attempt() for _ in range(4)))  # at once
    accepted = [r for r in results if not isinstance(r, int)]
    assert len(accepted) == 2 and sorted(r for r in results if isinstance(r, int)) == [503, 503]
    assert await attempt() == 503
    await accepted[0].close()
    await until(lambda: len(capped.observers) == 1, "the closed observer to be let go")
    assert not isinstance(await attempt(), int)
    # The cap is per server: the main channel is unaffected.
    assert (await ask(await site.raw(), "nodes"))["ok"] is True


# -- hidden attachers over QUIC ---------------------------------------------------


async def test_a_hidden_attacher_gets_samples_and_runs_commands_over_quic(site: Site) -> None:
    site.node.register_spawnable("worker", worker)
    pop = Population(site.rt)
    await pop.ready()
    p = await probe(site.rt)
    attacher = await site.attacher(sort="label", limit=2, interval=0.2)
    s = await sample_where(attacher, lambda s: s.sort == "label")
    assert s.node == "london"
    assert [r.pid for r in s.rows] == expected_top(pop.infos(), "label", 2)
    assert s.omitted == s.matched - 2

    await attacher.command("send", dest=str(p.pid), msg=("over", "quic", (1,)))
    assert await p.next() == ("over", "quic", (1,))
    text = await attacher.command("spawn", factory="worker", args=[p.pid])
    up, pid = await p.next()
    assert (up, str(pid)) == ("worker_up", text)
    assert (await attacher.command("info", pid=str(pid)))["label"] == "worker"
    await attacher.command("kill", pid=str(pid))
    assert not site.rt.is_alive(pid)
    with pytest.raises(CommandError) as e:
        await attacher.command("info", pid=str(pid))
    assert e.value.kind == "no_such_process"
    with pytest.raises(CommandError) as e:
        await attacher.command("spawn", factory="nope")
    assert e.value.kind == "unknown_factory"
    with pytest.raises(CommandError) as e:
        await attacher.command("frobnicate")
    assert e.value.kind == "unknown_command"
    await attacher.command("detail", on=False)
    s = await sample_where(attacher, lambda s: not s.detail)
    assert s.rows == ()


async def test_a_hidden_attacher_is_in_no_one_s_node_list_and_gets_no_gossip(site: Site) -> None:
    london = site.node
    tokyo = await site.bind("tokyo")
    await tokyo.connect(london.local_addr())
    attacher = await site.attacher("ops")
    s = await attacher.next_sample()
    assert s.nodes == ("tokyo",)
    assert await attacher.command("nodes") == ["tokyo"]
    assert london.nodes() == ["tokyo"]
    assert tokyo.nodes() == ["london"]

    p = await probe(london.runtime)
    await london.register_global("svc", p.pid)
    await until(lambda: tokyo.whereis_global_pid("svc") == p.pid, "tokyo to learn svc")
    # Control frames are ordered: a gossip frame sent to the attacher would
    # have arrived before this reply.
    assert "svc" in (await attacher.command("names"))["global"]
    hidden_node = attacher._transport.node  # type: ignore[union-attr]
    assert hidden_node is not None
    assert hidden_node.whereis_global("svc") is None
    assert hidden_node.nodes() == ["london"]


async def test_a_quic_sample_too_big_for_one_frame_drops_rows_and_counts_them(
    site: Site,
) -> None:
    for i in range(1200):
        site.rt.spawn(idle, label=f"{i:04d}-" + "x" * 120)
    attacher = await site.attacher(limit=1000)
    s = await attacher.next_sample()
    assert 0 < len(s.rows) < 1000
    assert len(s.rows) + s.omitted == s.matched
    assert s.history is not None  # the first sample after subscribing
    assert set(s.history.rows) <= {r.pid for r in s.rows}, (
        f"history of {len(s.history.rows)} rows for {len(s.rows)} shown"
    )


async def test_a_quic_sample_fits_one_frame_even_with_two_minutes_of_row_history(
    site: Site,
) -> None:
    for _ in range(1000):
        site.rt.spawn(idle)
    watcher = await site.client(limit=1000)  # shows (so tracks) every process
    await sample_where(watcher, lambda s: len(s.rows) == 1000)
    obs = observatory(site.node)
    for _ in range(119):  # what two minutes of ticks leave: 120 points a row
        obs.tick()
    attacher = await site.attacher(limit=1000)
    s = await attacher.next_sample(timeout=EVENT_TIMEOUT)
    assert s.history is not None and 0 < len(s.rows) < 1000
    assert len(s.rows) + s.omitted == s.matched
    assert set(s.history.rows) <= {r.pid for r in s.rows}


async def test_an_attacher_with_a_certificate_from_another_ca_is_refused(site: Site) -> None:
    good = await site.attacher("ops")
    stranger = ClusterCa.generate().issue("ops2")
    with pytest.raises(AttachError):
        await connect(site.quic_target, identity=stranger, reconnect=False)
    assert site.node.nodes() == []
    assert await good.command("nodes") == []


async def test_attaching_to_the_wrong_name_or_without_an_identity_is_refused(
    site: Site,
) -> None:
    port = site.node.local_addr()[1]
    with pytest.raises(AttachError, match="london"):
        await connect(f"paris@127.0.0.1:{port}", identity=site.ca.issue("ops"), reconnect=False)
    with pytest.raises(AttachError, match="identity"):
        await connect(site.quic_target, reconnect=False)


async def test_a_target_is_a_name_or_name_at_host_port() -> None:
    assert parse_target("london") == ("london", None)
    assert parse_target("london@10.0.0.5:4370") == ("london", ("10.0.0.5", 4370))
    assert parse_target("london@[::1]:4370") == ("london", ("::1", 4370))
    for bad in ("london@10.0.0.5", "london@:4370", "london@host:port"):
        with pytest.raises(AttachError):
            parse_target(bad)


async def test_attaching_by_name_to_a_node_that_is_not_running_is_an_attach_error(
    site: Site,
) -> None:
    with pytest.raises(AttachError, match="paris"):
        await connect("paris", home=site.home, reconnect=False)


# -- reconnection and clean-up -------------------------------------------------------


async def test_a_client_reconnects_when_the_observe_channel_comes_back(site: Site) -> None:
    client = await site.client(reconnect=True, sort="pid", limit=1)
    await client.next_sample()
    await site.server.close()
    down = await status_where(client, "disconnected")
    assert "retrying" in down.message
    with pytest.raises(CommandError) as e:
        await client.command("nodes")
    assert e.value.kind == "not_connected"
    site.server = await site.serve()  # the node restarts its channel on a new port
    site.claim(site.server)
    await status_where(client, "connected")
    s = await sample_where(client, lambda s: s.sort == "pid")  # the subscription was re-sent
    assert len(s.rows) == 1
    assert await client.command("nodes") == []


async def test_a_client_keeps_retrying_while_its_node_is_missing_from_the_directory(
    site: Site,
) -> None:
    client = await site.client(reconnect=True)
    await client.next_sample()
    entry = site.directory.lookup("london")
    await site.server.close()
    site.directory.release(entry)  # what a stopping node does
    await status_where(client, "disconnected")
    again = await status_where(client, "disconnected")  # a retry found no node
    assert "london" in again.message
    site.server = await site.serve()
    site.claim(site.server)
    await status_where(client, "connected")
    await client.next_sample()


async def test_a_client_without_reconnect_reports_closed_when_the_node_goes(site: Site) -> None:
    client = await site.client()
    await client.next_sample()
    await site.server.close()
    with pytest.raises(AttachError, match="closed"):
        async with asyncio.timeout(EVENT_TIMEOUT):
            while True:
                await client.next_sample()
    with pytest.raises(CommandError) as e:
        await client.command("nodes")
    assert e.value.kind == "not_connected"


async def test_closing_a_client_leaves_none_of_its_tasks_behind(site: Site) -> None:
    before = asyncio.all_tasks()
    # A leaked task is only found while it exists: keep the collector from
    # destroying it (which would also log "Task was destroyed but it is pending").
    gc.disable()
    try:
        client = await site.client()
        await client.next_sample()
        await client.close()
        await until(lambda: not site.server.observers, "the server to let the client go")

        def new_tasks() -> set[asyncio.Task[Any]]:
            return asyncio.all_tasks() - before - {asyncio.current_task()}  # type: ignore[operator]

        try:
            await poll(lambda: not new_tasks(), "the client's tasks to end", 2.0)
        except AssertionError:
            raise AssertionError(f"a closed client left tasks: {new_tasks()}") from None
    finally:
        gc.enable()


async def test_closing_the_node_ends_its_observers_and_history_task(site: Site) -> None:
    ws_client = await site.client(reconnect=False)
    attacher = await site.attacher()
    await ws_client.next_sample()
    await attacher.next_sample()
    await site.node.close()
    await status_where(ws_client, "closed")
    await status_where(attacher, "closed")
    # The fixture then checks that no task is left.


async def test_info_of_a_gen_server_shows_its_code_and_a_bounded_state(site: Site) -> None:
    from rusm import GenServer

    class Keeper(GenServer):
        def init(self) -> Any:
            state: dict[str, Any] = {"big": "x" * 100_000, "deep": [[[[[[1]]]]]],
                                     "many": list(range(10_000))}
            state["me"] = state  # refers to itself
            return state

    pid = await Keeper.start(site.rt, name="keeper")
    client = await site.client()
    info = await client.command("info", pid=str(pid))
    assert info["code"].endswith("Keeper vsn 1")
    state = info["state"]
    assert len(state) <= 600 and "'big'" in state and "..." in state
    assert info["old_code"] is False
    plain = await client.command("info", pid=str((await probe(site.rt)).pid))
    assert plain["state"] is None and "code" not in plain  # it published no state
