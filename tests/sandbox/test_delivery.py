"""The delivery engine over real sockets: a webhook receiver in the test, subscriptions made over HTTPS."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import anyio
import jwt
import pytest

from agentseat.runtime.crypto import decrypt_content, sha1_thumbprint
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.clock import iso
from agentseat.sandbox.graph.resources import chat_message_json
from tests.sandbox._webhook import (
    Graph,
    Receiver,
    add_chat,
    certificate,
    deliver_mail,
    options,
    post_message,
    rich,
    set_faults,
    stat,
    wait_until,
)

CHANGE_TRACKING = "0bf30f3b-4a52-48df-9a82-234910c4a086"
ALL_CHATS = "/me/chats/getAllMessages"
INBOX = "/me/mailFolders('inbox')/messages"


async def _subscribe(graph: Graph, rx: Receiver, resource: str = ALL_CHATS, **extra: Any) -> dict[str, Any]:
    extra.setdefault("lifecycleNotificationUrl", rx.url("/lifecycle"))
    status, body = await graph.subscribe(resource, rx.url(), **extra)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def _dm(sandbox: Sandbox) -> Any:
    return add_chat(sandbox, [sandbox.role("agent_user"), sandbox.role("sponsor")])


def _verify(sandbox: Sandbox, token: str, audience: str) -> dict[str, Any]:
    """Verify a validation token the way a runtime must: signature against the JWKS, then claims."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(sandbox.pki.jwks())[kid]
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience,  # type: ignore[no-any-return]
                      options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})


# --- change notifications ---------------------------------------------------------------------------
async def test_chat_message_arrives_as_a_basic_change_notification(sandbox: Sandbox, graph: Graph,
                                                                   rx: Receiver) -> None:
    sub = await _subscribe(graph, rx)
    chat = _dm(sandbox)
    msg, queued = post_message(sandbox, chat, sandbox.role("sponsor"), "hello agent")
    assert queued == 1
    await wait_until(lambda: len(rx.items()) == 1)
    body = rx.bodies()[0]
    assert "validationTokens" not in body  # only "for change notifications with resource data"
    item = body["value"][0]
    path = f"chats('{chat.id}')/messages('{msg.id}')"
    assert item == {
        "subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": sandbox.tenant.tenant_id, "clientState": "s3cret", "changeType": "created", "resource": path,
        "resourceData": {"id": msg.id, "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": path},
    }
    await wait_until(lambda: stat(sandbox, "sent") == 1)
    assert stat(sandbox, "items") == 1


async def test_rich_chat_notification_decrypts_to_the_message(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    await _subscribe(graph, rx, **rich("cert-A"))
    chat = _dm(sandbox)
    msg, _ = post_message(sandbox, chat, sandbox.role("sponsor"), "the quarterly numbers")
    await wait_until(lambda: len(rx.items()) == 1)
    encrypted = rx.items()[0]["encryptedContent"]
    key, cert, _ = certificate()
    assert encrypted["encryptionCertificateId"] == "cert-A"
    assert encrypted["encryptionCertificateThumbprint"] == sha1_thumbprint(cert)
    payload = json.loads(decrypt_content(encrypted, key))
    expected = sandbox.portal.call(chat_message_json, sandbox, msg)  # type: ignore[attr-defined]
    assert payload == expected
    assert payload["body"]["content"] == "the quarterly numbers" and payload["chatId"] == chat.id


async def test_validation_tokens_are_signed_for_the_app_by_change_tracking(sandbox: Sandbox, graph: Graph,
                                                                           rx: Receiver) -> None:
    await _subscribe(graph, rx, **rich())
    post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "hi")
    await wait_until(lambda: len(rx.bodies()) == 1)
    tokens = rx.bodies()[0]["validationTokens"]
    assert len(tokens) == 1
    tid = sandbox.tenant.tenant_id
    claims = _verify(sandbox, tokens[0], sandbox.role("agent_identity"))
    assert claims["iss"] == f"https://login.microsoftonline.com/{tid}/v2.0"
    assert claims["azp"] == CHANGE_TRACKING and claims["ver"] == "2.0" and claims["tid"] == tid
    assert claims["nbf"] <= sandbox.clock.now() < claims["exp"]
    with pytest.raises(jwt.InvalidAudienceError):
        _verify(sandbox, tokens[0], str(uuid.uuid4()))


