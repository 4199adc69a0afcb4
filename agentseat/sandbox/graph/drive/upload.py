"""Uploading to the sandbox's drives: simple PUT and resumable upload sessions, streamed to disk.

Rules from "Upload small files" (driveitem-put-content: up to 250 MB in one PUT, 201 for a new
file and 200 for a replaced one, `@microsoft.graph.conflictBehavior`) and "Upload large files
with an upload session" (driveitem-createuploadsession): the session's `uploadUrl` is
pre-authenticated; byte ranges go in order with `Content-Range: bytes a-b/total`, each but the
last a multiple of 320 KiB and none over 60 MiB; 202 with `nextExpectedRanges` until the last
byte, then 201/200 with the driveItem; a range already received is 416 invalidRange
(innerError fragmentOverlap), one that skips ahead too ("fragments must be uploaded sequentially
in order": fragmentOutOfOrder); an expired session 404 itemNotFound (uploadSessionNotFound); GET
on the URL reports `nextExpectedRanges`, DELETE cancels it (204). The session's conflictBehavior
defaults to fail, checked when the session is made and again at commit (409 nameAlreadyExists).
With `deferCommit: true` the last byte answers 202 and a zero-length POST to the URL commits.
An Authorization header on the upload URL "may result in 401"; the sandbox ignores it.

Bodies stream to a part file under the state dir and become a blob by rename, so a 100 MB
upload never sits in memory; a fragment that fails half-way is cut back off the part file.
Error code details: OneDrive "Error responses" (detailed codes in innerError).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from ...blobs import adopt_blob, part_path, spool_path
from ...clock import iso
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


def _may_write(sb: SandboxState, request: web.Request, owner: str, folder_path: str, name: str) -> None:
    """Write access to the file being replaced, or else to the nearest folder above it that exists."""
    path = f"{folder_path}/{name}"
    node = store.by_path(sb, owner, path)
    while node is None:
        path = path.rpartition("/")[0]
        node = store.by_path(sb, owner, path)
    if not store.can_write(sb, node, caller(request)):
        raise store.access_denied()


def _conflict(request: web.Request, default: str = "replace") -> str:
    return query(request, "@microsoft.graph.conflictBehavior") or default


async def _stream_to(request: web.Request, path: Path, limit: int, refusal: GraphError) -> int:
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
    owner, folder, name = _target(request)
    _may_write(sb, request, owner, folder, name)
    conflict = _conflict(request)
    store.check_conflict(sb, owner, folder, name, conflict)
    spool = spool_path(sb.state_dir)
    try:
        await _stream_to(request, spool, SIMPLE_UPLOAD_MAX, GraphError(
            413, "invalidRequest", f"The file is over the {SIMPLE_UPLOAD_MAX // 2**20} MB simple upload limit; "
            "use an upload session (createUploadSession).", "maxFileSizeExceeded"))
        blob, size = adopt_blob(sb.state_dir, spool)
    finally:
        spool.unlink(missing_ok=True)
    item, created = store.write_blob(sb, owner, folder, name, blob, size, conflict=conflict,
                                     actor=caller(request) or owner)
    return web.json_response(item_json(sb, item), status=201 if created else 200)


# --- upload sessions ----------------------------------------------------------------------------------------
def _session_json(sb: SandboxState, session: UploadSession) -> dict[str, object]:
    done = session.total is not None and session.received >= session.total
    return {"expirationDateTime": iso(session.expiration),
            "nextExpectedRanges": [] if done else [f"{session.received}-"]}


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def create_session(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    owner, folder, name = _target(request)
    _may_write(sb, request, owner, folder, name)
    item: dict[str, object] = {}
    defer = False
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError as exc:
            raise bad_request("Unable to read JSON request payload.") from exc
        item = (body.get("item") or {}) if isinstance(body, dict) else {}
        defer = isinstance(body, dict) and body.get("deferCommit") is True
    if not isinstance(item, dict):
        raise bad_request("'item' must be a driveItemUploadableProperties object.")
    # driveitem-createuploadsession: conflictBehavior "fail (default) | replace | rename".
    conflict = str(item.get("@microsoft.graph.conflictBehavior") or _conflict(request, "fail"))
    if conflict not in ("replace", "fail", "rename"):
        raise GraphError(400, "invalidRequest", f"Invalid conflict behavior '{conflict}'.")
    store.check_conflict(sb, owner, folder, name, conflict)
    session = UploadSession(id=secrets.token_hex(16), drive_id=store.drive_id_of(owner), owner_id=owner,
                            parent_path=folder, name=name, conflict=conflict,
                            expiration=sb.clock.now() + SESSION_SECONDS, defer_commit=defer)
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
    if session is not None and session.expiration < sb.clock.now():
        _drop(sb, session)  # an expired session's bytes are gone, as OneDrive cleans them up
        session = None
    if session is None:
        raise GraphError(404, "itemNotFound", "The upload session was not found or has expired; create a new one.",
                         "uploadSessionNotFound")
    return session


def _drop(sb: SandboxState, session: UploadSession) -> None:
    part_path(sb.state_dir, session.id).unlink(missing_ok=True)
    sb.tenant.upload_sessions.pop(session.id, None)
    sb.mark_dirty()


def _finish(sb: SandboxState, session: UploadSession) -> tuple[DriveItem, bool]:
    """Commit: the part file becomes the file (409 if `fail` meets a name taken meanwhile)."""
    store.check_conflict(sb, session.owner_id, session.parent_path, session.name, session.conflict)
    blob, size = adopt_blob(sb.state_dir, part_path(sb.state_dir, session.id))
    item, created = store.write_blob(sb, session.owner_id, session.parent_path, session.name, blob, size,
                                     conflict=session.conflict)
    _drop(sb, session)
    log.info("upload_session_committed", session=session.id, size=size)
    return item, created


def _fragment(request: web.Request, session: UploadSession) -> tuple[int, int, int]:
    """(start, end, total) from Content-Range, checked against the session and the fragment rules."""
    match = _RANGE.match(request.headers.get("Content-Range", "").strip())
    if match is None:
        raise GraphError(400, "invalidRequest", "Content-Range must be 'bytes {start}-{end}/{total}'.",
                         "invalidParameterFormat")
    start, end, total = (int(g) for g in match.groups())
    if end < start or end >= total or (session.total is not None and total != session.total):
        raise GraphError(400, "invalidRequest", "The Content-Range is inconsistent with the upload session.",
                         "fragmentLengthMismatch")
    length = end - start + 1
    if length > FRAGMENT_MAX:
        raise GraphError(400, "invalidRequest", "A fragment must be less than 60 MiB.", "maxFragmentLengthExceeded")
    if start < session.received:
        raise GraphError(416, "invalidRange", "Uploaded fragment overlaps with existing data; the next expected "
                         f"range starts at {session.received}.", "fragmentOverlap")
    if start > session.received:
        raise GraphError(416, "invalidRange", "Uploaded fragment is out of order; the next expected range starts "
                         f"at {session.received}.", "fragmentOutOfOrder")
    if end != total - 1 and length % FRAGMENT_UNIT:
        raise GraphError(400, "invalidRequest", "Each fragment but the last must be a multiple of 320 KiB "
                         "(327,680 bytes).", "invalidRange")
    return start, end, total


async def _fault(request: web.Request, sb: SandboxState, length: int) -> web.Response | None:
    """An armed upload fault (faults.py): a 5xx, or a connection cut after half the fragment."""
    fault = sb.faults.upload_fault()
    if fault is None:
        return None
    log.info("upload_fault_injected", drop=fault.drop, status=fault.status)
    if not fault.drop:
        return graph_error(fault.status, "serviceNotAvailable", "The service is not available. Try the request "
                           "again after a delay.", headers={"Retry-After": "1"}, request=request)
    seen = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        seen += len(chunk)
        if seen >= length // 2:
            break
    if request.transport is not None:
        request.transport.abort()  # the client sees the connection drop mid-request
    return web.Response(status=500)  # never reaches the client: its connection is gone


async def upload_fragment(request: web.Request) -> web.Response:
    """PUT a byte range to the pre-authenticated upload URL (no Authorization header is needed)."""
    sb = request.app[SANDBOX_KEY]
    try:
        session = _live_session(sb, request.match_info["session_id"])
        if session.total is not None and session.received >= session.total:
            raise GraphError(416, "invalidRange", "Every byte has been received; commit the upload with a "
                             "zero-length POST to the upload URL.", "fragmentOverlap")
        start, end, total = _fragment(request, session)
        length = end - start + 1
        if (faulted := await _fault(request, sb, length)) is not None:
            return faulted
        wrote = await _stream_to(request, part_path(sb.state_dir, session.id), length, GraphError(
            400, "invalidRequest", "The body is longer than the Content-Range.", "fragmentLengthMismatch"))
        if wrote != length:
            with part_path(sb.state_dir, session.id).open("ab") as fh:
                fh.truncate(start)
            raise GraphError(400, "invalidRequest", "The body length does not match the Content-Range.",
                             "fragmentLengthMismatch")
        session.received, session.total = end + 1, total
        session.expiration = sb.clock.now() + SESSION_SECONDS
        sb.mark_dirty()
        if end != total - 1 or session.defer_commit:
            return web.json_response(_session_json(sb, session), status=202)
        item, created = _finish(sb, session)
    except GraphError as exc:
        return exc.response(request)
    return web.json_response(item_json(sb, item), status=201 if created else 200)


async def commit_session(request: web.Request) -> web.Response:
    """deferCommit: a zero-length POST to the upload URL once every byte is in makes the file."""
    sb = request.app[SANDBOX_KEY]
    try:
        session = _live_session(sb, request.match_info["session_id"])
        if session.total is None or session.received < session.total:
            raise GraphError(400, "invalidRequest", "The upload is incomplete; send the missing byte ranges first.",
                             "uploadSessionIncomplete")
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
    session = sb.tenant.upload_sessions.get(request.match_info["session_id"])
    if session is None:
        return graph_error(404, "itemNotFound", "The upload session was not found.", request=request,
                           inner_code="uploadSessionNotFound")
    _drop(sb, session)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = [web.put(f"{UPLOAD_PATH}{{session_id}}", upload_fragment),
                               web.get(f"{UPLOAD_PATH}{{session_id}}", session_status),
                               web.post(f"{UPLOAD_PATH}{{session_id}}", commit_session),
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
