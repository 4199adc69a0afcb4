"""Editing, soft-deleting and reacting to chat messages in the sandbox's Graph, over real HTTPS."""

from __future__ import annotations

from typing import Any

import aiohttp

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.clock import parse_iso
from agentseat.sandbox.entra.tokens import app_token, user_graph_token
from agentseat.sandbox.graph.chats import ensure_one_on_one, post_chat_message
from agentseat.sandbox.tenant import Chat, ChatMessage
from tests.sandbox._graph import call, on_loop
from tests.sandbox._webhook import Graph, Receiver, wait_until


def _no_throttle(sb: Sandbox) -> None:
    def off() -> None:
        sb.throttle.enabled = False

    sb.portal.call(off)  # type: ignore[attr-defined]


def _dm_with_messages(sb: Sandbox) -> tuple[Chat, ChatMessage, ChatMessage]:
    """A DM between the agent and the sponsor: one message from each."""
    agent, sponsor = sb.role("agent_user"), sb.role("sponsor")
    chat, _ = on_loop(sb, ensure_one_on_one, sb, sponsor, agent)
    theirs = on_loop(sb, post_chat_message, sb, chat, sponsor, "can you check the build?")
    mine = on_loop(sb, post_chat_message, sb, chat, agent, "working…")
    return chat, mine, theirs


def _item(chat: Chat, msg: ChatMessage, prefix: str = "/v1.0/chats") -> str:
    return f"{prefix}/{chat.id}/messages/{msg.id}"


