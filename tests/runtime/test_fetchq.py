"""The per-kind fetch queues: bounded, deduplicated, rate-capped, never raising into a POST."""

from __future__ import annotations

import anyio

from agentseat.runtime.fetchq import FetchQueue, TokenBucket
from tests.runtime.test_runtime import wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_spaces_takes_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, 2.0, clock=clock)
    assert [bucket.delay() for _ in range(4)] == [0.0, 0.0, 0.25, 0.5]
    clock.now = 10.0  # refilled, never above the burst
    assert [bucket.delay() for _ in range(3)] == [0.0, 0.0, 0.25]


async def test_a_full_queue_drops_counts_and_asks_for_a_resync_instead_of_raising() -> None:
    counters: dict[str, int] = {}
    resyncs: list[tuple[str, str]] = []
    done: list[str] = []

    async def fetch(message_id: str) -> None:
        done.append(message_id)

    queue = FetchQueue("mail", fetch, counters=counters, size=3, rate=1000, burst=1000,
                       on_overflow=lambda kind, reason: resyncs.append((kind, reason)))
    offered = [queue.offer(f"m{i}") for i in range(5)] + [queue.offer("m0")]
    assert offered == [True, True, True, False, False, False]
    assert counters == {"fetch_dropped_queue_full.mail": 2, "fetch_coalesced.mail": 1}
    assert resyncs == [("mail", "fetch_queue_full")] * 2  # the poller coalesces them into one round
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        await wait_for(lambda: queue.pending() == 0)
        tg.cancel_scope.cancel()
    assert done == ["m0", "m1", "m2"] and counters["fetched.mail"] == 3
