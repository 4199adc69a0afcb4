"""@mentions and group chats end to end: `agentseat serve` on the sandbox, driven by mcp's real stdio client.

Out: `send_teams_message` and `reply_in_chat` turn `mentions` into Teams mentions and refuse
people outside the chat. In: under AGENTSEAT_GROUP_POLICY=mention (the default) a group-chat
message is pushed only when it @mentions the agent or comes from a sponsor; with `all`, every one
is; either way every message is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentseat.sandbox.app import Sandbox
from tests.tools._mcp import Served, chat_messages, serve

GRACE, ALAN, ADA, AGENT = "grace@contoso.test", "alan@contoso.test", "ada@contoso.test", "agent@contoso.test"


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


async def control(sandbox: Sandbox, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sandbox.url}{path}", json=body, ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 201, await resp.text()
            return await resp.json()  # type: ignore[no-any-return]


async def group_chat(sandbox: Sandbox, *members: str) -> str:
    return str((await control(sandbox, "/_sandbox/chats", {"members": [AGENT, *members], "topic": "Team"}))["chat_id"])


async def say(sandbox: Sandbox, sender: str, chat_id: str, text: str, mentions: list[str] | None = None) -> str:
    body: dict[str, Any] = {"from": sender, "chat_id": chat_id, "text": text}
    if mentions is not None:
        body["mentions"] = mentions
    return str((await control(sandbox, "/_sandbox/messages", body))["message_id"])


async def settled(served: Served) -> None:
    """The channel has moved past the newest stored event: any push of it has been sent."""
    await served.channel_caught_up((await served.call_json("status"))["last_event"]["seq"])


def pushed_ids(served: Served) -> list[str]:
    return [p.meta["message_id"] for p in served.pushes if p.meta]


async def stored_ids(served: Served) -> list[str]:
    events = (await served.call_json("read_events", since=0, limit=100))["events"]
    return [e["message_id"] for e in events]


# --- out: mentions in what the agent sends ----------------------------------------------------------------
async def test_send_and_reply_mention_chat_members(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    chat_id = await group_chat(sandbox, GRACE, ALAN)
    async with serve(env, tmp_path) as served:
        sent = await served.call_json("send_teams_message", chat_id=chat_id, mentions=[GRACE],
                                      text=f"@{GRACE} the build is green")
        alan_id = sandbox.role("colleague2")
        replied = await served.call_json("reply_in_chat", chat_id=chat_id, mentions=[alan_id, GRACE],
                                         text="thanks, **both**", format="markdown")
    messages = {m["id"]: m for m in await chat_messages(sandbox, chat_id)}
    first = messages[sent["message_id"]]
    assert first["content_type"] == "html"
    assert first["content"] == '<at id="0">Grace Hopper</at> the build is green'
    assert first["mentions"] == [{"id": 0, "text": "Grace Hopper", "user_id": sandbox.role("colleague1"),
                                  "upn": GRACE}]
    second = messages[replied["message_id"]]
    assert second["content"].startswith('<at id="0">Alan Turing</at> <at id="1">Grace Hopper</at> thanks, ')
    assert "<strong>both</strong>" in second["content"]
    assert [m["upn"] for m in second["mentions"]] == [ALAN, GRACE]


async def test_a_mention_of_someone_outside_the_chat_is_refused(sandbox: Sandbox, env: dict[str, str],
                                                               tmp_path: Path) -> None:
    chat_id = await group_chat(sandbox, GRACE, ALAN)
    async with serve(env, tmp_path) as served:
        refused = await served.call("send_teams_message", chat_id=chat_id, mentions=[ADA], text="hi")
        assert refused.is_error
        text = refused.content[0].text  # type: ignore[union-attr]
        assert ADA in text and "not a member of this chat" in text
        unknown = await served.call("reply_in_chat", chat_id=chat_id, mentions=["nobody@contoso.test"], text="hi")
        assert unknown.is_error and "no user" in unknown.content[0].text  # type: ignore[union-attr]
    assert await chat_messages(sandbox, chat_id) == []  # nothing was sent


# --- in: the group policy ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["webhook", "poll"])
async def test_group_chat_pushes_mentions_and_sponsors_and_stores_everything(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path, mode: str) -> None:
    chat_id = await group_chat(sandbox, GRACE, ALAN, ADA)
    async with serve({**env, "AGENTSEAT_MODE": mode, "AGENTSEAT_CHAT_POLL_SECONDS": "1"}, tmp_path) as served:
        chatter = await say(sandbox, GRACE, chat_id, "lunch, Alan?")
        other = await say(sandbox, ALAN, chat_id, "sure, Grace", mentions=[GRACE])  # a mention, not of the agent
        asked = await say(sandbox, GRACE, chat_id, f"@{AGENT} can you check the build?", mentions=[AGENT])
        sponsor = await say(sandbox, ADA, chat_id, "status update, everyone")  # a sponsor, no mention
        await served.wait_pushes(2)
        await settled(served)
        assert pushed_ids(served) == [asked, sponsor]
        channel = (await served.call_json("status"))["channel"]
        assert channel["group_policy"] == "mention" and channel["not_pushed_group"] == 2
        mention_push = served.pushes[0]
        assert mention_push.meta is not None
        assert mention_push.meta["chat_type"] == "group" and mention_push.meta["mentioned"] == "true"
        assert served.pushes[1].meta is not None and served.pushes[1].meta["mentioned"] == "false"
        assert "can you check the build?" in mention_push.content
        assert await stored_ids(served) == [chatter, other, asked, sponsor]
        events = (await served.call_json("read_events", since=0, limit=100))["events"]
        assert [e["mentioned"] for e in events] == [False, False, True, False]


async def test_group_policy_all_pushes_every_group_message(sandbox: Sandbox, env: dict[str, str],
                                                           tmp_path: Path) -> None:
    chat_id = await group_chat(sandbox, GRACE, ALAN)
    async with serve({**env, "AGENTSEAT_GROUP_POLICY": "all"}, tmp_path) as served:
        chatter = await say(sandbox, GRACE, chat_id, "lunch, Alan?")
        reply = await say(sandbox, ALAN, chat_id, "sure")
        await served.wait_pushes(2)
        assert pushed_ids(served) == [chatter, reply]


async def test_direct_messages_push_without_a_mention(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    async with serve(env, tmp_path) as served:
        posted = await control(sandbox, "/_sandbox/messages", {"from": GRACE, "to": AGENT, "text": "hi there"})
        [push] = await served.wait_pushes(1)
        assert push.meta is not None and push.meta["message_id"] == posted["message_id"]
        assert "chat_type" not in push.meta  # the group keys are for group chats only