async def _get(sb: Sandbox, chat: Chat, msg: ChatMessage, user_id: str) -> dict[str, Any]:
    status, body, _ = await call(sb, "GET", _item(chat, msg), user_graph_token(sb, user_id))
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def _control(sb: Sandbox, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(f"{sb.url}/_sandbox/messages/{path}", json=body,
                                                          ssl=sb.client_ssl_context()) as resp:
        return resp.status, await resp.json()


async def _control_view(sb: Sandbox, chat: Chat) -> dict[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{sb.url}/_sandbox/chats/{chat.id}/messages",
                                                         ssl=sb.client_ssl_context()) as resp:
        assert resp.status == 200
        return {m["id"]: m for m in (await resp.json())["messages"]}


# --- PATCH ------------------------------------------------------------------------------------------------------
async def test_sender_edits_own_message_and_it_reads_back_edited(sandbox: Sandbox) -> None:
    chat, mine, _ = _dm_with_messages(sandbox)
    agent = sandbox.role("agent_user")
    before = await _get(sandbox, chat, mine, agent)
    assert before["lastEditedDateTime"] is None
    status, body, _ = await call(sandbox, "PATCH", _item(chat, mine), user_graph_token(sandbox, agent),
                                 body={"body": {"contentType": "html", "content": "<p>Build is <b>green</b></p>"}})
    assert status == 204 and body == ""  # chatmessage-update, delegated: 204 No Content
    after = await _get(sandbox, chat, mine, agent)
    assert after["body"] == {"contentType": "html", "content": "<p>Build is <b>green</b></p>"}
    assert after["lastEditedDateTime"] is not None
    assert parse_iso(after["lastModifiedDateTime"]) >= parse_iso(before["lastModifiedDateTime"])
    assert after["createdDateTime"] == before["createdDateTime"] and after["id"] == mine.id
    view = (await _control_view(sandbox, chat))[mine.id]
    assert view["text"] == "Build is green" and view["edited"] == after["lastEditedDateTime"]


async def test_editing_someone_elses_message_is_403_and_changes_nothing(sandbox: Sandbox) -> None:
    chat, _, theirs = _dm_with_messages(sandbox)
    agent = sandbox.role("agent_user")
    status, body, _ = await call(sandbox, "PATCH", _item(chat, theirs), user_graph_token(sandbox, agent),
                                 body={"body": {"contentType": "text", "content": "rewritten"}})
    assert status == 403 and body["error"]["code"] == "Forbidden" and "innerError" in body["error"]
    assert (await _get(sandbox, chat, theirs, agent))["body"]["content"] == "can you check the build?"


async def test_edit_misuse_answers_graphs_errors(sandbox: Sandbox) -> None:
    _no_throttle(sandbox)
    chat, mine, _ = _dm_with_messages(sandbox)
    agent, grace = sandbox.role("agent_user"), sandbox.role("colleague1")
    token = user_graph_token(sandbox, agent)
    missing = f"/v1.0/chats/{chat.id}/messages/1"
    status, body, _ = await call(sandbox, "PATCH", missing, token, body={"body": {"content": "x"}})
    assert status == 404 and body["error"]["code"] == "NotFound"
    status, body, _ = await call(sandbox, "PATCH", _item(chat, mine), token, body={"subject": "no body"})
    assert status == 400 and "'body' is required" in body["error"]["message"]
    status, body, _ = await call(sandbox, "PATCH", _item(chat, mine), token, body={"body": {"content": " "}})
    assert status == 400
    status, body, _ = await call(sandbox, "PATCH", _item(chat, mine), token,
                                 body={"policyViolation": {"dlpAction": "BlockAccess"}})
    assert status == 400 and "policyViolation" in body["error"]["message"]
    # Not a member of the chat: Forbidden, as for sending there.
    status, body, _ = await call(sandbox, "PATCH", _item(chat, mine), user_graph_token(sandbox, grace),
                                 body={"body": {"content": "x"}})
    assert status == 403
    # Application permissions may update policyViolation only; an app-only edit is refused.
    app, _ = app_token(sandbox, app_id=sandbox.role("provisioner"), roles=["Chat.ReadWrite.All"])
    status, _, _ = await call(sandbox, "PATCH", _item(chat, mine), app, body={"body": {"content": "x"}})
    assert status == 403
    status, body, _ = await call(sandbox, "PATCH", _item(chat, mine), token, body={"body": {"content": "x" * 29_000}})
    assert status == 413 and body["error"]["code"] == "RequestEntityTooLarge"
    assert (await _get(sandbox, chat, mine, agent))["body"]["content"] == "working…"


async def test_users_path_edits_only_as_the_caller(sandbox: Sandbox) -> None:
    _no_throttle(sandbox)
    chat, mine, _ = _dm_with_messages(sandbox)
    agent, sponsor = sandbox.role("agent_user"), sandbox.role("sponsor")
    token = user_graph_token(sandbox, agent)
    status, _, _ = await call(sandbox, "PATCH", _item(chat, mine, f"/v1.0/users/{agent}/chats"), token,
                              body={"body": {"content": "done"}})
    assert status == 204
    status, body, _ = await call(sandbox, "PATCH", _item(chat, mine, f"/v1.0/users/{sponsor}/chats"), token,
                                 body={"body": {"content": "again"}})
    assert status == 403 and body["error"]["code"] == "Forbidden"
    assert (await _get(sandbox, chat, mine, agent))["body"]["content"] == "done"


# --- softDelete / undoSoftDelete ----------------------------------------------------------------------------------
async def test_soft_delete_hides_content_and_undo_brings_it_back(sandbox: Sandbox) -> None:
    _no_throttle(sandbox)
    chat, mine, _ = _dm_with_messages(sandbox)
    agent = sandbox.role("agent_user")
    token = user_graph_token(sandbox, agent)
    status, body, _ = await call(sandbox, "POST", _item(chat, mine, f"/v1.0/users/{agent}/chats") + "/softDelete",
                                 token)
    assert status == 204, body
    deleted = await _get(sandbox, chat, mine, agent)
    assert deleted["deletedDateTime"] is not None and deleted["body"]["content"] == ""
    status, listing, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat.id}/messages", token)
    assert [m["deletedDateTime"] is not None for m in listing["value"] if m["id"] == mine.id] == [True]
    assert (await _control_view(sandbox, chat))[mine.id]["deleted"] == deleted["deletedDateTime"]
    # A deleted message can be neither edited nor reacted to.
    status, _, _ = await call(sandbox, "PATCH", _item(chat, mine), token, body={"body": {"content": "x"}})
    assert status == 400
    status, _, _ = await call(sandbox, "POST", _item(chat, mine) + "/setReaction", token, body={"reactionType": "like"})
    assert status == 400
    status, _, _ = await call(sandbox, "POST", _item(chat, mine, "/v1.0/me/chats") + "/undoSoftDelete", token)
    assert status == 204
    restored = await _get(sandbox, chat, mine, agent)
    assert restored["deletedDateTime"] is None and restored["body"]["content"] == "working…"


async def test_soft_delete_misuse(sandbox: Sandbox) -> None:
    _no_throttle(sandbox)
    chat, _, theirs = _dm_with_messages(sandbox)
    agent = sandbox.role("agent_user")
    token = user_graph_token(sandbox, agent)
    status, body, _ = await call(sandbox, "POST", _item(chat, theirs, "/v1.0/me/chats") + "/softDelete", token)
    assert status == 403 and body["error"]["code"] == "Forbidden"
    status, body, _ = await call(sandbox, "POST", f"/v1.0/me/chats/{chat.id}/messages/1/softDelete", token)
    assert status == 404 and body["error"]["code"] == "NotFound"
    assert (await _get(sandbox, chat, theirs, agent))["deletedDateTime"] is None


