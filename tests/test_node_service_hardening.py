"""The node service cannot be tricked (issue 11, section 6), with real nodes.

A node name is claimed atomically; directory files are written without
following symlinks and ``nodes/`` is kept private; the node's own processes
cannot be killed from an observer; a WebSocket upgrade with a repeated
``Host`` or ``Authorization`` header is a 400 and one log line. Nodes run as
``rusm node start`` children (helpers of tests/test_node_cli.py); a test
waits for a directory entry, a pipe or a socket, never on a sleep.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rusm.net.directory import NodeDirectory, NodeEntry, UnsafeDirectory

from .test_node_cli import (
    APP,
    CLI_TIMEOUT,
    EXIT_TIMEOUT,
    REPO,
    Certs,
    Node,
    Nodes,
    dead_os_pid,
    failed,
    poll,
    ps_json,
    row_of,
    rusm,
)
from .test_node_cli import certs as certs
from .test_node_cli import home as home

OUTSIDE = "the file a planted symlink points to\n"


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    """Nodes in a home of this test's own (these tests plant things in it)."""
    (tmp_path / "logs").mkdir()
    n = Nodes(tmp_path / "home", tmp_path / "logs")
    try:
        yield n
    finally:
        n.close()


@pytest.fixture(scope="module")
def london(home: Path, certs: Certs) -> Iterator[Node]:
    n = Nodes(home, home.parent / f"{home.name}-logs")
    n.logs.mkdir(exist_ok=True)
    try:
        yield n.start("london", "--identity", str(certs.london), "--app", APP)
    finally:
        n.close()


def outside_file(tmp_path: Path) -> Path:
    target = tmp_path / "outside.txt"
    target.write_text(OUTSIDE)
    return target


def entry_for(name: str) -> NodeEntry:
    return NodeEntry(name, os.getpid(), ("127.0.0.1", 1), ("127.0.0.1", 2), "t" * 43, 0.0)


# -- 1. one name, one node ----------------------------------------------------------


def test_two_nodes_of_one_name_started_together_one_runs_the_other_names_it(
    nodes: Nodes,
) -> None:
    first = nodes.spawn("same")
    second = nodes.spawn("same")
    path = nodes.home / "nodes" / "same.json"

    def one_exited() -> tuple[subprocess.Popen[bytes], Path] | None:
        return next(((p, log) for p, log in (first, second) if p.poll() is not None), None)

    loser, loser_log = poll(one_exited, "one of the two nodes to give up")
    winner, winner_log = second if loser is first[0] else first
    assert loser.returncode == 1, loser_log.read_text()
    entry = poll(lambda: json.loads(path.read_text()) if path.exists() else None,
                 "the winner's entry")
    assert entry["os_pid"] == winner.pid
    said = loser_log.read_text()
    assert f"a node named 'same' is already running (OS pid {winner.pid})" in said, said
    assert "Traceback" not in said
    assert winner.poll() is None, winner_log.read_text()
    assert ps_json(nodes.home, "same")["node"] == "same"  # reachable by its name
    winner.terminate()
    assert winner.wait(EXIT_TIMEOUT) == 0
    assert not path.exists() and not (nodes.home / "nodes" / "same.lock").exists()


CLAIMER = """
import os, sys
from rusm.net.directory import NodeDirectory, NodeEntry, NodeRunning
from pathlib import Path
go = int(sys.argv[2])
print("ready", flush=True)
os.read(go, 1)  # every claimer waits here until the test closes the pipe
entry = NodeEntry("raced", os.getpid(), ("127.0.0.1", 1), ("127.0.0.1", 2), "t", 0.0)
try:
    NodeDirectory(Path(sys.argv[1])).claim(entry)
    print("won", flush=True)
except NodeRunning as e:
    print("lost", e, flush=True)
sys.stdin.read()  # a winner holds its claim until the test is done
"""


def test_of_many_processes_claiming_one_name_at_once_exactly_one_wins(tmp_path: Path) -> None:
    go_r, go_w = os.pipe()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(tmp_path), str(go_r)], pass_fds=(go_r,),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        for _ in range(8)
    ]
    try:
        os.close(go_r)
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        os.close(go_w)  # all go at once
        said = {p.pid: p.stdout.readline().strip() for p in procs}  # type: ignore[union-attr]
        winners = [pid for pid, line in said.items() if line == "won"]
        assert len(winners) == 1, said
        for pid, line in said.items():
            if pid != winners[0]:
                assert line == (f"lost a node named 'raced' is already running "
                                f"(OS pid {winners[0]}); stop it or choose another name"), said
    finally:
        for p in procs:
            p.communicate(timeout=CLI_TIMEOUT)


def test_a_claim_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    directory = NodeDirectory(tmp_path)
    lock = tmp_path / "nodes" / "paris.lock"
    lock.parent.mkdir(mode=0o700)
    lock.write_text(f"{dead_os_pid()}\n")  # a claim whose process is gone (and its flock)
    directory.claim(entry_for("paris"))
    assert lock.read_text() == f"{os.getpid()}\n"
    assert directory.lookup("paris").os_pid == os.getpid()
    directory.release(entry_for("paris"))
    assert not lock.exists() and not directory.path("paris").exists()


# -- 2. directory files and symlinks --------------------------------------------------


