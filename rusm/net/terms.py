"""Terms on the wire: how a message becomes msgpack bytes and back (sans-I/O).

A term is None, bool, int (-2**63 .. 2**64-1), float, str, bytes, list,
tuple, dict (keys: hashable terms), :class:`~rusm.actors.pid.Pid` or
:class:`~rusm.actors.pid.Ref`. Exact types only: a subclass (an enum member,
an ``OrderedDict``, a namedtuple) is refused rather than sent as something
else. bytearray and memoryview values are the one conversion: they arrive as
bytes.

Encoding (ormsgpack)::

    None bool int float str bytes list   native msgpack
    dict                                 native map; keys nil, bool, int, float,
                                         str, bin, or array (a tuple key; arrays
                                         inside a key are tuples too)
    ext 1  Pid                           8-byte big-endian serial + node (UTF-8)
    ext 2  Ref                           same layout as Pid
    ext 3  tuple                         a msgpack array of the items
    ext 4  dict with a Pid/Ref in a key  a msgpack array [k1, v1, k2, v2, ...]

Decoding trusts nothing: :func:`scan` walks the msgpack structure without
recursion and before anything is built. It checks that every length fits,
caps nesting, refuses unknown ext types and finds where the first object
ends, so trailing bytes are caught (ormsgpack would ignore them). Only then
does ormsgpack decode. :func:`decode_checked` does all that for a frame's
body and is quick on the hot pair frames: it checks their fixed parts by
byte position, remembers (src, dst) prefixes it has decoded, and leaves
scan only the terms that need it.

Errors raised here are defined, with the whole tree, in
:mod:`rusm.net.errors`.
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Callable
from typing import Any

import ormsgpack

from rusm.actors.pid import Pid, Ref

from .errors import (
    ErrorCode,
    MalformedFrame,
    ProtocolError,
    TermTooLarge,
    TooDeep,
    TrailingBytes,
    UnknownExtType,
    UnsendableTerm,
)

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEPTH_CEILING",
    "EXT_MAP",
    "EXT_PID",
    "EXT_REF",
    "EXT_TUPLE",
    "ErrorCode",
    "MalformedFrame",
    "ProtocolError",
    "TermTooLarge",
    "TooDeep",
    "TrailingBytes",
    "UnknownExtType",
    "UnsendableTerm",
    "decode_checked",
    "decode_term",
    "encode_term",
    "is_node_name",
    "reason_term",
    "scan",
]

EXT_PID = 1
EXT_REF = 2
EXT_TUPLE = 3
EXT_MAP = 4

DEFAULT_MAX_DEPTH = 32
"""Default cap on container nesting in a term (see ``WireLimits.max_depth``)."""
DEPTH_CEILING = 64
"""The highest ``max_depth`` accepted: it bounds the encoder's recursion."""

_INT_MIN = -(2**63)
_UINT_MAX = 2**64 - 1
_NODE_RE = re.compile(r"[^<>\s]{1,255}")


def is_node_name(name: object) -> bool:
    """True for a valid node name: 1-255 characters, no whitespace, ``<`` or ``>``."""
    return type(name) is str and _NODE_RE.fullmatch(name) is not None


# --------------------------------------------------------------------------- encode

_OPT = (
    ormsgpack.OPT_PASSTHROUGH_TUPLE
    | ormsgpack.OPT_PASSTHROUGH_SUBCLASS
    | ormsgpack.OPT_PASSTHROUGH_DATACLASS
    | ormsgpack.OPT_PASSTHROUGH_DATETIME
    | ormsgpack.OPT_PASSTHROUGH_ENUM
    | ormsgpack.OPT_PASSTHROUGH_UUID
    | ormsgpack.OPT_PASSTHROUGH_BIG_INT
)
# The fast path leaves OPT_NON_STR_KEYS off: with it ormsgpack turns enum,
# datetime and UUID keys into strings without a word. Other keys fail over to
# _prepare, which checks them and then packs with the option on.
_OPT_KEYS = _OPT | ormsgpack.OPT_NON_STR_KEYS
_DECODE_OPT = ormsgpack.OPT_NON_STR_KEYS

_packb = ormsgpack.packb
_unpackb = ormsgpack.unpackb
_Ext = ormsgpack.Ext
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_PID_HEAD = struct.Struct(">QI")  # serial, creation
_U32_MAX = 2**32 - 1
_CACHE_SIZE = 4096  # pids kept by the encoder and by the decoder


