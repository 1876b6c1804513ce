"""The protocol logic of one link: hello, per-pair order, RPC, dispatch.

A :class:`Peer` is the handler of one :class:`~rusm.net.quic.QuicLink`. It
checks the hello (version, the name the certificate names, duplicates),
numbers outbound pair frames per (sender, destination) and puts inbound ones
back in order with a reorder buffer, matches RPC responses to requests, and
dispatches every in-order pair frame straight into the runtime, from the
protocol callback: no Task, Future or Queue per message.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rusm.actors.pid import Pid
from rusm.actors.runtime import Runtime

from .messages import (
    CertificateRejected,
    DuplicateNode,
    LimitExceeded,
    LinkRejected,
    NodeNotConnected,
    RemoteError,
)
from .tls import PeerRejected, verify_peer
from .wire import (
    GONE_BATCH,
    PROTOCOL_VERSION,
    CallReply,
    CallRequest,
    Demonitor,
    DownSignal,
    ExitSignal,
    Frame,
    Gone,
    Gossip,
    Hello,
    HelloAck,
    HelloExpected,
    Link,
    Monitor,
    Msg,
    PairEnd,
    PairFrame,
    Request,
    Response,
    UnexpectedFrame,
    Unlink,
    VersionMismatch,
    encode_frame,
)

if TYPE_CHECKING:
    from .node import ClusterNode
    from .quic import QuicLink

__all__ = ["Peer"]

log = logging.getLogger("rusm.net.peer")


def _dispatch_table(rt: Runtime) -> dict[type[Frame], Callable[[Any], None]]:
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


class Peer:
    """The far end of one link, as this node sees it."""

    def __init__(self, node: ClusterNode, link: QuicLink, outbound: bool) -> None:
        self.node = node
        self.link = link
        self.outbound = outbound
        self.name: str | None = None
        self.hidden = False
        self.up = False
        self._accepted = False  # listener: we accepted its hello, it has not acked ours
        self.ready: asyncio.Future[Peer] = asyncio.get_running_loop().create_future()
        self._dispatch = _dispatch_table(node.runtime)
        # Per-pair sequence state, and which pairs each local process is in,
        # so the state goes when the process does (local_exited).
        self._out_seq: dict[tuple[Any, Any], int] = {}
        self._out_by_src: dict[Pid, dict[Any, None]] = {}
        self._in_next: dict[tuple[Any, Any], int] = {}
        self._in_by_dst: dict[Pid, dict[Pid, None]] = {}
        self._reorder: dict[tuple[Any, Any], dict[int, PairFrame]] = {}
        self._reordered = 0
        self._rpc_ids = itertools.count(1)
        self._rpc: dict[int, asyncio.Future[Any]] = {}

    def __repr__(self) -> str:
        return f"<Peer {self.name or '?'} {'up' if self.up else 'down'}>"

    # -- LinkHandler -----------------------------------------------------------

    def handshake_done(self) -> None:
        if self.outbound:
            self.link.open_control()
            self.link.send_control(Hello(PROTOCOL_VERSION, self.node.name, self.node.hidden))

    def control_frame(self, frame: Frame) -> None:
        if isinstance(frame, Hello):
            self._hello(frame)
            return
        if not self.up:
            self._acked(frame)
        if isinstance(frame, HelloAck):
            if not self.ready.done():  # connector: the listener is up too
                self.ready.set_result(self)
            return
        if isinstance(frame, Gossip):
            assert self.name is not None
            if not self.hidden:
                self.node._gossip_received(self, frame)
        elif isinstance(frame, Gone):
            self._gone(frame)
        elif isinstance(frame, Request):
            self.node._request_received(self, frame)
        elif isinstance(frame, Response):
            fut = self._rpc.pop(frame.id, None)
            if fut is not None and not fut.done():
                if frame.ok:
                    fut.set_result(frame.value)
                else:
                    kind, message = frame.value
                    fut.set_exception(RemoteError.from_wire(kind, message))

    def pair_frame(self, frame: Frame) -> None:
        if not self.up:
            self._acked(frame)
        assert isinstance(frame, PairFrame)
        src = frame.src
        if src.node != self.name:
            raise UnexpectedFrame(f"node {self.name} sent a frame from {src}")
        dst = frame.dst
        if dst.__class__ is Pid and dst.node != self.node.name:
            raise UnexpectedFrame(f"node {self.name} sent a frame for {dst}")
        if frame.seq == 0:  # a noproc answer for a process that is gone: no order
            self._dispatch[frame.__class__](frame)
            return
        key = (src, dst)
        expected = self._in_next.get(key)
        if expected is None:
            if dst.__class__ is Pid and not self.node.runtime.is_alive(dst):
                # Frames to a dead process are dead letters or noproc answers
                # whatever their order: no state is kept for them, and the
                # first of a pair tells the sender to drop its numbering too.
                if frame.__class__ is not PairEnd:
                    self._dispatch[frame.__class__](frame)
                    if frame.seq == 1:
                        self.link.send_control(Gone(dst, (src,)))
                return
            expected = 1
            if dst.__class__ is Pid:
                by_dst = self._in_by_dst.get(dst)
                if by_dst is None:
                    self._in_by_dst[dst] = {src: None}
                else:
                    by_dst[src] = None
        if frame.seq == expected:
            if frame.__class__ is PairEnd:
                self._pair_ended(key)
                return
            self._dispatch[frame.__class__](frame)
            expected += 1
            waiting = self._reorder.get(key)
            if waiting:
                while expected in waiting:
                    frame = waiting.pop(expected)
                    self._reordered -= 1
                    if frame.__class__ is PairEnd:
                        self._pair_ended(key)
                        return
                    self._dispatch[frame.__class__](frame)
                    expected += 1
                if not waiting:
                    del self._reorder[key]
            self._in_next[key] = expected
        elif frame.seq > expected:
            waiting = self._reorder.setdefault(key, {})
            if frame.seq in waiting:
                raise UnexpectedFrame(f"frame {frame.seq} of {src}->{dst} came twice")
            waiting[frame.seq] = frame
            self._reordered += 1
            if self._reordered > self.node.config.max_reorder_frames:
                raise LimitExceeded("too many frames held back out of order")
        else:
            raise UnexpectedFrame(f"frame {frame.seq} of {src}->{dst} came twice")

    def _pair_ended(self, key: tuple[Any, Any]) -> None:
        """A pair's PairEnd came in order: forget the pair."""
        self._in_next.pop(key, None)
        waiting = self._reorder.pop(key, None)
        if waiting:  # frames numbered after the end: the peer broke the protocol
            raise UnexpectedFrame(f"frames of {key[0]}->{key[1]} came after its PairEnd")
        src, dst = key
        by_dst = self._in_by_dst.get(dst)
        if by_dst is not None:
            by_dst.pop(src, None)
            if not by_dst:
                del self._in_by_dst[dst]

    def local_exited(self, pid: Pid) -> None:
        """A local process exited: end its pairs as a sender (PairEnd, in each
        pair's order) and forget them as a receiver (Gone tells the peer)."""
        dsts = self._out_by_src.pop(pid, None)
        if dsts is not None:
            for dst in dsts:
                key = (pid, dst)
                seq = self._out_seq.pop(key, 0) + 1
                self.link.send_pair(key, encode_frame(PairEnd(pid, dst, seq)))
        srcs = self._in_by_dst.pop(pid, None)
        if srcs is None:
            return
        for src in srcs:
            key = (src, pid)
            self._in_next.pop(key, None)
            waiting = self._reorder.pop(key, None)
            if waiting:  # held back for an earlier frame: they can go now, all dead
                self._reordered -= len(waiting)
                for seq in sorted(waiting):
                    frame = waiting[seq]
                    if frame.__class__ is not PairEnd:
                        self._dispatch[frame.__class__](frame)
        senders = tuple(srcs)
        for i in range(0, len(senders), GONE_BATCH):
            self.link.send_control(Gone(pid, senders[i : i + GONE_BATCH]))

    def _gone(self, frame: Gone) -> None:
        """The peer's process exited: forget our numbering of pairs to it."""
        dst = frame.pid
        if dst.node != self.name:
            raise UnexpectedFrame(f"node {self.name} reported {dst} gone, not its own")
        for src in frame.senders:
            if self._out_seq.pop((src, dst), None) is not None:
                dsts = self._out_by_src.get(src)
                if dsts is not None:
                    dsts.pop(dst, None)
                    if not dsts:
                        del self._out_by_src[src]

    def closed(self, code: int, reason: str) -> None:
        for fut in self._rpc.values():
            if not fut.done():
                fut.set_exception(NodeNotConnected(self.name or "?"))
        self._rpc.clear()
        self._reorder.clear()
        if not self.ready.done():
            self.ready.set_exception(LinkRejected(f"link refused: {reason} (code {code})", code))
            self.ready.exception()  # retrieved here; connect() re-raises it
        if self.up:
            self.up = False
            self.node._peer_down(self, code, reason)

    # -- hello -----------------------------------------------------------------

    def _hello(self, hello: Hello) -> None:
        node = self.node
        if hello.version != PROTOCOL_VERSION:
            raise VersionMismatch(
                f"peer speaks protocol {hello.version}, this node {PROTOCOL_VERSION}"
            )
        try:
            verify_peer(node.identity, self.link.peer_chain, hello.node)
        except PeerRejected as e:
            log.warning("rejected peer claiming to be %s: %s", hello.node, e.reason)
            raise CertificateRejected(e.reason) from e
        if hello.node == node.name or hello.node in node._peers:
            raise DuplicateNode(f"a node named {hello.node!r} is already connected")
        self.name, self.hidden = hello.node, hello.hidden
        if not self.outbound:
            # Up only when the connector accepts our hello in turn (HelloAck).
            self.link.send_control(Hello(PROTOCOL_VERSION, node.name, node.hidden))
            self._accepted = True
            return
        self.link.send_control(HelloAck())
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
        self.link.send_control(HelloAck())
        self._go_up()
        self.ready.set_result(self)

    def _go_up(self) -> None:
        node = self.node
        if self.name in node._peers:  # another link of that name came up meanwhile
            raise DuplicateNode(f"a node named {self.name!r} is already connected")
        self.up = True
        node._peer_up(self)

    # -- outbound --------------------------------------------------------------

    def pair(self, frame_of: Callable[[int], PairFrame], src: Any, dst: Any) -> None:
        """Number and queue a pair frame. Encoding happens before the number is
        taken, so a term that cannot be sent leaves no gap in the sequence."""
        key = (src, dst)
        seq = self._out_seq.get(key, 0) + 1
        data = encode_frame(frame_of(seq))
        self._out_seq[key] = seq
        if seq == 1:
            self._index_out(src, dst)
        self.link.send_pair(key, data)

    def pair_state(self) -> dict[str, int]:
        """How much per-pair state this link holds (it goes when processes do)."""
        return {
            "out": len(self._out_seq),
            "in": len(self._in_next),
            "held": self._reordered,
            "senders": len(self._out_by_src),
            "receivers": len(self._in_by_dst),
        }

    def unordered(self, frame: PairFrame) -> None:
        """Send a frame with seq 0, outside any pair's order and on a stream
        of its own: a ``noproc`` answer on behalf of a process that no longer
        exists, whose pairs have ended (PairEnd) or never began."""
        self.link.send_pair(object(), encode_frame(frame))

    def send_msg(self, src: Pid, dst: Pid | str, term: Any) -> None:
        key = (src, dst)
        seq = self._out_seq.get(key, 0) + 1
        data = encode_frame(Msg(src, dst, seq, term))
        self._out_seq[key] = seq
        if seq == 1:
            self._index_out(src, dst)
        self.link.send_pair(key, data)

    def _index_out(self, src: Pid, dst: Pid | str) -> None:
        dsts = self._out_by_src.get(src)
        if dsts is None:
            self._out_by_src[src] = {dst: None}
        else:
            dsts[dst] = None

    def gossip(self, op: str, entries: tuple[tuple[str, Pid], ...]) -> None:
        if self.up and not self.hidden:
            self.link.send_control(Gossip(op, entries))

    async def request(self, method: str, args: tuple[Any, ...], timeout: float) -> Any:
        """A control-plane RPC: raises RemoteError, NodeNotConnected or TimeoutError."""
        if not self.up:
            raise NodeNotConnected(self.name or "?")
        rid = next(self._rpc_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._rpc[rid] = fut
        try:
            self.link.send_control(Request(rid, method, args))  # may raise UnsendableTerm
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._rpc.pop(rid, None)

    def respond(self, rid: int, ok: bool, value: Any) -> None:
        self.link.send_control(Response(rid, ok, value))
