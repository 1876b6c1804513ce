"""The protocol of one link, sans-I/O: stream bytes in, dispatch and frames out.

A :class:`LinkProtocol` is the far end of one link as this node sees it. It
knows nothing of QUIC: its adapter (:mod:`rusm.net.quic`) feeds it the
control stream's bytes (:meth:`LinkProtocol.receive_control`) and each
lane's (:meth:`LinkProtocol.receive_lane`), and takes what it wrote with
:meth:`LinkProtocol.data_to_send`: the control stream's bytes and each
lane's. One explicit state (:class:`LinkState`)::

    HELLO --(hellos exchanged)--> UP --(abort / lost)--> CLOSED
      \\------------------(abort / lost / hello timeout)--/

In HELLO it checks the peer's hello (version, the name its certificate
names, duplicates); in UP it dispatches every pair frame straight into the
runtime, from the protocol callback (no Task, Future or Queue per message),
and matches control RPC responses to requests.

Lanes: all frames of one (sender, receiver) pair ride one lane, chosen by a
hash of the pair, so the lane's stream order is the pair's FIFO, as the
BEAM promises; a lost packet stalls only the pairs of its lane.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from zlib import crc32

from rusm.actors.pid import Pid, Ref

from .errors import (
    CertificateRejected,
    DuplicateNode,
    HelloTimeout,
    LimitExceeded,
    LinkRejected,
    NodeNotConnected,
    RemoteError,
    describe_close,
)
from .terms import TermTooLarge, UnsendableTerm
from .tls import ROLE_OBSERVER, PeerRejected, is_read_only, verify_peer
from .wire import (
    PROTOCOL_VERSION,
    CallReply,
    CallRequest,
    Demonitor,
    DownSignal,
    ExitSignal,
    Frame,
    FrameDecoder,
    Gossip,
    Hello,
    HelloAck,
    HelloExpected,
    Link,
    Monitor,
    Msg,
    PairFrame,
    Request,
    Response,
    UnexpectedFrame,
    Unlink,
    VersionMismatch,
    WireLimits,
    encode_call,
    encode_frame,
    encode_msg,
)

if TYPE_CHECKING:
    from cryptography import x509

    from .node import ClusterNode

__all__ = ["LinkProtocol", "LinkState", "lane_of"]

log = logging.getLogger("rusm.net.link")

MAX_ERROR_MESSAGE = 2000
"""Characters of an error message an RPC response carries at most."""

FLUSH_FIRST = 1536
FLUSH_BYTES = 12 * 1024
"""Lane bytes that, once queued, are handed to the adapter at once rather
than at the end of the loop turn: :data:`FLUSH_FIRST` in a turn, then twice
as many each time, up to this. A process that answers a thousand messages
in one step would otherwise send them as one lump at its end while the peer
waits, and two nodes would take turns; this way the peer starts on the
first of them meanwhile. A flush has a fixed cost, hence the doubling: a
small lump is split once or twice, a large one mostly in big pieces."""


class LinkState(enum.Enum):
    HELLO = "hello"
    """Handshake done (or under way), hellos not yet exchanged."""
    UP = "up"
    """Both hellos accepted: frames flow."""
    CLOSED = "closed"
    """Aborted by this node or lost; nothing flows any more."""


_name_crc: dict[str, int] = {}  # crc32 of the names sent to lately
_NAMES_KEPT = 4096


def lane_of(src: Pid, dst: Pid | str, lanes: int) -> int:
    """The lane of the pair (src, dst): the same pair, the same lane, always
    and in every run (a name's hash is crc32, not Python's salted ``hash``)."""
    if isinstance(dst, str):
        d = _name_crc.get(dst)
        if d is None:
            if len(_name_crc) >= _NAMES_KEPT:
                _name_crc.clear()
            d = _name_crc[dst] = crc32(dst.encode())
    else:
        d = dst.serial
    return (src.serial * 0x9E3779B1 + d) % lanes


def _dispatch_table(node: ClusterNode) -> dict[type[Frame], Callable[[Any], None]]:
    rt = node.runtime
    return {
        Msg: lambda f: rt.remote_send(f.src, f.dst, f.term),
        CallRequest: lambda f: rt.remote_call(f.src, f.dst, f.ref, f.request),
        CallReply: lambda f: rt.remote_reply(f.src, f.dst, f.ref, f.value),
        Link: lambda f: rt.remote_link(f.src, f.dst),
        Unlink: lambda f: rt.remote_unlink(f.src, f.dst),
        ExitSignal: lambda f: rt.remote_exit(f.src, f.dst, f.reason),
        Monitor: lambda f: rt.remote_monitor(f.src, f.dst, f.ref),
        Demonitor: lambda f: rt.remote_demonitor(f.src, f.dst, f.ref),
        DownSignal: lambda f: rt.remote_down(f.src, f.dst, f.ref, f.reason),
    }


class LinkProtocol:
    """One link's protocol: hello, lanes, dispatch and the control RPC.

    ``wakeup`` is called (once) when there is something to send, so the
    adapter can schedule one flush for this loop turn; ``flush``, if given,
    when a turn has queued enough on lanes that they should go now (see
    :data:`FLUSH_BYTES`; it calls :meth:`data_to_send` then). A violation by the
    peer raises a :class:`~rusm.net.wire.ProtocolError` from the call that
    revealed it; the adapter then closes the link with its code.
    """

    def __init__(
        self,
        node: ClusterNode,
        outbound: bool,
        peer_chain: Callable[[], list[x509.Certificate]],
        wakeup: Callable[[], None],
        flush: Callable[[], None] | None = None,
    ) -> None:
        config = node.config
        self.node = node
        self.outbound = outbound
        self.limits: WireLimits = config.limits
        self.lanes = config.lanes
        self.max_inbound_bytes = config.max_inbound_bytes // 2  # the engine holds the rest
        self.max_lanes = config.max_open_streams
        self.state = LinkState.HELLO
        self.created = time.monotonic()
        self.up_at = float("inf")
        self.name: str | None = None
        self.hidden = False
        self.port = 0
        """The UDP port the peer listens on, from its hello (0: it does not)."""
        self.role = ROLE_OBSERVER
        """What the peer's certificate grants, once its hello is checked
        (an observer may attach, hidden, and watch; nothing more)."""
        self.ready: asyncio.Future[LinkProtocol] = asyncio.get_running_loop().create_future()
        self._peer_chain = peer_chain
        self._wakeup = wakeup
        self._flush = flush
        self._lane_bytes = 0  # queued on lanes since data_to_send
        self._flush_at = FLUSH_FIRST  # lane bytes that make _lane flush now
        self._early = False  # the flush under way is _lane's
        # Handling the peer's frames (whose answers, such as noproc signals,
        # only queue): no early flush, which could close the link mid-batch.
        self._receiving = False
        self._accepted = False  # listener: we accepted its hello, it has not acked ours
        self._dispatch = _dispatch_table(node)
        self._control_in = FrameDecoder(
            "control", self.limits.max_control_frame, self.limits.max_depth
        )
        self._lanes_in: dict[Any, FrameDecoder] = {}
        self._inbound = 0
        self._control_out: list[bytes] = []
        self._lane_out: dict[int, list[bytes]] = {}
        self._pending = False
        self._lanes_used = 0  # a bit per lane this side has written to
        self._rpc_ids = itertools.count(1)
        self._rpc: dict[int, asyncio.Future[Any]] = {}

    def __repr__(self) -> str:
        return f"<LinkProtocol {self.name or '?'} {self.state.value}>"

    @property
    def up(self) -> bool:
        return self.state is LinkState.UP

    # -- events in ---------------------------------------------------------------

    def handshake_done(self) -> None:
        """The TLS handshake completed (the peer's certificate chained to our
        anchor). The connector speaks first."""
        if self.outbound:
            self.send_control(self._our_hello())

    def _our_hello(self) -> Hello:
        node = self.node
        return Hello(PROTOCOL_VERSION, node.name, node.hidden, node.listen_port)

    def receive_control(self, data: bytes, end: bool) -> None:
        """Bytes of the control stream."""
        if self.state is LinkState.CLOSED:
            return
        self._control_in.receive_data(data)
        self._receiving = True
        try:
            for frame in self._control_in.events():
                self._control_frame(frame)
        finally:
            self._receiving = False
        if end:
            raise UnexpectedFrame("the peer ended the control stream")

    def receive_lane(self, lane: Any, data: bytes, end: bool) -> None:
        """Bytes of one of the peer's lanes (``lane`` is any key the adapter
        keeps for the stream)."""
        if self.state is LinkState.CLOSED:
            return
        decoder = self._lanes_in.get(lane)
        if decoder is None:
            if len(self._lanes_in) >= self.max_lanes:
                raise LimitExceeded(f"the peer opened more than {self.max_lanes} lanes")
            decoder = self._lanes_in[lane] = FrameDecoder(
                "pair", self.limits.max_message_frame, self.limits.max_depth
            )
        held = decoder.buffered
        decoder.receive_data(data)
        frames = decoder.events()
        if frames:
            if self.state is not LinkState.UP:
                self._acked(frames[0])
            self._receiving = True
            try:
                self._pair_frames(frames)
            finally:
                self._receiving = False
        if end:
            decoder.receive_eof()
            del self._lanes_in[lane]
            self._inbound -= held
            return
        # In flight: bytes the lane decoders hold that make no frame yet.
        self._inbound += decoder.buffered - held
        if self._inbound > self.max_inbound_bytes:
            raise LimitExceeded(f"more than {self.max_inbound_bytes} inbound bytes in flight")

    def _pair_frames(self, frames: list[Frame]) -> None:
        peer, here = self.name, self.node.name
        if is_read_only(self.role):
            raise UnexpectedFrame(
                f"node {peer} holds an observer certificate: it may not send messages or signals"
            )
        dispatch = self._dispatch
        remote_send = self.node.runtime.remote_send
        for frame in frames:
            src = frame.src  # type: ignore[attr-defined]
            if src.node != peer:
                raise UnexpectedFrame(f"node {peer} sent a frame from {src}")
            dst = frame.dst  # type: ignore[attr-defined]
            if dst.__class__ is Pid and dst.node != here:
                raise UnexpectedFrame(f"node {peer} sent a frame for {dst}")
            if frame.__class__ is Msg:
                remote_send(src, dst, frame.term)
            else:
                dispatch[frame.__class__](frame)

    def hello_timed_out(self) -> None:
        """The hello deadline passed: raises HelloTimeout unless the link is up."""
        if self.state is LinkState.HELLO:
            raise HelloTimeout(
                f"no hello exchanged within {self.node.config.hello_timeout:g} s of the handshake"
            )

    def connection_lost(self, code: int, reason: str) -> None:
        """The link is gone (closed by either side, or the transport)."""
        if self.state is LinkState.CLOSED:
            return
        was_up = self.state is LinkState.UP
        self.state = LinkState.CLOSED
        for fut in self._rpc.values():
            if not fut.done():
                fut.set_exception(NodeNotConnected(self.name or "?", describe_close(code, reason)))
        self._rpc.clear()
        self._lanes_in.clear()
        self._control_out.clear()
        self._lane_out.clear()
        if not self.ready.done():
            self.ready.set_exception(LinkRejected(f"link refused: {reason} (code {code})", code))
            self.ready.exception()  # retrieved here; connect() re-raises it
        self.node.link_closed(self)
        if was_up:
            self.node.link_down(self, code, reason)

    def stats(self) -> dict[str, int]:
        """What this link holds: lanes open each way, bytes held for partial frames."""
        return {
            "lanes_in": len(self._lanes_in),
            "lanes_out": self._lanes_used.bit_count(),
            "inbound_bytes": self._inbound,
        }

    # -- frames out --------------------------------------------------------------

    def data_to_send(self) -> tuple[bytes, dict[int, bytes]]:
        """What to write now: the control stream's bytes and each lane's."""
        control = b"".join(self._control_out)
        lanes = {
            lane: chunks[0] if len(chunks) == 1 else b"".join(chunks)
            for lane, chunks in self._lane_out.items()
        }
        self._control_out = []
        self._lane_out = {}
        self._pending = False
        self._lane_bytes = 0
        if self._early:  # the next one, later in this turn, waits for twice as much
            self._flush_at = min(2 * self._flush_at, FLUSH_BYTES)
        else:  # the end of a turn
            self._flush_at = FLUSH_FIRST
        return control, lanes

    def _queued(self) -> None:
        if not self._pending:
            self._pending = True
            self._wakeup()

    def send_control(self, frame: Frame) -> None:
        """Encode and queue a control frame (raises UnsendableTerm, TermTooLarge)."""
        data = encode_frame(frame, self.limits)
        if self.state is LinkState.CLOSED:
            return
        self._control_out.append(data)
        self._queued()

    def send_pair(self, frame: PairFrame) -> None:
        """Encode and queue a pair frame on its pair's lane."""
        data = encode_frame(frame, self.limits)
        self._lane(frame.src, frame.dst, data)

    def send_call(self, reply: bool, src: Pid, dst: Pid | str, ref: Ref, term: Any) -> None:
        """Send a CallRequest, or a CallReply when ``reply`` (the call path's
        shortcut of :meth:`send_pair`)."""
        self._lane(src, dst, encode_call(reply, src, dst, ref, term, self.limits))

    def send_msg(self, src: Pid, dst: Pid | str, term: Any) -> None:
        """Send a message (the hot path of :meth:`send_pair`)."""
        self._lane(src, dst, encode_msg(src, dst, term, self.limits))

    def _lane(self, src: Pid, dst: Pid | str, data: bytes) -> None:
        if self.state is LinkState.CLOSED:
            return
        lane = lane_of(src, dst, self.lanes)
        chunks = self._lane_out.get(lane)
        if chunks is None:
            self._lanes_used |= 1 << lane
            self._lane_out[lane] = [data]
            self._queued()
        else:
            chunks.append(data)
        self._lane_bytes += len(data)
        if self._lane_bytes >= self._flush_at and self._flush is not None and not self._receiving:
            self._early = True
            try:
                self._flush()  # it takes data_to_send(), which starts the count again
            finally:
                self._early = False

    def gossip(self, op: str, entries: tuple[tuple[str, Pid], ...]) -> None:
        """Send registry news; more than one control frame holds goes as
        several, a ``sync`` first, then ``add`` frames (docs/PROTOCOL.md)."""
        if not self.up or self.hidden:
            return
        size, start = len(entries), 0
        while True:
            chunk = entries[start : start + size]
            try:
                data = encode_frame(Gossip(op, chunk), self.limits)
            except TermTooLarge:
                if size > 1:
                    size //= 2
                    continue
                log.warning("node %s: global name %r is too long to gossip",
                            self.node.name, chunk[0][0][:60])
                data = b""
            if data:
                self._control_out.append(data)
                self._queued()
            start += len(chunk)
            if start >= len(entries):
                return
            if op == "sync":
                op = "add"  # the rest of a sync adds to what its first frame replaced

    async def request(self, method: str, args: tuple[Any, ...], timeout: float) -> Any:
        """A control-plane RPC: raises RemoteError, NodeNotConnected or TimeoutError."""
        if not self.up:
            raise NodeNotConnected(self.name or "?")
        rid = next(self._rpc_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._rpc[rid] = fut
        try:
            self.send_control(Request(rid, method, args))  # may raise UnsendableTerm
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._rpc.pop(rid, None)

    def respond(self, rid: int, ok: bool, value: Any) -> None:
        """Answer request ``rid``; exactly one response goes out whatever
        ``value`` is: one that cannot be sent becomes an error response."""
        if not ok:
            kind, message = value
            value = (kind, message[:MAX_ERROR_MESSAGE])
        try:
            self.send_control(Response(rid, ok, value))
        except (UnsendableTerm, TermTooLarge) as e:
            log.warning("node %s: the answer to request %d cannot be sent: %s",
                        self.node.name, rid, e)
            kind = "too_large" if isinstance(e, TermTooLarge) else "unsendable"
            message = f"the answer cannot be sent: {e}"[:MAX_ERROR_MESSAGE]
            self.send_control(Response(rid, False, (kind, message)))

    # -- hello -------------------------------------------------------------------

    def _control_frame(self, frame: Frame) -> None:
        if isinstance(frame, Hello):
            self._hello(frame)
            return
        if self.state is not LinkState.UP:
            self._acked(frame)
        if isinstance(frame, HelloAck):
            if not self.ready.done():  # connector: the listener is up too
                self.ready.set_result(self)
        elif isinstance(frame, Gossip):
            if not self.hidden:
                self.node.gossip_received(self, frame)
        elif isinstance(frame, Request):
            self.node.request_received(self, frame)
        elif isinstance(frame, Response):
            fut = self._rpc.pop(frame.id, None)
            if fut is not None and not fut.done():
                if frame.ok:
                    fut.set_result(frame.value)
                else:
                    kind, message = frame.value
                    fut.set_exception(RemoteError.from_wire(kind, message))

    def _hello(self, hello: Hello) -> None:
        node = self.node
        if hello.version != PROTOCOL_VERSION:
            raise VersionMismatch(
                f"peer speaks protocol {hello.version}, this node {PROTOCOL_VERSION}"
            )
        try:
            self.role = verify_peer(
                node.identity, self._peer_chain(), hello.node, hidden=hello.hidden
            )
        except PeerRejected as e:
            log.warning("rejected peer claiming to be %s: %s", hello.node, e.reason)
            raise CertificateRejected(e.reason) from e
        if hello.node == node.name:
            raise DuplicateNode(f"a node named {hello.node!r} is already connected (this one)")
        self.name, self.hidden, self.port = hello.node, hello.hidden, hello.port
        if not self.outbound:
            # Our hello goes first, even to a duplicate: a connector that is
            # refused learns whom it reached (its connect() then sees the
            # node already linked). Up only on the connector's HelloAck.
            self.send_control(self._our_hello())
            self._check_duplicate()
            self._accepted = True
            return
        self._check_duplicate()
        self.send_control(HelloAck())
        self._go_up()  # ``ready`` waits for the listener's HelloAck in turn

    def _acked(self, frame: Frame) -> None:
        """A frame from a peer that is not up yet: the listener takes the
        connector's HelloAck, or any frame the connector could only send
        after accepting our hello (streams race), as its acceptance."""
        if not self._accepted:
            if isinstance(frame, HelloAck):
                raise UnexpectedFrame("a HelloAck arrived, but no hello was accepted")
            raise HelloExpected(f"a {type(frame).__name__} frame arrived before the hello")
        self._accepted = False
        self._check_duplicate()  # a link of that name may have come up meanwhile
        self.send_control(HelloAck())
        self._go_up()
        self.ready.set_result(self)

    def _connector(self) -> str | None:
        return self.node.name if self.outbound else self.name

    def _check_duplicate(self) -> LinkProtocol | None:
        """Raise DuplicateNode if a link to this peer is up and keeps its
        place; return it if this link takes its place instead.

        Two nodes that connect to each other at once make two links; both
        sides keep the same one, the link whose connector's name sorts
        first, as BEAM distribution settles it. Any other second link of a
        name (another node claiming it, a restarted node while the old link
        drains, a connect to a node already linked) is refused."""
        assert self.name is not None
        existing = self.node.link_to(self.name)
        if existing is None:
            return None
        mine, theirs = self._connector(), existing._connector()
        crossing = self.created < existing.up_at  # both were saying hello at once
        if crossing and mine is not None and theirs is not None and mine < theirs:
            return existing
        raise DuplicateNode(f"a node named {self.name!r} is already connected")

    def _go_up(self) -> None:
        displaced = self._check_duplicate()
        if displaced is not None:
            log.info("node %s: crossing links to %s: keeping the one %s opened",
                     self.node.name, self.name, self._connector())
            self.node.replace_link(displaced, "crossing links: the other one is kept")
        self.state = LinkState.UP
        self.up_at = time.monotonic()
        self.node.link_up(self)