@options(extra={"validation_token_version": "1.0"})
async def test_v1_validation_tokens_name_the_caller_in_appid(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    await _subscribe(graph, rx, **rich())
    post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "hi")
    await wait_until(lambda: len(rx.bodies()) == 1)
    claims = _verify(sandbox, rx.bodies()[0]["validationTokens"][0], sandbox.role("agent_identity"))
    assert claims["iss"] == f"https://sts.windows.net/{sandbox.tenant.tenant_id}/"
    assert claims["appid"] == CHANGE_TRACKING and claims["ver"] == "1.0" and "azp" not in claims


@options(behaviour={"validation_token_audience": "blueprint"})
async def test_blueprint_audience_variant_signs_tokens_for_the_blueprint(sandbox: Sandbox, graph: Graph,
                                                                         rx: Receiver) -> None:
    await _subscribe(graph, rx, **rich())
    post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "hi")
    await wait_until(lambda: len(rx.bodies()) == 1)
    [token] = rx.bodies()[0]["validationTokens"]
    claims = _verify(sandbox, token, sandbox.role("blueprint"))
    assert claims["azp"] == CHANGE_TRACKING  # still Graph's caller: only the audience moves
    with pytest.raises(jwt.InvalidAudienceError):
        _verify(sandbox, token, sandbox.role("agent_identity"))


@options(behaviour={"validation_token_audience": "none"})
async def test_none_audience_variant_sends_null_validation_tokens_with_resource_data(
        sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    await _subscribe(graph, rx, **rich())
    post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "hi")
    await wait_until(lambda: len(rx.bodies()) == 1)
    body = rx.bodies()[0]
    assert "validationTokens" in body and body["validationTokens"] is None
    assert "encryptedContent" in body["value"][0]  # still a rich notification


async def test_one_post_carries_several_subscriptions_and_one_token_per_app(
        sandbox: Sandbox, session: aiohttp.ClientSession, graph: Graph, rx: Receiver) -> None:
    token_app = str(uuid.uuid4())
    await _subscribe(graph, rx, **rich(), notificationUrlAppId=token_app)
    other_app = str(uuid.uuid4())
    await _subscribe(Graph(sandbox, session, app_id=other_app), rx, **rich())
    _, queued = post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "one change, two subscriptions")
    assert queued == 2
    await wait_until(lambda: len(rx.items()) == 2)
    assert len(rx.bodies()) == 1
    tokens = rx.bodies()[0]["validationTokens"]
    audiences = {jwt.decode(t, options={"verify_signature": False})["aud"] for t in tokens}
    assert audiences == {token_app, other_app}  # notificationUrlAppId sets the audience


async def test_every_member_subscription_and_the_chat_subscription_are_notified(
        sandbox: Sandbox, session: aiohttp.ClientSession, graph: Graph, rx: Receiver) -> None:
    agent, colleague = sandbox.role("agent_user"), sandbox.role("colleague1")
    chat = add_chat(sandbox, [agent, colleague, sandbox.role("sponsor")], "group")
    mine = await _subscribe(graph, rx)
    theirs = await _subscribe(Graph(sandbox, session, colleague), rx)
    per_chat = await _subscribe(Graph(sandbox, session, app_id=str(uuid.uuid4())), rx, f"/chats/{chat.id}/messages")
    elsewhere = add_chat(sandbox, [colleague, sandbox.role("colleague2")])
    _, queued = post_message(sandbox, chat, agent, "the sender is notified too")
    assert queued == 3
    _, queued = post_message(sandbox, elsewhere, colleague, "not the agent's chat")
    assert queued == 1
    await wait_until(lambda: len(rx.items()) == 4)
    ids = [i["subscriptionId"] for i in rx.items()]
    assert sorted(ids) == sorted([mine["id"], theirs["id"], per_chat["id"], theirs["id"]])


