"""The wire codec: terms, frames, and what a hostile peer cannot do (no sockets)."""

from __future__ import annotations

import contextlib
import datetime
import enum
import math
import struct
import tracemalloc
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import ormsgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rusm.actors.pid import Pid, Ref
from rusm.net import terms
from rusm.net.wire import (
    PROTOCOL_VERSION,
    CallReply,
    CallRequest,
    Demonitor,
    DownSignal,
    ErrorCode,
    ExitSignal,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    Gossip,
    Hello,
    HelloExpected,
    InvalidFrame,
    Link,
    MalformedFrame,
    Monitor,
    Msg,
    ProtocolError,
    Request,
    Response,
    TermTooLarge,
    TooDeep,
    TrailingBytes,
    TruncatedFrame,
    UnexpectedFrame,
    UnknownExtType,
    UnknownFrame,
    Unlink,
    UnsendableTerm,
    VersionMismatch,
    WireLimits,
    decode_term,
    encode_frame,
    encode_term,
    reason_term,
)

LONDON = Pid("london", 42)
TOKYO = Pid("tokyo", 7)
REF = Ref("london", 9)
HELLO = Hello(PROTOCOL_VERSION, "london", False, 4370)

CONTROL_FRAMES: list[Frame] = [
    HELLO,
    Gossip("sync", ()),
    Gossip("add", (("svc", LONDON), ("db", TOKYO))),
    Gossip("remove", (("svc", LONDON),)),
    Request(1, "remote_pids", ()),
    Request(2, "spawn", ("worker", [1, "x"], {"opt": (1, 2)})),
    Response(1, True, [LONDON, TOKYO]),
    Response(2, False, ("NoProc", "no process worker")),
]

PAIR_FRAMES: list[Frame] = [
    Msg(LONDON, TOKYO, {"any": ("term", [1, 2.5, None, b"\x00"])}),
    Link(LONDON, TOKYO),
    Unlink(LONDON, TOKYO),
    ExitSignal(LONDON, TOKYO, "killed"),
    Monitor(LONDON, TOKYO, REF),
    Demonitor(LONDON, TOKYO, REF),
    DownSignal(LONDON, TOKYO, REF, "noproc"),
    CallRequest(LONDON, TOKYO, REF, ("get", "key")),
    CallReply(LONDON, TOKYO, REF, ("ok", 3)),
]

# --------------------------------------------------------------------------- helpers


def control_decoder(max_frame: int = 65536, max_depth: int = 32) -> FrameDecoder:
    return FrameDecoder("control", max_frame, max_depth)


def pair_decoder(max_frame: int = 1 << 20, max_depth: int = 32) -> FrameDecoder:
    return FrameDecoder("pair", max_frame, max_depth)


def framed(body: bytes) -> bytes:
    """A raw frame: the length header, then ``body`` as given."""
    return struct.pack(">I", len(body)) + body


def ext_id(tag: int, node: str, serial: int, creation: int = 0) -> ormsgpack.Ext:
    """A Pid ext (tag 1: serial, creation, node) or Ref ext (tag 2: serial, node)."""
    head = struct.pack(">QI", serial, creation) if tag == 1 else struct.pack(">Q", serial)
    return ormsgpack.Ext(tag, head + node.encode())


SRC = ext_id(1, "london", 42)
DST = ext_id(1, "tokyo", 7)


def raw_msg(term_bytes: bytes) -> bytes:
    """A Msg frame whose term is the given raw msgpack bytes."""
    head = ormsgpack.packb([10, SRC, DST])
    assert head[0] == 0x93
    return framed(b"\x94" + head[1:] + term_bytes)


def decode_all(decoder: FrameDecoder, chunks: Iterator[bytes] | list[bytes]) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        frames.extend(decoder.events())
    decoder.receive_eof()
    return frames


