"""Where one cross-node message's CPU goes, per message per side, against floors.

The side-by-side benchmark's window workload (``../shared/bench/vs_erlang``)
sends ``("ping", pid, k, ("ping", 12345, b"x" * 16))`` and answers
``("pong", k, ("ping", 12345, b"x" * 16))``. Each node, per round trip,
decodes one of these frames and encodes the other. This script measures,
in this one process, per message:

- ``runtime_us``: the same workload inside one Runtime (no network): the
  actor runtime and the benchmark's own code, what stays when nothing is
  encoded (on the stock asyncio loop; the twin uses uvloop);
- ``codec_us``: ``encode_msg`` and ``decode_checked`` (every limit checked)
  of the two frames, averaged;
- ``ormsgpack_floor_us``: the least ormsgpack itself takes for the same two
  terms with the Python callbacks a tuple and a Pid need (``default`` and
  ``ext_hook`` with no checks at all): the floor of any codec built on it.

``codec_over_floor`` is the ratio of the last two (the baseline, measured in
the same run). Compare the sum with the CPU per message the cluster spends
(``cpu / rt_per_s`` of ``rusm_twin.py window 1000``): what is left is the
link, the engine and the event loop. Prints one JSON line.

    python scripts/bench_window_budget.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time
import timeit
from typing import Any

import ormsgpack

from rusm import Runtime
from rusm.actors.pid import Pid
from rusm.net.terms import EXT_PID, EXT_TUPLE, decode_checked
from rusm.net.wire import encode_msg

PAYLOAD = ("ping", 12345, b"x" * 16)
SRC = Pid("a", 1, 7)
FRAME_DEPTH = 33  # the frame decoder's: the frame's array + max_depth 32


def terms() -> list[Any]:
    return [("ping", SRC, 7, PAYLOAD), ("pong", 7, PAYLOAD)]


def best(fn: Any, number: int) -> float:
    """The best of three timeit runs, in µs per call."""
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def codec_us(number: int) -> float:
    total = 0.0
    for term in terms():
        body = encode_msg(SRC, "echo", term)[4:]
        total += best(lambda term=term: encode_msg(SRC, "echo", term), number)
        total += best(lambda body=body: decode_checked(body, FRAME_DEPTH), number)
    return total / 2


_PID = struct.Struct(">QI")
_OPT = ormsgpack.OPT_PASSTHROUGH_TUPLE


def _default(obj: Any) -> Any:
    if obj.__class__ is tuple:
        return ormsgpack.Ext(EXT_TUPLE, ormsgpack.packb(list(obj), default=_default, option=_OPT))
    if obj.__class__ is Pid:
        return ormsgpack.Ext(EXT_PID, _PID.pack(obj.serial, obj.creation) + obj.node.encode())
    raise TypeError


def _hook(tag: int, data: bytes) -> Any:
    if tag == EXT_TUPLE:
        return tuple(ormsgpack.unpackb(data, ext_hook=_hook))
    return Pid(data[12:].decode(), *_PID.unpack_from(data))


def floor_us(number: int) -> float:
    total = 0.0
    for term in terms():
        data = ormsgpack.packb(list(term), default=_default, option=_OPT)
        assert tuple(ormsgpack.unpackb(data, ext_hook=_hook)) == term
        total += best(lambda term=term: ormsgpack.packb(list(term), default=_default, option=_OPT),
                      number)
        total += best(lambda data=data: tuple(ormsgpack.unpackb(data, ext_hook=_hook)), number)
    return total / 2


async def _window_in(rt: Runtime, rounds: int) -> float:
    async def echo(proc: Any) -> None:
        while True:
            m = await proc.receive()
            if isinstance(m, tuple) and len(m) == 4 and m[0] == "ping":
                proc.send(m[1], ("pong", m[2], m[3]))

    rt.register("echo", rt.spawn(echo))
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def window(proc: Any) -> None:
        for k in range(1000):
            proc.send("echo", ("ping", proc.pid, k, PAYLOAD))
        count, t0 = 0, time.process_time()
        while count < rounds:
            m = await proc.receive()
            proc.send("echo", ("ping", proc.pid, m[1], PAYLOAD))
            count += 1
        done.set_result(count / (time.process_time() - t0))

    rt.spawn(window)
    return await done


async def _runtime_rate(rounds: int) -> float:
    async with Runtime("a") as rt:  # leaving it stops both processes
        return await _window_in(rt, rounds)


def runtime_us(rounds: int) -> float:
    rate = asyncio.run(_runtime_rate(rounds))
    return 1e6 / rate / 2  # two messages per round trip, both in this process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    number, rounds = (2_000, 20_000) if args.quick else (100_000, 500_000)
    codec, floor = codec_us(number), floor_us(number)
    print(json.dumps({
        "runtime_us": round(runtime_us(rounds), 3),
        "codec_us": round(codec, 3),
        "ormsgpack_floor_us": round(floor, 3),
        "codec_over_floor": round(codec / floor, 2),
        "quick": args.quick,
    }))


if __name__ == "__main__":
    main()