async def test_only_subscribed_change_types_are_sent(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    await _subscribe(graph, rx, changeType="updated")
    chat = _dm(sandbox)
    assert post_message(sandbox, chat, sandbox.role("sponsor"), "new")[1] == 0
    assert post_message(sandbox, chat, sandbox.role("sponsor"), "edited", change_type="updated")[1] == 1
    await wait_until(lambda: len(rx.items()) == 1)
    assert rx.items()[0]["changeType"] == "updated"


async def test_rich_mail_notification_carries_selected_fields_and_never_the_body(sandbox: Sandbox, graph: Graph,
                                                                                 rx: Receiver) -> None:
    sub = await _subscribe(graph, rx, INBOX + "?$select=subject,from,receivedDateTime", **rich("mail-cert"))
    agent = sandbox.role("agent_user")
    msg, queued = deliver_mail(sandbox, agent, "Budget", body="the body stays in the mailbox")
    assert queued == 1
    await wait_until(lambda: len(rx.items()) == 1)
    item = rx.items()[0]
    path = f"Users/{agent}/Messages/{msg.id}"
    assert item["subscriptionId"] == sub["id"] and item["resource"] == path
    assert item["resourceData"]["@odata.type"] == "#Microsoft.Graph.Message"
    assert item["resourceData"]["@odata.id"] == path and item["resourceData"]["@odata.etag"].startswith('W/"')
    payload = json.loads(decrypt_content(item["encryptedContent"], certificate()[0]))
    assert payload["subject"] == "Budget" and payload["id"] == msg.id
    assert payload["from"]["emailAddress"]["address"] == "grace@contoso.test"
    assert "body" not in payload and "bodyPreview" not in payload and "uniqueBody" not in payload
    assert len(rx.bodies()[0]["validationTokens"]) == 1


async def test_mail_is_matched_by_mailbox_folder_and_filter(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    inbox = await _subscribe(graph, rx, INBOX)
    everything = await _subscribe(graph, rx, "/me/messages")
    filtered = await _subscribe(graph, rx, "/me/messages?$filter=subject eq 'urgent' and hasAttachments eq false")
    agent = sandbox.role("agent_user")
    assert deliver_mail(sandbox, agent, "hello")[1] == 2
    assert deliver_mail(sandbox, agent, "URGENT", folder="sentitems")[1] == 2
    assert deliver_mail(sandbox, sandbox.role("sponsor"), "urgent")[1] == 0
    await wait_until(lambda: len(rx.items()) == 4)
    ids = sorted(i["subscriptionId"] for i in rx.items())
    assert ids == sorted([inbox["id"], everything["id"], everything["id"], filtered["id"]])


async def test_expired_or_deleted_subscriptions_get_nothing(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    short = await _subscribe(graph, rx, minutes=45)
    chat = _dm(sandbox)
    sandbox.clock.advance(46 * 60)
    assert post_message(sandbox, chat, sandbox.role("sponsor"), "too late")[1] == 0
    assert short["id"] not in sandbox.tenant.subscriptions
    sub = await _subscribe(graph, rx)
    assert (await graph.call("DELETE", f"/subscriptions/{sub['id']}"))[0] == 204
    assert post_message(sandbox, chat, sandbox.role("sponsor"), "deleted")[1] == 0


# --- retries ----------------------------------------------------------------------------------------
@options(speed=50)
async def test_failed_post_is_retried_until_it_succeeds(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    rx.script["/notify"] = [500, 503]
    await _subscribe(graph, rx)
    post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "retry me")
    await wait_until(lambda: stat(sandbox, "sent") == 1)
    assert len(rx.bodies()) == 3
    assert rx.bodies()[0] == rx.bodies()[2]
    assert stat(sandbox, "retried") == 2 and stat(sandbox, "items") == 1 and stat(sandbox, "failed") == 0


@options(speed=50, delivery_timeout=0.3, retry_timeout=5.0)
async def test_answer_slower_than_the_timeout_is_retried_with_the_longer_timeout(sandbox: Sandbox, graph: Graph,
                                                                                 rx: Receiver) -> None:
    rx.delay["/notify"] = 0.6  # over 3 s (here 0.3 s), under the 10 s retry timeout (here 5 s)
    await _subscribe(graph, rx)
    post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "slow endpoint")
    await wait_until(lambda: stat(sandbox, "sent") == 1)
    assert stat(sandbox, "retried") == 1 and len(rx.bodies()) == 2


async def test_delivery_is_given_up_after_four_hours(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    rx.status["/notify"] = 500
    await _subscribe(graph, rx, minutes=24 * 60)
    post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "nobody home")
    await wait_until(lambda: len(rx.bodies()) >= 1)
    with anyio.fail_after(60):  # a safety bound, not a measurement
        while stat(sandbox, "failed") == 0:
            # Jump half an hour at a time; the engine may start a backoff wait just after a
            # jump, so keep jumping until the next attempt (or the give-up) shows.
            sandbox.clock.advance(1800)
            await anyio.sleep(0.05)
    assert stat(sandbox, "failed") == 1 and stat(sandbox, "items") == 0
    assert stat(sandbox, "retried") == len(rx.bodies()) - 1
    assert len(rx.bodies()) <= 4 * 3600 / 1800 + 2  # backoff, not a tight loop


# --- faults -----------------------------------------------------------------------------------------
async def test_drop_fault_loses_the_notification(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    await _subscribe(graph, rx)
    chat = _dm(sandbox)
    set_faults(sandbox, drop=1.0)
    assert post_message(sandbox, chat, sandbox.role("sponsor"), "lost")[1] == 0
    assert stat(sandbox, "dropped") == 1
    set_faults(sandbox)
    msg, _ = post_message(sandbox, chat, sandbox.role("sponsor"), "kept")
    await wait_until(lambda: len(rx.items()) == 1)
    assert rx.items()[0]["resourceData"]["id"] == msg.id


async def test_duplicate_fault_sends_the_item_twice(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    await _subscribe(graph, rx)
    set_faults(sandbox, duplicate=1.0)
    msg, _ = post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "twice")
    await wait_until(lambda: len(rx.items()) == 2)
    assert [i["resourceData"]["id"] for i in rx.items()] == [msg.id, msg.id]
    assert len(rx.bodies()) == 2 and stat(sandbox, "duplicated") == 1


async def test_reorder_fault_sends_a_batch_after_the_next_one(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    await _subscribe(graph, rx)
    chat = _dm(sandbox)
    set_faults(sandbox, reorder=1.0)
    first, _ = post_message(sandbox, chat, sandbox.role("sponsor"), "first")
    await wait_until(lambda: stat(sandbox, "reordered") == 1)
    second, _ = post_message(sandbox, chat, sandbox.role("sponsor"), "second")
    await wait_until(lambda: len(rx.items()) == 2)
    assert [i["resourceData"]["id"] for i in rx.items()] == [second.id, first.id]


async def test_delay_fault_still_delivers(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    await _subscribe(graph, rx)
    set_faults(sandbox, delay_ms=50)
    post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "late")
    await wait_until(lambda: len(rx.items()) == 1)
    assert stat(sandbox, "fault_delayed") == 1


# --- slow and drop endpoints ---------------------------------------------------------------------
@options(speed=10, delivery_timeout=0.2, retry_timeout=5.0, extra={"throttle_min_sample": 2})
async def test_slow_endpoint_gets_new_notifications_ten_minutes_late(sandbox: Sandbox, graph: Graph,
                                                                     rx: Receiver) -> None:
    await _subscribe(graph, rx, minutes=24 * 60)
    chat = _dm(sandbox)
    rx.delays["/notify"] = [0.4, 0.4]  # both responses over the 3 s allowance (here 0.2 s)
    post_message(sandbox, chat, sandbox.role("sponsor"), "slow")
    await wait_until(lambda: stat(sandbox, "endpoint_slow") == 1 and stat(sandbox, "sent") == 1)
    later, _ = post_message(sandbox, chat, sandbox.role("sponsor"), "delayed")
    assert stat(sandbox, "delayed") == 1
    assert later.id not in [i["resourceData"]["id"] for i in rx.items()]
    sandbox.clock.advance(601)
    await wait_until(lambda: later.id in [i["resourceData"]["id"] for i in rx.items()])


@options(speed=10, delivery_timeout=0.1, retry_timeout=0.2, extra={"throttle_min_sample": 2})
async def test_dropping_endpoint_loses_notifications_and_outlook_gets_missed(sandbox: Sandbox, graph: Graph,
                                                                             rx: Receiver) -> None:
    sub = await _subscribe(graph, rx, INBOX, minutes=24 * 60)
    rx.delay["/notify"] = 0.5  # over the 10 s retry allowance (here 0.2 s)
    agent = sandbox.role("agent_user")
    deliver_mail(sandbox, agent, "first")
    await wait_until(lambda: stat(sandbox, "endpoint_drop") == 1 and stat(sandbox, "dropped") == 1)
    deliver_mail(sandbox, agent, "second")  # arrives during the drop window
    assert stat(sandbox, "dropped") == 2
    assert rx.events(event="missed") == []
    sandbox.clock.advance(601)
    await wait_until(lambda: len(rx.events(event="missed")) >= 1)
    missed = rx.events(event="missed")[0]
    assert missed["subscriptionId"] == sub["id"] and missed["clientState"] == "s3cret"
    assert stat(sandbox, "sent") == 1  # the lifecycle POST, nothing else


# --- lifecycle ---------------------------------------------------------------------------------------
async def test_control_remove_deletes_and_sends_subscription_removed(sandbox: Sandbox, session: aiohttp.ClientSession,
                                                                     graph: Graph, rx: Receiver) -> None:
    for resource in (ALL_CHATS, INBOX):
        sub = await _subscribe(graph, rx, resource)
        async with session.post(f"{sandbox.url}/_sandbox/subscriptions/{sub['id']}/remove") as resp:
            assert resp.status == 200
        await wait_until(lambda: any(e["subscriptionId"] == sub["id"] for e in rx.events()))
        event = next(e for e in rx.events() if e["subscriptionId"] == sub["id"])
        assert event == {"subscriptionId": sub["id"], "subscriptionExpirationDateTime": sub["expirationDateTime"],
                         "tenantId": sandbox.tenant.tenant_id, "clientState": "s3cret",
                         "lifecycleEvent": "subscriptionRemoved"}
        assert (await graph.call("GET", f"/subscriptions/{sub['id']}"))[0] == 404


async def test_control_reauthorize_and_missed_events(sandbox: Sandbox, session: aiohttp.ClientSession, graph: Graph,
                                                     rx: Receiver) -> None:
    chats = await _subscribe(graph, rx, **rich())
    mail = await _subscribe(graph, rx, INBOX)
    base = f"{sandbox.url}/_sandbox/subscriptions"
    async with session.post(f"{base}/{chats['id']}/reauthorize") as resp:
        assert resp.status == 200
    async with session.post(f"{base}/{chats['id']}/missed") as resp:
        assert resp.status == 400  # missed is for Outlook resources only
    async with session.post(f"{base}/{mail['id']}/missed") as resp:
        assert resp.status == 200
    await wait_until(lambda: len(rx.events()) == 2)
    assert {(e["subscriptionId"], e["lifecycleEvent"]) for e in rx.events()} == {
        (chats["id"], "reauthorizationRequired"), (mail["id"], "missed")}
    # A rich subscription's lifecycle POST carries a validation token too (the sandbox's choice).
    rich_body = next(b for b in rx.bodies("/lifecycle") if b["value"][0]["subscriptionId"] == chats["id"])
    _verify(sandbox, rich_body["validationTokens"][0], sandbox.role("agent_identity"))
    assert all("resource" not in e for e in rx.events())


async def test_expired_token_holds_notifications_until_reauthorized(sandbox: Sandbox, session: aiohttp.ClientSession,
                                                                    graph: Graph, rx: Receiver) -> None:
    sub = await _subscribe(graph, rx)
    async with session.post(f"{sandbox.url}/_sandbox/subscriptions/{sub['id']}/token-expired") as resp:
        assert resp.status == 200
    await wait_until(lambda: len(rx.events(event="reauthorizationRequired")) == 1)
    msg, _ = post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "wait for it")
    await wait_until(lambda: stat(sandbox, "held") == 1)
    assert rx.items() == []
    assert (await graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize"))[0] == 204
    await wait_until(lambda: len(rx.items()) == 1)
    assert rx.items()[0]["resourceData"]["id"] == msg.id


async def test_renewal_by_patch_also_releases_held_notifications(sandbox: Sandbox, session: aiohttp.ClientSession,
                                                                 graph: Graph, rx: Receiver) -> None:
    sub = await _subscribe(graph, rx)
    async with session.post(f"{sandbox.url}/_sandbox/subscriptions/{sub['id']}/token-expired"):
        pass
    post_message(sandbox, _dm(sandbox), sandbox.role("sponsor"), "held")
    await wait_until(lambda: stat(sandbox, "held") == 1)
    status, _ = await graph.call("PATCH", f"/subscriptions/{sub['id']}",
                                 {"expirationDateTime": iso(sandbox.clock.now() + 3000)})
    assert status == 200
    await wait_until(lambda: len(rx.items()) == 1)


async def test_reauthorization_required_is_sent_ahead_of_expiry(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    sub = await _subscribe(graph, rx, minutes=50)
    assert rx.events() == []
    sandbox.clock.advance(16 * 60)
    await wait_until(lambda: len(rx.events(event="reauthorizationRequired")) == 1)
    assert rx.events()[0]["subscriptionId"] == sub["id"]
    sandbox.clock.advance(16 * 60)
    await wait_until(lambda: len(rx.events(event="reauthorizationRequired")) == 2)


async def test_subscription_without_lifecycle_url_gets_no_lifecycle_events(sandbox: Sandbox,
                                                                          session: aiohttp.ClientSession,
                                                                          graph: Graph, rx: Receiver) -> None:
    status, sub = await graph.subscribe(INBOX, rx.url())
    assert status == 201
    async with session.post(f"{sandbox.url}/_sandbox/subscriptions/{sub['id']}/reauthorize") as resp:
        assert resp.status == 200
    assert stat(sandbox, "lifecycle_reauthorizationRequired") == 0


# --- wiring: Graph writes reach the engine -----------------------------------------------------------
async def test_messages_and_mail_sent_through_graph_are_notified(sandbox: Sandbox, session: aiohttp.ClientSession,
                                                                 graph: Graph, rx: Receiver) -> None:
    chats = await _subscribe(graph, rx, **rich())
    inbox = await _subscribe(graph, rx, INBOX + "?$select=subject", **rich())
    chat = _dm(sandbox)
    sponsor = Graph(sandbox, session, sandbox.role("sponsor"))
    status, sent = await sponsor.call("POST", f"/chats/{chat.id}/messages", {"body": {"content": "via Graph"}})
    assert status == 201, sent
    agent_mail = sandbox.tenant.users[sandbox.role("agent_user")].mail
    status, _ = await sponsor.call("POST", "/me/sendMail", {"message": {
        "subject": "Mailed via Graph", "body": {"contentType": "Text", "content": "hidden"},
        "toRecipients": [{"emailAddress": {"address": agent_mail}}]}})
    assert status == 202
    await wait_until(lambda: len(rx.items()) == 2)
    by_sub = {i["subscriptionId"]: i for i in rx.items()}
    key = certificate()[0]
    assert json.loads(decrypt_content(by_sub[chats["id"]]["encryptedContent"], key))["id"] == sent["id"]
    assert json.loads(decrypt_content(by_sub[inbox["id"]]["encryptedContent"], key))["subject"] == "Mailed via Graph"


async def test_each_notification_waits_its_own_delivery_delay_and_a_later_one_may_overtake(
        sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    await _subscribe(graph, rx)
    chat = _dm(sandbox)
    sandbox.behaviour = sandbox.behaviour.merged({"delivery_delay_ms": {"chat": [800, 800]}})
    started = anyio.current_time()
    slow, _ = post_message(sandbox, chat, sandbox.role("sponsor"), "waits 0.8 s")
    sandbox.behaviour = sandbox.behaviour.merged({"delivery_delay_ms": {"chat": [0, 0]}})
    fast, _ = post_message(sandbox, chat, sandbox.role("sponsor"), "no wait")
    await wait_until(lambda: len(rx.items()) == 2)
    # Delivered as drawn, not first in first out: Graph does not promise order (a lower bound only).
    assert [item["resourceData"]["id"] for item in rx.items()] == [fast.id, slow.id]
    assert anyio.current_time() - started >= 0.8


def test_delivery_delays_are_drawn_around_p50_and_never_past_the_maximum() -> None:
    import random

    from agentseat.sandbox.behaviour import Behaviour

    behaviour = Behaviour().merged({"delivery_delay_ms": {"mail": [1000, 3000]}, "graph_latency_ms": [100, 300]})
    rng = random.Random(7)
    mail = sorted(behaviour.delivery_delay("mail", rng) for _ in range(2001))
    graph = sorted(behaviour.graph_delay(rng) for _ in range(2001))
    assert 0.9 < mail[1000] < 1.1 and mail[-1] <= 3.0  # median near p50, capped at the maximum
    assert 0.09 < graph[1000] < 0.11 and 0.25 < graph[1980] < 0.36  # p50 and p99 near what was asked
    assert behaviour.delivery_delay("chat", rng) == 0.0  # the other kind keeps its own (zero) range
