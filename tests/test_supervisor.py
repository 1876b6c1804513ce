"""Supervisors: strategies, restart types, intensity, names re-registered."""

from typing import Any

import pytest

from rusm.actors import ChildSpec, Down, Pid, Process, Runtime, Supervisor

from .helpers import idle, probe


async def stopper(proc: Process) -> None:
    """A child that exits normally when told "stop"."""
    await proc.receive(match=lambda m: m == "stop")


async def children(rt: Runtime, sup: Pid) -> dict[str, Pid | None]:
    # Calls are handled after every Exit already in the supervisor's mailbox,
    # so the answer reflects all restarts due to exits that happened before.
    return dict(await rt.call(sup, "which_children"))


def three(strategy: str, **kw: Any) -> Supervisor:
    return Supervisor(
        [ChildSpec("a", idle, name="a"), ChildSpec("b", idle, name="b"),
         ChildSpec("c", idle, name="c")],
        strategy=strategy,  # type: ignore[arg-type]
        **kw,
    )


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [("one_for_one", {"b"}), ("one_for_all", {"a", "b", "c"}), ("rest_for_one", {"b", "c"})],
)
async def test_a_strategy_restarts_the_right_children_with_new_pids_and_names(
    rt: Runtime, strategy: str, restarted: set[str]
) -> None:
    sup = rt.spawn(three(strategy))
    before = await children(rt, sup)
    rt.kill(before["b"])  # type: ignore[arg-type]
    after = await children(rt, sup)
    changed = {cid for cid in before if before[cid] != after[cid]}
    assert changed == restarted
    for cid, pid in after.items():
        assert pid is not None and rt.is_alive(pid)
        assert rt.whereis(cid) == pid


async def test_children_are_started_in_order_and_linked(rt: Runtime) -> None:
    sup = rt.spawn(three("one_for_one"))
    kids = await children(rt, sup)
    pids = [kids[c] for c in "abc"]
    assert pids == sorted(pids)  # type: ignore[type-var]
    assert set(rt.process_info(sup).links) == set(pids)  # type: ignore[union-attr]


async def test_more_restarts_than_the_intensity_allows_shut_the_supervisor_down(
    rt: Runtime,
) -> None:
    watcher = await probe(rt)
    sup = rt.spawn(three("one_for_one", max_restarts=2, max_seconds=60))
    ref = watcher.proc.monitor(sup)
    for _ in range(2):
        rt.kill((await children(rt, sup))["a"])  # type: ignore[arg-type]
    last = await children(rt, sup)
    assert all(rt.is_alive(p) for p in last.values())  # type: ignore[arg-type]
    rt.kill(last["a"])  # type: ignore[arg-type]
    assert await watcher.next() == Down(ref, sup, "shutdown")
    assert not any(rt.is_alive(p) for p in last.values())  # type: ignore[arg-type]
    assert rt.registered() == []


async def test_restart_types_decide_who_comes_back(rt: Runtime) -> None:
    watcher = await probe(rt)
    sup = rt.spawn(Supervisor([
        ChildSpec("perm", stopper),
        ChildSpec("trans_ok", stopper, restart="transient"),
        ChildSpec("trans_crash", idle, restart="transient"),
        ChildSpec("temp", idle, restart="temporary"),
    ], max_restarts=10))
    before = await children(rt, sup)
    rt.send(before["perm"], "stop")  # type: ignore[arg-type]
    rt.send(before["trans_ok"], "stop")  # type: ignore[arg-type]
    rt.exit(before["trans_crash"], "crash")  # type: ignore[arg-type]
    rt.kill(before["temp"])  # type: ignore[arg-type]
    refs = {watcher.proc.monitor(before[c]) for c in ("perm", "trans_ok")}  # type: ignore[arg-type]
    assert {(await watcher.next()).ref for _ in refs} == refs  # both have exited
    after = await children(rt, sup)
    assert after["perm"] not in (None, before["perm"])
    assert after["trans_ok"] is None
    assert after["trans_crash"] not in (None, before["trans_crash"])
    assert after["temp"] is None


async def test_killing_the_supervisor_takes_its_children_down(rt: Runtime) -> None:
    sup = rt.spawn(three("one_for_one"))
    kids = await children(rt, sup)
    rt.kill(sup)
    assert not any(rt.is_alive(p) for p in kids.values())  # type: ignore[arg-type]


async def test_a_supervisor_stops_when_its_parent_dies(rt: Runtime) -> None:
    watcher = await probe(rt)
    parent = await probe(rt)
    sup = parent.proc.spawn_link(three("one_for_one"))
    kids = await children(rt, sup)
    ref = watcher.proc.monitor(sup)
    rt.exit(parent.pid, "parent failed")
    assert await watcher.next() == Down(ref, sup, "parent failed")
    assert not any(rt.is_alive(p) for p in kids.values())  # type: ignore[arg-type]


async def test_a_child_that_ignores_shutdown_is_killed_after_its_grace_period(
    rt: Runtime,
) -> None:
    async def deaf(proc: Process) -> None:
        proc.trap_exits = True
        while True:
            await proc.receive()

    sup = rt.spawn(Supervisor(
        [ChildSpec("deaf", deaf, shutdown=0.05), ChildSpec("x", idle)], strategy="one_for_all",
    ))
    before = await children(rt, sup)
    rt.kill(before["x"])  # type: ignore[arg-type]
    after = await children(rt, sup)
    assert not rt.is_alive(before["deaf"])  # type: ignore[arg-type]
    assert after["deaf"] != before["deaf"] and rt.is_alive(after["deaf"])  # type: ignore[arg-type]


def test_a_bad_strategy_or_duplicate_ids_are_value_errors() -> None:
    with pytest.raises(ValueError, match="strategy"):
        Supervisor([], strategy="all_for_none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ChildSpec("a", idle), ChildSpec("a", idle)])