def assert_same_term(got: Any, want: Any) -> None:
    """Equal, and of the same types all the way down (a tuple stays a tuple, True stays True)."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, list | tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same_term(g, w)
    elif isinstance(want, dict):
        assert got == want
        for key, value in want.items():
            (got_key,) = [k for k in got if k == key]
            assert_same_term(got_key, key)
            assert_same_term(got[key], value)
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want


def assert_rejected(error: type[ProtocolError], code: ErrorCode, feed: Any) -> ProtocolError:
    with pytest.raises(error) as info:
        feed()
    assert info.value.code is code
    assert "remote peer" in str(info.value)
    return info.value


# --------------------------------------------------------------------------- strategies

node_names = st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True)
serials = st.integers(0, 2**64 - 1)
pids = st.builds(Pid, node_names, serials)
refs = st.builds(Ref, node_names, serials)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
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


# --------------------------------------------------------------------------- terms


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms_st)
def test_every_term_round_trips_with_its_types(term: Any) -> None:
    assert_same_term(decode_term(encode_term(term), 32), term)


@pytest.mark.parametrize(
    "term",
    [
        (1, [2, (3,)]),
        [(1,), [1]],
        {(1, "a"): [1], ("nested", (2, 3)): ()},
        {LONDON: "pid key", (TOKYO, 1): "pid in a tuple key", "plain": REF},
        {7: "int", None: "none", True: "bool", 2.5: "float", b"k": "bytes"},
        (),
        {},
        [],
        2**64 - 1,
        -(2**63),
    ],
)
def test_tuples_stay_tuples_and_dict_keys_keep_their_types(term: Any) -> None:
    assert_same_term(decode_term(encode_term(term), 32), term)


@pytest.mark.parametrize(
    "term",
    [
        list(range(20)),  # array16, and its run of one-byte items
        list(range(-40, 300, 7)),  # array16 of mixed-width ints
        [0] * 70000,  # array32
        {str(i): i for i in range(20)},  # map16
        "s" * 40,  # str8
        "s" * 300,  # str16
        "s" * 70000,  # str32
        b"b" * 10,  # bin8
        b"b" * 300,  # bin16
        b"b" * 70000,  # bin32
        [(), (1,), (1, 2, 3), (1,) * 7, (1,) * 15, (1,) * 100, (1,) * 300, (0,) * 70000],
        [Pid("eight-ch", 1), Pid("n" * 255, 2**64 - 1), Ref("x", 0)],  # fixext16, ext16
        [-1, -33, -200, -40000, -(2**40), 255, 65535, 2**32, 1.5, -0.0, float("inf")],
        [{Pid("a", 1): [{Ref("b", 2): ()}]}] * 20,  # ext 4 maps, nested
    ],
)
def test_every_msgpack_form_is_walked_to_its_exact_end(term: Any) -> None:
    data = encode_term(term)
    assert terms.scan(data, 32) == len(data)
    assert_same_term(decode_term(data, 32), term)


def test_bytes_likes_arrive_as_bytes() -> None:
    assert_same_term(
        decode_term(encode_term([bytearray(b"ab"), memoryview(b"cd")])), [b"ab", b"cd"]
    )


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("term", "message"),
    [
        ({1, 2}, r"cannot send a set \(at the top level\)"),
        ([1, {"k": {2}}], r"cannot send a set \(at \[1\]\['k'\]\)"),
        ({"a": (1, object())}, r"cannot send an object \(at \['a'\]\[1\]\)"),
        ([2**64], r"cannot send an int of 65 bits.*\(at \[0\]\)"),
        ([-(2**63) - 1], r"cannot send an int of 64 bits"),
        ({"f": lambda: 1}, r"cannot send a function \(at \['f'\]\)"),
        ([Colour.RED], r"cannot send a tests.test_wire.Colour \(at \[0\]\)"),
        (OrderedDict(a=1), r"cannot send a collections.OrderedDict"),
        ([datetime.date(2024, 1, 1)], r"cannot send a datetime.date \(at \[0\]\)"),
        ({"k": {frozenset(): 1}}, r"cannot send a frozenset in a dict key \(at \['k'\]\)"),
        ({Colour.RED: 1}, r"cannot send a tests.test_wire.Colour in a dict key"),
        (["\ud800"], r"cannot send a str with unpaired surrogates \(at \[0\]\)"),
        ([Pid("bad name", 1)], r"cannot send Pid .*bad node or serial \(at \[0\]\)"),
        ((Ref("london", -1),), r"cannot send Ref"),
    ],
)
def test_a_term_that_cannot_cross_the_wire_is_a_type_error_naming_type_and_place(
    term: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message) as info:
        encode_term(term)
    assert isinstance(info.value, UnsendableTerm)


def test_sending_a_non_term_in_a_message_names_the_place_in_the_message() -> None:
    with pytest.raises(UnsendableTerm, match=r"cannot send a set \(at \[1\]\['k'\]\)"):
        encode_frame(Msg(LONDON, TOKYO, [0, {"k": {1}}]))
    with pytest.raises(UnsendableTerm, match=r"cannot send a set \(at args\[0\]\) in a Request"):
        encode_frame(Request(1, "m", ({3},)))


def nested_lists(depth: int) -> Any:
    term: Any = None
    for _ in range(depth):
        term = [term]
    return term


def test_a_term_at_the_depth_limit_crosses_and_one_level_more_is_refused_at_the_sender() -> None:
    assert decode_term(encode_term(nested_lists(32)), 32) == nested_lists(32)
    with pytest.raises(TermTooLarge, match=r"nested deeper than 32 levels \(at \[0\]"):
        encode_term(nested_lists(33))
    decoder = pair_decoder()
    decode_all(decoder, [encode_frame(Msg(LONDON, TOKYO, nested_lists(32)))])
    with pytest.raises(TermTooLarge):
        encode_frame(Msg(LONDON, TOKYO, nested_lists(33)))


def test_deep_tuples_and_cycles_are_refused_at_the_sender_without_a_crash() -> None:
    deep: Any = ()
    for _ in range(5000):
        deep = (deep, [deep])
    with pytest.raises(TermTooLarge):
        encode_term(deep)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(TermTooLarge, match="nested deeper"):
        encode_term({"a": cycle})


def test_an_exit_reason_that_is_an_exception_crosses_as_its_repr() -> None:
    assert reason_term(ValueError("boom")) == "ValueError('boom')"
    assert reason_term(("shutdown", [1])) == ("shutdown", [1])
    assert reason_term({1, 2}) == "{1, 2}"
    assert reason_term(("bad", object()))[:7] == "('bad',"


# --------------------------------------------------------------------------- frames


def test_every_control_frame_round_trips() -> None:
    stream = b"".join(encode_frame(frame) for frame in CONTROL_FRAMES)
    assert decode_all(control_decoder(), [stream]) == CONTROL_FRAMES


def test_every_pair_frame_round_trips() -> None:
    stream = b"".join(encode_frame(frame) for frame in PAIR_FRAMES)
    assert decode_all(pair_decoder(), [stream]) == PAIR_FRAMES


def test_a_message_to_a_registered_name_round_trips() -> None:
    frames = [Msg(LONDON, "greeter", b"hi"), Msg(LONDON, "greeter", b"ho")]
    stream = b"".join(encode_frame(frame) for frame in frames)
    assert decode_all(pair_decoder(), [stream]) == frames


def test_frames_split_at_every_byte_boundary_decode_the_same() -> None:
    for frames, new_decoder in [(CONTROL_FRAMES, control_decoder), (PAIR_FRAMES, pair_decoder)]:
        stream = b"".join(encode_frame(frame) for frame in frames)
        for cut in range(len(stream) + 1):
            assert decode_all(new_decoder(), [stream[:cut], stream[cut:]]) == frames
        one_byte_chunks = (stream[i : i + 1] for i in range(len(stream)))
        assert decode_all(new_decoder(), one_byte_chunks) == frames


def test_several_frames_in_one_chunk_all_come_out_in_order() -> None:
    frames = [Msg(LONDON, TOKYO, n * "x") for n in range(1, 50)]
    decoder = pair_decoder()
    decoder.receive_data(b"".join(encode_frame(frame) for frame in frames))
    assert decoder.events() == frames
    assert decoder.events() == []
    assert decoder.buffered == 0


def test_a_large_frame_gathers_from_datagram_sized_chunks() -> None:
    # Larger than what the decoder holds as bytes (it gathers it in place),
    # then a small frame and the start of another in the chunk that ends it.
    frames = [Msg(LONDON, TOKYO, b"L" * 200_000), Msg(LONDON, TOKYO, b"s"), Msg(LONDON, TOKYO, 7)]
    stream = b"".join(encode_frame(frame) for frame in frames)
    decoder = pair_decoder()
    got: list[Frame] = []
    for i in range(0, len(stream), 1200):
        chunk = stream[i : i + 1200]
        decoder.receive_data(bytearray(chunk) if i % 2400 else chunk)  # bytearray too
        got += decoder.events()
        if len(got) < 3:
            done = sum(len(encode_frame(f)) for f in got)
            assert decoder.buffered == min(i + 1200, len(stream)) - done
    assert got == frames
    assert decoder.buffered == 0


def test_a_frame_over_the_senders_limit_is_refused_at_the_sender() -> None:
    limits = WireLimits(max_message_frame=100)
    encode_frame(Msg(LONDON, TOKYO, b"x" * 50), limits)
    with pytest.raises(TermTooLarge, match="the limit is 100 bytes"):
        encode_frame(Msg(LONDON, TOKYO, b"x" * 100), limits)
    with pytest.raises(TermTooLarge):
        encode_frame(Gossip("sync", tuple((f"name{i}", LONDON) for i in range(5000))))


@pytest.mark.parametrize(
    "frame",
    [
        Msg("london", TOKYO, "src must be a pid"),  # type: ignore[arg-type]
        Msg(LONDON, "", "an empty name"),
        Link(LONDON, 7),  # type: ignore[arg-type]
        Monitor(LONDON, TOKYO, "not a ref"),  # type: ignore[arg-type]
        Gossip("replace", ()),
        Gossip("add", (("svc", "not a pid"),)),  # type: ignore[arg-type]
        Hello(1, "two words", False, 0),
        Hello(1, "london", False, 70000),
        Request(-1, "m", ()),
        Request(1, "m", [1]),  # type: ignore[arg-type]
        Response(1, False, "not (error_type, message)"),
    ],
)
def test_a_frame_with_bad_fields_is_refused_at_the_sender(frame: Frame) -> None:
    with pytest.raises(InvalidFrame, match="cannot send a"):
        encode_frame(frame)


def test_wire_limits_refuse_nonsense() -> None:
    assert WireLimits().max_frame("control") == 64 * 1024
    assert WireLimits().max_frame("pair") == 1024 * 1024
    for bad in [{"max_depth": 0}, {"max_depth": 65}, {"max_control_frame": 2**32}]:
        with pytest.raises(ValueError, match="WireLimits"):
            WireLimits(**bad)
    decoder = FrameDecoder.for_stream("pair", WireLimits(max_message_frame=1000))
    assert decoder.max_frame == 1000


# --------------------------------------------------------------------------- violations


def test_an_oversized_frame_is_rejected_from_its_header_before_the_body_arrives() -> None:
    decoder = pair_decoder(max_frame=1000)
    error = assert_rejected(
        FrameTooLarge, ErrorCode.FRAME_TOO_LARGE, lambda: decoder.receive_data(b"\x00\x00\x03\xe9")
    )
    assert "1001 bytes" in str(error)
    assert decoder.buffered == 0
    with pytest.raises(FrameTooLarge):  # the decoder stays broken
        decoder.receive_data(b"")


def test_a_4_gib_header_on_the_control_stream_is_rejected_at_once() -> None:
    decoder = control_decoder()
    assert_rejected(
        FrameTooLarge, ErrorCode.FRAME_TOO_LARGE, lambda: decoder.receive_data(b"\xff" * 4)
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",  # reserved byte
        b"\x95\x0a",  # an array that ends early
        b"\xda\x00\x10abc",  # a str longer than the frame
        b"\x93\x0a\xa1\xff\x01",  # invalid UTF-8
        b"\x0a",  # not an array
        b"\x90",  # an empty array
        b"\x92\xa1x\x01",  # the type is not an int
    ],
)
def test_malformed_msgpack_is_a_malformed_frame(body: bytes) -> None:
    decoder = pair_decoder()
    assert_rejected(
        MalformedFrame, ErrorCode.MALFORMED_FRAME, lambda: decoder.receive_data(framed(body))
    )


def test_bytes_after_the_frames_array_are_trailing_bytes() -> None:
    frame = encode_frame(Msg(LONDON, TOKYO, "x"))
    decoder = pair_decoder()
    assert_rejected(
        TrailingBytes,
        ErrorCode.TRAILING_BYTES,
        lambda: decoder.receive_data(framed(frame[4:] + b"\xc0")),
    )
    with pytest.raises(TrailingBytes):
        decode_term(b"\x01\x02")


def test_bytes_after_a_tuples_items_inside_its_ext_are_malformed() -> None:
    tuple_with_extra = ormsgpack.Ext(3, b"\x91\x01\x02")  # one item, then a stray byte
    decoder = pair_decoder()
    body = ormsgpack.packb([10, SRC, DST, tuple_with_extra])
    assert_rejected(
        MalformedFrame, ErrorCode.MALFORMED_FRAME, lambda: decoder.receive_data(framed(body))
    )


def test_a_thousand_nested_lists_are_too_deep_and_never_reach_ormsgpack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(terms, "_unpackb", _must_not_decode)
    decoder = pair_decoder()
    assert_rejected(
        TooDeep,
        ErrorCode.TOO_DEEP,
        lambda: decoder.receive_data(raw_msg(b"\x91" * 1000 + b"\xc0")),
    )
    with pytest.raises(TooDeep):
        decode_term(b"\x91" * 1000 + b"\xc0", 32)


def test_one_level_past_max_depth_is_too_deep_and_the_limit_itself_is_fine() -> None:
    decoder = pair_decoder(max_depth=4)
    decoder.receive_data(raw_msg(b"\x91" * 4 + b"\xc0"))
    assert decoder.events()[0] == Msg(LONDON, TOKYO, [[[[None]]]])
    assert_rejected(
        TooDeep,
        ErrorCode.TOO_DEEP,
        lambda: decoder.receive_data(raw_msg(b"\x91" * 4 + b"\x90")),
    )


def test_tuples_count_once_towards_depth() -> None:
    assert decode_term(encode_term(((((1,),),),)), 4) == ((((1,),),),)
    with pytest.raises(TooDeep):
        decode_term(encode_term((((((1,),),),),)), 4)


def _must_not_decode(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a hostile frame reached ormsgpack")


@pytest.mark.parametrize(
    "term_bytes",
    [
        bytes.fromhex("ddffffffffc0"),  # crashed ormsgpack 1.12.1
        bytes.fromhex("dd0fffffff") * 3,  # 15 bytes claiming billions of items
        bytes.fromhex("df7fffffff"),
        bytes.fromhex("c9ffffffff03"),  # a 4 GiB tuple ext
    ],
)
def test_crafted_container_headers_are_rejected_without_a_crash_or_a_big_allocation(
    term_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terms, "_unpackb", _must_not_decode)
    for data in (term_bytes, raw_msg(term_bytes)[4:]):
        tracemalloc.start()
        try:
            with pytest.raises(MalformedFrame):
                decode_term(data, 32)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024
    decoder = pair_decoder()
    assert_rejected(
        MalformedFrame, ErrorCode.MALFORMED_FRAME, lambda: decoder.receive_data(raw_msg(term_bytes))
    )


def test_an_unknown_frame_type_is_an_unknown_frame() -> None:
    decoder = control_decoder()
    decoder.receive_data(encode_frame(HELLO))
    assert_rejected(
        UnknownFrame,
        ErrorCode.UNKNOWN_FRAME,
        lambda: decoder.receive_data(framed(ormsgpack.packb([99, "x"]))),
    )
    assert decoder.events() == [HELLO]  # what came before the violation stays decoded


@pytest.mark.parametrize("tag", [5, 127, -1, -128])
def test_an_unknown_ext_type_is_malformed(tag: int) -> None:
    term = b"\xd6" + bytes([tag & 0xFF]) + b"\x00\x00\x00\x01"  # fixext4; Ext() refuses tags < 0
    decoder = pair_decoder()
    assert_rejected(
        UnknownExtType, ErrorCode.MALFORMED_FRAME, lambda: decoder.receive_data(raw_msg(term))
    )
    with pytest.raises(UnknownExtType, match=f"ext type {tag}"):
        decode_term(term)


@pytest.mark.parametrize(
    "ext",
    [
        ext_id(1, "", 1),  # a pid needs a node name
        ormsgpack.Ext(1, b"\x00" * 12 + b"\xff"),  # node not UTF-8
        ormsgpack.Ext(1, b"\x00" * 8 + b"node"),  # no room for the creation
        ext_id(1, "two words", 1),
        ormsgpack.Ext(2, b"short"),
        ormsgpack.Ext(3, b"\x01"),  # a tuple must hold an array
        ormsgpack.Ext(3, b""),
        ormsgpack.Ext(4, b"\x91\x01"),  # a map needs key, value pairs
        ormsgpack.Ext(4, b"\x92\x91\x01\x02"),  # a list cannot be a key
    ],
)
def test_bad_pid_ref_tuple_or_map_ext_payloads_are_malformed(ext: ormsgpack.Ext) -> None:
    term = ormsgpack.packb(ext)
    with pytest.raises(MalformedFrame):
        decode_term(term)
    decoder = pair_decoder()
    assert_rejected(
        MalformedFrame, ErrorCode.MALFORMED_FRAME, lambda: decoder.receive_data(raw_msg(term))
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([10, SRC, DST], "2 fields instead of 3"),
        ([10, SRC, DST, "x", "extra"], "4 fields instead of 3"),
        ([10, "london", DST, "x"], "field src that is not a Pid"),
        ([10, SRC, 7, "x"], "field dst that is not a Pid or a non-empty name"),
        ([14, SRC, DST, SRC], "field ref that is not a Ref"),
        ([11, SRC, 1.0], "field dst"),
    ],
)
def test_wrong_arity_or_field_types_are_malformed(fields: list[Any], message: str) -> None:
    decoder = pair_decoder()
    error = assert_rejected(
        MalformedFrame,
        ErrorCode.MALFORMED_FRAME,
        lambda: decoder.receive_data(framed(ormsgpack.packb(fields))),
    )
    assert message in str(error)


@pytest.mark.parametrize(
    "fields",
    [
        [1, PROTOCOL_VERSION, "london"],
        [1, PROTOCOL_VERSION, "", False],
        [1, PROTOCOL_VERSION, "london", 0],
        [1, True, "london", False],
    ],
)
def test_a_malformed_hello_is_malformed(fields: list[Any]) -> None:
    decoder = control_decoder()
    assert_rejected(
        MalformedFrame,
        ErrorCode.MALFORMED_FRAME,
        lambda: decoder.receive_data(framed(ormsgpack.packb(fields))),
    )


@pytest.mark.parametrize(
    "fields",
    [
        [2, "merge", ormsgpack.Ext(3, b"\x90")],
        [2, "add", [["svc", SRC]]],  # entries must be tuples
        [3, 1, "", ormsgpack.Ext(3, b"\x90")],
        [4, 1, False, "not a pair"],
        [4, -1, True, None],
    ],
)
def test_malformed_control_frames_after_hello_are_malformed(fields: list[Any]) -> None:
    decoder = control_decoder()
    decoder.receive_data(encode_frame(HELLO))
    assert_rejected(
        MalformedFrame,
        ErrorCode.MALFORMED_FRAME,
        lambda: decoder.receive_data(framed(ormsgpack.packb(fields))),
    )


def test_a_control_stream_that_does_not_begin_with_hello_is_refused() -> None:
    decoder = control_decoder()
    assert_rejected(
        HelloExpected,
        ErrorCode.HELLO_EXPECTED,
        lambda: decoder.receive_data(encode_frame(Request(1, "remote_pids", ()))),
    )


def test_a_second_hello_is_a_protocol_violation() -> None:
    decoder = control_decoder()
    decoder.receive_data(encode_frame(HELLO))
    assert_rejected(
        UnexpectedFrame,
        ErrorCode.PROTOCOL_VIOLATION,
        lambda: decoder.receive_data(encode_frame(HELLO)),
    )


def test_a_hello_of_another_version_is_a_version_mismatch_whatever_follows_the_version() -> None:
    decoder = control_decoder()
    error = assert_rejected(
        VersionMismatch,
        ErrorCode.VERSION_MISMATCH,
        # Version 2's Hello had three fields; a later one may have any.
        lambda: decoder.receive_data(framed(ormsgpack.packb([1, 2, "london", False]))),
    )
    assert "version 2" in str(error)
    error = assert_rejected(
        VersionMismatch,
        ErrorCode.VERSION_MISMATCH,
        lambda: control_decoder().receive_data(
            framed(ormsgpack.packb([1, 4, "london", False, 4370, "new"]))
        ),
    )
    assert "version 4" in str(error)


def test_a_pair_frame_on_the_control_stream_is_a_protocol_violation() -> None:
    decoder = control_decoder()
    decoder.receive_data(encode_frame(HELLO))
    assert_rejected(
        UnexpectedFrame,
        ErrorCode.PROTOCOL_VIOLATION,
        lambda: decoder.receive_data(encode_frame(Msg(LONDON, TOKYO, "x"))),
    )


def test_a_control_frame_on_a_pair_stream_is_a_protocol_violation() -> None:
    decoder = pair_decoder()
    assert_rejected(
        UnexpectedFrame,
        ErrorCode.PROTOCOL_VIOLATION,
        lambda: decoder.receive_data(encode_frame(HELLO)),
    )


def test_a_lane_carries_frames_of_many_pairs_in_the_order_sent() -> None:
    frames = [
        Msg(LONDON, TOKYO, "a1"),
        Msg(LONDON, "greeter", "b1"),
        Link(Pid("london", 43), TOKYO),
        Msg(LONDON, TOKYO, "a2"),
    ]
    assert decode_all(pair_decoder(), [b"".join(encode_frame(f) for f in frames)]) == frames


def test_a_stream_that_ends_inside_a_frame_is_truncated() -> None:
    frame = encode_frame(Msg(LONDON, TOKYO, "x"))
    for cut in (1, 4, len(frame) - 1):
        decoder = pair_decoder()
        decoder.receive_data(frame[:cut])
        assert_rejected(TruncatedFrame, ErrorCode.MALFORMED_FRAME, decoder.receive_eof)
    decoder = pair_decoder()
    decoder.receive_data(frame)
    decoder.receive_eof()  # a clean end


# --------------------------------------------------------------------------- fuzz


def _feed(kind: str, data: bytes) -> None:
    decoder = FrameDecoder(kind, 4096, 8)  # type: ignore[arg-type]
    with contextlib.suppress(ProtocolError):
        decoder.receive_data(data)
        decoder.receive_eof()
    with contextlib.suppress(ProtocolError):
        decode_term(data, 8)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_decode_or_raise_protocol_errors(data: bytes) -> None:
    _feed("control", data)
    _feed("pair", data)
    _feed("pair", framed(data))


_SEEDS = [encode_frame(frame) for frame in CONTROL_FRAMES + PAIR_FRAMES] + [
    encode_frame(Msg(LONDON, TOKYO, {LONDON: (1, [2, {"k": b"v"}]), (REF, 1): -1.5}))
]


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_valid_frames_only_ever_decode_or_raise_protocol_errors(
    seed: bytes, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(seed)
    for at, value in edits:
        data[4 + at % (len(data) - 4)] = value  # keep the header: reach the body's parsers
    _feed("pair", bytes(data))
    _feed("control", encode_frame(HELLO) + bytes(data))