# --- setReaction / unsetReaction ----------------------------------------------------------------------------------
async def test_reactions_are_recorded_per_user_and_removed(sandbox: Sandbox) -> None:
    _no_throttle(sandbox)
    chat, _, theirs = _dm_with_messages(sandbox)
    agent, sponsor = sandbox.role("agent_user"), sandbox.role("sponsor")
    token = user_graph_token(sandbox, agent)
    for kind in ("like", "💘", "like"):  # the second like changes nothing
        status, body, _ = await call(sandbox, "POST", _item(chat, theirs) + "/setReaction", token,
                                     body={"reactionType": kind})
        assert status == 204, body
    status, _ = await _control(sandbox, f"{chat.id}/{theirs.id}/react", {"from": "ada@contoso.test",
                                                                          "reaction": "laugh"})
    assert status == 200
    reactions = (await _get(sandbox, chat, theirs, agent))["reactions"]
    assert [(r["reactionType"], r["user"]["user"]["id"]) for r in reactions] == [
        ("like", agent), ("💘", agent), ("laugh", sponsor)]
    assert reactions[0]["displayName"] == "Like" and reactions[0]["createdDateTime"]
    assert reactions[0]["user"]["application"] is None
    status, _, _ = await call(sandbox, "POST", _item(chat, theirs) + "/unsetReaction", token,
                              body={"reactionType": "like"})
    assert status == 204
    status, _, _ = await call(sandbox, "POST", _item(chat, theirs) + "/unsetReaction", token,
                              body={"reactionType": "laugh"})  # the sponsor's: not the caller's to remove
    assert status == 204
    view = (await _control_view(sandbox, chat))[theirs.id]
    assert [(r["reaction"], r["from"]) for r in view["reactions"]] == [
        ("💘", "agent@contoso.test"), ("laugh", "ada@contoso.test")]


async def test_invalid_reaction_type_is_400_naming_the_accepted_ones(sandbox: Sandbox) -> None:
    _no_throttle(sandbox)
    chat, _, theirs = _dm_with_messages(sandbox)
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    for bad in ({"reactionType": "thumbsup"}, {"reactionType": ""}, {}, {"reactionType": "a👍"}):
        status, body, _ = await call(sandbox, "POST", _item(chat, theirs) + "/setReaction", token, body=bad)
        assert status == 400 and body["error"]["code"] == "BadRequest", bad
    assert "like, heart, laugh, surprised, sad, angry" in body["error"]["message"]
    status, body, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat.id}/messages/1/setReaction", token,
                                 body={"reactionType": "like"})
    assert status == 404


# --- control API and notifications --------------------------------------------------------------------------------
async def test_control_api_edits_and_deletes_as_the_author_only(sandbox: Sandbox) -> None:
    chat, mine, theirs = _dm_with_messages(sandbox)
    status, body = await _control(sandbox, f"{chat.id}/{theirs.id}/edit", {"text": "can you check build 42?"})
    assert status == 200 and body["edited"] is not None
    assert (await _control_view(sandbox, chat))[theirs.id]["text"] == "can you check build 42?"
    status, body = await _control(sandbox, f"{chat.id}/{mine.id}/delete", {"from": "ada@contoso.test"})
    assert status == 403 and "only the sender" in body["error"]
    status, body = await _control(sandbox, f"{chat.id}/{theirs.id}/delete", {"from": "ada@contoso.test"})
    assert status == 200 and body["deleted"] is not None
    view = await _control_view(sandbox, chat)
    assert view[theirs.id]["deleted"] is not None and view[theirs.id]["text"] == ""
    assert view[mine.id]["deleted"] is None
    status, body = await _control(sandbox, f"{chat.id}/1/edit", {"text": "x"})
    assert status == 404
    status, body = await _control(sandbox, f"{chat.id}/{mine.id}/react", {"from": "ada@contoso.test",
                                                                          "reaction": "thumbsup"})
    assert status == 400 and "reaction" in body["error"]
    status, body = await _control(sandbox, f"{chat.id}/{mine.id}/react", {"from": "grace@contoso.test",
                                                                          "reaction": "like"})
    assert status == 400 and "not a member" in body["error"]


async def test_changes_notify_updated_and_deleted_subscribers(sandbox: Sandbox, graph: Graph, rx: Receiver) -> None:
    status, sub = await graph.subscribe("/me/chats/getAllMessages", rx.url(), changeType="updated,deleted",
                                        lifecycleNotificationUrl=rx.url("/lifecycle"))
    assert status == 201, sub
    chat, _, theirs = _dm_with_messages(sandbox)  # created: not subscribed to, not delivered
    await _control(sandbox, f"{chat.id}/{theirs.id}/edit", {"text": "edited"})
    await _control(sandbox, f"{chat.id}/{theirs.id}/react", {"from": "agent@contoso.test", "reaction": "heart"})
    await _control(sandbox, f"{chat.id}/{theirs.id}/delete", {"from": "ada@contoso.test"})
    await wait_until(lambda: len(rx.items()) == 3)
    assert [i["changeType"] for i in rx.items()] == ["updated", "updated", "deleted"]
    assert all(i["resource"] == f"chats('{chat.id}')/messages('{theirs.id}')" for i in rx.items())
