"""The pairing flow as Claude Code sees it: `agentseat serve` over mcp's real stdio client."""

from __future__ import annotations

import re
from pathlib import Path

import anyio

import agentseat
from agentseat.sandbox.app import Sandbox
from tests.tools._mcp import chat_messages, post_dm, serve

CODE = re.compile(r"code: ([A-Z0-9]{6})")


async def test_a_stranger_is_not_pushed_until_the_sponsor_approves_and_the_approval_never_is(
        sandbox: Sandbox, agent_env: dict[str, str], tmp_path: Path) -> None:
    users = sandbox.tenant.users
    grace, sponsor, agent = (users[sandbox.role(r)].upn for r in ("colleague1", "sponsor", "agent_user"))
    package_root = str(Path(agentseat.__file__).resolve().parent.parent)  # this tree, not an installed copy
    env = {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_INBOUND_POLICY": "pairing",
           "PYTHONPATH": package_root}
    async with serve(env, tmp_path) as served:
        await served.channel_caught_up()
        asked = await post_dm(sandbox, grace, agent, "hello, may I ask you something?")
        with anyio.fail_after(60):
            while not (codes := [m["text"] for m in await chat_messages(sandbox, asked["chat_id"])
                                 if m["from"] == agent]):
                await anyio.sleep(0.05)
        assert (await served.call_json("read_events"))["events"] == []  # held: neither pushed nor readable

        approval = await post_dm(sandbox, sponsor, agent, f"approve {CODE.search(codes[0]).group(1)}")  # type: ignore[union-attr]
        [push] = await served.wait_pushes(1)
        assert push.meta is not None and push.meta["message_id"] == asked["message_id"]
        thanks = await post_dm(sandbox, sponsor, agent, "thanks")
        pushes = await served.wait_pushes(2)
        assert [p.meta["message_id"] for p in pushes if p.meta] == [asked["message_id"], thanks["message_id"]]
        history = (await served.call_json("read_events", since=0))["events"]
        assert [e["message_id"] for e in history] == [asked["message_id"], thanks["message_id"]]
        assert approval["message_id"] not in {e["message_id"] for e in history}  # consumed, never stored
