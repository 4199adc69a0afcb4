"""Calls queued while a worker-thread call is in flight run together in the next one.

Each POST needs one worker-thread call (decrypt, plan, store). A hop costs CPU on both
threads (the queue, a futex wake, the loop's self-pipe write and read) and as much
again in latency, and under load POSTs arrive faster than hops finish. Calls made
while one is running wait and then run together in one worker call, each still on
its own (its own transaction, its own outcome or exception), so one POST's failure
never touches another's. This is group commit, minus the shared commit.

Up to `lanes` tasks lead at once, each in its own worker thread: a leader runs the
oldest pending calls (at most `MAX_CALLS`), then hands over; a caller whose call is
still pending leads the next hop when a lane is free, so calls run in arrival order. Two lanes keep both cores busy: RSA releases the GIL
(cryptography 50, measured by bench/floors.py), so one thread decrypts while the
other parses, normalises and stores. A call once
queued is never abandoned: like `anyio.to_thread.run_sync` it finishes even when its
caller is cancelled, and the caller learns of the cancellation afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

_T = TypeVar("_T")

#: Calls one worker-thread call runs at most.
MAX_CALLS = 32


class _Call(Generic[_T]):
    __slots__ = ("done", "error", "func", "taken", "value")

    def __init__(self, func: Callable[[], _T]) -> None:
        self.func = func
        self.taken = False  # a leader holds it (in flight)
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> _T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[no-any-return]


def _run_all(calls: list[_Call[Any]]) -> None:
    """In the worker thread: every call, each with its own outcome."""
    for call in calls:
        try:
            call.value = call.func()
        except BaseException as exc:  # handed to that call's caller, and only to it
            call.error = exc
        call.done = True


class ThreadCoalescer:
    """`await run(func)`: `func()` in a worker thread, sharing the hop with calls queued beside it."""

    def __init__(self, lanes: int = 2) -> None:
        self.lanes = max(1, lanes)
        self._pending: list[_Call[Any]] = []
        self._leading = 0
        self._finished = anyio.Event()
        self.hops = 0  # worker-thread calls made
        self.calls = 0  # functions run in them

    async def run(self, func: Callable[[], _T]) -> _T:
        call: _Call[_T] = _Call(func)
        self._pending.append(call)
        with anyio.CancelScope(shield=True):  # queued work finishes; the caller sees a cancel after
            while not call.done:
                if call.taken or self._leading >= self.lanes:
                    finished = self._finished
                    await finished.wait()
                    continue
                await self._lead()
        await anyio.lowlevel.checkpoint_if_cancelled()
        return call.result()

    async def _lead(self) -> None:
        self._leading += 1
        # At most MAX_CALLS a hop: under overload the queue can hold hundreds of POSTs, and one
        # leader taking them all would hold every decrypted item at once (memory) and answer
        # none of them until the last is stored (Graph's 3 s).
        calls, self._pending = self._pending[:MAX_CALLS], self._pending[MAX_CALLS:]
        for call in calls:
            call.taken = True
        try:
            self.hops += 1
            self.calls += len(calls)
            await anyio.to_thread.run_sync(_run_all, calls)
        finally:
            self._leading -= 1
            finished, self._finished = self._finished, anyio.Event()
            finished.set()  # the callers of this batch return; one of the next batch leads
