"""Lifecycle notifications are claims to check, not orders to obey.

Whoever holds one subscription's clientState can post any lifecycle event for
it, as often as they like. So (change-notifications-lifecycle-events):

- the webhook hands each verified event to `LifecycleGate.offer`, which never
  blocks and never raises: events for a subscription we no longer hold, and
  events beyond a bounded queue, are dropped and counted, and the POST is still
  answered 202;
- `run()` takes them off the queue and asks for a coalesced job per kind:
  `subscriptionRemoved` -> a check (`GET /subscriptions/{id}`: recreate only on
  a 404), `reauthorizationRequired` -> a renewal that the manager allows once
  per subscription per 10 minutes, `missed` -> a resync. Each job has at most
  one run in progress and one pending per kind, so a flood costs two runs.

It owns the queue, the coalescing and the counters; what a job does with Graph
is the subscription manager's.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.lowlevel import checkpoint

from ..graph.subscription import KnownSubscription
from .coalesce import Coalescer

log = structlog.get_logger(__name__)

#: Verified lifecycle events waiting for the worker; beyond this they are dropped (202, counted).
LIFECYCLE_QUEUE_SIZE = 100
#: Consecutive resyncs, or removal checks, of one kind start at least this far apart.
LIFECYCLE_SPACING_SECONDS = 10.0
#: A drop reason is logged once per this many seconds; the counters have every one.
_DROP_LOG_SECONDS = 60.0
EVENTS = ("subscriptionRemoved", "reauthorizationRequired", "missed")
_COALESCED = {"subscriptionRemoved": "removal_coalesced", "reauthorizationRequired": "reauthorize_coalesced",
              "missed": "resync_coalesced"}


@dataclass
class LifecycleCounters:
    """What lifecycle notifications amounted to; `status` shows `snapshot()`.

    - `received`: verified lifecycle notifications by event (`other` for unknown names).
    - `dropped`: by reason: `queue_full`, `not_held` (a subscription we no longer hold),
      `unknown_event`, `removal_refuted` (Graph still has it), `removal_coalesced`,
      `resync_coalesced`, `reauthorize_coalesced`, `reauthorize_rate_limited`.
    - `actions`: what they cost: `removal_checks`, `removal_check_failed`, `removal_confirmed`,
      `adopted`, `renewed`, `resyncs_teams`, `resyncs_mail`, `conflicts_unresolved`.
    - With a hub shared by several machines (eventhub/forward.py): a follower's `forwarded`,
      `forward_merged`, `forward_failed` and dropped `forward_coalesced`; the holder's `relayed`.
    """

    received: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {"received": dict(self.received), "dropped": dict(self.dropped), "actions": dict(self.actions)}


class LifecycleGate:
    """The bounded hand-off from the webhook to the subscription manager's coalesced jobs."""

    def __init__(
        self,
        *,
        holds: Callable[[KnownSubscription], bool],
        check_removed: Callable[[str, str], Awaitable[None]],
        reauthorize: Callable[[str, str], Awaitable[None]],
        resync: Callable[[str, str], Awaitable[None]],
        counters: LifecycleCounters | None = None,
        queue_size: int | None = None,
        spacing: float | None = None,
    ) -> None:
        self.counters = counters or LifecycleCounters()
        self._holds = holds
        self._size = LIFECYCLE_QUEUE_SIZE if queue_size is None else queue_size
        self._queue: deque[tuple[KnownSubscription, str]] = deque()
        self._wake: anyio.Event | None = None  # the worker's, while it waits
        gap = LIFECYCLE_SPACING_SECONDS if spacing is None else spacing
        self._removal = Coalescer("removal_check", check_removed, spacing=gap)
        self._reauthorize = Coalescer("reauthorize", reauthorize)
        self._resync = Coalescer("resync", self._counted(resync), spacing=gap)
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last logged, suppressed since)

    def _counted(self, resync: Callable[[str, str], Awaitable[None]]) -> Callable[[str, str], Awaitable[None]]:
        async def run(kind: str, reason: str) -> None:
            self.counters.actions[f"resyncs_{kind}"] += 1
            await resync(kind, reason)

        return run

    # --- the webhook side: never blocks, never raises ------------------------------------
    def offer(self, known: KnownSubscription, event: str) -> None:
        """Queue a verified lifecycle event, or drop it with a counted reason."""
        self.counters.received[event if event in EVENTS else "other"] += 1
        if not self._holds(known):
            return self._drop("not_held", known, event)
        if len(self._queue) >= self._size:
            return self._drop("queue_full", known, event)
        self._queue.append((known, event))
        if self._wake is not None:
            self._wake.set()
        return None

    def _drop(self, reason: str, known: KnownSubscription, event: str) -> None:
        self.counters.dropped[reason] += 1
        now = time.monotonic()
        last, suppressed = self._logged.get(reason, (float("-inf"), 0))
        if now - last < _DROP_LOG_SECONDS:  # a flood is counted, not logged line by line
            self._logged[reason] = (last, suppressed + 1)
            return
        self._logged[reason] = (now, 0)
        log.info("lifecycle_dropped", reason=reason, kind=known.kind, subscription=known.id,
                 lifecycle_event=event if event in EVENTS else "other", suppressed=suppressed)

    # --- requests from the manager ---------------------------------------------------------
    def resync(self, kind: str, reason: str) -> None:
        """Ask for a coalesced resync of `kind` (after a recreation, or `missed`)."""
        if not self._resync.request(kind, reason):
            self.counters.dropped["resync_coalesced"] += 1

    def idle(self) -> bool:
        """Nothing queued, running or pending (tests wait on this, and so can shutdown)."""
        return (not self._queue and self._removal.idle() and self._reauthorize.idle()
                and self._resync.idle())

    # --- the worker ----------------------------------------------------------------------
    async def run(self) -> None:
        """Take events off the queue and start their coalesced jobs, until cancelled."""
        async with anyio.create_task_group() as tg:
            for coalescer in (self._removal, self._reauthorize, self._resync):
                tg.start_soon(coalescer.run)
            while True:
                if not self._queue:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                known, event = self._queue.popleft()
                self._dispatch(known, event)  # never awaits: the jobs run in their own tasks
                await checkpoint()

    def _dispatch(self, known: KnownSubscription, event: str) -> None:
        if not self._holds(known):  # replaced while it waited
            return self._drop("not_held", known, event)
        if event == "subscriptionRemoved":
            asked = self._removal.request(known.kind, "removed")
        elif event == "reauthorizationRequired":
            asked = self._reauthorize.request(known.kind, "reauthorize")
        elif event == "missed":
            asked = self._resync.request(known.kind, "missed")
        else:
            return self._drop("unknown_event", known, event)
        if not asked:  # folded into the run already pending: counted, not logged
            self.counters.dropped[_COALESCED[event]] += 1
            return None
        log.info("lifecycle_event", kind=known.kind, lifecycle_event=event, subscription=known.id)
        return None
