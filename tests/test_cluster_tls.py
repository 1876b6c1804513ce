"""Mutual TLS on cluster links: real QUIC on loopback, real certificates, no mocks.

aioquic does not authenticate QUIC clients by itself (HARDENING.md), so rusm
makes the listener demand and check the client's certificate, and both sides
check at hello that the certificate names the node the peer claims to be.
Each rejection path is exercised from both ends of a link: an impostor
connecting to a good listener, and a good node connecting to an impostor
listening. Impostors trust this cluster's anchor, so the only thing that can
stop them is the check on the far side.

Every rejection must give the connecting side a typed ``LinkRejected`` that
says why, and leave the rejecting side as it was: same peers, no message
delivered to any of its processes, still accepting good nodes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode
from aioquic.tls import AlertDescription

from rusm import Call, Pid, Process, Runtime
from rusm.net import ClusterCa, ClusterConfig, ClusterNode, Identity, LinkRejected
from rusm.net.wire import ALPN, PROTOCOL_VERSION, ErrorCode, Hello, Msg, encode_frame

LOOPBACK = ("127.0.0.1", 0)
TIMEOUT = 5.0
"""How long a test waits for an event it expects."""
CONFIG = ClusterConfig(idle_timeout=5.0, connect_timeout=TIMEOUT)
REFUSED_IN_HANDSHAKE = QuicErrorCode.CRYPTO_ERROR + AlertDescription.bad_certificate
"""The close code of a link the listener refused in the TLS handshake (a TLS alert)."""


# -- fixtures and helpers --------------------------------------------------------


def _other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[arg-type]


class Nodes:
    """Binds nodes for a test and closes every one of them afterwards."""

    def __init__(self) -> None:
        self.bound: list[ClusterNode] = []

    async def bind(self, name: str, identity: Identity) -> ClusterNode:
        node = await ClusterNode.bind(name, Runtime(), LOOPBACK, identity, CONFIG)
        self.bound.append(node)
        node.runtime.register("greeter", node.runtime.spawn(_greeter, label="greeter"))
        return node

    async def close(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            for node in reversed(self.bound):
                await node.close()


@pytest.fixture
async def nodes() -> AsyncIterator[Nodes]:
    before = _other_tasks()
    bound = Nodes()
    try:
        yield bound
    finally:
        await bound.close()
    left = _other_tasks() - before
    assert not left, f"tasks left after closing every node: {left}"


@pytest.fixture(scope="module")
def ca() -> ClusterCa:
    return ClusterCa.generate()


@pytest.fixture(scope="module")
def other_ca() -> ClusterCa:
    return ClusterCa.generate()


async def _greeter(proc: Process) -> None:
    while True:
        msg = await proc.receive()
        if isinstance(msg, Call):
            msg.reply(("hello", msg.request))


def impostor(presented: Identity, trusting: Identity, name: str | None) -> Identity:
    """``presented``'s certificate and key, trusting ``trusting``'s anchors.

    The impostor accepts this cluster's nodes, so only their check of its
    certificate can keep it out."""
    return Identity(chain=presented.chain, key=presented.key, trust=trusting.trust, name=name)


def expired(ca: ClusterCa, name: str) -> Identity:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    return ca.issue(name, not_before=start, not_after=start + dt.timedelta(days=1))


def not_yet_valid(ca: ClusterCa, name: str) -> Identity:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    return ca.issue(name, not_before=start, not_after=start + dt.timedelta(days=1))


@dataclass(frozen=True)
class Seen:
    """What a node has observed: its peers and the messages its processes got."""

    nodes: list[str]
    messages: int


def seen(node: ClusterNode) -> Seen:
    return Seen(node.nodes(), node.runtime.stats().messages)


async def refused(connector: ClusterNode, target: ClusterNode) -> LinkRejected:
    """Connect ``connector`` to ``target``, expecting a refusal; return it."""
    with pytest.raises(LinkRejected) as info:
        async with asyncio.timeout(TIMEOUT):
            await connector.connect(target.local_addr())
    return info.value


async def assert_links(a: ClusterNode, b: ClusterNode) -> None:
    """``a`` links to ``b``; both list the other and a call goes through."""
    async with asyncio.timeout(TIMEOUT):
        remote = await a.connect(b.local_addr())
        assert remote.name == b.name
        assert b.name in a.nodes()
        assert a.name in b.nodes()
        assert await remote.call("greeter", "ping") == ("hello", "ping")


async def assert_listener_refuses(
    nodes: Nodes, listener: ClusterNode, connector: ClusterNode, good: Identity, why: str
) -> LinkRejected:
    """``listener`` refuses ``connector``, saying ``why``, and is unchanged and still up."""
    before = seen(listener)
    err = await refused(connector, listener)
    assert "certificate" in str(err).lower(), str(err)
    assert why in str(err), str(err)
    assert seen(listener) == before
    assert connector.nodes() == []
    newcomer = await nodes.bind(good.name or "newcomer", good)
    await assert_links(newcomer, listener)
    return err


def assert_refused_in_handshake(err: LinkRejected) -> None:
    """The listener's own TLS check refused the link, before any stream: not hello."""
    assert err.code == REFUSED_IN_HANDSHAKE, str(err)
    assert "certificate rejected" in str(err), str(err)


