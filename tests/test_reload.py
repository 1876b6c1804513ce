"""Hot code reload (issue 13) against real ``rusm node start`` subprocesses.

A module ``hotmod`` is written to a temporary directory in three versions:
v1 starts a GenServer ``counter``, a plain process ``plain`` and a spawnable
``hotworker``; v2 answers with another version and migrates the state in
``code_change``; v3 raises at import. A node of this test process (a real
ClusterNode with its own certificate) calls and casts to the counter from one
process, so its messages keep their order, while ``rusm reload`` runs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rusm import GenServer
from rusm.actors import Process, Runtime
from rusm.net import ClusterNode, Identity

from .test_node_cli import Node, Nodes, nodes, ok, rusm

__all__ = ["nodes"]  # test_node_cli's fixture: every node killed, none left running

V1 = """
from rusm import GenServer, NoReply, Reply
from rusm.actors import ChildSpec, Supervisor

VERSION = 1


class Counter(GenServer):
    vsn = 1

    def init(self):
        return {"n": 0}

    def handle_call(self, request, from_, state):
        return Reply((VERSION, state), state)

    def handle_cast(self, request, state):
        return NoReply({**state, "n": state["n"] + 1})


async def plain(proc):
    while True:
        await proc.receive()


async def hotworker(proc):
    proc.runtime.register(f"hotworker_v{VERSION}", proc.pid)
    await proc.receive()


async def setup(node):
    await Counter.start(node, name="counter")
    node.runtime.register("plain", node.runtime.spawn(plain))
    node.register_spawnable("hotworker", hotworker)
    node.runtime.spawn(Supervisor([ChildSpec("supervised", plain, name="supervised")]))
"""

V2 = V1.replace("VERSION = 1", "VERSION = 2").replace("vsn = 1", "vsn = 2").replace(
    '''    def handle_cast(self, request, state):
        return NoReply({**state, "n": state["n"] + 1})''',
    '''    def handle_cast(self, request, state):
        return NoReply({**state, "count": state["count"] + 1})

    def code_change(self, old_vsn, state, extra):
        return {"count": state["n"], "migrated_from": old_vsn}''',
)
V3 = V2 + '\nraise RuntimeError("v3 is broken")\n'


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory, home: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    ok(rusm(home, "cert", "ca", str(d / "ca")))
    for name in ("london", "paris", "tester", "ops"):
        ok(rusm(home, "cert", "issue", name, "--ca", str(d / "ca"), "--out", str(d / name)))
    return {name: d / name for name in ("london", "paris", "tester", "ops")}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rusm-home")


@pytest.fixture
def hot(tmp_path: Path) -> Path:
    d = tmp_path / "hot"
    d.mkdir()
    (d / "hotmod.py").write_text(V1)
    return d


def start(nodes: Nodes, name: str, certs: dict[str, Path], hot: Path, *more: str) -> Node:
    return nodes.start(
        name, "--identity", str(certs[name]), "--app", "hotmod:setup",
        "--allow-reload", "hotmod", *more,
        # v2 may be written within the same second as v1, with the same size:
        # no cached bytecode that the import would take for v1's.
        env={"PYTHONPATH": str(hot), "PYTHONDONTWRITEBYTECODE": "1"},
    )


async def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One rusm command, in a thread: this test's node keeps serving its link."""
    return await asyncio.to_thread(rusm, home, *args)


async def ps_rows(home: Path, target: str) -> list[dict[str, Any]]:
    result = await cli(home, "ps", target, "--json", "--limit", "1000")
    rows: list[dict[str, Any]] = json.loads(ok(result))["rows"]
    return rows


