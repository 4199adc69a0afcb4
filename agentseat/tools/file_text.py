"""A driveItem's text as a tool returns it: metadata, and the content wrapped as untrusted data.

Shared by read_file and download_attachment, so a file reads the same whichever way it came.
Text goes inside `wrap_untrusted` (source `file:{ref}`, the last editor as sender); file names,
editors and reader notes are neutralised; an image comes back as MCP image content.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..files.reading import limits_for, read_item
from ..files.refs import ItemRef
from ..graph.client import GraphClient
from ..runtime.normalize import TrustPolicy
from .base import ToolImage, neutralise, wrap_untrusted


def _editor(item: dict[str, Any]) -> tuple[str, str, str]:
    """(name, id, email) of the file's last editor, as Graph reports it."""
    by = item.get("lastModifiedBy")
    user = by.get("user") if isinstance(by, dict) else None
    if not isinstance(user, dict):
        return "", "", ""
    return (str(user.get("displayName") or user.get("email") or ""), str(user.get("id") or ""),
            str(user.get("email") or ""))


def file_view(ref: ItemRef, item: dict[str, Any]) -> dict[str, Any]:
    """The metadata a file tool shows: ref, name, size, type, link, last change."""
    file = item.get("file") if isinstance(item.get("file"), dict) else {}
    name, _, _ = _editor(item)
    return {"ref": str(ref), "name": neutralise(str(item.get("name") or "")),
            "size": item.get("size") if isinstance(item.get("size"), int) else None,
            "mime_type": file.get("mimeType"), "web_url": item.get("webUrl"),
            "modified_at": item.get("lastModifiedDateTime"), "modified_by": neutralise(name)}


async def read_for_tool(graph: GraphClient, settings: Settings, policy: TrustPolicy, ref: ItemRef,
                        item: dict[str, Any]) -> dict[str, Any] | ToolImage:
    """Read the file; its view with `text` (untrusted-wrapped) or, for an image, the image."""
    doc = await read_item(graph, settings, ref, item, limits_for(settings))
    view = file_view(ref, item) | {"kind": doc.kind, "truncated": doc.truncated,
                                   "notes": [neutralise(n) for n in doc.notes]}
    view |= {k: v for k, v in (("pages", doc.pages), ("sheets", doc.sheets), ("slides", doc.slides)) if v is not None}
    if doc.kind == "image" and doc.data is not None:
        return ToolImage(doc.data, doc.mime or "application/octet-stream", view | {"mime_type": doc.mime})
    name, editor_id, email = _editor(item)
    trust = policy.trust(editor_id, email) if editor_id or email else "external"
    if policy.is_own(editor_id, email):
        trust = "agent"
    view["text"] = wrap_untrusted(doc.markdown, source=f"file:{ref}", sender=neutralise(name) or "unknown",
                                  at=str(item.get("lastModifiedDateTime") or ""), trust=trust)
    return view
