import pickle

import pytest

from rusm.actors import Pid, Process, Ref, Runtime
from rusm.net.terms import decode_term, encode_term


def test_a_pid_prints_like_erlang_and_parses_back() -> None:
    pid = Pid("london", 42)
    assert str(pid) == "<london.42>"
    assert Pid.parse("<london.42>") == pid
    assert Pid.parse(" <tokyo-2.7> ") == Pid("tokyo-2", 7)


def test_a_node_name_with_dots_parses_on_the_last_dot() -> None:
    assert Pid.parse("<a.b.c.9>") == Pid("a.b.c", 9)


@pytest.mark.parametrize(
    "text", ["london.42", "<london>", "<.42>", "<london.x>", "<lon don.1>", ""]
)
def test_parsing_anything_else_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a pid"):
        Pid.parse(text)


def test_a_pid_is_frozen_hashable_and_ordered() -> None:
    pid = Pid("london", 1)
    with pytest.raises(AttributeError):
        pid.serial = 2  # type: ignore[misc]
    assert {pid: "x"}[Pid("london", 1)] == "x"
    assert pid != Pid("tokyo", 1)
    assert pid != ("london", 1)
    pids = [Pid("b", 1), Pid("a", 2), Pid("a", 1)]
    assert sorted(pids) == [Pid("a", 1), Pid("a", 2), Pid("b", 1)]


def test_pids_and_refs_survive_pickling() -> None:
    assert pickle.loads(pickle.dumps(Pid("london", 3))) == Pid("london", 3)
    assert pickle.loads(pickle.dumps(Ref("london", 3))) == Ref("london", 3)
    assert Ref("london", 3) != Pid("london", 3)


def test_a_pid_of_another_run_of_the_same_node_is_a_different_pid() -> None:
    a, b = Pid("london", 7, creation=1), Pid("london", 7, creation=2)
    assert a != b and str(a) == str(b) == "<london.7>"
    assert pickle.loads(pickle.dumps(b)) == b


def test_a_pid_crosses_the_wire_with_its_creation() -> None:
    pid = Pid("london", 7, creation=2**32 - 1)
    back = decode_term(encode_term([pid]))[0]
    assert back == pid and back.creation == 2**32 - 1


async def test_a_pid_of_a_previous_run_reaches_no_process_of_this_one() -> None:
    async with Runtime("london") as rt:
        async def sink(proc: Process) -> None:
            await proc.receive()

        pid = rt.spawn(sink)
        stale = Pid("london", pid.serial, creation=rt.creation ^ 1)
        before = rt.stats().dead_letters
        rt.send(stale, "hello?")
        assert rt.stats().dead_letters == before + 1
        assert rt.process_info(stale) is None and not rt.is_alive(stale)
        assert rt.process_info(pid).mailbox_depth == 0  # type: ignore[union-attr]
        # A pid typed by hand has no creation and names the process there now.
        assert rt.is_alive(Pid.parse(str(pid)))
