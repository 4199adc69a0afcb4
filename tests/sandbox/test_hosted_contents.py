"""Inline images on chat messages (chatmessage-post "Send inline images", hostedContents get/list/$value)."""

from __future__ import annotations

import json
from typing import Any

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.blobs import read_blob
from agentseat.sandbox.entra.tokens import user_graph_token
from agentseat.sandbox.tenant import load_tenant
from tests.sandbox._files import JPEG, PNG, b64, raw_call
from tests.sandbox._graph import call
from tests.sandbox.test_graph_chats import no_throttle
from tests.sandbox.test_mentions import group_chat


def image_message(*contents: tuple[str, str, str], body: str | None = None) -> dict[str, Any]:
    """`contents` as (temporaryId, contentType, base64); the body refers to each unless given."""
    html = body if body is not None else "".join(f'<img src="../hostedContents/{t}/$value">' for t, _, _ in contents)
    return {"body": {"contentType": "html", "content": f"<p>look</p>{html}"},
            "hostedContents": [{"@microsoft.graph.temporaryId": t, "contentType": ct, "contentBytes": data}
                               for t, ct, data in contents]}


async def test_an_inline_image_round_trips_with_its_bytes_and_type(sandbox: Sandbox) -> None:
    chat_id = await group_chat(sandbox, "agent@contoso.test", "ada@contoso.test", "grace@contoso.test")
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, sent, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat_id}/messages", agent,
                                 body=image_message(("1", "image/png", b64(PNG)), ("b", "image/jpeg", b64(JPEG))))
    assert status == 201, sent
    assert sent["attachments"] == [] and "../hostedContents" not in sent["body"]["content"]
    base = f"{sandbox.graph_url}/chats/{chat_id}/messages/{sent['id']}/hostedContents/"
    srcs = [part.split('"')[0] for part in sent["body"]["content"].split('src="')[1:]]
    assert len(srcs) == 2 and all(s.startswith(base) and s.endswith("/$value") for s in srcs)

    ada = user_graph_token(sandbox, sandbox.role("sponsor"))
    path = f"/v1.0/chats/{chat_id}/messages/{sent['id']}/hostedContents"
    status, listing, _ = await call(sandbox, "GET", path, ada)
    assert status == 200 and len(listing["value"]) == 2
    assert all(v["contentType"] is None and v["contentBytes"] is None for v in listing["value"])
    first = listing["value"][0]["id"]
    assert srcs[0] == base + first + "/$value"
    status, one, _ = await call(sandbox, "GET", f"{path}/{first}", ada)
    assert status == 200 and one["id"] == first and one["contentType"] == "image/png"
    status, data, headers = await raw_call(sandbox, "GET", srcs[0], ada)
    assert status == 200 and data == PNG and headers["Content-Type"] == "image/png"
    status, data, headers = await raw_call(sandbox, "GET", srcs[1], ada)
    assert status == 200 and data == JPEG and headers["Content-Type"] == "image/jpeg"
    # The message as others read it carries the same rewritten body.
    status, got, _ = await call(sandbox, "GET", f"/v1.0/chats/{chat_id}/messages/{sent['id']}", ada)
    assert got["body"]["content"] == sent["body"]["content"]


async def test_hosted_content_is_hidden_from_non_members_and_unknown_ids_are_404(sandbox: Sandbox) -> None:
    chat_id = await group_chat(sandbox, "agent@contoso.test", "ada@contoso.test", "grace@contoso.test")
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, sent, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat_id}/messages", agent,
                                 body=image_message(("1", "image/png", b64(PNG))))
    path = f"/v1.0/chats/{chat_id}/messages/{sent['id']}/hostedContents"
    alan = user_graph_token(sandbox, sandbox.role("colleague2"))
    status, body, _ = await call(sandbox, "GET", path, alan)
    assert status == 403 and body["error"]["code"] == "Forbidden"
    status, body, _ = await call(sandbox, "GET", f"{path}/nope/$value", agent)
    assert status == 404 and body["error"]["code"] == "NotFound"


async def test_malformed_hosted_contents_are_refused_and_nothing_is_stored(sandbox: Sandbox) -> None:
    no_throttle(sandbox)
    chat_id = await group_chat(sandbox, "agent@contoso.test", "ada@contoso.test", "grace@contoso.test")
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    too_big = b64(PNG + b"\0" * (4 * 1024 * 1024))
    cases = [
        (image_message(("1", "image/png", b64(PNG)), body="no image here"), 400, "not referenced"),
        (image_message(("1", "image/png", b64(PNG)), body='<img src="../hostedContents/2/$value">'), 400,
         "not referenced"),
        ({**image_message(), "body": {"contentType": "html", "content": '<img src="../hostedContents/9/$value">'}},
         400, "'9'"),
        (image_message(("1", "image/png", "not base64!")), 400, "base64"),
        (image_message(("1", "application/pdf", b64(b"%PDF-1.7"))), 400, "contentType"),
        (image_message(("1", "image/png", b64(PNG)), ("1", "image/png", b64(PNG))), 400, "more than once"),
        ({**image_message(("1", "image/png", b64(PNG))), "hostedContents": {"x": 1}}, 400, "collection"),
        (image_message(("1", "image/png", too_big)), 413, "4 MB"),
    ]
    for body, status_wanted, words in cases:
        status, answer, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat_id}/messages", agent, body=body)
        assert status == status_wanted and words in answer["error"]["message"], (words, answer)
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/chats/{chat_id}/messages")
    assert view["messages"] == []


async def test_hosted_images_survive_a_restart_of_the_tenant(sandbox: Sandbox) -> None:
    chat_id = await group_chat(sandbox, "agent@contoso.test", "ada@contoso.test", "grace@contoso.test")
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    status, sent, _ = await call(sandbox, "POST", f"/v1.0/chats/{chat_id}/messages", agent,
                                 body=image_message(("1", "image/png", b64(PNG))))
    sandbox.portal.call(sandbox.flush)  # type: ignore[attr-defined]
    raw = json.loads((sandbox.state_dir / "tenant.json").read_text())
    assert "contentBytes" not in json.dumps(raw) and b64(PNG) not in json.dumps(raw)  # bytes live outside
    loaded = load_tenant(sandbox.state_dir)
    assert loaded is not None
    stored = next(m for m in loaded.messages[chat_id] if m.id == sent["id"]).hosted_contents[0]
    assert stored["contentType"] == "image/png" and read_blob(sandbox.state_dir, stored["blob"]) == PNG
