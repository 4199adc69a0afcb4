"""The events of one received batch go through the pipeline together: one worker-thread call and one
inbox transaction for all of them, and the partition's checkpoint still waits for the store.

The pipeline is the real one (genuine encrypted chat messages, a real inbox); only the SDK's partition
context is stood in for, as the SDK hands `_on_batch` a batch of events.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from azure.eventhub import EventData

from agentseat.eventhub import consumer as consumer_module
from agentseat.eventhub.checkpoints import SqliteCheckpointStore
from agentseat.eventhub.consumer import EventHubConsumer
from agentseat.runtime import pipeline as pipeline_module
from tests.runtime._notify import Keys, World, body, chat_message, keys, make_world, rich_chat_item

VALIDATION = {"value": [{"subscriptionId": "NA", "subscriptionExpirationDateTime": "NA", "clientState": "NA",
                         "changeType": "Validation: Testing client application reachability", "resource": "NA"}]}


__all__ = ["keys"]  # the fixture, shared with tests/runtime


@pytest.fixture
async def world(tmp_path: Path, keys: Keys) -> AsyncIterator[World]:
    async with make_world(tmp_path, keys) as w:
        w.replace_pipeline(source="eventhub")
        yield w


class _Partition:
    """The SDK's partition context: records how many events the inbox held when the checkpoint moved."""

    partition_id = "0"

    def __init__(self, world: World) -> None:
        self.world, self.stored_at_checkpoint = world, -1

    async def update_checkpoint(self, event: EventData) -> None:
        self.stored_at_checkpoint = len(self.world.inbox.read(0, 1000))


def _consumer(world: World, tmp_path: Path) -> EventHubConsumer:
    return EventHubConsumer(world.settings, world.pipeline, world.inbox, credential=None,
                            store=SqliteCheckpointStore(tmp_path / "checkpoints.db"))


def _events(world: World, count: int, per_event: int = 2) -> list[EventData]:
    # Graph's hub deliveries: one notification collection an event, no validationTokens.
    return [EventData(body([rich_chat_item(world.keys, chat_message(f"{i}{j}")) for j in range(per_event)]))
            for i in range(1, count + 1)]


async def test_a_batch_of_events_is_stored_in_one_worker_call_before_its_checkpoint(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(getattr(func, "func", func), "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(pipeline_module.anyio.to_thread, "run_sync", counting)
    consumer = _consumer(world, tmp_path)
    partition = _Partition(world)
    # Graph's validation message and an unreadable event are counted alone, as before.
    events = [EventData(json.dumps(VALIDATION)), *_events(world, 5), EventData(b'{"value": ')]
    await consumer._on_batch(partition, events)  # type: ignore[arg-type]
    await consumer.aclose()
    assert calls.count("_run_all") == 1  # decrypt, plan and store of all five events: one hop
    assert world.inbox.appends == 1  # and one SQLite transaction
    assert partition.stored_at_checkpoint == 10  # the checkpoint came after all ten were stored
    stats = consumer.stats  # counted per event, as a webhook counts per POST
    assert (stats.handshakes, stats.posts, stats.received, stats.stored, dict(stats.dropped)) == (
        1, 6, 10, 10, {"malformed": 1})


async def test_a_batch_the_inbox_cannot_store_holds_its_checkpoint_and_is_stored_whole_later(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "_RETRY_FIRST", 0.01)
    consumer = _consumer(world, tmp_path)
    partition = _Partition(world)
    world.inbox.disk_full = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer._on_batch, partition, _events(world, 4, per_event=3))
        while consumer.stats.failures < 8:  # two tries of the four events, both refused
            await anyio.sleep(0.01)
        assert partition.stored_at_checkpoint == -1 and world.inbox.read(0, 1000) == []
        world.inbox.disk_full = False
    await consumer.aclose()
    assert partition.stored_at_checkpoint == 12 and world.inbox.appends == 1
    assert (consumer.stats.posts, consumer.stats.stored) == (consumer.stats.failures + 4, 12)
