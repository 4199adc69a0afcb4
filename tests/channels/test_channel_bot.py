"""The headless bot answers a channel post that @mentions the agent, in that post's thread."""

from __future__ import annotations

from pathlib import Path

import anyio

from agentseat.sandbox.app import Sandbox
from tests.channels._sandbox import AGENT, ALAN, GRACE, make_team, post, thread_view
from tests.test_bot import bot_in_process, env, handled, handler, runs  # noqa: F401 (fixtures)
from tests.runtime.test_runtime import upn, wait_for


async def test_the_bot_replies_in_the_thread_of_a_mention_and_ignores_chatter(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:  # noqa: F811
    team = await make_team(sandbox, "Research", AGENT, GRACE, ALAN)
    async with bot_in_process(env, handler, GRACE) as (runtime, _):
        await wait_for(lambda: any(s["state"] == "active" for k, s in runtime.channel_manager.status().items()))
        overheard = await post(sandbox, GRACE, team, "lunch, Alan?")
        asked = await post(sandbox, GRACE, team, f"@{AGENT} what is the status?", mentions=[AGENT])
        agent = upn(sandbox, "agent_user")
        with anyio.fail_after(60):
            while True:
                posts = {p["id"]: p for p in await thread_view(sandbox, team)}
                if [r for r in posts[asked]["replies"] if r["from"] == agent]:
                    break
                await anyio.sleep(0.05)
        await wait_for(lambda: handled(runtime, overheard))
    [reply] = posts[asked]["replies"]
    assert reply["text"].startswith("echo:") and "what is the status?" in reply["text"]
    assert posts[overheard]["replies"] == []
    assert [r["message_id"] for r in runs(tmp_path) if r["phase"] == "start"] == [asked]