def _id_payload(node: str, serial: int) -> bytes:
    return _U64.pack(serial) + node.encode()


def _pid_payload(pid: Pid) -> bytes:
    return _PID_HEAD.pack(pid.serial, pid.creation) + pid.node.encode()


def _make_defaults() -> list[Callable[[Any], Any]]:
    # ormsgpack calls `default` for Pid, Ref and (with PASSTHROUGH_TUPLE) tuple.
    # A tuple's items are packed by a nested packb, so each tuple level gets
    # its own default one step down the list: the chain ends, and so does the
    # recursion, at DEPTH_CEILING with no per-call state.
    defaults: list[Callable[[Any], Any]] = []
    # The same few pids are sent again and again. Keyed by id() and holding
    # the pid itself, so the id cannot be reused while the entry lives; Pid's
    # own __hash__ and __eq__ would cost more than they save.
    cache: dict[int, tuple[Pid, Any]] = {}

    def make(level: int) -> Callable[[Any], Any]:
        def default(obj: Any) -> Any:
            t = type(obj)
            if t is Pid:
                hit = cache.get(id(obj))
                if hit is not None and hit[0] is obj:
                    return hit[1]
                if _NODE_RE.fullmatch(obj.node) is None:  # the receiver would refuse it
                    raise TypeError
                ext = _Ext(EXT_PID, _pid_payload(obj))
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cache[id(obj)] = (obj, ext)
                return ext
            if t is tuple and level < DEPTH_CEILING:
                return _Ext(EXT_TUPLE, _packb(list(obj), default=defaults[level + 1], option=_OPT))
            if t is Ref and _NODE_RE.fullmatch(obj.node) is not None:
                return _Ext(EXT_REF, _id_payload(obj.node, obj.serial))
            raise TypeError  # ormsgpack replaces it; _prepare says what and where

        return default

    defaults.extend(make(level) for level in range(DEPTH_CEILING + 1))
    return defaults


_DEFAULTS = _make_defaults()
_DEFAULT = _DEFAULTS[0]

# Bytes that can start a container (fixmap, fixarray, array16/32, map16/32).
# Each nesting level needs its own header byte, so a frame with no more of
# them than max_depth cannot be too deep: one C call instead of a walk.
_NOT_CONTAINER = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))


def _where(path: list[str]) -> str:
    return f"(at {''.join(path)})" if path else "(at the top level)"


def _a(t: type) -> str:
    name = t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    return f"an {name}" if name[0] in "aeiouAEIOU" else f"a {name}"


def _too_deep(max_depth: int, path: list[str]) -> TermTooLarge:
    where = f" {_where(path)}" if path else ""
    return TermTooLarge(f"cannot send a term nested deeper than {max_depth} levels{where}")


def _check_int(obj: int, path: list[str]) -> None:
    if not _INT_MIN <= obj <= _UINT_MAX:
        raise UnsendableTerm(
            f"cannot send an int of {obj.bit_length()} bits; the wire carries -2**63 .. 2**64-1 "
            f"{_where(path)}"
        )


def _check_str(obj: str, path: list[str]) -> None:
    try:
        obj.encode()
    except UnicodeEncodeError:
        raise UnsendableTerm(f"cannot send a str with unpaired surrogates {_where(path)}") from None


def _id_ext(tag: int, obj: Pid | Ref, path: list[str]) -> Any:
    node, serial = obj.node, obj.serial
    if not is_node_name(node) or type(serial) is not int or not 0 <= serial <= _UINT_MAX:
        raise UnsendableTerm(
            f"cannot send {type(obj).__name__} {obj!r}: bad node or serial {_where(path)}"
        )
    if isinstance(obj, Pid):
        creation = obj.creation
        if type(creation) is not int or not 0 <= creation <= _U32_MAX:
            raise UnsendableTerm(f"cannot send Pid {obj!r}: bad creation {_where(path)}")
        return _Ext(tag, _pid_payload(obj))
    return _Ext(tag, _id_payload(node, serial))


