"""Link credit, retention and restarts of the Event Hubs emulator.

The credit test uses a plain proton client (not the SDK, whose receivers top credit up by
themselves): it grants a receive link 3 credits, and once 3 events arrived asks `$management`
for the partition's properties on the same connection. The server handles frames in order, so
an event sent beyond the credit would arrive before that reply.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import anyio
from anyio.from_thread import start_blocking_portal
from azure.eventhub import EventData
from proton import Message, SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container

from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.sandbox.eventhubs.cbs import sas_token
from tests.sandbox._eventhubs import hub_name, producer, publish, receive


class CreditProbe(MessagingHandler):  # type: ignore[misc]
    def __init__(self, sb: Sandbox, credit: int) -> None:
        super().__init__(prefetch=0, auto_accept=True)
        self.sb, self.credit = sb, credit
        ns = sb.eventhubs.namespace
        self.token = sas_token(ns.key_name, ns.key, f"sb://{ns.fqdn}/{hub_name(sb)}")
        self.received: list[int] = []
        self.seen_at_reply: int | None = None
        self.replies: list[dict[str, Any]] = []

    def on_start(self, event: Any) -> None:
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(str(self.sb.pki.ca_path))
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
        self.conn = event.container.connect(f"amqps://localhost:{self.sb.eventhubs.port}", ssl_domain=domain,
                                            allowed_mechs="ANONYMOUS", virtual_host="localhost")
        self.cbs_out = event.container.create_sender(self.conn, "$cbs")
        self.cbs_in = event.container.create_receiver(self.conn, "$cbs")
        self.cbs_in.flow(10)

    def on_sendable(self, event: Any) -> None:
        if event.sender == self.cbs_out and not hasattr(self, "asked"):
            self.asked = True
            self.cbs_out.send(Message(id=str(uuid.uuid4()), body=self.token, reply_to="$cbs", properties={
                "operation": "put-token", "type": "servicebus.windows.net:sastoken",
                "name": f"sb://{self.sb.eventhubs.namespace.fqdn}/{hub_name(self.sb)}"}))

    def on_message(self, event: Any) -> None:
        if event.receiver == self.cbs_in:
            self.replies.append(dict(event.message.properties))
            self.events_link = event.container.create_receiver(
                self.conn, f"{hub_name(self.sb)}/ConsumerGroups/$Default/Partitions/0")
            self.events_link.flow(self.credit)
            self.mgmt_out = event.container.create_sender(self.conn, "$management")
            self.mgmt_in = event.container.create_receiver(self.conn, "$management")
            self.mgmt_in.flow(10)
        elif event.receiver == self.events_link:
            self.received.append(event.message.annotations["x-opt-sequence-number"])
            if len(self.received) == self.credit:
                self.mgmt_out.send(Message(id=str(uuid.uuid4()), reply_to="$management", properties={
                    "operation": "READ", "type": "com.microsoft:partition", "name": hub_name(self.sb),
                    "partition": "0"}))
        elif event.receiver == self.mgmt_in:
            self.replies.append(dict(event.message.properties))
            self.last = event.message.body["last_enqueued_sequence_number"]
            self.seen_at_reply = len(self.received)
            event.connection.close()


async def test_a_receiver_gets_no_more_events_than_its_credit(sandbox: Sandbox) -> None:
    await publish(sandbox, [f"e{i}" for i in range(10)], partition_id="0")
    probe = CreditProbe(sandbox, credit=3)
    await anyio.to_thread.run_sync(Container(probe).run)
    assert probe.replies[0]["status-code"] == 202  # put-token accepted
    assert probe.replies[1]["status-code"] == 200 and probe.last == 9
    assert probe.received == [0, 1, 2]
    assert probe.seen_at_reply == 3  # nothing beyond the credit arrived before the management reply


async def test_retention_and_the_cap_trim_the_front(tmp_path: Path, sandbox: Sandbox) -> None:
    hub = sandbox.eventhubs.namespace.hubs["agentseat"]
    await publish(sandbox, ["old-1", "old-2"], partition_id="0")
    sandbox.portal.call(sandbox.clock.advance, hub.retention_seconds + 60)  # type: ignore[attr-defined]
    await publish(sandbox, ["new"], partition_id="0")
    async with producer(sandbox) as client:
        props = await client.get_partition_properties("0")
    assert (props["beginning_sequence_number"], props["last_enqueued_sequence_number"]) == (2, 2)
    events = await receive(sandbox, 1, partition_id="0")  # earliest is now the first kept event
    assert [(e.sequence_number, e.body_as_str()) for e in events] == [(2, "new")]


def test_events_survive_a_sandbox_restart_and_options_set_partitions(tmp_path: Path, _pki_template: Path) -> None:
    state = tmp_path / "sandbox"
    state.mkdir(mode=0o700)
    shutil.copytree(_pki_template, state / "pki")
    options = SandboxOptions(extra={"eventhubs": {"partitions": 2, "hubs": ["alerts", "agentseat"]}})

    async def send(sb: Sandbox) -> None:
        async with producer(sb) as client:
            assert (await client.get_eventhub_properties())["partition_ids"] == ["0", "1"]
            await client.send_event(EventData("before restart"), partition_id="1")

    async def read(sb: Sandbox) -> list[Any]:
        return await receive(sb, 2, partition_id="1")

    for round_ in (1, 2):
        sb = Sandbox(state, options)
        with start_blocking_portal() as portal, portal.wrap_async_context_manager(sb.running()):
            sb.portal = portal  # type: ignore[attr-defined]
            assert hub_name(sb) == "alerts"
            anyio.run(send, sb)
            if round_ == 2:
                events = anyio.run(read, sb)
                assert [(e.sequence_number, e.body_as_str()) for e in events] == [
                    (0, "before restart"), (1, "before restart")]
                assert events[1].offset == str(len("before restart"))


class NoTokenProbe(MessagingHandler):  # type: ignore[misc]
    """Attaches a receiver and a sender for the hub without putting a token first."""

    def __init__(self, sb: Sandbox) -> None:
        super().__init__(prefetch=0)
        self.sb = sb
        self.conditions: list[tuple[str, str]] = []

    def on_start(self, event: Any) -> None:
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(str(self.sb.pki.ca_path))
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
        conn = event.container.connect(f"amqps://localhost:{self.sb.eventhubs.port}", ssl_domain=domain,
                                       allowed_mechs="ANONYMOUS", virtual_host="localhost")
        event.container.create_receiver(conn, f"{hub_name(self.sb)}/ConsumerGroups/$Default/Partitions/0")
        event.container.create_sender(conn, hub_name(self.sb))
        event.container.create_receiver(conn, f"{hub_name(self.sb)}/ConsumerGroups/nogroup/Partitions/0")

    def on_link_error(self, event: Any) -> None:
        cond = event.link.remote_condition
        self.conditions.append((event.link.source.address or event.link.target.address, cond.name))
        if len(self.conditions) == 3:
            event.connection.close()


async def test_links_without_a_token_are_refused_as_unauthorized(sandbox: Sandbox) -> None:
    probe = NoTokenProbe(sandbox)
    await anyio.to_thread.run_sync(Container(probe).run)
    hub = hub_name(sandbox)
    assert sorted(probe.conditions) == sorted([
        (f"{hub}/ConsumerGroups/$Default/Partitions/0", "amqp:unauthorized-access"),
        (hub, "amqp:unauthorized-access"),
        (f"{hub}/ConsumerGroups/nogroup/Partitions/0", "amqp:unauthorized-access"),
    ])


async def test_a_higher_owner_level_takes_the_partition_over(sandbox: Sandbox) -> None:
    import asyncio

    from tests.sandbox._eventhubs import consumer, stop
    from tests.sandbox._webhook import wait_until

    def readers() -> list[Any]:
        return sandbox.portal.call(lambda: [r.epoch for c in sandbox.eventhubs.connections  # type: ignore[attr-defined]
                                            for r in c.readers.values()])

    got: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    errors: dict[str, list[BaseException]] = {"a": [], "b": [], "c": []}

    def start(name: str, owner_level: int | None) -> tuple[Any, Any]:
        async def on_event(context: Any, event: Any) -> None:
            got[name].append(event.body_as_str())

        async def on_error(context: Any, error: BaseException) -> None:
            errors[name].append(error)

        client = consumer(sandbox)
        kwargs = {} if owner_level is None else {"owner_level": owner_level}
        task = asyncio.create_task(client.receive(on_event, on_error=on_error, partition_id="0",
                                                  starting_position="@latest", **kwargs))
        return client, task

    a = start("a", 0)
    await wait_until(lambda: readers() == [0])
    b = start("b", 1)
    await wait_until(lambda: readers() == [1] and bool(errors["a"]))  # a was detached as b attached
    c = start("c", None)  # a non-exclusive receiver is refused while b owns the partition
    await wait_until(lambda: bool(errors["c"]))
    await publish(sandbox, ["after takeover"], partition_id="0")
    await wait_until(lambda: got["b"] == ["after takeover"])
    for client, task in (a, b, c):
        await stop(client, task)
    assert got["a"] == [] and got["c"] == []
    assert "epoch" in str(errors["a"][0]) and "epoch" in str(errors["c"][0])
