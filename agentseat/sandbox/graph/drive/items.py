"""Reading the sandbox's drives through Graph: drives, items by id or path, children, content.

Rules from "Get a driveItem" (driveitem-get: by id or `root:/{path}`), "Download the contents
of a driveItem" (driveitem-get-content: `302 Found` to a pre-authenticated download URL, which
needs no Authorization header; served from disk, byte ranges included) and "List children" (pages of
`$top`, then `@odata.nextLink`). A drive is a user's OneDrive or a site's library (`/sites/{site-id}/drive`,
sites.py); access is access.py's rule. Someone who may not read an item gets
403 accessDenied; an unknown one 404 itemNotFound. The download URL is served here too: it is
the sandbox's stand-in for SharePoint's own host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from aiohttp import web

from ...responses import odata
from ...state import SANDBOX_KEY
from ..auth import graph_route, principal
from ..query import GraphError, bad_request, carry_query, decode_token, encode_token, graph_errors, link, query, top
from . import store
from .resources import drive_json, item_for_download, item_json
from .sites import site_by_ref, visible

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem

READ_SCOPES = ("Files.Read", "Files.ReadWrite", "Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All",
               "Sites.ReadWrite.All")
READ_ROLES = ("Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All")
#: The ways Graph names a drive: the caller's, a user's, a drive id, or a site's default library
#: (driveitem-get: /sites/{siteId}/drive/items/{itemId}; a site drive is a drive like any other).
BASES = ("/v1.0/me/drive", "/v1.0/users/{user_id}/drive", "/v1.0/drives/{drive_id}", "/v1.0/sites/{site_id}/drive")
#: driveitem-list-children: pages of 200 unless `$top` says otherwise; the rest by @odata.nextLink.
PAGE_DEFAULT, PAGE_MAX = 200, 1000
T = TypeVar("T")
PATH = "{path:[^:]+}"  # OneDrive names cannot hold ':' (naming rules), so ':' ends a path segment
ITEM = "{item_id:[^/:]+}"


def caller(request: web.Request) -> str | None:
    """The signed-in user, or None for an app-only caller (tenant-wide roles)."""
    who = principal(request)
    return who.oid if who.kind == "user" else None


def drive_owner(request: web.Request) -> str:
    """Whose drive the path addresses: `/me`, `/users/{id|upn}` or `/drives/{drive-id}`."""
    sb = request.app[SANDBOX_KEY]
    if "drive_id" in request.match_info:
        wanted = request.match_info["drive_id"]
        for owner in [*sb.tenant.users, *sb.tenant.sites]:
            if store.drive_id_of(owner) == wanted:
                return owner
        raise store.not_found(f"Drive '{wanted}' was not found.")
    if "site_id" in request.match_info:
        return site_by_ref(sb, request.match_info["site_id"]).guid
    if "user_id" in request.match_info:
        user = sb.tenant.user(request.match_info["user_id"])
        if user is None:
            raise store.not_found(f"User '{request.match_info['user_id']}' was not found.")
        return user.id
    who = caller(request)
    if who is None:
        raise bad_request("/me request is only valid with delegated authentication flow.")
    return who


def _drive_id(request: web.Request) -> str:
    return store.drive_id_of(drive_owner(request))


#: Files.Read and Files.ReadWrite reach "the signed-in user's files"; another person's drive or a
#: site's library needs an `.All` permission (permissions reference; drive-sharedwithme: "You can't
#: access shared items ... if the request doesn't contain one of the *.All permissions").
REACH_READ = ("Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All")
REACH_WRITE = ("Files.ReadWrite.All", "Sites.ReadWrite.All")


def require_reach(request: web.Request, owner: str, *, write: bool = False) -> None:
    """403 accessDenied when a delegated caller without an `.All` scope reaches past their own drive."""
    who = principal(request)
    if who.kind != "user" or owner == who.oid:
        return
    wanted = REACH_WRITE if write else REACH_READ
    if not who.scopes.intersection(wanted):
        raise GraphError(403, "accessDenied", "Files outside the signed-in user's own drive need one of "
                         f"{', '.join(wanted)}.")


def addressed_item(request: web.Request, *, write: bool = False) -> DriveItem:
    """The item a route names by `{item_id}` or `root:/{path}`, readable by the caller (and within
    the reach of their scopes for reading, or with `write` for changing it)."""
    sb = request.app[SANDBOX_KEY]
    owner = drive_owner(request)
    require_reach(request, owner, write=write)
    if "item_id" in request.match_info:
        ref = request.match_info["item_id"]
        item = store.root(sb, owner) if ref == "root" else store.by_id(sb, ref, store.drive_id_of(owner))
    else:
        found = store.by_path(sb, owner, request.match_info.get("path", ""))
        if found is None:
            raise store.not_found()
        item = found
    return store.readable(sb, item, caller(request))


def redirect_to_content(sb: SandboxState, item: DriveItem) -> web.Response:
    """driveitem-get-content: `302 Found` with the pre-authenticated URL in Location."""
    if item.is_folder:
        raise GraphError(400, "invalidRequest", "A folder has no content stream; download a file.")
    url = item_json(sb, item)["@microsoft.graph.downloadUrl"]
    return web.Response(status=302, headers={"Location": url})


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def get_drive(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    owner = drive_owner(request)
    if (site := sb.tenant.sites.get(owner)) is not None:  # a site's library is its members' (sites.py)
        visible(request, site)
    return web.json_response(drive_json(sb, owner))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def get_item(request: web.Request) -> web.Response:
    return web.json_response(item_json(request.app[SANDBOX_KEY], addressed_item(request)))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def get_root(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    owner = drive_owner(request)
    require_reach(request, owner)
    return web.json_response(item_json(sb, store.readable(sb, store.root(sb, owner), caller(request))))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def list_children(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    folder = addressed_item(request)
    if not folder.is_folder:
        return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#Collection(driveItem)", []))
    ordered = sorted(store.children(sb, folder), key=lambda c: c.name.lower())
    page, next_link = page_of(request, ordered, f"children:{folder.id}")
    values = []
    for child in page:
        body = item_json(sb, child)
        body.pop("@odata.context", None)
        values.append(body)
    context = f"https://graph.microsoft.com/v1.0/$metadata#drives('{folder.drive_id}')/items('{folder.id}')/children"
    return web.json_response(odata(context, values, next_link))


def page_of(request: web.Request, ordered: list[T], tag: str) -> tuple[list[T], str | None]:
    """One `$top` page of `ordered` after the request's `$skiptoken`, and the next page's link.

    The token (opaque, MAC'd) holds an offset and the listing it belongs to; Graph's drive
    listings page by `@odata.nextLink` only, so that is all a client may rely on.
    """
    sb = request.app[SANDBOX_KEY]
    size = top(request, default=PAGE_DEFAULT, maximum=PAGE_MAX)
    offset = 0
    if (raw := query(request, "$skiptoken")) is not None:
        state = decode_token(sb, raw)
        if state is None or state.get("l") != tag:
            raise bad_request("The $skiptoken is invalid or has expired.")
        offset = int(state.get("o", 0))
    page = ordered[offset:offset + size]
    if offset + size >= len(ordered):
        return page, None
    token = encode_token(sb, {"l": tag, "o": offset + size})
    return page, link(sb, request, {**carry_query(request, "$skiptoken"), "$skiptoken": token})


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def get_content(request: web.Request) -> web.Response:
    return redirect_to_content(request.app[SANDBOX_KEY], addressed_item(request))


async def download(request: web.Request) -> web.StreamResponse:
    """The pre-authenticated download URL: the bytes, streamed from disk, no token needed (nor looked at)."""
    sb = request.app[SANDBOX_KEY]
    item = item_for_download(sb, request.match_info["token"])
    if item is None or item.is_folder:
        return web.json_response({"error": {"code": "itemNotFound", "message": "The download URL is invalid or "
                                            "has expired; get a new one from the driveItem."}}, status=404)
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(item.name)}",
               "Content-Type": item.mime_type or "application/octet-stream"}
    path = store.content_path(sb, item)
    if path is None:
        return web.Response(body=b"", headers=headers)
    return web.FileResponse(path, headers=headers)


def routes() -> list[web.RouteDef]:
    """Content and `:/`-terminated forms first: a bare `root:/{path}` must not swallow them."""
    out: list[web.RouteDef] = [web.get("/_sandbox/download/{token}", download)]
    for base in BASES:
        out += [
            web.get(f"{base}/root:/{PATH}:/content", get_content),
            web.get(f"{base}/items/{ITEM}/content", get_content),
            web.get(f"{base}/root:/{PATH}:/children", list_children),
            web.get(f"{base}/items/{ITEM}/children", list_children),
            web.get(f"{base}/root/children", list_children),
            web.get(f"{base}/root:/{PATH}:", get_item),
            web.get(f"{base}/root:/{PATH}", get_item),
            web.get(f"{base}/items/{ITEM}", get_item),
            web.get(f"{base}/root", get_root),
        ]
    out += [web.get("/v1.0/me/drive", get_drive), web.get("/v1.0/users/{user_id}/drive", get_drive),
            web.get("/v1.0/drives/{drive_id}", get_drive), web.get("/v1.0/sites/{site_id}/drive", get_drive)]
    return out
