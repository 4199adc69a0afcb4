"""The consumer's parts: an event's body as bytes, Graph's validation message told apart, and a batch's
reads waited for rather than dropped."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import anyio
from azure.eventhub import EventData

from agentseat.config import Settings
from agentseat.graph.models import ChangeNotificationCollection
from agentseat.eventhub.checkpoints import SqliteCheckpointStore
from agentseat.eventhub.consumer import META_KEY, EventHubConsumer, event_body, is_validation_message
from agentseat.runtime.fetchq import FetchQueue
from agentseat.runtime.inbox import Inbox
from agentseat.runtime.pipeline import ProcessResult
from tests.runtime._notify import body, change_item

VALIDATION = {"value": [{"subscriptionId": "NA", "subscriptionExpirationDateTime": "NA", "clientState": "NA",
                         "changeType": "Validation: Testing client application reachability for subscription "
                                       "Request-Id: 0000", "resource": "NA"}]}


def test_an_event_body_is_the_bytes_graph_sent() -> None:
    body = json.dumps({"value": []}).encode()
    assert event_body(EventData(body)) == body
    assert event_body(EventData("text body")) == b"text body"


def test_graph_validation_message_is_recognised_and_a_notification_is_not() -> None:
    assert is_validation_message(json.dumps(VALIDATION).encode())
    real = {"value": [{"subscriptionId": "3f1c", "clientState": "NA", "changeType": "created", "resource": "x"}]}
    assert not is_validation_message(json.dumps(real).encode())
    two = {"value": VALIDATION["value"] * 2}  # only Graph's one-item form is ignored
    assert not is_validation_message(json.dumps(two).encode())
    assert not is_validation_message(b'{"value": "NA"')  # unreadable: left to the pipeline to drop


class _Naming:
    """Stands in for the pipeline of a machine without the subscription's certificate: every notification
    only names a message, which the fetch queue reads (the callbacks only queue, as the real ones do)."""

    def __init__(self, queue: FetchQueue) -> None:
        self.queue = queue

    async def process_collection(self, collection: ChangeNotificationCollection, *,
                                 lifecycle_endpoint: bool) -> ProcessResult:
        names = [str(n.resource) for n in collection.value]
        for name in names:
            self.queue.offer(name)
        return ProcessResult(received=len(names), fetches=len(names))


class _Partition:
    partition_id = "0"

    def __init__(self, reads: list[str]) -> None:
        self.reads, self.checkpointed_after = reads, -1

    async def update_checkpoint(self, event: EventData) -> None:
        self.checkpointed_after = len(self.reads)


async def test_a_batch_naming_more_reads_than_a_fetch_queue_holds_waits_instead_of_dropping(tmp_path: Path) -> None:
    # A dropped read asks for a resync of the kind, and on a shared hub a resync stores other machines' messages.
    reads: list[str] = []
    overflows: list[str] = []

    async def read(name: str) -> None:
        reads.append(name)

    counters: dict[str, int] = {}
    queue = FetchQueue("teams", read, counters=counters, size=4, rate=1000, burst=1000,
                       on_overflow=lambda kind, reason: overflows.append(reason))
    settings = Settings(_env_file=None, state_dir=tmp_path, eventhub_namespace="ns", eventhub_name="hub")
    with Inbox(tmp_path / "inbox.db") as inbox:
        consumer = EventHubConsumer(settings, _Naming(queue), inbox, credential=None,  # type: ignore[arg-type]
                                    store=SqliteCheckpointStore(tmp_path / "inbox.db"), fetches=[queue])
        partition = _Partition(reads)
        events = [EventData(body([change_item(resource=f"m{i}{x}") for x in "ab"]))
                  for i in range(10)]  # 20 reads, more than the queue holds: the batch is processed in parts
        async with anyio.create_task_group() as tg:
            tg.start_soon(queue.run)
            await consumer._on_batch(partition, events)  # type: ignore[arg-type]
            tg.cancel_scope.cancel()
        await consumer.aclose()
    assert sorted(reads) == sorted(f"m{i}{x}" for i in range(10) for x in "ab")
    assert overflows == [] and "fetch_dropped_queue_full.teams" not in counters
    assert partition.checkpointed_after == 20  # the checkpoint came after every read


async def test_status_shows_every_partition_claimed_at_once(tmp_path: Path) -> None:
    # The SDK opens partitions concurrently; each claim writes the status `agentseat status` reads.
    settings = Settings(_env_file=None, state_dir=tmp_path, eventhub_namespace="ns", eventhub_name="hub")
    with Inbox(tmp_path / "inbox.db") as inbox:
        consumer = EventHubConsumer(settings, None, inbox, credential=None,  # type: ignore[arg-type]
                                    store=SqliteCheckpointStore(tmp_path / "inbox.db"))
        for _ in range(5):  # the race is between worker threads: a few rounds
            async with anyio.create_task_group() as tg:
                for partition in "0123":
                    tg.start_soon(consumer._on_open, SimpleNamespace(partition_id=partition))
            assert json.loads(inbox.get_meta(META_KEY) or "{}")["owned"] == ["0", "1", "2", "3"]
            async with anyio.create_task_group() as tg:
                for partition in "0123":
                    tg.start_soon(consumer._on_close, SimpleNamespace(partition_id=partition), "SHUTDOWN")
            assert json.loads(inbox.get_meta(META_KEY) or "{}")["owned"] == []
        await consumer.aclose()
