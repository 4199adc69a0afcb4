"""Files in OneDrive and SharePoint: refs, finding, listing, reading, writing and sharing them.

Graph calls and file rules, no MCP: `refs` (the `ref` every file tool takes), `items` (a ref
to its driveItem), `listing` (Microsoft Search), `reading` (download to a private temp dir and
`documents.read_document`), `writing` (paths, sites, uploads), `sharing` (invitations), and
`deny` (AGENTSEAT_FILE_DENY_SITES). The tools are in agentseat/tools/files.py.
"""

from __future__ import annotations

from ..config import Settings
from .deny import DenyList
from .items import get_item
from .refs import AttachmentRef, ItemRef, Ref, UrlRef, parse_ref


def deny_list(settings: Settings) -> DenyList:
    return DenyList(settings.file_deny_sites)


__all__ = ["AttachmentRef", "DenyList", "ItemRef", "Ref", "UrlRef", "deny_list", "get_item", "parse_ref"]
