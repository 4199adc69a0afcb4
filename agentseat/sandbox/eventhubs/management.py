"""The `$management` node: hub and partition runtime information.

"AMQP 1.0 in Azure Service Bus and Event Hubs protocol guide" (request/response
management, https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide) and the Event Hubs runtime-information operations (their fields match
"Get partition runtime metadata", https://learn.microsoft.com/rest/api/eventhub/get-partition-runtime-metadata): a request with
application properties `operation=READ`, `type=com.microsoft:eventhub` or
`com.microsoft:partition`, `name` (the hub) and `partition`; the reply's body is
a map, its application properties carry `status-code` and `status-description`,
and its `correlation-id` is the request's `message-id`. The caller must have
put a token for the hub on `$cbs` first (the SDK also sends it as
`security_token`, which is checked the same way).
"""

from __future__ import annotations

from typing import Any

from proton import Message, symbol, timestamp

from .namespace import Namespace

HUB_TYPE = "com.microsoft:eventhub"
PARTITION_TYPE = "com.microsoft:partition"


def reply(request: Message, status: int, description: str, body: Any = None) -> Message:
    """A management or CBS reply correlated to `request`."""
    msg = Message(body=body)
    msg.correlation_id = request.id
    msg.address = request.reply_to
    msg.properties = {"status-code": status, "status-description": description}
    return msg


def error_condition(status: int) -> str:
    return {400: "amqp:invalid-field", 401: "amqp:unauthorized-access", 404: "amqp:not-found",
            409: "amqp:link:stolen"}.get(
        status, "amqp:internal-error")


def read(ns: Namespace, request: Message) -> Message:
    """Answer one READ request (the caller has checked authorization)."""
    props = request.properties or {}
    op, kind, name = props.get("operation"), props.get("type"), props.get("name")
    if op != "READ":
        return reply(request, 400, f"The operation '{op}' is not supported.")
    hub = ns.hubs.get(str(name))
    if hub is None:
        return reply(request, 404, f"The messaging entity 'sb://{ns.fqdn}/{name}' could not be found.")
    if kind == HUB_TYPE:
        return reply(request, 200, "OK", {
            "name": hub.name,
            "type": HUB_TYPE,
            "created_at": timestamp(hub.created_ms),
            "partition_count": len(hub.partitions),
            "partition_ids": [p.id for p in hub.partitions],
        })
    if kind == PARTITION_TYPE:
        partition = hub.partition(str(props.get("partition")))
        if partition is None:
            return reply(request, 404, f"The partition '{props.get('partition')}' of '{hub.name}' does not exist.")
        last = partition.last
        return reply(request, 200, "OK", {
            "name": hub.name,
            "type": PARTITION_TYPE,
            "partition": partition.id,
            "begin_sequence_number": partition.begin_sequence,
            "last_enqueued_sequence_number": last.sequence if last else partition.next_sequence - 1,
            "last_enqueued_offset": str(last.offset) if last else "-1",
            "last_enqueued_time_utc": timestamp(last.enqueued_ms if last else 0),
            "is_partition_empty": last is None,
        })
    return reply(request, 400, f"The management type '{kind}' is not supported.")


__all__ = ["read", "reply", "error_condition", "symbol"]
