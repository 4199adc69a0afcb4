"""Attachments on the sandbox's chat messages, checked as Graph checks them.

Rules from "Send chatMessage in a chat" (chat-post-messages and chatmessage-post: "Send a card",
"Send a message with file attachment") and the chatMessageAttachment resource: each attachment
has an `id` and a `contentType`, and the html body places it with `<attachment id="{id}"></attachment>`.
An Adaptive Card (`application/vnd.microsoft.card.adaptive`) carries the card's JSON as a
string in `content`; a `reference` (a file) and a `messageReference` (a quoted reply) are
checked in `attachment_refs`. Graph answers a malformed one with 400 BadRequest; an attachment
the body does not reference, or a marker with no attachment, is refused too (the wording here
is ours: Graph's is not documented).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .attachment_refs import MESSAGE_REFERENCE, REFERENCE, check_file_reference, check_message_reference
from .query import GraphError, bad_request

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import ChatMessage

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
_MARKER = re.compile(r"<attachment\s+id\s*=\s*\"([^\"]*)\"\s*>\s*</attachment>", re.I)
#: Teams' ~28 KB limit is for the whole message, the attachments' content included.
MAX_MESSAGE_BYTES = 28 * 1024


def _card(item: dict[str, Any]) -> dict[str, Any]:
    try:
        card = json.loads(item.get("content") or "")
    except (TypeError, json.JSONDecodeError):
        raise bad_request(f"Attachment '{item['id']}' content must be the card's JSON as a string.") from None
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        raise bad_request(f"Attachment '{item['id']}' content is not an AdaptiveCard.")
    return {"id": item["id"], "contentType": CARD_TYPE, "contentUrl": None, "content": item["content"],
            "name": item.get("name"), "thumbnailUrl": None, "teamsAppId": None}


def check_attachments(raw: Any, content: str, sb: SandboxState | None = None, *, sender_id: str | None = None,
                      messages: list[ChatMessage] | None = None) -> list[dict[str, Any]]:
    """The chatMessageAttachment list to store, or a GraphError as Graph refuses it.

    File references need `sb` and the sender (whose access to the file is checked); quoted
    replies need the `messages` they may quote (the chat's, or a channel thread's). Without
    them only cards are accepted."""
    markers = set(_MARKER.findall(content))
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise bad_request("'attachments' must be an array of chatMessageAttachment.")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise bad_request(f"Attachment at index {i} must have a non-empty string 'id'.")
        kind = item.get("contentType")
        if kind == CARD_TYPE:
            out.append(_card(item))
        elif kind == REFERENCE and sb is not None and sender_id is not None:
            out.append(check_file_reference(sb, item, sender_id))
        elif kind == MESSAGE_REFERENCE and sb is not None and messages is not None:
            out.append(check_message_reference(sb, item, messages))
        else:
            raise bad_request(f"Attachment '{item['id']}' has contentType '{kind}', which is not accepted here "
                              f"(the sandbox takes '{CARD_TYPE}', '{REFERENCE}' and '{MESSAGE_REFERENCE}').")
        if item["id"] not in markers:
            raise bad_request(f"Attachment '{item['id']}' is not referenced in the message body; add "
                              f"<attachment id=\"{item['id']}\"></attachment>.")
    if missing := markers - {a["id"] for a in out}:
        raise bad_request(f"The message body references attachment '{sorted(missing)[0]}', which is not in "
                          "'attachments'.")
    if len({a["id"] for a in out}) != len(out):
        raise bad_request("Attachment ids must be unique within a message.")
    size = len(content.encode()) + sum(len((a["content"] or "").encode()) for a in out)
    if size > MAX_MESSAGE_BYTES:
        raise GraphError(413, "RequestEntityTooLarge", "Request Entity too large: the message is over the "
                         "Teams limit of about 28 KB.")
    return out
