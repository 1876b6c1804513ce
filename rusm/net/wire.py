"""The cluster's wire codec, sans-I/O: frames in, bytes out; bytes in, frames out.

No sockets and no event loop here: the QUIC link feeds stream bytes to a
:class:`FrameDecoder`, drains :meth:`FrameDecoder.events`, and writes what
:func:`encode_frame` returns. docs/PROTOCOL.md is the specification; terms
are encoded by :mod:`rusm.net.terms`.

A stream carries frames: a 4-byte big-endian length N, then N bytes holding
one msgpack array ``[type, *fields]``. The control stream carries
:class:`ControlFrame` s (Hello first, exactly once); unidirectional lane
streams carry :class:`PairFrame` s. Every (sender, destination) pair always
rides the same lane, so a lane's own order is each of its pairs' FIFO: no
sequence numbers, no reordering.

Its errors (``FrameTooLarge``, ``UnexpectedFrame``...) are defined in
:mod:`rusm.net.errors`, which draws the whole tree; they are re-exported here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

from rusm.actors.pid import Pid, Ref

from .errors import (
    ErrorCode,
    FrameTooLarge,
    HelloExpected,
    InvalidFrame,
    MalformedFrame,
    ProtocolError,
    TermTooLarge,
    TooDeep,
    TrailingBytes,
    TruncatedFrame,
    UnexpectedFrame,
    UnknownExtType,
    UnknownFrame,
    UnsendableTerm,
    VersionMismatch,
)
from .terms import (
    DEFAULT_MAX_DEPTH,
    DEPTH_CEILING,
    decode_checked,
    decode_term,
    encode_term,
    is_node_name,
    pack_fields,
    pack_pair,
    reason_term,
)

__all__ = [
    "ALPN",
    "DEFAULT_LIMITS",
    "GOSSIP_OPS",
    "PROTOCOL_VERSION",
    "CallReply",
    "CallRequest",
    "ControlFrame",
    "Demonitor",
    "DownSignal",
    "ErrorCode",
    "ExitSignal",
    "Frame",
    "FrameDecoder",
    "FrameTooLarge",
    "Gossip",
    "Hello",
    "HelloAck",
    "HelloExpected",
    "InvalidFrame",
    "Link",
    "MalformedFrame",
    "Monitor",
    "Msg",
    "PairFrame",
    "ProtocolError",
    "Request",
    "Response",
    "StreamKind",
    "TermTooLarge",
    "TooDeep",
    "TrailingBytes",
    "TruncatedFrame",
    "UnexpectedFrame",
    "UnknownExtType",
    "UnknownFrame",
    "Unlink",
    "UnsendableTerm",
    "VersionMismatch",
    "WireLimits",
    "decode_term",
    "encode_call",
    "encode_frame",
    "encode_msg",
    "encode_term",
    "reason_term",
]

PROTOCOL_VERSION = 3
"""Sent in Hello; a peer with another version is refused (VERSION_MISMATCH).
Version 2: pair frames ride lanes and carry no sequence numbers. Version 3:
``Hello`` says the port the sender listens on."""
ALPN = "rusm/1"
"""The TLS ALPN protocol id of a RUSM link."""

StreamKind = Literal["control", "pair"]
"""A control stream, or a lane (a stream of pair frames)."""
GOSSIP_OPS = frozenset({"sync", "add", "remove"})

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_HEADER = struct.Struct(">I")
_GATHER = 16384
"""A frame announced larger than this gathers in a bytearray (see FrameDecoder)."""


@dataclass(frozen=True)
class WireLimits:
    """Size limits of the wire. Every node of a cluster must use the same ones:
    the sender checks against its own, the receiver closes a link on a breach."""

    max_control_frame: int = 64 * 1024
    """Largest control-stream frame body in bytes (Hello, Gossip, Request, Response).
    A Gossip sync larger than this is split (see docs/PROTOCOL.md)."""
    max_message_frame: int = 1024 * 1024
    """Largest pair-stream frame body in bytes, which bounds one message."""
    max_depth: int = DEFAULT_MAX_DEPTH
    """Deepest container nesting in a term (a tuple counts once); at most 64."""

    def __post_init__(self) -> None:
        for name in ("max_control_frame", "max_message_frame"):
            value = getattr(self, name)
            if type(value) is not int or not 16 <= value <= _U32_MAX:
                raise ValueError(f"WireLimits.{name} must be 16 .. 2**32-1, got {value!r}")
        if type(self.max_depth) is not int or not 1 <= self.max_depth <= DEPTH_CEILING:
            raise ValueError(
                f"WireLimits.max_depth must be 1 .. {DEPTH_CEILING}, got {self.max_depth!r}"
            )

    def max_frame(self, kind: StreamKind) -> int:
        """The frame size limit of a stream kind."""
        return self.max_control_frame if kind == "control" else self.max_message_frame


DEFAULT_LIMITS = WireLimits()


# --------------------------------------------------------------------------- errors


# --------------------------------------------------------------------------- frames


class Frame:
    """Marker base of every frame; consumers dispatch with ``match``."""

    __slots__ = ()
    TYPE: ClassVar[int]
    """The frame's type number on the wire."""


