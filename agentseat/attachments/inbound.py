"""What an inbound chatMessage carries besides text: inline images, file references, cards.

Shapes from Graph v1.0:
- an inline image (a pasted screenshot) is a chatMessageHostedContent: the html body has
  `<img src=".../hostedContents/{id}/$value">` and `attachments` has no entry for it
  (chatmessagehostedcontent, chat-post-messages "Send message with inline image");
- a file is an attachment of contentType `reference` whose `contentUrl` is the file's
  SharePoint/OneDrive URL (chat-post-messages "Send a message with file attachment"); Graph
  gives no size for it;
- an Adaptive Card is an attachment `application/vnd.microsoft.card.adaptive` whose `content`
  is the card's JSON as a string;
- a quoted reply is a `messageReference` attachment: not something to download, so skipped.

Pure functions of the message JSON: the webhook, the poller and `download_attachment` all
read a message through `parse`, so the ids an event lists are the ids the tool takes.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from .names import safe_id, safe_name

Kind = Literal["image", "file", "card"]
REFERENCE = "reference"
CARD_PREFIX = "application/vnd.microsoft.card."
#: Extensions an alt text must end with to be taken as an image's file name.
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ATTR = re.compile(r"""\b(src|alt)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_HOSTED = re.compile(r"/hostedContents/([^/?#\s]+)/\$value(?:[?#]|$)")


@dataclass(frozen=True)
class Attachment:
    """One downloadable thing in a message: `id` is what `download_attachment` takes."""

    id: str
    name: str
    kind: Kind
    size: int | None = None
    #: file: the contentUrl (SharePoint/OneDrive); card: its JSON text.
    content_url: str = ""
    content: str = ""

    def listing(self) -> dict[str, Any]:
        """The `{id, name, type, size}` an Event and the read tools show."""
        return {"id": self.id, "name": self.name, "type": self.kind, "size": self.size}


def _images(body: Any) -> list[Attachment]:
    if not isinstance(body, dict) or str(body.get("contentType", "")).lower() != "html":
        return []
    found: list[Attachment] = []
    for tag in _IMG.findall(str(body.get("content") or "")):
        attrs = {m.group(1).lower(): html.unescape(m.group(2) if m.group(2) is not None else m.group(3))
                 for m in _ATTR.finditer(tag)}
        match = _HOSTED.search(attrs.get("src", ""))
        hosted_id = safe_id(unquote(match.group(1))) if match else None
        if hosted_id is None or any(a.id == hosted_id for a in found):
            continue
        alt = attrs.get("alt", "").strip()
        n = len(found) + 1
        name = safe_name(alt) if alt.lower().endswith(_IMAGE_EXTS) else f"image-{n}.png"
        found.append(Attachment(hosted_id, name, "image"))
    return found


def _attached(raw: Any) -> list[Attachment]:
    if not isinstance(raw, list):
        return []
    found: list[Attachment] = []
    for item in raw:
        if not isinstance(item, dict) or (att_id := safe_id(item.get("id"))) is None:
            continue
        content_type = str(item.get("contentType") or "")
        if content_type == REFERENCE:
            url = item.get("contentUrl")
            found.append(Attachment(att_id, safe_name(item.get("name"), "file"), "file",
                                    content_url=url if isinstance(url, str) else ""))
        elif content_type.startswith(CARD_PREFIX):
            content = item.get("content")
            text = content if isinstance(content, str) else ""
            found.append(Attachment(att_id, safe_name(item.get("name"), "card.json"), "card",
                                    size=len(text.encode("utf-8")), content=text))
        # messageReference (a quoted reply) and anything else: nothing to download.
    return found


def parse(message: dict[str, Any]) -> list[Attachment]:
    """Every downloadable attachment of a chatMessage, images first, without repeated ids."""
    seen: set[str] = set()
    out: list[Attachment] = []
    for item in _images(message.get("body")) + _attached(message.get("attachments")):
        if item.id not in seen:
            seen.add(item.id)
            out.append(item)
    return out


def listing(message: dict[str, Any]) -> list[dict[str, Any]]:
    """`[{id, name, type, size}]` for a chatMessage: what `Event.attachments` holds."""
    return [a.listing() for a in parse(message)]
