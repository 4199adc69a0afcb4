"""File references and quoted replies on chat messages (chatmessage-post "Send a message with file attachment")."""

from __future__ import annotations

import json
from typing import Any

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra.tokens import user_graph_token
from tests.sandbox._graph import call
from tests.sandbox.test_drive import upload_as
from tests.sandbox.test_graph_chats import no_throttle
from tests.sandbox.test_mentions import group_chat


def guid_of(item: dict[str, Any]) -> str:
    """chatmessage-post: the attachment id is the GUID in the driveItem's eTag."""
    return item["eTag"].strip('"').split(",")[0].strip("{}").lower()


def file_message(attachment_id: str, url: str, name: str = "plan.txt") -> dict[str, Any]:
    return {"body": {"contentType": "html", "content": f'Here it is <attachment id="{attachment_id}"></attachment>'},
            "attachments": [{"id": attachment_id, "contentType": "reference", "contentUrl": url, "name": name}]}


async def test_a_file_reference_is_stored_as_graph_returns_it(sandbox: Sandbox) -> None:
    chat_id = await group_chat(sandbox, "agent@contoso.test", "ada@contoso.test", "grace@contoso.test")
    item = await upload_as(sandbox, "agent_user", "plan.txt", b"the plan")
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, sent, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat_id}/messages", agent,
                                 body=file_message(guid_of(item), item["webUrl"]))
    assert status == 201, sent
    assert sent["attachments"] == [{"id": guid_of(item), "contentType": "reference", "contentUrl": item["webUrl"],
                                    "content": None, "name": "plan.txt", "thumbnailUrl": None, "teamsAppId": None}]
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages")
    assert view["messages"][0]["attachments"] == [{"id": guid_of(item), "type": "file", "content_type": "reference",
                                                   "name": "plan.txt", "size": 8, "url": item["webUrl"]}]


async def test_file_references_that_do_not_resolve_are_refused(sandbox: Sandbox) -> None:
    no_throttle(sandbox)
    chat_id = await group_chat(sandbox, "agent@contoso.test", "ada@contoso.test", "grace@contoso.test")
    mine = await upload_as(sandbox, "agent_user", "plan.txt", b"the plan")
    theirs = await upload_as(sandbox, "colleague2", "secret.txt", b"alan's")  # alan's, not shared
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    path = f"/v1.0/chats/{chat_id}/messages"
    cases = [
        (file_message(guid_of(mine), f"{sandbox.url}/personal/agent_contoso_test/Documents/none.txt"), 400,
         "does not name a file"),
        (file_message("0b8d1f6e-0000-4000-8000-000000000000", mine["webUrl"]), 400, "eTag"),
        (file_message(guid_of(theirs), theirs["webUrl"]), 403, "cannot access"),
        ({**file_message(guid_of(mine), mine["webUrl"]), "attachments": [
            {"id": guid_of(mine), "contentType": "reference"}]}, 400, "contentUrl"),
    ]
    for body, wanted, words in cases:
        status, answer, _ = await call(sandbox, "POST", path, agent, body=body)
        assert status == wanted and words in answer["error"]["message"], answer
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages")
    assert view["messages"] == []


async def test_a_quoted_reply_names_the_message_it_quotes(sandbox: Sandbox) -> None:
    no_throttle(sandbox)
    chat_id = await group_chat(sandbox, "agent@contoso.test", "ada@contoso.test", "grace@contoso.test")
    other = await group_chat(sandbox, "agent@contoso.test", "ada@contoso.test")
    status, first, _ = await call(sandbox, "POST", "/_sandbox/messages",
                                  body={"from": "ada@contoso.test", "chat_id": chat_id, "text": "ship it?"})
    status, elsewhere, _ = await call(sandbox, "POST", "/_sandbox/messages",
                                      body={"from": "ada@contoso.test", "chat_id": other, "text": "other chat"})
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    mid = first["message_id"]
    reply = {"body": {"contentType": "html", "content": f'<attachment id="{mid}"></attachment><p>yes</p>'},
             "attachments": [{"id": mid, "contentType": "messageReference"}]}
    status, sent, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat_id}/messages", agent, body=reply)
    assert status == 201, sent
    quoted = json.loads(sent["attachments"][0]["content"])
    assert sent["attachments"][0]["id"] == mid and quoted["messageId"] == mid
    assert quoted["messagePreview"] == "ship it?"
    assert quoted["messageSender"]["user"]["id"] == sandbox.role("sponsor")
    wrong = {"body": {"contentType": "html", "content": f'<attachment id="{elsewhere["message_id"]}"></attachment>'},
             "attachments": [{"id": elsewhere["message_id"], "contentType": "messageReference"}]}
    status, answer, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat_id}/messages", agent, body=wrong)
    assert status == 400 and "in this chat" in answer["error"]["message"]
