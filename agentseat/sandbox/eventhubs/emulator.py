"""The Event Hubs emulator the sandbox owns: its namespace, events and AMQP endpoint.

`append` stores an event and wakes the receive links reading its partition;
`annotated` adds the service's message annotations on the way out
(`x-opt-sequence-number`, `x-opt-offset`, `x-opt-enqueued-time` and, when the
event had one, `x-opt-partition-key`: the annotations the service stamps on
every event, https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide). The endpoint itself is server.py's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from proton import Message, symbol, timestamp

from .namespace import EventHubsOptions, Namespace, load_namespace
from .owners import Owners
from .store import Hub, Partition, StoredEvent
from .traffic import Traffic

if TYPE_CHECKING:
    from ..state import SandboxState
    from .connection import AmqpConnection

log = structlog.get_logger(__name__)


class EventHubs:
    def __init__(self, sb: SandboxState) -> None:
        self.sb = sb
        self.options = EventHubsOptions.from_extra(sb.options.extra)
        self.namespace: Namespace = load_namespace(sb.state_dir, self.options, self.now_ms())
        self.connections: set[AmqpConnection] = set()
        self.owners = Owners(self)
        self.traffic = Traffic(self.now_ms)  # frames and bytes per connection (traffic.py)
        self.port = 0
        for hub in self.namespace.hubs.values():
            hub.listeners.append(self._wake)

    def now_ms(self) -> int:
        return int(self.sb.clock.now() * 1000)

    @property
    def endpoint(self) -> str:
        """The custom endpoint address clients dial (`custom_endpoint_address`)."""
        return f"sb://localhost:{self.port}"

    # --- events ------------------------------------------------------------------------------
    def hub_for(self, namespace_host: str, hub_name: str) -> Hub | None:
        if namespace_host.lower() != self.namespace.fqdn.lower():
            return None
        return self.namespace.hubs.get(hub_name)

    def append(self, hub: Hub, message: bytes, *, body_size: int, partition: Partition | None = None,
               partition_key: str | None = None) -> StoredEvent:
        target = partition if partition is not None else hub.choose(partition_key)
        return hub.append(target, message, body_size, self.now_ms(), partition_key)

    def publish_body(self, hub: Hub, body: bytes, content_type: str = "application/json") -> StoredEvent:
        """Store one event whose body is `body` as a single data section."""
        msg = Message(body=body, content_type=content_type)
        msg.inferred = True  # bytes go out as a data section, as Graph's sender writes them
        return self.append(hub, msg.encode(), body_size=len(body))

    def annotated(self, event: StoredEvent, partition: Partition | None = None) -> bytes:
        msg = Message()
        msg.decode(event.message)
        last = partition.last if partition is not None else None
        if last is not None:
            # The partition's newest event, as delivery annotations: the service adds them for a receiver
            # that asked for `com.microsoft:enable-receiver-runtime-metric` (the SDK's
            # track_last_enqueued_event_properties). proton's Python API does not show a link's desired
            # capabilities, so the sandbox always adds them; receivers that did not ask ignore them.
            msg.instructions = {
                symbol("last_enqueued_sequence_number"): last.sequence,
                symbol("last_enqueued_offset"): str(last.offset),
                symbol("last_enqueued_time_utc"): timestamp(last.enqueued_ms),
                symbol("runtime_info_retrieval_time_utc"): timestamp(self.now_ms()),
            }
        annotations: dict[Any, Any] = dict(msg.annotations or {})
        annotations[symbol("x-opt-sequence-number")] = event.sequence
        annotations[symbol("x-opt-offset")] = str(event.offset)
        annotations[symbol("x-opt-enqueued-time")] = timestamp(event.enqueued_ms)
        if event.partition_key is not None:
            annotations[symbol("x-opt-partition-key")] = event.partition_key
        msg.annotations = annotations
        return msg.encode()

    def _wake(self, hub: Hub, partition: Partition) -> None:
        for conn in list(self.connections):
            conn.wake(hub, partition)

    # --- discovery ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What `GET /_sandbox/eventhubs` shows."""
        ns = self.namespace
        first = next(iter(ns.hubs), None)
        hubs = []
        for hub in ns.hubs.values():
            parts = []
            for p in hub.partitions:
                last = p.last
                parts.append({"id": p.id, "beginSequenceNumber": p.begin_sequence,
                              "lastSequenceNumber": last.sequence if last else -1,
                              "lastOffset": str(last.offset) if last else "-1",
                              "lastEnqueuedTimeMs": last.enqueued_ms if last else None, "events": len(p.events)})
            hubs.append({"name": hub.name, "partitionCount": len(hub.partitions), "partitions": parts,
                         "retentionHours": hub.retention_seconds / 3600, "createdAtMs": hub.created_ms,
                         "consumerGroups": ns.consumer_groups,
                         "notificationUrl": f"EventHub:https://{ns.fqdn}/eventhubname/{hub.name}"
                                            f"?tenantId={self.sb.tenant.domain}"})
        return {
            "namespace": ns.fqdn,
            "endpoint": self.endpoint,
            # AMQP over WebSockets (transport_type AmqpOverWebsocket) on the sandbox's HTTPS port.
            "websocketEndpoint": self.sb.url.replace("https://", "sb://", 1),
            "caBundle": str(self.sb.pki.ca_path),
            "sasKeyName": ns.key_name,
            "connectionString": ns.connection_string(self.endpoint, first),
            "namespaceConnectionString": ns.connection_string(self.endpoint),
            "hubs": hubs,
            "connections": len(self.connections),
            "traffic": self.traffic.snapshot(),
        }
