"""Files shared with the agent by mail: the links in a sharing notice, as attachments.

When someone shares a file and sends an invitation (driveitem-invite, `sendInvitation: true`),
the recipient gets a mail whose body links to the file on SharePoint or OneDrive. Each such
link (Graph or SharePoint hosts only: graph/hosts.py) is listed like a chat attachment, with
the Graph share id as its id: `u!` + the link in unpadded base64url (shares-get, "Encoding
sharing URLs"). `read_file` takes that id as it is, so nothing about the link is guessed.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from ..graph.hosts import content_host_allowed
from .names import safe_name

_ANCHOR = re.compile(r"""<a\b[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')[^>]*>(.*?)</a\s*>""", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")
#: Link texts that say nothing about the file: the notice's "Open" button and its like.
_GENERIC = frozenset({"open", "view", "open file", "view file", "here", "link"})
#: A notice names one file or a few; more links than this is not a sharing notice.
MAX_LINKS = 10


def share_id(url: str) -> str:
    """Graph's share id for a sharing link or file URL."""
    return "u!" + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def share_url(value: str) -> str | None:
    """The link a share id encodes, or None when `value` is not one."""
    if not value.startswith("u!") or len(value) < 4:
        return None
    raw = value[2:]
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except ValueError:
        return None
    return decoded if decoded.startswith("https://") else None


def listing(body: dict[str, Any] | None, graph_host: str) -> list[dict[str, Any]]:
    """`[{id, name, type: "file", size: None}]` for the Microsoft 365 file links in an html mail body."""
    if not body or str(body.get("contentType", "")).lower() != "html" or not graph_host:
        return []
    names: dict[str, str] = {}
    for match in _ANCHOR.finditer(str(body.get("content") or "")):
        url = html.unescape(match.group(1) or match.group(2) or "").strip()
        if not content_host_allowed(url, graph_host):
            continue
        text = html.unescape(_TAGS.sub("", match.group(3))).strip()
        if url not in names or (names[url].lower() in _GENERIC and text.lower() not in _GENERIC):
            names[url] = text
        if len(names) > MAX_LINKS:
            return []
    return [{"id": share_id(url), "name": safe_name(text if text.lower() not in _GENERIC else "", "shared file"),
             "type": "file", "size": None} for url, text in names.items()]