class ControlFrame(Frame):
    """A frame of the control stream."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Hello(ControlFrame):
    """The first frame each side sends on the control stream."""

    TYPE: ClassVar[int] = 1
    version: int
    node: str
    hidden: bool
    """The sender is a tool (an attaching client), not a cluster member, like
    Erlang's hidden nodes."""
    port: int
    """The UDP port the sender listens on for links (0: none, a hidden node),
    so that its peers know its address (the link's source host, this port)
    even when it connected to them: an observer attached to one node can
    attach to the others through it."""


@dataclass(frozen=True, slots=True)
class Gossip(ControlFrame):
    """Global-registry news: ``sync`` (all my names), ``add`` or ``remove``."""

    TYPE: ClassVar[int] = 2
    op: str
    entries: tuple[tuple[str, Pid], ...]


@dataclass(frozen=True, slots=True)
class Request(ControlFrame):
    """A control RPC call; answered by the Response with the same ``id``."""

    TYPE: ClassVar[int] = 3
    id: int
    method: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Response(ControlFrame):
    """A control RPC answer; if not ``ok``, value is ``(error_type, message)``."""

    TYPE: ClassVar[int] = 4
    id: int
    ok: bool
    value: Any


@dataclass(frozen=True, slots=True)
class HelloAck(ControlFrame):
    """The connector accepted the listener's Hello: the link is up on both
    sides. Until then the listener treats the peer as not connected."""

    TYPE: ClassVar[int] = 5


@dataclass(slots=True)
class PairFrame(Frame):
    """A frame from ``src`` to ``dst`` (a pid or a name registered at the receiver).

    All frames of one (src, dst) pair ride one lane, in the order they were
    sent; a ``noproc`` answer on behalf of a process that no longer exists
    rides its pair's lane too. Pair frames are not frozen (unlike control
    frames): one is built per message received, and a frozen dataclass costs
    three times as much to build. Treat them as read-only all the same.
    """

    src: Pid
    dst: Pid | str


@dataclass(slots=True)
class Msg(PairFrame):
    """A message."""

    TYPE: ClassVar[int] = 10
    term: Any


@dataclass(slots=True)
class Link(PairFrame):
    """Link src and dst."""

    TYPE: ClassVar[int] = 11


@dataclass(slots=True)
class Unlink(PairFrame):
    """Remove the link between src and dst."""

    TYPE: ClassVar[int] = 12


@dataclass(slots=True)
class ExitSignal(PairFrame):
    """src exited (or called exit) with ``reason``; see :func:`reason_term`."""

    TYPE: ClassVar[int] = 13
    reason: Any


@dataclass(slots=True)
class Monitor(PairFrame):
    """src monitors dst under ``ref``."""

    TYPE: ClassVar[int] = 14
    ref: Ref


@dataclass(slots=True)
class Demonitor(PairFrame):
    """src drops the monitor ``ref``."""

    TYPE: ClassVar[int] = 15
    ref: Ref


@dataclass(slots=True)
class DownSignal(PairFrame):
    """The monitored src is down with ``reason``; dst held the monitor ``ref``."""

    TYPE: ClassVar[int] = 16
    ref: Ref
    reason: Any


@dataclass(slots=True)
class CallRequest(PairFrame):
    """A call from src to dst; the reply carries the same ``ref``."""

    TYPE: ClassVar[int] = 17
    ref: Ref
    request: Any


@dataclass(slots=True)
class CallReply(PairFrame):
    """The reply to the call ``ref`` (src is the replier, dst the caller)."""

    TYPE: ClassVar[int] = 18
    ref: Ref
    value: Any


# --------------------------------------------------------------------------- field rules

_Check = Callable[[Any], bool]


