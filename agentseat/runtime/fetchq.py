"""Bounded, rate-capped work queues for Graph reads that notifications ask for.

A notification may name something to read (a mail body, a chat message to
confirm). Anyone holding the clientState can send many, so each kind gets its
own queue, its own worker and its own token bucket: a flood of one kind never
delays the other, and never fails the POST that carried it. A full queue drops
the job with a counted reason and asks for one (coalesced) resync of that kind,
which reads the same messages from Graph by listing instead.

Default rates stay under Graph's limits (throttling-limits): Outlook allows
10,000 requests per 10 minutes and 4 concurrent requests per mailbox; Teams
allows about 1 request per second per chat for its message reads.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import anyio
import structlog

from agentseat.errors import AgentSeatError

__all__ = ["FetchQueue", "TokenBucket"]

log = structlog.get_logger(__name__)

Overflow = Callable[[str, str], Any]  # (kind, reason): schedule one resync of that kind


class TokenBucket:
    """At most `rate` takes per second on average, `burst` at once."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._updated = burst, clock()

    def delay(self) -> float:
        """Take one token; return how long to wait before using it (0 when one was there)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def take(self) -> None:
        if (wait := self.delay()) > 0:
            await anyio.sleep(wait)


class FetchQueue:
    """One kind's reads: `offer` never blocks or raises; `run` works the queue at the capped rate.

    A job already queued (the same mail named by a duplicate or replayed notification)
    is not queued twice.
    """

    def __init__(self, kind: str, handler: Callable[..., Awaitable[Any]], *, counters: dict[str, int],
                 size: int = 100, rate: float = 4.0, burst: float = 4.0, on_overflow: Overflow | None = None) -> None:
        self.kind, self.size = kind, size
        self._handler = handler
        self._send, self._recv = anyio.create_memory_object_stream[tuple[Hashable, ...]](size)
        self._queued: set[tuple[Hashable, ...]] = set()
        self._bucket = TokenBucket(rate, burst)
        self._counters = counters
        self._on_overflow = on_overflow
        # Jobs leave the stream in the order they entered it, so two counters make a barrier (`caught_up`).
        self._offered = self._finished = 0
        self._progress = anyio.Event()

    def _count(self, name: str) -> None:
        key = f"{name}.{self.kind}"
        self._counters[key] = self._counters.get(key, 0) + 1

    def offer(self, *job: Hashable) -> bool:
        """Queue a read; False when it was dropped (queue full) or is already queued."""
        if job in self._queued:
            self._count("fetch_coalesced")
            return False
        try:
            self._send.send_nowait(job)
        except anyio.WouldBlock:
            self._count("fetch_dropped_queue_full")
            log.warning("fetch_dropped", kind=self.kind, reason="queue_full")
            if self._on_overflow is not None:
                self._on_overflow(self.kind, "fetch_queue_full")
            return False
        self._queued.add(job)
        self._offered += 1
        return True

    def pending(self) -> int:
        return len(self._queued)

    async def caught_up(self) -> None:
        """Wait until every read queued before this call is done (a failed one has asked for a resync).

        Event Hubs checkpoints wait on this: a notification that only names a message is
        handled once the message is read and stored, not when its read is queued.
        """
        target = self._offered
        while self._finished < target:
            await self._progress.wait()

    async def run(self) -> None:
        """Work the queue until cancelled; a failed read asks for a resync of the kind."""
        async with self._recv:
            async for job in self._recv:
                await self._bucket.take()
                try:
                    await self._handler(*job)
                    self._count("fetched")
                except AgentSeatError as exc:
                    self._count("fetch_failed")
                    log.warning("fetch_failed", kind=self.kind, error=exc.message)
                    if self._on_overflow is not None:
                        self._on_overflow(self.kind, "fetch_failed")
                finally:
                    self._queued.discard(job)  # a replay during the read is the same read
                    self._finished += 1
                    self._progress.set()
                    self._progress = anyio.Event()
