"""One holder at a time across machines: a lease kept in the checkpoint store.

For several machines sharing a hub (issue 14, part 2), one of them must manage the
subscriptions and the reconcile. The lease is an ownership record of a pseudo-partition
(`manager`) under a consumer-group key of its own (`<group>$agentseat-lease`, so the SDK's
load balancing never sees it), claimed with the store's optimistic concurrency: the Blob
store's ETags (`if-match` / `if-none-match`) or the SQLite store's. A holder renews it
every third of the expiry; a record not renewed within the expiry is free to take, and a
holder whose renewal loses (another took it after it went silent) stops at once.

It owns the claim rules only; what the holder does is the runtime's (runtime/app.py: the
holder manages the subscriptions, the resyncs and the reconcile; the others only read).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import structlog

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from azure.eventhub.aio import CheckpointStore

__all__ = ["LEASE_GROUP_SUFFIX", "Lease", "LeaseLost", "ownership_record"]

log = structlog.get_logger(__name__)

LEASE_GROUP_SUFFIX = "$agentseat-lease"
_PARTITION = "manager"


def ownership_record(key: tuple[str, str, str], partition_id: str, owner: str, etag: str | None) -> dict[str, Any]:
    """An ownership record for the store's claim_ownership: `key` is (namespace, hub, group);
    with `etag`, the claim wins only if the record is unchanged since it was read."""
    namespace, hub, group = key
    record: dict[str, Any] = {"fully_qualified_namespace": namespace, "eventhub_name": hub,
                              "consumer_group": group, "partition_id": partition_id, "owner_id": owner}
    if etag:
        record["etag"] = etag
    return record


class LeaseLost(Exception):
    """Another holder took the lease: stop what it guards."""


class Lease:
    """The `manager` lease of one hub and consumer group, for one process (`owner_id`)."""

    def __init__(self, store: CheckpointStore, namespace: str, hub: str, group: str, *,
                 expiry_seconds: float, owner_id: str | None = None) -> None:
        self._store = store
        self._key = (namespace, hub, group + LEASE_GROUP_SUFFIX)
        self.expiry = expiry_seconds
        self.owner_id = owner_id or str(uuid.uuid4())
        self._etag: str | None = None

    def _record(self, owner: str, etag: str | None) -> dict[str, Any]:
        return ownership_record(self._key, _PARTITION, owner, etag)

    async def holder(self) -> tuple[str, float] | None:
        """(owner id, last renewal as epoch seconds) of the current record, or None."""
        rows = await self._store.list_ownership(*self._key)
        row = next((r for r in rows if r["partition_id"] == _PARTITION), None)
        return None if row is None else (str(row["owner_id"]), float(row["last_modified_time"] or 0))

    async def try_acquire(self) -> bool:
        """Take the lease if it is free, expired, released or already ours; False when another holds it."""
        rows = await self._store.list_ownership(*self._key)
        row = next((r for r in rows if r["partition_id"] == _PARTITION), None)
        if row is not None and row["owner_id"] and row["owner_id"] != self.owner_id:
            if time.time() - float(row["last_modified_time"] or 0) < self.expiry:
                return False
        won = list(await self._store.claim_ownership([self._record(self.owner_id, row["etag"] if row else None)]))
        self._etag = str(won[0]["etag"]) if won else None
        return bool(won)

    async def renew(self) -> None:
        """Renew the held lease; LeaseLost when another has taken it meanwhile."""
        won = list(await self._store.claim_ownership([self._record(self.owner_id, self._etag)])) if self._etag else []
        if not won:
            self._etag = None
            raise LeaseLost("another process holds the lease now")
        self._etag = str(won[0]["etag"])

    async def release(self) -> None:
        """Give the lease up at once (an empty owner), so another takes over without waiting for expiry."""
        if self._etag:
            await self._store.claim_ownership([self._record("", self._etag)])
            self._etag = None

    async def acquire(self) -> None:
        """Wait until the lease is ours."""
        while not await self.try_acquire():
            await anyio.sleep(self.expiry / 3)
        log.info("lease_acquired", owner=self.owner_id)

    async def hold(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Wait for the lease, report `started` once held, then `keep` it."""
        await self.acquire()
        task_status.started()
        await self.keep()

    async def keep(self) -> None:
        """Renew the held lease until cancelled (then release it).

        Raises LeaseLost if a renewal loses: the caller's task group then stops what it guards.
        """
        try:
            while True:
                await anyio.sleep(self.expiry / 3)
                await self.renew()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.release()
                except Exception as exc:  # the record expires by itself
                    log.warning("lease_release_failed", error=type(exc).__name__)
