"""Lifecycle notifications a follower reads go to the lease holder, through the shared checkpoint store.

With several machines on one hub, Graph's lifecycle notifications (`reauthorizationRequired`,
`subscriptionRemoved`, `missed`) land on whichever machine owns the partition they were sent to,
but only the lease holder (lease.py) may act on them: a follower that renewed, recreated or
resynced would break the one-manager rule (and a follower's resync stores messages the
holder's partitions also deliver). So a follower, after the pipeline's usual screening (a held
subscription id and its clientState), records the event in the store the machines share, and
the holder acts on it through its own lifecycle gate (subscriptions/lifecycle.py), which
confirms it with Graph: a forwarded event gains nothing it could not get directly.

The records are ownership records, claimed through the same `CheckpointStore` abstraction as
the lease, so the SQLite store and Blob both work. Under the pseudo consumer group
`<group>$agentseat-lifecycle` (which the SDK's load balancing never lists), one pair per
(lifecycle event, subscription kind):

- `fwd.<event>.<kind>`: claimed by a follower, its owner id the subscription's id. Each claim
  changes its etag: "it happened again".
- `done.<event>.<kind>`: the holder's marker, its owner id the `fwd` etag it last handled.

The holder lists the group once per lease renewal, hands every `fwd` record whose etag its
marker does not name to the gate, then writes the marker (a write only when something was
new). The markers live in the store, so a new holder handles what the last one did not.
Taking the lease also syncs the subscriptions (runtime/hub.py): one Graph removed is made anew
and its kind resynced, whatever the records say.
Names are lower case: the Blob store lower-cases blob names, and partition ids come back so.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from ..graph.subscription import KnownSubscription
from ..subscriptions.coalesce import Coalescer
from ..subscriptions.lifecycle import LifecycleCounters
from .lease import ownership_record

if TYPE_CHECKING:
    from azure.eventhub.aio import CheckpointStore

__all__ = ["FORWARD_GROUP_SUFFIX", "FORWARD_SPACING_SECONDS", "LifecycleForwarder", "LifecycleRecords",
           "record_id", "relay"]

log = structlog.get_logger(__name__)

FORWARD_GROUP_SUFFIX = "$agentseat-lifecycle"
#: A follower writes one (lifecycle event, kind)'s record at most this often: a flood of
#: forged-but-screened events (a leaked clientState) costs one list and one claim per second.
FORWARD_SPACING_SECONDS = 1.0
#: Lower-case record names for Graph's lifecycle events (change-notifications-lifecycle-events).
_CODES = {"subscriptionRemoved": "removed", "reauthorizationRequired": "reauthorize", "missed": "missed"}
_EVENTS = {code: event for event, code in _CODES.items()}
_PLAIN_KIND = re.compile(r"[a-z0-9_-]{1,40}")

Act = Callable[[KnownSubscription, str], None]


def record_id(kind: str, event: str) -> str:
    """The `fwd` record's partition id of (`kind`, `event`); a channel kind (`channel:<team>:<channel>`)
    is hashed, since blob names are lower-cased and team ids are not."""
    key = kind if _PLAIN_KIND.fullmatch(kind) else "k" + hashlib.sha256(kind.encode()).hexdigest()[:24]
    return f"fwd.{_CODES[event]}.{key}"


def _tag(etag: object) -> str:
    # A Blob etag is quoted (`"0x8D..."`); the marker keeps the plain token, safe as metadata.
    return str(etag or "").strip('"')


class LifecycleRecords:
    """The forwarding records of one hub and consumer group in the shared checkpoint store."""

    def __init__(self, store: CheckpointStore, namespace: str, hub: str, group: str) -> None:
        self._store = store
        self._key = (namespace, hub, group + FORWARD_GROUP_SUFFIX)

    def _record(self, partition_id: str, owner: str, etag: str | None) -> dict[str, Any]:
        return ownership_record(self._key, partition_id, owner, etag)

    async def _rows(self) -> dict[str, dict[str, Any]]:
        return {str(r["partition_id"]).lower(): r for r in await self._store.list_ownership(*self._key)}

    async def forward(self, known: KnownSubscription, event: str) -> bool:
        """The follower's part: claim the (event, kind) record again. False when another claim
        landed between our list and our claim; that claim is newer than our event, so it covers it."""
        partition_id = record_id(known.kind, event)
        row = (await self._rows()).get(partition_id)
        won = await self._store.claim_ownership([self._record(partition_id, known.id, row["etag"] if row else None)])
        return bool(list(won))

    async def take(self, known: Mapping[str, KnownSubscription], act: Act) -> int:
        """The holder's part: one list; each record claimed since its marker goes to `act` (the
        lifecycle gate) if the subscription it names is one we know, then its marker is written.
        Returns how many were handed to `act`."""
        rows, handed = await self._rows(), 0
        for partition_id, row in sorted(rows.items()):
            if not partition_id.startswith("fwd."):
                continue  # a marker
            code, _, kind_key = partition_id.removeprefix("fwd.").partition(".")
            if code not in _EVENTS:
                continue
            done_id, tag = f"done.{code}.{kind_key}", _tag(row["etag"])
            done = rows.get(done_id)
            if done is not None and done["owner_id"] == tag:
                continue  # handled already, by us or by an earlier holder
            subscription = known.get(str(row["owner_id"]))
            if subscription is not None:
                act(subscription, _EVENTS[code])  # never blocks or raises: the gate queues or drops
                handed += 1
            else:  # a subscription replaced since: as the gate would, drop it
                log.info("lifecycle_forward_not_held", lifecycle_event=_EVENTS[code], subscription=row["owner_id"])
            await self._store.claim_ownership([self._record(done_id, tag, done["etag"] if done else None)])
        return handed


class LifecycleForwarder:
    """A follower's side: screened lifecycle events become record claims, coalesced per record.

    `offer` never blocks or raises (the consumer's batch must not wait on the store); `run`
    writes the records until cancelled. Counts go to `counters` (the manager's lifecycle
    `actions`: `forwarded`, `forward_merged`, `forward_failed`; `dropped`: `forward_coalesced`).
    """

    def __init__(self, records: LifecycleRecords, counters: LifecycleCounters, *,
                 spacing: float = FORWARD_SPACING_SECONDS) -> None:
        self._records = records
        self._counters = counters
        self._latest: dict[str, tuple[KnownSubscription, str]] = {}  # record id -> the newest event for it
        self._writes = Coalescer("lifecycle_forward", self._write, spacing=spacing)

    def offer(self, known: KnownSubscription, event: str) -> None:
        """Queue `event` of `known` (screened by the pipeline already) for the holder."""
        self._counters.received[event if event in _CODES else "other"] += 1
        if event not in _CODES:
            self._counters.dropped["unknown_event"] += 1
            return
        key = record_id(known.kind, event)
        self._latest[key] = (known, event)
        if not self._writes.request(key, event):
            self._counters.dropped["forward_coalesced"] += 1

    def idle(self) -> bool:
        return self._writes.idle()

    async def run(self) -> None:
        await self._writes.run()

    async def _write(self, key: str, reason: str) -> None:
        known, event = self._latest[key]
        try:
            won = await self._records.forward(known, event)
        except Exception as exc:  # the store is unreachable: the holder's next sync and resync cover it
            self._counters.actions["forward_failed"] += 1
            log.warning("lifecycle_forward_failed", kind=known.kind, lifecycle_event=event, error=type(exc).__name__)
            return
        self._counters.actions["forwarded" if won else "forward_merged"] += 1
        log.info("lifecycle_forwarded", kind=known.kind, lifecycle_event=event, subscription=known.id, merged=not won)


async def relay(records: LifecycleRecords, known: Mapping[str, KnownSubscription], act: Act, *,
                every: float, counters: LifecycleCounters) -> None:
    """The holder's loop: take forwarded events now (what the last holder left) and every `every`
    seconds (the lease's renewal period), until cancelled. A store error waits for the next round."""
    while True:
        try:
            counters.actions["relayed"] += await records.take(known, act)
        except Exception as exc:
            log.warning("lifecycle_relay_failed", error=type(exc).__name__)
        await anyio.sleep(every)

