"""A person edits or soft-deletes a chat message: the stored message, and the `updated` / `deleted`
notifications, each only to the subscriptions that asked for that change type."""

from __future__ import annotations

import json
from typing import Any

from agentseat.runtime.crypto import decrypt_content
from agentseat.sandbox.app import Sandbox
from tests.sandbox._webhook import Graph, Receiver, add_chat, certificate, post_message, rich, wait_until
from tests.runtime.test_runtime import control

ALL_CHATS = "/me/chats/getAllMessages"


async def _subscribe(graph: Graph, rx: Receiver, change_type: str, path: str, **extra: Any) -> None:
    status, body = await graph.subscribe(ALL_CHATS, rx.url(path), changeType=change_type,
                                         lifecycleNotificationUrl=rx.url("/lifecycle"), **extra)
    assert status == 201, body


async def _message(sandbox: Sandbox, graph: Graph, chat_id: str, message_id: str) -> dict[str, Any]:
    status, body = await graph.call("GET", f"/chats/{chat_id}/messages/{message_id}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def test_edit_and_delete_notify_only_subscribers_of_that_change(sandbox: Sandbox, graph: Graph,
                                                                      rx: Receiver) -> None:
    await _subscribe(graph, rx, "created,updated,deleted", "/all", **rich("cert-A"))
    await _subscribe(graph, rx, "created", "/created")  # another changeType set: not a duplicate (409)
    await _subscribe(graph, rx, "deleted", "/deleted")
    chat = add_chat(sandbox, [sandbox.role("agent_user"), sandbox.role("sponsor")])
    msg, _ = post_message(sandbox, chat, sandbox.role("sponsor"), "draft")
    await wait_until(lambda: len(rx.items("/all")) == 1 and len(rx.items("/created")) == 1)

    edited = await control(sandbox, "POST", f"/_sandbox/messages/{chat.id}/{msg.id}/edit", {"text": "final"})
    assert edited["edited"] is not None
    await wait_until(lambda: len(rx.items("/all")) == 2)
    update = rx.items("/all")[1]
    assert update["changeType"] == "updated"
    key, _, _ = certificate()
    payload = json.loads(decrypt_content(update["encryptedContent"], key))
    assert payload["body"]["content"] == "final" and payload["lastEditedDateTime"] is not None
    assert payload["deletedDateTime"] is None and payload["createdDateTime"] != payload["lastEditedDateTime"]

    await control(sandbox, "POST", f"/_sandbox/messages/{chat.id}/{msg.id}/delete",
                  {"from": sandbox.tenant.users[sandbox.role("sponsor")].upn})
    await wait_until(lambda: len(rx.items("/all")) == 3 and len(rx.items("/deleted")) == 1)
    deletion = rx.items("/all")[2]
    path = f"chats('{chat.id}')/messages('{msg.id}')"
    assert deletion["changeType"] == "deleted" and deletion["resource"] == path
    assert "encryptedContent" not in deletion  # a deletion names the message only
    assert deletion["resourceData"] == {"id": msg.id, "@odata.type": "#Microsoft.Graph.chatMessage",
                                        "@odata.id": path}
    stored = await _message(sandbox, graph, chat.id, msg.id)
    assert stored["deletedDateTime"] is not None and stored["lastModifiedDateTime"] == stored["deletedDateTime"]
    assert [i["changeType"] for i in rx.items("/created")] == ["created"]  # neither change went there
    assert rx.items("/deleted")[0]["changeType"] == "deleted"


async def test_only_the_author_may_delete_and_a_deleted_message_cannot_be_edited(sandbox: Sandbox) -> None:
    import aiohttp

    chat = add_chat(sandbox, [sandbox.role("agent_user"), sandbox.role("sponsor")])
    msg, _ = post_message(sandbox, chat, sandbox.role("sponsor"), "mine")
    base = f"{sandbox.url}/_sandbox/messages/{chat.id}/{msg.id}"
    agent = sandbox.tenant.users[sandbox.role("agent_user")].upn
    sponsor = sandbox.tenant.users[sandbox.role("sponsor")].upn
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/delete", json={"from": agent}, ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 403 and "sender" in (await resp.json())["error"]
        async with http.post(f"{base}/delete", json={"from": sponsor}, ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 200
        async with http.post(f"{base}/edit", json={"text": "x"}, ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 400 and "deleted" in (await resp.json())["error"]
        async with http.post(f"{sandbox.url}/_sandbox/messages/{chat.id}/1/edit", json={"text": "x"},
                             ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 404
