"""Control-API helpers for team channels (CONTRACT-channels: /_sandbox/teams, /_sandbox/channel-messages)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import anyio

from agentseat.sandbox.app import Sandbox
from tests.tools._mcp import BOUND, Served

GRACE, ALAN, ADA, AGENT = "grace@contoso.test", "alan@contoso.test", "ada@contoso.test", "agent@contoso.test"


async def _call(sandbox: Sandbox, method: str, path: str, body: Any = None, status: int = 201) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{sandbox.url}{path}", json=body, ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == status, await resp.text()
            return await resp.json()


async def make_team(sandbox: Sandbox, name: str, *members: str) -> tuple[str, str]:
    """A team with `members` (UPNs); returns (team id, General channel id)."""
    made = await _call(sandbox, "POST", "/_sandbox/teams", {"name": name, "members": list(members)})
    return str(made["team_id"]), str(made["channel_id"])


async def post(sandbox: Sandbox, sender: str, team: tuple[str, str], text: str, *,
               mentions: list[str] | None = None, reply_to: str | None = None) -> str:
    body: dict[str, Any] = {"from": sender, "team_id": team[0], "channel_id": team[1], "text": text}
    if mentions is not None:
        body["mentions"] = mentions
    if reply_to is not None:
        body["reply_to"] = reply_to
    return str((await _call(sandbox, "POST", "/_sandbox/channel-messages", body))["message_id"])


async def thread_view(sandbox: Sandbox, team: tuple[str, str]) -> list[dict[str, Any]]:
    """The channel's posts, each with its replies, as the sandbox shows them."""
    body = await _call(sandbox, "GET", f"/_sandbox/teams/{quote(team[0], safe='')}/channels/"
                                       f"{quote(team[1], safe='')}/messages", status=200)
    return body["messages"] if isinstance(body, dict) else body  # type: ignore[no-any-return]


async def channel_subscribed(served: Served, count: int = 1) -> dict[str, Any]:
    """Wait until `count` channel subscriptions are active; returns the status's subscriptions."""
    with anyio.fail_after(BOUND):
        while True:
            subs = (await served.call_json("status"))["subscriptions"]
            active = [k for k, s in subs.items() if k.startswith("channel:") and s["state"] == "active"]
            if len(active) >= count:
                return subs  # type: ignore[no-any-return]
            await anyio.sleep(0.05)


async def settled(served: Served) -> None:
    """The channel sink has moved past the newest stored event: any push of it has been sent."""
    await served.channel_caught_up((await served.call_json("status"))["last_event"]["seq"])


async def stored(served: Served) -> list[dict[str, Any]]:
    return (await served.call_json("read_events", since=0, limit=100))["events"]  # type: ignore[no-any-return]


async def wait_stored(served: Served, message_id: str) -> dict[str, Any]:
    with anyio.fail_after(BOUND):
        while True:
            for event in await stored(served):
                if event["message_id"] == message_id:
                    return event
            await anyio.sleep(0.1)