def _is_uint(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _U64_MAX


def _is_dst(v: Any) -> bool:
    return type(v) is Pid or (type(v) is str and v != "")


def _is_entries(v: Any) -> bool:
    return type(v) is tuple and all(
        type(e) is tuple and len(e) == 2 and type(e[0]) is str and type(e[1]) is Pid for e in v
    )


def _is_error_pair(v: Any) -> bool:
    return type(v) is tuple and len(v) == 2 and type(v[0]) is str and type(v[1]) is str


_PID: tuple[_Check, str] = (lambda v: type(v) is Pid, "a Pid")
_REF: tuple[_Check, str] = (lambda v: type(v) is Ref, "a Ref")
_TERM: tuple[_Check, str] = (lambda v: True, "a term")
_PAIR = {
    "src": _PID,
    "dst": (_is_dst, "a Pid or a non-empty name"),
}
_RULES: dict[str, tuple[_Check, str]] = {
    "version": (_is_uint, "an int >= 0"),
    "node": (is_node_name, "a node name (1-255 characters, no whitespace, < or >)"),
    "hidden": (lambda v: type(v) is bool, "a bool"),
    "port": (lambda v: type(v) is int and 0 <= v <= 65535, "a port number (0 … 65535)"),
    "op": (lambda v: type(v) is str and v in GOSSIP_OPS, "one of 'sync', 'add', 'remove'"),
    "entries": (_is_entries, "a tuple of (name: str, pid: Pid) tuples"),
    "id": (_is_uint, "an int >= 0"),
    "method": (lambda v: type(v) is str and v != "", "a non-empty str"),
    "args": (lambda v: type(v) is tuple, "a tuple"),
    "ok": (lambda v: type(v) is bool, "a bool"),
    "ref": _REF,
    **_PAIR,
}


class _Spec:
    __slots__ = ("checks", "cls", "kind", "names", "roots")

    def __init__(self, cls: type[Frame]) -> None:
        self.cls = cls
        self.kind: StreamKind = "pair" if issubclass(cls, PairFrame) else "control"
        self.names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        self.checks = tuple((name, *_RULES.get(name, _TERM)) for name in self.names)
        # Error paths: a pair frame's payload term reads from its root ("[1]['k']").
        self.roots = [""] + [
            "" if name in ("term", "request", "value") else name for name in self.names
        ]

    def problem(self, values: tuple[Any, ...] | list[Any]) -> str | None:
        """What is wrong with these field values, or None."""
        if len(values) != len(self.names):
            return f"{len(values)} fields instead of {len(self.names)}"
        for (name, check, what), value in zip(self.checks, values, strict=True):
            if not check(value):
                return f"field {name} that is not {what} (got {type(value).__name__})"
        if self.cls is Response and values[1] is False and not _is_error_pair(values[2]):
            return "ok=False and a value that is not (error_type: str, message: str)"
        return None


_FRAME_CLASSES: tuple[type[Frame], ...] = (
    Hello, Gossip, Request, Response, HelloAck,
    Msg, Link, Unlink, ExitSignal, Monitor, Demonitor, DownSignal, CallRequest, CallReply,
)  # fmt: skip
_SPECS: dict[int, _Spec] = {cls.TYPE: _Spec(cls) for cls in _FRAME_CLASSES}
_SPEC_OF: dict[type[Frame], _Spec] = {spec.cls: spec for spec in _SPECS.values()}


# --------------------------------------------------------------------------- encode


def encode_frame(frame: Frame, limits: WireLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of one frame, length prefix included.

    Raises :class:`InvalidFrame` for fields that break the protocol,
    :class:`UnsendableTerm` (a ``TypeError``) for a payload that is not a
    term, :class:`TermTooLarge` when the frame would exceed ``limits``.
    """
    if type(frame) is Msg:  # the hot path: checks inlined, no spec lookup
        src, dst = frame.src, frame.dst
        if type(src) is Pid and (type(dst) is Pid or (type(dst) is str and dst)):
            return encode_msg(src, dst, frame.term, limits)
    elif type(frame) is CallRequest or type(frame) is CallReply:  # a call's two hot frames
        src, dst, ref = frame.src, frame.dst, frame.ref
        if (
            type(src) is Pid
            and type(ref) is Ref
            and (type(dst) is Pid or (type(dst) is str and dst))
        ):
            reply = type(frame) is CallReply
            term = frame.value if reply else frame.request  # type: ignore[union-attr]
            return encode_call(reply, src, dst, ref, term, limits)
    spec = _SPEC_OF.get(type(frame))
    if spec is None:
        raise InvalidFrame(f"cannot encode {type(frame).__name__}: not a frame class")
    values = [getattr(frame, name) for name in spec.names]
    problem = spec.problem(values)
    if problem is not None:
        raise InvalidFrame(f"cannot send a {spec.cls.__name__} frame with {problem}")
    try:
        body = pack_fields([spec.cls.TYPE, *values], spec.roots, limits.max_depth)
    except UnsendableTerm as e:
        raise UnsendableTerm(f"{e} in a {spec.cls.__name__} frame") from None
    limit = limits.max_frame(spec.kind)
    if len(body) > limit:
        raise _too_large(frame, len(body), limit)
    return _HEADER.pack(len(body)) + body


def encode_msg(src: Pid, dst: Pid | str, term: Any, limits: WireLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of ``Msg(src, dst, term)``, without building the frame: the
    send path's shortcut. Raises as :func:`encode_frame`."""
    if type(src) is not Pid or not (type(dst) is Pid or (type(dst) is str and dst)):
        raise InvalidFrame(f"cannot send a Msg frame from {src!r} to {dst!r}")
    body = pack_pair(10, src, dst, None, term, _MSG_ROOTS, limits.max_depth)
    if len(body) > limits.max_message_frame:
        raise TermTooLarge(
            f"cannot send a Msg frame of {len(body)} bytes: "
            f"the limit is {limits.max_message_frame} bytes"
        )
    return _HEADER.pack(len(body)) + body


def encode_call(reply: bool, src: Pid, dst: Pid | str, ref: Ref, term: Any,
                limits: WireLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of ``CallRequest(src, dst, ref, term)`` (``CallReply`` when
    ``reply``), without building the frame: the call path's shortcut. Raises
    as :func:`encode_frame`."""
    cls = CallReply if reply else CallRequest
    if type(src) is not Pid or type(ref) is not Ref or not (
        type(dst) is Pid or (type(dst) is str and dst)
    ):
        return encode_frame(cls(src, dst, ref, term), limits)  # which says what is wrong
    try:
        body = pack_pair(cls.TYPE, src, dst, ref, term, _CALL_ROOTS, limits.max_depth)
    except UnsendableTerm as e:
        raise UnsendableTerm(f"{e} in a {cls.__name__} frame") from None
    if len(body) > limits.max_message_frame:
        raise TermTooLarge(
            f"cannot send a {cls.__name__} frame of {len(body)} bytes: "
            f"the limit is {limits.max_message_frame} bytes"
        )
    return _HEADER.pack(len(body)) + body


_MSG_ROOTS = _SPEC_OF[Msg].roots
_CALL_ROOTS = _SPEC_OF[CallRequest].roots
assert _SPEC_OF[CallReply].roots == _CALL_ROOTS


def _too_large(frame: Frame, size: int, limit: int) -> TermTooLarge:
    return TermTooLarge(
        f"cannot send a {type(frame).__name__} frame of {size} bytes: the limit is {limit} bytes"
    )


# --------------------------------------------------------------------------- decode


class FrameDecoder:
    """Bytes in, frames out, for the receiving side of one stream (sans-I/O).

    Feed stream data with :meth:`receive_data` and the end of the stream
    with :meth:`receive_eof`; take decoded frames with :meth:`events`. A
    violation raises a :class:`ProtocolError` from the call that revealed it
    (frames decoded before it stay in :meth:`events`); the decoder is then
    broken and raises the same error on every later call.

    On a control stream the first frame must be a Hello of this
    :data:`PROTOCOL_VERSION`, and no other Hello may follow. A lane carries
    pair frames of any pairs.
    """

    def __init__(self, kind: StreamKind, max_frame: int, max_depth: int) -> None:
        if kind not in ("control", "pair"):
            raise ValueError(f"kind must be 'control' or 'pair', not {kind!r}")
        if max_frame < 1 or max_depth < 1:
            raise ValueError("max_frame and max_depth must be positive")
        self.kind: StreamKind = kind
        self.max_frame = max_frame
        self.max_depth = max_depth
        self._pair_stream = kind == "pair"
        # The start of a frame not complete yet: bytes, so that frames are
        # sliced from it without a copy more; a bytearray instead while a
        # frame larger than _GATHER gathers (``_need`` bytes in all), so that
        # a long frame is not copied again with each chunk.
        self._buffer: bytes | bytearray = b""
        self._need = 0
        self._events: list[Frame] = []
        self._failed: ProtocolError | None = None
        self._hello = False  # control: Hello seen

    @classmethod
    def for_stream(cls, kind: StreamKind, limits: WireLimits = DEFAULT_LIMITS) -> FrameDecoder:
        """A decoder with the limits of ``kind``."""
        return cls(kind, limits.max_frame(kind), limits.max_depth)

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that has not fully arrived."""
        return len(self._buffer)

    def events(self) -> list[Frame]:
        """The frames decoded so far, oldest first; each is returned once."""
        events, self._events = self._events, []
        return events

    def receive_data(self, data: bytes) -> None:
        """Take the next bytes of the stream; decode every frame they complete."""
        if self._failed is not None:
            raise self._failed
        if data.__class__ is not bytes:
            data = bytes(data)  # a caller's bytearray or memoryview
        buf = self._buffer
        if not buf:
            buf = data
        elif buf.__class__ is bytes:
            buf += data
        else:
            buf += data  # the bytearray of a large frame, in place
            if len(buf) < self._need:
                return
            buf = bytes(buf)
        end = len(buf)
        pos = size = 0
        # Locals: this loop runs once per frame on the message path.
        header, max_frame = _HEADER.unpack_from, self.max_frame
        append, decode = self._events.append, self._decode
        try:
            while end - pos >= 4:
                size = header(buf, pos)[0]
                if size > max_frame:
                    raise FrameTooLarge(
                        f"remote peer announced a frame of {size} bytes on a {self.kind} "
                        f"stream; the limit is {max_frame}"
                    )
                start = pos + 4
                if end - start < size:
                    break
                pos = start + size
                size = 0
                append(decode(buf[start:pos]))
        except ProtocolError as e:
            self._failed = e
            self._buffer = b""
            raise
        if pos == end:
            self._buffer = b""
        elif size > _GATHER:
            self._buffer = bytearray(buf[pos:])
            self._need = 4 + size
        else:
            self._buffer = buf[pos:] if pos else buf

    def receive_eof(self) -> None:
        """The stream ended; raises :class:`TruncatedFrame` if a frame is incomplete."""
        if self._failed is not None:
            raise self._failed
        if self._buffer:
            held = len(self._buffer)
            self._buffer = b""
            self._failed = TruncatedFrame(
                f"remote peer ended a {self.kind} stream inside a frame ({held} bytes held)"
            )
            raise self._failed

    def _decode(self, body: bytes) -> Frame:
        # Frame array + the fields' own max_depth levels; every limit checked
        # before ormsgpack sees a byte (terms.decode_checked).
        items = decode_checked(body, self.max_depth + 1)
        if type(items) is not list or not items or type(items[0]) is not int:
            raise MalformedFrame("remote peer sent a frame that is not an array [type, *fields]")
        t = items[0]
        if self._pair_stream:
            if t == 10 and len(items) == 4:  # the hot path: Msg, checks inlined
                src, dst = items[1], items[2]
                if type(src) is Pid and (type(dst) is Pid or (type(dst) is str and dst)):
                    return Msg(src, dst, items[3])
            elif (t == 17 or t == 18) and len(items) == 5:  # a call's frames, as above
                src, dst, ref = items[1], items[2], items[3]
                if (
                    type(src) is Pid
                    and type(ref) is Ref
                    and (type(dst) is Pid or (type(dst) is str and dst))
                ):
                    return (CallRequest if t == 17 else CallReply)(src, dst, ref, items[4])
            return self._frame(t, items)
        if not self._hello:
            if t != Hello.TYPE:
                raise HelloExpected(
                    f"remote peer began the control stream with frame type {t}, not Hello"
                )
            # The version first: a later version may change Hello's other fields.
            version = items[1] if len(items) > 1 else None
            if type(version) is int and version != PROTOCOL_VERSION:
                raise VersionMismatch(
                    f"remote peer speaks wire version {version}; "
                    f"this node speaks {PROTOCOL_VERSION}"
                )
            frame = self._frame(t, items)
            self._hello = True
            return frame
        if t == Hello.TYPE:
            raise UnexpectedFrame("remote peer sent a second Hello on the control stream")
        return self._frame(t, items)

    def _frame(self, t: int, items: list[Any]) -> Frame:
        spec = _SPECS.get(t)
        if spec is None:
            raise UnknownFrame(f"remote peer sent frame type {t}, which RUSM does not define")
        if spec.kind != self.kind:
            raise UnexpectedFrame(
                f"remote peer sent a {spec.cls.__name__} frame on a {self.kind} stream"
            )
        values = items[1:]
        problem = spec.problem(values)
        if problem is not None:
            raise MalformedFrame(f"remote peer sent a {spec.cls.__name__} frame with {problem}")
        return spec.cls(*values)
