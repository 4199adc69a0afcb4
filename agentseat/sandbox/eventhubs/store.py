"""Events of the emulated hubs: partitions, sequence numbers, offsets, retention.

Each partition is an ordered log. An event gets the partition's next sequence
number, an offset (the byte position of its body in the partition, as a string:
Event Hubs documents offsets as opaque, service-assigned strings) and the
enqueued time in epoch milliseconds ("Features and terminology in Azure Event
Hubs", https://learn.microsoft.com/azure/event-hubs/event-hubs-features: sequence
number, offset, enqueued time, retention). Events older than the hub's retention or beyond the
per-partition cap are trimmed from the front; the begin sequence number moves
with them. With a state directory each event is also appended to a JSON-lines
file, so a sandbox restart keeps the hub's contents.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoredEvent:
    sequence: int
    offset: int
    enqueued_ms: int
    partition_key: str | None
    message: bytes  # the AMQP-encoded message as published, before the service's annotations


@dataclass
class Partition:
    id: str
    events: deque[StoredEvent] = field(default_factory=deque)
    next_sequence: int = 0
    next_offset: int = 0

    @property
    def begin_sequence(self) -> int:
        return self.events[0].sequence if self.events else self.next_sequence

    @property
    def last(self) -> StoredEvent | None:
        return self.events[-1] if self.events else None

    def first_from(self, sequence: int) -> int:
        """Index of the first kept event whose sequence number is at least `sequence`."""
        if not self.events or sequence <= self.events[0].sequence:
            return 0
        return max(0, min(len(self.events), sequence - self.events[0].sequence))


@dataclass
class Hub:
    name: str
    partitions: list[Partition]
    created_ms: int
    retention_seconds: float
    max_events: int
    path: Path | None = None
    _round_robin: itertools.cycle = field(init=False, repr=False)  # type: ignore[type-arg]
    listeners: list[Callable[[Hub, Partition], None]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._round_robin = itertools.cycle(range(len(self.partitions)))

    def partition(self, partition_id: str) -> Partition | None:
        for p in self.partitions:
            if p.id == partition_id:
                return p
        return None

    def choose(self, partition_key: str | None) -> Partition:
        """Events without a key go round-robin (event-hubs-features, "Partitions": the service
        distributes them); a key always maps to the same partition. The hash is the sandbox's own
        and stable across restarts; the service's hash function is not documented."""
        if partition_key is None:
            return self.partitions[next(self._round_robin)]
        digest = sum(partition_key.encode("utf-8")) * 2654435761 % (2**32)
        return self.partitions[digest % len(self.partitions)]

    def append(self, partition: Partition, message: bytes, body_size: int, now_ms: int,
               partition_key: str | None = None, *, persist: bool = True) -> StoredEvent:
        event = StoredEvent(partition.next_sequence, partition.next_offset, now_ms, partition_key, message)
        self._keep(partition, event, now_ms)
        if persist and self.path is not None:
            with self.path.open("a") as fh:
                fh.write(json.dumps({"p": partition.id, "seq": event.sequence, "off": event.offset,
                                     "t": event.enqueued_ms, "key": partition_key, "size": body_size,
                                     "msg": base64.b64encode(message).decode()}) + "\n")
        partition.next_offset += max(body_size, 1)
        for listener in list(self.listeners):
            listener(self, partition)
        return event

    def _keep(self, partition: Partition, event: StoredEvent, now_ms: int) -> None:
        partition.events.append(event)
        partition.next_sequence = event.sequence + 1
        self.trim(partition, now_ms)

    def trim(self, partition: Partition, now_ms: int) -> None:
        horizon = now_ms - int(self.retention_seconds * 1000)
        while partition.events and (len(partition.events) > self.max_events
                                    or partition.events[0].enqueued_ms < horizon):
            partition.events.popleft()

    def load(self) -> None:
        """Read the hub's file back, keeping what retention and the cap allow, and compact it."""
        if self.path is None or not self.path.exists():
            return
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
                partition = self.partition(str(row["p"]))
                if partition is None:
                    continue
                event = StoredEvent(int(row["seq"]), int(row["off"]), int(row["t"]), row.get("key"),
                                    base64.b64decode(row["msg"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash
            partition.events.append(event)
            partition.next_sequence = event.sequence + 1
            partition.next_offset = event.offset + max(int(row.get("size", 1)), 1)
        for partition in self.partitions:
            while len(partition.events) > self.max_events:
                partition.events.popleft()
        self._compact()

    def _compact(self) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            for partition in self.partitions:
                for i, e in enumerate(partition.events):
                    nxt = partition.events[i + 1].offset if i + 1 < len(partition.events) else partition.next_offset
                    fh.write(json.dumps({"p": partition.id, "seq": e.sequence, "off": e.offset, "t": e.enqueued_ms,
                                         "key": e.partition_key, "size": nxt - e.offset,
                                         "msg": base64.b64encode(e.message).decode()}) + "\n")
        os.replace(tmp, self.path)


def new_hub(name: str, *, partitions: int, retention_seconds: float, max_events: int, created_ms: int,
            directory: Path | None) -> Hub:
    hub = Hub(name=name, partitions=[Partition(str(i)) for i in range(partitions)], created_ms=created_ms,
              retention_seconds=retention_seconds, max_events=max_events,
              path=(directory / f"{name}.jsonl") if directory is not None else None)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        hub.load()
    return hub