class Driver:
    """A node of this process with one process that talks to the counters."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def run(self, job: Callable[[Process], Awaitable[Any]]) -> Any:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def body(proc: Process) -> None:
            try:
                done.set_result(await job(proc))
            except Exception as e:
                done.set_exception(e)

        self.node.runtime.spawn(body)
        return await asyncio.wait_for(done, 30)

    async def ask(self, where: str) -> Any:
        return await self.run(lambda p: GenServer.call(p, ("counter", where), "get", timeout=10))


@pytest.fixture
async def tester(certs: dict[str, Path]) -> Any:
    node = await ClusterNode.bind("tester", Runtime("tester"), ("127.0.0.1", 0),
                                  Identity.load(certs["tester"]))
    try:
        yield Driver(node)
    finally:
        await node.close()


def address(node: Node) -> tuple[str, int]:
    host, port = node.entry["cluster"]
    return host, int(port)


@pytest.mark.timeout(120)
async def test_reload_moves_a_gen_server_to_new_code_with_its_state_and_loses_no_message(
    nodes: Nodes, certs: dict[str, Path], hot: Path, home: Path, tester: Driver,
) -> None:
    london = start(nodes, "london", certs, hot)
    await tester.node.connect(address(london))
    assert list(await tester.ask("london")) == [1, {"n": 0}]

    (hot / "hotmod.py").write_text(V2)

    async def casts_around_a_reload(proc: Process) -> Any:
        for _ in range(50):
            GenServer.cast(proc, ("counter", "london"), "inc")
        reload = asyncio.ensure_future(cli(home, "reload", "london", "hotmod", "--yes"))
        sent = 50
        while not reload.done():  # casts keep coming while the node reloads
            GenServer.cast(proc, ("counter", "london"), "inc")
            sent += 1
            await asyncio.sleep(0)  # yield to the loop (not a synchronisation)
        for _ in range(50):
            GenServer.cast(proc, ("counter", "london"), "inc")
        sent += 50
        answer = await GenServer.call(proc, ("counter", "london"), "get", timeout=10)
        return sent, await reload, answer

    sent, result, answer = await tester.run(casts_around_a_reload)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["results"][0]
    assert report["node"] == "london" and report["ok"]
    assert [u["class"] for u in report["upgraded"]] == ["Counter"]
    assert report["upgraded"][0]["old_vsn"] == 1 and report["upgraded"][0]["vsn"] == 2
    assert report["rebound"] == ["hotworker"]
    version, state = answer
    assert version == 2
    assert state == {"count": sent, "migrated_from": 1}  # every cast, v1's and v2's

    # The plain process runs v1's body still: marked, and purge kills it.
    plain = next(r for r in await ps_rows(home, "london") if "plain" in r["names"])
    assert plain["status"] == "old code"
    assert plain["pid"] in report["old_code"]

    # The next spawn of the factory runs the new code.
    ok(await cli(home, "spawn", "london", "hotworker", "--yes"))
    names = {n for r in await ps_rows(home, "london") for n in r["names"]}
    assert "hotworker_v2" in names and "hotworker_v1" not in names

    purged = await cli(home, "purge", "london", "hotmod", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert plain["pid"] in purged.stdout
    rows = await ps_rows(home, "london")
    assert not [r for r in rows if r["pid"] == plain["pid"]]
    # The supervised one was restarted on the new code: nothing is on the old.
    [supervised] = [r for r in rows if "supervised" in r["names"]]
    assert supervised["pid"] not in report["old_code"]
    assert not [r for r in rows if r["status"] == "old code"]
    again = await cli(home, "purge", "london", "hotmod", "--yes")
    assert json.loads(ok(again)) == []  # no process runs v1's code any more


@pytest.mark.timeout(120)
async def test_a_module_that_fails_to_import_leaves_the_old_code_and_says_why(
    nodes: Nodes, certs: dict[str, Path], hot: Path, home: Path, tester: Driver,
) -> None:
    london = start(nodes, "london", certs, hot)
    await tester.node.connect(address(london))
    (hot / "hotmod.py").write_text(V2)
    ok(await cli(home, "reload", "london", "hotmod", "--yes"))
    assert list(await tester.ask("london")) == [2, {"count": 0, "migrated_from": 1}]

    (hot / "hotmod.py").write_text(V3)
    broken = await cli(home, "reload", "london", "hotmod", "--yes")
    assert broken.returncode == 1
    assert "reload_failed" in broken.stderr and "the old code runs on" in broken.stderr
    assert "Traceback" in broken.stderr and "v3 is broken" in broken.stderr
    assert list(await tester.ask("london")) == [2, {"count": 0, "migrated_from": 1}]
    ok(await cli(home, "spawn", "london", "hotworker", "--yes"))
    names = {n for r in await ps_rows(home, "london") for n in r["names"]}
    assert "hotworker_v2" in names  # v3's failed import left v2's factory bound

    # A module the node was not told to allow, and one it never loaded.
    for module in ("json", "no_such_module_here"):
        refused = await cli(home, "reload", "london", module, "--yes")
        assert refused.returncode == 1 and "reload_refused" in refused.stderr, refused.stderr
    version, _ = await tester.ask("london")
    assert version == 2  # the node is up, on v2


@pytest.mark.timeout(120)
async def test_reload_through_a_remote_attach_and_on_all_nodes_of_a_cluster(
    nodes: Nodes, certs: dict[str, Path], hot: Path, home: Path, tester: Driver,
) -> None:
    london = start(nodes, "london", certs, hot)
    paris = start(nodes, "paris", certs, hot, "--connect", london.cluster)

    async def linked() -> None:
        # Each rusm ps waits for a sample of its own: bounded by wait_for below.
        while "paris" not in json.loads(ok(await cli(home, "ps", "london", "--json")))["nodes"]:
            pass

    await asyncio.wait_for(linked(), 30)
    (hot / "hotmod.py").write_text(V2)

    remote = f"london@{london.cluster}"
    command = ("reload", remote, "hotmod", "--all-nodes", "--identity", str(certs["ops"]), "--yes")
    result = await cli(home, *command)
    assert result.returncode == 0, result.stderr
    results = {r["node"]: r for r in json.loads(result.stdout)["results"]}
    assert set(results) == {"london", "paris"}  # the attacher (ops) is hidden: not a node
    assert all(r["ok"] and len(r["upgraded"]) == 1 for r in results.values())
    await tester.node.connect(address(london))
    await tester.node.connect(address(paris))
    for where in ("london", "paris"):
        assert list(await tester.ask(where)) == [2, {"count": 0, "migrated_from": 1}]
    assert "reload hotmod --all-nodes" in (home / "audit.log").read_text()

    # Again: london is now also linked to tester, which allows no reload, and
    # v2's code_change cannot migrate v2's own state (no "n"): both are said,
    # exit 1, and each server runs on with its old code and state.
    again = await cli(home, *command)
    assert again.returncode == 1
    results = {r["node"]: r for r in json.loads(again.stdout)["results"]}
    assert results["tester"]["error"] == "reload_refused"
    for where in ("london", "paris"):
        assert results[where]["ok"] and not results[where]["upgraded"]
        [failed] = results[where]["failed"]
        assert "KeyError" in failed["error"] and "code_change" in failed["traceback"]
        assert failed["pid"] in results[where]["old_code"]
        assert list(await tester.ask(where)) == [2, {"count": 0, "migrated_from": 1}]
    assert "reload_refused" in again.stderr and "tester" in again.stderr
    assert "code_change_failed" in again.stderr and "stays on its old code" in again.stderr
