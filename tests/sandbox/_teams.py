"""Test helpers for team channels: make a team and post into it through the control API."""

from __future__ import annotations

from typing import Any

from agentseat.sandbox.app import Sandbox
from tests.sandbox._graph import call


async def make_team(sb: Sandbox, *members: str, name: str = "Launch") -> tuple[str, str]:
    """A team with these members (UPNs); returns (team_id, General channel id)."""
    status, body, _ = await call(sb, "POST", "/_sandbox/teams", body={"name": name, "members": list(members)})
    assert status == 201, body
    return str(body["team_id"]), str(body["channel_id"])


async def control_post(sb: Sandbox, team_id: str, channel_id: str, sender: str, text: str,
                       **extra: Any) -> str:
    """A post (or with `reply_to=` a reply) as `sender`; returns its message id."""
    status, body, _ = await call(sb, "POST", "/_sandbox/channel-messages",
                                 body={"from": sender, "team_id": team_id, "channel_id": channel_id, "text": text,
                                       **extra})
    assert status == 201, body
    return str(body["message_id"])


def mention(n: int, text: str, user_id: str) -> dict[str, Any]:
    return {"id": n, "mentionText": text,
            "mentioned": {"user": {"id": user_id, "displayName": text, "userIdentityType": "aadUser"}}}
