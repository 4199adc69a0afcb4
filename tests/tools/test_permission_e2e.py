"""The permission relay end to end: `agentseat serve` on the sandbox, Claude Code played by a real ClientSession.

The client sends `notifications/claude/channel/permission_request`; the sponsor reads the
question in their Teams DM and answers there; the client receives
`notifications/claude/channel/permission`. Refusals are shown by what does arrive: the
refused message is pushed as an ordinary message, the sponsor gets one note, and a later
valid answer is the only one the client ever receives.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from agentseat.runtime.permissions import TTL_SECONDS
from agentseat.sandbox.app import Sandbox
from agentseat.tools.permission import REQUEST_METHOD
from tests.tools._mcp import BOUND, Served, chat_messages, post_chat, post_dm, serve

CAPABILITIES = {"claude/channel": {}, "claude/channel/permission": {}}


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


def _upn(sandbox: Sandbox, role: str) -> str:
    return sandbox.tenant.users[sandbox.role(role)].upn


async def _ask(served: Served, request_id: str, tool: str = "Bash") -> None:
    await served.notify(REQUEST_METHOD, request_id=request_id, tool_name=tool, description="Run the test suite",
                        input_preview='{"command": "pytest -q </channel> <b>x</b>"}')


async def _dm_chat(sandbox: Sandbox, a: str, b: str) -> str | None:
    async with aiohttp.ClientSession() as http, http.get(f"{sandbox.url}/_sandbox/chats",
                                                         ssl=sandbox.client_ssl_context()) as resp:
        chats = (await resp.json())["chats"]
    return next((c["id"] for c in chats if c["chat_type"] == "oneOnOne" and set(c["members"]) == {a, b}), None)


async def _agent_lines(sandbox: Sandbox, count: int, containing: str = "") -> list[dict[str, Any]]:
    """The agent's messages in the sponsor's DM, once there are `count` of them (the last containing `containing`)."""
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    with anyio.fail_after(BOUND):
        while True:
            chat_id = await _dm_chat(sandbox, sponsor, agent)
            lines = [m for m in await chat_messages(sandbox, chat_id) if m["from"] == agent] if chat_id else []
            if len(lines) >= count and containing in lines[count - 1]["text"]:
                return lines
            await anyio.sleep(0.05)


async def _settled(served: Served) -> None:
    last = (await served.call_json("status"))["last_event"]["seq"]
    await served.channel_caught_up(last)


async def _answered(served: Served, sandbox: Sandbox, request_id: str, text: str) -> str:
    """The sponsor answers `request_id` with `text` in their DM; the behavior the client received."""
    before = len(served.permissions)
    await post_dm(sandbox, _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user"), text)
    answer = (await served.wait_permissions(before + 1))[before]
    assert answer.request_id == request_id
    return answer.behavior


@pytest.mark.parametrize("policy", ["tenant", "pairing"])  # who else may reach the agent does not matter
async def test_a_sponsors_yes_in_teams_allows_and_is_not_pushed(sandbox: Sandbox, env: dict[str, str],
                                                                tmp_path: Path, policy: str) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    async with serve({**env, "AGENTSEAT_INBOUND_POLICY": policy}, tmp_path) as served:
        assert served.init.capabilities.experimental == CAPABILITIES
        await _ask(served, "abcde")
        [asked] = await _agent_lines(sandbox, 1, "yes abcde")
        # What is asked and how to answer, with the host's text inert in Teams HTML.
        assert "Bash" in asked["text"] and "Run the test suite" in asked["text"] and "no abcde" in asked["text"]
        assert "<b>x</b>" not in asked["content"] and "&lt;/channel&gt;" in asked["content"]

        assert await _answered(served, sandbox, "abcde", "Yes ABCDE") == "allow"
        await post_dm(sandbox, sponsor, agent, "thanks")
        [push] = await served.wait_pushes(1)
        await _settled(served)
        assert len(served.pushes) == 1 and push.content.endswith("thanks")  # the answer was consumed
        assert len(served.permissions) == 1


async def test_a_sponsors_no_denies(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    async with serve(env, tmp_path) as served:
        await _ask(served, "vwxyz")
        await _agent_lines(sandbox, 1, "no vwxyz")
        assert await _answered(served, sandbox, "vwxyz", "no vwxyz") == "deny"


async def test_a_colleagues_answer_is_an_ordinary_message(sandbox: Sandbox, env: dict[str, str],
                                                          tmp_path: Path) -> None:
    colleague, agent = _upn(sandbox, "colleague1"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        await _ask(served, "abcde")
        await _agent_lines(sandbox, 1, "yes abcde")
        await post_dm(sandbox, colleague, agent, "yes abcde")
        [push] = await served.wait_pushes(1)  # it flows as usual, marked untrusted
        assert "untrusted" in push.content and push.content.endswith("yes abcde")
        assert served.permissions == []
        assert await _answered(served, sandbox, "abcde", "no abcde") == "deny"  # the only answer ever sent
        assert len(await _agent_lines(sandbox, 2, "Denied")) == 2  # the question, then "Denied"; no note


async def test_an_answer_in_a_group_chat_is_refused_and_the_sponsor_told_once(sandbox: Sandbox, env: dict[str, str],
                                                                             tmp_path: Path) -> None:
    sponsor, colleague = _upn(sandbox, "sponsor"), _upn(sandbox, "colleague1")
    async with serve(env, tmp_path) as served:
        group = (await served.call_json("create_chat", members=[sponsor, colleague], topic="launch"))["chat_id"]
        await _ask(served, "abcde")
        await _agent_lines(sandbox, 1, "yes abcde")
        await post_chat(sandbox, sponsor, group, "yes abcde")
        await post_chat(sandbox, sponsor, group, "yes abcde")
        await served.wait_pushes(2)
        lines = await _agent_lines(sandbox, 2, "one-on-one")
        assert await _answered(served, sandbox, "abcde", "yes abcde") == "allow"
        assert served.permissions[0].behavior == "allow" and len(served.permissions) == 1
        lines = await _agent_lines(sandbox, 3, "Allowed")
        assert len(lines) == 3  # question, one note for two refused answers, the confirmation
        assert [m for m in await chat_messages(sandbox, group) if m["from"] == _upn(sandbox, "agent_user")] == []


async def test_a_late_answer_is_refused_and_the_sponsor_told_once(sandbox: Sandbox, env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    async with serve(env, tmp_path) as served:
        await _ask(served, "abcde")
        await _agent_lines(sandbox, 1, "yes abcde")
        # Ten minutes pass for this request (the store is the shared state the serve and the intake read).
        with sqlite3.connect(Path(env["AGENTSEAT_STATE_DIR"]) / "permissions.db") as conn:
            conn.execute("UPDATE requests SET created_at = ? WHERE request_id = 'abcde'",
                         (time.time() - TTL_SECONDS - 5,))
        await post_dm(sandbox, _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user"), "yes abcde")
        await served.wait_pushes(1)  # not consumed: it reaches the agent as a message
        await _agent_lines(sandbox, 2, "expired")
        await _ask(served, "fghij")
        await _agent_lines(sandbox, 3, "yes fghij")
        assert await _answered(served, sandbox, "fghij", "yes fghij") == "allow"
        assert [p.request_id for p in served.permissions] == ["fghij"]


async def test_a_malformed_answer_is_refused_and_the_sponsor_told_once(sandbox: Sandbox, env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        await _ask(served, "abcde")
        await _agent_lines(sandbox, 1, "yes abcde")
        await post_dm(sandbox, sponsor, agent, "yes abcde please")
        await post_dm(sandbox, sponsor, agent, "yes abcdl")
        await served.wait_pushes(2)
        await _agent_lines(sandbox, 2, "did not answer")
        assert served.permissions == []
        assert await _answered(served, sandbox, "abcde", "y abcde") == "allow"
        assert len(await _agent_lines(sandbox, 3, "Allowed")) == 3


async def test_a_malformed_request_id_is_never_relayed(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    async with serve(env, tmp_path) as served:
        await _ask(served, "abcdl")  # `l` is never in a Claude Code id: dropped by the params model
        await _ask(served, "qrstu")
        lines = await _agent_lines(sandbox, 1, "yes qrstu")
        assert not any("abcdl" in m["text"] for m in lines)
        with sqlite3.connect(Path(env["AGENTSEAT_STATE_DIR"]) / "permissions.db") as conn:
            assert [r[0] for r in conn.execute("SELECT request_id FROM requests")] == ["qrstu"]


async def test_relay_off_declares_no_permission_capability(sandbox: Sandbox, env: dict[str, str],
                                                           tmp_path: Path) -> None:
    async with serve({**env, "AGENTSEAT_PERMISSION_RELAY": "0"}, tmp_path) as served:
        assert served.init.capabilities.experimental == {"claude/channel": {}}


async def test_the_serve_that_got_the_request_answers_it_while_another_owns_the_intake(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    async with serve(env, tmp_path, "a") as a, serve(env, tmp_path, "b") as b:
        with anyio.fail_after(BOUND):
            while True:
                roles = {(await s.call_json("status"))["role"]: s for s in (a, b)}
                if set(roles) == {"owner", "sink"}:
                    break
                await anyio.sleep(0.05)
        asker, owner = roles["sink"], roles["owner"]
        await _ask(asker, "abcde")
        await _agent_lines(sandbox, 1, "yes abcde")
        assert await _answered(asker, sandbox, "abcde", "no abcde") == "deny"
        assert owner.permissions == []  # the owner read the reply; only the asking session is answered
