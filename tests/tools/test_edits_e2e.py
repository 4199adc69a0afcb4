"""Edits and deletions reaching the agent over a real MCP client: pushed once each, saying what changed.

The sponsor edits and deletes a DM through the sandbox's control API (the sandbox then sends Graph's
`updated` / `deleted` notifications, or the poller finds the change); the agent's own edit is no event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentseat.sandbox.app import Sandbox
from tests.tools._mcp import Served, post_dm, serve


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


def _upn(sandbox: Sandbox, role: str) -> str:
    return sandbox.tenant.users[sandbox.role(role)].upn


async def _control(sandbox: Sandbox, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sandbox.url}{path}", json=body, ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()  # type: ignore[no-any-return]


async def _settled(served: Served) -> None:
    last = (await served.call_json("status"))["last_event"]["seq"]
    await served.channel_caught_up(last)


async def _edit_then_delete(sandbox: Sandbox, served: Served) -> tuple[str, str]:
    """A sponsor DM, edited, then deleted; returns (chat id, message id) once all three are pushed."""
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    posted = await post_dm(sandbox, sponsor, agent, "deploy at 5")
    await served.wait_pushes(1)
    chat_id, message_id = posted["chat_id"], posted["message_id"]
    await _control(sandbox, f"/_sandbox/messages/{chat_id}/{message_id}/edit", {"text": "deploy at 6, not 5"})
    await served.wait_pushes(2)
    await _control(sandbox, f"/_sandbox/messages/{chat_id}/{message_id}/delete", {"from": sponsor})
    await served.wait_pushes(3)
    await _settled(served)
    return chat_id, message_id


def _check_pushes(served: Served, chat_id: str, message_id: str) -> None:
    assert len(served.pushes) == 3  # each exactly once
    _, edit, delete = served.pushes
    assert edit.meta is not None and delete.meta is not None
    assert (edit.meta["kind"], edit.meta["chat_id"], edit.meta["message_id"]) == ("teams_edit", chat_id, message_id)
    head, body = edit.content.split("\n", 1)
    assert "edited by" in head and "(your sponsor)" in head
    assert body == "edited: deploy at 6, not 5"
    assert (delete.meta["kind"], delete.meta["message_id"]) == ("teams_delete", message_id)
    assert "deleted by" in delete.content.splitlines()[0]
    assert delete.content.splitlines()[1] == f"deleted message {message_id}"
    assert "deploy" not in delete.content


async def test_a_sponsors_edit_and_delete_are_pushed_once_each(sandbox: Sandbox, env: dict[str, str],
                                                               tmp_path: Path) -> None:
    async with serve(env, tmp_path) as served:
        chat_id, message_id = await _edit_then_delete(sandbox, served)
        _check_pushes(served, chat_id, message_id)
        listed = await served.call_json("read_events", since=0)
        assert [(e["kind"], e["message_id"]) for e in listed["events"]] == [
            ("teams", message_id), ("teams_edit", message_id), ("teams_delete", message_id)]
        assert "deploy at 6, not 5" in listed["events"][1]["text"]


async def test_poll_mode_pushes_edits_and_deletes_once_each(sandbox: Sandbox, env: dict[str, str],
                                                            tmp_path: Path) -> None:
    polling = {**env, "AGENTSEAT_MODE": "poll", "AGENTSEAT_CHAT_POLL_SECONDS": "1"}
    async with serve(polling, tmp_path) as served:
        chat_id, message_id = await _edit_then_delete(sandbox, served)
        _check_pushes(served, chat_id, message_id)


async def test_the_agents_own_edit_is_not_pushed(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        posted = await post_dm(sandbox, sponsor, agent, "status?")
        await served.wait_pushes(1)
        sent = await served.call_json("reply_in_chat", chat_id=posted["chat_id"], text="working…")
        await _control(sandbox, f"/_sandbox/messages/{posted['chat_id']}/{sent['message_id']}/edit",
                       {"text": "all green", "from": agent})
        # The sponsor's edit after it is the sync point: the agent's edit was handled before it.
        await _control(sandbox, f"/_sandbox/messages/{posted['chat_id']}/{posted['message_id']}/edit",
                       {"text": "status, please?"})
        await served.wait_pushes(2)
        await _settled(served)
        assert [(p.meta or {}).get("message_id") for p in served.pushes] == [posted["message_id"]] * 2
        assert served.pushes[1].content.endswith("edited: status, please?")
