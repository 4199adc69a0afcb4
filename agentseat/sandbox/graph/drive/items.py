"""Reading the sandbox's OneDrive through Graph: drives, items by id or path, children, content.

Rules from "Get a driveItem" (driveitem-get: by id or `root:/{path}`), "Download the contents
of a driveItem" (driveitem-get-content: `302 Found` to a pre-authenticated download URL, which
needs no Authorization header) and "List children". Someone who may not read an item gets
403 accessDenied; an unknown one 404 itemNotFound. The download URL is served here too: it is
the sandbox's stand-in for SharePoint's own host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from ...responses import odata
from ...state import SANDBOX_KEY
from ..auth import graph_route, principal
from ..query import GraphError, bad_request, graph_errors
from . import store
from .resources import drive_json, item_for_download, item_json

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem

READ_SCOPES = ("Files.Read", "Files.ReadWrite", "Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All",
               "Sites.ReadWrite.All")
READ_ROLES = ("Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All")
#: The three ways Graph names a drive: the caller's, a user's, or a drive id.
BASES = ("/v1.0/me/drive", "/v1.0/users/{user_id}/drive", "/v1.0/drives/{drive_id}")
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
        for user in sb.tenant.users.values():
            if store.drive_id_of(user.id) == wanted:
                return user.id
        raise store.not_found(f"Drive '{wanted}' was not found.")
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


def addressed_item(request: web.Request) -> DriveItem:
    """The item a route names by `{item_id}` or `root:/{path}`, readable by the caller."""
    sb = request.app[SANDBOX_KEY]
    owner = drive_owner(request)
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
    return web.json_response(drive_json(request.app[SANDBOX_KEY], drive_owner(request)))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def get_item(request: web.Request) -> web.Response:
    return web.json_response(item_json(request.app[SANDBOX_KEY], addressed_item(request)))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def get_root(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    return web.json_response(item_json(sb, store.readable(sb, store.root(sb, drive_owner(request)),
                                                          caller(request))))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def list_children(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    folder = addressed_item(request)
    if not folder.is_folder:
        return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#Collection(driveItem)", []))
    values = []
    for child in sorted(store.children(sb, folder), key=lambda c: c.name.lower()):
        body = item_json(sb, child)
        body.pop("@odata.context", None)
        values.append(body)
    context = f"https://graph.microsoft.com/v1.0/$metadata#drives('{folder.drive_id}')/items('{folder.id}')/children"
    return web.json_response(odata(context, values))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def get_content(request: web.Request) -> web.Response:
    return redirect_to_content(request.app[SANDBOX_KEY], addressed_item(request))


async def download(request: web.Request) -> web.StreamResponse:
    """The pre-authenticated download URL: the bytes, no token needed (nor looked at)."""
    sb = request.app[SANDBOX_KEY]
    item = item_for_download(sb, request.match_info["token"])
    if item is None or item.is_folder:
        return web.json_response({"error": {"code": "itemNotFound", "message": "The download URL is invalid or "
                                            "has expired; get a new one from the driveItem."}}, status=404)
    return web.Response(body=store.content(sb, item), content_type=item.mime_type or "application/octet-stream",
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(item.name)}"})


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
            web.get("/v1.0/drives/{drive_id}", get_drive)]
    return out