def _key_kind(key: Any, depth: int, max_depth: int, path: list[str]) -> bool:
    """Check a key of the dict at ``path``; True if it can be a native msgpack key.

    Native keys hold no Pid or Ref; ``depth`` counts the levels down to the dict.
    """
    t = type(key)
    if t is str:
        _check_str(key, path)
        return True
    if key is None or t is bool or t is float or t is bytes:
        return True
    if t is int:
        _check_int(key, path)
        return True
    if t is Pid or t is Ref:
        return False
    if t is tuple:
        if depth >= max_depth:
            raise _too_deep(max_depth, path)
        native = True
        for item in key:
            native = _key_kind(item, depth + 1, max_depth, path) and native
        return native
    raise UnsendableTerm(f"cannot send {_a(t)} in a dict key {_where(path)}")


def _prepare(obj: Any, depth: int, max_depth: int, path: list[str]) -> Any:
    """The slow path: check ``obj`` and return it with Pid, Ref, tuple as Ext."""
    t = type(obj)
    if t is str:
        _check_str(obj, path)
        return obj
    if obj is None or t is bool or t is float or t is bytes:
        return obj
    if t is int:
        _check_int(obj, path)
        return obj
    if t is Pid:
        return _id_ext(EXT_PID, obj, path)
    if t is Ref:
        return _id_ext(EXT_REF, obj, path)
    if t is bytearray or t is memoryview:
        return bytes(obj)
    if t is not list and t is not tuple and t is not dict:
        raise UnsendableTerm(f"cannot send {_a(t)} {_where(path)}")
    if depth >= max_depth:
        # Also where a cyclic list or dict ends up.
        raise _too_deep(max_depth, path)
    depth += 1
    if t is not dict:
        items = []
        for i, item in enumerate(obj):
            path.append(f"[{i}]")
            items.append(_prepare(item, depth, max_depth, path))
            path.pop()
        return items if t is list else _Ext(EXT_TUPLE, _packb(items, option=_OPT_KEYS))
    native = True
    for key in obj:
        native = _key_kind(key, depth, max_depth, path) and native
    if native:
        out = {}
        for key, value in obj.items():
            path.append(f"[{_short_repr(key)}]")
            out[key] = _prepare(value, depth, max_depth, path)
            path.pop()
        return out
    flat = []
    for key, value in obj.items():
        path.append(f"[{_short_repr(key)}]")
        flat.append(_prepare(key, depth, max_depth, path))
        flat.append(_prepare(value, depth, max_depth, path))
        path.pop()
    return _Ext(EXT_MAP, _packb(flat, option=_OPT_KEYS))


def _short_repr(obj: Any) -> str:
    text = _safe_repr(obj)
    return text if len(text) <= 40 else text[:37] + "..."


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:  # a broken __repr__ must not hide the real error
        return f"<{type(obj).__name__} object>"


def pack_fields(
    fields: list[Any], roots: list[str], max_depth: int, *, flat: bool = False
) -> bytes:
    """Pack a list of terms (a frame's body) as one msgpack array.

    ``roots`` names each item for error messages (``""`` for a message term,
    so paths read ``[1]['k']``). The body is checked to nest no deeper than
    ``max_depth`` below its own array, unless the caller knows it is ``flat``
    (no field is a container). Raises :class:`UnsendableTerm` or
    :class:`TermTooLarge`.
    """
    try:
        body: bytes = _packb(fields, default=_DEFAULT, option=_OPT)
    except TypeError:
        body = _packb_prepared(_prepare_all(fields, roots, max_depth))
    if flat:
        return body
    if len(body) > max_depth + 1 and len(body.translate(None, _NOT_CONTAINER)) > max_depth + 1:
        try:
            scan(body, max_depth + 1)
        except TooDeep:
            _prepare_all(fields, roots, max_depth)  # raises, with the path
            raise _too_deep(max_depth, []) from None
    return body


_FLAT_TYPES = frozenset({bytes, str, int, float, bool, type(None), Pid, Ref})
_FIXEXT_OF = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}  # payload size -> header
# The (src, dst) prefixes of pair frames sent lately, by the ids of the two
# (held in the entry, so an id cannot be reused while it lives).
_heads_out: dict[tuple[int, int], tuple[Any, Any, bytes]] = {}
_ref_nodes: set[str] = set()  # node names of Refs already checked


def _ext_head(tag: int, n: int) -> bytes:
    """The header of an ext of ``n`` payload bytes, as ormsgpack writes it
    (fixext for 1, 2, 4, 8, 16 bytes)."""
    fixed = _FIXEXT_OF.get(n)
    if fixed is not None:
        return bytes((fixed, tag))
    if n < 256:
        return bytes((0xC7, n, tag))
    if n < 65536:
        return bytes((0xC8, n >> 8, n & 0xFF, tag))
    return b"\xc9" + _U32.pack(n) + bytes((tag,))


