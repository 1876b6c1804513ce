"""The runtime owns every process task: closing it leaves none behind."""

import asyncio
import contextlib

import pytest

from rusm.actors import Process, Runtime, RuntimeClosed, RuntimeConfig, RusmError

from .helpers import idle, until, waiting


async def test_leaving_the_runtime_stops_every_process_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    cleaned: list[int] = []

    async def stubborn(proc: Process, i: int) -> None:
        try:
            await proc.receive()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            cleaned.append(i)

    async with Runtime() as rt:
        pids = [rt.spawn(stubborn, i) for i in range(100)] + [rt.spawn(idle) for _ in range(100)]
        await until(waiting(rt, *pids))
        assert len(asyncio.all_tasks() - before) == 200
    assert asyncio.all_tasks() == before
    assert sorted(cleaned) == list(range(100))
    assert rt.stats().processes == 0 and rt.stats().exited == 200


async def test_a_process_that_ignores_cancellation_is_named_at_shutdown() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def deaf(proc: Process) -> None:
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    rt = Runtime(config=RuntimeConfig(shutdown_timeout=0.2))
    async with rt:
        pid = rt.spawn(deaf)
        await started.wait()
        rt.close()
        with pytest.raises(RusmError, match=str(pid)):
            await rt.wait_closed()
        release.set()  # let it go, so this test leaves no task either


async def test_spawning_on_a_closed_runtime_raises_runtime_closed() -> None:
    async with Runtime() as rt:
        pass
    with pytest.raises(RuntimeClosed):
        rt.spawn(idle)


async def test_a_runtime_works_without_entering_it_and_closes_later() -> None:
    rt = Runtime("london")
    pid = rt.spawn(idle)
    assert str(pid) == "<london.1>"
    rt.close()
    await rt.wait_closed()
    assert not rt.is_alive(pid)
