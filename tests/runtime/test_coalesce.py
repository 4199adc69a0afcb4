"""Calls queued while a worker call runs share the next one, each keeping its own outcome."""

from __future__ import annotations

import threading
from typing import Any

import anyio

from agentseat.runtime.coalesce import ThreadCoalescer



async def test_calls_made_while_one_runs_share_the_next_worker_call() -> None:
    coalescer = ThreadCoalescer(lanes=1)
    release, started = threading.Event(), threading.Event()
    threads: list[int] = []
    results: dict[str, Any] = {}

    def first() -> str:
        started.set()
        release.wait(10)
        return "first"

    def later(n: int) -> Any:
        threads.append(threading.get_ident())
        if n == 3:
            raise ValueError("only this one fails")
        return n

    async def call(name: str, func: Any) -> None:
        try:
            results[name] = await coalescer.run(func)
        except ValueError as exc:
            results[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "first", first)
        await anyio.to_thread.run_sync(started.wait, 10)
        for n in range(6):
            tg.start_soon(call, f"later{n}", lambda n=n: later(n))
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert results["first"] == "first"
    assert [results[f"later{n}"] for n in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]
    assert isinstance(results["later3"], ValueError)  # its own caller's error, nobody else's
    assert (coalescer.hops, coalescer.calls) == (2, 7)  # the six queued calls took one hop together
    assert len(set(threads)) == 1 and threads[0] != threading.get_ident()


async def test_a_queued_call_finishes_even_when_its_caller_is_cancelled() -> None:
    coalescer = ThreadCoalescer(lanes=1)
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> None:
        started.set()
        release.wait(10)

    async with anyio.create_task_group() as tg:
        tg.start_soon(coalescer.run, first)
        await anyio.to_thread.run_sync(started.wait, 10)
        with anyio.CancelScope() as scope:
            scope.cancel()
            release.set()
            await coalescer.run(lambda: ran.append("queued"))  # cancelled, but already queued
        assert scope.cancelled_caught
    assert ran == ["queued"]
    assert await coalescer.run(lambda: "after") == "after"  # and the coalescer still works


async def test_with_two_lanes_a_second_call_runs_beside_a_slow_one() -> None:
    coalescer = ThreadCoalescer(lanes=2)
    release, started = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "slow"

    async with anyio.create_task_group() as tg:
        tg.start_soon(coalescer.run, slow)
        await anyio.to_thread.run_sync(started.wait, 10)
        assert await coalescer.run(lambda: "beside") == "beside"  # did not wait for the slow one
        release.set()
    assert coalescer.hops == 2


async def test_one_worker_call_runs_at_most_max_calls() -> None:
    from agentseat.runtime.coalesce import MAX_CALLS

    coalescer = ThreadCoalescer(lanes=1)
    release, started = threading.Event(), threading.Event()

    def first() -> None:
        started.set()
        release.wait(10)

    results: list[int] = []

    async def call(n: int) -> None:
        results.append(await coalescer.run(lambda: n))

    async with anyio.create_task_group() as tg:
        tg.start_soon(coalescer.run, first)
        await anyio.to_thread.run_sync(started.wait, 10)
        for n in range(2 * MAX_CALLS + 1):
            tg.start_soon(call, n)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert sorted(results) == list(range(2 * MAX_CALLS + 1))
    assert coalescer.hops == 1 + 3  # the queue went in three hops, none over MAX_CALLS
