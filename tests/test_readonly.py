"""Read-only access: observer certificates, the node's refusals, ``rusm top --readonly``.

Node london runs in the test's event loop with its WebSocket observe channel
and ``serve_attachers``; attachers are real hidden nodes over QUIC, with
certificates from a real cluster CA. Tests wait on events, never on sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rusm.actors import Down, Runtime
from rusm.cli.top import top_command
from rusm.net import ClusterCa, ClusterNode
from rusm.net.errors import RemoteError
from rusm.net.observe import (
    CommandError,
    ObserveClient,
    Subscription,
    connect,
)
from rusm.net.tls import (
    OBSERVER_URI,
    ROLE_NODE,
    ROLE_OBSERVER,
    Identity,
    PeerRejected,
    role_of,
    verify_peer,
)
from rusm.tui.app import READ_ONLY, TopApp, make_app

from . import test_observe as observe
from .helpers import EVENT_TIMEOUT, idle, probe, until
from .tui_helpers import FakeFeed, drained, london_samples

LOCAL = ("127.0.0.1", 0)


@pytest.fixture(scope="module")
def ca() -> ClusterCa:
    return ClusterCa.generate()


# -- the certificate's mark ----------------------------------------------------


def test_node_certificates_and_shared_identities_have_the_node_role(ca: ClusterCa) -> None:
    node = ca.issue("london")
    assert node.role == ROLE_NODE == role_of(list(node.chain))
    assert Identity.generate().role == ROLE_NODE
    san = node.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == []


def test_an_observer_certificate_is_marked_in_its_signed_san(ca: ClusterCa, tmp_path: Path) -> None:
    ops = ca.issue("ops", role=ROLE_OBSERVER)
    assert ops.role == ROLE_OBSERVER
    san = ops.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [OBSERVER_URI]
    assert san.value.get_values_for_type(x509.DNSName) == ["ops"]
    ops.save(tmp_path)
    loaded = Identity.load(tmp_path)
    assert (loaded.name, loaded.role) == ("ops", ROLE_OBSERVER)


def test_an_unknown_role_cannot_be_issued(ca: ClusterCa) -> None:
    with pytest.raises(ValueError, match="unknown role 'admin'"):
        ca.issue("ops", role="admin")


def test_the_observer_mark_cannot_be_dropped_without_breaking_the_signature(
    ca: ClusterCa,
) -> None:
    london = ca.issue("london")
    ops = ca.issue("ops", role=ROLE_OBSERVER)
    der = ops.certificate.public_bytes(serialization.Encoding.DER)
    # Same length, so the DER stays well formed: only the signature can tell.
    forged = x509.load_der_x509_certificate(der.replace(OBSERVER_URI.encode(), b"x" * 18))
    assert role_of(forged) == ROLE_NODE, "the forgery must claim the node role"
    with pytest.raises(PeerRejected, match="not signed by this cluster's trust anchor"):
        verify_peer(london, [forged], "ops", hidden=False)


def test_an_unknown_role_mark_is_read_only(ca: ClusterCa) -> None:
    der = ca.issue("ops", role=ROLE_OBSERVER).certificate.public_bytes(
        serialization.Encoding.DER
    )
    future = x509.load_der_x509_certificate(der.replace(b"role=observer", b"role=operator"))
    assert role_of(future) == ROLE_OBSERVER
    assert role_of([]) == ROLE_OBSERVER


def test_an_observer_certificate_may_attach_hidden_but_not_join_as_a_node(ca: ClusterCa) -> None:
    london = ca.issue("london")
    ops = ca.issue("ops", role=ROLE_OBSERVER)
    assert verify_peer(london, list(ops.chain), "ops", hidden=True) == ROLE_OBSERVER
    with pytest.raises(PeerRejected) as e:
        verify_peer(london, list(ops.chain), "ops", hidden=False)
    assert "observer's (read-only)" in e.value.reason
    assert "not join the cluster" in e.value.reason
    tokyo = ca.issue("tokyo")
    assert verify_peer(london, list(tokyo.chain), "tokyo", hidden=False) == ROLE_NODE


# -- the node enforces it ------------------------------------------------------


class Site(observe.Site):
    """test_observe's site (london, its WebSocket channel, its directory entry),
    whose certificates may carry a role, with QUIC and local attachers."""

    async def bind(self, name: str, role: str = ROLE_NODE, hidden: bool = False) -> ClusterNode:
        node = await ClusterNode.bind(
            name, Runtime(), LOCAL, self.ca.issue(name, role=role), hidden=hidden
        )
        self.nodes.append(node)
        return node

    async def attacher(self, name: str, role: str) -> ObserveClient:
        target = f"london@127.0.0.1:{self.node.local_addr()[1]}"
        c = await connect(target, identity=self.ca.issue(name, role=role),
                          subscription=Subscription(interval=0.1), reconnect=False)
        self.clients.append(c)
        return c

    async def local(self) -> ObserveClient:
        c = await connect("london", home=self.home, subscription=Subscription(interval=0.1),
                          reconnect=False)
        self.clients.append(c)
        return c


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


async def read_only_refusal(client: ObserveClient, cmd: str, **args: Any) -> str:
    with pytest.raises(CommandError) as e:
        await client.command(cmd, **args)
    assert e.value.kind == "read_only", e.value.message
    return e.value.message


async def test_an_observer_attacher_watches_but_every_mutating_command_is_refused(
    site: Site,
) -> None:
    async def worker(proc: Any) -> None:
        await proc.receive()

    site.node.register_spawnable("worker", worker)
    p = await probe(site.rt)
    site.rt.register("inbox", p.pid)
    victim = site.rt.spawn(idle, label="victim")
    ref = p.proc.monitor(victim)
    before = site.rt.stats()
    ops = await site.attacher("ops", ROLE_OBSERVER)

    sample = await asyncio.wait_for(ops.next_sample(), EVENT_TIMEOUT)
    assert sample.node == "london" and str(victim) in [r.pid for r in sample.rows]
    await ops.subscribe(sort="pid")
    assert (await ops.command("info", pid=str(victim)))["label"] == "victim"
    assert await ops.command("nodes") == []
    assert "inbox" in (await ops.command("names"))["local"]

    message = await read_only_refusal(ops, "send", dest="inbox", msg="hello")
    assert "observer certificate" in message and "ops" in message
    await read_only_refusal(ops, "spawn", factory="worker")
    await read_only_refusal(ops, "kill", pid=str(victim))
    await read_only_refusal(ops, "exit", pid=str(victim), reason="shutdown")
    await read_only_refusal(ops, "connect", addr="127.0.0.1:4370")

    assert site.rt.is_alive(victim)
    assert site.rt.stats().spawned == before.spawned, "nothing was spawned"
    await p.nothing_more()  # no message reached inbox, no Down for the victim
    site.rt.kill(victim)
    assert await p.next() == Down(ref, victim, "killed")


async def test_a_node_certificate_attacher_and_the_local_token_keep_full_access(
    site: Site,
) -> None:
    first, second = site.rt.spawn(idle), site.rt.spawn(idle)
    ops = await site.attacher("ops", ROLE_OBSERVER)
    await read_only_refusal(ops, "kill", pid=str(first))
    admin = await site.attacher("admin", ROLE_NODE)
    assert await admin.command("kill", pid=str(first)) == str(first)
    local = await site.local()
    assert await local.command("kill", pid=str(second)) == str(second)
    assert not site.rt.is_alive(first) and not site.rt.is_alive(second)




async def test_a_node_with_an_observer_certificate_cannot_join_the_cluster(site: Site) -> None:
    spy = await site.bind("spy", role=ROLE_OBSERVER)
    with pytest.raises(Exception, match="observer"):
        await spy.connect(site.node.local_addr())
    assert site.node.nodes() == []




async def test_an_observer_attacher_cannot_send_messages_past_the_observe_channel(
    site: Site,
) -> None:
    p = await probe(site.rt)
    site.rt.register("inbox", p.pid)
    spy = await site.bind("spy", role=ROLE_OBSERVER, hidden=True)
    remote = await spy.connect(site.node.local_addr())
    remote.send("inbox", "sneaked in")
    # Either the message arrives or london drops the link: wait for the first.
    await until(lambda: not p.inbox.empty() or not site.node.is_connected("spy"))
    assert p.inbox.empty(), "an observer's message was delivered"


async def test_an_observer_attacher_cannot_spawn_over_the_control_rpc(site: Site) -> None:
    site.node.register_spawnable("worker", idle)
    spawned = site.rt.stats().spawned
    spy = await site.bind("spy", role=ROLE_OBSERVER, hidden=True)
    remote = await spy.connect(site.node.local_addr())
    with pytest.raises(RemoteError) as e:
        await remote.spawn("worker")
    assert e.value.kind == "read_only"
    assert site.rt.stats().spawned == spawned


# -- rusm top --readonly -------------------------------------------------------


async def test_a_readonly_app_refuses_send_spawn_and_kill_and_sends_nothing(
    tmp_path: Path,
) -> None:
    from .test_tui_app import message, run_line

    feed = FakeFeed(london_samples())
    audit = tmp_path / "audit.log"
    app = make_app(feed, audit_path=audit, clock=lambda: 0.0, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await drained(pilot, feed)
        assert isinstance(pilot.app, TopApp) and pilot.app.readonly
        assert READ_ONLY in message(app)
        assert app.sub_title == READ_ONLY
        for line in ("send inbox 'hello'", "spawn worker", "kill <london.12>"):
            await run_line(pilot, line)
            verb = line.split()[0]
            assert message(app).startswith(f"read-only: {verb} is disabled"), message(app)
        await pilot.press("escape")
        await pilot.press("k")
        await pilot.pause()
        assert message(app).startswith("read-only: kill is disabled")
        assert [c for c in feed.commands if c[0] in ("send", "spawn", "kill", "exit")] == []
        assert not audit.exists()


def test_rusm_top_has_a_readonly_flag() -> None:
    assert any(p.name == "readonly" for p in top_command.params)
