"""Errors that say what happened, peers that are found late, the documented
example as written, and the audit of one-shot and REPL commands.

Real ``rusm`` subprocesses, as in tests/test_node_cli.py (whose fixtures and
helpers this module shares); waits are on log lines and directory entries,
polled with a bound, never slept.
"""

from __future__ import annotations

import functools
import json
import os
import re
import select
import shlex
import socket
import stat
import subprocess
import time
from pathlib import Path

from tests.test_node_cli import (  # noqa: F401 - fixtures
    APP,
    CLI_TIMEOUT,
    REPO,
    RUSM,
    Certs,
    Nodes,
    certs,
    env_for,
    failed,
    home,
    nodes,
    ok,
    poll,
    ps_json,
    read_entry,
    row_of,
    rusm,
)

OPERATIONS = REPO / "docs" / "OPERATIONS.md"


def free_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


# -- attach errors name their reason ---------------------------------------------------


def test_attaching_where_nothing_listens_says_no_answer_within_5_s(
    home: Path, certs: Certs  # noqa: F811
) -> None:
    port = free_port()
    target = f"london@127.0.0.1:{port}"
    expected = f"cannot attach to london at 127.0.0.1:{port}: no answer within 5 s"
    commands = [["ps", target], ["attach", target], ["kill", target, "<london.1>", "--yes"]]
    procs = [
        subprocess.Popen([str(RUSM), *c, "--identity", str(certs.ops)], env=env_for(home),
                         cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    for command, proc in zip(commands, procs, strict=True):
        _, err = proc.communicate(timeout=CLI_TIMEOUT)
        assert proc.returncode == 1, (command, err)
        assert err.strip() == f"Error: {expected}", (command, err)


def test_an_unreadable_identity_is_the_reason_after_the_colon(tmp_path: Path) -> None:
    err = failed(rusm(tmp_path, "ps", "london@127.0.0.1:4999", "--identity",
                      str(tmp_path / "nowhere")))
    prefix = "Error: cannot attach to london at 127.0.0.1:4999: "
    assert err.startswith(prefix) and err.strip() != prefix.strip(), err
    assert "nowhere" in err


def test_a_refused_attach_says_the_certificate_was_rejected(
    home: Path, nodes: Nodes, certs: Certs  # noqa: F811
) -> None:
    london = nodes.start("london", "--identity", str(certs.london))
    err = failed(rusm(home, "ps", f"london@{london.cluster}", "--identity", str(certs.stranger)))
    assert f"cannot attach to london at {london.cluster}: " in err
    assert "certificate rejected" in err and "not signed by this cluster's trust anchor" in err
    assert london.stop() == 0


# -- --connect: in the background, retried, owned by the node ---------------------------


def test_a_connect_peer_that_starts_later_is_linked_without_restarting_the_node(
    home: Path, nodes: Nodes, certs: Certs  # noqa: F811
) -> None:
    port = free_port()
    london = nodes.start("london", "--identity", str(certs.london),
                       "--connect", f"127.0.0.1:{port}")
    failure = f"node london: cannot connect to 127.0.0.1:{port}: no answer within 5 s; retrying"
    poll(lambda: failure in london.log_text(), "london's first failed connect")
    log = london.log_text()
    assert log.index("node london up:") < log.index(failure), "up waited for the connect"

    tokyo = nodes.start("tokyo", "--identity", str(certs.tokyo),
                        "--listen", f"127.0.0.1:{port}")
    poll(lambda: f"node london: connected to tokyo at 127.0.0.1:{port}" in london.log_text(),
         "london to retry and link to tokyo", timeout=40.0)
    assert ps_json(home, "london")["nodes"] == ["tokyo"]

    log = london.log_text()
    for line in lines_with(log, "cannot connect"):  # each attempt: one line with its reason
        assert f"127.0.0.1:{port}: no answer within 5 s; retrying in " in line, line
    assert tokyo.stop() == 0 and london.stop() == 0


def test_a_node_whose_connect_peer_never_answers_stops_promptly_and_cleanly(
    home: Path, nodes: Nodes, certs: Certs  # noqa: F811
) -> None:
    london = nodes.start("london", "--identity", str(certs.london),
                       "--connect", f"127.0.0.1:{free_port()}")
    poll(lambda: "node london up:" in london.log_text(), "london's up line")
    started = time.monotonic()
    assert london.stop() == 0
    assert time.monotonic() - started < 5.0, "the retry task held the node up"
    log = london.log_text()
    assert "node london stopped" in log
    assert "Traceback" not in log and "was destroyed but it is pending" not in log, log


# -- a wrong identity: one line on each side --------------------------------------------


def test_a_peer_from_another_cluster_gives_one_line_on_each_side(
    home: Path, nodes: Nodes, certs: Certs, tmp_path: Path  # noqa: F811
) -> None:
    other = tmp_path / "other"
    ok(rusm(home, "cert", "ca", str(other / "ca")))
    ok(rusm(home, "cert", "issue", "tokyo", "--ca", str(other / "ca"), "--out",
            str(other / "tokyo")))
    london = nodes.start("london", "--identity", str(certs.london))
    tokyo = nodes.start("tokyo", "--identity", str(other / "tokyo"), "--connect", london.cluster)
    words = "certificate rejected"
    poll(lambda: words in tokyo.log_text(), "tokyo's refusal")
    poll(lambda: words in london.log_text(), "london's line", timeout=10.0)
    assert tokyo.stop() == 0 and london.stop() == 0
    for node in (london, tokyo):
        said = lines_with(node.log_text(), words)
        assert len(said) == 1, (node.name, said)
        assert "not signed by this cluster's trust anchor" in said[0]
        assert " quic:" not in node.log_text()  # no engine lines at the default level


# -- docs/OPERATIONS.md's example, as written -------------------------------------------


def code_block_with(text: str, needle: str) -> list[str]:
    """The commands of the first ```sh block that contains ``needle`` (comments dropped)."""
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        if needle in block:
            lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
            return [line for line in lines if line]
    raise AssertionError(f"no sh block with {needle!r} in {OPERATIONS}")


def test_the_documented_two_node_example_links_as_written(tmp_path: Path) -> None:
    doc = OPERATIONS.read_text()
    made = code_block_with(doc, "rusm cert ca ./ca")
    run = code_block_with(doc, "rusm node start tokyo")
    # The doc's fixed ports may be taken on a test machine: the same commands
    # with free ports in their place.
    ports = {"4370": str(free_port()), "4371": str(free_port())}
    run = [re.sub(r"127\.0\.0\.1:(4370|4371)", lambda m: f"127.0.0.1:{ports[m[1]]}", c)
           for c in run]
    assert any("--listen" in c and "london" in c for c in run), "london needs a fixed port"

    doc_home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    env = env_for(doc_home)
    for command in made:
        argv = shlex.split(command)
        assert argv[0] == "rusm"
        subprocess.run([str(RUSM), *argv[1:]], cwd=work, env=env, check=True,
                       capture_output=True, timeout=CLI_TIMEOUT)

    started: list[subprocess.Popen[bytes]] = []
    try:
        for command in run:
            argv = shlex.split(command.removesuffix("&"))
            assert argv[0] == "rusm"
            if command.endswith("&"):
                started.append(subprocess.Popen(
                    [str(RUSM), *argv[1:]], cwd=work, env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                name = argv[argv.index("start") + 1]
                entry = doc_home / "nodes" / f"{name}.json"
                poll(functools.partial(read_entry, entry), f"{name}'s entry")
            elif "ps" in argv and "--json" in argv:
                def linked(a: list[str] = argv) -> bool:
                    out = subprocess.run([str(RUSM), *a[1:]], cwd=work, env=env, text=True,
                                         capture_output=True, timeout=CLI_TIMEOUT)
                    return out.returncode == 0 and json.loads(out.stdout)["nodes"] == ["london"]
                poll(linked, "tokyo to link to london")
            else:
                subprocess.run([str(RUSM), *argv[1:]], cwd=work, env=env, check=True,
                               capture_output=True, timeout=CLI_TIMEOUT)
        listed = ok(rusm(doc_home, "node", "ls", "--json")).splitlines()
        clusters = {d["name"]: d["cluster"] for d in map(json.loads, listed)}
        assert clusters["london"] == f"127.0.0.1:{ports['4370']}"
        assert ps_json(doc_home, "london")["nodes"] == ["tokyo"]
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            assert proc.wait(CLI_TIMEOUT) == 0


# -- the audit log and confirmation -------------------------------------------------------


def audit_lines(rusm_home: Path) -> list[list[str]]:
    path = rusm_home / "audit.log"
    return [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []


def test_one_shot_commands_are_audited_in_the_tuis_log_created_0600(
    home: Path, nodes: Nodes, certs: Certs  # noqa: F811
) -> None:
    nodes.start("oslo", "--app", APP)
    before = len(audit_lines(home))
    pid = ok(rusm(home, "spawn", "oslo", "worker")).strip()
    ok(rusm(home, "send", "oslo", pid, "('hi', 1)"))
    ok(rusm(home, "kill", "oslo", pid))
    failed(rusm(home, "kill", "oslo", pid))

    assert stat.S_IMODE((home / "audit.log").stat().st_mode) == 0o600
    new = [(target, command, result) for _, target, command, result in audit_lines(home)[before:]]
    assert new == [
        ("oslo", "spawn worker", f"ok {pid}"),
        ("oslo", f"send {pid} ('hi', 1)", f"ok {pid}"),
        ("oslo", f"kill {pid}", f"ok {pid}"),
        ("oslo", f"kill {pid}", f"error: no process {pid} on oslo"),
    ]


def test_mutating_repl_commands_are_audited_and_reads_are_not(
    home: Path, nodes: Nodes  # noqa: F811
) -> None:
    nodes.start("oslo", "--app", APP)
    before = len(audit_lines(home))
    script = "ps\nnodes\nspawn worker ['audited_w']\nsend audited_w 7\n"
    ok(rusm(home, "attach", "oslo", input=script))
    new = [(t, c, r.split(" ")[0]) for _, t, c, r in audit_lines(home)[before:]]
    assert new == [("oslo", "spawn worker ['audited_w']", "ok"),
                   ("oslo", "send audited_w 7", "ok")]


def run_on_a_terminal(rusm_home: Path, *args: str, answer: str | None) -> tuple[int, str]:
    """Run ``rusm ARGS`` with a pseudo-terminal as stdin; type ``answer`` at the
    question (None: expect no question). Returns the exit status and stdout."""
    master, slave = os.openpty()
    proc = subprocess.Popen([str(RUSM), *args], env=env_for(rusm_home), cwd=REPO, stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.close(slave)
    assert proc.stdout is not None
    out = b""
    try:
        if answer is not None:
            deadline = time.monotonic() + CLI_TIMEOUT
            while b"[y/N]" not in out:
                left = deadline - time.monotonic()
                assert left > 0, f"no question asked: {out!r}"
                ready, _, _ = select.select([proc.stdout], [], [], left)
                if ready:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    assert chunk, f"exited before asking: {out!r}"
                    out += chunk
            os.write(master, answer.encode() + b"\n")
        rest, _ = proc.communicate(timeout=CLI_TIMEOUT)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, (out + rest).decode()


def test_on_a_terminal_kill_asks_first_and_no_leaves_the_process_running(
    home: Path, nodes: Nodes  # noqa: F811
) -> None:
    nodes.start("oslo", "--app", APP)
    pid = ok(rusm(home, "spawn", "oslo", "worker")).strip()
    before = len(audit_lines(home))

    code, out = run_on_a_terminal(home, "kill", "oslo", pid, answer="n")
    assert code == 1 and f"kill {pid} on oslo? [y/N]" in out and "cancelled" in out, out
    assert row_of(ps_json(home, "oslo"), pid) is not None
    assert len(audit_lines(home)) == before, "a cancelled command was audited"

    code, out = run_on_a_terminal(home, "kill", "oslo", pid, "--yes", answer=None)
    assert code == 0 and "[y/N]" not in out and pid in out, out
    assert row_of(ps_json(home, "oslo"), pid) is None