def _ext_bytes(tag: int, payload: bytes) -> bytes:
    """An ext's bytes as ormsgpack writes them."""
    return _ext_head(tag, len(payload)) + payload


# Looked up, not built, per frame: the array and type bytes a pair frame opens
# with (4 or 5 items, a fixint type), and a tuple ext's header by payload size.
_OPEN4 = [bytes((0x94, t)) for t in range(128)]
_OPEN5 = [bytes((0x95, t)) for t in range(128)]
_TUPLE_HEAD = [_ext_head(EXT_TUPLE, n) for n in range(256)]


def pack_pair(
    type_: int, src: Pid, dst: Pid | str, ref: Ref | None, term: Any,
    roots: list[str], max_depth: int,
) -> bytes:
    """``pack_fields([type_, src, dst, ref, term], roots, max_depth)`` (no
    ``ref`` when it is None) for the frames that carry the traffic, quicker:
    the bytes of a (src, dst) prefix sent before are kept, a Ref and a tuple
    term are packed directly. The same bytes and the same errors: anything
    unusual takes :func:`pack_fields` (``type_`` is a fixint, 0-127)."""
    try:
        hit = _heads_out.get((id(src), id(dst)))
        if hit is not None and hit[0] is src and hit[1] is dst:
            head = hit[2]
        else:
            if src.__class__ is not Pid or not (dst.__class__ is Pid or dst.__class__ is str):
                raise TypeError
            head = _packb([src, dst], default=_DEFAULT, option=_OPT)[1:]
            if len(_heads_out) >= _CACHE_SIZE:
                _heads_out.clear()
            _heads_out[(id(src), id(dst))] = (src, dst, head)
        if ref is None:
            parts = [_OPEN4[type_], head]
        else:
            node = ref.node
            if ref.__class__ is not Ref or node not in _ref_nodes:
                if ref.__class__ is not Ref or _NODE_RE.fullmatch(node) is None:
                    raise TypeError
                if len(_ref_nodes) >= _CACHE_SIZE:
                    _ref_nodes.clear()
                _ref_nodes.add(node)
            parts = [_OPEN5[type_], head, _ext_bytes(EXT_REF, _id_payload(node, ref.serial))]
        t = term.__class__
        if t is tuple:
            # Its header and its payload (the items' array) go to the join apart.
            data = _packb(list(term), default=_DEFAULTS[1], option=_OPT)
            n = len(data)
            parts.append(_TUPLE_HEAD[n] if n < 256 else _ext_head(EXT_TUPLE, n))
        else:
            data = _packb(term, default=_DEFAULT, option=_OPT)
        # Each level of nesting has a container header byte: no more of them
        # than max_depth, no more levels (or pack_fields measures).
        if t not in _FLAT_TYPES and len(data) > max_depth and (
            len(data.translate(None, _NOT_CONTAINER)) > max_depth
        ):
            raise TypeError  # it may nest too deep: pack_fields measures
        parts.append(data)
        return b"".join(parts)
    except Exception:
        fields = [type_, src, dst, term] if ref is None else [type_, src, dst, ref, term]
        return pack_fields(fields, roots, max_depth)


def _packb_prepared(prepared: Any) -> bytes:
    try:
        data: bytes = _packb(prepared, option=_OPT_KEYS)
    except TypeError as e:  # _prepare let through something ormsgpack refuses
        raise UnsendableTerm(f"cannot send this term: {e}") from e
    return data


def _prepare_all(fields: list[Any], roots: list[str], max_depth: int) -> list[Any]:
    return [
        _prepare(value, 0, max_depth, [root] if root else [])
        for value, root in zip(fields, roots, strict=True)
    ]


