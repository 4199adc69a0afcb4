"""Reads Graph's notifications from the event hub into the webhook's pipeline.

Each event body is the notification collection Graph would POST to a webhook
(change-notifications-delivery-event-hubs), so it goes through the same pipeline:
verify, decrypt, confirm trust with Graph, normalise, store. The collections of one
received batch are merged into one (`process_collection`), so the batch costs one
worker-thread call and one inbox transaction, not one per event; an event that carries
`validationTokens` (Graph's hub deliveries never do) is processed alone, as its tokens
speak for its own items only. A partition's checkpoint advances only after every event of
its batch has been stored (or dropped as unusable), including the messages a notification
only names, which are read from Graph first: a crash before that re-reads them, and the
inbox dedupes.
A batch the pipeline cannot store yet (`retry`, what a webhook answers 5xx for) is tried
again on a backoff, holding that partition back, never skipped.

It owns the receive loop, the checkpoint rule and what `status` shows of it (the
partitions this process owns and their last checkpoints, kept in the inbox's meta table
so `agentseat status` reads them without a running runtime). Connection details are
client.py's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from ..runtime.fetchq import FetchQueue
from ..graph.models import ChangeNotificationCollection
from ..runtime.pipeline import NotificationPipeline, ProcessResult, parse_collection
from ..runtime.verify import VerificationError
from ..runtime.webhook import WebhookStats
from .client import checkpoint_store, consumer_client, ledger_container, store_kind
from .credential import AgentCredential
from .forward import LifecycleRecords
from .lease import Lease
from .ledger import RETENTION_SECONDS, Ledger
from .settings import eventhub_name, fully_qualified_namespace
from .status import META_KEY

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from azure.eventhub import EventData
    from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient
    from azure.eventhub.aio._eventprocessor.partition_context import PartitionContext

    from ..config import Settings
    from ..identity.tokens import TokenProvider
    from ..runtime.inbox import Inbox

__all__ = ["META_KEY", "EventHubConsumer", "event_body", "is_validation_message"]

log = structlog.get_logger(__name__)

#: Where a first start (no checkpoint yet) begins: the oldest retained event. Events of
#: subscriptions we do not hold are dropped cheaply, and what we stored before is deduped.
START_AT_EARLIEST = "-1"
_RETRY_FIRST, _RETRY_MAX = 1.0, 60.0
#: A notification of a subscription this machine does not know asks Graph for the list at most this often:
#: the sender may be a forger, and the list costs a Graph request.
_RELEARN_SECONDS = 10.0
#: The most items one pipeline call takes when no fetch queue bounds it: a webhook POST holds up to 1,000.
_MAX_GROUP_ITEMS = 1000


def event_body(event: EventData) -> bytes:
    """The event's payload as bytes: Graph sends the JSON collection as one data section."""
    body: Any = event.body
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (dict, list)):  # an AMQP value section: not what Graph sends, but readable
        return json.dumps(body).encode("utf-8")
    return b"".join(bytes(chunk) for chunk in body)  # several data sections


def is_validation_message(body: bytes) -> bool:
    """Graph's stand-in for the webhook handshake: a one-item collection with `subscriptionId` "NA"
    and a `changeType` starting "Validation:", which the receiver ignores
    (change-notifications-delivery-event-hubs: "You can ignore the validation message")."""
    if b'"NA"' not in body:  # cheap test first: every real notification names its subscription
        return False
    try:
        items = json.loads(body).get("value")
    except (ValueError, AttributeError):
        return False
    return (isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict)
            and items[0].get("subscriptionId") == "NA"
            and str(items[0].get("changeType", "")).startswith("Validation:"))


@dataclass
class PartitionState:
    owned: bool = False
    sequence_number: int | None = None
    offset: str | None = None
    checkpointed_at: str = ""


