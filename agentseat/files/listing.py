"""Listing files: what is shared with the agent, what changed recently, what is in its own drive.

Microsoft deprecated `GET /me/drive/sharedWithMe` (drive-sharedwithme: "will stop returning data
after November, 2027") and `GET /me/drive/recent` (drive-recent: no data after November 2026),
and stopped improving the drive `search(q=)` APIs in favour of Microsoft Search
("Transition to Microsoft Graph Search endpoint for OneDrive and SharePoint"). So every scope
is one `POST /search/query` with `entityTypes: ["driveItem"]` (search-concept-files), over what
the agent may open, then narrowed by drive:
- `shared`: files in drives other than the agent's own OneDrive (shared with it, or in sites
  it belongs to);
- `recent`: every file it may open, newest change first (`sortProperties`
  lastModifiedDateTime descending, search-concept-sort);
- `mine`: files in its own OneDrive.
Search sees a new file once it is indexed (minutes in a real tenant). Deny-listed sites are
dropped from every answer.
"""

from __future__ import annotations

from typing import Any, Literal

from ..graph.client import GraphClient
from .deny import DenyList
from .refs import item_ref

Scope = Literal["shared", "recent", "mine"]
#: searchRequest.size: "The maximum value is 500".
SEARCH_MAX = 500
#: With no query: documents only (KQL `IsDocument:true`), not folders or pages.
EVERYTHING = "isDocument:true"


def search_request(scope: Scope, query: str | None, size: int) -> dict[str, Any]:
    request: dict[str, Any] = {"entityTypes": ["driveItem"], "query": {"queryString": query or EVERYTHING},
                               "from": 0, "size": size}
    if scope == "recent":
        request["sortProperties"] = [{"name": "lastModifiedDateTime", "isDescending": True}]
    return request


def _who(identity: Any) -> str:
    user = identity.get("user") if isinstance(identity, dict) else None
    if not isinstance(user, dict):
        return ""
    return str(user.get("displayName") or user.get("email") or "")


def summary(resource: dict[str, Any]) -> dict[str, Any] | None:
    """One file as list_files shows it; None for a folder or an item without a drive."""
    ref = item_ref(resource)
    if ref is None or "folder" in resource:
        return None
    file = resource.get("file") if isinstance(resource.get("file"), dict) else {}
    parent = resource.get("parentReference") if isinstance(resource.get("parentReference"), dict) else {}
    return {"ref": str(ref), "name": str(resource.get("name") or ""), "size": resource.get("size"),
            "mime_type": file.get("mimeType"), "modified_at": resource.get("lastModifiedDateTime"),
            "modified_by": _who(resource.get("lastModifiedBy")), "web_url": resource.get("webUrl"),
            "site_id": parent.get("siteId")}


async def my_drive_id(graph: GraphClient) -> str:
    return str((await graph.get("/me/drive", **{"$select": "id"}) or {}).get("id") or "")


async def list_files(graph: GraphClient, deny: DenyList, scope: Scope, query: str | None, limit: int,
                     own_drive: str) -> dict[str, Any]:
    """Up to `limit` files of `scope` matching `query`, and whether there are more."""
    size = min(SEARCH_MAX, max(limit * 4, 50)) if scope != "recent" else min(SEARCH_MAX, limit * 2)
    body = await graph.post("/search/query", {"requests": [search_request(scope, query, size)]})
    files: list[dict[str, Any]] = []
    more = False
    for answer in (body or {}).get("value", []):
        for container in answer.get("hitsContainers", []) or []:
            more = more or bool(container.get("moreResultsAvailable"))
            for hit in container.get("hits", []) or []:
                resource = hit.get("resource") if isinstance(hit, dict) else None
                if not isinstance(resource, dict) or deny.item_denied(resource):
                    continue
                view = summary(resource)
                if view is None:
                    continue
                mine = view["ref"].split("/", 1)[0] == own_drive
                if (scope == "mine" and not mine) or (scope == "shared" and mine):
                    continue
                files.append(view)
    return {"files": files[:limit], "more": more or len(files) > limit}
