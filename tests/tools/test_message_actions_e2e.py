"""edit_message, delete_message, react and unreact end to end: `agentseat serve` on the sandbox, driven by
mcp's real stdio client; what Teams would show is read back through the sandbox's control API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentseat.sandbox.app import Sandbox
from tests.tools._mcp import Served, chat_messages, post_dm, serve


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


def _upn(sandbox: Sandbox, role: str) -> str:
    return sandbox.tenant.users[sandbox.role(role)].upn


async def _shown(sandbox: Sandbox, chat_id: str, message_id: str) -> dict[str, Any]:
    return next(m for m in await chat_messages(sandbox, chat_id) if m["id"] == message_id)


async def _error(served: Served, name: str, **arguments: Any) -> str:
    result = await served.call(name, **arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error, text
    return text  # type: ignore[no-any-return]


async def _conversation(sandbox: Sandbox, served: Served) -> tuple[str, str, str]:
    """The sponsor asks; the agent answers "working…". Returns (chat, sponsor's message, agent's message)."""
    asked = await post_dm(sandbox, _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user"), "is the build green?")
    sent = await served.call_json("reply_in_chat", chat_id=asked["chat_id"], text="working…")
    return asked["chat_id"], asked["message_id"], sent["message_id"]


async def test_working_reply_is_edited_into_the_answer(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    async with serve(env, tmp_path) as served:
        listed = {t.name: t for t in (await served.session.list_tools()).tools}
        assert {"edit_message", "delete_message", "react", "unreact"} <= set(listed)
        assert "notifies no one" in (listed["edit_message"].description or "")
        chat_id, _, placeholder = await _conversation(sandbox, served)
        assert (await _shown(sandbox, chat_id, placeholder))["edited"] is None
        done = await served.call_json("edit_message", chat_id=chat_id, message_id=placeholder,
                                      text="**Yes**: build 42 is green", format="markdown")
        assert done["edited"] is True and "new reply" in done["note"]
        shown = await _shown(sandbox, chat_id, placeholder)
        assert shown["text"] == "Yes: build 42 is green" and "<strong>Yes</strong>" in shown["content"]
        assert shown["edited"] is not None and shown["from"] == _upn(sandbox, "agent_user")
        # The agent reads its own chat back edited, in place: still one message, not two.
        read = await served.call_json("read_teams_messages", chat_id=chat_id)
        assert [m["id"] for m in read["messages"]].count(placeholder) == 1
        assert "build 42 is green" in next(m["text"] for m in read["messages"] if m["id"] == placeholder)


async def test_someone_elses_message_cannot_be_edited_or_deleted(sandbox: Sandbox, env: dict[str, str],
                                                                   tmp_path: Path) -> None:
    async with serve(env, tmp_path) as served:
        chat_id, theirs, _ = await _conversation(sandbox, served)
        text = await _error(served, "edit_message", chat_id=chat_id, message_id=theirs, text="no it is red")
        assert "refused" in text and "Ada Lovelace" in text and "only its own messages" in text
        text = await _error(served, "delete_message", chat_id=chat_id, message_id=theirs)
        assert "refused" in text and "only its own messages" in text
        shown = await _shown(sandbox, chat_id, theirs)
        assert shown["text"] == "is the build green?" and shown["edited"] is None and shown["deleted"] is None
        text = await _error(served, "edit_message", chat_id=chat_id, message_id="1", text="x")
        assert "no message '1'" in text


async def test_reaction_added_and_removed(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    agent = _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        chat_id, theirs, _ = await _conversation(sandbox, served)
        got = await served.call_json("react", chat_id=chat_id, message_id=theirs, reaction="like")
        assert got == {"reacted": True, "chat_id": chat_id, "message_id": theirs, "reaction": "like"}
        await served.call_json("react", chat_id=chat_id, message_id=theirs, reaction="🎉")
        reactions = (await _shown(sandbox, chat_id, theirs))["reactions"]
        assert [(r["reaction"], r["from"]) for r in reactions] == [("like", agent), ("🎉", agent)]
        await served.call_json("unreact", chat_id=chat_id, message_id=theirs, reaction="like")
        reactions = (await _shown(sandbox, chat_id, theirs))["reactions"]
        assert [(r["reaction"], r["from"]) for r in reactions] == [("🎉", agent)]
        text = await _error(served, "react", chat_id=chat_id, message_id=theirs, reaction="thumbsup")
        assert "not a Teams reaction" in text and "like, heart, laugh, surprised, sad, angry" in text


async def test_own_message_is_deleted(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    async with serve(env, tmp_path) as served:
        chat_id, _, mine = await _conversation(sandbox, served)
        got = await served.call_json("delete_message", chat_id=chat_id, message_id=mine)
        assert got == {"deleted": True, "chat_id": chat_id, "message_id": mine}
        shown = await _shown(sandbox, chat_id, mine)
        assert shown["deleted"] is not None and shown["text"] == ""
        # Gone for the agent too: it no longer reads it, and cannot edit it back.
        read = await served.call_json("read_teams_messages", chat_id=chat_id)
        assert mine not in [m["id"] for m in read["messages"]]
        text = await _error(served, "edit_message", chat_id=chat_id, message_id=mine, text="back")
        assert "has been deleted" in text