async def assert_connector_refuses(
    connector: ClusterNode, listener: ClusterNode, *, in_handshake: bool = True
) -> LinkRejected:
    """``connector`` refuses ``listener``'s certificate and is unchanged.

    ``in_handshake``: refused by the connector's TLS check (a TLS alert), so it
    never sent its hello to the impostor."""
    before = seen(connector)
    err = await refused(connector, listener)
    assert "certificate" in str(err).lower(), str(err)
    assert seen(connector) == before
    if in_handshake:
        alerts = range(QuicErrorCode.CRYPTO_ERROR, QuicErrorCode.CRYPTO_ERROR + 256)
        assert err.code in alerts, str(err)
    return err


# -- links that must be made --------------------------------------------------------


async def test_two_ca_issued_nodes_connect_and_list_each_other(nodes: Nodes, ca: ClusterCa) -> None:
    london = await nodes.bind("london", ca.issue("london"))
    tokyo = await nodes.bind("tokyo", ca.issue("tokyo"))
    await assert_links(tokyo, london)
    assert london.nodes() == ["tokyo"]
    assert tokyo.nodes() == ["london"]


async def test_two_nodes_sharing_one_identity_connect(nodes: Nodes) -> None:
    shared = Identity.generate()
    london = await nodes.bind("london", shared)
    tokyo = await nodes.bind("tokyo", shared)
    await assert_links(tokyo, london)
    assert london.nodes() == ["tokyo"]
    assert tokyo.nodes() == ["london"]


# -- a bad connector, a good listener: the listener refuses --------------------------


async def test_a_connector_presenting_a_certificate_from_another_ca_is_refused_by_the_listener(
    nodes: Nodes, ca: ClusterCa, other_ca: ClusterCa
) -> None:
    good = ca.issue("london")
    listener = await nodes.bind("london", good)
    connector = await nodes.bind("tokyo", impostor(other_ca.issue("tokyo"), good, "tokyo"))
    err = await assert_listener_refuses(
        nodes, listener, connector, ca.issue("paris"), "not signed by this cluster's trust anchor"
    )
    assert_refused_in_handshake(err)


async def test_a_connector_presenting_a_self_signed_rogue_certificate_is_refused_by_a_ca_cluster(
    nodes: Nodes, ca: ClusterCa
) -> None:
    good = ca.issue("london")
    listener = await nodes.bind("london", good)
    connector = await nodes.bind("tokyo", impostor(Identity.generate(), good, None))
    err = await assert_listener_refuses(
        nodes, listener, connector, ca.issue("paris"), "not signed by this cluster's trust anchor"
    )
    assert_refused_in_handshake(err)