def encode_term(obj: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode one term as msgpack bytes.

    Raises :class:`UnsendableTerm` (a ``TypeError``) naming the type and where
    it sits, e.g. ``cannot send a set (at [1]['k'])``, or
    :class:`TermTooLarge` when the term nests deeper than ``max_depth``.
    """
    try:
        data: bytes = _packb(obj, default=_DEFAULT, option=_OPT)
    except TypeError:
        data = _packb_prepared(_prepare(obj, 0, max_depth, []))
    if len(data) > max_depth and len(data.translate(None, _NOT_CONTAINER)) > max_depth:
        try:
            scan(data, max_depth)
        except TooDeep:
            _prepare(obj, 0, max_depth, [])
            raise _too_deep(max_depth, []) from None
    return data


def reason_term(reason: Any) -> Any:
    """An exit reason as it crosses the wire.

    A term stays itself; an exception becomes its repr (``"ValueError('boom')"``);
    anything else becomes its repr too. Reprs are cut at 1,000 characters.
    """
    if isinstance(reason, BaseException):
        return _safe_repr(reason)[:1000]
    try:
        encode_term(reason)
    except (UnsendableTerm, TermTooLarge):
        return _safe_repr(reason)[:1000]
    return reason


# --------------------------------------------------------------------------- scan

# Per first byte: total size of a fixed-size token, else 0.
_FIXED = [0] * 256
for _b in range(0x00, 0x80):
    _FIXED[_b] = 1
for _b in range(0xE0, 0x100):
    _FIXED[_b] = 1
for _b in range(0xA0, 0xC0):
    _FIXED[_b] = 1 + (_b - 0xA0)  # fixstr
for _b, _size in {
    0xC0: 1,
    0xC2: 1,
    0xC3: 1,
    0xCA: 5,
    0xCB: 9,
    0xCC: 2,
    0xCD: 3,
    0xCE: 5,
    0xCF: 9,
    0xD0: 2,
    0xD1: 3,
    0xD2: 5,
    0xD3: 9,
}.items():
    _FIXED[_b] = _size
# For the others: width of the length field (str/bin/ext/array/map 8/16/32).
_WIDTH = {
    0xC4: 1,
    0xC5: 2,
    0xC6: 4,
    0xD9: 1,
    0xDA: 2,
    0xDB: 4,
    0xC7: 1,
    0xC8: 2,
    0xC9: 4,
    0xDC: 2,
    0xDD: 4,
    0xDE: 2,
    0xDF: 4,
}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_ONE_BYTE_ITEMS = bytes(b for b in range(256) if _FIXED[b] == 1)


def _truncated() -> MalformedFrame:
    return MalformedFrame("remote peer sent a frame that ends inside a msgpack object")


def _array_header(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(count, offset after the header) of the array an ext 3/4 payload must hold."""
    if pos >= end:
        raise MalformedFrame("remote peer sent an empty tuple or map ext payload")
    b = data[pos]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F, pos + 1
    if b == 0xDC or b == 0xDD:
        width = 2 if b == 0xDC else 4
        if pos + 1 + width > end:
            raise _truncated()
        return int.from_bytes(data[pos + 1 : pos + 1 + width]), pos + 1 + width
    raise MalformedFrame("remote peer sent a tuple or map ext whose payload is not an array")


def scan(data: bytes, max_depth: int, start: int = 0) -> int:
    """Walk the msgpack object at ``data[start:]``; return the offset where it ends.

    Iterative, allocation-light and run before any decoding: it checks that
    every item fits in ``data``, that containers nest at most ``max_depth``
    deep (a tuple counts as one level), that ext types are RUSM's and that
    ext payloads hold exactly what they should. Raises :class:`MalformedFrame`,
    :class:`TooDeep` or :class:`UnknownExtType`.
    """
    n = len(data)
    pos = start
    left = 1  # items still to read at the current level
    stack: list[tuple[int, int]] = []  # enclosing levels: (their left, where this level must end)
    fixed = _FIXED
    while True:
        if pos >= n:
            raise _truncated()
        b = data[pos]
        left -= 1
        size = fixed[b]
        if size:
            pos += size
            if left:
                continue
        else:
            # Inline: what a Msg frame is made of (containers, str8/bin8, ext8
            # Pids); the rarer forms go through _other.
            count = bound = -1
            if 0x80 <= b <= 0x9F:  # fixmap, fixarray
                count = (b & 0x0F) * 2 if b < 0x90 else b & 0x0F
                pos += 1
            elif b == 0xC4 or b == 0xD9:  # bin8, str8
                if pos + 1 >= n:
                    raise _truncated()
                pos += 2 + data[pos + 1]
            elif b == 0xC7:  # ext8
                if pos + 2 >= n:
                    raise _truncated()
                length = data[pos + 1]
                tag = data[pos + 2]
                if (tag == 1 or tag == 2) and length >= 9:  # a Pid or a Ref
                    pos += 3 + length
                else:
                    count, bound, pos = _ext(data, tag, pos + 3, length)
            else:
                count, bound, pos = _other(data, b, pos)
            if count >= 0:  # a container (array, map, tuple, ext map)
                if len(stack) >= max_depth:
                    raise TooDeep(f"remote peer sent a term nested deeper than {max_depth} levels")
                if count == 0:
                    if bound >= 0 and bound != pos:
                        raise MalformedFrame("remote peer sent an ext payload with extra bytes")
                else:
                    if count > n - pos:  # every item takes at least one byte
                        raise MalformedFrame(
                            f"remote peer sent a container of {count} items in {n - pos} bytes"
                        )
                    stack.append((left, bound))
                    left = count
        while left == 0:
            if not stack:
                if pos > n:
                    raise _truncated()
                return pos
            left, bound = stack.pop()
            if bound >= 0 and bound != pos:
                raise MalformedFrame("remote peer sent an ext payload that its items overrun")


def _other(data: bytes, b: int, pos: int) -> tuple[int, int, int]:
    """The less common msgpack items; return (count, bound, pos) as ``scan`` needs them."""
    n = len(data)
    if b in _FIXEXT:
        if pos + 2 > n:
            raise _truncated()
        return _ext(data, data[pos + 1], pos + 2, _FIXEXT[b])
    width = _WIDTH.get(b)
    if width is None:
        raise MalformedFrame("remote peer sent the reserved msgpack byte 0xc1")
    if pos + 1 + width > n:
        raise _truncated()
    length = int.from_bytes(data[pos + 1 : pos + 1 + width])
    pos += 1 + width
    if b >= 0xDE:  # map16/32
        return length * 2, -1, pos
    if b >= 0xDC:  # array16/32
        # A long run of one-byte items (small ints, nil, bools) is checked in
        # one C call and then passed as if the array were empty.
        run = data[pos : pos + length]
        if len(run) == length and not run.translate(None, _ONE_BYTE_ITEMS):
            return 0, -1, pos + length
        return length, -1, pos
    if b >= 0xC7 and b <= 0xC9:  # ext8/16/32: the type follows the length
        if pos >= n:
            raise _truncated()
        return _ext(data, data[pos], pos + 1, length)
    return -1, -1, pos + length  # str/bin 8/16/32


def _ext(data: bytes, tag: int, start: int, length: int) -> tuple[int, int, int]:
    """Check an ext item; return (count, bound, pos) as ``scan`` needs them."""
    end = start + length
    if end > len(data):
        raise _truncated()
    if tag == EXT_PID:
        if length < 13:
            raise MalformedFrame("remote peer sent a Pid ext shorter than 13 bytes")
        return -1, -1, end
    if tag == EXT_REF:
        if length < 9:
            raise MalformedFrame("remote peer sent a Ref ext shorter than 9 bytes")
        return -1, -1, end
    if tag in (EXT_TUPLE, EXT_MAP):
        count, pos = _array_header(data, start, end)
        if tag == EXT_MAP and count % 2:
            raise MalformedFrame("remote peer sent a map ext with an odd number of items")
        return count, end, pos
    tag = tag - 256 if tag > 127 else tag
    raise UnknownExtType(f"remote peer sent msgpack ext type {tag}, which RUSM does not define")


# --------------------------------------------------------------------------- decode

_local = threading.local()  # why the last ext_hook failed: ormsgpack drops the exception
_pid_cache: dict[bytes, Pid] = {}
_nodes: dict[bytes, str] = {}  # node names already checked, by their UTF-8 bytes


def _node(data: bytes) -> str:
    node = _nodes.get(data)
    if node is None:
        node = data.decode()
        if _NODE_RE.fullmatch(node) is None:
            raise ValueError(f"bad node name {node[:60]!r} in a Pid or Ref")
        if len(_nodes) >= _CACHE_SIZE:
            _nodes.clear()
        _nodes[data] = node
    return node


def _parse_pid(data: bytes) -> tuple[str, int, int]:
    node = _node(data[12:])
    serial, creation = _PID_HEAD.unpack_from(data)
    return node, serial, creation


def _ext_hook(tag: int, data: bytes) -> Any:
    try:
        if tag == EXT_PID:
            pid = _pid_cache.get(data)
            if pid is None:
                pid = Pid(*_parse_pid(data))
                if len(_pid_cache) >= _CACHE_SIZE:
                    _pid_cache.clear()
                _pid_cache[data] = pid
            return pid
        if tag == EXT_TUPLE:
            return tuple(_unpackb(data, ext_hook=_ext_hook, option=_DECODE_OPT))
        if tag == EXT_REF:
            return Ref(_node(data[8:]), _U64.unpack_from(data)[0])
        if tag == EXT_MAP:
            items = iter(_unpackb(data, ext_hook=_ext_hook, option=_DECODE_OPT))
            return dict(zip(items, items, strict=True))
        raise ValueError(f"unknown ext type {tag}")  # scan() rejects these first
    except Exception as e:
        _local.error = e
        raise


def unpack(data: bytes) -> Any:
    """Decode msgpack that :func:`scan` has accepted; raises :class:`MalformedFrame`."""
    try:
        return _unpackb(data, ext_hook=_ext_hook, option=_DECODE_OPT)
    except (ValueError, TypeError) as e:
        cause = getattr(_local, "error", None)
        _local.error = None
        detail = f"{e}: {cause}" if cause is not None else str(e)
        raise MalformedFrame(f"remote peer sent an undecodable term ({detail})") from (cause or e)


# --------------------------------------------------------------------------- frames

# The pair frames that carry the traffic all open the same way: a fixarray of
# 3-5 items, a fixint type, the sender's Pid as an ext8 (a fixext16 when its
# payload is 16 bytes), the destination as such a Pid or a str; then, for 5
# items, a Ref (ext8 or fixext16); then, for 4 or 5, a term.
# decode_checked recognises that shape by byte positions. The (src, dst)
# prefix recurs frame after frame, so its bytes, once checked and decoded,
# map to the two decoded items: on a hit neither is parsed again.
_heads: dict[bytes, tuple[Pid, Pid | str]] = {}


def decode_checked(body: bytes, max_depth: int) -> Any:
    """Decode the one msgpack object that must fill ``body``, from untrusted bytes.

    The same as ``scan(body, max_depth)``, a check for trailing bytes and
    :func:`unpack`: the same result and the same exceptions
    (:class:`MalformedFrame`, :class:`TooDeep`, :class:`UnknownExtType`,
    :class:`TrailingBytes`), but quick for the hot pair frames (see
    ``_heads``). Their term is measured from its header when it is nil, a
    bool, a number, a str, a bin, a Pid or a Ref, or walked here when it is
    a tuple of those; any other term is walked by :func:`scan`. ormsgpack
    sees a body only once it is known to be well formed. Any other body,
    and any body that fails on the way, takes the reference path, which
    says precisely what is wrong.
    """
    try:
        count = body[0] - 0x90
        if 3 <= count <= 5 and body[1] < 0x80 and max_depth > 0:
            # A fixarray, a fixint type; where the destination starts if the
            # source is a Pid, and where it ends if a Pid or a str.
            p = 5 + body[3] if body[2] == 0xC7 else 20
            c = body[p]
            if c == 0xC7:
                q = p + 3 + body[p + 1]
            elif c == 0xD8:
                q = p + 18
            elif 0xA0 <= c <= 0xBF:
                q = p + c - 0x9F
            elif c == 0xD9:
                q = p + 2 + body[p + 1]
            else:
                q = 0
            key = body[2:q]
            head = _heads.get(key)
            if head is None and not (
                q
                and (
                    (body[2] == 0xC7 and body[4] == EXT_PID and body[3] >= 13)
                    or (body[2] == 0xD8 and body[3] == EXT_PID)
                )
                and (c != 0xC7 or (body[p + 2] == EXT_PID and body[p + 1] >= 13))
                and (c != 0xD8 or body[p + 1] == EXT_PID)
            ):
                raise _NotHot
            pos = q
            if count == 5:  # the Ref's payload is body[p:pos]
                c = body[pos]
                if c == 0xC7 and body[pos + 2] == EXT_REF and body[pos + 1] >= 9:
                    p = pos + 3
                    pos = p + body[pos + 1]
                elif c == 0xD8 and body[pos + 1] == EXT_REF:
                    p = pos + 2
                    pos += 18
                else:
                    raise _NotHot
            skip = 0  # > 0: the term is a bin (skip its header); < 0: a flat tuple
            if count == 3:
                end = pos
            else:
                c = body[pos]
                end = _FIXED[c]
                if end:
                    end += pos
                elif c == 0xC4 or c == 0xD9:  # bin8, str8
                    end = pos + 2 + body[pos + 1]
                    skip = 2 if c == 0xC4 else 0
                elif c == 0xC5 or c == 0xDA:  # bin16, str16
                    end = pos + 3 + (body[pos + 1] << 8 | body[pos + 2])
                    skip = 3 if c == 0xC5 else 0
                elif c == 0xC6 or c == 0xDB:  # bin32, str32 (a short slice makes end too big)
                    end = pos + 5 + int.from_bytes(body[pos + 1 : pos + 5])
                    skip = 5 if c == 0xC6 else 0
                else:
                    end = _ext8_end(body, pos, max_depth) if c == 0xC7 else -1
                    if end < 0:  # a container or a rarer form, at depth 2 of the frame
                        end = scan(body, max_depth - 1, pos)
                    elif body[pos + 2] == EXT_TUPLE:
                        skip = -1
            if end != len(body):
                raise _NotHot
            if head is None:
                items = unpack(body)
                if len(_heads) >= _CACHE_SIZE:
                    _heads.clear()
                _heads[key] = (items[1], items[2])
                return items
            items = [body[1], *head]
            if count == 5:
                items.append(_ext_hook(EXT_REF, body[p:pos]))
            if count > 3:
                if skip > 0:
                    items.append(body[pos + skip :])
                elif skip < 0:
                    items.append(tuple(_unpackb(body[pos + 3 :], ext_hook=_ext_hook)))
                else:
                    items.append(_unpackb(body[pos:], ext_hook=_ext_hook, option=_DECODE_OPT))
            return items
    except Exception:
        # Not the hot shape, or something wrong with it: the reference path
        # says what. A failed ext_hook left its error for unpack to report.
        _local.error = None
    end = scan(body, max_depth)
    if end != len(body):
        raise TrailingBytes(f"remote peer sent {len(body) - end} bytes after the msgpack object")
    return unpack(body)


class _NotHot(Exception):
    """Internal to decode_checked: leave the hot path for the reference path."""


def _ext8_end(data: bytes, pos: int, max_depth: int) -> int:
    """Where the ext8 at ``pos`` ends if it is a Pid, a Ref or a simple tuple, else -1.

    A simple tuple holds scalars measured from their first bytes, str8, bin8,
    Pids, Refs (ext8, fixext16) and simple tuples (ext8), ending exactly where
    its ext does; it is the second level of a frame, so it needs
    ``max_depth`` 2, and each tuple inside it one more. Else scan has to look.
    """
    length = data[pos + 1]
    tag = data[pos + 2]
    end = pos + 3 + length
    if (tag == EXT_PID and length >= 13) or (tag == EXT_REF and length >= 9):
        return end
    count = data[pos + 3] - 0x90
    if tag != EXT_TUPLE or max_depth < 2 or not 0 <= count <= 15:
        return -1
    pos += 4
    fixed = _FIXED
    while count:
        c = data[pos]
        size = fixed[c]
        if size:
            pos += size
        elif c == 0xC4 or c == 0xD9:
            pos += 2 + data[pos + 1]
        elif c == 0xC7 and (
            (data[pos + 2] == EXT_PID and data[pos + 1] >= 13)
            or (data[pos + 2] == EXT_REF and data[pos + 1] >= 9)
        ):
            pos += 3 + data[pos + 1]
        elif c == 0xD8 and (data[pos + 1] == EXT_PID or data[pos + 1] == EXT_REF):
            pos += 18
        elif c == 0xC7 and data[pos + 2] == EXT_TUPLE:  # a tuple in the tuple, one level down
            pos = _ext8_end(data, pos, max_depth - 1)
            if pos < 0:
                return -1
        else:
            return -1
        count -= 1
    return end if pos == end else -1


def decode_term(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode one term from untrusted bytes.

    Raises :class:`MalformedFrame`, :class:`TooDeep`, :class:`UnknownExtType`
    or :class:`TrailingBytes`; nothing else.
    """
    end = scan(data, max_depth)
    if end != len(data):
        raise TrailingBytes(f"remote peer sent {len(data) - end} bytes after the term")
    return unpack(data)
