"""``rusm info`` (issue 12 §1, §2) against a real ``rusm node start``
subprocess, locally and through a remote (QUIC) attach: where a process
waits, on whom, who waits on it, a deadlock, its mailbox and its state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .test_node_cli import Certs, Nodes, certs, home, nodes, ok, poll, rusm

__all__ = ["certs", "home", "nodes"]  # test_node_cli's fixtures

KEYS = {"where", "waiting_on", "waited_by", "messages", "state", "memory_bytes"}


def info(home: Path, *args: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(ok(rusm(home, "info", *args, "--json")))
    return value


def test_info_shows_a_deadlock_a_backlog_and_a_state_locally_and_remotely(
    home: Path, nodes: Nodes, certs: Certs
) -> None:
    london = nodes.start("london", "--identity", str(certs.london),
                         "--app", "tests.node_app:stuck")

    a = poll(lambda: (i := info(home, "london", "deadlock_a"))["deadlock"] and i,
             "deadlock_a's cycle of calls")
    assert a.keys() >= KEYS
    assert a["label"] == "deadlock.a"
    assert a["waiting_on"].startswith("call <london.") and a["waiting_on"].endswith("s")
    (b_pid,) = a["waited_by"]
    assert a["waiting_on"].split()[1] == b_pid  # a waits on b, b waits on a
    assert a["where"][0]["function"] == "Process.receive"
    assert any(f["function"] == "deadlock" and f["file"].endswith("stuck.py")
               and f["line"] > 0 for f in a["where"])
    b = info(home, "london", b_pid)
    assert b["deadlock"] and b["waited_by"] == [a["pid"]] and b["label"] == "deadlock.b"

    backlog = poll(lambda: (i := info(home, "london", "backlog", "--messages", "3"))[
        "mailbox_depth"] >= 3 and i, "orders in backlog's mailbox")
    assert backlog["messages"][0].startswith("('order', 1, 'sku-")
    assert [m.split(",")[1] for m in backlog["messages"]] == [" 1", " 2", " 3"]
    assert "'waiting_for': 'warehouse'" in backlog["state"]
    assert backlog["waiting_on"] == "await Future" and not backlog["deadlock"]
    assert backlog["memory_bytes"] > 0
    assert info(home, "london", "ledger")["state"] is None  # published none

    text = ok(rusm(home, "info", "london", "deadlock_a"))
    assert "deadlock: YES" in text and "waiting_on: call <london." in text
    assert "stuck.py:" in text

    table = ok(rusm(home, "ps", "london", "--interval", "0.2")).splitlines()
    assert "DEADLOCK: 2 processes in a cycle of calls" in table[0] and "loop lag " in table[0]
    assert table[1].split()[-4:] == ["CPU%", "MEM", "WAITS", "ON"]
    row = next(line for line in table if line.startswith(a["pid"] + " "))
    assert f"call {b_pid} " in row  # WAITS ON, as info says it

    remote = info(home, f"london@{london.cluster}", "deadlock_a", "--identity", str(certs.ops))
    assert remote["pid"] == a["pid"] and remote["deadlock"] and remote["waited_by"] == [b_pid]

    missing = rusm(home, "info", "london", "nobody", "--json")
    assert missing.returncode == 1 and "nobody" in missing.stderr
    assert london.stop() == 0
