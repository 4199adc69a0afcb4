"""The sandbox's Teams chats over real HTTPS: list, read, create, members, messages, throttling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.clock import iso, parse_iso
from agentseat.sandbox.graph.chats import create_group_chat, ensure_one_on_one, post_chat_message
from agentseat.sandbox.entra.tokens import app_token, delegated_token, user_graph_token
from tests.sandbox._graph import call, on_loop


def no_throttle(sb: Sandbox) -> None:
    def off() -> None:
        sb.throttle.enabled = False

    sb.portal.call(off)  # type: ignore[attr-defined]


def ids(sb: Sandbox) -> tuple[str, str, str, str]:
    return sb.role("agent_user"), sb.role("sponsor"), sb.role("colleague1"), sb.role("colleague2")


def member(ref: str) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": ["owner"],
            "user@odata.bind": f"https://graph.microsoft.com/v1.0/users('{ref}')"}


# --- auth ------------------------------------------------------------------------------------------------------
async def test_chat_list_without_token_is_401_and_without_chat_scope_is_403(sandbox: Sandbox) -> None:
    agent, *_ = ids(sandbox)
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/chats")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    weak, _ = delegated_token(sandbox, user_id=agent, app_id=sandbox.role("agent_identity"), scopes=["User.Read"])
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/chats", weak)
    assert status == 403 and body["error"]["code"] == "Forbidden"
    basic, _ = delegated_token(sandbox, user_id=agent, app_id=sandbox.role("agent_identity"),
                               scopes=["Chat.ReadBasic"])
    status, _, _ = await call(sandbox, "GET", "/v1.0/me/chats", basic)
    assert status == 200


# --- listing ---------------------------------------------------------------------------------------------------
async def test_me_chats_lists_only_the_callers_chats_with_last_message_preview(sandbox: Sandbox) -> None:
    agent, sponsor, grace, alan = ids(sandbox)
    mine, _ = on_loop(sandbox, ensure_one_on_one, sandbox, sponsor, agent)
    on_loop(sandbox, ensure_one_on_one, sandbox, grace, alan)  # the agent is not in this one
    on_loop(sandbox, post_chat_message, sandbox, mine, sponsor, "hello agent")
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/chats?$expand=lastMessagePreview",
                                 user_graph_token(sandbox, agent))
    assert status == 200
    assert [c["id"] for c in body["value"]] == [mine.id]
    chat = body["value"][0]
    assert chat["chatType"] == "oneOnOne" and chat["id"].endswith("@unq.gbl.spaces")
    assert chat["lastMessagePreview"]["body"]["content"] == "hello agent"
    assert chat["lastMessagePreview"]["from"]["user"]["id"] == sponsor


async def test_chat_list_rejects_other_orderby_and_top_over_50(sandbox: Sandbox) -> None:
    no_throttle(sandbox)
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/chats?$orderby=lastUpdatedDateTime%20desc", token)
    assert status == 400 and body["error"]["code"] == "BadRequest"
    status, _, _ = await call(sandbox, "GET", "/v1.0/me/chats?$orderby=lastMessagePreview/createdDateTime%20asc",
                              token)
    assert status == 400
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/chats?$top=51", token)
    assert status == 400 and "limit of '50'" in body["error"]["message"]
    status, _, _ = await call(sandbox, "GET", "/v1.0/me/chats?$expand=installedApps", token)
    assert status == 400
    status, _, _ = await call(
        sandbox, "GET", "/v1.0/me/chats?$orderby=lastMessagePreview/createdDateTime%20desc&$top=50", token)
    assert status == 200


async def test_chat_list_pages_past_fifty_chats_newest_message_first(sandbox: Sandbox) -> None:
    agent, sponsor, grace, _ = ids(sandbox)
    no_throttle(sandbox)

    def seed() -> list[str]:
        made = []
        for i in range(60):
            chat = create_group_chat(sandbox, [agent, sponsor, grace], f"topic {i}")
            post_chat_message(sandbox, chat, sponsor, f"message {i}")
            made.append(chat.id)
        return made

    made = on_loop(sandbox, seed)
    token = user_graph_token(sandbox, agent)
    status, first, _ = await call(sandbox, "GET", "/v1.0/me/chats?$expand=lastMessagePreview"
                                  "&$orderby=lastMessagePreview/createdDateTime%20desc&$top=50", token)
    assert status == 200 and len(first["value"]) == 50
    next_link = first["@odata.nextLink"]
    assert next_link.startswith(sandbox.url + "/v1.0/me/chats?") and "$skiptoken=" in next_link
    status, second, _ = await call(sandbox, "GET", next_link, token)
    assert status == 200 and len(second["value"]) == 10 and "@odata.nextLink" not in second
    listed = [c["id"] for c in first["value"] + second["value"]]
    assert listed == list(reversed(made))  # newest lastMessagePreview first, none repeated or lost


async def test_second_immediate_chat_list_is_throttled_then_succeeds_after_retry_after(sandbox: Sandbox) -> None:
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    first, _, _ = await call(sandbox, "GET", "/v1.0/me/chats", token)
    status, body, headers = await call(sandbox, "GET", "/v1.0/me/chats", token)
    assert first == 200 and status == 429
    assert body["error"]["code"] == "TooManyRequests" and "innerError" in body["error"]
    wait = float(headers["Retry-After"])  # Graph may send a fraction, e.g. 2.128
    assert 0 < wait <= 1.0
    await asyncio.sleep(wait + 0.05)
    status, _, _ = await call(sandbox, "GET", "/v1.0/me/chats", token)
    assert status == 200


# --- one chat, members -----------------------------------------------------------------------------------------
async def test_get_chat_and_members_for_a_member_and_404_for_an_outsider(sandbox: Sandbox) -> None:
    agent, sponsor, grace, _ = ids(sandbox)
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    status, body, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat.id}", user_graph_token(sandbox, agent))
    assert status == 200 and body["id"] == chat.id and body["tenantId"] == sandbox.tenant.tenant_id
    status, body, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat.id}/members", user_graph_token(sandbox, agent))
    assert status == 200
    members = {m["userId"]: m for m in body["value"]}
    assert set(members) == {agent, sponsor}
    assert members[sponsor]["@odata.type"] == "#microsoft.graph.aadUserConversationMember"
    assert members[sponsor]["email"] == "ada@contoso.test" and members[sponsor]["roles"] == ["owner"]
    status, body, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat.id}", user_graph_token(sandbox, grace))
    assert status == 404 and body["error"]["code"] == "NotFound"


async def test_second_one_on_one_chat_returns_existing(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    no_throttle(sandbox)
    token = user_graph_token(sandbox, agent)
    payload = {"chatType": "oneOnOne", "members": [member(agent), member("ada@contoso.test")]}
    status, first, _ = await call(sandbox, "POST", "/v1.0/chats", token, body=payload)
    assert status == 201 and first["chatType"] == "oneOnOne" and first["id"].startswith("19:")
    assert first["id"].endswith("@unq.gbl.spaces")
    status, again, _ = await call(sandbox, "POST", "/v1.0/chats", user_graph_token(sandbox, sponsor),
                                  body={"chatType": "oneOnOne", "members": [member(sponsor), member(agent)]})
    assert status == 201 and again["id"] == first["id"]
    assert len(sandbox.tenant.chats) == 1


async def test_create_chat_enforces_members_rules_and_scope(sandbox: Sandbox) -> None:
    agent, sponsor, grace, alan = ids(sandbox)
    no_throttle(sandbox)
    token = user_graph_token(sandbox, agent)
    without_caller = {"chatType": "oneOnOne", "members": [member(sponsor), member(grace)]}
    status, body, _ = await call(sandbox, "POST", "/v1.0/chats", token, body=without_caller)
    assert status == 400 and "caller" in body["error"]["message"]
    three = {"chatType": "oneOnOne", "members": [member(agent), member(sponsor), member(grace)]}
    assert (await call(sandbox, "POST", "/v1.0/chats", token, body=three))[0] == 400
    unknown = {"chatType": "oneOnOne", "members": [member(agent), member("nobody@contoso.test")]}
    assert (await call(sandbox, "POST", "/v1.0/chats", token, body=unknown))[0] == 404
    assert (await call(sandbox, "POST", "/v1.0/chats", token, body={"members": []}))[0] == 400
    read_only = delegated_token(sandbox, user_id=agent, app_id=sandbox.role("agent_identity"),
                                scopes=["Chat.Read"])[0]
    ok = {"chatType": "oneOnOne", "members": [member(agent), member(sponsor)]}
    assert (await call(sandbox, "POST", "/v1.0/chats", read_only, body=ok))[0] == 403
    group = {"chatType": "group", "topic": "launch",
             "members": [member(agent), member(sponsor), member(grace)]}
    status, body, _ = await call(sandbox, "POST", "/v1.0/chats", token, body=group)
    assert status == 201 and body["chatType"] == "group" and body["id"].endswith("@thread.v2")
    assert body["topic"] == "launch"
    status, _, _ = await call(sandbox, "POST", "/v1.0/chats", token, body=group)
    assert status == 201 and len(sandbox.tenant.chats) == 2  # group chats are never deduplicated
    assert alan not in sandbox.tenant.chats[body["id"]].member_ids


async def test_members_can_be_added_to_group_chats_but_not_one_on_one(sandbox: Sandbox) -> None:
    agent, sponsor, grace, alan = ids(sandbox)
    no_throttle(sandbox)
    group = on_loop(sandbox, create_group_chat, sandbox, [agent, sponsor, grace], "ops")
    dm, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    token = user_graph_token(sandbox, agent)
    status, body, _ = await call(sandbox, "POST", f"/v1.0/chats/{group.id}/members", token, body=member(alan))
    assert status == 201 and body["userId"] == alan
    assert alan in sandbox.tenant.chats[group.id].member_ids
    status, _, _ = await call(sandbox, "POST", f"/v1.0/chats/{dm.id}/members", token, body=member(alan))
    assert status == 400
    assert sandbox.tenant.chats[dm.id].member_ids == [agent, sponsor]


# --- messages ----------------------------------------------------------------------------------------------------
async def test_send_message_returns_201_chat_message_with_rising_epoch_millis_ids(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    earlier = on_loop(sandbox, post_chat_message, sandbox, chat, sponsor, "ping")
    status, body, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat.id}/messages", user_graph_token(sandbox, agent),
                                 body={"body": {"contentType": "html", "content": "<p>pong</p>"}})
    assert status == 201
    assert body["chatId"] == chat.id and body["from"]["user"]["id"] == agent
    assert body["body"] == {"contentType": "html", "content": "<p>pong</p>"}
    assert body["id"].isdigit() and int(body["id"]) > int(earlier.id)
    assert abs(int(body["id"]) / 1000 - parse_iso(body["createdDateTime"])) < 0.002
    assert sandbox.tenant.chats[chat.id].last_updated >= parse_iso(body["createdDateTime"]) - 0.001


async def test_a_user_cannot_post_twice_in_the_same_second(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    token = user_graph_token(sandbox, agent)
    payload = {"body": {"content": "one"}}
    assert (await call(sandbox, "POST", f"/v1.0/chats/{chat.id}/messages", token, body=payload))[0] == 201
    status, _, headers = await call(sandbox, "POST", f"/v1.0/chats/{chat.id}/messages", token, body=payload)
    assert status == 429 and float(headers["Retry-After"]) > 0


async def test_send_message_rejects_empty_oversized_outsider_and_missing_scope(sandbox: Sandbox) -> None:
    agent, sponsor, grace, _ = ids(sandbox)
    no_throttle(sandbox)
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    path = f"/v1.0/chats/{chat.id}/messages"
    token = user_graph_token(sandbox, agent)
    assert (await call(sandbox, "POST", path, token, body={"body": {"content": "  "}}))[0] == 400
    assert (await call(sandbox, "POST", path, token, body={"text": "hi"}))[0] == 400
    assert (await call(sandbox, "POST", path, token,
                       body={"body": {"contentType": "markdown", "content": "x"}}))[0] == 400
    status, body, _ = await call(sandbox, "POST", path, token, body={"body": {"content": "x" * (28 * 1024 + 1)}})
    assert status == 413 and body["error"]["code"] == "RequestEntityTooLarge"
    assert (await call(sandbox, "POST", path, token, body={"body": {"content": "x" * 28_000}}))[0] == 201
    status, _, _ = await call(sandbox, "POST", path, user_graph_token(sandbox, grace), body={"body": {"content": "x"}})
    assert status == 403
    read_only = delegated_token(sandbox, user_id=agent, app_id=sandbox.role("agent_identity"),
                                scopes=["Chat.Read"])[0]
    assert (await call(sandbox, "POST", path, read_only, body={"body": {"content": "x"}}))[0] == 403
    assert len(sandbox.tenant.messages[chat.id]) == 1


async def test_list_messages_pages_past_fifty_newest_first(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    no_throttle(sandbox)

    def seed() -> Any:
        chat, _ = ensure_one_on_one(sandbox, agent, sponsor)
        posted = [post_chat_message(sandbox, chat, sponsor, f"m{i}") for i in range(60)]
        return chat, [m.id for m in posted]

    chat, posted = on_loop(sandbox, seed)
    token = user_graph_token(sandbox, agent)
    status, first, _ = await call(sandbox, "GET", f"/v1.0/me/chats/{chat.id}/messages?$top=50", token)
    assert status == 200 and first["@odata.count"] == 50 and len(first["value"]) == 50
    assert "$skiptoken=" in first["@odata.nextLink"] and first["@odata.nextLink"].startswith(sandbox.url)
    status, second, _ = await call(sandbox, "GET", first["@odata.nextLink"], token)
    assert status == 200 and len(second["value"]) == 10 and "@odata.nextLink" not in second
    assert [m["id"] for m in first["value"] + second["value"]] == list(reversed(posted))
    status, default, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat.id}/messages", token)
    assert status == 200 and len(default["value"]) == 20


async def test_list_messages_order_and_top_rules(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    no_throttle(sandbox)
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    path = f"/v1.0/chats/{chat.id}/messages"
    token = user_graph_token(sandbox, agent)
    for bad in ("lastModifiedDateTime%20asc", "createdDateTime", "subject%20desc"):
        status, body, _ = await call(sandbox, "GET", f"{path}?$orderby={bad}", token)
        assert status == 400, bad
    assert (await call(sandbox, "GET", f"{path}?$top=51", token))[0] == 400
    assert (await call(sandbox, "GET", f"{path}?$orderby=createdDateTime%20desc", token))[0] == 200
    status, body, _ = await call(sandbox, "GET", path, user_graph_token(sandbox, sandbox.role("colleague1")))
    assert status == 403


async def test_message_filter_applies_only_with_orderby_on_the_same_property(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    no_throttle(sandbox)

    def seed() -> Any:
        chat, _ = ensure_one_on_one(sandbox, agent, sponsor)
        old = post_chat_message(sandbox, chat, sponsor, "old")
        sandbox.clock.advance(60)
        new = post_chat_message(sandbox, chat, sponsor, "new")
        return chat, old, new

    chat, old, new = on_loop(sandbox, seed)
    cut = iso(old.created + 30)
    path = f"/v1.0/chats/{chat.id}/messages"
    token = user_graph_token(sandbox, agent)

    async def listed(qs: str) -> list[str]:
        status, body, _ = await call(sandbox, "GET", f"{path}?{qs}", token)
        assert status == 200, body
        return [m["id"] for m in body["value"]]

    assert await listed(f"$orderby=lastModifiedDateTime%20desc&$filter=lastModifiedDateTime%20gt%20{cut}") == [new.id]
    assert await listed(f"$orderby=lastModifiedDateTime%20desc&$filter=lastModifiedDateTime%20lt%20{cut}") == [old.id]
    assert await listed(f"$orderby=createdDateTime%20desc&$filter=createdDateTime%20lt%20{cut}") == [old.id]
    # Without $orderby, or with it on another property, the filter is ignored.
    assert await listed(f"$filter=lastModifiedDateTime%20gt%20{cut}") == [new.id, old.id]
    mismatched = f"$orderby=lastModifiedDateTime%20desc&$filter=createdDateTime%20lt%20{cut}"
    assert await listed(mismatched) == [new.id, old.id]
    # createdDateTime supports only lt.
    status, _, _ = await call(sandbox, "GET",
                              f"{path}?$orderby=createdDateTime%20desc&$filter=createdDateTime%20gt%20{cut}", token)
    assert status == 400


async def test_delegated_get_all_messages_and_its_delta_are_412(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    no_throttle(sandbox)
    token = user_graph_token(sandbox, agent)
    for path in (f"/v1.0/users/{agent}/chats/getAllMessages", f"/v1.0/users/{agent}/chats/getAllMessages/delta"):
        status, body, _ = await call(sandbox, "GET", path, token)
        assert status == 412, path
        assert body["error"]["code"] == "PreconditionFailed"
        assert body["error"]["message"] == "Requested API is not supported in delegated context"


async def test_app_only_get_all_messages_delta_returns_only_new_messages(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    first = on_loop(sandbox, post_chat_message, sandbox, chat, sponsor, "one")
    token = app_token(sandbox, app_id=sandbox.role("provisioner"), roles=["Chat.Read.All"])[0]
    path = f"/v1.0/users/{agent}/chats/getAllMessages/delta"
    status, body, _ = await call(sandbox, "GET", path, token)
    assert status == 200 and [m["id"] for m in body["value"]] == [first.id]
    delta_link = body["@odata.deltaLink"]
    assert delta_link.startswith(sandbox.url + path + "?$deltatoken=")
    second = on_loop(sandbox, post_chat_message, sandbox, chat, agent, "two")
    status, body, _ = await call(sandbox, "GET", delta_link, token)
    assert status == 200 and [m["id"] for m in body["value"]] == [second.id]
    status, body, _ = await call(sandbox, "GET", f"/v1.0/me/chats/{chat.id}", token)
    assert status == 400 and "/me request is only valid with delegated" in body["error"]["message"]
    no_role = app_token(sandbox, app_id=sandbox.role("provisioner"), roles=["User.Read.All"])[0]
    assert (await call(sandbox, "GET", path, no_role))[0] == 403


@pytest.mark.parametrize("path", ["/v1.0/chats/{chat}", "/v1.0/chats/{chat}/messages"])
async def test_chat_routes_without_token_are_401(sandbox: Sandbox, path: str) -> None:
    agent, sponsor, *_ = ids(sandbox)
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    status, body, _ = await call(sandbox, "GET", path.format(chat=chat.id))
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"


async def test_expand_members_returns_at_most_25_members(sandbox: Sandbox) -> None:
    from agentseat.sandbox.tenant import User, new_id

    agent = sandbox.role("agent_user")

    def seed() -> str:
        extra = []
        for i in range(30):
            user = User(id=new_id(), upn=f"u{i}@contoso.test", display_name=f"User {i}", mail=f"u{i}@contoso.test")
            sandbox.tenant.users[user.id] = user
            extra.append(user.id)
        return create_group_chat(sandbox, [agent, *extra], "crowd").id

    chat_id = on_loop(sandbox, seed)
    status, body, _ = await call(sandbox, "GET", "/v1.0/me/chats?$expand=members", user_graph_token(sandbox, agent))
    assert status == 200 and body["value"][0]["id"] == chat_id
    assert len(body["value"][0]["members"]) == 25


async def test_users_chats_path_serves_the_caller_and_refuses_others(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    no_throttle(sandbox)
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    token = user_graph_token(sandbox, agent)
    status, body, _ = await call(sandbox, "GET", "/v1.0/users/agent@contoso.test/chats", token)
    assert status == 200 and [c["id"] for c in body["value"]] == [chat.id]
    status, _, _ = await call(sandbox, "GET", f"/v1.0/users/{sponsor}/chats", token)
    assert status == 403
