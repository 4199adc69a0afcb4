"""Adaptive Card attachments on chat messages in the sandbox (chat-post-messages, "Send a card")."""

from __future__ import annotations

import json
from typing import Any

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra.tokens import user_graph_token
from tests.sandbox._graph import call
from tests.sandbox.test_graph_chats import no_throttle
from tests.sandbox.test_mentions import group_chat

CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Deploy done"}]}


def card_message(attachment_id: str, marker: str | None = None, content: Any = None) -> dict[str, Any]:
    return {"body": {"contentType": "html", "content": f'<attachment id="{marker or attachment_id}"></attachment>'},
            "attachments": [{"id": attachment_id, "contentType": "application/vnd.microsoft.card.adaptive",
                             "content": json.dumps(CARD) if content is None else content}]}


async def test_a_card_is_stored_returned_and_shown(sandbox: Sandbox) -> None:
    chat_id = await group_chat(sandbox, "agent@contoso.test", "grace@contoso.test", "alan@contoso.test")
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, body, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat_id}/messages", token, body=card_message("a1"))
    assert status == 201, body
    assert body["attachments"][0]["id"] == "a1" and json.loads(body["attachments"][0]["content"]) == CARD
    status, got, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat_id}/messages/{body['id']}", token)
    assert got["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages")
    assert view["messages"][0]["attachments"] == [
        {"id": "a1", "content_type": "application/vnd.microsoft.card.adaptive", "card": CARD}]


async def test_malformed_card_attachments_are_refused(sandbox: Sandbox) -> None:
    no_throttle(sandbox)  # many sends in a row; Graph's per-chat send limit is not what is tested here
    chat_id = await group_chat(sandbox, "agent@contoso.test", "grace@contoso.test", "alan@contoso.test")
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    path = f"/v1.0/chats/{chat_id}/messages"
    for bad, words in ((card_message("a1", marker="other"), "not referenced"),
                       (card_message("a1", content="{not json"), "JSON"),
                       (card_message("a1", content=json.dumps({"type": "Nope"})), "AdaptiveCard"),
                       ({**card_message("a1"), "attachments": {"id": "a1"}}, "array")):
        status, body, _ = await call(sandbox, "POST", path, token, body=bad)
        assert status == 400 and body["error"]["code"] == "BadRequest" and words in body["error"]["message"], body
    marker_only = {"body": {"contentType": "html", "content": '<attachment id="x"></attachment>'}}
    status, body, _ = await call(sandbox, "POST", path, token, body=marker_only)
    assert status == 400 and "'x'" in body["error"]["message"]
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages")
    assert view["messages"] == []
