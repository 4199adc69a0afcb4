"""Inline images and file references on channel posts and replies (the chat rules, channel routes)."""

from __future__ import annotations

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra.tokens import user_graph_token
from tests.sandbox._files import PNG, b64, raw_call
from tests.sandbox._graph import call
from tests.sandbox._teams import control_post, make_team
from tests.sandbox.test_drive import upload_as
from tests.sandbox.test_hosted_contents import image_message
from tests.sandbox.test_reference_attachments import file_message, guid_of


async def test_a_channel_reply_carries_an_image_and_a_file_like_a_chat_message(sandbox: Sandbox) -> None:
    team_id, channel_id = await make_team(sandbox, "agent@contoso.test", "ada@contoso.test", "grace@contoso.test")
    root = await control_post(sandbox, team_id, channel_id, "ada@contoso.test", "status?")
    agent = user_graph_token(sandbox, sandbox.role("agent_user"))
    base = f"/v1.0/teams/{team_id}/channels/{channel_id}/messages/{root}"
    status, sent, _ = await call(sandbox, "POST", f"{base}/replies", agent,
                                 body=image_message(("1", "image/png", b64(PNG))))
    assert status == 201, sent
    src = sent["body"]["content"].split('src="')[1].split('"')[0]
    assert src.startswith(f"{sandbox.graph_url}{base[len('/v1.0'):]}/replies/{sent['id']}/hostedContents/")
    ada = user_graph_token(sandbox, sandbox.role("sponsor"))
    status, data, headers = await raw_call(sandbox, "GET", src, ada)
    assert status == 200 and data == PNG and headers["Content-Type"] == "image/png"
    status, listing, _ = await call(sandbox, "GET", f"{base}/replies/{sent['id']}/hostedContents", ada)
    assert status == 200 and [v["contentBytes"] for v in listing["value"]] == [None]
    alan = user_graph_token(sandbox, sandbox.role("colleague2"))
    status, _, _ = await raw_call(sandbox, "GET", src, alan)
    assert status == 403  # not a member of the team

    item = await upload_as(sandbox, "agent_user", "status.txt", b"green")
    status, post, _ = await call(sandbox, "POST", f"/v1.0/teams/{team_id}/channels/{channel_id}/messages", agent,
                                 body=file_message(guid_of(item), item["webUrl"], "status.txt"))
    assert status == 201 and post["attachments"][0]["contentType"] == "reference", post
    status, view, _ = await call(sandbox, "GET", f"/_sandbox/teams/{team_id}/channels/{channel_id}/messages")
    shown = {m["id"]: m for m in view["messages"]}
    assert shown[post["id"]]["attachments"][0]["type"] == "file"
