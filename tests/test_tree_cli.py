"""The supervision tree (issue 12 §6) against a real ``rusm node start``
subprocess: ``rusm tree``, restart and terminate a child, kill a subtree;
locally and through a remote (QUIC) attach."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .test_log_trace_cli import events
from .test_node_cli import Certs, Nodes, certs, home, nodes, ok, poll, rusm

__all__ = ["certs", "home", "nodes"]  # test_node_cli's fixtures


def tree(home: Path, target: str = "london", *args: str) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = json.loads(ok(rusm(home, "tree", target, "--json", *args)))
    return value


def child(trees: list[dict[str, Any]], *path: str) -> dict[str, Any]:
    (node,) = [t for t in trees if t["label"] == "services"]
    for name in path:
        (node,) = [c for c in node["children"] if c["id"] == name]
    return node


def test_the_tree_its_children_and_restarting_terminating_and_killing_them(
    home: Path, nodes: Nodes, certs: Certs
) -> None:
    london = nodes.start("london", "--identity", str(certs.london),
                         "--app", "tests.node_app:watched")
    trees = tree(home)
    services = child(trees)
    assert services["strategy"] == "one_for_one" and services["max_restarts"] == 100
    assert [c["id"] for c in services["children"]] == ["flaky", "pool"]
    pool = child(trees, "pool")
    assert pool["supervisor"] and pool["restart"] == "permanent" and pool["restarts"] == 0
    assert [(c["id"], c["restarts"]) for c in pool["children"]] == [("w1", 0), ("w2", 0)]
    w1 = child(trees, "pool", "w1")["pid"]
    sup = services["pid"]

    text = ok(rusm(home, "tree", "london"))
    assert f"services {sup}" in text and "└── pool" in text and "    ├── w1" in text

    ok(rusm(home, "terminate-child", "london", pool["pid"], "w1", "--yes"))
    assert "w1  - (stopped)" in ok(rusm(home, "tree", "london"))
    ok(rusm(home, "restart-child", "london", pool["pid"], "w1"))
    again = child(tree(home), "pool", "w1")
    assert again["pid"] not in (None, w1) and again["restarts"] == 0  # an operator's
    (by_hand,) = [e for e in events(home, "london", "--kind", "restart")
                  if e["child"] == "w1"]
    assert by_hand["reason"] == "restarted by an operator"

    # Kill a subtree: the pool and its workers go; services starts them again.
    ok(rusm(home, "kill", "london", pool["pid"], "--yes"))
    renewed = poll(lambda: (p := child(tree(home), "pool"))["pid"] != pool["pid"]
                   and p["restarts"] == 1 and all(c["pid"] for c in p["children"]) and p,
                   "services to restart the pool")
    assert renewed["children"][0]["pid"] != again["pid"]
    assert renewed["children"][0]["restarts"] == 0  # a new pool counts afresh

    missing = rusm(home, "restart-child", "london", "services", "nope")  # by name
    assert missing.returncode == 1 and "children: flaky, pool" in missing.stderr
    not_sup = rusm(home, "terminate-child", "london", "echo", "x")
    assert not_sup.returncode == 1 and "is not a supervisor" in not_sup.stderr

    remote = tree(home, f"london@{london.cluster}", "--identity", str(certs.ops))
    assert child(remote, "pool")["pid"] == renewed["pid"]
    audit = (home / "audit.log").read_text()
    assert "terminate " in audit and "restart " in audit

    # rusm attach speaks the same words: tree, restart, terminate, log, trace.
    script = "tree\nrestart services flaky\nterminate services nope\nlog restart\ntrace pinger 2\n"
    result = rusm(home, "attach", "london", input=script)
    assert result.returncode == 1, result.stderr  # terminate of nope failed
    out = result.stdout
    assert "└── pool" in out and "ok: restarted flaky of <london." in out
    assert "error (bad_request): terminate_child: no child 'nope'" in out
    assert "restarted by an operator" in out and "child=flaky" in out
    assert "tracing <london." in out and "trace of <london." in out and "stopped (count)" in out
    assert out.count(" <- <london.") + out.count(" -> echo") == 2
    assert london.stop() == 0
