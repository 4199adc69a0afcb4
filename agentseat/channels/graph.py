"""Graph calls for team channels, with the agent's delegated token.

Routes (Graph v1.0): user-list-joinedteams (`GET /me/joinedTeams`), channel-list
(`GET /teams/{t}/channels`), channel-list-messages (root posts only, newest first, `$top` at
most 50), chatmessage-list-replies, channel-post-messages and chatmessage-post-replies. Every id
goes into the path as one quoted segment: ids arrive from notifications and from the model.
It owns the paths and the paging, not what a message means (channels/normalize.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

#: channel-list-messages: "each page can be expanded to up to 50 channel messages".
MAX_TOP = 50


class GraphLike(Protocol):
    async def get(self, path: str, **params: Any) -> Any: ...
    async def post(self, path: str, json: Any = None, **kw: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class JoinedChannel:
    team_id: str
    team_name: str
    channel_id: str
    channel_name: str


def segment(value: str) -> str:
    """`value` as one path segment; "." and ".." are refused (URLs normalise them away)."""
    if value in ("", ".", ".."):
        raise ValueError("not an id")
    return quote(value, safe="")


def channel_path(team_id: str, channel_id: str) -> str:
    return f"/teams/{segment(team_id)}/channels/{segment(channel_id)}"


def message_path(team_id: str, channel_id: str, message_id: str, reply_id: str | None = None) -> str:
    path = f"{channel_path(team_id, channel_id)}/messages/{segment(message_id)}"
    return f"{path}/replies/{segment(reply_id)}" if reply_id else path


async def _all(graph: Any, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [item async for page in graph.pages(path, params) for item in page if isinstance(item, dict)]


async def joined_teams(graph: Any) -> list[dict[str, Any]]:
    return await _all(graph, "/me/joinedTeams")


async def team_channels(graph: Any, team_id: str) -> list[dict[str, Any]]:
    return await _all(graph, f"/teams/{segment(team_id)}/channels")


async def joined_channels(graph: Any) -> list[JoinedChannel]:
    """Every channel of every team the agent is a member of (1 + one request per team)."""
    out: list[JoinedChannel] = []
    for team in await joined_teams(graph):
        team_id = str(team.get("id") or "")
        if not team_id:
            continue
        for channel in await team_channels(graph, team_id):
            if channel.get("id"):
                out.append(JoinedChannel(team_id, str(team.get("displayName") or ""), str(channel["id"]),
                                         str(channel.get("displayName") or "")))
    return out


async def recent_posts(graph: Any, team_id: str, channel_id: str, top: int = 20) -> list[dict[str, Any]]:
    """One page of root posts, newest first, each with its `replies` (one request: channel-list-messages
    documents `$expand=replies`, up to 1,000 replies per post; past that, `replies@odata.nextLink`)."""
    body = await graph.get(f"{channel_path(team_id, channel_id)}/messages",
                           **{"$top": str(min(top, MAX_TOP)), "$expand": "replies"})
    posts = [m for m in (body or {}).get("value", []) if isinstance(m, dict)] if isinstance(body, dict) else []
    for post in posts:
        more = post.get("replies@odata.nextLink")
        if isinstance(more, str) and more:  # a thread past the expansion's 1,000: read in full
            post["replies"] = [r async for page in graph.pages(more) for r in page if isinstance(r, dict)]
        elif not isinstance(post.get("replies"), list):
            post["replies"] = []
    return posts


async def read_message(graph: Any, team_id: str, channel_id: str, message_id: str,
                       reply_id: str | None = None) -> dict[str, Any]:
    body = await graph.get(message_path(team_id, channel_id, message_id, reply_id))
    return body if isinstance(body, dict) else {}


async def post(graph: Any, team_id: str, channel_id: str, payload: dict[str, Any],
               reply_to: str | None = None) -> dict[str, Any]:
    """A new post (channel-post-messages) or a reply in `reply_to`'s thread (chatmessage-post-replies)."""
    path = f"{message_path(team_id, channel_id, reply_to)}/replies" if reply_to else \
        f"{channel_path(team_id, channel_id)}/messages"
    body = await graph.post(path, payload)
    return body if isinstance(body, dict) else {}
