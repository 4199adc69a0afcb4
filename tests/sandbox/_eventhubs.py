"""Helpers for the Event Hubs emulator tests: the real azure-eventhub SDK (aio) over TLS on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import anyio
from azure.core.credentials import AccessToken
from azure.eventhub import EventData, TransportType
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient

from agentseat.sandbox.app import Sandbox
from tests.sandbox._agent import hop1, identity_app, register_agent_cert

EVENTHUBS_SCOPE = "https://eventhubs.azure.net/.default"


def sdk_options(sb: Sandbox) -> dict[str, Any]:
    """What a client needs to reach the emulator: the product setting for emulators and private endpoints."""
    return {"custom_endpoint_address": sb.eventhubs.endpoint, "transport_type": TransportType.Amqp,
            "connection_verify": str(sb.pki.ca_path), "retry_total": 0}


def hub_name(sb: Sandbox) -> str:
    return next(iter(sb.eventhubs.namespace.hubs))


def connection_string(sb: Sandbox, key: str | None = None) -> str:
    ns = sb.eventhubs.namespace
    text = ns.connection_string(sb.eventhubs.endpoint, hub_name(sb))
    return text if key is None else text.replace(ns.key, key)


def producer(sb: Sandbox, credential: Any = None, **kw: Any) -> EventHubProducerClient:
    if credential is None:
        return EventHubProducerClient.from_connection_string(connection_string(sb, kw.pop("key", None)),
                                                             **sdk_options(sb), **kw)
    return EventHubProducerClient(sb.eventhubs.namespace.fqdn, hub_name(sb), credential, **sdk_options(sb), **kw)


def consumer(sb: Sandbox, credential: Any = None, **kw: Any) -> EventHubConsumerClient:
    if credential is None:
        return EventHubConsumerClient.from_connection_string(connection_string(sb), consumer_group="$Default",
                                                             **sdk_options(sb), **kw)
    return EventHubConsumerClient(sb.eventhubs.namespace.fqdn, hub_name(sb), "$Default", credential,
                                  **sdk_options(sb), **kw)


async def publish(sb: Sandbox, bodies: list[str], *, partition_id: str | None = None,
                  partition_key: str | None = None) -> None:
    async with producer(sb) as client:
        batch = await client.create_batch(partition_id=partition_id, partition_key=partition_key)
        for body in bodies:
            batch.add(EventData(body))
        await client.send_batch(batch)


async def receive(sb: Sandbox, count: int, *, partition_id: str | None = None, starting_position: Any = "-1",
                  inclusive: bool = False, credential: Any = None,
                  until: Callable[[list[Any]], bool] | None = None) -> list[Any]:
    """Receive with the SDK until `count` events (or `until`) arrived; returns the EventData objects."""
    got: list[Any] = []
    done = asyncio.Event()

    async def on_event(context: Any, event: Any) -> None:
        if event is not None:
            got.append(event)
        if (until(got) if until else len(got) >= count):
            done.set()

    client = consumer(sb, credential)
    kwargs: dict[str, Any] = {"starting_position": starting_position, "starting_position_inclusive": inclusive}
    if partition_id is not None:
        kwargs["partition_id"] = partition_id
    task = asyncio.create_task(client.receive(on_event, **kwargs))
    try:
        with anyio.fail_after(60):  # a safety bound, not an assertion about speed
            await done.wait()
    finally:
        await stop(client, task)
    return got


async def stop(client: EventHubConsumerClient, task: asyncio.Task[Any]) -> None:
    """Close the client; the receive task may sleep out its load-balancing interval (30 s), so cancel it."""
    await client.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class AgentEventHubsCredential:
    """An AsyncTokenCredential for Event Hubs: the agent's hops 1 and 2 with msal against the sandbox's token
    endpoint, asking for `https://eventhubs.azure.net/.default` as the Agent Identity."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.key_pem, self.sha1, _ = register_agent_cert(sb)
        self.claims_seen: list[str] = []
        self.scopes_seen: list[str] = []

    def _fetch(self, scopes: tuple[str, ...]) -> dict[str, Any]:
        t1 = hop1(self.sb, self.key_pem, self.sha1)["access_token"]
        result: dict[str, Any] = identity_app(self.sb, t1).acquire_token_for_client(list(scopes))
        assert "access_token" in result, result
        return result

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        # azure-eventhub 5.15.1 asks for "https://eventhubs.azure.net//.default" (a doubled slash, which Entra
        # tolerates); passed on as asked, so the sandbox's token endpoint must accept it too.
        assert len(scopes) == 1 and scopes[0].replace("//.default", "/.default") == EVENTHUBS_SCOPE, scopes
        self.scopes_seen.append(scopes[0])
        result = await anyio.to_thread.run_sync(self._fetch, scopes)
        self.claims_seen.append(result["access_token"])
        return AccessToken(result["access_token"], int(time.time()) + int(result["expires_in"]))

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> AgentEventHubsCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


class FixedToken:
    """A credential handing out one given token (claims the SDK should not be able to check)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        pass

