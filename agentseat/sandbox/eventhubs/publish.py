"""Turning what producers send into stored events.

A producer transfer is either one message or an Event Hubs batch: a message
whose data sections each hold one encoded message (message format 0x80013700,
"AMQP 1.0 in Azure Service Bus and Event Hubs protocol guide", batching, https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide). proton's
Python API does not expose the message format of a delivery, so a batch is
recognised by its content: every data section decodes as a whole AMQP message.
The partition key is the `x-opt-partition-key` message annotation, of the batch
or the message ("Features of Event Hubs": events with one key go to one partition).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proton import Data, Described, Message

from .store import Hub, Partition

if TYPE_CHECKING:
    from .emulator import EventHubs

PARTITION_KEY = "x-opt-partition-key"
_DATA_SECTION = 0x75


def publish_payload(emulator: EventHubs, hub: Hub, partition: Partition | None, payload: bytes) -> int:
    """Store one producer transfer; returns how many events it held."""
    outer = Message()
    outer.decode(payload)
    key = _key(outer)
    inner = _batch_items(payload)
    items = inner if inner is not None else [payload]
    for item in items:
        msg = Message()
        msg.decode(item)
        emulator.append(hub, item, body_size=_body_size(msg), partition=partition, partition_key=_key(msg) or key)
    return len(items)


def _key(msg: Message) -> str | None:
    for k, v in (msg.annotations or {}).items():
        if str(k) == PARTITION_KEY and v is not None:
            return bytes(v).decode() if isinstance(v, (bytes, memoryview)) else str(v)
    return None


def _body_size(msg: Message) -> int:
    body = msg.body
    if isinstance(body, (bytes, str, memoryview)):
        return len(body)
    return len(msg.encode())


def _sections(payload: bytes) -> list[Any]:
    out, view = [], payload
    while view:
        data = Data()
        used = data.decode(view)
        if used <= 0:
            break
        data.rewind()
        data.next()
        value = data.get_object()
        if isinstance(value, Described) and isinstance(value.value, memoryview):
            # proton hands binary out as a view into the Data object, which dies with it
            value = Described(value.descriptor, bytes(value.value))
        out.append(value)
        view = view[used:]
    return out


def _batch_items(payload: bytes) -> list[bytes] | None:
    try:
        sections = _sections(payload)
    except Exception:
        return None
    data = [s.value for s in sections if isinstance(s, Described) and s.descriptor == _DATA_SECTION]
    if not data:
        return None
    for blob in data:
        if len(blob) < 3 or blob[0] != 0x00:
            return None
        try:
            Message().decode(bytes(blob))
        except Exception:
            return None
    return [bytes(b) for b in data]
