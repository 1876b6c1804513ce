"""Bad input on a real link: the link closes with a protocol code and one log line;
the node and its other links stay up."""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import AsyncIterator
from typing import Any

import ormsgpack
import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from rusm.actors import Call, Pid, Process, Runtime
from rusm.net import ClusterCa, ClusterConfig, ClusterNode
from rusm.net.wire import PROTOCOL_VERSION, ErrorCode, Hello, Msg, encode_frame

LOCAL = ("127.0.0.1", 0)


class RawPeer(QuicConnectionProtocol):
    """A hand-driven QUIC client: writes whatever bytes a test wants."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.terminated: asyncio.Future[tuple[int, str]] = self._loop.create_future()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated) and not self.terminated.done():
            self.terminated.set_result((event.error_code, event.reason_phrase))

    def write(self, data: bytes, *, uni: bool = False, end: bool = False) -> None:
        # stream 0 is the control stream: the client's first bidirectional stream
        sid = self._quic.get_next_available_stream_id(is_unidirectional=True) if uni else 0
        self._quic.send_stream_data(sid, data, end_stream=end)
        self.transmit()


async def raw_peer(ca: ClusterCa, name: str, addr: tuple[str, int]) -> tuple[RawPeer, Any]:
    identity = ca.issue(name)
    config = QuicConfiguration(
        is_client=True, alpn_protocols=["rusm/1"], verify_mode=ssl.CERT_REQUIRED,
        cadata=identity.cadata,
    )
    config.certificate = identity.certificate
    config.private_key = identity.key
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        lambda: RawPeer(QuicConnection(configuration=config)), local_addr=LOCAL
    )
    peer.connect(addr)
    await asyncio.wait_for(peer.wait_connected(), 5)
    return peer, transport


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


HELLO = encode_frame(Hello(PROTOCOL_VERSION, "evil", False, 0))

CASES = {
    "malformed msgpack before the hello": ([frame(b"\xc1\xc1\xc1")], ErrorCode.MALFORMED_FRAME),
    "a frame over the size limit": ([struct.pack(">I", 2**31)], ErrorCode.FRAME_TOO_LARGE),
    "trailing bytes after a frame's object": (
        [frame(ormsgpack.packb([1, PROTOCOL_VERSION, "evil", False]) + b"\x00")],
        ErrorCode.TRAILING_BYTES,
    ),
    "an unknown frame type": ([HELLO, frame(ormsgpack.packb([99, 1]))], ErrorCode.UNKNOWN_FRAME),
    "a control frame before the hello": (
        [frame(ormsgpack.packb([3, 1, "pids", []]))], ErrorCode.HELLO_EXPECTED),
    "nesting deeper than the limit": (
        [HELLO, frame(ormsgpack.packb([3, 1, "pids", nested(40)]))],
        ErrorCode.TOO_DEEP),
}


@pytest.fixture
async def london_and_tokyo() -> AsyncIterator[tuple[ClusterCa, ClusterNode, ClusterNode]]:
    ca = ClusterCa.generate()
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"))
    tokyo = await ClusterNode.bind("tokyo", Runtime(), LOCAL, ca.issue("tokyo"))

    async def echo(proc: Process) -> None:
        while True:
            msg = await proc.receive()
            if isinstance(msg, Call):
                msg.reply(msg.request)

    london.runtime.register("echo", london.runtime.spawn(echo))
    await tokyo.connect(london.local_addr())
    try:
        yield ca, london, tokyo
    finally:
        await tokyo.close()
        await london.close()


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_bytes_close_that_link_only_with_a_code_and_one_log_line(
    london_and_tokyo: tuple[ClusterCa, ClusterNode, ClusterNode],
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    ca, london, tokyo = london_and_tokyo
    chunks, code = CASES[case]
    messages_before = london.runtime.stats().messages
    peer, transport = await raw_peer(ca, "evil", london.local_addr())
    try:
        with caplog.at_level(logging.WARNING, logger="rusm.net"):
            for chunk in chunks:
                peer.write(chunk)
            got_code, reason = await asyncio.wait_for(peer.terminated, 5)
        assert got_code == code, reason
        assert reason  # says why
        closing = [r for r in caplog.records if r.name.startswith("rusm.net")]
        assert len(closing) == 1, [r.getMessage() for r in closing]
    finally:
        transport.close()
    assert london.nodes() == ["tokyo"]
    assert london.runtime.stats().messages == messages_before
    assert await tokyo.call("london", "echo", "still here") == "still here"


async def test_a_message_frame_before_the_hello_closes_the_link(
    london_and_tokyo: tuple[ClusterCa, ClusterNode, ClusterNode],
) -> None:
    ca, london, tokyo = london_and_tokyo
    messages_before = london.runtime.stats().messages
    peer, transport = await raw_peer(ca, "evil", london.local_addr())
    try:
        msg = encode_frame(Msg(Pid("evil", 1), "echo", "sneaky"))
        peer.write(msg, uni=True, end=True)
        got_code, _ = await asyncio.wait_for(peer.terminated, 5)
    finally:
        transport.close()
    assert got_code == ErrorCode.HELLO_EXPECTED
    assert london.runtime.stats().messages == messages_before
    assert london.nodes() == ["tokyo"]
    assert await tokyo.call("london", "echo", 1) == 1


async def test_a_peer_cannot_send_as_another_nodes_process(
    london_and_tokyo: tuple[ClusterCa, ClusterNode, ClusterNode],
) -> None:
    ca, london, _ = london_and_tokyo
    peer, transport = await raw_peer(ca, "evil", london.local_addr())
    try:
        peer.write(HELLO)
        peer.write(encode_frame(Msg(Pid("tokyo", 1), "echo", "forged")), uni=True, end=True)
        got_code, reason = await asyncio.wait_for(peer.terminated, 5)
    finally:
        transport.close()
    assert got_code == ErrorCode.PROTOCOL_VIOLATION and "<tokyo.1>" in reason
    assert london.nodes() == ["tokyo"]


async def test_partial_frames_beyond_the_inbound_byte_limit_close_the_link() -> None:
    ca = ClusterCa.generate()
    config = ClusterConfig(max_inbound_bytes=100_000)
    london = await ClusterNode.bind("london", Runtime(), LOCAL, ca.issue("london"), config)
    try:
        peer, transport = await raw_peer(ca, "evil", london.local_addr())
        try:
            peer.write(HELLO)
            for _ in range(4):  # four streams, each holding 60 kB of an unfinished frame
                peer.write(struct.pack(">I", 1_000_000) + b"x" * 60_000, uni=True)
            got_code, reason = await asyncio.wait_for(peer.terminated, 5)
        finally:
            transport.close()
        assert got_code == ErrorCode.LIMIT_EXCEEDED and "inbound bytes" in reason
    finally:
        await london.close()
