"""decode_checked: the fast frame decoder agrees with scan + trailing check + unpack."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rusm.actors.pid import Pid, Ref
from rusm.net import terms
from rusm.net.terms import (
    DEPTH_CEILING,
    MalformedFrame,
    ProtocolError,
    TooDeep,
    TrailingBytes,
    UnknownExtType,
    decode_checked,
    pack_fields,
)

LONDON = Pid("london", 42, 123456789)
TOKYO = Pid("tokyo", 7, 987654321)
REF = Ref("london", 99)
FRAME_DEPTH = 33  # what the wire decoder passes: the frame's array + max_depth 32


# --------------------------------------------------------------------------- helpers


def reference(body: bytes, max_depth: int) -> Any:
    """What decoding a body cost before decode_checked: scan, trailing check, unpack."""
    end = terms.scan(body, max_depth)
    if end != len(body):
        raise TrailingBytes(f"remote peer sent {len(body) - end} bytes after a frame's array")
    return terms.unpack(body)


def outcome(decode: Callable[[bytes, int], Any], body: bytes, max_depth: int) -> Any:
    """The exception class raised, or the value's type and repr (repr tells a tuple
    from a list, True from 1, 1.0 from 1, -0.0 from 0.0, and NaN equals itself)."""
    try:
        value = decode(body, max_depth)
    except Exception as e:
        return type(e)
    return type(value), repr(value)


def scan_accepts(body: bytes, max_depth: int) -> bool:
    try:
        return terms.scan(body, max_depth) == len(body)
    except ProtocolError:
        return False


@contextmanager
def ormsgpack_calls() -> Iterator[list[bytes]]:
    """Record what reaches ormsgpack's decoder meanwhile (decode_checked catches
    whatever a stand-in would raise, so the record is what a test can check)."""
    calls: list[bytes] = []
    real = terms._unpackb

    def spy(data: bytes, *args: Any, **kwargs: Any) -> Any:
        calls.append(data)
        return real(data, *args, **kwargs)

    terms._unpackb = spy  # type: ignore[assignment]
    try:
        yield calls
    finally:
        terms._unpackb = real


def assert_agrees(body: bytes, max_depth: int = FRAME_DEPTH) -> Any:
    """decode_checked gives what the reference gives, on a cold and on a warm cache,
    and shows ormsgpack nothing that scan refuses."""
    want = outcome(reference, body, max_depth)
    accepted = scan_accepts(body, max_depth)
    for _ in range(2):
        with ormsgpack_calls() as calls:
            assert outcome(decode_checked, body, max_depth) == want, body.hex()
        assert accepted or not calls, body.hex()
    return want


def fields(body_fields: list[Any]) -> bytes:
    return pack_fields(body_fields, [""] * len(body_fields), DEPTH_CEILING)


def ext8(tag: int, payload: bytes) -> bytes:
    return bytes([0xC7, len(payload), tag]) + payload


def pid_ext(node: str = "london", serial: int = 42, creation: int = 5) -> bytes:
    return ext8(terms.EXT_PID, struct.pack(">QI", serial, creation) + node.encode())


def ref_ext(node: str = "london", serial: int = 9) -> bytes:
    return ext8(terms.EXT_REF, struct.pack(">Q", serial) + node.encode())


def fixext16(tag: int, payload: bytes) -> bytes:
    assert len(payload) == 16
    return bytes([0xD8, tag]) + payload


SRC = pid_ext()
DST = pid_ext("tokyo", 7, 1)
SHORT_NODE_PID = fixext16(terms.EXT_PID, struct.pack(">QI", 3, 4) + b"node")


def hot(term: bytes, *, src: bytes = SRC, dst: bytes = DST, ref: bytes | None = None) -> bytes:
    """A Msg body (a CallRequest body with ``ref``) whose term is the given raw msgpack."""
    if ref is None:
        return b"\x94\x0a" + src + dst + term
    return b"\x95\x11" + src + dst + ref + term


def must_not_scan(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("scan walked a hot frame")


# --------------------------------------------------------------------------- strategies

node_names = st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True)
serials = st.integers(0, 2**64 - 1)
pids = st.builds(Pid, node_names, serials, st.integers(0, 2**32 - 1))
refs = st.builds(Ref, node_names, serials)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.text(min_size=30, max_size=300)  # str8, str16
    | st.sampled_from([b"b" * 300, b"b" * 70000, "s" * 70000])  # bin16, bin32, str32
)
hashable_terms = st.recursive(
    scalars | pids | refs, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6
)
terms_st = st.recursive(
    scalars | pids | refs,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(hashable_terms, inner, max_size=4)
    ),
    max_leaves=24,
)
small_tuples = st.lists(scalars | pids | refs, max_size=5).map(tuple)
dsts = pids | node_names | st.text(min_size=32, max_size=40)
frame_types = st.integers(0, 127)
frames_st = st.one_of(
    st.tuples(frame_types, pids, dsts).map(list),
    st.tuples(frame_types, pids, dsts, terms_st | small_tuples | pids | refs).map(list),
    st.tuples(frame_types, pids, dsts, refs, terms_st | small_tuples).map(list),
    st.lists(terms_st, max_size=6),
    terms_st,
)
depths = st.sampled_from([0, 1, 2, 3, 4, 8, FRAME_DEPTH, DEPTH_CEILING + 1])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """An encoded frame, then one or a few of the edits a hostile peer could make."""
    body = bytearray(draw(st.builds(fields, frames_st.filter(lambda f: type(f) is list))))
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["cut", "append", "set", "insert", "delete"]))
        i = draw(st.integers(0, len(body)))
        if edit == "cut":
            del body[i:]
        elif edit == "append":
            body += draw(st.binary(min_size=1, max_size=4))
        elif edit == "set" and i < len(body):
            body[i] = draw(st.integers(0, 255))
        elif edit == "insert":
            body[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif edit == "delete":
            del body[i : i + draw(st.integers(1, 3))]
    return bytes(body)


raw_terms = st.binary(max_size=40) | st.sampled_from(
    [
        b"\x91" * 1000 + b"\xc0",
        b"\xdd\xff\xff\xff\xff\xc0",
        b"\xdd\x0f\xff\xff\xff" * 3,
        b"\xdf\x7f\xff\xff\xff",
        b"\xc9\xff\xff\xff\xff\x03",
        b"\xdb\xff\xff\xff\xff",
        b"\xc6\x00\x00\x01\x00",
        ext8(9, b"x"),
        ext8(terms.EXT_TUPLE, b"\x91\x01\x02"),
        ext8(terms.EXT_TUPLE, b"\x92\x01"),
        ext8(terms.EXT_TUPLE, b"\x91\xda\x00"),
        ext8(terms.EXT_TUPLE, b"\x92\xc5\x00\x01"),
    ]
)


# --------------------------------------------------------------------------- properties

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@PROPERTY
@given(frames_st, depths)
def test_every_encoded_frame_decodes_as_the_reference_decodes_it(frame: Any, depth: int) -> None:
    body = fields(frame) if type(frame) is list else terms.encode_term(frame, max_depth=64)
    assert_agrees(body, depth)


@PROPERTY
@given(mutated(), depths)
def test_every_edited_frame_decodes_or_fails_as_the_reference(body: bytes, depth: int) -> None:
    assert_agrees(body, depth)


@PROPERTY
@given(
    st.sampled_from(
        [
            SRC,
            SHORT_NODE_PID,
            fixext16(5, bytes(16)),
            fixext16(1, bytes(16)),
            pid_ext(node=""),
            ext8(1, b"x" * 9),
            ext8(1, b"x" * 5),
            ext8(3, b"\x90"),
            b"\xa1x",
        ]
    ),
    st.sampled_from(
        [
            DST,
            SHORT_NODE_PID,
            fixext16(2, bytes(8) + b"eight-ch"),
            fixext16(3, b"\x91" * 15 + b"\xc0"),
            b"\xa4name",
            b"\xd9\x01n",
            b"\xa0",
            ext8(1, b"\x00" * 10),
            ext8(1, b"\x00" * 4),
            ext8(5, b"\x00" * 13),
            ext8(3, b"\x91" * 14 + b"\xc0"),  # a deep tuple where a Pid goes
            b"\x01",
        ]
    ),
    st.sampled_from(
        [
            None,
            ref_ext(),
            ext8(2, b"\x00" * 8),
            ext8(1, b"\x00" * 13 + b"x"),
            fixext16(2, bytes(8) + b"eight-ch"),
            fixext16(2, bytes(16)),
            fixext16(6, bytes(16)),
        ]
    ),
    raw_terms,
    st.binary(max_size=3),
    depths,
)
@example(SRC, DST, None, b"\xc4\x20" + b"x" * 32, b"", FRAME_DEPTH)
def test_hot_shaped_bodies_with_raw_parts_decode_or_fail_as_the_reference(
    src: bytes, dst: bytes, ref: bytes | None, term: bytes, tail: bytes, depth: int
) -> None:
    assert_agrees(hot(term, src=src, dst=dst, ref=ref) + tail, depth)


@PROPERTY
@given(st.binary(max_size=64), depths)
def test_random_bytes_decode_or_fail_as_the_reference(body: bytes, depth: int) -> None:
    assert_agrees(body, depth)


@PROPERTY
@given(st.binary(min_size=1, max_size=48))
def test_random_bytes_after_a_hot_header_decode_or_fail_as_the_reference(tail: bytes) -> None:
    assert_agrees(hot(b"") + tail)
    assert_agrees(hot(b"", ref=ref_ext()) + tail)
    assert_agrees(hot(b"\xc7" + tail[:1] + b"\x03" + tail[1:]))


# --------------------------------------------------------------------------- the hot path


@pytest.mark.parametrize(
    "frame",
    [
        [10, LONDON, TOKYO, b"x" * 32],
        [10, LONDON, "registered_name", "hello"],
        [10, LONDON, "n" * 40, 12345],
        [17, LONDON, TOKYO, REF, ("get", "key")],
        [18, LONDON, TOKYO, REF, ("ok", 3, None, LONDON, REF, b"v", 2.5)],
        [10, LONDON, TOKYO, bytes(1000)],
        [10, LONDON, TOKYO, b"b" * 70000],
        [10, LONDON, TOKYO, "s" * 300],
        [3, LONDON, TOKYO],
        [7, LONDON, TOKYO, REF],
        [17, Pid("node", 1, 2), Pid("east", 3), Ref("eight-ch", 4), (Pid("west", 5), REF)],
        [10, LONDON, TOKYO, ("ping", LONDON, 7, ("ping", 12345, b"x" * 16))],  # tuple in tuple
        [10, LONDON, TOKYO, (1, (2, (3, ("deeper", b"")), LONDON))],
    ],
)
def test_hot_frames_skip_scan_once_their_header_is_known(
    frame: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = fields(frame)
    assert decode_checked(body, FRAME_DEPTH) == frame  # warms the header cache
    monkeypatch.setattr(terms, "scan", must_not_scan)
    for _ in range(2):
        got = decode_checked(body, FRAME_DEPTH)
        assert got == frame
        assert [type(item) for item in got] == [type(item) for item in frame]


@pytest.mark.parametrize(
    "frame",
    [[10, LONDON, TOKYO, b"x" * 32], [10, LONDON, "name", b""], [3, LONDON, TOKYO]],
)
def test_a_known_header_is_not_decoded_again(frame: list[Any]) -> None:
    body = fields(frame)
    decode_checked(body, FRAME_DEPTH)
    with ormsgpack_calls() as calls:
        assert decode_checked(body, FRAME_DEPTH) == frame
    assert calls == []  # the Pids came from the header cache, the bin from a slice


@pytest.mark.parametrize("first", [0xC0, 0xC2, 0xC3, 0xE0, 0xFF, 0xCA])
def test_a_frame_type_that_is_not_a_positive_fixint_is_decoded_as_it_is(first: int) -> None:
    decode_checked(hot(b"\x01"), FRAME_DEPTH)  # the header is known
    body = b"\x94" + bytes([first]) + SRC + DST + b"\x01"
    assert_agrees(body)


def test_a_nested_term_in_a_hot_frame_is_walked_and_decoded() -> None:
    frame = [10, LONDON, TOKYO, {"k": [1, (2, [3])], (LONDON, 1): {REF: ()}}]
    for _ in range(2):
        assert decode_checked(fields(frame), FRAME_DEPTH) == frame


def test_the_header_cache_stays_bounded() -> None:
    for serial in range(terms._CACHE_SIZE + 10):
        body = fields([10, Pid("london", serial), TOKYO, b""])
        assert decode_checked(body, FRAME_DEPTH)[1] == Pid("london", serial)
    assert len(terms._heads) <= terms._CACHE_SIZE


# --------------------------------------------------------------------------- hostile bodies


def test_a_thousand_nested_lists_are_too_deep_and_never_reach_ormsgpack() -> None:
    decode_checked(hot(b"\xc0"), FRAME_DEPTH)  # the header is known
    deep = b"\x91" * 1000 + b"\xc0"
    with ormsgpack_calls() as calls:
        for body in (hot(deep), hot(deep, ref=ref_ext()), deep):
            with pytest.raises(TooDeep):
                decode_checked(body, FRAME_DEPTH)
    assert calls == []


def test_one_level_past_max_depth_is_too_deep_and_the_limit_itself_is_fine() -> None:
    # The frame's array is one level: a term 4 deep needs max_depth 5.
    assert decode_checked(hot(b"\x91" * 4 + b"\xc0"), 5)[3] == [[[[None]]]]
    with pytest.raises(TooDeep):
        decode_checked(hot(b"\x91" * 4 + b"\x90"), 5)
    tuple_term = ext8(terms.EXT_TUPLE, b"\x91\x01")
    assert decode_checked(hot(tuple_term), 2)[3] == (1,)
    with pytest.raises(TooDeep):
        decode_checked(hot(tuple_term), 1)
    nested = ext8(terms.EXT_TUPLE, b"\x91" + tuple_term)  # a tuple in a tuple: 2 levels
    assert decode_checked(hot(nested), 3)[3] == ((1,),)
    with pytest.raises(TooDeep):
        decode_checked(hot(nested), 2)
    with pytest.raises(TooDeep):
        decode_checked(hot(b"\x01"), 0)


@pytest.mark.parametrize(
    "term",
    [
        bytes.fromhex("ddffffffffc0"),  # crashed ormsgpack 1.12.1
        bytes.fromhex("dd0fffffff") * 3,  # 15 bytes claiming billions of items
        bytes.fromhex("df7fffffff"),
        bytes.fromhex("c9ffffffff03"),  # a 4 GiB tuple ext
        bytes.fromhex("dbffffffff"),  # a 4 GiB str
        bytes.fromhex("c6ffffffff"),  # a 4 GiB bin
        ext8(terms.EXT_TUPLE, b"\x9f"),  # a tuple of 15 items in 1 byte
    ],
)
def test_crafted_lengths_are_malformed_and_never_reach_ormsgpack(term: bytes) -> None:
    decode_checked(hot(b"\xc0"), FRAME_DEPTH)
    with ormsgpack_calls() as calls:
        for body in (hot(term), hot(term, ref=ref_ext()), term):
            with pytest.raises(MalformedFrame):
                decode_checked(body, FRAME_DEPTH)
    assert calls == []


@pytest.mark.parametrize("extra", [b"\xc0", b"\x00\x00", b"\x94"])
@pytest.mark.parametrize(
    "frame",
    [
        [10, LONDON, TOKYO, b"x" * 32],
        [10, LONDON, "name", 1],
        [17, LONDON, TOKYO, REF, ("get", "key")],
        [10, LONDON, TOKYO, [1, {"a": 2}]],
        [3, LONDON, TOKYO],
    ],
)
def test_bytes_after_the_frames_array_are_trailing_bytes(frame: list[Any], extra: bytes) -> None:
    body = fields(frame)
    for _ in range(2):  # the header unknown, then known
        with pytest.raises(TrailingBytes):
            decode_checked(body + extra, FRAME_DEPTH)
        assert decode_checked(body, FRAME_DEPTH) == frame


@pytest.mark.parametrize(
    "frame",
    [
        [10, LONDON, TOKYO, b"x" * 32],
        [10, LONDON, "name", "text"],
        [17, LONDON, TOKYO, REF, ("get", "key")],
        [10, LONDON, TOKYO, b"b" * 300],
        [10, LONDON, TOKYO, [1, {"a": (2,)}]],
    ],
)
def test_every_truncation_of_a_hot_frame_is_malformed(frame: list[Any]) -> None:
    body = fields(frame)
    decode_checked(body, FRAME_DEPTH)
    for cut in range(len(body)):
        with pytest.raises(MalformedFrame) as info:
            decode_checked(body[:cut], FRAME_DEPTH)
        assert type(info.value) is MalformedFrame


@pytest.mark.parametrize(
    "body",
    [
        hot(ext8(9, b"x")),  # as the term
        hot(b"\xd4\x7f\x00"),  # a fixext
        hot(ext8(terms.EXT_TUPLE, b"\x91" + ext8(-5 & 0xFF, b""))),  # inside a tuple
        hot(b"\x01", dst=ext8(5, b"\x00" * 13)),  # as the destination
        hot(b"\x01", ref=ext8(0, b"\x00" * 9)),  # where the Ref goes
        b"\x94\x0a" + ext8(7, b"\x00" * 13) + DST + b"\x01",  # as the source
        hot(b"\x01", src=fixext16(5, bytes(16))),  # the same as fixext16s
        hot(b"\x01", dst=fixext16(5, bytes(16))),
        hot(b"\x01", ref=fixext16(6, bytes(16))),
        hot(ext8(terms.EXT_TUPLE, b"\x91" + fixext16(7, bytes(16)))),
    ],
)
def test_an_unknown_ext_type_is_refused(body: bytes) -> None:
    decode_checked(hot(b"\xc0"), FRAME_DEPTH)
    with pytest.raises(UnknownExtType):
        decode_checked(body, FRAME_DEPTH)
    assert_agrees(body)


@pytest.mark.parametrize(
    "body",
    [
        hot(b"\x01", src=ext8(1, b"\x00" * 12)),  # a Pid with no node
        hot(b"\x01", src=ext8(1, b"\x00" * 9)),
        hot(b"\x01", dst=ext8(1, b"\x00" * 12)),
        hot(b"\x01", src=b"\xc7\x00\x01"),
        hot(b"\x01", src=b"\xd4\x01\x00"),  # a fixext 1 Pid
        hot(b"\x01", dst=pid_ext(node="bad node")),
        hot(b"\x01", dst=ext8(1, b"\x00" * 12 + b"\xff")),  # not UTF-8
        hot(b"\x01", ref=ext8(2, b"\x00" * 8)),  # a Ref with no node
        hot(b"\x01", ref=ref_ext(node="a<b")),
        hot(pid_ext(node="")),
        hot(ext8(terms.EXT_TUPLE, b"\x91" + ext8(1, b"\x00" * 10))),
        hot(ext8(terms.EXT_TUPLE, b"\x92\x01\x02\x03")),  # bytes after the tuple's items
        hot(ext8(terms.EXT_TUPLE, b"\x93\x01\x02")),  # items past the tuple's end
        hot(ext8(terms.EXT_TUPLE, b"")),
        hot(ext8(terms.EXT_TUPLE, b"\x91\xda\x00")),  # a str16 cut by the tuple's end
        hot(ext8(terms.EXT_MAP, b"\x91\x01")),  # an odd map ext
        hot(b"\xa2\xff\xfe"),  # a str that is not UTF-8
        hot(b"\xc1"),
    ],
)
def test_bad_pids_refs_and_exts_are_malformed(body: bytes) -> None:
    decode_checked(hot(b"\xc0"), FRAME_DEPTH)
    with pytest.raises(MalformedFrame):
        decode_checked(body, FRAME_DEPTH)
    assert_agrees(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (hot(b"\x01", src=ext8(1, b"\x00" * 5)), "Pid ext shorter than 13"),
        (hot(b"\x01", dst=ext8(1, b"\x00" * 5)), "Pid ext shorter than 13"),
        (hot(b"\x01", ref=ext8(2, b"\x00" * 5)), "Ref ext shorter than 9"),
        (hot(ext8(2, b"\x00" * 5)), "Ref ext shorter than 9"),
        (hot(ext8(terms.EXT_TUPLE, b"\x91" + ext8(2, b"\x00" * 5))), "Ref ext shorter than 9"),
        (hot(b"\x01", dst=ext8(5, b"\x00" * 13)), "ext type 5"),
    ],
)
def test_short_pids_and_refs_are_refused_by_the_walk_before_ormsgpack(
    body: bytes, message: str
) -> None:
    decode_checked(hot(b"\xc0"), FRAME_DEPTH)
    with ormsgpack_calls() as calls, pytest.raises(MalformedFrame, match=message):
        decode_checked(body, FRAME_DEPTH)
    assert calls == []


@pytest.mark.parametrize(
    ("body", "max_depth"),
    [
        (hot(b"\x01", dst=ext8(3, b"\x91" * 14 + b"\xc0")), 8),
        (hot(b"\x01", dst=fixext16(3, b"\x91" * 15 + b"\xc0")), 8),
        (hot(b"\x01", src=fixext16(3, b"\x91" * 15 + b"\xc0")), 8),
        (hot(b"\x01", ref=fixext16(3, b"\x91" * 15 + b"\xc0")), 8),
        (hot(ext8(terms.EXT_TUPLE, b"\x91" + fixext16(3, b"\x91" * 15 + b"\xc0"))), 8),
        (hot(ext8(terms.EXT_TUPLE, b"\x91" + fixext16(3, b"\x9f" + b"\x01" * 15))), 2),
    ],
)
def test_a_tuple_where_a_pid_or_ref_goes_counts_towards_depth(body: bytes, max_depth: int) -> None:
    decode_checked(hot(b"\xc0"), FRAME_DEPTH)
    with pytest.raises(TooDeep):
        decode_checked(body, max_depth)
    assert_agrees(body, max_depth)


def test_a_pid_where_the_ref_goes_stays_a_pid() -> None:
    body = hot(b"\x01", ref=SHORT_NODE_PID)
    decode_checked(body, FRAME_DEPTH)  # the header is known
    assert type(decode_checked(body, FRAME_DEPTH)[3]) is Pid
    assert_agrees(body)
    assert_agrees(hot(b"\x01", ref=pid_ext()))


def test_a_pid_that_fails_to_decode_does_not_enter_the_header_cache() -> None:
    body = hot(b"\x01", dst=pid_ext(node="bad node"))
    for _ in range(2):
        with pytest.raises(MalformedFrame, match="bad node name"):
            decode_checked(body, FRAME_DEPTH)
    assert body[2 : len(body) - 1] not in terms._heads
