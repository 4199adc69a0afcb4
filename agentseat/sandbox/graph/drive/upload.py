"""Uploading to the sandbox's drives: the simple PUT, and what upload sessions (sessions.py) share with it.

Rules from "Upload small files" (driveitem-put-content: up to 250 MB in one PUT, 201 for a new
file and 200 for a replaced one, `@microsoft.graph.conflictBehavior`, replace by default). The
body streams to a spool file under the state dir and becomes a blob by rename, so a large
upload never sits in memory. Writing needs write access to the file replaced, or else to the
nearest folder above it. "Create a new folder" (driveitem-post-children) lives here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from ...blobs import adopt_blob, spool_path
from ...state import SANDBOX_KEY
from ..auth import graph_route
from ..query import GraphError, graph_errors, json_body, query
from . import store
from .items import BASES, ITEM, PATH, caller, drive_owner, require_reach
from .resources import item_json

if TYPE_CHECKING:
    from ...state import SandboxState

log = structlog.get_logger(__name__)

WRITE_SCOPES = ("Files.ReadWrite", "Files.ReadWrite.All", "Sites.ReadWrite.All")
WRITE_ROLES = ("Files.ReadWrite.All", "Sites.ReadWrite.All")
#: driveitem-put-content: "This method only supports files up to 250 MB in size."
SIMPLE_UPLOAD_MAX = 250 * 1024 * 1024


def target(request: web.Request) -> tuple[str, str, str]:
    """(owner id, folder path, file name) for `root:/{path}`, `items/{parent}:/{name}` or `items/{id}`."""
    sb = request.app[SANDBOX_KEY]
    owner = drive_owner(request)
    require_reach(request, owner, write=True)
    if "path" in request.match_info and "item_id" not in request.match_info:
        path = store.normal_path(request.match_info["path"])
        folder, _, name = path.rpartition("/")
        return owner, folder, name
    ref = request.match_info["item_id"]
    item = store.root(sb, owner) if ref == "root" else store.by_id(sb, ref, store.drive_id_of(owner))
    if "path" in request.match_info:  # items/{parent-id}:/{filename}
        if not item.is_folder:
            raise GraphError(400, "invalidRequest", "The parent item is not a folder.")
        return owner, item.path, store.check_name(request.match_info["path"].strip("/"))
    if item.is_folder:
        raise GraphError(400, "invalidRequest", "Cannot upload content to a folder; name a file.")
    return owner, item.path.rpartition("/")[0], item.name


def may_write(sb: SandboxState, request: web.Request, owner: str, folder_path: str, name: str) -> None:
    """Write access to the file being replaced, or else to the nearest folder above it that exists."""
    path = f"{folder_path}/{name}"
    node = store.by_path(sb, owner, path)
    while node is None:
        path = path.rpartition("/")[0]
        node = store.by_path(sb, owner, path)
    if not store.can_write(sb, node, caller(request)):
        raise store.access_denied()


def conflict_behavior(request: web.Request, default: str = "replace") -> str:
    return query(request, "@microsoft.graph.conflictBehavior") or default


async def stream_to(request: web.Request, path: Path, limit: int, refusal: GraphError) -> int:
    """Append the body to `path` as it arrives, refusing once it passes `limit`; the bytes written.
    On a refusal or a broken connection, what was appended is cut off again."""
    size = 0
    with path.open("ab") as fh:
        start = fh.tell()
        try:
            async for chunk in request.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > limit:
                    raise refusal
                fh.write(chunk)
        except BaseException:
            fh.truncate(start)
            raise
    return size


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def put_content(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    owner, folder, name = target(request)
    may_write(sb, request, owner, folder, name)
    conflict = conflict_behavior(request)
    store.check_conflict(sb, owner, folder, name, conflict)
    spool = spool_path(sb.state_dir)
    try:
        await stream_to(request, spool, SIMPLE_UPLOAD_MAX, GraphError(
            413, "invalidRequest", f"The file is over the {SIMPLE_UPLOAD_MAX // 2**20} MB simple upload limit; "
            "use an upload session (createUploadSession).", "maxFileSizeExceeded"))
        blob, size = adopt_blob(sb.state_dir, spool)
    finally:
        spool.unlink(missing_ok=True)
    item, created = store.write_blob(sb, owner, folder, name, blob, size, conflict=conflict,
                                     actor=caller(request) or owner)
    return web.json_response(item_json(sb, item), status=201 if created else 200)


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def create_folder(request: web.Request) -> web.Response:
    """driveitem-post-children: `{"name", "folder": {}}` makes a folder (201); conflictBehavior fail
    unless the body says replace or rename."""
    sb = request.app[SANDBOX_KEY]
    owner = drive_owner(request)
    require_reach(request, owner, write=True)
    if "item_id" in request.match_info and request.match_info["item_id"] != "root":
        parent = store.by_id(sb, request.match_info["item_id"], store.drive_id_of(owner))
    else:
        parent = store.by_path(sb, owner, request.match_info.get("path", ""))
        if parent is None:
            raise store.not_found()
    if not parent.is_folder:
        raise GraphError(400, "invalidRequest", "The parent item is not a folder.")
    if not store.can_write(sb, parent, caller(request)):
        raise store.access_denied()
    data = await json_body(request)
    name = data.get("name")
    if not isinstance(name, str) or not isinstance(data.get("folder"), dict):
        raise GraphError(400, "invalidRequest", "Give 'name' and 'folder': {} to make a folder.")
    conflict = str(data.get("@microsoft.graph.conflictBehavior") or "fail")
    folder = store.new_folder(sb, owner, parent, store.check_name(name), conflict, actor=caller(request) or owner)
    return web.json_response(item_json(sb, folder), status=201)


def routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = []
    for base in BASES:
        out += [
            web.post(f"{base}/root/children", create_folder),
            web.post(f"{base}/root:/{PATH}:/children", create_folder),
            web.post(f"{base}/items/{ITEM}/children", create_folder),
            web.put(f"{base}/root:/{PATH}:/content", put_content),
            web.put(f"{base}/items/{ITEM}:/{PATH}:/content", put_content),
            web.put(f"{base}/items/{ITEM}/content", put_content),
        ]
    return out
