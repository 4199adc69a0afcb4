"""The control API's images, files and reply_to, its view of them, and `GET /_sandbox/files`."""

from __future__ import annotations

import json
from urllib.parse import quote

from agentseat.runtime.crypto import decrypt_content
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra.tokens import user_graph_token
from agentseat.sandbox.graph.drive import store
from tests.sandbox._files import JPEG, PNG, b64, raw_call
from tests.sandbox._graph import call
from tests.sandbox.test_drive import upload_as
from tests.sandbox._webhook import Graph, Receiver, certificate, rich, wait_until
from tests.sandbox.test_mentions import group_chat


async def test_a_screenshot_and_a_file_from_a_person_reach_the_agent_as_graph_shows_them(sandbox: Sandbox) -> None:
    status, sent, _ = await call(sandbox, "POST", "/_sandbox/messages", body={
        "from": "ada@contoso.test", "to": "agent@contoso.test", "text": "see <this>",
        "images": [b64(PNG), {"name": "chart.jpg", "data": b64(JPEG)}],
        "files": [{"name": "notes.txt", "data": b64(b"line one\n")}]})
    assert status == 201, sent
    chat_id, mid = sent["chat_id"], sent["message_id"]
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, msg, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat_id}/messages/{mid}", agent)
    assert msg["body"]["contentType"] == "html" and "see &lt;this&gt;" in msg["body"]["content"]
    assert 'alt="image-1.png"' in msg["body"]["content"] and 'alt="chart.jpg"' in msg["body"]["content"]
    srcs = [p.split('"')[0] for p in msg["body"]["content"].split('src="')[1:]]
    status, data, headers = await raw_call(sandbox, "GET", srcs[1], agent)
    assert status == 200 and data == JPEG and headers["Content-Type"] == "image/jpeg"
    [ref] = msg["attachments"]
    assert ref["contentType"] == "reference" and ref["name"] == "notes.txt" and ref["content"] is None
    assert f'<attachment id="{ref["id"]}"></attachment>' in msg["body"]["content"]
    assert ref["contentUrl"].endswith("/personal/ada_contoso_test/Documents/Microsoft%20Teams%20Chat%20Files/notes.txt")
    # Shared with the chat's members: the agent resolves it with shares-get and downloads it.
    status, item, _ = await call(sandbox, "GET", f"/v1.0/shares/{store.share_id(ref['contentUrl'])}/driveItem", agent)
    assert status == 200 and item["eTag"].startswith(f'"{{{ref["id"].upper()}}}') and item["size"] == 9
    status, _, headers = await raw_call(sandbox, "GET", f"/v1.0/drives/{item['parentReference']['driveId']}/items/"
                                        f"{item['id']}/content", agent)
    status, data, _ = await raw_call(sandbox, "GET", headers["Location"])
    assert data == b"line one\n"
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages")
    shown = view["messages"][0]
    assert [(h["content_type"], h["size"]) for h in shown["hosted_images"]] == [("image/png", len(PNG)),
                                                                               ("image/jpeg", len(JPEG))]
    assert shown["attachments"] == [{"id": ref["id"], "type": "file", "content_type": "reference",
                                     "name": "notes.txt", "size": 9, "url": ref["contentUrl"]}]


async def test_reply_to_quotes_the_message_and_view_shows_it(sandbox: Sandbox) -> None:
    chat_id = await group_chat(sandbox, "agent@contoso.test", "ada@contoso.test", "grace@contoso.test")
    status, first, _ = await call(sandbox, "POST", "/_sandbox/messages",
                                  body={"from": "agent@contoso.test", "chat_id": chat_id, "text": "draft ready"})
    status, reply, _ = await call(sandbox, "POST", "/_sandbox/messages", body={
        "from": "grace@contoso.test", "chat_id": chat_id, "text": "looks good", "reply_to": first["message_id"]})
    assert status == 201, reply
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, msg, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat_id}/messages/{reply['message_id']}", agent)
    assert msg["body"]["content"].startswith(f'<attachment id="{first["message_id"]}"></attachment>')
    [quote_] = msg["attachments"]
    assert quote_["contentType"] == "messageReference" and quote_["id"] == first["message_id"]
    assert json.loads(quote_["content"])["messagePreview"] == "draft ready"
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages")
    assert view["messages"][1]["attachments"] == [{
        "id": first["message_id"], "type": "reply", "content_type": "messageReference", "name": None, "size": None,
        "reply_to": first["message_id"], "preview": "draft ready"}]


