"""Uploading to the sandbox's OneDrive: simple PUT and resumable upload sessions.

Rules from "Upload small files" (driveitem-put-content: up to 250 MB in one PUT, 201 for a new
file and 200 for a replaced one, `@microsoft.graph.conflictBehavior`) and "Upload large files
with an upload session" (driveitem-createuploadsession): the session's `uploadUrl` is
pre-authenticated; byte ranges go in order with `Content-Range: bytes a-b/total`, each but the
last a multiple of 320 KiB and none over 60 MiB; 202 with `nextExpectedRanges` until the last
byte, then 201/200 with the driveItem; a range already received is 416 (and, here, one that
skips ahead too: "fragments must be uploaded sequentially in order"); an expired session 404; GET
on the URL reports `nextExpectedRanges`, DELETE cancels it (204). The session's conflictBehavior
defaults to fail, a simple PUT's to replace. An Authorization header on the upload URL "may
result in 401"; the sandbox ignores it.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from ...clock import iso
from ...blobs import part_path
from ...responses import graph_error
from ...state import SANDBOX_KEY
from ...tenant import UploadSession
from ..auth import graph_route
from ..query import GraphError, bad_request, graph_errors, query
from . import store
from .items import BASES, ITEM, PATH, caller, drive_owner
from .resources import item_json

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem

log = structlog.get_logger(__name__)

WRITE_SCOPES = ("Files.ReadWrite", "Files.ReadWrite.All", "Sites.ReadWrite.All")
WRITE_ROLES = ("Files.ReadWrite.All", "Sites.ReadWrite.All")
#: driveitem-put-content: "This method only supports files up to 250 MB in size."
SIMPLE_UPLOAD_MAX = 250 * 1024 * 1024
#: driveitem-createuploadsession: byte ranges in multiples of 320 KiB, "less than 60 MiB" per request.
FRAGMENT_UNIT = 320 * 1024
FRAGMENT_MAX = 60 * 1024 * 1024
#: uploadSession.expirationDateTime; each fragment extends it (the resource page). Ours: 15 minutes.
SESSION_SECONDS = 15 * 60
UPLOAD_PATH = "/_sandbox/upload/"
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def _target(request: web.Request) -> tuple[str, str, str]:
    """(owner id, folder path, file name) for `root:/{path}`, `items/{parent}:/{name}` or `items/{id}`."""
    sb = request.app[SANDBOX_KEY]
    owner = drive_owner(request)
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


def _may_write(sb: SandboxState, request: web.Request, owner: str, folder_path: str) -> None:
    folder = store.by_path(sb, owner, folder_path)
    node = folder or store.root(sb, owner)
    if not store.can_write(sb, node, caller(request)):
        raise store.access_denied()


def _conflict(request: web.Request, default: str = "replace") -> str:
    return query(request, "@microsoft.graph.conflictBehavior") or default


async def _read_limited(request: web.Request, limit: int, refusal: str) -> bytes:
    """The body, streamed, refusing once it passes `limit` (the app's own body cap does not apply here)."""
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise GraphError(413, "invalidRequest", refusal)
        chunks.append(chunk)
    return b"".join(chunks)


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def put_content(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    owner, folder, name = _target(request)
    _may_write(sb, request, owner, folder)
    data = await _read_limited(request, SIMPLE_UPLOAD_MAX, f"The file is over the {SIMPLE_UPLOAD_MAX // 2**20} MB "
                               "simple upload limit; use an upload session (createUploadSession).")
    item, created = store.write_file(sb, owner, folder, name, data, conflict=_conflict(request),
                                     actor=caller(request) or owner)
    return web.json_response(item_json(sb, item), status=201 if created else 200)


# --- upload sessions ----------------------------------------------------------------------------------------
def _session_json(sb: SandboxState, session: UploadSession) -> dict[str, object]:
    return {"expirationDateTime": iso(session.expiration),
            "nextExpectedRanges": [f"{session.received}-"]}


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def create_session(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    owner, folder, name = _target(request)
    _may_write(sb, request, owner, folder)
    item: dict[str, object] = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError as exc:
            raise bad_request("Unable to read JSON request payload.") from exc
        item = (body.get("item") or {}) if isinstance(body, dict) else {}
    if not isinstance(item, dict):
        raise bad_request("'item' must be a driveItemUploadableProperties object.")
    # driveitem-createuploadsession: conflictBehavior "fail (default) | replace | rename".
    conflict = str(item.get("@microsoft.graph.conflictBehavior") or _conflict(request, "fail"))
    if conflict not in ("replace", "fail", "rename"):
        raise GraphError(400, "invalidRequest", f"Invalid conflict behavior '{conflict}'.")
    if conflict == "fail" and any(c.name.lower() == name.lower() for c in
                                  store.children(sb, store.ensure_folder(sb, owner, folder))):
        raise GraphError(409, "nameAlreadyExists", f"The specified item name '{name}' already exists.")
    session = UploadSession(id=secrets.token_hex(16), drive_id=store.drive_id_of(owner), owner_id=owner,
                            parent_path=folder, name=name, conflict=conflict,
                            expiration=sb.clock.now() + SESSION_SECONDS)
    sb.tenant.upload_sessions[session.id] = session
    path = part_path(sb.state_dir, session.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    sb.mark_dirty()
    log.info("upload_session_created", session=session.id)
    return web.json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph."
                              "uploadSession", "uploadUrl": f"{sb.url}{UPLOAD_PATH}{session.id}",
                              **_session_json(sb, session)})


def _live_session(sb: SandboxState, session_id: str) -> UploadSession:
    session = sb.tenant.upload_sessions.get(session_id)
    if session is None or session.expiration < sb.clock.now():
        raise GraphError(404, "itemNotFound", "The upload session was not found or has expired; create a new one.")
    return session


def _finish(sb: SandboxState, session: UploadSession) -> tuple[DriveItem, bool]:
    path = part_path(sb.state_dir, session.id)
    data = path.read_bytes()
    item, created = store.write_file(sb, session.owner_id, session.parent_path, session.name, data,
                                     conflict=session.conflict)
    path.unlink(missing_ok=True)
    del sb.tenant.upload_sessions[session.id]
    sb.mark_dirty()
    return item, created


async def upload_fragment(request: web.Request) -> web.Response:
    """PUT a byte range to the pre-authenticated upload URL (no Authorization header is needed)."""
    sb = request.app[SANDBOX_KEY]
    try:
        session = _live_session(sb, request.match_info["session_id"])
        match = _RANGE.match(request.headers.get("Content-Range", "").strip())
        if match is None:
            raise GraphError(400, "invalidRequest", "Content-Range must be 'bytes {start}-{end}/{total}'.")
        start, end, total = (int(g) for g in match.groups())
        if end < start or end >= total or (session.total is not None and total != session.total):
            raise GraphError(400, "invalidRequest", "The Content-Range is inconsistent with the upload session.")
        length = end - start + 1
        if length > FRAGMENT_MAX:
            raise GraphError(400, "invalidRequest", "A fragment must be less than 60 MiB.")
        if start != session.received:
            raise GraphError(416, "invalidRange", f"The uploaded fragment does not follow the bytes received; "
                             f"the next expected range starts at {session.received}.")
        last = end == total - 1
        if not last and length % FRAGMENT_UNIT:
            raise GraphError(400, "invalidRequest", "Each fragment but the last must be a multiple of 320 KiB "
                             "(327,680 bytes).")
        data = await _read_limited(request, FRAGMENT_MAX, "A fragment must be less than 60 MiB.")
        if len(data) != length:
            raise GraphError(400, "invalidRequest", "The body length does not match the Content-Range.")
    except GraphError as exc:
        return exc.response(request)
    with part_path(sb.state_dir, session.id).open("ab") as fh:
        fh.write(data)
    session.received, session.total = end + 1, total
    session.expiration = sb.clock.now() + SESSION_SECONDS
    sb.mark_dirty()
    if not last:
        return web.json_response(_session_json(sb, session), status=202)
    try:
        item, created = _finish(sb, session)
    except GraphError as exc:
        return exc.response(request)
    return web.json_response(item_json(sb, item), status=201 if created else 200)


async def session_status(request: web.Request) -> web.Response:
    """GET on the upload URL: what is still missing, to resume an interrupted upload."""
    sb = request.app[SANDBOX_KEY]
    try:
        session = _live_session(sb, request.match_info["session_id"])
    except GraphError as exc:
        return exc.response(request)
    return web.json_response(_session_json(sb, session))


async def cancel_session(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    session = sb.tenant.upload_sessions.pop(request.match_info["session_id"], None)
    if session is None:
        return graph_error(404, "itemNotFound", "The upload session was not found.", request=request)
    part_path(sb.state_dir, session.id).unlink(missing_ok=True)
    sb.mark_dirty()
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = [web.put(f"{UPLOAD_PATH}{{session_id}}", upload_fragment),
                               web.get(f"{UPLOAD_PATH}{{session_id}}", session_status),
                               web.delete(f"{UPLOAD_PATH}{{session_id}}", cancel_session)]
    for base in BASES:
        out += [
            web.put(f"{base}/root:/{PATH}:/content", put_content),
            web.put(f"{base}/items/{ITEM}:/{PATH}:/content", put_content),
            web.put(f"{base}/items/{ITEM}/content", put_content),
            web.post(f"{base}/root:/{PATH}:/createUploadSession", create_session),
            web.post(f"{base}/items/{ITEM}:/{PATH}:/createUploadSession", create_session),
            web.post(f"{base}/items/{ITEM}/createUploadSession", create_session),
        ]
    return out
