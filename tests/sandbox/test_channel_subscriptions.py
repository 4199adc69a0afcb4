"""Change notifications for channel messages: `/teams/{id}/channels/{id}/messages` subscriptions
(teams-changenotifications-chatmessage), their permissions, lifetime and quotas, and what a post and
a reply look like on the wire, over real HTTPS with a real webhook receiver."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp

from agentseat.runtime.crypto import decrypt_content
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.notifications.rules import QUOTA_TEAMS_PER_ORG
from agentseat.sandbox.tenant import Subscription
from tests.sandbox._graph import call
from tests.sandbox._teams import control_post, make_team
from tests.sandbox._webhook import Graph, Receiver, certificate, rich, wait_until

AGENT, ADA, GRACE = "agent@contoso.test", "ada@contoso.test", "grace@contoso.test"


def _resource(team_id: str, channel_id: str, query: str = "") -> str:
    return f"/teams/{team_id}/channels/{channel_id}/messages{query}"


async def _subscribe(graph: Graph, rx: Receiver, resource: str, **extra: Any) -> dict[str, Any]:
    extra.setdefault("changeType", "created,updated")
    status, body = await graph.subscribe(resource, rx.url(), **extra)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def test_a_post_and_a_reply_arrive_with_their_resource_paths(sandbox: Sandbox, graph: Graph,
                                                                   rx: Receiver) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    sub = await _subscribe(graph, rx, _resource(team_id, channel_id))
    post = await control_post(sandbox, team_id, channel_id, ADA, "is the build green?")
    reply = await control_post(sandbox, team_id, channel_id, ADA, "asking again", reply_to=post)
    await wait_until(lambda: len(rx.items()) == 2)
    first, second = sorted(rx.items(), key=lambda i: i["resourceData"]["id"])
    post_path = f"teams('{team_id}')/channels('{channel_id}')/messages('{post}')"
    reply_path = f"teams('{team_id}')/channels('{channel_id}')/messages('{post}')/replies('{reply}')"
    assert first == {
        "subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": sandbox.tenant.tenant_id, "clientState": "s3cret", "changeType": "created",
        "resource": post_path,
        "resourceData": {"id": post, "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": post_path},
    }
    assert second["resource"] == second["resourceData"]["@odata.id"] == reply_path
    assert "encryptedContent" not in second and second["resourceData"]["id"] == reply


async def test_rich_channel_notification_decrypts_to_the_channel_message(sandbox: Sandbox, graph: Graph,
                                                                        rx: Receiver) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    await _subscribe(graph, rx, _resource(team_id, channel_id), **rich("cert-C"))
    post = await control_post(sandbox, team_id, channel_id, ADA, "@agent@contoso.test deploy please",
                              mentions=[AGENT])
    reply = await control_post(sandbox, team_id, channel_id, ADA, "thanks", reply_to=post)
    await wait_until(lambda: len(rx.items()) == 2)
    assert all(body.get("validationTokens") for body in rx.bodies())
    key = certificate()[0]
    payloads = {p["id"]: p for p in (json.loads(decrypt_content(i["encryptedContent"], key)) for i in rx.items())}
    assert payloads[post]["channelIdentity"] == {"teamId": team_id, "channelId": channel_id}
    assert payloads[post]["replyToId"] is None and payloads[post]["chatId"] is None
    assert payloads[post]["mentions"][0]["mentioned"]["user"]["id"] == sandbox.role("agent_user")
    assert payloads[reply]["replyToId"] == post and payloads[reply]["body"]["content"] == "thanks"


async def test_edits_and_deletes_arrive_as_updated_and_deleted(sandbox: Sandbox, graph: Graph,
                                                               rx: Receiver) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    await _subscribe(graph, rx, _resource(team_id, channel_id), changeType="updated,deleted", **rich("cert-D"))
    post = await control_post(sandbox, team_id, channel_id, ADA, "first draft")
    reply = await control_post(sandbox, team_id, channel_id, ADA, "a reply", reply_to=post)
    base = f"/_sandbox/channel-messages/{team_id}/{channel_id}"
    status, body, _ = await call(sandbox, "POST", f"{base}/{post}/edit", body={"text": "final text"})
    assert status == 200 and body["edited"] is not None, body
    status, body, _ = await call(sandbox, "POST", f"{base}/{reply}/delete", body={"from": GRACE})
    assert status == 403, body  # only the sender deletes
    status, body, _ = await call(sandbox, "POST", f"{base}/{reply}/delete", body={"from": ADA})
    assert status == 200 and body["deleted"] is not None
    await wait_until(lambda: len(rx.items()) == 2)
    updated, deleted = rx.items()
    assert (updated["changeType"], updated["resourceData"]["id"]) == ("updated", post)
    payload = json.loads(decrypt_content(updated["encryptedContent"], certificate()[0]))
    assert payload["body"]["content"] == "final text" and payload["lastEditedDateTime"] is not None
    assert (deleted["changeType"], deleted["resource"]) == (
        "deleted", f"teams('{team_id}')/channels('{channel_id}')/messages('{post}')/replies('{reply}')")
    assert "encryptedContent" not in deleted  # a deletion carries only the id
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/teams/{team_id}/channels/{channel_id}/messages")
    assert view["messages"][0]["text"] == "final text" and view["messages"][0]["replies"][0]["deleted"]


async def test_other_channels_and_unsubscribed_change_types_send_nothing(sandbox: Sandbox, graph: Graph,
                                                                        rx: Receiver) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    other_team, other_channel = await make_team(sandbox, AGENT, ADA, name="Other")
    await _subscribe(graph, rx, _resource(team_id, channel_id), changeType="updated")
    await control_post(sandbox, team_id, channel_id, ADA, "created, not updated")
    await _subscribe(graph, rx, _resource(other_team, other_channel), changeType="created")
    await control_post(sandbox, other_team, other_channel, ADA, "this one")
    await wait_until(lambda: len(rx.items()) == 1)
    assert rx.items()[0]["resource"].startswith(f"teams('{other_team}')/channels('{other_channel}')")


async def test_mention_filter_sends_only_messages_that_mention_the_user(sandbox: Sandbox, graph: Graph,
                                                                       rx: Receiver) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA, GRACE)
    me = sandbox.role("agent_user")
    query = f"?$filter=mentions/any(u: u/mentioned/user/id eq '{me}')"
    await _subscribe(graph, rx, _resource(team_id, channel_id, query))
    await control_post(sandbox, team_id, channel_id, ADA, "@grace@contoso.test not you, agent", mentions=[GRACE])
    wanted = await control_post(sandbox, team_id, channel_id, ADA, "@agent@contoso.test you", mentions=[AGENT])
    await wait_until(lambda: len(rx.items()) >= 1)
    await control_post(sandbox, team_id, channel_id, ADA, "plain")
    marker = await control_post(sandbox, team_id, channel_id, GRACE, "@agent@contoso.test last", mentions=[AGENT])
    await wait_until(lambda: any(i["resourceData"]["id"] == marker for i in rx.items()))
    assert [i["resourceData"]["id"] for i in rx.items()] == [wanted, marker]
    status, body = await graph.subscribe(_resource(team_id, channel_id, "?$filter=from/user/id eq 'x'"), rx.url())
    assert status == 400 and "mentions/any" in body["error"]["message"]


async def test_search_sends_only_messages_with_the_keyword(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    await _subscribe(graph, rx, _resource(team_id, channel_id, "?$search=deploy"))
    await control_post(sandbox, team_id, channel_id, ADA, "lunch anyone?")
    wanted = await control_post(sandbox, team_id, channel_id, ADA, "Deploy is done")
    await wait_until(lambda: len(rx.items()) >= 1)
    assert [i["resourceData"]["id"] for i in rx.items()] == [wanted]


async def test_all_channels_resource_is_application_only(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, body = await graph.subscribe("/teams/getAllMessages", rx.url())
    assert status == 403 and body["error"]["code"] == "ExtensionError"
    assert "delegated" in body["error"]["message"] and "ChannelMessage.Read.All" in body["error"]["message"]
    assert rx.validations == []  # refused before any handshake


async def test_channel_subscription_needs_membership_and_channel_message_read(sandbox: Sandbox, graph: Graph,
                                                                              session: aiohttp.ClientSession,
                                                                              rx: Receiver) -> None:
    outside_team, outside_channel = await make_team(sandbox, ADA, GRACE)
    status, body = await graph.subscribe(_resource(outside_team, outside_channel), rx.url())
    assert status == 403 and "not a member" in body["error"]["message"]
    status, body = await graph.subscribe(_resource(outside_team, "19:nope@thread.tacv2"), rx.url())
    assert status == 404
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    chat_only = Graph(sandbox, session, scopes=["Chat.ReadWrite"])
    status, body = await chat_only.subscribe(_resource(team_id, channel_id), rx.url())
    assert status == 403 and "ChannelMessage.Read.All" in body["error"]["message"]


async def test_channel_subscriptions_live_as_long_as_chat_message_ones(sandbox: Sandbox, graph: Graph,
                                                                       rx: Receiver) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    limit = sandbox.behaviour.chat_subscription_max_minutes  # the chatMessage row of the lifetime table
    status, body = await graph.subscribe(_resource(team_id, channel_id), rx.url(), minutes=limit + 5,
                                         lifecycleNotificationUrl=rx.url("/lifecycle"))
    assert status == 400 and f"can only be {limit} minutes" in body["error"]["message"]
    status, body = await graph.subscribe(_resource(team_id, channel_id), rx.url(), minutes=120)
    assert status == 400 and "lifecycleNotificationUrl" in body["error"]["message"]
    status, body = await graph.subscribe(_resource(team_id, channel_id), rx.url(), minutes=limit - 1,
                                         lifecycleNotificationUrl=rx.url("/lifecycle"))
    assert status == 201, body


async def test_one_subscription_per_app_and_channel(sandbox: Sandbox, graph: Graph, session: aiohttp.ClientSession,
                                                    rx: Receiver) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)
    first = await _subscribe(graph, rx, _resource(team_id, channel_id))
    status, body = await graph.subscribe(f"teams('{team_id}')/channels('{channel_id}')/messages", rx.url("/again"),
                                         changeType="created,updated")
    assert status == 409 and first["id"] in body["error"]["message"]
    status, body = await graph.subscribe(_resource(team_id, channel_id), rx.url(), changeType="created,deleted")
    assert status == 403 and body["error"]["message"] == ("Subscription quota exceeded: the limit is 1 subscription "
                                                          "per app and channel.")
    # Another app may hold its own; and the same app may watch another channel.
    status, _ = await Graph(sandbox, session, app_id=str(uuid.uuid4())).subscribe(_resource(team_id, channel_id),
                                                                                 rx.url())
    assert status == 201
    other_team, other_channel = await make_team(sandbox, AGENT, ADA, name="Other")
    await _subscribe(graph, rx, _resource(other_team, other_channel))


async def test_channel_subscriptions_share_the_organizations_teams_quota(sandbox: Sandbox, graph: Graph,
                                                                        rx: Receiver) -> None:
    team_id, channel_id = await make_team(sandbox, AGENT, ADA)

    def fill() -> None:  # the tenant's other Teams subscriptions, made by other apps
        expires = sandbox.clock.now() + 3000
        for n in range(QUOTA_TEAMS_PER_ORG):
            sub = Subscription(id=f"filler-{n}", app_id=f"app-{n}", creator_id="someone",
                               resource=f"/chats/19:{n}@thread.v2/messages", change_type="created",
                               notification_url="https://example.test/n", expiration=expires)
            sandbox.tenant.subscriptions[sub.id] = sub

    sandbox.portal.call(fill)  # type: ignore[attr-defined]
    status, body = await graph.subscribe(_resource(team_id, channel_id), rx.url())
    assert status == 403 and f"{QUOTA_TEAMS_PER_ORG} Teams subscriptions per organization" in body["error"]["message"]
