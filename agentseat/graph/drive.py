"""The agent's OneDrive and files shared with it: upload, share with people, resolve a shared link.

Graph v1.0 pages, in the order a file travels:
- driveitem-put-content: simple upload, for small files (the OneDrive docs say up to 4 MB; the
  Graph page now says 250 MB: 4 MB is safe under both). `@microsoft.graph.conflictBehavior=rename`
  keeps an earlier file of the same name, which an earlier message still links to.
- driveitem-createuploadsession: larger files, in byte ranges that are multiples of 320 KiB, PUT
  to the session's uploadUrl without the token, resumed after a failure (graph/upload_session.py).
- driveitem-invite: share with the chat's members, read-only, sign-in required, no mail.
- shares-get, "Encoding sharing URLs": a file's webUrl as `u!` + unpadded base64url is a shareId;
  `/shares/{id}/driveItem` and its `/content` (a 302 to a pre-authenticated URL) open it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from ..config import Settings
from ..errors import GraphError
from . import upload_session
from .client import GraphClient
from .content import get_content
from .hosts import check_content_url

#: Where Teams puts the files a user attaches in chats, in the sender's OneDrive.
CHAT_FILES = "Microsoft Teams Chat Files"
SIMPLE_UPLOAD_MAX = 4 * 1024 * 1024
#: 12 × 320 KiB: under the 60 MiB range limit and a multiple of 320 KiB, as the upload session page asks.
CHUNK = 12 * 320 * 1024
_RENAME = {"@microsoft.graph.conflictBehavior": "rename"}
_ETAG_GUID = re.compile(r"\{?([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\}?")

Reader = Callable[[int, int], Awaitable[bytes]]


def _chat_file_path(name: str) -> str:
    return quote(f"{CHAT_FILES}/{name}", safe="/")


async def upload(graph: GraphClient, settings: Settings, name: str, size: int, read: Reader) -> dict[str, Any]:
    """Upload `size` bytes (read with `read(offset, length)`) as `name` into the chat files folder; the driveItem."""
    if size <= SIMPLE_UPLOAD_MAX:
        data = await read(0, size)
        response = await graph.request("PUT", f"/me/drive/root:/{_chat_file_path(name)}:/content", params=_RENAME,
                                       data=data, headers={"Content-Type": "application/octet-stream"})
        return dict(response.body or {})
    session = await graph.post(f"/me/drive/root:/{_chat_file_path(name)}:/createUploadSession",
                               {"item": {**_RENAME, "name": name}})
    url = check_content_url(str((session or {}).get("uploadUrl") or ""), settings.graph_host, "an upload session")
    return await upload_session.send(settings, url, size, read, chunk=CHUNK)


async def invite(graph: GraphClient, item_id: str, recipients: list[dict[str, str]]) -> None:
    """Let `recipients` (`{"email"}` or `{"objectId"}`) read the item, signed in, without an invitation mail."""
    if recipients:
        await graph.post(f"/me/drive/items/{quote(item_id, safe='')}/invite",
                         {"recipients": recipients, "roles": ["read"], "requireSignIn": True,
                          "sendInvitation": False})


def attachment_id(item: dict[str, Any]) -> str:
    """The id a `reference` attachment takes: the GUID inside the driveItem's eTag (`"{GUID},N"`)."""
    match = _ETAG_GUID.search(str(item.get("eTag") or ""))
    if match is None:
        raise GraphError("the uploaded file has no eTag to attach it by", status=0, code="NoETag",
                         hint="try sending the file again")
    return match.group(1)


def share_id(url: str) -> str:
    """shares-get, "Encoding sharing URLs": `u!` + the URL in base64url without padding."""
    return "u!" + base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


async def shared_item(graph: GraphClient, url: str) -> dict[str, Any]:
    """The driveItem a file link (a `reference` attachment's contentUrl) names, as the agent may see it."""
    return dict(await graph.get(f"/shares/{share_id(url)}/driveItem") or {})


async def shared_content(graph: GraphClient, settings: Settings, url: str, limit: int) -> bytes:
    """A shared file's bytes (at most `limit`); a download redirect is checked and followed without the token."""
    data, _ = await get_content(graph, settings, f"/shares/{share_id(url)}/driveItem/content", limit)
    return data
