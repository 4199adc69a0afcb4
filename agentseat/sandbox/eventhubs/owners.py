"""Exclusive receivers: the owner level (epoch) of a partition's receivers in one consumer group.

The rules, from "Event Hubs Receiver Epoch" (Microsoft's Event Hubs team blog) and the SDKs'
CreateEpochReceiver / `owner_level` documentation:

- with no receiver there, any owner level may attach;
- a receiver whose owner level is at least the current owner's takes the partition: the older
  exclusive receivers, and every non-exclusive one, are detached with `amqp:link:stolen`;
- a lower owner level is refused, and so is a non-exclusive receiver while an exclusive one is
  attached.

The SDK's EventProcessor opens every partition with owner level 0, so when ownership moves to
another machine the old machine's link is closed at once instead of reading on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from .cbs import Refused
from .store import Hub, Partition

if TYPE_CHECKING:
    from .emulator import EventHubs

log = structlog.get_logger(__name__)


class LinkStolen(Refused):
    """A refusal whose condition is `amqp:link:stolen`."""

    def __init__(self, description: str) -> None:
        super().__init__(409, description)


class Owners:
    def __init__(self, emulator: EventHubs) -> None:
        self.emulator = emulator

    def admit(self, hub: Hub, group: str, partition: Partition, epoch: int | None) -> None:
        current = [(conn, reader) for conn in list(self.emulator.connections) for reader in list(conn.readers.values())
                   if reader.hub is hub and reader.group == group and reader.partition is partition]
        exclusive = [r.epoch for _, r in current if r.epoch is not None]
        top = max(exclusive) if exclusive else None
        if top is not None and (epoch is None or epoch < top):
            raise LinkStolen(f"Receiver with epoch '{epoch}' cannot be created: a receiver with epoch '{top}' "
                             f"already owns partition '{partition.id}' of '{hub.name}' in consumer group "
                             f"'{group}'.")
        if epoch is None:
            return
        for conn, reader in current:
            log.info("eventhubs_receiver_displaced", hub=hub.name, partition=partition.id, epoch=epoch,
                     previous=reader.epoch)
            conn.disconnect(reader, f"New receiver with higher epoch of '{epoch}' is created hence current "
                                    f"receiver with epoch '{reader.epoch}' is getting disconnected.")
