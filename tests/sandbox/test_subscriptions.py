"""`/v1.0/subscriptions` over real HTTPS, with a real webhook receiving the validation handshake."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.clock import iso, parse_iso
from agentseat.sandbox.tenant import Subscription
from tests.sandbox._webhook import (
    Graph,
    Receiver,
    add_chat,
    options,
    rich,
    stat,
    wait_until,
)

USER_CHATS = "/users/{me}/chats/getAllMessages"
INBOX = "/me/mailFolders('inbox')/messages"


def _me(sandbox: Sandbox, resource: str = USER_CHATS) -> str:
    return resource.format(me=sandbox.role("agent_user"))


def _error(body: Any) -> tuple[str, str]:
    return body["error"]["code"], body["error"]["message"]


# --- create and the handshake -----------------------------------------------------------------
async def test_create_validates_both_urls_and_returns_graph_shaped_subscription(
        sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, body = await graph.subscribe(_me(sandbox), rx.url(), lifecycleNotificationUrl=rx.url("/lifecycle"))
    assert status == 201, body
    assert body["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity"
    assert body["applicationId"] == sandbox.role("agent_identity")
    assert body["creatorId"] == sandbox.role("agent_user")
    assert body["latestSupportedTlsVersion"] == "v1_2"
    assert body["notificationContentType"] == "application/json"
    assert body["includeResourceData"] is False and body["clientState"] == "s3cret"
    assert body["lifecycleNotificationUrl"] == rx.url("/lifecycle")
    assert [v.path for v in rx.validations] == ["/notify", "/lifecycle"]
    for validation in rx.validations:
        # An opaque token with spaces and a colon, percent-encoded on the wire, empty body.
        assert " " in validation.token and ":" in validation.token
        assert " " not in validation.raw_query and "validationToken=" in validation.raw_query
        assert validation.content_type == "text/plain; charset=utf-8"
        assert validation.body == b""
    stored = sandbox.tenant.subscriptions[body["id"]]
    assert stored.token_expires > sandbox.clock.now()


async def test_same_url_for_both_endpoints_is_validated_twice(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, _ = await graph.subscribe(_me(sandbox), rx.url(), lifecycleNotificationUrl=rx.url())
    assert status == 201
    assert [v.path for v in rx.validations] == ["/notify", "/notify"]
    assert rx.validations[0].token != rx.validations[1].token


async def test_query_string_of_notification_url_is_preserved(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, _ = await graph.subscribe(_me(sandbox), rx.url("/notify?route=teams&x=1"))
    assert status == 201
    assert rx.validations[0].query["route"] == "teams" and rx.validations[0].query["x"] == "1"
    assert "validationToken" in rx.validations[0].query


@pytest.mark.parametrize("mode", ["wrong", "encoded", "html", "status"])
async def test_bad_validation_answer_rejects_subscription(sandbox: Sandbox, graph: Graph, rx: Receiver,
                                                          mode: str) -> None:
    rx.validation_mode["/notify"] = mode
    status, body = await graph.subscribe(_me(sandbox), rx.url())
    assert status == 400
    assert _error(body) == ("ValidationError", "Subscription validation request failed. Notification endpoint "
                            "must respond with 200 OK to validation request.")
    assert sandbox.tenant.subscriptions == {}


async def test_failing_lifecycle_url_validation_rejects_subscription(sandbox: Sandbox, graph: Graph,
                                                                     rx: Receiver) -> None:
    rx.validation_mode["/lifecycle"] = "wrong"
    status, body = await graph.subscribe(_me(sandbox), rx.url(), lifecycleNotificationUrl=rx.url("/lifecycle"))
    assert status == 400 and _error(body)[0] == "ValidationError"
    assert sandbox.tenant.subscriptions == {}


@options(validation_timeout=0.5)
async def test_slow_validation_answer_times_out(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    rx.validation_mode["/notify"] = "sleep"
    status, body = await graph.subscribe(_me(sandbox), rx.url())
    assert status == 400
    assert _error(body) == ("InvalidRequest", "Subscription validation request timed out.")


async def test_unreachable_endpoint_fails_validation(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    port = rx.port
    await rx.stop()
    status, body = await graph.subscribe(_me(sandbox), f"http://127.0.0.1:{port}/notify")
    assert status == 400 and _error(body)[0] == "ValidationError"


# --- field rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["changeType", "notificationUrl", "resource", "expirationDateTime"])
async def test_required_fields(sandbox: Sandbox, graph: Graph, rx: Receiver, missing: str) -> None:
    body = {"changeType": "created", "notificationUrl": rx.url(), "resource": _me(sandbox),
            "expirationDateTime": iso(sandbox.clock.now() + 3000)}
    del body[missing]
    status, error = await graph.call("POST", "/subscriptions", body)
    assert status == 400 and missing in _error(error)[1]
    assert rx.validations == []


async def test_https_is_required_except_loopback_http(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, body = await graph.subscribe(_me(sandbox), "http://webhook.example.com/notify")
    assert status == 400 and "HTTPS" in _error(body)[1]
    status, body = await graph.subscribe(_me(sandbox), rx.url(), lifecycleNotificationUrl="http://example.com/l")
    assert status == 400 and "lifecycleNotificationUrl" in _error(body)[1]
    status, _ = await graph.subscribe(_me(sandbox), rx.url())
    assert status == 201


@options(allow_http_loopback=False)
async def test_loopback_http_is_refused_when_the_option_is_off(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, body = await graph.subscribe(_me(sandbox), rx.url())
    assert status == 400 and "HTTPS" in _error(body)[1]
    assert rx.validations == []


async def test_client_state_is_limited_to_128_characters(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, _ = await graph.subscribe(_me(sandbox), rx.url(), clientState="x" * 129)
    assert status == 400
    status, body = await graph.subscribe(_me(sandbox), rx.url(), clientState="x" * 128)
    assert status == 201 and body["clientState"] == "x" * 128


async def test_unknown_change_type_and_web_push_fields_are_refused(sandbox: Sandbox, graph: Graph,
                                                                   rx: Receiver) -> None:
    status, _ = await graph.subscribe(_me(sandbox), rx.url(), changeType="created,renamed")
    assert status == 400
    status, _ = await graph.subscribe(_me(sandbox), rx.url(), vapidPublicKey="BOr...")
    assert status == 400


# --- lifetimes -------------------------------------------------------------------------------------
async def test_expiration_under_45_minutes_is_raised_to_45(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    before = sandbox.clock.now()
    status, body = await graph.subscribe(_me(sandbox), rx.url(), minutes=5)
    assert status == 201
    assert parse_iso(body["expirationDateTime"]) >= before + 45 * 60


@pytest.mark.parametrize(("resource", "extra", "limit"), [
    (USER_CHATS, {"lifecycleNotificationUrl": "L"}, 4320),
    (INBOX, {}, 10080),
    (INBOX + "?$select=subject", {"rich": True}, 1440),
])
async def test_expiration_beyond_the_resource_maximum_is_refused(sandbox: Sandbox, graph: Graph, rx: Receiver,
                                                                 resource: str, extra: dict[str, Any],
                                                                 limit: int) -> None:
    kwargs: dict[str, Any] = rich() if extra.get("rich") else {}
    if "lifecycleNotificationUrl" in extra:
        kwargs["lifecycleNotificationUrl"] = rx.url("/lifecycle")
    status, body = await graph.subscribe(_me(sandbox, resource), rx.url(), minutes=limit + 1, **kwargs)
    assert status == 400
    assert _error(body) == ("ExtensionError", f"Subscription expiration can only be {limit} minutes in the future.")
    status, body = await graph.subscribe(_me(sandbox, resource), rx.url(), minutes=limit - 1, **kwargs)
    assert status == 201, body


@options(behaviour={"chat_subscription_max_minutes": 60}, mail_max_minutes=90)
async def test_maximum_lifetimes_are_configurable(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, body = await graph.subscribe(_me(sandbox), rx.url(), minutes=61)
    assert status == 400 and "60 minutes" in _error(body)[1]
    status, body = await graph.subscribe(INBOX, rx.url(), minutes=91)
    assert status == 400 and "90 minutes" in _error(body)[1]


async def test_teams_subscription_over_an_hour_needs_a_lifecycle_url(sandbox: Sandbox, graph: Graph,
                                                                     rx: Receiver) -> None:
    status, body = await graph.subscribe(_me(sandbox), rx.url(), minutes=120)
    assert status == 400
    assert "lifecycleNotificationUrl is a required property" in _error(body)[1]
    status, _ = await graph.subscribe(_me(sandbox), rx.url(), minutes=55)
    assert status == 201
    status, _ = await graph.subscribe(INBOX, rx.url(), minutes=120)  # Outlook: optional
    assert status == 201


# --- rich subscriptions ----------------------------------------------------------------------------
async def test_rich_subscription_needs_a_valid_rsa_certificate_and_its_id(sandbox: Sandbox, graph: Graph,
                                                                          rx: Receiver) -> None:
    me = _me(sandbox)
    cases: list[dict[str, Any]] = [
        {"includeResourceData": True},
        {**rich(), "encryptionCertificateId": None},
        {**rich(), "encryptionCertificate": "bm90IGEgY2VydGlmaWNhdGU="},
        rich(bits=1024),
        {**rich(), "encryptionCertificateId": "x" * 129},
    ]
    for extra in cases:
        status, _ = await graph.subscribe(me, rx.url(), **extra)
        assert status == 400, extra
    status, body = await graph.subscribe(me, rx.url(), **rich())
    assert status == 201
    assert body["includeResourceData"] is True and body["encryptionCertificateId"] == "agentseat-cert-1"
    assert rx.validations and len(rx.validations) == 1


async def test_rich_mail_needs_select_without_body_or_paging_options(sandbox: Sandbox, graph: Graph,
                                                                     rx: Receiver) -> None:
    for resource in (INBOX, INBOX + "?$select=subject,Body", INBOX + "?$select=uniqueBody",
                     INBOX + "?$select=subject&$top=5", INBOX + "?$select=subject&$orderby=receivedDateTime"):
        status, _ = await graph.subscribe(resource, rx.url(), **rich())
        assert status == 400, resource
    status, _ = await graph.subscribe(INBOX + "?$select=subject,bodyPreview,from", rx.url(), **rich())
    assert status == 201


async def test_rich_chat_subscription_does_not_take_select(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, _ = await graph.subscribe(_me(sandbox) + "?$select=body", rx.url(), **rich())
    assert status == 400


# --- resources and permissions ---------------------------------------------------------------------
async def test_resource_forms_are_case_insensitive_and_me_means_the_caller(sandbox: Sandbox, graph: Graph,
                                                                         rx: Receiver) -> None:
    agent = sandbox.role("agent_user")
    upn = sandbox.tenant.users[agent].upn
    status, _ = await graph.subscribe(f"users/{agent}/chats/getAllMessages", rx.url())
    assert status == 201
    for same in (f"/Users/{upn}/Chats/GetAllMessages", "/me/chats/getAllMessages"):
        status, body = await graph.subscribe(same, rx.url())
        assert status == 409, (same, body)
    for resource in ("/me/messages", "me/mailFolders/Inbox/messages",
                     f"/users('{agent}')/mailFolders('SentItems')/messages"):
        status, body = await graph.subscribe(resource, rx.url())
        assert status == 201, (resource, body)
        assert body["resource"] == resource  # echoed as given


async def test_delegated_callers_subscribe_only_to_what_they_can_read(sandbox: Sandbox, session: aiohttp.ClientSession,
                                                                      graph: Graph, rx: Receiver) -> None:
    colleague = sandbox.role("colleague1")
    status, body = await graph.subscribe(f"/users/{colleague}/chats/getAllMessages", rx.url())
    assert status == 403
    status, body = await graph.subscribe(f"/users/{colleague}/messages", rx.url())
    assert status == 403
    status, body = await graph.subscribe("/chats/getAllMessages", rx.url())
    assert status == 403 and "delegated" in _error(body)[1]
    others = add_chat(sandbox, [colleague, sandbox.role("sponsor")])
    status, _ = await graph.subscribe(f"/chats/{others.id}/messages", rx.url())
    assert status == 403
    mail_only = Graph(sandbox, session, scopes=["Mail.Read"])
    status, body = await mail_only.subscribe(_me(sandbox), rx.url())
    assert status == 403
    status, _ = await mail_only.subscribe(INBOX, rx.url())
    assert status == 201
    status, _ = await graph.subscribe("/teams/getAllMessages", rx.url())
    assert status in (400, 403)
    assert rx.validations and len(rx.validations) == 1


async def test_duplicate_subscription_is_409_naming_the_existing_one(sandbox: Sandbox, graph: Graph,
                                                                     rx: Receiver) -> None:
    status, first = await graph.subscribe(_me(sandbox), rx.url())
    assert status == 201
    status, body = await graph.subscribe("/me/chats/getAllMessages", rx.url("/other"))
    assert status == 409
    assert _error(body)[1] == f"Subscription Id {first['id']} already exists for the requested combination"
    status, _ = await graph.subscribe(_me(sandbox), rx.url(), changeType="created,updated")
    assert status == 201  # another changeType is another combination


async def test_one_subscription_per_app_and_chat(sandbox: Sandbox, session: aiohttp.ClientSession, graph: Graph,
                                                 rx: Receiver) -> None:
    chat = add_chat(sandbox, [sandbox.role("agent_user"), sandbox.role("sponsor")])
    status, _ = await graph.subscribe(f"/chats/{chat.id}/messages", rx.url())
    assert status == 201
    status, body = await graph.subscribe(f"/chats/{chat.id}/messages", rx.url(), changeType="updated")
    assert status == 403 and "quota" in _error(body)[1].lower()
    other_app = Graph(sandbox, session, app_id=str(uuid.uuid4()))
    status, _ = await other_app.subscribe(f"/chats('{chat.id}')/messages", rx.url())
    assert status == 201


async def test_ten_all_chats_subscriptions_per_user(sandbox: Sandbox, session: aiohttp.ClientSession,
                                                    rx: Receiver) -> None:
    for _ in range(10):
        status, _ = await Graph(sandbox, session, app_id=str(uuid.uuid4())).subscribe(_me(sandbox), rx.url())
        assert status == 201
    status, body = await Graph(sandbox, session, app_id=str(uuid.uuid4())).subscribe(_me(sandbox), rx.url())
    assert status == 403 and "10 subscriptions per user" in _error(body)[1]


async def test_thousand_subscriptions_per_mailbox(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    agent = sandbox.role("agent_user")

    def fill() -> None:
        for i in range(1000):
            sub = Subscription(id=str(uuid.uuid4()), app_id=f"app-{i}", creator_id=agent, resource="/me/messages",
                               change_type="created", notification_url=rx.url(),
                               expiration=sandbox.clock.now() + 3600)
            sandbox.tenant.subscriptions[sub.id] = sub

    sandbox.portal.call(fill)  # type: ignore[attr-defined]
    status, body = await graph.subscribe(INBOX, rx.url())
    assert status == 403 and "per mailbox" in _error(body)[1]


# --- list, get, update, delete, reauthorize -------------------------------------------------------
async def test_list_shows_only_this_apps_subscriptions_for_the_signed_in_user(
        sandbox: Sandbox, session: aiohttp.ClientSession, graph: Graph, rx: Receiver) -> None:
    status, mine = await graph.subscribe(_me(sandbox), rx.url())
    assert status == 201
    assert (await Graph(sandbox, session, app_id=str(uuid.uuid4())).subscribe(_me(sandbox), rx.url()))[0] == 201
    colleague = Graph(sandbox, session, sandbox.role("colleague1"))
    assert (await colleague.subscribe("/me/messages", rx.url()))[0] == 201
    status, listing = await graph.call("GET", "/subscriptions")
    assert status == 200
    assert [s["id"] for s in listing["value"]] == [mine["id"]]
    status, one = await graph.call("GET", f"/subscriptions/{mine['id']}")
    assert status == 200 and one["id"] == mine["id"]
    status, _ = await colleague.call("GET", f"/subscriptions/{mine['id']}")
    assert status == 404


async def test_patch_renews_and_validates_a_new_notification_url(sandbox: Sandbox, graph: Graph,
                                                                 rx: Receiver) -> None:
    status, sub = await graph.subscribe(_me(sandbox), rx.url(), lifecycleNotificationUrl=rx.url("/lifecycle"))
    path = f"/subscriptions/{sub['id']}"
    later = iso(sandbox.clock.now() + 3 * 3600)
    status, body = await graph.call("PATCH", path, {"expirationDateTime": later})
    assert status == 200 and body["expirationDateTime"] == later
    rx.validation_mode["/broken"] = "wrong"
    status, body = await graph.call("PATCH", path, {"notificationUrl": rx.url("/broken")})
    assert status == 400 and _error(body)[0] == "ValidationError"
    assert sandbox.tenant.subscriptions[sub["id"]].notification_url == rx.url()
    status, body = await graph.call("PATCH", path, {"notificationUrl": rx.url("/moved")})
    assert status == 200 and body["notificationUrl"] == rx.url("/moved")
    assert rx.validations[-1].path == "/moved"
    for bad in ({"clientState": "new"}, {"lifecycleNotificationUrl": rx.url("/l2")}, {},
                {"expirationDateTime": iso(sandbox.clock.now() + 4321 * 60)}):
        status, _ = await graph.call("PATCH", path, bad)
        assert status == 400, bad


async def test_lifecycle_url_cannot_be_added_by_patch(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, sub = await graph.subscribe(INBOX, rx.url())
    status, body = await graph.call("PATCH", f"/subscriptions/{sub['id']}",
                                    {"lifecycleNotificationUrl": rx.url("/lifecycle")})
    assert status == 400 and "delete the subscription" in _error(body)[1]


async def test_patch_of_a_teams_subscription_past_an_hour_without_lifecycle_url_is_refused(
        sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, sub = await graph.subscribe(_me(sandbox), rx.url())
    status, _ = await graph.call("PATCH", f"/subscriptions/{sub['id']}",
                                 {"expirationDateTime": iso(sandbox.clock.now() + 2 * 3600)})
    assert status == 400


async def test_expired_subscription_is_gone(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, sub = await graph.subscribe(_me(sandbox), rx.url(), minutes=45)
    path = f"/subscriptions/{sub['id']}"
    sandbox.clock.advance(46 * 60)
    status, body = await graph.call("PATCH", path, {"expirationDateTime": iso(sandbox.clock.now() + 3000)})
    assert status == 404 and "create a new subscription" in _error(body)[1]
    assert (await graph.call("GET", path))[0] == 404
    assert (await graph.call("DELETE", path))[0] == 404
    assert (await graph.call("GET", "/subscriptions"))[1]["value"] == []


async def test_delete_is_204_then_404(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, sub = await graph.subscribe(_me(sandbox), rx.url())
    assert (await graph.call("DELETE", f"/subscriptions/{sub['id']}"))[0] == 204
    assert (await graph.call("DELETE", f"/subscriptions/{sub['id']}"))[0] == 404
    assert sandbox.tenant.subscriptions == {}


async def test_reauthorize_is_204_and_refreshes_the_token_behind_the_subscription(
        sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, sub = await graph.subscribe(_me(sandbox), rx.url())
    stored = sandbox.tenant.subscriptions[sub["id"]]
    first = stored.token_expires
    sandbox.clock.advance(120)
    status, body = await graph.call("POST", f"/subscriptions/{sub['id']}/reauthorize")
    assert status == 204 and body is None
    assert stored.token_expires > first
    assert stat(sandbox, "reauthorize_and_patch_within_10min") == 0


async def test_reauthorize_and_patch_within_ten_minutes_is_flagged(sandbox: Sandbox, graph: Graph,
                                                                   rx: Receiver) -> None:
    status, sub = await graph.subscribe(_me(sandbox), rx.url())
    path = f"/subscriptions/{sub['id']}"
    assert (await graph.call("POST", f"{path}/reauthorize"))[0] == 204
    sandbox.clock.advance(11 * 60)
    assert (await graph.call("PATCH", path, {"expirationDateTime": iso(sandbox.clock.now() + 3000)}))[0] == 200
    assert stat(sandbox, "reauthorize_and_patch_within_10min") == 0
    assert (await graph.call("POST", f"{path}/reauthorize"))[0] == 204
    assert stat(sandbox, "reauthorize_and_patch_within_10min") == 1


# --- control routes -------------------------------------------------------------------------------
async def test_control_lists_all_subscriptions_and_expires_one(sandbox: Sandbox, session: aiohttp.ClientSession,
                                                               graph: Graph, rx: Receiver) -> None:
    status, sub = await graph.subscribe(_me(sandbox), rx.url())
    assert (await Graph(sandbox, session, sandbox.role("colleague1")).subscribe("/me/messages", rx.url()))[0] == 201
    async with session.get(f"{sandbox.url}/_sandbox/subscriptions") as resp:
        listing = await resp.json()
    assert len(listing["value"]) == 2
    assert {s["notificationUrl"] for s in listing["value"]} == {rx.url()}
    async with session.post(f"{sandbox.url}/_sandbox/subscriptions/{sub['id']}/expire") as resp:
        assert resp.status == 200
    await wait_until(lambda: sub["id"] not in sandbox.tenant.subscriptions)
    assert (await graph.call("GET", f"/subscriptions/{sub['id']}"))[0] == 404
    async with session.post(f"{sandbox.url}/_sandbox/subscriptions/{sub['id']}/remove") as resp:
        assert resp.status == 404

