"""What `POST /_sandbox/messages` adds to a message besides text: images, files and a quoted reply.

People paste screenshots, attach files and reply to a message in Teams; this builds those the
way Teams' own client sends them through Graph, with the same sandbox functions the Graph
routes use: images become hostedContents (`../hostedContents/{n}/$value` in the html, stored
as the message is posted), files go to the sender's OneDrive under "Microsoft Teams Chat
Files", are shared with the chat's members and attached as `reference`, and `reply_to`
becomes a `messageReference` attachment placed first. Also the control API's view of a
message's attachments and hosted images.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..graph.attachment_refs import MESSAGE_REFERENCE, REFERENCE, message_reference
from ..graph.drive import store
from ..graph.hosted_contents import MAX_BYTES, PendingContent
from ..graph.query import GraphError

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import Chat, ChatMessage, User

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png", "png"), (b"\xff\xd8\xff", "image/jpeg", "jpg"))


class PartError(Exception):
    """A bad `images`, `files` or `reply_to`: the control API answers it with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Parts:
    before: str = ""  # html placed before the text (a quoted reply's marker)
    after: str = ""  # html placed after it (images, file markers)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    hosted: list[PendingContent] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.before or self.after)


def _decode(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise PartError(400, f"{where}: base64 data is required")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PartError(400, f"{where}: not valid base64") from None


def _images(raw: Any, parts: Parts) -> None:
    if not isinstance(raw, list):
        raise PartError(400, "'images' must be a list of base64 strings or {name, data} objects")
    for n, entry in enumerate(raw, start=1):
        name, data_b64 = (entry.get("name"), entry.get("data")) if isinstance(entry, dict) else (None, entry)
        data = _decode(data_b64, f"images[{n - 1}]")
        kind = next(((t, ext) for magic, t, ext in _MAGIC if data.startswith(magic)), None)
        if kind is None:
            raise PartError(400, f"images[{n - 1}]: only PNG and JPEG images are accepted")
        if len(data) > MAX_BYTES:
            raise PartError(413, f"images[{n - 1}]: over the 4 MB limit for hosted content")
        alt = name if isinstance(name, str) and name else f"image-{n}.{kind[1]}"
        parts.hosted.append(PendingContent(str(n), kind[0], data))
        parts.after += f'<p><img src="../hostedContents/{n}/$value" alt="{html.escape(alt)}"></p>'


def _files(sb: SandboxState, raw: Any, chat: Chat, sender: User, parts: Parts) -> None:
    if not isinstance(raw, list):
        raise PartError(400, "'files' must be a list of {name, data} objects")
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise PartError(400, f"files[{i}]: give {{name, data}} with data in base64")
        data = _decode(entry.get("data"), f"files[{i}]")
        try:
            # Teams keeps the name and adds " 1", " 2" ... when the folder already has it.
            item, _ = store.write_file(sb, sender.id, store.TEAMS_CHAT_FOLDER, entry["name"], data,
                                       conflict="rename")
        except GraphError as exc:
            raise PartError(400, f"files[{i}]: {exc.message}") from exc
        for member in chat.member_ids:
            # Teams shares a file sent in a chat with the chat's members, who may edit it.
            if member != sender.id and member in sb.tenant.users:
                store.grant(sb, item, sb.tenant.users[member], ["write"], None)
        attachment_id = item.etag_guid.lower()
        parts.attachments.append({"id": attachment_id, "contentType": REFERENCE, "contentUrl": store.web_url(sb, item),
                                  "content": None, "name": item.name, "thumbnailUrl": None, "teamsAppId": None})
        parts.after += f'<attachment id="{attachment_id}"></attachment>'


def build_parts(sb: SandboxState, chat: Chat, sender: User, data: dict[str, Any]) -> Parts:
    """The images, files and quoted reply of a control-API message (nothing stored yet but files)."""
    parts = Parts()
    reply_to = data.get("reply_to")
    if reply_to is not None:
        quoted = next((m for m in sb.tenant.messages.get(chat.id, []) if m.id == str(reply_to)), None)
        if quoted is None:
            raise PartError(404, f"reply_to: no message '{reply_to}' in that chat")
        parts.attachments.append(message_reference(sb, quoted))
        parts.before = f'<attachment id="{reply_to}"></attachment>'
    if data.get("images") is not None:
        _images(data["images"], parts)
    if data.get("files") is not None:
        _files(sb, data["files"], chat, sender, parts)
    return parts


# --- the control API's view of a message ------------------------------------------------------------------------
def attachment_view(sb: SandboxState, attachment: dict[str, Any]) -> dict[str, Any]:
    """A card with its card parsed (unchanged shape), a file with name, size and URL, a reply with its target."""
    kind = attachment.get("contentType")
    if kind == REFERENCE:
        item = store.by_url(sb, attachment.get("contentUrl") or "")
        return {"id": attachment.get("id"), "type": "file", "content_type": kind, "name": attachment.get("name"),
                "size": item.size if item is not None else None, "url": attachment.get("contentUrl")}
    if kind == MESSAGE_REFERENCE:
        try:
            quoted = json.loads(attachment.get("content") or "{}")
        except json.JSONDecodeError:
            quoted = {}
        return {"id": attachment.get("id"), "type": "reply", "content_type": kind, "name": None, "size": None,
                "reply_to": quoted.get("messageId"), "preview": quoted.get("messagePreview")}
    try:
        card = json.loads(attachment.get("content") or "null")
    except json.JSONDecodeError:
        card = None
    # Cards keep the view they had before files and replies came (tests outside the sandbox read it).
    return {"id": attachment.get("id"), "content_type": kind, "card": card}


def hosted_view(msg: ChatMessage) -> list[dict[str, Any]]:
    return [{"id": h["id"], "content_type": h["contentType"], "size": h["size"]} for h in msg.hosted_contents]