def test_a_symlink_planted_at_the_temporary_or_entry_path_is_not_written_through(
    tmp_path: Path,
) -> None:
    target = outside_file(tmp_path)
    directory = NodeDirectory(tmp_path / "home")
    directory.dir.mkdir(parents=True, mode=0o700)
    tmp = directory.dir / f"paris.{os.getpid()}.tmp"  # the name a claim tries first
    tmp.symlink_to(target)
    directory.path("paris").symlink_to(target)
    directory.claim(entry_for("paris"))
    assert target.read_text() == OUTSIDE
    assert tmp.is_symlink()  # left alone; the entry went through another name
    written = directory.path("paris")
    assert not written.is_symlink() and stat.S_IMODE(written.stat().st_mode) == 0o600
    assert directory.lookup("paris") == entry_for("paris")
    directory.release(entry_for("paris"))


def test_a_node_started_over_a_planted_entry_symlink_replaces_the_link_not_its_target(
    nodes: Nodes, tmp_path: Path,
) -> None:
    target = outside_file(tmp_path)
    path = nodes.home / "nodes" / "paris.json"
    path.parent.mkdir(parents=True, mode=0o700)
    path.symlink_to(target)
    paris = nodes.start("paris")
    assert target.read_text() == OUTSIDE
    assert not path.is_symlink() and paris.entry["os_pid"] == paris.proc.pid
    assert paris.stop() == 0


def test_a_symlink_planted_at_the_claim_file_stops_the_start_with_how_to_fix_it(
    nodes: Nodes, tmp_path: Path,
) -> None:
    target = outside_file(tmp_path)
    lock = nodes.home / "nodes" / "paris.lock"
    lock.parent.mkdir(parents=True, mode=0o700)
    lock.symlink_to(target)
    proc, log = nodes.spawn("paris")
    assert proc.wait(CLI_TIMEOUT) == 1
    said = log.read_text()
    assert f"{lock} is a symlink; remove it and start again" in said, said
    assert "Traceback" not in said
    assert target.read_text() == OUTSIDE


def test_a_loose_nodes_directory_is_tightened_to_0700_with_a_warning(nodes: Nodes) -> None:
    d = nodes.home / "nodes"
    d.mkdir(parents=True)
    d.chmod(0o777)
    paris = nodes.start("paris")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert f"node directory {d} had mode 777: tightened to 0700" in paris.log_text()
    assert paris.stop() == 0


def test_a_nodes_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "nodes").symlink_to(elsewhere)
    with pytest.raises(UnsafeDirectory, match="is a symlink or not a directory; remove it"):
        NodeDirectory(tmp_path / "home").claim(entry_for("paris"))
    assert list(elsewhere.iterdir()) == []


# -- 3. the node's own processes ------------------------------------------------------


def keeper_pid(home: Path, target: str = "london", *options: str) -> str:
    sample = ps_json(home, target, *options, "--filter", "rusm.global")
    rows = [r for r in sample["rows"] if r["label"] == "rusm.global"]
    assert len(rows) == 1, sample["rows"]
    pid: str = rows[0]["pid"]
    return pid


def test_the_global_registry_keeper_cannot_be_killed_from_an_observer(
    home: Path, london: Node, certs: Certs,
) -> None:
    pid = keeper_pid(home)
    err = failed(rusm(home, "kill", "london", pid))
    assert (f"error (protected): {pid} (rusm.global) is one of node london's own processes: "
            "it cannot be killed from an observer") in err, err
    err = failed(rusm(home, "kill", f"london@{london.cluster}", pid, "--identity", str(certs.ops)))
    assert f"error (protected): {pid} (rusm.global)" in err, err
    assert keeper_pid(home) == pid  # still running
    assert row_of(ps_json(home), pid)["status"] != "exited"


# -- 4. repeated headers on the WebSocket upgrade ---------------------------------------


def upgrade(host: str, port: int, headers: list[str]) -> str:
    """Send a handcrafted upgrade request; the response's status line."""
    request = "\r\n".join([
        "GET / HTTP/1.1", *headers, "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", "", "",
    ])
    with socket.create_connection((host, port), timeout=CLI_TIMEOUT) as s:
        s.sendall(request.encode())
        with s.makefile("rb") as f:
            return f.readline().decode().strip()


@pytest.mark.parametrize(
    ("header", "repeated"),
    [
        ("Authorization", ["Host: 127.0.0.1", "Authorization: Bearer {token}",
                           "Authorization: Bearer {token}"]),
        ("Host", ["Host: 127.0.0.1", "Host: 127.0.0.1", "Authorization: Bearer {token}"]),
    ],
)
def test_an_upgrade_with_a_repeated_header_gets_400_and_one_log_line(
    home: Path, london: Node, header: str, repeated: list[str],
) -> None:
    host, port = london.entry["observe"]
    before = london.log_text().splitlines()
    lines = [h.format(token=london.entry["token"]) for h in repeated]
    assert upgrade(host, port, lines) == "HTTP/1.1 400 Bad Request"
    new = london.log_text().splitlines()[len(before):]
    assert len(new) == 1, new
    assert "refused" in new[0] and f"{header} header sent more than once" in new[0], new
    assert ps_json(home)["node"] == "london"  # the channel still serves