async def test_a_connector_presenting_another_shared_identity_is_refused_by_the_listener(
    nodes: Nodes,
) -> None:
    shared = Identity.generate()
    listener = await nodes.bind("london", shared)
    connector = await nodes.bind("tokyo", impostor(Identity.generate(), shared, None))
    err = await assert_listener_refuses(
        nodes, listener, connector, shared, "not signed by this cluster's trust anchor"
    )
    assert_refused_in_handshake(err)


async def test_a_connector_presenting_an_expired_certificate_is_refused_by_the_listener(
    nodes: Nodes, ca: ClusterCa
) -> None:
    listener = await nodes.bind("london", ca.issue("london"))
    connector = await nodes.bind("tokyo", expired(ca, "tokyo"))
    err = await assert_listener_refuses(nodes, listener, connector, ca.issue("paris"), "expired on")
    assert_refused_in_handshake(err)


async def test_a_connector_presenting_a_not_yet_valid_certificate_is_refused_by_the_listener(
    nodes: Nodes, ca: ClusterCa
) -> None:
    listener = await nodes.bind("london", ca.issue("london"))
    connector = await nodes.bind("tokyo", not_yet_valid(ca, "tokyo"))
    err = await assert_listener_refuses(
        nodes, listener, connector, ca.issue("paris"), "not valid until"
    )
    assert_refused_in_handshake(err)


@pytest.mark.parametrize("scheme", ["cluster CA", "shared identity"])
async def test_a_node_of_another_cluster_cannot_link_to_this_one(nodes: Nodes, scheme: str) -> None:
    if scheme == "cluster CA":
        ours, theirs = ClusterCa.generate().issue("london"), ClusterCa.generate().issue("tokyo")
    else:
        ours, theirs = Identity.generate(), Identity.generate()
    listener = await nodes.bind("london", ours)
    stranger = await nodes.bind("tokyo", theirs)
    before = seen(listener)
    err = await refused(stranger, listener)
    assert "certificate" in str(err).lower(), str(err)
    assert seen(listener) == before
    assert stranger.nodes() == []


class _RawClient(QuicConnectionProtocol):
    """A bare aioquic client that records how its connection ended."""

    def __init__(self, quic: QuicConnection) -> None:
        super().__init__(quic)
        self.terminated: events.ConnectionTerminated | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.terminated = event
        super().quic_event_received(event)


async def test_a_client_presenting_no_certificate_is_refused_by_the_listener(
    nodes: Nodes, ca: ClusterCa
) -> None:
    good = ca.issue("london")
    listener = await nodes.bind("london", good)
    before = seen(listener)
    config = QuicConfiguration(
        is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_REQUIRED, cadata=good.cadata
    )
    assert config.certificate is None and config.private_key is None
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        lambda: _RawClient(QuicConnection(configuration=config)), local_addr=LOOPBACK
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            client.connect(listener.local_addr())
            try:
                await client.wait_connected()  # TLS 1.3: the client finishes first
            except ConnectionError:
                pass
            else:
                # Push a hello and a message anyway: neither may reach the node.
                _, control = await client.create_stream()
                control.write(encode_frame(Hello(PROTOCOL_VERSION, "tokyo", False, 0)))
                _, pair = await client.create_stream(is_unidirectional=True)
                pair.write(encode_frame(Msg(Pid("tokyo", 1), "greeter", "let me in")))
            await client.wait_closed()
    finally:
        client.close()
        transport.close()
    assert client.terminated is not None
    assert client.terminated.error_code == (
        QuicErrorCode.CRYPTO_ERROR + AlertDescription.certificate_required
    ), client.terminated
    assert "certificate" in client.terminated.reason_phrase
    assert seen(listener) == before
    assert listener.nodes() == []
    newcomer = await nodes.bind("tokyo", ca.issue("tokyo"))
    await assert_links(newcomer, listener)


# -- a good connector, a bad listener: the connector refuses -------------------------


async def test_a_listener_presenting_a_certificate_from_another_ca_is_refused_by_the_connector(
    nodes: Nodes, ca: ClusterCa, other_ca: ClusterCa
) -> None:
    good = ca.issue("tokyo")
    listener = await nodes.bind("london", impostor(other_ca.issue("london"), good, "london"))
    connector = await nodes.bind("tokyo", good)
    await assert_connector_refuses(connector, listener)
    assert connector.nodes() == []


