"""The channel subscriptions follow the agent's memberships, within the cap; the rest is polled."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from agentseat.sandbox.app import Sandbox
from tests.channels._sandbox import AGENT, ALAN, GRACE, make_team, post
from tests.tools._mcp import BOUND, Served, serve


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "auto", "AGENTSEAT_TUNNEL": "loopback",
            "AGENTSEAT_CHANNEL_LIST_SECONDS": "1"}


async def active_channels(served: Served) -> set[str]:
    subs: dict[str, Any] = (await served.call_json("status"))["subscriptions"]
    return {k for k, s in subs.items() if k.startswith("channel:") and s["state"] == "active"}


async def until_active(served: Served, expected: set[str]) -> None:
    with anyio.fail_after(BOUND):
        while await active_channels(served) != expected:
            await anyio.sleep(0.1)


async def graph_subscriptions(sandbox: Sandbox) -> list[str]:
    """Channel resources of the live subscriptions in the sandbox."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sandbox.url}/_sandbox/subscriptions", ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
    items = body.get("subscriptions", body.get("value", [])) if isinstance(body, dict) else body
    return sorted(str(s.get("resource")) for s in items if "/channels/" in str(s.get("resource")))


async def membership(sandbox: Sandbox, team_id: str, method: str, member: str) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{sandbox.url}/_sandbox/teams/{team_id}/members"
        kw: dict[str, Any] = {"json": {"member": member}} if method == "POST" else {}
        async with http.request(method, url if method == "POST" else f"{url}/{member}",
                                ssl=sandbox.client_ssl_context(), **kw) as resp:
            assert resp.status in (200, 201), await resp.text()


def kind(team: tuple[str, str]) -> str:
    return f"channel:{team[0]}:{team[1]}"


async def test_joining_and_leaving_teams_adds_and_removes_channel_subscriptions(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    first = await make_team(sandbox, "Research", AGENT, GRACE)
    second = await make_team(sandbox, "Ops", GRACE, ALAN)  # the agent joins it later
    async with serve(env, tmp_path) as served:
        await until_active(served, {kind(first)})
        await membership(sandbox, second[0], "POST", AGENT)
        await until_active(served, {kind(first), kind(second)})
        await membership(sandbox, first[0], "DELETE", AGENT)
        await until_active(served, {kind(second)})
        assert await graph_subscriptions(sandbox) == [f"/teams/{second[0]}/channels/{second[1]}/messages"]
        # The new channel's subscription delivers: a mention there is pushed.
        asked = await post(sandbox, GRACE, second, f"@{AGENT} welcome aboard?", mentions=[AGENT])
        [push] = await served.wait_pushes(1)
        assert push.meta is not None and (push.meta["message_id"], push.meta["team_id"]) == (asked, second[0])


async def test_past_the_cap_channels_are_polled_not_subscribed(sandbox: Sandbox, env: dict[str, str],
                                                               tmp_path: Path) -> None:
    first = await make_team(sandbox, "Research", AGENT, GRACE)
    second = await make_team(sandbox, "Ops", AGENT, GRACE)
    async with serve({**env, "AGENTSEAT_CHANNEL_SUBSCRIPTIONS_MAX": "1",
                      "AGENTSEAT_CHAT_POLL_SECONDS": "5"}, tmp_path) as served:
        with anyio.fail_after(BOUND):
            while len(active := await active_channels(served)) != 1:
                await anyio.sleep(0.1)
        [subscribed] = active
        polled = second if subscribed == kind(first) else first
        asked = await post(sandbox, GRACE, polled, f"@{AGENT} are you there?", mentions=[AGENT])
        [push] = await served.wait_pushes(1)
        assert push.meta is not None and push.meta["message_id"] == asked
        status = await served.call_json("status")
        assert status["channel_poller"]["events"] >= 1 and "fetched.channel" not in status["intake"]
        assert await active_channels(served) == {subscribed}


async def test_a_restart_keeps_the_channel_subscription_it_made(sandbox: Sandbox, env: dict[str, str],
                                                                tmp_path: Path) -> None:
    team = await make_team(sandbox, "Research", AGENT, GRACE)
    with socket.socket() as s:  # the same URL both times, so the subscription need not move
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    ids = []
    for run in range(2):
        async with serve({**env, "AGENTSEAT_WEBHOOK_PORT": port}, tmp_path, f"serve{run}") as served:
            await until_active(served, {kind(team)})
            ids.append((await served.call_json("status"))["subscriptions"][kind(team)]["id"])
            asked = await post(sandbox, GRACE, team, f"@{AGENT} run {run}", mentions=[AGENT])
            [push] = await served.wait_pushes(1)  # the kept subscription still verifies (its secret was kept)
            assert push.meta is not None and push.meta["message_id"] == asked
    assert ids[0] == ids[1]
    assert await graph_subscriptions(sandbox) == [f"/teams/{team[0]}/channels/{team[1]}/messages"]


async def test_a_tenant_with_a_shorter_chat_message_lifetime_gets_it_for_channels_too(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    team = await make_team(sandbox, "Research", AGENT, GRACE)
    async with aiohttp.ClientSession() as http:  # older pages and some tenants: 60 minutes for chatMessage
        async with http.post(f"{sandbox.url}/_sandbox/behaviour", json={"chat_subscription_max_minutes": 60},
                             ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status == 200, await resp.text()
    async with serve(env, tmp_path) as served:
        await until_active(served, {kind(team)})
        subs = (await served.call_json("status"))["subscriptions"]
        assert subs["teams"]["minutes"] == 60 and subs[kind(team)]["minutes"] == 60
