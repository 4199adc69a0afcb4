"""File references and quoted replies attached to the sandbox's chat messages.

A `reference` attachment points at a file in OneDrive or SharePoint (chatmessage-post, "Send a
message with file attachment"): its `id` is the GUID in the driveItem's eTag, `contentUrl` the
item's webUrl (its folder's webUrl plus its name) and `name` the item's name. The sandbox
resolves the URL to a drive item the sender can read. Sending does not share the file:
the sender shares it first (driveitem-invite), as Teams' own client does.

A `messageReference` attachment quotes an earlier message of the same chat: its `id` is that
message's id and `content` a JSON string `{messageId, messagePreview, messageSender}` (the
shape Graph returns on quoted replies; the sandbox fills it from the quoted message).
Graph's wording for these refusals is not documented; ours names what is wrong.
"""

from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING, Any

from .drive import store
from .query import GraphError, bad_request
from .resources import identity

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import ChatMessage

REFERENCE = "reference"
MESSAGE_REFERENCE = "messageReference"
PREVIEW_CHARS = 200
_TAG = re.compile(r"<[^>]+>")


def check_file_reference(sb: SandboxState, item: dict[str, Any], sender_id: str) -> dict[str, Any]:
    url = item.get("contentUrl")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise bad_request(f"Attachment '{item['id']}' of type reference needs 'contentUrl': the file's webUrl.")
    found = store.by_url(sb, url)
    if found is None or found.is_folder:
        raise bad_request(f"Attachment '{item['id']}': contentUrl does not name a file in OneDrive or SharePoint.")
    if not store.can_read(sb, found, sender_id):
        raise GraphError(403, "Forbidden", f"Attachment '{item['id']}': the sender cannot access the file at "
                         "contentUrl.")
    if item["id"].strip("{}").upper() != found.etag_guid:
        raise bad_request(f"Attachment '{item['id']}': the id of a reference attachment must be the GUID in the "
                          "driveItem's eTag.")
    name = item.get("name")
    return {"id": item["id"], "contentType": REFERENCE, "contentUrl": url, "content": None,
            "name": name if isinstance(name, str) and name else found.name, "thumbnailUrl": None, "teamsAppId": None}


def check_message_reference(sb: SandboxState, item: dict[str, Any], messages: list[ChatMessage]) -> dict[str, Any]:
    quoted = next((m for m in messages if m.id == item["id"]), None)
    if quoted is None:
        raise bad_request(f"Attachment '{item['id']}' of type messageReference must be the id of a message in "
                          "this chat.")
    if item.get("content") is not None:
        try:
            given = json.loads(item["content"])
        except (TypeError, json.JSONDecodeError):
            raise bad_request(f"Attachment '{item['id']}' content must be a JSON string.") from None
        if not isinstance(given, dict) or str(given.get("messageId", item["id"])) != item["id"]:
            raise bad_request(f"Attachment '{item['id']}': content.messageId must equal the attachment id.")
    return message_reference(sb, quoted)


def message_reference(sb: SandboxState, quoted: ChatMessage) -> dict[str, Any]:
    """The attachment quoting `quoted` (shared with the control API's `reply_to`)."""
    text = "" if quoted.deleted is not None else quoted.content
    if quoted.content_type == "html":
        text = html.unescape(_TAG.sub("", text))
    preview = " ".join(text.split())[:PREVIEW_CHARS]
    sender = identity(sb.tenant.users.get(quoted.from_id), quoted.from_id)
    content = {"messageId": quoted.id, "messagePreview": preview,
               "messageSender": {"application": None, "device": None,
                                 "user": {"userIdentityType": "aadUser", "id": sender["id"],
                                          "displayName": sender["displayName"]}}}
    return {"id": quoted.id, "contentType": MESSAGE_REFERENCE, "contentUrl": None,
            "content": json.dumps(content, separators=(",", ":")), "name": None, "thumbnailUrl": None,
            "teamsAppId": None}