async def test_a_listener_presenting_a_self_signed_rogue_certificate_is_refused_by_a_ca_node(
    nodes: Nodes, ca: ClusterCa
) -> None:
    good = ca.issue("tokyo")
    listener = await nodes.bind("london", impostor(Identity.generate(), good, None))
    connector = await nodes.bind("tokyo", good)
    await assert_connector_refuses(connector, listener)


async def test_a_listener_presenting_another_shared_identity_is_refused_by_the_connector(
    nodes: Nodes,
) -> None:
    shared = Identity.generate()
    listener = await nodes.bind("london", impostor(Identity.generate(), shared, None))
    connector = await nodes.bind("tokyo", shared)
    await assert_connector_refuses(connector, listener)


async def test_a_listener_presenting_an_expired_certificate_is_refused_by_the_connector(
    nodes: Nodes, ca: ClusterCa
) -> None:
    listener = await nodes.bind("london", expired(ca, "london"))
    connector = await nodes.bind("tokyo", ca.issue("tokyo"))
    await assert_connector_refuses(connector, listener)


async def test_a_listener_presenting_a_not_yet_valid_certificate_is_refused_by_the_connector(
    nodes: Nodes, ca: ClusterCa
) -> None:
    listener = await nodes.bind("london", not_yet_valid(ca, "london"))
    connector = await nodes.bind("tokyo", ca.issue("tokyo"))
    await assert_connector_refuses(connector, listener)


async def test_a_connector_that_refused_a_bad_listener_still_links_to_a_good_one(
    nodes: Nodes, ca: ClusterCa, other_ca: ClusterCa
) -> None:
    good = ca.issue("tokyo")
    rogue = await nodes.bind("london", impostor(other_ca.issue("london"), good, "london"))
    connector = await nodes.bind("tokyo", good)
    await assert_connector_refuses(connector, rogue)
    await assert_links(connector, await nodes.bind("paris", ca.issue("paris")))
    assert connector.nodes() == ["paris"]


# -- names: the certificate must name the node the peer says it is -------------------


async def test_binding_a_node_under_a_name_its_certificate_does_not_carry_raises_value_error(
    ca: ClusterCa,
) -> None:
    with pytest.raises(ValueError, match="paris"):
        await ClusterNode.bind("tokyo", Runtime(), LOOPBACK, ca.issue("paris"), CONFIG)


def paris_cert_claiming(ca: ClusterCa, name: str) -> Identity:
    """The certificate issued for paris, in an identity that says it is ``name``.

    ``bind`` refuses ``ca.issue("paris")`` under another name; this is what
    a node whose operator got past that would present."""
    paris = ca.issue("paris")
    return Identity(chain=paris.chain, key=paris.key, trust=paris.trust, name=name)


async def test_a_connector_claiming_a_name_its_certificate_does_not_carry_is_refused_at_hello(
    nodes: Nodes, ca: ClusterCa
) -> None:
    listener = await nodes.bind("london", ca.issue("london"))
    liar = await nodes.bind("tokyo", paris_cert_claiming(ca, "tokyo"))
    err = await assert_listener_refuses(
        nodes, listener, liar, ca.issue("tokyo"), "certificate is for 'paris'"
    )
    assert "claims to be node 'tokyo'" in str(err)


async def test_a_listener_claiming_a_name_its_certificate_does_not_carry_is_refused_at_hello(
    nodes: Nodes, ca: ClusterCa, caplog: pytest.LogCaptureFixture
) -> None:
    liar = await nodes.bind("london", paris_cert_claiming(ca, "london"))
    connector = await nodes.bind("tokyo", ca.issue("tokyo"))
    with caplog.at_level(logging.INFO, logger="rusm.net.node"):
        err = await assert_connector_refuses(connector, liar, in_handshake=False)
    assert "claims to be node 'london'" in str(err)
    assert "certificate is for 'paris'" in str(err)
    # The liar sent its hello but never got the connector's HelloAck: the link
    # was never up on its side either (no node table change, no registry sync).
    assert not [r for r in caplog.records if "link to tokyo up" in r.getMessage()]
    assert liar.nodes() == []