async def test_bad_images_files_and_reply_to_are_refused_with_a_reason(sandbox: Sandbox) -> None:
    base = {"from": "ada@contoso.test", "to": "agent@contoso.test", "text": "x"}
    cases = [({**base, "images": ["%%%"]}, 400, "base64"),
             ({**base, "images": [b64(b"GIF89a...")]}, 400, "PNG and JPEG"),
             ({**base, "images": "nope"}, 400, "list"),
             ({**base, "files": [{"data": b64(b"x")}]}, 400, "name"),
             ({**base, "files": [{"name": "a?b.txt", "data": b64(b"x")}]}, 400, "files[0]"),
             ({**base, "reply_to": "123"}, 404, "reply_to"),
             ({**base, "text": "", "images": []}, 400, "text")]
    for body, wanted, words in cases:
        status, answer, _ = await call(sandbox, "POST", "/_sandbox/messages", body=body)
        assert status == wanted and words in answer["error"], answer
    status, chats, _ = await call(sandbox, "GET", "/_sandbox/chats")
    assert all(c["messages"] == 0 for c in chats["chats"])


async def test_sandbox_files_opens_a_file_as_a_person_would(sandbox: Sandbox) -> None:
    item = await upload_as(sandbox, "agent_user", "out.csv", b"a,b\n1,2\n")
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    url = item["webUrl"]

    async def open_as(upn: str, target: str = url) -> tuple[int, bytes]:
        status, body, _ = await raw_call(sandbox, "GET", f"/_sandbox/files?url={quote(target, safe='')}&as={upn}")
        return status, body

    assert await open_as("agent@contoso.test") == (200, b"a,b\n1,2\n")
    status, body = await open_as("ada@contoso.test")
    assert status == 403 and "not shared" in json.loads(body)["error"]
    status, _, _ = await call(sandbox, "POST", f"/v1.0/me/drive/items/{item['id']}/invite", agent, body={
        "recipients": [{"objectId": sandbox.role("sponsor")}], "roles": ["read"], "requireSignIn": True,
        "sendInvitation": False})
    assert status == 200
    assert await open_as("ada@contoso.test") == (200, b"a,b\n1,2\n")
    assert (await open_as("grace@contoso.test"))[0] == 403
    assert (await open_as("ada@contoso.test", url.replace("out.csv", "gone.csv")))[0] == 404
    assert (await open_as("nobody@contoso.test"))[0] == 404


async def test_rich_notifications_carry_the_rewritten_image_and_the_file_reference(sandbox: Sandbox, graph: Graph,
                                                                                    rx: Receiver) -> None:
    status, body = await graph.subscribe("/me/chats/getAllMessages", rx.url("/rich"), changeType="created",
                                         lifecycleNotificationUrl=rx.url("/lifecycle"), **rich("cert-R"))
    assert status == 201, body
    status, sent, _ = await call(sandbox, "POST", "/_sandbox/messages", body={
        "from": "ada@contoso.test", "to": "agent@contoso.test", "text": "both",
        "images": [b64(PNG)], "files": [{"name": "n.txt", "data": b64(b"n")}]})
    await wait_until(lambda: len(rx.items("/rich")) == 1)
    payload = json.loads(decrypt_content(rx.items("/rich")[0]["encryptedContent"], certificate()[0]))
    base = f"{sandbox.graph_url}/chats/{sent['chat_id']}/messages/{sent['message_id']}/hostedContents/"
    assert f'src="{base}' in payload["body"]["content"] and "../hostedContents" not in payload["body"]["content"]
    assert [(a["contentType"], a["name"]) for a in payload["attachments"]] == [("reference", "n.txt")]
