"""The Event Hubs emulator with the real, unmodified azure-eventhub SDK (aio) over AMQPS on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import jwt
import pytest
from azure.eventhub import EventData
from azure.eventhub.exceptions import AuthenticationError, ConnectError, EventHubError

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra import tokens
from tests.sandbox._webhook import wait_until
from tests.sandbox._eventhubs import (
    AgentEventHubsCredential,
    FixedToken,
    consumer,
    hub_name,
    producer,
    publish,
    receive,
    stop,
)


def _partition(sb: Sandbox, pid: str) -> Any:
    return sb.eventhubs.namespace.hubs[hub_name(sb)].partition(pid)


async def test_sas_hub_and_partition_properties(sandbox: Sandbox) -> None:
    async with producer(sandbox) as client:
        hub = await client.get_eventhub_properties()
        assert hub["eventhub_name"] == "agentseat"
        assert hub["partition_ids"] == ["0", "1", "2", "3"]  # the default partition count
        assert abs(hub["created_at"].timestamp() - sandbox.eventhubs.namespace.hubs["agentseat"].created_ms / 1000) < 1
        empty = await client.get_partition_properties("2")
        assert empty["is_empty"] is True and empty["last_enqueued_sequence_number"] == -1
        await client.send_event(EventData("one"), partition_id="2")
        await client.send_event(EventData("two"), partition_id="2")
        props = await client.get_partition_properties("2")
    assert props["eventhub_name"] == "agentseat" and props["id"] == "2"
    assert props["is_empty"] is False
    assert (props["beginning_sequence_number"], props["last_enqueued_sequence_number"]) == (0, 1)
    assert props["last_enqueued_offset"] == "3"  # the second event starts after the first's 3 body bytes
    assert props["last_enqueued_time_utc"].timestamp() * 1000 == pytest.approx(_partition(sandbox, "2").last.enqueued_ms)


async def test_publish_and_receive_on_every_partition_with_annotations(sandbox: Sandbox) -> None:
    for pid in ("0", "1", "2", "3"):
        await publish(sandbox, [f"p{pid}-a", f"p{pid}-b"], partition_id=pid)
    for pid in ("0", "1", "2", "3"):
        events = await receive(sandbox, 2, partition_id=pid)
        assert [e.body_as_str() for e in events] == [f"p{pid}-a", f"p{pid}-b"]
        assert [e.sequence_number for e in events] == [0, 1]
        assert [e.offset for e in events] == ["0", "4"]
        stored = _partition(sandbox, pid).events
        assert [int(e.enqueued_time.timestamp() * 1000) for e in events] == [s.enqueued_ms for s in stored]
        assert all(e.partition_key is None for e in events)


async def test_partition_key_goes_to_one_partition_and_comes_back_annotated(sandbox: Sandbox) -> None:
    await publish(sandbox, ["k1", "k2", "k3"], partition_key="chat-42")
    where = [p.id for p in sandbox.eventhubs.namespace.hubs["agentseat"].partitions if p.events]
    assert len(where) == 1
    events = await receive(sandbox, 3, partition_id=where[0])
    assert [e.body_as_str() for e in events] == ["k1", "k2", "k3"]
    assert {e.partition_key for e in events} == {b"chat-42"}


async def test_events_without_a_partition_spread_over_the_partitions(sandbox: Sandbox) -> None:
    async with producer(sandbox) as client:
        for i in range(8):
            await client.send_event(EventData(f"e{i}"))
    assert [len(p.events) for p in sandbox.eventhubs.namespace.hubs["agentseat"].partitions] == [2, 2, 2, 2]
    events = await receive(sandbox, 8)  # all partitions, one client
    assert sorted(e.body_as_str() for e in events) == [f"e{i}" for i in range(8)]


async def test_start_positions_offset_sequence_time_earliest_latest(sandbox: Sandbox) -> None:
    async with producer(sandbox) as client:
        for i in range(6):
            await client.send_event(EventData(f"m{i}"), partition_id="1")
            sandbox.portal.call(sandbox.clock.advance, 2.0)  # type: ignore[attr-defined]  # distinct enqueued times
    stored = list(_partition(sandbox, "1").events)

    async def bodies(position: Any, count: int, inclusive: bool = False) -> list[str]:
        events = await receive(sandbox, count, partition_id="1", starting_position=position, inclusive=inclusive)
        return [e.body_as_str() for e in events]

    assert await bodies("-1", 6) == [f"m{i}" for i in range(6)]  # earliest
    assert await bodies(2, 3) == ["m3", "m4", "m5"]  # sequence number, exclusive
    assert await bodies(2, 4, inclusive=True) == ["m2", "m3", "m4", "m5"]
    assert await bodies(str(stored[3].offset), 2) == ["m4", "m5"]  # offset, exclusive
    assert await bodies(str(stored[3].offset), 3, inclusive=True) == ["m3", "m4", "m5"]
    at = dt.datetime.fromtimestamp(stored[4].enqueued_ms / 1000, dt.UTC)
    assert await bodies(at, 2, inclusive=True) == ["m4", "m5"]  # enqueued time
    assert await bodies(at, 1) == ["m5"]

    # "@latest": only what is enqueued after the link attached.
    got: list[str] = []
    arrived = asyncio.Event()

    async def on_event(context: Any, event: Any) -> None:
        got.append(event.body_as_str())
        arrived.set()

    client = consumer(sandbox)
    task = asyncio.create_task(client.receive(on_event, partition_id="1", starting_position="@latest"))
    try:
        await wait_until(lambda: any(r.partition.id == "1" for c in list(sandbox.eventhubs.connections)
                                     for r in list(c.readers.values())))
        await publish(sandbox, ["fresh"], partition_id="1")
        await arrived.wait()
    finally:
        await stop(client, task)
    assert got == ["fresh"]


async def test_entra_token_from_the_agents_chain_is_accepted(sandbox: Sandbox) -> None:
    credential = AgentEventHubsCredential(sandbox)
    async with producer(sandbox, credential) as client:
        props = await client.get_eventhub_properties()
        await client.send_event(EventData("via entra"), partition_id="3")
    assert props["partition_ids"] == ["0", "1", "2", "3"]
    claims = jwt.decode(credential.claims_seen[0], options={"verify_signature": False})
    assert claims["aud"] == "https://eventhubs.azure.net" and claims["appid"] == sandbox.role("agent_identity")
    events = await receive(sandbox, 1, partition_id="3", credential=AgentEventHubsCredential(sandbox))
    assert events[0].body_as_str() == "via entra"


async def test_wrong_sas_key_is_refused(sandbox: Sandbox) -> None:
    async with producer(sandbox, key="d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=") as client:
        with pytest.raises((AuthenticationError, ConnectError, EventHubError)) as caught:
            await client.get_eventhub_properties()
    assert "Status code: 401" in str(caught.value) and "InvalidSignature" in str(caught.value)
    assert _partition(sandbox, "0").next_sequence == 0


async def test_expired_and_foreign_tokens_are_refused(sandbox: Sandbox) -> None:
    expired, _ = sandbox.portal.call(lambda: tokens.app_token(  # type: ignore[attr-defined]
        sandbox, app_id=sandbox.role("agent_identity"), roles=[], lifetime=-60, aud="https://eventhubs.azure.net"))
    graph_token, _ = sandbox.portal.call(lambda: tokens.app_token(  # type: ignore[attr-defined]
        sandbox, app_id=sandbox.role("agent_identity"), roles=[]))  # a Graph token: wrong audience
    for token, reason in ((expired, "ExpiredToken"), (graph_token, "InvalidAudience")):
        async with producer(sandbox, FixedToken(token)) as client:
            with pytest.raises((AuthenticationError, ConnectError, EventHubError)) as caught:
                await client.send_event(EventData("never"), partition_id="0")
        assert "Status code: 401" in str(caught.value) and reason in str(caught.value)
    assert _partition(sandbox, "0").next_sequence == 0


async def test_a_large_event_spans_several_frames_and_arrives_whole(sandbox: Sandbox) -> None:
    # Bigger than the SDK's frames: proton splits the transfer, and every padded frame must still fit.
    body = "x" * 900_000
    async with producer(sandbox) as client:
        await client.send_event(EventData(body), partition_id="0")
    events = await receive(sandbox, 1, partition_id="0")
    assert events[0].body_as_str() == body


async def test_the_agent_users_delegated_token_for_event_hubs_is_accepted(sandbox: Sandbox) -> None:
    from tests.sandbox._agent import agent_user_token, register_agent_cert

    key_pem, sha1, _ = register_agent_cert(sandbox)
    result = agent_user_token(sandbox, key_pem, sha1, scopes=["https://eventhubs.azure.net//.default"])
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert (claims["aud"], claims["idtyp"], claims["scp"]) == ("https://eventhubs.azure.net", "user",
                                                               "user_impersonation")
    assert claims["oid"] == sandbox.role("agent_user")
    async with producer(sandbox, FixedToken(result["access_token"])) as client:
        assert (await client.get_eventhub_properties())["eventhub_name"] == "agentseat"


async def test_a_client_naming_another_namespace_is_refused(sandbox: Sandbox) -> None:
    from azure.eventhub.aio import EventHubProducerClient

    from tests.sandbox._eventhubs import sdk_options

    credential = AgentEventHubsCredential(sandbox)
    client = EventHubProducerClient("elsewhere.servicebus.windows.net", "agentseat", credential,
                                    **sdk_options(sandbox))
    async with client:
        with pytest.raises((AuthenticationError, ConnectError, EventHubError)):
            await client.get_eventhub_properties()


async def test_receivers_can_track_the_last_enqueued_event(sandbox: Sandbox) -> None:
    await publish(sandbox, ["first", "second", "third"], partition_id="2")
    seen: list[Any] = []

    async def on_event(context: Any, event: Any) -> None:
        seen.append(context.last_enqueued_event_properties)
        if len(seen) == 1:
            done.set()

    done = asyncio.Event()
    client = consumer(sandbox)
    task = asyncio.create_task(client.receive(on_event, partition_id="2", starting_position="-1",
                                              track_last_enqueued_event_properties=True))
    try:
        await done.wait()
    finally:
        await stop(client, task)
    last = _partition(sandbox, "2").last
    assert seen[0]["sequence_number"] == 2 and seen[0]["offset"] == str(last.offset)
    assert int(seen[0]["enqueued_time"].timestamp() * 1000) == last.enqueued_ms


async def test_amqp_over_websockets_on_the_sandbox_https_port(sandbox: Sandbox) -> None:
    from azure.eventhub import TransportType
    from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient

    from tests.sandbox._eventhubs import connection_string

    ws = {"custom_endpoint_address": sandbox.url.replace("https://", "sb://"), "retry_total": 0,
          "transport_type": TransportType.AmqpOverWebsocket, "connection_verify": str(sandbox.pki.ca_path)}
    async with EventHubProducerClient.from_connection_string(connection_string(sandbox), **ws) as client:
        assert (await client.get_eventhub_properties())["partition_ids"] == ["0", "1", "2", "3"]
        await client.send_event(EventData("over websockets"), partition_id="1")
    got: list[str] = []
    done = asyncio.Event()

    async def on_event(context: Any, event: Any) -> None:
        got.append(event.body_as_str())
        done.set()

    reader = EventHubConsumerClient.from_connection_string(connection_string(sandbox), consumer_group="$Default", **ws)
    task = asyncio.create_task(reader.receive(on_event, partition_id="1", starting_position="-1"))
    try:
        await done.wait()
    finally:
        await stop(reader, task)
    assert got == ["over websockets"]
