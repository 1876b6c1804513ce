"""A cluster node in its own OS process, for tests (a script, not a test module).

    python tests/nodeproc.py NAME CERT_DIR [--idle-timeout S] [--port P]

Binds node NAME on 127.0.0.1 (port P, or any free port) with the identity
saved in CERT_DIR, registers an ``echo`` process and a spawnable ``worker``,
then prints one JSON line ``{"name": ..., "port": ...}`` on stdout. It runs
until SIGTERM or SIGINT, or until its stdin reaches end of file; then it
closes the node and exits 0. (Stdin that is not a pipe, a socket or a
terminal, such as /dev/null, is not watched.)

``echo`` answers ``Call(request)`` with ``("echo", request)`` and turns
``("echo_to", pid, x)`` into ``send(pid, x)``. ``worker(reply_to=None)``
tells ``reply_to`` ``("worker_up", its pid)``, answers ``("ping", pid)`` with
``("pong", its pid)`` (and ``("ping", pid, tag)`` with ``("pong", its pid, tag)``)
to ``pid``, and returns on ``"stop"``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import sys
from typing import Any

from rusm.actors import Call, Pid, Process, Runtime
from rusm.net import ClusterConfig, ClusterNode, Identity


async def echo(proc: Process) -> None:
    while True:
        msg = await proc.receive()
        if isinstance(msg, Call):
            msg.reply(("echo", msg.request))
        elif isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "echo_to":
            proc.send(msg[1], msg[2])


async def worker(proc: Process, reply_to: Pid | None = None) -> None:
    if reply_to is not None:
        proc.send(reply_to, ("worker_up", proc.pid))
    while True:
        msg = await proc.receive()
        if msg == "stop":
            return
        if isinstance(msg, tuple) and len(msg) in (2, 3) and msg[0] == "ping":
            proc.send(msg[1], ("pong", proc.pid, *msg[2:]))


async def stdin_closed() -> None:
    """Returns at end of file on stdin. Stdin that is not a pipe, a socket or a
    terminal (a file, /dev/null) is not watched: then this never returns."""
    mode = os.fstat(sys.stdin.fileno()).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or sys.stdin.isatty()):
        await asyncio.Event().wait()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(4096):
            pass
    finally:
        transport.close()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("name")
    parser.add_argument("cert_dir")
    parser.add_argument("--idle-timeout", type=float, default=None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    config = ClusterConfig(
        **({} if args.idle_timeout is None else {"idle_timeout": args.idle_timeout})
    )
    node = await ClusterNode.bind(
        args.name, Runtime(), ("127.0.0.1", args.port), Identity.load(args.cert_dir), config
    )
    try:
        node.runtime.register("echo", node.runtime.spawn(echo, label="echo"))
        node.register_spawnable("worker", worker)

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        host, port = node.local_addr()
        print(json.dumps({"name": node.name, "port": port, "host": host}), flush=True)

        waits: list[asyncio.Task[Any]] = [
            asyncio.create_task(stop.wait()),
            asyncio.create_task(stdin_closed()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            for task in waits:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await node.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="nodeproc %(name)s: %(message)s")
    sys.exit(asyncio.run(main()))