async def test_a_hello_name_mismatch_closes_the_link_with_certificate_rejected(
    nodes: Nodes, ca: ClusterCa
) -> None:
    listener = await nodes.bind("london", ca.issue("london"))
    liar = await nodes.bind("tokyo", paris_cert_claiming(ca, "tokyo"))
    err = await refused(liar, listener)
    assert err.code == ErrorCode.CERTIFICATE_REJECTED, str(err)
    assert not str(err).startswith("link refused: (<ErrorCode"), str(err)


# -- duplicate names ---------------------------------------------------------------


async def test_a_second_node_named_like_a_connected_one_is_refused_and_the_first_link_stays_up(
    nodes: Nodes, ca: ClusterCa
) -> None:
    listener = await nodes.bind("london", ca.issue("london"))
    first = await nodes.bind("tokyo", ca.issue("tokyo"))
    await assert_links(first, listener)
    second = await nodes.bind("tokyo", ca.issue("tokyo"))  # a valid certificate for tokyo
    before = seen(listener)
    err = await refused(second, listener)
    assert "'tokyo' is already connected" in str(err)
    assert seen(listener) == before
    assert second.nodes() == []
    async with asyncio.timeout(TIMEOUT):
        assert await first.call("london", "greeter", "still there") == ("hello", "still there")
    assert listener.nodes() == ["tokyo"]
    assert first.nodes() == ["london"]


async def test_a_node_named_like_the_listener_itself_is_refused(
    nodes: Nodes, ca: ClusterCa
) -> None:
    listener = await nodes.bind("london", ca.issue("london"))
    twin = await nodes.bind("london", ca.issue("london"))
    before = seen(listener)
    err = await refused(twin, listener)
    assert "'london' is already connected" in str(err)
    assert seen(listener) == before
    assert twin.nodes() == []
    await assert_links(await nodes.bind("tokyo", ca.issue("tokyo")), listener)


async def test_a_connector_refuses_a_second_listener_named_like_a_node_it_is_linked_to(
    nodes: Nodes, ca: ClusterCa
) -> None:
    london = await nodes.bind("london", ca.issue("london"))
    tokyo = await nodes.bind("tokyo", ca.issue("tokyo"))
    await assert_links(tokyo, london)
    other_london = await nodes.bind("london", ca.issue("london"))
    before = seen(tokyo)
    err = await refused(tokyo, other_london)
    assert "'london' is already connected" in str(err)
    assert seen(tokyo) == before
    async with asyncio.timeout(TIMEOUT):
        assert await tokyo.call("london", "greeter", "still there") == ("hello", "still there")
    assert tokyo.nodes() == ["london"]
    assert london.nodes() == ["tokyo"]


async def test_a_duplicate_name_closes_the_link_with_duplicate_node(
    nodes: Nodes, ca: ClusterCa
) -> None:
    listener = await nodes.bind("london", ca.issue("london"))
    twin = await nodes.bind("london", ca.issue("london"))
    err = await refused(twin, listener)
    assert err.code == ErrorCode.DUPLICATE_NODE, str(err)
    assert not str(err).startswith("link refused: (<ErrorCode"), str(err)


# -- no task left --------------------------------------------------------------------


async def test_closing_nodes_after_refused_and_accepted_links_leaves_no_task(
    ca: ClusterCa, other_ca: ClusterCa
) -> None:
    before = asyncio.all_tasks()
    bound = Nodes()
    try:
        listener = await bound.bind("london", ca.issue("london"))
        good = await bound.bind("tokyo", ca.issue("tokyo"))
        await assert_links(good, listener)
        rogue = await bound.bind("paris", impostor(other_ca.issue("paris"), good.identity, "paris"))
        await refused(rogue, listener)
        await refused(good, await bound.bind("rome", expired(ca, "rome")))
        await refused(await bound.bind("london", ca.issue("london")), listener)
    finally:
        await bound.close()
    assert asyncio.all_tasks() == before
