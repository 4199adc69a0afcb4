"""Finding a file in Graph: a ref (or a link) to its driveItem, checked against the deny-list.

Graph v1.0 pages: driveitem-get (`/drives/{drive-id}/items/{item-id}`), shares-get (a sharing
link or file URL as `u!` + unpadded base64url, `/shares/{id}/driveItem`). A link's host is
checked before any request (graph/hosts.py), and a denied site is refused before and after.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import GraphError, NotFoundError, ToolInputError
from ..graph.client import GraphClient
from ..graph.drive import share_id
from ..graph.hosts import check_content_url
from .deny import DenyList, refusal
from .refs import HELP, ItemRef, UrlRef, item_ref


def not_reachable(exc: GraphError, what: str) -> Exception:
    """Graph's 403/404 for a file as what the model can act on; anything else as it is."""
    if isinstance(exc, NotFoundError):
        return ToolInputError(f"no file {what} that the agent can see (deleted, moved, or never shared with it)",
                              hint=HELP)
    if exc.status == 403:
        return ToolInputError(f"{what} is not shared with the agent", hint="ask its owner to share it with the agent")
    if exc.code == "ForeignHost":
        return ToolInputError(exc.message, hint="give a SharePoint or OneDrive link")
    return exc


async def get_item(graph: GraphClient, settings: Settings, deny: DenyList, ref: ItemRef | UrlRef,
                   verb: str = "read") -> tuple[ItemRef, dict[str, Any]]:
    """The driveItem `ref` names and its `{drive_id}/{item_id}`; a denied site is refused."""
    try:
        if isinstance(ref, UrlRef):
            if deny.url_denied(ref.url):
                raise refusal(verb)
            url = check_content_url(ref.url, settings.graph_host, "a file link")
            item = dict(await graph.get(f"/shares/{share_id(url)}/driveItem") or {})
        else:
            item = dict(await graph.get(ref.path) or {})
    except GraphError as exc:
        raise not_reachable(exc, "the link" if isinstance(ref, UrlRef) else repr(str(ref))) from exc
    deny.check_item(item, verb)
    found = item_ref(item) or (ref if isinstance(ref, ItemRef) else None)
    if found is None:
        raise ToolInputError("Graph did not say which drive the file is in", hint="try its sharing link again")
    return found, item
