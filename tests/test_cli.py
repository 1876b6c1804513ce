"""The rusm command line."""

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from click.testing import CliRunner

from rusm.cli import cli


def test_demo_actors_runs_a_supervised_workload_and_reports_restarts() -> None:
    result = CliRunner().invoke(cli, ["demo", "--actors", "--seconds", "1.2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"supervisor <demo\.\d+> started", out)
    assert "the supervisor restart" in out
    depths = [int(d) for d in re.findall(r"consumer_mailbox=(\d+)", out)]
    assert depths and max(depths) > 0
    assert re.search(r"done after 1.2 s: \d+ spawned", out)


def test_demo_rejects_a_nonpositive_duration_with_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["demo", "--seconds", "0"])
    assert result.exit_code == 2
    assert "--seconds" in result.output


def test_demo_off_a_terminal_prints_the_london_table_of_a_live_two_node_cluster(
    tmp_path: Path,
) -> None:
    rusm = Path(sys.executable).parent / "rusm"
    out = subprocess.run(
        [str(rusm), "demo", "--seconds", "2"], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=60, env={**os.environ, "RUSM_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    headers = re.findall(r"^node london .* nodes tokyo$", out.stdout, re.M)
    assert len(headers) >= 2  # one table per second, and tokyo is connected
    assert re.search(r"^<london\.\d+>\s+consumer\s", out.stdout, re.M)
    assert not list((tmp_path / "nodes").glob("*.json"))  # its entries are gone


@contextlib.contextmanager
def busy_node_in_the_directory(home: Path) -> Iterator[None]:
    """Node london, in the node directory under ``home``, on its own loop in a
    thread, with a process that passes itself about a thousand messages a second."""
    from rusm import ClusterCa, ClusterNode, Runtime
    from rusm.actors import Process
    from rusm.net.directory import NodeDirectory, NodeEntry
    from rusm.net.observe import serve_observe

    async def chatter(proc: Process) -> None:
        while True:
            proc.send(proc.pid, "tick")
            await proc.receive()
            await asyncio.sleep(0.001)

    async def start() -> tuple[ClusterNode, NodeEntry]:
        node = await ClusterNode.bind(
            "london", Runtime(), ("127.0.0.1", 0), ClusterCa.generate().issue("london")
        )
        node.runtime.spawn(chatter, label="chatter")
        token = NodeEntry.new_token()
        server = await serve_observe(node, token=token)
        entry = NodeEntry("london", os.getpid(), node.local_addr(), server.local_addr(), token,
                          time.time())
        NodeDirectory(home).claim(entry)
        return node, entry

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    node, entry = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield
    finally:
        NodeDirectory(home).release(entry)
        asyncio.run_coroutine_threadsafe(node.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def test_ps_shows_the_rates_the_node_passes_messages_at(tmp_path: Path) -> None:
    with busy_node_in_the_directory(tmp_path):
        result = CliRunner().invoke(cli, ["ps", "london", "--interval", "0.3"],
                                    env={"RUSM_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    rates = re.search(r"in (\d+)/s\s+out (\d+)/s", result.output)
    assert rates, result.output
    assert int(rates[1]) > 50  # about a thousand; never 0 as before
    assert int(rates[2]) > 50


def test_ps_json_carries_the_measured_rates(tmp_path: Path) -> None:
    with busy_node_in_the_directory(tmp_path):
        result = CliRunner().invoke(cli, ["ps", "london", "--json", "--interval", "0.3"],
                                    env={"RUSM_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    totals = json.loads(result.output)["totals"]
    assert totals["msgs_in_per_s"] > 50


def test_ps_refuses_an_interval_out_of_range_with_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["ps", "london", "--interval", "0"])
    assert result.exit_code == 2
    assert "--interval" in result.output
