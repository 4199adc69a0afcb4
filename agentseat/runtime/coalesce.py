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
    __slots__ = ("done", "error", "func", "taken", "value", "wake")

    def __init__(self, func: Callable[[], _T]) -> None:
        self.func = func
        self.taken = False  # a leader holds it (in flight)
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        # Set when this call is done, or when its caller should lead the next hop.
        self.wake = anyio.Event()

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
        self.hops = 0  # worker-thread calls made
        self.calls = 0  # functions run in them

    @property
    def idle(self) -> bool:
        """No call is running or waiting."""
        return not self._leading and not self._pending

    async def run(self, func: Callable[[], _T]) -> _T:
        call: _Call[_T] = _Call(func)
        self._pending.append(call)
        with anyio.CancelScope(shield=True):  # queued work finishes; the caller sees a cancel after
            while not call.done:
                if not call.taken and self._leading < self.lanes:
                    await self._lead()
                    continue
                await call.wake.wait()
                if not call.done:
                    call.wake = anyio.Event()  # woken to lead: the next wait needs a fresh one
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
        if self._pending and self._leading < self.lanes:
            self._pending[0].wake.set()  # a free lane takes the calls left over
        try:
            self.hops += 1
            self.calls += len(calls)
            await anyio.to_thread.run_sync(_run_all, calls)
        finally:
            self._leading -= 1
            # Only the callers of this hop, and the caller of the oldest pending call (to lead the
            # next hop), are woken: waking every waiter each hop cost the loop a wake-up per POST in
            # process (64 under load) for one that could act.
            for call in calls:
                call.wake.set()
            if self._pending:
                self._pending[0].wake.set()
