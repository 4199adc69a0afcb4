"""The bot and the clock: a reminder runs the handler, and its answer goes to the promise's chat;
the bot's replies are in the record like any tool's."""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentseat.sandbox.app import Sandbox
from tests.runtime.test_runtime import upn, wait_for
from tests.test_bot import HANDLER, bot_in_process, runs, wait_agent_messages
from tests.tools._mcp import post_dm


@pytest.fixture
def handler(tmp_path: Path) -> str:
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    return shlex.join([sys.executable, str(script), str(tmp_path)])


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


async def test_a_reminder_runs_the_handler_and_the_answer_goes_to_its_chat(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    sponsor, agent = upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    async with bot_in_process(env, handler) as (runtime, _bot):
        posted = await post_dm(sandbox, sponsor, agent, "ping")
        await wait_agent_messages(sandbox, posted["chat_id"], 1)
        promise = runtime.promises.add(posted["chat_id"], "follow up with Ada", datetime.now(UTC) - timedelta(seconds=1))
        runtime.clock.wake()
        replies = await wait_agent_messages(sandbox, posted["chat_id"], 2)
        # The sandbox holds the reply before Graph's answer reaches the client that records it.
        await wait_for(lambda: len(runtime.record.query(chat_id=posted["chat_id"])) == 2)
        recorded = runtime.record.query(chat_id=posted["chat_id"])
    assert replies[1]["text"] == "echo: follow up with Ada"
    [run] = [r for r in runs(tmp_path) if r["phase"] == "start" and r["message_id"] == promise.id]
    assert run["env"]["AGENTSEAT_EVENT_KIND"] == "reminder"
    assert run["env"]["AGENTSEAT_EVENT_CHAT_ID"] == posted["chat_id"]
    assert [r["text"] for r in recorded] == ["echo: follow up with Ada", "echo: ping"]
