"""``rusm node start`` as real subprocesses, and the ops commands against them.

Every node runs with ``RUSM_HOME`` in a temporary directory; a test waits for
its directory entry (polled with a bound), never sleeps. One node, london
(with a certificate from ``rusm cert`` and ``--app tests.node_app:setup``),
serves the whole module where tests do not interfere; the others are started
by the tests that need them. Every child is killed at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rusm.net import ClusterCa

REPO = Path(__file__).resolve().parent.parent
RUSM = Path(sys.executable).parent / "rusm"
if not RUSM.exists():  # pragma: no cover - a venv without the console script
    RUSM = Path(shutil.which("rusm") or "rusm")
START_TIMEOUT = 20.0
"""Seconds a node may take to import, bind and write its entry."""
EXIT_TIMEOUT = 10.0
"""Seconds a node may take to stop once signalled."""
CLI_TIMEOUT = 30.0
"""Seconds one command (rusm ps, send, attach...) may take."""
APP = "tests.node_app:setup"


def env_for(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RUSM_HOME"] = str(home)
    return env


def rusm(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one ``rusm`` command to completion (cwd: the repository, so --app finds tests).
    A ``ps`` measures its rates over 0.1 s unless told (the default second is
    what these tests would mostly wait for)."""
    if args[:1] == ("ps",) and "--interval" not in args:
        args = (*args, "--interval", "0.1")
    return subprocess.run(
        [str(RUSM), *args], env=env_for(home), cwd=REPO, input=input, text=True,
        capture_output=True, timeout=CLI_TIMEOUT,
        **({"stdin": subprocess.DEVNULL} if input is None else {}),
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def poll(condition: Callable[[], Any], what: str, timeout: float = START_TIMEOUT) -> Any:
    """Check ``condition`` every 50 ms until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Node:
    """A ``rusm node start`` child and what it wrote."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    home: Path
    entry: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.home / "nodes" / f"{self.name}.json"

    @property
    def cluster(self) -> str:
        host, port = self.entry["cluster"]
        return f"{host}:{port}"

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(EXIT_TIMEOUT)


def read_entry(path: Path) -> dict[str, Any] | None:
    try:
        entry: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry


class Nodes:
    """Starts nodes; kills whatever still runs at the end."""

    def __init__(self, home: Path, logs: Path) -> None:
        self.home = home
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, name: str, *options: str, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.logs / f"{name}-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(RUSM), "node", "start", name, *options],
                env={**env_for(self.home), **(env or {})}, cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc, log

    def start(self, name: str, *options: str, env: dict[str, str] | None = None) -> Node:
        """Start node ``name`` and wait for its directory entry."""
        proc, log = self.spawn(name, *options, env=env)
        path = self.home / "nodes" / f"{name}.json"

        def written() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError(
                    f"node {name} exited ({proc.returncode}) before its entry:\n"
                    f"{log.read_text()}"
                )
            entry = read_entry(path)
            return entry if entry is not None and entry["os_pid"] == proc.pid else None

        entry = poll(written, f"the directory entry of {name}")
        return Node(name, proc, log, self.home, entry)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(EXIT_TIMEOUT)


@dataclass
class Certs:
    ca: Path
    london: Path
    tokyo: Path
    ops: Path
    stranger: Path
    """ops, but issued by another cluster's CA."""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rusm-home")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Certs:
    # The files `rusm cert ca` and `rusm cert issue` write (test_cli_cert runs
    # those commands), made in-process: every module of node tests needs them.
    d = tmp_path_factory.mktemp("certs")
    certs = Certs(d / "ca", d / "london", d / "tokyo", d / "ops", d / "stranger")
    ca = ClusterCa.generate()
    ca.save(certs.ca)
    for name in ("london", "tokyo", "ops"):
        ca.issue(name).save(d / name)
    ClusterCa.generate().issue("ops").save(certs.stranger)
    return certs


@pytest.fixture(scope="module")
def module_nodes(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nodes]:
    nodes = Nodes(home, tmp_path_factory.mktemp("logs"))
    try:
        yield nodes
    finally:
        nodes.close()


@pytest.fixture
def nodes(home: Path, tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(home, tmp_path)
    try:
        yield n
    finally:
        n.close()
    alive = [p.pid for p in n.procs if p.poll() is None]
    assert not alive, f"the test left nodes running: {alive}"


@pytest.fixture(scope="module")
def london(module_nodes: Nodes, certs: Certs) -> Node:
    return module_nodes.start("london", "--identity", str(certs.london), "--app", APP)


def ps_json(home: Path, target: str = "london", *options: str) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads(ok(rusm(home, "ps", target, "--json", *options)))
    return sample


def row_of(sample: dict[str, Any], pid: str | None = None, name: str | None = None) -> Any:
    for row in sample["rows"]:
        if row["pid"] == pid or (name is not None and name in row["names"]):
            return row
    return None


def failed(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """Assert a command failed with ``code`` and one clean message; return stderr."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


# -- start, the directory, ls, stop ------------------------------------------------


def test_a_started_node_writes_its_entry_with_mode_0600_its_addresses_and_a_token(
    london: Node,
) -> None:
    assert stat.S_IMODE(london.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(london.path.parent.stat().st_mode) & 0o077 == 0
    e = london.entry
    assert e["name"] == "london" and e["os_pid"] == london.proc.pid
    for field in ("cluster", "observe"):
        host, port = e[field]
        assert host == "127.0.0.1" and 0 < port < 65536, e
    assert e["cluster"] != e["observe"]
    assert isinstance(e["token"], str) and len(e["token"]) >= 32
    assert abs(time.time() - e["started"]) < 120
    log = london.log_text()
    assert f"node london up: cluster {london.cluster}" in log
    assert "throwaway" not in log  # it has its --identity


def test_node_ls_lists_the_running_node(home: Path, london: Node) -> None:
    lines = ok(rusm(home, "node", "ls", "--json")).splitlines()
    listed = {d["name"]: d for d in map(json.loads, lines)}
    assert listed["london"]["os_pid"] == london.proc.pid
    assert listed["london"]["cluster"] == london.cluster
    host, port = london.entry["observe"]
    assert listed["london"]["observe"] == f"{host}:{port}"
    table = ok(rusm(home, "node", "ls")).splitlines()
    assert table[0].split()[:2] == ["NAME", "OS"]
    assert any(line.split()[:2] == ["london", str(london.proc.pid)] for line in table[1:])


def test_node_ls_says_when_no_node_runs(tmp_path: Path) -> None:
    assert ok(rusm(tmp_path, "node", "ls")).strip() == "no nodes running"
    assert ok(rusm(tmp_path, "node", "ls", "--json")) == ""


def test_starting_a_name_that_is_already_running_fails_with_a_clear_message(
    home: Path, london: Node
) -> None:
    err = failed(rusm(home, "node", "start", "london"))
    assert "already running" in err and str(london.proc.pid) in err
    assert read_entry(london.path) == london.entry, "the running node's entry was touched"
    assert london.proc.poll() is None


def dead_os_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(EXIT_TIMEOUT)
    return proc.pid


def test_a_stale_entry_is_left_out_of_ls_and_replaced_by_the_next_node_of_its_name(
    home: Path, nodes: Nodes
) -> None:
    stale = {"name": "paris", "os_pid": dead_os_pid(), "cluster": ["127.0.0.1", 1],
             "observe": ["127.0.0.1", 2], "token": "stale-token", "started": time.time()}
    path = home / "nodes" / "paris.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stale))
    path.chmod(0o600)
    listed = [json.loads(line)["name"] for line in ok(rusm(home, "node", "ls", "--json"))
              .splitlines()]
    assert "paris" not in listed
    paris = nodes.start("paris")
    assert paris.entry["token"] != "stale-token"
    assert paris.entry["observe"] != stale["observe"]
    assert ps_json(home, "paris")["node"] == "paris"
    assert paris.stop() == 0


def test_attaching_to_a_node_that_is_not_running_fails_with_one_clear_line(
    home: Path,
) -> None:
    for command in (["ps", "nosuch"], ["attach", "nosuch"], ["send", "nosuch", "x", "1"]):
        err = failed(rusm(home, *command))
        assert "no node named 'nosuch'" in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_a_node_started_without_an_identity_says_so_in_its_log(nodes: Nodes) -> None:
    oslo = nodes.start("oslo")
    log = oslo.log_text()
    assert "no --identity" in log and "throwaway" in log
    assert oslo.stop() == 0


def test_a_node_runs_on_uvloop_when_it_is_installed_unless_rusm_loop_says_asyncio(
    nodes: Nodes, london: Node
) -> None:
    assert "uvloop loop, busy-wait 500 us" in london.log_text()  # uvloop: the test extra
    oslo = nodes.start("oslo", "--busy-wait", "0", env={"RUSM_LOOP": "asyncio"})
    assert "asyncio loop, busy-wait off" in oslo.log_text()
    assert oslo.stop() == 0
    bad = failed(rusm(nodes.home, "node", "start", "bergen", "--busy-wait", "1"), code=2)
    assert "--busy-wait" in bad and "0<=x<=0.01" in bad, bad
    bad = failed(rusm(nodes.home, "node", "start", "bergen", "--busy-wait", "nan"), code=2)
    assert "--busy-wait" in bad and "not a number" in bad, bad


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_node_gracefully_and_removes_its_entry(
    home: Path, nodes: Nodes, sig: signal.Signals
) -> None:
    name = f"stop-{sig.name.lower()}"
    node = nodes.start(name, "--app", APP)
    assert node.stop(sig) == 0
    assert not node.path.exists()
    log = node.log_text()
    assert f"node {name} stopping" in log and f"node {name} stopped" in log
    assert "Traceback" not in log


def test_bad_start_options_are_usage_errors_and_start_nothing(home: Path) -> None:
    for options, says in ((["no spaces"], "NAME"),
                          (["ok-name", "--idle-timeout", "0.1"], "--idle-timeout"),
                          (["ok-name", "--listen", "nowhere"], "--listen"),
                          (["ok-name", "--observe", "127.0.0.1:70000"], "--observe")):
        err = failed(rusm(home, "node", "start", *options), code=2)
        assert says in err, (options, err)
    assert not (home / "nodes" / "ok-name.json").exists()


def test_an_app_that_cannot_load_or_fails_in_setup_stops_the_start_and_leaves_no_entry(
    home: Path,
) -> None:
    entry = home / "nodes" / "badapp.json"
    for app, says in (("tests.node_app:missing", "has no function 'missing'"),
                      ("tests.no_such_module_xyz:setup", "cannot import"),
                      ("tests.node_app", "MODULE:FUNCTION"),
                      ("tests.node_app:broken", "failed in setup")):
        err = failed(rusm(home, "node", "start", "badapp", "--app", app))
        assert says in err, (app, err)
        assert not entry.exists(), app


# -- one-shot ops against london ---------------------------------------------------


def test_ps_json_shows_the_node_its_totals_and_the_app_s_processes(
    home: Path, london: Node
) -> None:
    sample = ps_json(home)
    assert sample["node"] == "london" and "t" not in sample
    assert sample["processes"] >= 2 and sample["detail"] is True
    assert {"msgs_in_per_s", "msgs_out_per_s", "dead_letters_per_s", "mailbox"} <= set(
        sample["totals"]
    )
    ledger = row_of(sample, name="ledger")
    assert ledger is not None and ledger["label"] == "ledger"


def test_ps_prints_the_process_table(home: Path, london: Node) -> None:
    lines = ok(rusm(home, "ps", "london")).splitlines()
    assert lines[0].startswith("node london  up ")
    assert lines[1].split()[:3] == ["PID", "LABEL", "NAMES"]
    assert any("ledger" in line and line.startswith("<london.") for line in lines[2:])


def test_ps_options_choose_the_sort_the_limit_and_the_filter(home: Path, london: Node) -> None:
    sample = ps_json(home, "london", "--filter", "LEDGER", "--limit", "1")
    assert [r["names"] for r in sample["rows"]] == [["ledger"]]
    assert sample["matched"] == 1
    sample = ps_json(home, "london", "--sort", "pid", "--limit", "2")
    serials = [int(r["pid"].split(".")[1].rstrip(">")) for r in sample["rows"]]
    assert sample["sort"] == "pid" and len(serials) == 2 and serials == sorted(serials)
    assert sample["omitted"] == sample["matched"] - 2
    err = failed(rusm(home, "ps", "london", "--sort", "colour"))
    assert "cannot sort by 'colour'" in err


def test_spawn_send_and_kill_act_on_the_node(home: Path, london: Node) -> None:
    pid = ok(rusm(home, "spawn", "london", "worker", "['cli_w']")).strip()
    assert pid.startswith("<london.") and pid.endswith(">")
    row = row_of(ps_json(home), pid)
    assert row is not None and row["label"] == "worker" and row["names"] == ["cli_w"]
    assert row["received"] == 0

    assert ok(rusm(home, "send", "london", pid, "('hello', [1, 2], {'k': None})")).strip() == pid
    assert ok(rusm(home, "send", "london", "cli_w", "42")).strip() == "cli_w"
    row = row_of(ps_json(home), pid)
    assert row is not None and row["received"] == 2

    assert ok(rusm(home, "kill", "london", pid)).strip() == pid
    sample = ps_json(home)
    assert row_of(sample, pid) is None and row_of(sample, name="cli_w") is None
    err = failed(rusm(home, "kill", "london", pid))
    assert f"error (no_such_process): no process {pid} on london" in err


def test_send_by_name_reaches_the_process(home: Path, london: Node) -> None:
    before = row_of(ps_json(home), name="ledger")["mailbox"]
    assert ok(rusm(home, "send", "london", "ledger", "{'k': (1, 2)}")).strip() == "ledger"
    assert row_of(ps_json(home), name="ledger")["mailbox"] == before + 1


def test_a_refused_one_shot_command_prints_its_error_kind_and_exits_1(
    home: Path, london: Node
) -> None:
    cases = [
        (["spawn", "london", "nope"], "error (unknown_factory)"),
        (["spawn", "london", "worker", "[1, 2, 3]"], "error (spawn_failed)"),
        (["send", "london", "nobody", "1"], "error (no_such_process)"),
        (["kill", "london", "not-a-pid"], "error (bad_request)"),
    ]
    for command, says in cases:
        err = failed(rusm(home, *command))
        assert says in err, (command, err)


def test_a_term_is_read_as_a_literal_never_evaluated(home: Path, london: Node) -> None:
    err = failed(rusm(home, "send", "london", "ledger", "__import__('os').getpid()"), code=2)
    assert "cannot read" in err and "as a Python literal" in err


def test_sending_an_unsendable_term_is_an_error_line_not_a_traceback(
    home: Path, london: Node
) -> None:
    err = failed(rusm(home, "send", "london", "ledger", "{1, 2}"))
    assert "error (unsendable)" in err


# -- rusm attach, scripted through stdin -----------------------------------------------


def table_rows(lines: list[str], header_index: int) -> list[str]:
    """The rows of the ps table whose PID header is at ``header_index``."""
    rows = []
    for line in lines[header_index + 1:]:
        if not line.startswith("<"):
            break
        rows.append(line)
    return rows


def test_attach_runs_a_script_from_stdin_and_exits_1_if_a_command_failed(
    home: Path, london: Node
) -> None:
    victim = ok(rusm(home, "spawn", "london", "worker")).strip()
    ledger_before = row_of(ps_json(home), name="ledger")["mailbox"]
    script = "\n".join([
        "# comments and blank lines are skipped",
        "",
        "ps",
        f"info {victim}",
        "send ledger ('via', 'attach')",
        "spawn worker ['repl_w']",
        f"kill {victim}",
        "ps",
        "nodes",
        "frobnicate now",
        f"info {victim}",
        "",
    ])
    result = rusm(home, "attach", "london", "--interval", "0.2", input=script)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()

    headers = [i for i, line in enumerate(lines) if line.split()[:2] == ["PID", "LABEL"]]
    assert len(headers) == 2, result.stdout
    first, second = (table_rows(lines, i) for i in headers)
    assert any(r.startswith(victim + " ") for r in first)
    assert any("ledger" in r for r in first)
    assert not any(r.startswith(victim + " ") for r in second), "killed, yet still listed"
    assert any("repl_w" in r for r in second)

    stripped = [line.strip() for line in lines]
    assert f"pid: {victim}" in stripped and "label: worker" in stripped
    assert "ok: ledger" in stripped
    spawned = [s for s in stripped if s.startswith("ok: <london.")]
    assert spawned and spawned[0] != f"ok: {victim}"
    assert f"ok: {victim}" in stripped
    assert "(no connected nodes)" in stripped
    assert "error (unknown_command): unknown command 'frobnicate'; type help" in stripped
    assert f"error (no_such_process): no process {victim} on london" in stripped

    after = ps_json(home)
    assert row_of(after, name="ledger")["mailbox"] == ledger_before + 1
    assert row_of(after, name="repl_w") is not None


def test_attach_exits_0_when_every_command_succeeds_and_stops_at_quit(
    home: Path, london: Node
) -> None:
    result = rusm(home, "attach", "london", input="nodes\nhelp\nquit\nfrobnicate\n")
    out = ok(result)
    assert "(no connected nodes)" in out
    assert "send DEST TERM" in out  # the help text
    assert "frobnicate" not in out


def test_attach_carries_on_after_an_unsendable_term(home: Path, london: Node) -> None:
    result = rusm(home, "attach", "london", input="send ledger {1, 2}\nnodes\n")
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert any(line.startswith("error (unsendable):") for line in lines), result.stdout
    assert "(no connected nodes)" in lines, "the REPL stopped at the bad term"
    assert result.returncode == 1


# -- remote attach over QUIC --------------------------------------------------------------


def test_a_remote_attach_sees_the_peer_but_not_itself_and_a_stopped_peer_goes(
    home: Path, london: Node, nodes: Nodes, certs: Certs
) -> None:
    tokyo = nodes.start("tokyo", "--identity", str(certs.tokyo), "--connect", london.cluster)
    poll(lambda: "connected to london" in tokyo.log_text(), "tokyo to link to london")
    target = f"london@{london.cluster}"
    ops = ("--identity", str(certs.ops))

    sample = ps_json(home, target, *ops)
    assert sample["node"] == "london" and sample["nodes"] == ["tokyo"]
    ledger = row_of(sample, name="ledger")
    assert ledger is not None

    script = f"nodes\ninfo {ledger['pid']}\nspawn worker ['remote_w']\nps\n"
    result = rusm(home, "attach", target, *ops, "--interval", "0.2", input=script)
    out = ok(result)
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "tokyo", out  # not "ops, tokyo": the attacher is hidden
    assert "label: ledger" in lines
    assert any(line.startswith("ok: <london.") for line in lines)
    assert any("remote_w" in line and line.startswith("<london.") for line in lines)
    assert "nodes tokyo" in out  # the ps header lists the visible nodes only

    assert ps_json(home, "tokyo")["nodes"] == ["london"]  # tokyo never sees the attacher

    assert tokyo.stop() == 0
    # The link closes with the node: london drops tokyo well before its
    # 10 s idle timeout would.
    poll(lambda: ps_json(home)["nodes"] == [], "london to drop tokyo", timeout=5.0)


def test_a_remote_attach_needs_an_identity_of_this_cluster_and_the_right_name(
    home: Path, london: Node, certs: Certs
) -> None:
    target = f"london@{london.cluster}"
    err = failed(rusm(home, "ps", target))
    assert "identity" in err
    err = failed(rusm(home, "ps", target, "--identity", str(certs.stranger)))
    assert "cannot attach to london" in err
    err = failed(rusm(home, "ps", f"paris@{london.cluster}", "--identity", str(certs.ops)))
    assert "'london', not 'paris'" in err
    assert ps_json(home)["node"] == "london"  # and london is fine
