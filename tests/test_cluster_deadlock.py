"""A cycle of calls across two nodes is a deadlock too (issue 12 §1): london's
observer follows london's calls to paris (the control RPC ``waits``) and
flags both ends, in the header's count and in ``info``."""

from __future__ import annotations

from typing import Any

from rusm.actors import Pid, Process
from rusm.net.observe.session import observatory
from rusm.net.waits import cluster_calls, local_waits, merge

from .helpers import until
from .test_observe import Site, ask, ca, site

__all__ = ["ca", "site"]  # test_observe's fixtures


async def call_whoever_i_am_told(proc: Process) -> None:
    target = await proc.receive()
    await proc.call(target, "are you there?", timeout=60)


async def test_a_cycle_of_calls_through_two_nodes_is_flagged_on_both_ends(site: Site) -> None:
    london = site.node
    paris = await site.bind("paris")
    await paris.connect(london.local_addr())
    a = london.runtime.spawn(call_whoever_i_am_told, label="a")
    b = paris.runtime.spawn(call_whoever_i_am_told, label="b")
    london.runtime.send(a, b)
    paris.runtime.send(b, a)
    await until(lambda: london.runtime.remote_calls_waiting() == {a: b}
                and paris.runtime.remote_calls_waiting() == {b: a}, "both calls out")
    assert london.runtime.deadlocked() == set()  # the node alone cannot see it
    assert await cluster_calls(london) == {a: b, b: a}

    obs = observatory(london)
    await until(lambda: obs.cluster_calls == {a: b, b: a}, "the observer's next step")
    assert obs.deadlocked() == {a}
    ws = await site.raw()
    found = (await ask(ws, "info", pid=str(a)))["value"]
    assert found["deadlock"] and found["waited_by"] == [str(b)]
    assert found["waiting_on"].startswith(f"call {b}")
    sample = await site.client()
    first = await sample.next_sample()
    assert first.totals.deadlocked == 1


async def test_a_peer_answer_that_is_malformed_or_not_its_own_is_left_out(site: Site) -> None:
    rt = site.rt
    answer = local_waits(rt, ["nobody", 3, None])
    assert answer == {"edges": [], "names": {}}
    graph: dict[Pid, Any] = {}
    names: dict[tuple[str, str], Pid] = {}
    mine, theirs = Pid("paris", 1), Pid("tokyo", 2)
    merge(graph, names, "paris", {"edges": [[mine, theirs], [theirs, mine], "x", [1, 2],
                                             [mine]], "names": {"n": theirs, "m": mine, 5: mine}})
    assert graph == {mine: theirs} and names == {("m", "paris"): mine}
    merge(graph, names, "paris", {"edges": None, "names": []})
    assert graph == {mine: theirs}
