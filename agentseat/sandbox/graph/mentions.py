"""@mentions in the sandbox's chat messages: checking a sent `mentions` array, and building one.

Rules are from "Send chatMessage in a chat" (chat-post-messages, the at-mention example) and the
chatMessageMention resource: the body is HTML with `<at id="N">text</at>` for each mention, and
`mentions` lists `{id: N, mentionText: text, mentioned: {user: {id, displayName, userIdentityType}}}`.
Graph refuses a mention whose marker is missing from the body with a 400 that names the marker
(wording as reported in microsoft-graph-docs issues #8832 and #18584).
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from .query import GraphError, bad_request

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import User

_MARKER = re.compile(r"<at\s+id\s*=\s*\"(\d+)\"\s*>(.*?)</at>", re.I | re.S)
#: chatMessageMention.id is an Int32 (the resource page); more than this many is not a chat message.
MAX_MENTIONS = 100


def _markers(content: str) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for match in _MARKER.finditer(content):
        found.setdefault(int(match.group(1)), set()).update({match.group(2), html.unescape(match.group(2))})
    return found


def mention_json(sb: SandboxState, mention_id: int, text: str, user: User) -> dict[str, Any]:
    """A chatMessageMention as Graph returns it on a message."""
    return {
        "id": mention_id,
        "mentionText": text,
        "mentioned": {
            "application": None, "device": None, "conversation": None, "tag": None,
            "user": {"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": user.id,
                     "displayName": user.display_name, "userIdentityType": "aadUser",
                     "tenantId": sb.tenant.tenant_id},
        },
    }


def check_mentions(sb: SandboxState, raw: Any, content: str, content_type: str) -> list[dict[str, Any]]:
    """The `mentions` of a sent message, as they will be stored; a GraphError for a misuse.

    Graph does not refuse a mention of someone outside the chat (the mention renders; only
    members are notified), so neither does the sandbox: the agent's tools refuse it themselves.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("Invalid request body: 'mentions' must be a collection of chatMessageMention.")
    if len(raw) > MAX_MENTIONS:
        raise bad_request(f"A message can carry at most {MAX_MENTIONS} mentions.")
    markers = _markers(content) if content_type == "html" else {}
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for item in raw:
        if not isinstance(item, dict):
            raise bad_request("Invalid request body: each mention must be a chatMessageMention object.")
        mention_id, text = item.get("id"), item.get("mentionText")
        if isinstance(mention_id, bool) or not isinstance(mention_id, int) or not 0 <= mention_id < 2**31:
            raise bad_request("Invalid request body: a mention's 'id' must be a non-negative Int32.")
        if not isinstance(text, str) or not text:
            raise bad_request(f"Invalid request body: mention {mention_id} needs a 'mentionText'.")
        if mention_id in seen:
            raise bad_request(f"Mention id '{mention_id}' is used more than once.")
        seen.add(mention_id)
        if text not in markers.get(mention_id, set()):
            raise bad_request(f"Neither Body nor adaptive card content contains marker for mention with Id "
                              f"'{mention_id}'. Add '<at id=\"{mention_id}\">{text}</at>' to the body or an "
                              "adaptive card.")
        mentioned = item.get("mentioned")
        user_ref = mentioned.get("user") if isinstance(mentioned, dict) else None
        user_id = user_ref.get("id") if isinstance(user_ref, dict) else None
        if not isinstance(user_id, str) or not user_id:
            raise bad_request(f"Invalid request body: mention {mention_id} needs 'mentioned.user.id'.")
        user = sb.tenant.users.get(user_id)
        if user is None:
            raise GraphError(404, "NotFound", f"The mentioned user '{user_id}' was not found in the tenant.")
        out.append(mention_json(sb, mention_id, text, user))
    return out


def build_mentions(sb: SandboxState, text: str, users: list[User]) -> tuple[str, list[dict[str, Any]]]:
    """HTML content and a mentions array for `text` mentioning `users` (the control API's shortcut).

    `@upn` in the text becomes that person's mention in place; anyone not named so is mentioned
    at the start, as the Teams compose box puts a picked mention where the cursor is.
    """
    content = html.escape(text, quote=False)
    mentions: list[dict[str, Any]] = []
    leading: list[str] = []
    for n, user in enumerate(users):
        tag = f'<at id="{n}">{html.escape(user.display_name, quote=False)}</at>'
        mentions.append(mention_json(sb, n, user.display_name, user))
        placeholder = html.escape(f"@{user.upn}", quote=False)
        if placeholder in content:
            content = content.replace(placeholder, tag, 1)
        else:
            leading.append(tag)
    if leading:
        content = " ".join(leading) + " " + content
    return content, mentions
