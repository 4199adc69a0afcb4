"""Notifications that never come: messages a reconcile finds that no notification named.

Mis-licensing, metering or a tenant policy can stop Graph's notifications while the
subscriptions look healthy (issue 11, variant 8); the only symptom is that the daily
reconcile finds messages. This module counts them and raises the tenant warning
`webhook_delivery` when there are `threshold` or more in `window` seconds, and clears it
once a notification arrives for a message newer than the last one missed.

A message found by a reconcile counts only when all of these hold, so a restart, a
subscription that was not there, or a late delivery never raise a false alarm:

- its kind was covered by an active subscription in this process when it was created
  (not while no runtime ran, nor before the subscriptions were confirmed);
- it is older than Graph's documented maximum delivery latency plus a margin (subscription
  resource, "Latency": chatMessage at most 1 minute, message at most 3 minutes); younger
  ones are checked again once that allowance has passed;
- no notification named it, before or after;
- the reconcile was a blind one (the daily timer, a start, a new URL). Resyncs that
  Graph asked for (`missed`, a removed subscription) or that our own queues asked for
  (a full fetch queue) read messages someone already knows were not delivered.

State lives in the inbox's `delivery_watch` meta key, so `agentseat status` can show the
count without a running runtime. It does not own reading Graph (runtime/poller.py) or the
notifications themselves (runtime/pipeline.py).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from ..graph.times import parse_graph_time
from ..tenant_facts import TenantFacts
from .events import Event
from .inbox import Inbox

if TYPE_CHECKING:
    from .batch import BatchStore

__all__ = ["ALLOWANCE_SECONDS", "COUNTED_REASONS", "DeliveryWatch", "META_KEY", "WARNING_KEY", "missed_in_window"]

log = structlog.get_logger(__name__)

META_KEY = "delivery_watch"
WARNING_KEY = "webhook_delivery"
#: Graph's maximum delivery latency (subscription resource, "Latency") with room to spare.
ALLOWANCE_SECONDS = {"teams": 120.0, "mail": 360.0}
#: Reconciles that look without being told anything was lost.
COUNTED_REASONS = frozenset({"timer", "startup", "url_changed"})
WINDOW_SECONDS = 86_400.0  # the reconcile runs daily: one day sees at least one of them
THRESHOLD = 3
#: Graph's clock and ours may differ a little; a message this close to the start of coverage
#: may have been created before it.
SKEW_SECONDS = 5.0
_NOTIFIED_MAX = 4096


def missed_in_window(raw: str | None, now: float | None = None, window: float = WINDOW_SECONDS) -> int:
    """How many messages were missed in the window, from the stored meta value (for `status`)."""
    if not raw:
        return 0
    try:
        missed = json.loads(raw).get("missed", {})
    except (ValueError, AttributeError):
        return 0
    cutoff = (now if now is not None else time.time()) - window
    return sum(1 for rows in missed.values() for _, found in rows if found >= cutoff)


class DeliveryWatch:
    """Counts messages found by blind reconciles that no notification delivered."""

    def __init__(self, inbox: Inbox, facts: TenantFacts | None = None, *, threshold: int = THRESHOLD,
                 window: float = WINDOW_SECONDS, allowance: dict[str, float] | None = None,
                 skew: float = SKEW_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self._inbox = inbox
        self._facts = facts
        #: Public so a test can shorten Graph's allowances instead of waiting minutes.
        self.threshold, self.window, self.skew = threshold, window, skew
        self.allowance = dict(allowance or ALLOWANCE_SECONDS)
        self._clock = clock
        self._covered: dict[str, float] = {}  # kind -> when its subscription was confirmed active
        self._notified: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, tuple[str, float]] = {}  # key -> (kind, created): found young
        self._wakeup = anyio.Event()
        state = self._load()
        self._missed: dict[str, list[list[float]]] = state.get("missed", {})  # kind -> [[created, found]]
        self._last_notified: dict[str, float] = state.get("notified", {})  # kind -> newest notified created

    # --- what the runtime tells us -----------------------------------------------------------
    def cover(self, kinds: Iterable[str]) -> None:
        """These kinds have an active subscription from now on; the others have none."""
        now = self._clock()
        kinds = set(kinds)
        self._covered = {k: self._covered.get(k, now) for k in kinds}
        self._save()  # `status` shows the count (0 too) once webhooks have run here

    def notified(self, kind: str, key: str, created: float | None = None) -> None:
        """A notification named this message (even one we then drop or dedupe)."""
        self._notified[key] = None
        self._notified.move_to_end(key)
        while len(self._notified) > _NOTIFIED_MAX:
            self._notified.popitem(last=False)
        self._pending.pop(key, None)
        stamp = created if created is not None else self._clock()
        if stamp > self._last_notified.get(kind, float("-inf")):
            self._last_notified[kind] = stamp
            if self._missed:  # only then can a warning be up; otherwise no write per notification
                self._evaluate()

    def notified_at(self, kind: str, key: str, created_at: str | None) -> None:
        """`notified`, with Graph's creation time as the event carries it (an intake process's note)."""
        self.notified(kind, key, _created_time(created_at))

    def observing(self, store: BatchStore) -> BatchStore:
        """`store` for the notification pipeline, noting every event a notification carried."""
        return _Observed(self, store)

    def found(self, events: list[Event], reason: str) -> None:
        """A resync stored these (new to the inbox); count those no notification delivered."""
        if reason not in COUNTED_REASONS:
            return
        for event in events:
            since = self._covered.get(event.kind)
            created = _created(event)
            if since is None or created is None or created < since + self.skew or event.key in self._notified:
                continue
            self._pending[event.key] = (event.kind, created)
        if self._pending:
            self._settle()
            self._wakeup.set()

    # --- the count and the warning -------------------------------------------------------------
    def _settle(self) -> None:
        """Count pending finds whose allowance has passed without a notification."""
        now = self._clock()
        due = [(key, kind, created) for key, (kind, created) in self._pending.items()
               if now - created >= self.allowance.get(kind, 0.0)]
        for key, kind, created in due:
            del self._pending[key]
            self._missed.setdefault(kind, []).append([created, now])
            log.warning("notification_never_came", kind=kind, key=key[:200])
        if due:
            self._evaluate()

    def _evaluate(self) -> None:
        cutoff = self._clock() - self.window
        self._missed = {k: [r for r in rows if r[1] >= cutoff] for k, rows in self._missed.items()}
        self._missed = {k: rows for k, rows in self._missed.items() if rows}
        self._save()
        if self._facts is None:
            return
        count = self.missed_notifications
        broken = sorted(k for k, rows in self._missed.items()
                        if max(r[0] for r in rows) > self._last_notified.get(k, float("-inf")))
        if count >= self.threshold and broken:
            self._facts.warn(WARNING_KEY, (
                f"webhook delivery looks broken: {count} messages found by reconcile but never notified "
                f"in the last {self.window / 3600:g} h ({', '.join(broken)}); check licensing/metering/tenant "
                "policy or use poll mode"))
        else:
            self._facts.warn(WARNING_KEY, None)

    @property
    def missed_notifications(self) -> int:
        cutoff = self._clock() - self.window
        return sum(1 for rows in self._missed.values() for _, found in rows if found >= cutoff)

    def snapshot(self) -> dict[str, Any]:
        """For `describe()`: the count in the window, by kind, and what is still being waited for."""
        self._settle()
        cutoff = self._clock() - self.window
        return {
            "missed_notifications": self.missed_notifications,
            "by_kind": {k: sum(1 for _, f in rows if f >= cutoff) for k, rows in sorted(self._missed.items())},
            "waiting": len(self._pending),
            "window_hours": self.window / 3600,
            "covered": sorted(self._covered),
        }

    async def run(self) -> None:
        """Settle young finds once their allowance passes, until cancelled."""
        while True:
            self._wakeup = anyio.Event()
            if not self._pending:
                await self._wakeup.wait()
                continue
            now = self._clock()
            wait = min(created + self.allowance.get(kind, 0.0) for kind, created in self._pending.values()) - now
            with anyio.move_on_after(max(wait, 0.0) + 0.01):
                await self._wakeup.wait()
            self._settle()

    # --- persistence -----------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self._inbox.get_meta(META_KEY) or "{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        self._inbox.set_meta(META_KEY, json.dumps({"missed": self._missed, "notified": self._last_notified}))


def _created(event: Event) -> float | None:
    return _created_time(event.created_at)


def _created_time(created_at: str | None) -> float | None:
    try:
        return parse_graph_time(created_at) if created_at else None
    except ValueError:
        return None


class _Observed:
    """A `BatchStore` that tells the watch of every event a notification carried (stored, deduped
    or not). Noted on the loop after the worker's write: a reconcile's find is only counted
    minutes later (`allowance`), and `notified` withdraws it."""

    def __init__(self, watch: DeliveryWatch, store: BatchStore) -> None:
        self._watch, self._store = watch, store
        self.write = store.write

    async def settle(self, events: list[Event], written: Any) -> list[Event]:
        for event in events:
            self._watch.notified(event.kind, event.key, _created(event))
        return await self._store.settle(events, written)
