"""@mentions in the sandbox: Graph's `mentions` on send (chat-post-messages), the control API's
`mentions` shortcut, and `POST /_sandbox/chats` for group chats."""

from __future__ import annotations

from typing import Any

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra.tokens import user_graph_token
from tests.sandbox._graph import call
from tests.sandbox.test_graph_chats import no_throttle


def mention(n: int, text: str, user_id: str) -> dict[str, Any]:
    return {"id": n, "mentionText": text,
            "mentioned": {"user": {"id": user_id, "displayName": text, "userIdentityType": "aadUser"}}}


async def group_chat(sb: Sandbox, *members: str, topic: str | None = None) -> str:
    status, body, _ = await call(sb, "POST", "/_sandbox/chats", body={"members": list(members), "topic": topic})
    assert status == 201, body
    return str(body["chat_id"])


async def test_control_creates_a_group_chat_that_graph_shows_as_group(sandbox: Sandbox) -> None:
    chat_id = await group_chat(sandbox, "ada@contoso.test", "grace@contoso.test", "agent@contoso.test",
                               topic="Launch")
    assert chat_id.endswith("@thread.v2")
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, body, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat_id}", token)
    assert status == 200 and body["chatType"] == "group" and body["topic"] == "Launch"
    status, body, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat_id}/members", token)
    assert {m["email"] for m in body["value"]} == {"ada@contoso.test", "grace@contoso.test", "agent@contoso.test"}


async def test_control_chat_creation_refuses_unknown_members_and_a_lone_member(sandbox: Sandbox) -> None:
    status, body, _ = await call(sandbox, "POST", "/_sandbox/chats", body={"members": ["ada@contoso.test", "nobody@x"]})
    assert status == 404 and "nobody@x" in body["error"]
    status, body, _ = await call(sandbox, "POST", "/_sandbox/chats", body={"members": ["ada@contoso.test"] * 2})
    assert status == 400
    status, body, _ = await call(sandbox, "POST", "/_sandbox/chats", body={"members": "ada@contoso.test"})
    assert status == 400


async def test_graph_send_with_a_mention_stores_and_returns_it(sandbox: Sandbox) -> None:
    agent, grace = sandbox.role("agent_user"), sandbox.role("colleague1")
    chat_id = await group_chat(sandbox, "agent@contoso.test", "grace@contoso.test", "alan@contoso.test")
    token = user_graph_token(sandbox, agent)
    sent = {"body": {"contentType": "html", "content": '<at id="0">Grace Hopper</at> please look'},
            "mentions": [mention(0, "Grace Hopper", grace)]}
    status, body, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat_id}/messages", token, body=sent)
    assert status == 201, body
    assert body["mentions"][0]["id"] == 0 and body["mentions"][0]["mentioned"]["user"]["id"] == grace
    status, got, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat_id}/messages/{body['id']}", token)
    assert got["mentions"][0]["mentionText"] == "Grace Hopper"
    assert got["mentions"][0]["mentioned"]["user"]["userIdentityType"] == "aadUser"
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages")
    assert view["messages"][0]["mentions"] == [{"id": 0, "text": "Grace Hopper", "user_id": grace,
                                                "upn": "grace@contoso.test"}]


async def test_graph_refuses_a_mention_whose_marker_is_not_in_the_body(sandbox: Sandbox) -> None:
    no_throttle(sandbox)  # many sends in a row; Graph's per-chat send limit is not what is tested here
    agent, grace = sandbox.role("agent_user"), sandbox.role("colleague1")
    chat_id = await group_chat(sandbox, "agent@contoso.test", "grace@contoso.test", "alan@contoso.test")
    token = user_graph_token(sandbox, agent)
    path = f"/v1.0/chats/{chat_id}/messages"
    cases = [
        # the marker's text must be the mentionText (microsoft-graph-docs #8832)
        {"body": {"contentType": "html", "content": '<at id="0">Grace</at> hi'},
         "mentions": [mention(0, "Grace Hopper", grace)]},
        # no marker for id 1
        {"body": {"contentType": "html", "content": '<at id="0">Grace Hopper</at> hi'},
         "mentions": [mention(1, "Grace Hopper", grace)]},
        # a text body has no markers
        {"body": {"contentType": "text", "content": '<at id="0">Grace Hopper</at> hi'},
         "mentions": [mention(0, "Grace Hopper", grace)]},
    ]
    for sent in cases:
        status, body, _ = await call(sandbox, "POST", path, token, body=sent)
        assert status == 400 and body["error"]["code"] == "BadRequest", sent
        assert "marker for mention with Id" in body["error"]["message"]
    bad_shapes = [{"mentions": {"id": 0}}, {"mentions": [mention(0, "Grace Hopper", grace)] * 2},
                  {"mentions": [{"id": "0", "mentionText": "Grace Hopper", "mentioned": {}}]},
                  {"mentions": [{"id": 0, "mentionText": "Grace Hopper", "mentioned": {}}]}]
    for extra in bad_shapes:
        sent = {"body": {"contentType": "html", "content": '<at id="0">Grace Hopper</at> hi'}, **extra}
        status, body, _ = await call(sandbox, "POST", path, token, body=sent)
        assert status == 400 and body["error"]["code"] == "BadRequest", extra
    sent = {"body": {"contentType": "html", "content": '<at id="0">Ghost</at> hi'},
            "mentions": [mention(0, "Ghost", "00000000-0000-0000-0000-000000000000")]}
    status, body, _ = await call(sandbox, "POST", path, token, body=sent)
    assert status == 404 and body["error"]["code"] == "NotFound"
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages")
    assert view["messages"] == []


async def test_control_message_with_mentions_builds_markers_and_the_array(sandbox: Sandbox) -> None:
    agent = sandbox.role("agent_user")
    chat_id = await group_chat(sandbox, "agent@contoso.test", "grace@contoso.test", "alan@contoso.test")
    status, body, _ = await call(sandbox, "POST", "/_sandbox/messages", body={
        "from": "grace@contoso.test", "chat_id": chat_id, "text": "hey @agent@contoso.test, see this",
        "mentions": ["agent@contoso.test", "alan@contoso.test"]})
    assert status == 201, body
    token = user_graph_token(sandbox, agent)
    status, got, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat_id}/messages/{body['message_id']}", token)
    assert got["body"]["contentType"] == "html"
    content = got["body"]["content"]
    assert '<at id="0">agentseat agent</at>' in content and content.startswith('<at id="1">Alan Turing</at> hey ')
    assert [(m["id"], m["mentioned"]["user"]["id"]) for m in got["mentions"]] == [
        (0, agent), (1, sandbox.role("colleague2"))]
    status, body, _ = await call(sandbox, "POST", "/_sandbox/messages", body={
        "from": "grace@contoso.test", "chat_id": chat_id, "text": "hi", "mentions": ["nobody@contoso.test"]})
    assert status == 404


async def test_messages_without_mentions_carry_an_empty_array(sandbox: Sandbox) -> None:
    status, body, _ = await call(sandbox, "POST", "/_sandbox/messages", body={
        "from": "ada@contoso.test", "to": "agent@contoso.test", "text": "plain"})
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, got, _ = await call(sandbox, "GET", f"/v1.0/chats/{body['chat_id']}/messages/{body['message_id']}",
                                token)
    assert status == 200 and got["mentions"] == []
