"""Graph change notifications delivered through the emulated Event Hub, read back with the real SDK;
and how a runtime discovers the hub (`GET /_sandbox/eventhubs`, sandbox.env)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from agentseat.sandbox.app import Sandbox
from tests.sandbox._eventhubs import connection_string, receive
from tests.sandbox._webhook import Graph, Receiver, add_chat, options, set_faults, stat, wait_until

ALL_CHATS = "/me/chats/getAllMessages"


def _hub_url(sb: Sandbox, hub: str = "agentseat", host: str | None = None, tenant: str | None = None) -> str:
    host = host or sb.eventhubs.namespace.fqdn
    return f"EventHub:https://{host}/eventhubname/{hub}?tenantId={tenant or sb.tenant.domain}"


def _events(sb: Sandbox) -> list[dict[str, Any]]:
    """Every stored event body, oldest first (for counting; content is read back with the SDK)."""
    from proton import Message

    def stored() -> list[Any]:  # on the sandbox's loop, which appends to these deques
        return [(e.enqueued_ms, e.sequence, e.message) for p in sb.eventhubs.namespace.hubs["agentseat"].partitions
                for e in p.events]

    out = []
    for enqueued, sequence, raw in sb.portal.call(stored):  # type: ignore[attr-defined]
        msg = Message()
        msg.decode(raw)
        out.append((enqueued, sequence, json.loads(bytes(msg.body))))
    return [body for _, _, body in sorted(out, key=lambda e: (e[0], e[1]))]


def _is_validation(body: dict[str, Any]) -> bool:
    return body["value"][0]["subscriptionId"] == "NA"


async def _dm_from_sponsor(sb: Sandbox, session: aiohttp.ClientSession, text: str) -> tuple[Any, dict[str, Any]]:
    chat = add_chat(sb, [sb.role("agent_user"), sb.role("sponsor")])
    status, msg = await Graph(sb, session, sb.role("sponsor")).call(
        "POST", f"/chats/{chat.id}/messages", {"body": {"content": text}})
    assert status == 201, msg
    return chat, msg


async def test_dm_notification_arrives_in_the_hub_as_the_webhook_collection(
        sandbox: Sandbox, graph: Graph, session: aiohttp.ClientSession, rx: Receiver) -> None:
    hub_url = _hub_url(sandbox)
    status, sub = await graph.subscribe(ALL_CHATS, hub_url, lifecycleNotificationUrl=hub_url)
    assert status == 201, sub
    assert sub["notificationUrl"] == hub_url
    # No handshake: one validation message per URL goes to the hub instead (both URLs are validated).
    validations = await receive(sandbox, 2, until=lambda got: len(got) >= 2)
    for event in validations:
        item = event.body_as_json()["value"][0]
        assert item["subscriptionId"] == "NA" and item["changeType"].startswith(
            "Validation: Testing client application reachability for subscription")
    # A webhook subscription on the same DM (the chat's own resource) to compare shapes with.
    chat, msg = await _dm_from_sponsor(sandbox, session, "hello through the hub")
    await wait_until(lambda: sum(1 for b in _events(sandbox) if not _is_validation(b)) == 1)
    events = await receive(sandbox, 3, until=lambda got: any(
        e.body_as_json()["value"][0]["subscriptionId"] == sub["id"] for e in got))
    body = next(e.body_as_json() for e in events if e.body_as_json()["value"][0]["subscriptionId"] == sub["id"])
    assert set(body) == {"value"}  # the collection, and no validationTokens (Event Hubs never carries them)
    path = f"chats('{chat.id}')/messages('{msg['id']}')"
    assert body["value"] == [{
        "subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": sandbox.tenant.tenant_id, "clientState": "s3cret", "changeType": "created", "resource": path,
        "resourceData": {"id": msg["id"], "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": path},
    }]
    # The same DM to a webhook subscription: the POST body has exactly that shape.
    status, hook = await graph.subscribe(f"/chats/{chat.id}/messages", rx.url(), lifecycleNotificationUrl=None)
    assert status == 201, hook
    await Graph(sandbox, session, sandbox.role("sponsor")).call(
        "POST", f"/chats/{chat.id}/messages", {"body": {"content": "and by webhook"}})
    await wait_until(lambda: len(rx.items()) == 1)
    assert set(rx.bodies()[0]) == set(body)
    assert set(rx.items()[0]) == set(body["value"][0])
    assert set(rx.items()[0]["resourceData"]) == set(body["value"][0]["resourceData"])


async def test_lifecycle_notifications_go_to_the_hub(sandbox: Sandbox, graph: Graph,
                                                    session: aiohttp.ClientSession) -> None:
    hub_url = _hub_url(sandbox)
    status, sub = await graph.subscribe(ALL_CHATS, hub_url, lifecycleNotificationUrl=hub_url)
    assert status == 201, sub
    async with session.post(f"{sandbox.url}/_sandbox/subscriptions/{sub['id']}/reauthorize") as resp:
        assert resp.status == 200
    events = await receive(sandbox, 3, until=lambda got: any(
        e.body_as_json()["value"][0].get("lifecycleEvent") for e in got))
    item = next(e.body_as_json()["value"][0] for e in events if e.body_as_json()["value"][0].get("lifecycleEvent"))
    assert (item["subscriptionId"], item["lifecycleEvent"]) == (sub["id"], "reauthorizationRequired")


@pytest.mark.parametrize("url, fragment", [
    ("EventHub:https://ns.servicebus.windows.net/hubs/agentseat?tenantId=contoso.test", "eventhubname"),
    ("EventHub:https://ns.servicebus.windows.net/eventhubname/?tenantId=contoso.test", "eventhubname"),
    ("EventHub:http://ns.servicebus.windows.net/eventhubname/agentseat?tenantId=contoso.test", "EventHub:https"),
    ("EventHub:https://example.com/eventhubname/agentseat?tenantId=contoso.test", "servicebus.windows.net"),
    ("EventHub:https://vault1.vault.azure.net/secrets/hub?tenantId=contoso.test", "Key Vault"),
    ("EventHub:https://ns.servicebus.windows.net/eventhubname/agentseat", "tenantId"),
])
async def test_malformed_event_hub_urls_are_refused_with_graphs_error(sandbox: Sandbox, graph: Graph, url: str,
                                                                     fragment: str) -> None:
    status, body = await graph.subscribe(ALL_CHATS, url, lifecycleNotificationUrl=None)
    assert status == 400, body
    assert body["error"]["code"] == "ValidationError"
    assert fragment in body["error"]["message"]
    assert "innerError" in body["error"]


async def test_a_hub_that_does_not_exist_fails_creation(sandbox: Sandbox, graph: Graph) -> None:
    for url in (_hub_url(sandbox, hub="nohub"), _hub_url(sandbox, host="other.servicebus.windows.net")):
        status, body = await graph.subscribe(ALL_CHATS, url, lifecycleNotificationUrl=None)
        assert status == 400 and body["error"]["code"] == "ValidationError", body
    assert sandbox.tenant.subscriptions == {}


@options(throttle=False)  # two DMs in a row would meet Teams' send limits
async def test_faults_drop_and_duplicate_apply_to_the_hub(sandbox: Sandbox, graph: Graph,
                                                         session: aiohttp.ClientSession) -> None:
    status, sub = await graph.subscribe(ALL_CHATS, _hub_url(sandbox), lifecycleNotificationUrl=None)
    assert status == 201, sub
    set_faults(sandbox, drop=1.0)
    await _dm_from_sponsor(sandbox, session, "lost")
    assert stat(sandbox, "dropped") == 1
    set_faults(sandbox, duplicate=1.0, delay_ms=50)
    _, msg = await _dm_from_sponsor(sandbox, session, "twice")
    await wait_until(lambda: stat(sandbox, "duplicated") == 1 and stat(sandbox, "sent") == 2)
    notifications = [b for b in _events(sandbox) if not _is_validation(b)]
    assert len(notifications) == 2 and notifications[0] == notifications[1]
    assert notifications[0]["value"][0]["resourceData"]["id"] == msg["id"]
    assert stat(sandbox, "fault_delayed") >= 1  # the delay fault held the deliveries too
    events = await receive(sandbox, 3)  # the validation message and both copies, through the SDK
    assert sorted(e.body_as_json()["value"][0]["subscriptionId"] for e in events) == sorted(["NA", sub["id"], sub["id"]])


async def test_control_route_and_sandbox_env_let_a_runtime_find_the_hub(
        sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
    from azure.eventhub import EventData
    from azure.eventhub.aio import EventHubProducerClient

    async with session.get(f"{sandbox.url}/_sandbox/eventhubs") as resp:
        assert resp.status == 200
        info = await resp.json()
    port = sandbox.eventhubs.port
    assert info["namespace"] == "agentseat-sandbox.servicebus.windows.net"
    assert info["endpoint"] == f"sb://localhost:{port}"
    assert info["websocketEndpoint"] == sandbox.url.replace("https://", "sb://")  # AmqpOverWebsocket
    assert info["caBundle"] == str(sandbox.pki.ca_path)
    assert info["connectionString"] == connection_string(sandbox)
    assert info["connectionString"].startswith("Endpoint=sb://agentseat-sandbox.servicebus.windows.net/;"
                                               "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=")
    [hub] = info["hubs"]
    assert hub["name"] == "agentseat" and hub["partitionCount"] == 4 and hub["consumerGroups"] == ["$Default"]
    assert hub["notificationUrl"] == _hub_url(sandbox)
    assert [p["lastSequenceNumber"] for p in hub["partitions"]] == [-1, -1, -1, -1]
    # The connection string from the route works with the SDK as printed.
    async with EventHubProducerClient.from_connection_string(
            info["connectionString"], custom_endpoint_address=info["endpoint"], connection_verify=info["caBundle"],
            transport_type=__import__("azure.eventhub", fromlist=["TransportType"]).TransportType.Amqp) as client:
        await client.send_event(EventData("seen"), partition_id="2")
    async with session.get(f"{sandbox.url}/_sandbox/eventhubs") as resp:
        info = await resp.json()
    assert [p["lastSequenceNumber"] for p in info["hubs"][0]["partitions"]] == [-1, -1, 0, -1]
    env = dict(line.split("=", 1) for line in sandbox.env_path.read_text().splitlines() if "=" in line
               and not line.startswith("#"))
    assert env["AGENTSEAT_EVENTHUB_NAMESPACE"] == "agentseat-sandbox.servicebus.windows.net"
    assert env["AGENTSEAT_EVENTHUB_NAME"] == "agentseat"
    assert env["AGENTSEAT_EVENTHUB_ENDPOINT"] == f"sb://localhost:{port}"
    assert env["AGENTSEAT_CA_BUNDLE"] == str(sandbox.pki.ca_path)  # also verifies the hub's certificate


async def test_rich_chat_and_mail_notifications_through_the_hub(sandbox: Sandbox, graph: Graph,
                                                                session: aiohttp.ClientSession) -> None:
    from agentseat.runtime.crypto import decrypt_content
    from tests.sandbox._webhook import certificate, deliver_mail, rich

    hub_url = _hub_url(sandbox)
    status, chats = await graph.subscribe(ALL_CHATS, hub_url, lifecycleNotificationUrl=hub_url, **rich("cert-A"))
    assert status == 201, chats
    status, inbox = await graph.subscribe("/me/mailFolders('inbox')/messages", hub_url, lifecycleNotificationUrl=None)
    assert status == 201, inbox
    _, msg = await _dm_from_sponsor(sandbox, session, "the quarterly numbers")
    mail, queued = deliver_mail(sandbox, sandbox.role("agent_user"), "Invoice")
    assert queued == 1
    wanted = {chats["id"], inbox["id"]}
    events = await receive(sandbox, 0, until=lambda got: wanted <= {
        e.body_as_json()["value"][0]["subscriptionId"] for e in got})
    bodies = {e.body_as_json()["value"][0]["subscriptionId"]: e.body_as_json() for e in events}
    rich_body = bodies[chats["id"]]
    assert "validationTokens" not in rich_body  # "Event Hubs deliveries carry no validationTokens"
    payload = json.loads(decrypt_content(rich_body["value"][0]["encryptedContent"], certificate()[0]))
    assert payload["id"] == msg["id"] and payload["body"]["content"] == "the quarterly numbers"
    item = bodies[inbox["id"]]["value"][0]
    assert item["resourceData"]["id"] == mail.id and item["resourceData"]["@odata.type"] == "#Microsoft.Graph.Message"
