"""File references: the one string every file tool takes, and what it names.

A `ref` is one of:
- `{drive_id}/{item_id}`: what list_files, resolve_file_url, write_file, upload_file and
  read_file return (Graph: `/drives/{drive-id}/items/{item-id}`);
- an `https://` sharing link or file URL (SharePoint / OneDrive), opened through
  `/shares/{u!...}` (shares-get, "Encoding sharing URLs");
- a chat attachment: `{chat_id}/{message_id}/{attachment_id}` (the ids an event or
  read_teams_messages lists), or the attachment id alone, found among recent inbox events;
- a Graph share id `u!...` (what a mail event lists for a file shared by a sharing notice):
  the link it encodes.
Pure parsing: nothing here calls Graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from ..attachments.shared_links import share_url
from ..errors import ToolInputError

#: Drive and item ids: base64url (`b!...`), base32 (`01...`), hex with `!` for personal drives.
_ID = re.compile(r"^[A-Za-z0-9!_\-.=+]{1,256}$")
#: Chat and channel ids (`19:...@thread.v2`, `19:..._...@unq.gbl.spaces`, `19:...@thread.tacv2`).
_CHAT = re.compile(r"^19:[^/\s]{1,300}$")
_ATTACHMENT = re.compile(r"^[A-Za-z0-9+/=_.\-]{1,512}$")
HELP = ("a ref is \"{drive_id}/{item_id}\" (from list_files, resolve_file_url, write_file or upload_file), a "
        "SharePoint/OneDrive https link, a share id (u!...) from a mail event, or a chat attachment as "
        "\"{chat_id}/{message_id}/{attachment_id}\" or its attachment id alone")


@dataclass(frozen=True)
class ItemRef:
    drive_id: str
    item_id: str

    def __str__(self) -> str:
        return f"{self.drive_id}/{self.item_id}"

    @property
    def path(self) -> str:
        return f"/drives/{quote(self.drive_id, safe='!')}/items/{quote(self.item_id, safe='!')}"


@dataclass(frozen=True)
class UrlRef:
    url: str


@dataclass(frozen=True)
class AttachmentRef:
    attachment_id: str
    chat_id: str = ""  # "" when only the attachment id was given: found in the inbox
    message_id: str = ""


Ref = ItemRef | UrlRef | AttachmentRef


def parse_ref(raw: str) -> Ref:
    """What `raw` names, or a ToolInputError saying which forms a ref takes."""
    value = raw.strip()
    if value.lower().startswith("https://"):
        return UrlRef(value)
    if value.startswith("u!"):
        if (url := share_url(value)) is None:
            raise ToolInputError(f"{raw!r} is not a share id of an https link", hint=HELP)
        return UrlRef(url)
    if value.lower().startswith("http://"):
        raise ToolInputError("file links must be https", hint=HELP)
    if _CHAT.match(value.split("/", 1)[0]):
        chat_id, _, rest = value.partition("/")
        message_id, _, attachment_id = rest.partition("/")
        if message_id.isdigit() and _ATTACHMENT.match(attachment_id):
            return AttachmentRef(attachment_id, chat_id, message_id)
        raise ToolInputError(f"{raw!r} is not a chat attachment ref", hint=HELP)
    parts = value.split("/")
    if len(parts) == 2 and all(_ID.match(p) for p in parts):
        return ItemRef(parts[0], parts[1])
    if _ATTACHMENT.match(value) and "/" not in value:
        return AttachmentRef(value)
    raise ToolInputError(f"{raw!r} is not a file ref", hint=HELP)


def item_ref(item: dict[str, object]) -> ItemRef | None:
    """The ref of a driveItem (or a search hit's resource, or a remoteItem): its drive and id."""
    parent = item.get("parentReference")
    drive = parent.get("driveId") if isinstance(parent, dict) else None
    item_id = item.get("id")
    if isinstance(drive, str) and isinstance(item_id, str) and _ID.match(drive) and _ID.match(item_id):
        return ItemRef(drive, item_id)
    return None
