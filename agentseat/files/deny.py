"""`AGENTSEAT_FILE_DENY_SITES`: SharePoint sites the agent never reads from or writes to.

An entry is a site URL (`https://contoso.sharepoint.com/sites/Legal`: everything under that
path, on that host) or a site id (site resource: "a composite ID of: site collection hostname,
site collection unique ID, site unique ID"; either GUID alone names it too). A driveItem is
matched by its `parentReference.siteId` and by its `webUrl`, a site by its `id` and `webUrl`,
so a file reached through a sharing link or a search hit is refused like one named by id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ToolInputError

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _url_key(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if not parts.netloc:
        return None
    path = unquote(parts.path).rstrip("/").lower()
    return parts.netloc.lower(), path


class DenyList:
    def __init__(self, entries: Iterable[str]) -> None:
        self._urls: list[tuple[str, str]] = []
        self._guids: set[str] = set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            if entry.lower().startswith(("https://", "http://")):
                if (key := _url_key(entry)) is not None:
                    self._urls.append(key)
            else:
                self._guids |= set(_GUID.findall(entry.lower()))

    def __bool__(self) -> bool:
        return bool(self._urls or self._guids)

    def url_denied(self, url: str | None) -> bool:
        """Whether `url` lies under a denied site URL (whole path segments only)."""
        key = _url_key(url or "")
        if key is None:
            return False
        host, path = key
        return any(host == h and (path == p or path.startswith(p + "/")) for h, p in self._urls)

    def site_denied(self, site_id: str | None) -> bool:
        return bool(site_id) and bool(self._guids & set(_GUID.findall(str(site_id).lower())))

    def item_denied(self, item: dict[str, Any]) -> bool:
        parent = item.get("parentReference")
        site = parent.get("siteId") if isinstance(parent, dict) else None
        return self.site_denied(site if isinstance(site, str) else None) or self.url_denied(
            str(item.get("webUrl") or ""))

    def check_item(self, item: dict[str, Any], verb: str) -> None:
        if self.item_denied(item):
            raise refusal(verb)

    def check_site(self, site: dict[str, Any], verb: str) -> None:
        if self.site_denied(str(site.get("id") or "")) or self.url_denied(str(site.get("webUrl") or "")):
            raise refusal(verb)


def refusal(verb: str) -> ToolInputError:
    return ToolInputError(f"refused: the agent may not {verb} files in this SharePoint site "
                          "(it is in AGENTSEAT_FILE_DENY_SITES)",
                          hint="use a file from another site, or ask the person who runs the agent")
