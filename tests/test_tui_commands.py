"""The command pane's language and completion."""

from __future__ import annotations

import pytest

from rusm.observe.protocol import CommandError
from rusm.tui.commands import (
    CommandLineError,
    Detail,
    Filter,
    Help,
    Info,
    Kill,
    Node,
    Purge,
    Reload,
    Send,
    Sort,
    Spawn,
    parse,
    split_literals,
)
from rusm.tui.completion import Completions


@pytest.mark.parametrize(("line", "command"), [
    ("send <london.3> {'job': (1, 2)}", Send("<london.3>", {"job": (1, 2)})),
    ("send jobs b'raw'", Send("jobs", b"raw")),
    ("spawn worker", Spawn("worker", [])),
    ("spawn worker [1, 'x']", Spawn("worker", [1, "x"])),
    ("spawn worker (1, 'x')", Spawn("worker", [1, "x"])),
    ("spawn worker 1 'a b' [2, 3]", Spawn("worker", [1, "a b", [2, 3]])),
    ("spawn worker 'one'", Spawn("worker", ["one"])),
    ("kill <london.3>", Kill("<london.3>")),
    ("kill <london.3> shutdown", Kill("<london.3>", "shutdown")),
    ("kill <london.3> ('shutdown', 2)", Kill("<london.3>", ("shutdown", 2))),
    ("kill <london.3> None", Kill("<london.3>", None)),
    ("info <london.3>", Info("<london.3>")),
    ("detail off", Detail(False)),
    ("detail on", Detail(True)),
    ("sort links", Sort("links")),
    ("filter work", Filter("work")),
    ("filter", Filter("")),
    ("node tokyo", Node("tokyo")),
    ("  help  ", Help()),
    ("reload myapp.services", Reload("myapp.services")),
    ("reload myapp --all-nodes", Reload("myapp", all_nodes=True)),
    ("purge myapp", Purge("myapp")),
])
def test_a_command_line_parses_to_its_command(line: str, command: object) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(("line", "error"), [
    ("launch x", "unknown command 'launch'; commands: send, spawn"),
    ("send jobs", "usage: send DEST TERM"),
    ("send jobs {'a':", "cannot read \"{'a':\" as a Python literal"),
    ("send jobs open('/etc/passwd')", "cannot read"),
    ("send jobs __import__('os')", "cannot read"),
    ("spawn", "usage: spawn FACTORY [ARGS]"),
    ("spawn w 'unclosed", "unclosed '"),
    ("kill", "usage: kill PID [REASON]"),
    ("kill <l.1> not a word", "cannot read"),
    ("info", "usage: info PID"),
    ("detail maybe", "usage: detail on|off"),
    ("sort colour", "usage: sort KEY; keys: mailbox, received"),
    ("node a b", "usage: node NAME"),
    ("help me", "usage: help"),
    ("reload", "usage: reload MODULE [--all-nodes]"),
    ("reload ../etc/x", "usage: reload MODULE [--all-nodes]"),
    ("reload a b", "usage: reload MODULE [--all-nodes]"),
    ("purge", "usage: purge MODULE"),
    ("purge m --all-nodes", "usage: purge MODULE"),
    ("send slow hello", "hello is not a value; a string needs quotes: 'hello'"),
    ("send x __import__('os').system('true')", "is a call; only literals can be sent"),
])
def test_a_bad_command_line_says_what_to_type(line: str, error: str) -> None:
    with pytest.raises(CommandLineError) as e:
        parse(line)
    assert error in str(e.value)


def test_literals_split_at_spaces_outside_quotes_and_brackets() -> None:
    assert split_literals("1 'a b' [2, 3] {'k': (4, 5)} \"c\\\" d\"") == [
        "1", "'a b'", "[2, 3]", "{'k': (4, 5)}", '"c\\" d"',
    ]


def test_completion_offers_commands_then_what_each_takes() -> None:
    c = Completions()
    c.pids = ["<london.3>", "<london.31>"]
    c.names = ["consumer", "jobs"]
    c.factories = ["worker", "flood"]
    c.nodes = ["tokyo"]
    assert c.suggest("sp") == "spawn"
    assert c.suggest("spawn fl") == "spawn flood"
    assert c.suggest("kill <london.3") == "kill <london.3>"
    assert c.suggest("kill <london.31") == "kill <london.31>"
    assert c.suggest("send con") == "send consumer"
    assert c.suggest("send <lon") == "send <london.3>"
    assert c.suggest("detail o") == "detail on"
    assert c.suggest("sort re") == "sort received"
    assert c.suggest("node to") == "node tokyo"
    assert c.suggest("send consumer {'a'") is None
    assert c.suggest("spawn") is None
    assert c.suggest("") is None


def test_completion_knows_what_each_command_takes_before_a_letter_is_typed() -> None:
    c = Completions()
    c.pids = ["<london.3>"]
    c.names = ["consumer"]
    c.factories = ["worker"]
    assert c.suggest("spawn ") == "spawn worker"
    assert c.suggest("kill ") == "kill consumer"
    assert c.suggest("info ") == "info consumer"
    assert c.suggest("kill <") == "kill <london.3>"
    assert c.suggest("sort ") == "sort mailbox"


@pytest.mark.parametrize(("line", "error"), [
    ("send tally {1, 2}", "a set cannot be sent; use a list or a tuple"),
    ("send tally {'a': [1, {2}]}", "a set cannot be sent (at ['a'][1]); use a list or a tuple"),
    ("spawn worker {1}", "a set cannot be sent; use a list or a tuple"),
])
def test_a_term_no_node_could_be_sent_says_what_and_where_in_what_was_typed(
    line: str, error: str,
) -> None:
    with pytest.raises(CommandError) as e:
        parse(line)
    assert (e.value.kind, e.value.message) == ("unsendable", error)


@pytest.mark.parametrize("line", ["send slow hello", "send tally {1, 2}", "kill", "sort colour"])
def test_top_and_attach_say_the_same_for_the_same_bad_line(line: str) -> None:
    from rusm.cli.repl import parse as attach_parse

    with pytest.raises((CommandLineError, CommandError)) as top_error:
        parse(line)
    said = top_error.value.message if isinstance(top_error.value, CommandError) else str(
        top_error.value)
    with pytest.raises(CommandError) as attach_error:
        attach_parse(line)
    assert attach_error.value.message == said
    assert "ast." not in said and "['args']" not in said


@pytest.mark.parametrize(("line", "command"), [
    ("reload hotmod", ("reload", {"module": "hotmod"})),
    ("reload hotmod --all-nodes", ("reload", {"module": "hotmod", "all_nodes": True})),
    ("purge hotmod", ("purge", {"module": "hotmod"})),
])
def test_attach_runs_reload_and_purge_as_the_node_commands(
    line: str, command: tuple[str, dict[str, object]],
) -> None:
    from rusm.cli.repl import parse as attach_parse
    from rusm.observe.protocol import MUTATING

    assert attach_parse(line) == command
    assert command[0] in MUTATING  # asked about first, and audited