@dataclass
class ConsumerStatus:
    """What `status` shows: per partition, owned by this process or not, and the last checkpoint."""

    namespace: str
    hub: str
    consumer_group: str
    store: str
    connected: bool = False
    partitions: dict[str, PartitionState] = field(default_factory=dict)
    last_error: str = ""

    def snapshot(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "hub": self.hub, "consumer_group": self.consumer_group,
            "checkpoint_store": self.store, "pid": os.getpid(), "connected": self.connected,
            "owned": sorted(p for p, s in self.partitions.items() if s.owned),
            "checkpoints": {p: {"sequence_number": s.sequence_number, "offset": s.offset, "at": s.checkpointed_at}
                            for p, s in sorted(self.partitions.items()) if s.sequence_number is not None},
            "last_error": self.last_error, "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


class EventHubConsumer:
    """One process's reader of the hub: load-balanced partitions, pipeline, checkpoints."""

    def __init__(self, settings: Settings, pipeline: NotificationPipeline, inbox: Inbox, *,
                 credential: Any, store: CheckpointStore, fetches: Iterable[FetchQueue] = (),
                 on_unknown: Callable[[], Awaitable[object]] | None = None) -> None:
        self._settings = settings
        #: Learns subscriptions another machine made (manager.follow); asked at most every `_RELEARN_SECONDS`.
        self._on_unknown = on_unknown
        self._relearned_at = -_RELEARN_SECONDS
        #: The reads notifications queue (mail bodies, messages named without content): a checkpoint waits for them.
        self._fetches = list(fetches)
        self._pipeline = pipeline
        self._inbox = inbox
        self._credential = credential
        self._store = store
        self.stats = WebhookStats()  # the same counters a webhook keeps: posts are events here
        self.status = ConsumerStatus(fully_qualified_namespace(settings), eventhub_name(settings),
                                     settings.eventhub_consumer_group, store_kind(settings))
        self._client: EventHubConsumerClient | None = None
        self._save_lock = anyio.Lock()
        self._ledger: Ledger | None = None

    @classmethod
    def for_runtime(cls, settings: Settings, pipeline: NotificationPipeline, inbox: Inbox,
                    tokens: TokenProvider, fetches: Iterable[FetchQueue] = (),
                    on_unknown: Callable[[], Awaitable[object]] | None = None) -> EventHubConsumer:
        """The consumer as the runtime runs it: the agent's credential (unless SAS), the configured store."""
        credential = AgentCredential(tokens, principal=settings.azure_principal)
        store = checkpoint_store(settings, settings.state_dir / "inbox.db", credential)
        return cls(settings, pipeline, inbox, credential=credential, store=store, fetches=fetches,
                   on_unknown=on_unknown)

    def lease(self) -> Lease | None:
        """The manager lease shared by the machines on a Blob store; None for the local store (one machine)."""
        if self.status.store == "local":
            return None
        return Lease(self._store, self.status.namespace, self.status.hub, self.status.consumer_group,
                     expiry_seconds=self._settings.eventhub_ownership_seconds)

    def lifecycle_records(self) -> LifecycleRecords | None:
        """Where followers hand lifecycle events to the lease holder (forward.py); None for the local store."""
        if self.status.store == "local":
            return None
        return LifecycleRecords(self._store, self.status.namespace, self.status.hub, self.status.consumer_group)

    def ledger(self) -> Ledger | None:
        """The keys this machine stores, shared with the others in the Blob container (ledger.py); None for
        the local store. Kept as long as the longest resync window: two reconcile intervals, two days at least."""
        container = ledger_container(self._settings, self._credential)
        if container is None:
            return None
        self._ledger = Ledger(container, self._inbox,
                              retention_seconds=max(RETENTION_SECONDS, 2 * self._settings.reconcile_seconds))
        return self._ledger

    # --- the receive loop ----------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Receive until cancelled; `started` once the client exists (its links open in the background)."""
        await self._load_checkpoints()
        client = self._client = consumer_client(self._settings, self._credential, self._store)
        log.info("eventhub_starting", namespace=self.status.namespace, hub=self.status.hub,
                 consumer_group=self.status.consumer_group, store=self.status.store)
        try:
            task_status.started()
            await client.receive_batch(
                self._on_batch, starting_position=START_AT_EARLIEST, max_batch_size=100,
                on_partition_initialize=self._on_open, on_partition_close=self._on_close, on_error=self._on_error)
        finally:
            with anyio.CancelScope(shield=True):
                await client.close()
                for state in self.status.partitions.values():
                    state.owned = False
                self.status.connected = False
                await self._save()
                log.info("eventhub_stopped", hub=self.status.hub)

    async def aclose(self) -> None:
        """Close the checkpoint store, after `run` and any lease on it have ended."""
        await self._store.close()  # type: ignore[attr-defined]

    async def _on_batch(self, context: PartitionContext, events: list[EventData]) -> None:
        if not events:
            return
        partition = context.partition_id
        group: list[ChangeNotificationCollection] = []
        items, room = 0, self._room()
        for event in events:
            collection = self._screen(partition, event_body(event))
            if collection is None:
                continue
            if collection.validation_tokens is not None or len(collection.value) > room:
                # Tokens are checked for the collection that carried them, so it is processed alone
                # (Graph's hub deliveries carry none); so is one larger than the fetch queues' room.
                await self._process_group(partition, group)
                await self._process_group(partition, [collection])
                group, items, room = [], 0, self._room()
                continue
            if items + len(collection.value) > room:
                await self._process_group(partition, group)
                group, items, room = [], 0, self._room()
            group.append(collection)
            items += len(collection.value)
        await self._process_group(partition, group)
        for queue in self._fetches:  # messages the batch only named are read and stored too
            await queue.caught_up()
        # Every event of the batch is stored (or dropped for good): only now may the hub forget them.
        last = events[-1]
        await context.update_checkpoint(last)
        state = self.status.partitions.setdefault(context.partition_id, PartitionState())
        state.sequence_number, state.offset = last.sequence_number, str(last.offset)
        state.checkpointed_at = datetime.now(UTC).isoformat(timespec="seconds")
        await self._save()

    def _screen(self, partition: str, body: bytes) -> ChangeNotificationCollection | None:
        """The event's collection, or None when it was counted here: too large, Graph's validation
        message, or unreadable (what `NotificationPipeline.process` would drop it as)."""
        if len(body) > self._settings.webhook_max_body:
            self.stats.add(self._pipeline.reject("too_large"))
            return None
        if is_validation_message(body):
            self.stats.handshakes += 1
            log.info("eventhub_validation_message", partition=partition)
            return None
        try:
            return parse_collection(body)
        except VerificationError as exc:
            self.stats.add(self._pipeline.reject(exc.reason))
            return None

    def _room(self) -> int:
        """How many items the next group may hold: each item queues at most one read, and a fetch
        queue that overflows drops the read, so a group never holds more than the emptiest queue's room."""
        return min((queue.size - queue.pending() for queue in self._fetches), default=_MAX_GROUP_ITEMS)

    async def _process_group(self, partition: str, group: list[ChangeNotificationCollection]) -> None:
        """Process the collections of several events as one: one worker-thread call and one inbox
        transaction for all of them, instead of one each (the pipeline's per-POST cost)."""
        if not group:
            return
        merged = group[0] if len(group) == 1 else ChangeNotificationCollection.model_construct(
            value=[notification for collection in group for notification in collection.value])
        await self._process(partition, merged, events=len(group))
        for queue in self._fetches:
            # Back-pressure: a fetch queue that overflows drops the read and asks for a resync of the kind,
            # which reads all machines' messages from Graph (the ledger skips what the others flushed).
            # A machine without the subscription's certificate reads every message it is told of.
            if queue.pending() * 2 >= queue.size:
                await queue.caught_up()

    async def _process(self, partition: str, collection: ChangeNotificationCollection, *, events: int) -> None:
        wait = _RETRY_FIRST
        while True:
            try:
                result = await self._pipeline.process_collection(collection, lifecycle_endpoint=False)
            except Exception as exc:  # a bug: hold the partition back rather than lose the events
                log.error("eventhub_processing_failed", partition=partition, error=type(exc).__name__)
                result = ProcessResult(retry=True)
            if result.dropped.get("unknown_subscription") and await self._relearn():
                continue  # another machine made it: processed again, now known
            self.stats.add(result)
            # The counters stay per event (a webhook's per POST): a group of events is that many posts.
            self.stats.posts += events - 1
            self.stats.failures += (events - 1) * int(result.retry)
            if not result.retry:
                return
            # What a webhook answers 5xx for (the inbox is unwritable, a queue failed): Graph would
            # redeliver; here the events stay in the hub, so they are processed again after a pause
            # (all of the group: the inbox dedupes what was stored).
            log.warning("eventhub_event_retry", partition=partition, wait=wait, events=events)
            await anyio.sleep(wait)
            wait = min(wait * 2, _RETRY_MAX)

    async def _relearn(self) -> bool:
        """Ask for the subscriptions other machines manage; True when that was done now."""
        now = time.monotonic()
        if self._on_unknown is None or now - self._relearned_at < _RELEARN_SECONDS:
            return False
        self._relearned_at = now
        await self._on_unknown()
        return True

    # --- ownership, for status ------------------------------------------------------------
    async def _on_open(self, context: PartitionContext) -> None:
        self.status.connected = True
        self.status.partitions.setdefault(context.partition_id, PartitionState()).owned = True
        log.info("eventhub_partition_claimed", partition=context.partition_id)
        await self._save()

    async def _on_close(self, context: PartitionContext, reason: Any) -> None:
        self.status.partitions.setdefault(context.partition_id, PartitionState()).owned = False
        log.info("eventhub_partition_released", partition=context.partition_id,
                 reason=getattr(reason, "name", str(reason)))
        await self._save()

    async def _on_error(self, context: PartitionContext | None, error: Exception) -> None:
        partition = context.partition_id if context is not None else None
        self.status.last_error = f"{type(error).__name__}{f' (partition {partition})' if partition else ''}"
        log.warning("eventhub_error", partition=partition, error=type(error).__name__)

    async def _load_checkpoints(self) -> None:
        try:
            found = await self._store.list_checkpoints(self.status.namespace, self.status.hub,
                                                       self.status.consumer_group)
        except Exception as exc:  # status only: the SDK reads them again and reports its own errors
            log.warning("eventhub_checkpoints_unreadable", error=type(exc).__name__)
            return
        for checkpoint in found:
            state = self.status.partitions.setdefault(str(checkpoint["partition_id"]), PartitionState())
            state.sequence_number = checkpoint.get("sequence_number")
            state.offset = None if checkpoint.get("offset") is None else str(checkpoint["offset"])

    async def _save(self) -> None:
        # One write at a time, each of the state as it is when its turn comes: the SDK opens partitions
        # concurrently, and worker threads may finish out of order (an older snapshot written last).
        async with self._save_lock:
            snapshot = json.dumps(self.status.snapshot())
            await anyio.to_thread.run_sync(self._inbox.set_meta, META_KEY, snapshot)

    def describe(self) -> dict[str, Any]:
        ledger = {"ledger": self._ledger.snapshot()} if self._ledger is not None else {}
        return {**self.status.snapshot(), "counts": self.stats.public(), **ledger}
