"""One client connection: proton's engine (Connection, Transport, Collector) and its links.

proton does the AMQP 1.0 protocol; this module decides what each link means
("AMQP 1.0 in Azure Service Bus and Event Hubs protocol guide",
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide):

- `$cbs` and `$management` request/response link pairs (cbs.py, management.py);
- receive links at `<hub>/ConsumerGroups/<group>/Partitions/<n>`, which need a
  put-token for the hub, honour link credit and start where the selector filter says;
- send links at `<hub>` or `<hub>/Partitions/<n>` (a producer).

Every attach is answered with the client's own source and target (the SDK counts a
link whose answer lacks them as refused); a refusal answers with no terminus and
detaches with the error condition. Bytes in and out are the server's job (server.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from proton import Collector, Condition, Connection, Data, Delivery, Endpoint, Event, Link, Message, Transport

from . import cbs, management
from .cbs import Grant, Refused
from .positions import SELECTOR_FILTER, BadSelector, start_sequence
from .publish import publish_payload
from .store import Hub, Partition

if TYPE_CHECKING:
    from .emulator import EventHubs

log = structlog.get_logger(__name__)

#: Credit granted to clients' send links (requests and producer events).
INBOUND_CREDIT = 100
#: Seconds of silence after which the namespace drops a connection (advertised in `open`).
IDLE_TIMEOUT = 120.0


@dataclass
class Reader:
    """A receive link's place in one partition."""

    link: Link
    hub: Hub
    partition: Partition
    next_sequence: int
    group: str = "$default"
    epoch: int | None = None  # the owner level (`com.microsoft:epoch`), None for a non-exclusive receiver


