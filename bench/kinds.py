"""Figure 1b: latency by kind of event, side by side in one runtime.

One message at a time (closed loop), so each figure is a push's own latency and not a
queue's: a DM to the agent, an edit of that DM (a `teams_edit` event), and a channel post
that @mentions the agent (a `channel` event). Each is timed from just before the control
API call that makes it happen to the MCP client receiving the push, both on the sandbox
clock, so all three carry the same control-call overhead and compare fairly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .harness import SandboxHost, Served, summary_ms

#: How long one push may take before the round counts as lost.
TIMEOUT = 30.0


async def _timed(host: SandboxHost, served: Served, act: Callable[[], Awaitable[str]], kind: str) -> float | None:
    """Seconds from `act()` starting to the push of `kind` for the message id it returns."""
    seen = len(served.pushes)
    began = host.now()
    message_id = await act()
    with anyio.move_on_after(TIMEOUT):
        while True:
            for push in served.pushes[seen:]:
                if push.message_id == message_id and push.kind == kind:
                    return push.at - began
            await anyio.sleep(0.002)
    return None


async def team_with_agent(host: SandboxHost) -> tuple[str, str] | None:
    """A team whose General channel the agent is in, or None where the sandbox has no teams."""
    try:
        made = await host.request("POST", "/_sandbox/teams", {
            "name": "bench team", "members": [host.upn("agent_user"), host.upn("colleague1")]})
    except RuntimeError:
        return None
    return made["team_id"], made["channel_id"]


async def measure(host: SandboxHost, served: Served, rounds: int, team: tuple[str, str] | None) -> dict[str, Any]:
    """`rounds` of DM, edit and channel mention; latency summaries and losses for each kind."""
    agent, colleague = host.upn("agent_user"), host.upn("colleague1")
    times: dict[str, list[float]] = {"dm": [], "edit": [], "channel_mention": []}
    lost = dict.fromkeys(times, 0)
    for i in range(rounds):
        posted: dict[str, str] = {}

        async def dm() -> str:
            posted.update(await host.dm(colleague, agent, f"kinds dm {i}"))
            return posted["message_id"]

        async def edit() -> str:
            await host.request("POST", f"/_sandbox/messages/{posted['chat_id']}/{posted['message_id']}/edit",
                               {"text": f"kinds dm {i}, edited"})
            return posted["message_id"]

        async def mention() -> str:
            assert team is not None
            made = await host.request("POST", "/_sandbox/channel-messages", {
                "from": colleague, "team_id": team[0], "channel_id": team[1],
                "text": f"kinds channel post {i} for the agent", "mentions": [agent]})
            return str(made["message_id"])

        steps: list[tuple[str, Callable[[], Awaitable[str]], str]] = [("dm", dm, "teams"), ("edit", edit, "teams_edit")]
        if team is not None:
            steps.append(("channel_mention", mention, "channel"))
        for name, act, kind in steps:
            took = await _timed(host, served, act, kind)
            if took is None:
                lost[name] += 1
            else:
                times[name].append(took)
    out: dict[str, Any] = {"rounds": rounds}
    for name, values in times.items():
        if values or lost[name]:
            out[name] = {"ms": summary_ms(values), "received": len(values), "lost": lost[name]}
    if team is None:
        out["channel_mention"] = {"skipped": "this sandbox has no teams (POST /_sandbox/teams failed)"}
    return out
