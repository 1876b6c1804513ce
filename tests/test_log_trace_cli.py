"""``rusm log`` (issue 12 §4) and ``rusm trace`` (§5) against a real ``rusm
node start`` subprocess, locally and through a remote (QUIC) attach."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from .test_node_cli import (
    CLI_TIMEOUT,
    REPO,
    RUSM,
    Certs,
    Nodes,
    certs,
    env_for,
    home,
    nodes,
    ok,
    poll,
    rusm,
)

__all__ = ["certs", "home", "nodes"]  # test_node_cli's fixtures


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def events(home: Path, target: str, *args: str) -> list[dict[str, Any]]:
    return lines(ok(rusm(home, "log", target, "--json", *args)))


def test_log_shows_crashes_with_tracebacks_and_restarts_and_follows(
    home: Path, nodes: Nodes, certs: Certs
) -> None:
    london = nodes.start("london", "--identity", str(certs.london),
                         "--app", "tests.node_app:watched")
    ok(rusm(home, "send", "london", "flaky", "'job-1'"))

    def restarted() -> list[dict[str, Any]]:
        return [e for e in events(home, "london") if e["kind"] == "restart"]

    (restart,) = poll(restarted, "flaky's restart in the log")
    assert restart["child"] == "flaky" and restart["restarts"] == 1
    assert "ValueError" in restart["reason"] and restart["pid"].startswith("<london.")
    (crash,) = [e for e in events(home, "london", "--kind", "exit") if e["crashed"]]
    assert crash.keys() >= {"time", "kind", "pid", "reason"}
    assert crash["label"] == "flaky" and "bad job 'job-1'" in crash["reason"]
    assert "Traceback" in crash["traceback"] and "node_app.py" in crash["traceback"]
    assert crash["seq"] < restart["seq"] and crash["pid"] != restart["pid"]

    text = ok(rusm(home, "log", "london", "--kind", "restart"))
    assert "restart" in text and "child=flaky" in text and "exit " not in text

    # --follow prints what happens from now on, until ^C.
    follow = subprocess.Popen(
        [str(RUSM), "log", "london", "--follow", "--json", "--kind", "restart"],
        env=env_for(home), cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert follow.stdout is not None
        first = json.loads(follow.stdout.readline())
        assert first["seq"] == restart["seq"]
        ok(rusm(home, "send", "london", "flaky", "'job-2'"))
        second = json.loads(follow.stdout.readline())  # blocks until the node says it
        assert second["kind"] == "restart" and second["restarts"] == 2
    finally:
        follow.send_signal(signal.SIGINT)
        assert follow.wait(CLI_TIMEOUT) == 0

    remote = events(home, f"london@{london.cluster}", "--identity", str(certs.ops),
                    "--kind", "restart")
    assert [e["seq"] for e in remote][-2:] == [restart["seq"], second["seq"]]
    ups = [e for e in events(home, "london", "--kind", "nodeup") if e.get("hidden")]
    assert ups and ups[-1]["node"]  # the remote attach joined as a hidden node

    bad = rusm(home, "log", "london", "--kind", "nonsense")
    assert bad.returncode == 1 and "kinds are among" in bad.stderr
    assert london.stop() == 0


def test_trace_prints_messages_in_and_out_and_stops_by_itself(
    home: Path, nodes: Nodes, certs: Certs
) -> None:
    london = nodes.start("london", "--identity", str(certs.london),
                         "--app", "tests.node_app:watched")
    result = ok(rusm(home, "trace", "london", "pinger", "--count", "6", "--json"))
    traced = lines(result)
    assert len(traced) == 6
    assert all(e.keys() >= {"time", "direction", "peer", "term"} for e in traced)
    outs = [e for e in traced if e["direction"] == "out"]
    ins = [e for e in traced if e["direction"] == "in"]
    assert outs and ins and all(e["peer"] == "echo" for e in outs)
    assert all(e["term"].startswith("('ping', <london.") for e in outs), outs
    assert all(e["term"].startswith("('pong', ") and e["peer"].startswith("<london.")
               for e in ins)
    times = [e["time"] for e in traced]
    assert times == sorted(times)

    text = rusm(home, "trace", "london", "echo", "--count", "2")
    assert text.returncode == 0 and text.stdout.count("\n") == 2
    assert " in  <- <london." in text.stdout and "stopped (count): 2 messages" in text.stderr

    quiet = rusm(home, "trace", "london", "ledger", "--seconds", "0.2")
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert "stopped (time): 0 messages" in quiet.stderr

    remote = lines(ok(rusm(home, "trace", f"london@{london.cluster}", "pinger", "--count", "2",
                           "--json", "--identity", str(certs.ops))))
    assert len(remote) == 2 and {e["direction"] for e in remote} <= {"in", "out"}

    rows = json.loads(ok(rusm(home, "ps", "london", "--sort", "cpu", "--json",
                              "--interval", "0.1")))["rows"]  # docs/OPERATIONS.md
    busy = [r["cpu_s"] for r in rows]
    assert busy == sorted(busy, reverse=True) and all(r["memory"] > 0 for r in rows)

    missing = rusm(home, "trace", "london", "nobody")
    assert missing.returncode == 1 and "nobody" in missing.stderr
    assert london.stop() == 0
