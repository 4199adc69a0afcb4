"""`GET /_sandbox/eventhubs` counts the namespace's AMQP traffic (frames and bytes, each way, per
connection), with the real azure-eventhub SDK over AMQPS and AMQP over WebSockets on loopback."""

from __future__ import annotations

from typing import Any

import aiohttp
from azure.eventhub import EventData, TransportType
from azure.eventhub.aio import EventHubProducerClient

from agentseat.sandbox.app import Sandbox
from tests.sandbox._eventhubs import connection_string, producer, receive
from tests.sandbox._webhook import wait_until

BODY = 6000  # bytes: far more than the frames around it, so each direction shows where it went


async def _info(sandbox: Sandbox, session: aiohttp.ClientSession) -> dict[str, Any]:
    async with session.get(f"{sandbox.url}/_sandbox/eventhubs") as resp:
        assert resp.status == 200
        return await resp.json()  # type: ignore[no-any-return]


def _sums(traffic: dict[str, Any]) -> dict[str, int]:
    keys = ("bytesIn", "bytesOut", "framesIn", "framesOut")
    return {k: sum(c[k] for c in traffic["connections"]) for k in keys}


async def test_traffic_counts_frames_and_bytes_each_way_per_connection(
        sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
    before = await _info(sandbox, session)
    assert {"namespace", "endpoint", "hubs", "connections", "connectionString"} <= set(before)  # kept as they were
    assert before["traffic"] == {"bytesIn": 0, "bytesOut": 0, "framesIn": 0, "framesOut": 0,
                                 "connectionsOpened": 0, "connectionsOpen": 0, "connections": []}

    async with producer(sandbox) as client:  # sends one event of BODY bytes, then closes
        await client.send_event(EventData(b"x" * BODY), partition_id="0")
    await wait_until(lambda: not sandbox.eventhubs.traffic.live)  # the server saw the socket close
    sent = (await _info(sandbox, session))["traffic"]
    assert sent["connectionsOpen"] == 0 and sent["connectionsOpened"] == len(sent["connections"]) >= 1
    assert all(c["transport"] == "amqps" and c["closedAtMs"] is not None for c in sent["connections"])
    # The SDK may open a management connection first; exactly one connection carried the event in.
    [conn] = [c for c in sent["connections"] if c["bytesIn"] > BODY]
    assert conn["bytesOut"] < BODY  # only frames came back
    assert conn["framesIn"] > 3 and conn["framesOut"] > 3  # open, begin, attach and the transfer at least
    assert {k: sent[k] for k in ("bytesIn", "bytesOut", "framesIn", "framesOut")} == _sums(sent)

    [event] = await receive(sandbox, 1, partition_id="0")  # a consumer reads it back
    assert len(event.body_as_str()) == BODY
    await wait_until(lambda: not sandbox.eventhubs.traffic.live)
    read = (await _info(sandbox, session))["traffic"]
    assert read["connectionsOpened"] > sent["connectionsOpened"]
    new = [c for c in read["connections"] if c["id"] > max(c["id"] for c in sent["connections"])]
    [reader] = [c for c in new if c["bytesOut"] > BODY]  # this time the event went out
    assert reader["bytesIn"] < BODY
    assert read["bytesOut"] > sent["bytesOut"] + BODY and read["framesIn"] > sent["framesIn"]
    assert {k: read[k] for k in ("bytesIn", "bytesOut", "framesIn", "framesOut")} == _sums(read)


async def test_websocket_connections_are_counted_under_their_transport(
        sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
    ws = {"custom_endpoint_address": sandbox.url.replace("https://", "sb://"), "retry_total": 0,
          "transport_type": TransportType.AmqpOverWebsocket, "connection_verify": str(sandbox.pki.ca_path)}
    async with EventHubProducerClient.from_connection_string(connection_string(sandbox), **ws) as client:
        await client.send_event(EventData(b"y" * BODY), partition_id="1")
        live = (await _info(sandbox, session))["traffic"]
        assert live["connectionsOpen"] == 1  # counted while open, not only once closed
        [conn] = [c for c in live["connections"] if c["closedAtMs"] is None]
        assert conn["transport"] == "websocket" and conn["bytesIn"] > BODY
        assert all(c["transport"] == "websocket" for c in live["connections"])
    await wait_until(lambda: not sandbox.eventhubs.traffic.live)
    after = (await _info(sandbox, session))["traffic"]
    assert after["connectionsOpen"] == 0 and after["bytesIn"] >= conn["bytesIn"]
