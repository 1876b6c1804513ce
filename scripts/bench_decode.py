"""Micro-benchmark: decoding a pair frame's body, checked, per frame.

Compares the reference path (``scan`` + trailing-bytes check + ``unpack``)
with ``terms.decode_checked`` on the frames that carry the traffic:

- ``msg``: a Msg ``[10, src, dst, b"x" * 32]``, src and dst Pids;
- ``msg_name``: a Msg to a registered name, ``[10, src, "registered_name", b"x" * 32]``;
- ``call``: a CallRequest ``[17, src, dst, ref, ("get", "key")]``;
- ``msg_1k``: a Msg whose term is 1,024 bytes;
- ``msg_str``: a Msg whose term is a short str;
- ``msg_dict``: a Msg whose term is a small dict (walked by ``scan`` in both paths);
- ``msg_miss``: ``msg`` from 5,000 different senders in turn, more than the
  caches hold, so every frame misses them (the worst case for decode_checked).

Each figure is the best of ``--repeat`` timeit runs, in µs per decode.
``*_checked_us`` adds the type checks the frame decoder still does on the
decoded list (list, int type, Pid src, Pid-or-name dst, Ref), and
``frame_checks_us`` is what those cost on their own. Prints one JSON line.

    python scripts/bench_decode.py [--quick] [--repeat K]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from collections.abc import Callable
from typing import Any

from rusm.actors.pid import Pid, Ref
from rusm.net import terms
from rusm.net.terms import TrailingBytes, decode_checked, pack_fields, scan, unpack

MAX_DEPTH = 33  # the frame decoder's: the frame's array + the default max_depth 32
TARGET_US = 1.5

SRC = Pid("london", 42, 123456789)
DST = Pid("tokyo", 7, 987654321)
REF = Ref("london", 99)


def body(fields: list[Any]) -> bytes:
    return pack_fields(fields, [""] * len(fields), MAX_DEPTH - 1)


CASES: dict[str, list[bytes]] = {
    "msg": [body([10, SRC, DST, b"x" * 32])],
    "msg_name": [body([10, SRC, "registered_name", b"x" * 32])],
    "call": [body([17, SRC, DST, REF, ("get", "key")])],
    "msg_1k": [body([10, SRC, DST, bytes(range(256)) * 4])],
    "msg_str": [body([10, SRC, DST, "hello, world"])],
    "msg_dict": [body([10, SRC, DST, {"op": "put", "key": "k", "value": 3}])],
    "msg_miss": [body([10, Pid("london", serial, 5), DST, b"x" * 32]) for serial in range(5000)],
}


def reference(data: bytes, max_depth: int) -> Any:
    """The path decode_checked replaces (FrameDecoder._decode before it)."""
    end = scan(data, max_depth)
    if end != len(data):
        raise TrailingBytes(f"remote peer sent {len(data) - end} bytes after a frame's array")
    return unpack(data)


def frame_checks(items: Any) -> bool:
    """The checks FrameDecoder._decode makes on the decoded list of a hot frame."""
    if type(items) is not list or not items or type(items[0]) is not int:
        return False
    t = items[0]
    if t == 10 and len(items) == 4:
        dst = items[2]
        return type(items[1]) is Pid and (type(dst) is Pid or (type(dst) is str and dst != ""))
    if (t == 17 or t == 18) and len(items) == 5:
        dst = items[2]
        return (
            type(items[1]) is Pid
            and type(items[3]) is Ref
            and (type(dst) is Pid or (type(dst) is str and dst != ""))
        )
    return False


def per_call_us(fn: Callable[[bytes], Any], bodies: list[bytes], number: int, repeat: int) -> float:
    if len(bodies) == 1:
        (one,) = bodies

        def run() -> None:
            for _ in range(number):
                fn(one)

        calls = number
    else:
        rounds = max(1, number // len(bodies))

        def run() -> None:
            for _ in range(rounds):
                for data in bodies:
                    fn(data)

        calls = rounds * len(bodies)
    run()  # warm the caches (a miss stays a miss: the bodies outnumber them)
    best = min(timeit.repeat(run, number=1, repeat=repeat))
    return round(best / calls * 1e6, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per run")
    parser.add_argument("--repeat", type=int, default=7, help="timeit runs per figure (best kept)")
    args = parser.parse_args()
    number = 20_000 if args.quick else 200_000

    def ref(data: bytes) -> Any:
        return reference(data, MAX_DEPTH)

    def new(data: bytes) -> Any:
        return decode_checked(data, MAX_DEPTH)

    def ref_checked(data: bytes) -> Any:
        return frame_checks(reference(data, MAX_DEPTH))

    def new_checked(data: bytes) -> Any:
        return frame_checks(decode_checked(data, MAX_DEPTH))

    results: dict[str, dict[str, float]] = {}
    for name, bodies in CASES.items():
        for data in bodies[:50]:
            assert decode_checked(data, MAX_DEPTH) == reference(data, MAX_DEPTH)
        if name != "msg_dict":
            assert frame_checks(decode_checked(bodies[0], MAX_DEPTH))
        row = {
            "body_bytes": len(bodies[0]),
            "reference_us": per_call_us(ref, bodies, number, args.repeat),
            "decode_checked_us": per_call_us(new, bodies, number, args.repeat),
            "reference_checked_us": per_call_us(ref_checked, bodies, number, args.repeat),
            "decode_checked_checked_us": per_call_us(new_checked, bodies, number, args.repeat),
        }
        row["speedup"] = round(row["reference_us"] / row["decode_checked_us"], 2)
        results[name] = row
        print(f"{name}: {row}", file=sys.stderr, flush=True)

    items = decode_checked(CASES["msg"][0], MAX_DEPTH)
    checks_us = per_call_us(lambda _: frame_checks(items), [b""], number, args.repeat)
    unpack_us = per_call_us(unpack, CASES["msg"], number, args.repeat)
    typical = results["msg"]["decode_checked_checked_us"]
    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "max_depth": MAX_DEPTH,
                "cases": results,
                "frame_checks_us": checks_us,
                "msg_unpack_alone_us": unpack_us,
                "target_us": TARGET_US,
                "typical_msg_with_checks_us": typical,
                "target_met": typical <= TARGET_US,
                "heads_cached": len(terms._heads),
            }
        )
    )


if __name__ == "__main__":
    main()
