"""Registered names: register, whereis, unregister, release on exit."""

import pytest

from rusm.actors import NameTaken, NoProc, NotRegistered, Process, ProcessExit, Runtime

from .helpers import idle, probe


async def test_a_registered_name_resolves_and_receives(rt: Runtime) -> None:
    p = await probe(rt)
    rt.register("svc", p.pid)
    assert rt.whereis("svc") == p.pid
    assert rt.registered() == ["svc"]
    rt.send("svc", "hi")
    assert await p.next() == "hi"


async def test_a_taken_name_is_a_typed_error_naming_the_holder(rt: Runtime) -> None:
    a, b = rt.spawn(idle), rt.spawn(idle)
    rt.register("svc", a)
    with pytest.raises(NameTaken, match="already registered") as info:
        rt.register("svc", b)
    assert info.value.holder == a
    assert rt.whereis("svc") == a


async def test_registering_a_dead_pid_raises_noproc(rt: Runtime) -> None:
    pid = rt.spawn(idle)
    rt.kill(pid)
    with pytest.raises(NoProc):
        rt.register("svc", pid)


@pytest.mark.parametrize("name", ["", 42, None])
async def test_a_name_must_be_a_non_empty_string(rt: Runtime, name: object) -> None:
    with pytest.raises(TypeError):
        rt.register(name, rt.spawn(idle))  # type: ignore[arg-type]


async def test_unregister_frees_the_name_and_a_free_name_is_an_error(rt: Runtime) -> None:
    pid = rt.spawn(idle)
    rt.register("svc", pid)
    rt.unregister("svc")
    assert rt.whereis("svc") is None
    assert rt.process_info(pid).names == ()  # type: ignore[union-attr]
    with pytest.raises(NotRegistered):
        rt.unregister("svc")


@pytest.mark.parametrize("how", ["kill", "normal", "crash"])
async def test_names_are_released_when_the_process_exits(rt: Runtime, how: str) -> None:
    watcher = await probe(rt)

    async def body(proc: Process) -> None:
        proc.register("one")
        proc.register("two")
        proc.send(watcher.pid, "registered")
        await proc.receive()
        if how == "crash":
            raise RuntimeError("x")
        raise ProcessExit("normal")

    pid = rt.spawn(body)
    ref = watcher.proc.monitor(pid)
    assert await watcher.next() == "registered"
    assert rt.process_info(pid).names == ("one", "two")  # type: ignore[union-attr]
    if how == "kill":
        rt.kill(pid)
    else:
        rt.send(pid, "go")
    assert (await watcher.next()).ref == ref
    assert rt.whereis("one") is None and rt.whereis("two") is None
    assert rt.registered() == []
    rt.register("one", watcher.pid)  # free to take again
