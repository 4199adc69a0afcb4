"""Outgoing Teams @mentions: people named by UPN or object id become `<at id="n">` markers and a
`mentions` array, after checking that each one is a member of the chat.

Shapes from "Send chatMessage in a chat" (chat-post-messages, the at-mention example): the body
is HTML, each marker's text equals its `mentionText`, and `mentioned.user` names the person
(Graph answers a marker mismatch with 400 "... does not contain marker for mention with Id").
Graph itself does not refuse a mention of someone outside the chat, who would never see it;
this module does, so the model learns that the person must be added or messaged directly.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import GraphError, NotFoundError, ToolInputError
from .base import check_user_ref, markdown_to_html, not_a_member

#: Enough for any real conversation; a long list is more likely a model looping than a need.
MAX_MENTIONS = 20


class _Graph(Protocol):
    async def get(self, path: str, **params: Any) -> Any: ...


@dataclass(frozen=True)
class Member:
    user_id: str
    name: str
    email: str


async def chat_members(graph: _Graph, chat_id: str) -> list[Member]:
    """The chat's members (chat-list-members), or a tool error naming the chat."""
    try:
        body = await graph.get(f"/chats/{quote(chat_id, safe=':@.')}/members")
    except NotFoundError as exc:
        raise ToolInputError(f"no chat {chat_id!r} that the agent can see", hint="use list_chats for chat ids") from exc
    except GraphError as exc:
        raise not_a_member(exc, chat_id) or exc
    return [Member(str(m.get("userId") or ""), str(m.get("displayName") or ""), str(m.get("email") or ""))
            for m in (body or {}).get("value", []) if m.get("userId")]


async def _user_id(graph: _Graph, ref: str) -> str | None:
    """A UPN's object id from the directory (a member's `email` is their mail, which may differ)."""
    try:
        user = await graph.get(f"/users/{quote(ref, safe='@.-_')}", **{"$select": "id"})
    except NotFoundError:
        return None
    return str((user or {}).get("id") or "") or None


async def resolve(graph: _Graph, chat_id: str, refs: list[str]) -> list[tuple[str, Member]]:
    """(ref, member) for each chat member `refs` name, in order, without repeats; refuses anyone not in the chat."""
    if len(refs) > MAX_MENTIONS:
        raise ToolInputError(f"mentions: at most {MAX_MENTIONS} people", hint="mention fewer people")
    members = await chat_members(graph, chat_id)
    by_id = {m.user_id.lower(): m for m in members}
    by_mail = {m.email.lower(): m for m in members if m.email}
    found: dict[str, tuple[str, Member]] = {}
    for ref in refs:
        key = check_user_ref(ref, "mentions").lower()
        member = by_id.get(key) or by_mail.get(key)
        if member is None and "@" in key:
            user_id = await _user_id(graph, ref)
            member = by_id.get(user_id.lower()) if user_id else None
            if user_id is None:
                raise ToolInputError(f"mentions: no user {ref!r} in the directory", hint="check the address")
        if member is None:
            raise ToolInputError(f"mentions: {ref} is not a member of this chat, so a mention would not reach them",
                                 hint="mention only chat members (list_chat_members), or message them directly")
        found.setdefault(member.user_id, (ref, member))
    return list(found.values())


def mention_body(text: str, fmt: str, people: list[tuple[str, Member]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """An HTML itemBody and its `mentions` array. `people` pairs each member with the ref the model gave:
    `@ref` in the text marks where that mention goes; anyone not marked is mentioned at the start."""
    content = markdown_to_html(text) if fmt == "markdown" else html.escape(text, quote=False).replace("\n", "<br>")
    mentions: list[dict[str, Any]] = []
    leading: list[str] = []
    for n, (ref, member) in enumerate(people):
        name = member.name or member.email or member.user_id
        tag = f'<at id="{n}">{html.escape(name, quote=False)}</at>'
        mentions.append({"id": n, "mentionText": name,
                         "mentioned": {"user": {"id": member.user_id, "displayName": name,
                                                "userIdentityType": "aadUser"}}})
        marks = [f"@{ref}", *([f"@{member.email}"] if member.email else [])]
        pattern = re.compile("|".join(re.escape(html.escape(m, quote=False)) for m in marks), re.I)
        content, found = pattern.subn(lambda _: tag, content, count=1)
        if not found:
            leading.append(tag)
    if leading:
        content = " ".join(leading) + " " + content
    return {"contentType": "html", "content": content}, mentions


async def with_mentions(graph: _Graph, chat_id: str, text: str, fmt: str,
                        refs: list[str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Resolve `refs` in `chat_id` and build the body: what `send_teams_message` and `reply_in_chat` post."""
    return mention_body(text, fmt, await resolve(graph, chat_id, refs))