class AmqpConnection:
    def __init__(self, emulator: EventHubs, on_output: Callable[[], None] = lambda: None) -> None:
        self.emulator = emulator
        self.on_output = on_output  # the server's writer: proton has bytes to send
        self.ns = emulator.namespace
        self.connection = Connection()
        self.transport = Transport(Transport.SERVER)
        # SASL ANONYMOUS: credentials travel by CBS put-token afterwards (protocol guide, "Claims-based authorization").
        self.transport.sasl().allowed_mechs("ANONYMOUS")
        # The service's `open` advertises an idle time-out of 120 s (as the service's own traces show), so a
        # client sends an empty frame when it has sent nothing for half of that (AMQP 1.0 part 2 §2.4.5,
        # "Idle Time-Out Of A Connection"); a silent peer is dropped after it. An idle consumer's wire cost is this.
        self.transport.idle_timeout = IDLE_TIMEOUT
        self.transport.bind(self.connection)
        self.collector = Collector()
        self.connection.collect(self.collector)
        self.grants: list[Grant] = []
        self.readers: dict[Link, Reader] = {}
        self.producers: dict[Link, tuple[Hub, Partition | None]] = {}

    # --- driving ------------------------------------------------------------------------
    def process(self) -> None:
        while (event := self.collector.peek()) is not None:
            try:
                self._dispatch(event)
            except Exception:  # one bad request must not take the connection down
                log.exception("eventhubs_event_failed", event=str(event.type))
            self.collector.pop()

    def _dispatch(self, event: Event) -> None:
        kind = str(event.type)
        if kind == "PN_CONNECTION_REMOTE_OPEN":
            self.connection.container = "agentseat-eventhubs-" + uuid.uuid4().hex[:8]
            self.connection.open()
        elif kind == "PN_SESSION_REMOTE_OPEN":
            event.session.open()
        elif kind == "PN_LINK_REMOTE_OPEN":
            self._attach(event.link)
        elif kind == "PN_LINK_FLOW" and event.link in self.readers:
            self.pump(self.readers[event.link])
        elif kind == "PN_DELIVERY":
            self._delivery(event.delivery)
        elif kind == "PN_LINK_REMOTE_CLOSE":
            self.readers.pop(event.link, None)
            self.producers.pop(event.link, None)
            if event.link.state & Endpoint.LOCAL_ACTIVE:
                event.link.close()
        elif kind == "PN_SESSION_REMOTE_CLOSE" and event.session.state & Endpoint.LOCAL_ACTIVE:
            event.session.close()
        elif kind == "PN_CONNECTION_REMOTE_CLOSE" and self.connection.state & Endpoint.LOCAL_ACTIVE:
            self.connection.close()

    # --- attach ---------------------------------------------------------------------------
    def _attach(self, link: Link) -> None:
        address = (link.remote_source.address if link.is_sender else link.remote_target.address) or ""
        node = address.split("://", 1)[-1].split("/", 1)[-1] if "://" in address else address
        node = node.strip("/")
        try:
            if node in ("$cbs", "$management"):
                self._open(link, credit=INBOUND_CREDIT)
            elif link.is_sender:
                self._attach_reader(link, node)
            else:
                self._attach_producer(link, node)
        except Refused as exc:
            self._refuse(link, management.error_condition(exc.status), exc.description)

    def _open(self, link: Link, *, credit: int = 0) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.open()
        if credit and link.is_receiver:
            link.flow(credit)

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        log.info("eventhubs_link_refused", link=link.name, condition=condition)
        link.condition = Condition(condition, description)
        link.open()
        link.close()

    def _hub(self, name: str) -> Hub:
        self._authorize(name)  # first, so a caller without a token learns nothing about the namespace
        hub = self.ns.hubs.get(name)
        if hub is None:
            raise Refused(404, f"The messaging entity 'sb://{self.ns.fqdn}/{name}' could not be found.")
        return hub

    def _authorize(self, hub_name: str) -> None:
        now = self.emulator.sb.clock.now()
        self.grants = [g for g in self.grants if g.expires > now]  # the SDK puts a fresh token before expiry
        if not any(g.entity in ("", hub_name) and g.expires > now for g in self.grants):
            raise Refused(401, f"Unauthorized access. 'Listen' or 'Send' claim(s) are required for "
                          f"'sb://{self.ns.fqdn}/{hub_name}'. Put a token on $cbs first.")

    def _attach_reader(self, link: Link, node: str) -> None:
        parts = node.split("/")
        if len(parts) != 5 or parts[1].lower() != "consumergroups" or parts[3].lower() != "partitions":
            raise Refused(404, f"The messaging entity '{node}' could not be found.")
        hub = self._hub(parts[0])
        if parts[2].lower() not in {g.lower() for g in self.ns.consumer_groups}:
            raise Refused(404, f"The messaging entity 'sb://{self.ns.fqdn}/{hub.name}/consumergroups/"
                          f"{parts[2]}' could not be found.")
        partition = hub.partition(parts[4])
        if partition is None:
            raise Refused(404, f"The partition '{parts[4]}' of '{hub.name}' does not exist.")
        try:
            start = start_sequence(partition, _selector(link.remote_source.filter))
        except BadSelector as exc:
            raise Refused(400, str(exc)) from None
        epoch = _epoch(link.remote_properties)
        self.emulator.owners.admit(hub, parts[2].lower(), partition, epoch)  # raises for a lower owner level
        self._open(link)
        reader = self.readers[link] = Reader(link, hub, partition, start, parts[2].lower(), epoch)
        log.info("eventhubs_reader_attached", hub=hub.name, partition=partition.id, start=start, epoch=epoch)
        self.pump(reader)

    def disconnect(self, reader: Reader, description: str) -> None:
        """Another receiver took the partition over: detach this one with `amqp:link:stolen`."""
        self.readers.pop(reader.link, None)
        reader.link.condition = Condition("amqp:link:stolen", description)
        reader.link.close()
        self.on_output()

    def _attach_producer(self, link: Link, node: str) -> None:
        parts = node.split("/")
        hub = self._hub(parts[0])
        partition = None
        if len(parts) == 3 and parts[1].lower() == "partitions":
            partition = hub.partition(parts[2])
            if partition is None:
                raise Refused(404, f"The partition '{parts[2]}' of '{hub.name}' does not exist.")
        elif len(parts) != 1:
            raise Refused(404, f"The messaging entity '{node}' could not be found.")
        self._open(link, credit=INBOUND_CREDIT)
        self.producers[link] = (hub, partition)

    # --- sending to readers -----------------------------------------------------------------
    def pump(self, reader: Reader) -> None:
        """Send kept events while the link has credit (credit is the receiver's to give)."""
        link, partition = reader.link, reader.partition
        if not link.state & Endpoint.LOCAL_ACTIVE:
            return
        reader.next_sequence = max(reader.next_sequence, partition.begin_sequence)  # trimmed by retention
        index = partition.first_from(reader.next_sequence)
        while link.credit > 0 and index < len(partition.events):
            event = partition.events[index]
            delivery = link.delivery(f"{partition.id}:{event.sequence}".encode())
            link.send(self.emulator.annotated(event, partition))
            link.advance()
            if link.snd_settle_mode == Link.SND_SETTLED:
                delivery.settle()
            reader.next_sequence = event.sequence + 1
            index += 1

    def wake(self, hub: Hub, partition: Partition) -> None:
        """A new event in `partition`: feed the links reading it, then have the writer flush."""
        for reader in list(self.readers.values()):
            if reader.partition is partition:
                self.pump(reader)
        self.on_output()

    # --- receiving ---------------------------------------------------------------------------
    def _delivery(self, delivery: Delivery) -> None:
        link = delivery.link
        if link.is_sender:
            if delivery.remote_state or delivery.settled:
                delivery.settle()
            return
        if not delivery.readable or delivery.partial:
            return
        payload = link.recv(delivery.pending)
        link.advance()
        node = (link.remote_target.address or "").strip("/").split("/")[-1]
        if link in self.producers:
            hub, partition = self.producers[link]
            try:
                publish_payload(self.emulator, hub, partition, payload)
            except Exception:  # not an AMQP message: the service rejects the delivery
                log.warning("eventhubs_publish_rejected", hub=hub.name)
                delivery.update(Delivery.REJECTED)
                delivery.settle()
                return
        elif node in ("$cbs", "$management"):
            request = Message()
            request.decode(payload)
            self._request(link, node, request)
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        if link.credit < INBOUND_CREDIT // 2:
            link.flow(INBOUND_CREDIT - link.credit)

    def _request(self, link: Link, node: str, request: Message) -> None:
        if node == "$cbs":
            answer = self._put_token(request)
        else:
            props = request.properties or {}
            try:
                token = props.get("security_token")
                if token:
                    self.grants.append(cbs.put_token(self.emulator.sb, self.ns, "jwt" if not str(token).startswith(
                        "SharedAccessSignature") else cbs.SAS_TYPE, f"sb://{self.ns.fqdn}/{props.get('name')}",
                        str(token)))
                self._authorize(str(props.get("name")))
                answer = management.read(self.ns, request)
            except Refused as exc:
                answer = management.reply(request, exc.status, exc.description)
        self._answer(link, node, answer)

    def _put_token(self, request: Message) -> Message:
        props = request.properties or {}
        if props.get("operation") != "put-token":
            return management.reply(request, 400, f"The operation '{props.get('operation')}' is not supported.")
        try:
            grant = cbs.put_token(self.emulator.sb, self.ns, str(props.get("type") or ""), str(props.get("name") or ""),
                                  _text(request.body))
        except Refused as exc:
            log.info("eventhubs_put_token_refused", status=exc.status)
            return management.reply(request, exc.status, exc.description)
        self.grants.append(grant)
        log.info("eventhubs_put_token", entity=grant.entity or "(namespace)")
        return management.reply(request, 202, "Accepted")

    def _answer(self, request_link: Link, node: str, answer: Message) -> None:
        """Replies go on the sender link of the same node in the same session (the pair the client opened)."""
        link = self.connection.link_head(Endpoint.LOCAL_ACTIVE)
        while link is not None:
            if link.is_sender and link.session == request_link.session and (link.source.address or "") == node:
                delivery = link.delivery(uuid.uuid4().bytes)
                link.send(answer.encode())
                link.advance()
                if link.snd_settle_mode == Link.SND_SETTLED:
                    delivery.settle()
                return
            link = link.next(Endpoint.LOCAL_ACTIVE)
        log.warning("eventhubs_reply_without_link", node=node)


def _selector(filters: Data) -> str | None:
    """The selector filter's expression from a source's filter set, if any."""
    filters.rewind()
    if not filters.next():
        return None
    value: Any = filters.get_object()
    if not isinstance(value, dict):
        return None
    for key, entry in value.items():
        if str(key) == SELECTOR_FILTER or getattr(entry, "descriptor", None) in (
                SELECTOR_FILTER, 0x0000468C00000004):
            raw = getattr(entry, "value", entry)
            return bytes(raw).decode() if isinstance(raw, (bytes, memoryview)) else str(raw)
    return None


def _text(value: Any) -> str:
    """A token body: an AMQP string, or binary holding UTF-8."""
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _epoch(properties: Any) -> int | None:
    """The receiver's owner level from its attach properties, if it asked for exclusivity."""
    for key, value in (properties or {}).items():
        if str(key) == "com.microsoft:epoch" and value is not None:
            return int(value)
    return None
