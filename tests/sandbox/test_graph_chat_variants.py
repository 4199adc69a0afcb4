"""The sandbox's chat variants (issue 11, variant 3): `$orderby` on chat lists rejected, `$filter` on
a chat's messages ignored. Real HTTPS, the switchboard set through `POST /_sandbox/behaviour`."""

from __future__ import annotations

from typing import Any

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.clock import iso
from agentseat.sandbox.entra.tokens import user_graph_token
from agentseat.sandbox.graph.chats import ensure_one_on_one, post_chat_message
from tests.sandbox._graph import call, on_loop
from tests.sandbox.test_graph_chats import ids, no_throttle

ORDER = "$orderby=lastMessagePreview/createdDateTime%20desc"


async def test_rejected_orderby_is_400_on_both_chat_lists_and_listing_without_it_works(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    no_throttle(sandbox)
    on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    token = user_graph_token(sandbox, agent)
    assert (await call(sandbox, "GET", f"/v1.0/me/chats?{ORDER}", token))[0] == 200  # documented default
    status, _, _ = await call(sandbox, "POST", "/_sandbox/behaviour", body={"chats_orderby": "rejected"})
    assert status == 200
    for path in ("/v1.0/me/chats", f"/v1.0/users/{agent}/chats"):
        status, body, _ = await call(sandbox, "GET", f"{path}?{ORDER}&$expand=lastMessagePreview", token)
        assert status == 400, path
        assert body["error"]["code"] == "BadRequest" and "OrderBy" in body["error"]["message"]
        assert "request-id" in body["error"]["innerError"]
        status, body, _ = await call(sandbox, "GET", f"{path}?$expand=lastMessagePreview", token)
        assert status == 200 and len(body["value"]) == 1


async def test_ignored_filter_is_accepted_and_returns_every_message(sandbox: Sandbox) -> None:
    agent, sponsor, *_ = ids(sandbox)
    no_throttle(sandbox)

    def seed() -> Any:
        chat, _ = ensure_one_on_one(sandbox, agent, sponsor)
        old = post_chat_message(sandbox, chat, sponsor, "old")
        sandbox.clock.advance(60)
        new = post_chat_message(sandbox, chat, sponsor, "new")
        return chat, old, new

    chat, old, new = on_loop(sandbox, seed)
    query = (f"/v1.0/chats/{chat.id}/messages?$orderby=lastModifiedDateTime%20desc"
             f"&$filter=lastModifiedDateTime%20gt%20{iso(old.created + 30)}")
    token = user_graph_token(sandbox, agent)
    status, body, _ = await call(sandbox, "GET", query, token)
    assert status == 200 and [m["id"] for m in body["value"]] == [new.id]  # documented default: applied
    await call(sandbox, "POST", "/_sandbox/behaviour", body={"messages_filter": "ignored"})
    status, body, _ = await call(sandbox, "GET", query, token)
    assert status == 200 and [m["id"] for m in body["value"]] == [new.id, old.id]
