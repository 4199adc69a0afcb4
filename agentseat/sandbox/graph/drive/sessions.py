"""Upload sessions (driveitem-createuploadsession): resumable uploads in byte ranges, streamed to disk.

The session's `uploadUrl` is pre-authenticated; byte ranges go in order with
`Content-Range: bytes a-b/total` (the same total every time), each but the last a multiple of
320 KiB and every one "less than 60 MiB"; 202 with `nextExpectedRanges` until the last byte,
then 201/200 with the driveItem. A range already received is 416 invalidRange (innerError
fragmentOverlap), one that skips ahead an error too ("fragments must be uploaded sequentially in
order": fragmentOutOfOrder). "If an upload request is disconnected or fails before the request is
completed, all bytes in that request are ignored": a fragment is cut back off the part file.
GET on the URL reports `nextExpectedRanges`; DELETE cancels (204); an expired session is 404
itemNotFound (uploadSessionNotFound) and its bytes are gone. conflictBehavior defaults to fail,
checked at creation and again at commit (409 nameAlreadyExists; the session is then "preserved
until the expiration time" and can be committed under a new name by a PUT with
`@microsoft.graph.sourceUrl`). With `deferCommit: true` the last byte answers 202 and a
zero-length POST to the URL commits. An Authorization header on the URL "may result in 401";
the sandbox ignores it. Detailed codes: OneDrive "Error responses".
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from ...blobs import adopt_blob, part_path
from ...clock import iso
from ...responses import graph_error
from ...state import SANDBOX_KEY
from ...tenant import UploadSession
from ..auth import graph_route
from ..query import GraphError, bad_request, graph_errors, json_body
from . import store
from .items import BASES, ITEM, PATH, caller, drive_owner, require_reach
from .resources import item_json
from .upload import WRITE_ROLES, WRITE_SCOPES, conflict_behavior, may_write, stream_to, target

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem

log = structlog.get_logger(__name__)

#: driveitem-createuploadsession: byte ranges in multiples of 320 KiB, "less than 60 MiB" per request.
FRAGMENT_UNIT = 320 * 1024
FRAGMENT_MAX = 60 * 1024 * 1024
#: uploadSession.expirationDateTime; each fragment extends it (the resource page). Ours: 15 minutes.
SESSION_SECONDS = 15 * 60
UPLOAD_PATH = "/_sandbox/upload/"
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def _session_json(sb: SandboxState, session: UploadSession) -> dict[str, object]:
    done = session.total is not None and session.received >= session.total
    return {"expirationDateTime": iso(session.expiration),
            "nextExpectedRanges": [] if done else [f"{session.received}-"]}


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def create_session(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    owner, folder, name = target(request)
    may_write(sb, request, owner, folder, name)
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
    conflict = str(item.get("@microsoft.graph.conflictBehavior") or conflict_behavior(request, "fail"))
    if conflict not in ("replace", "fail", "rename"):
        raise GraphError(400, "invalidRequest", f"Invalid conflict behavior '{conflict}'.")
    store.check_conflict(sb, owner, folder, name, conflict)
    session = UploadSession(id=secrets.token_hex(16), drive_id=store.drive_id_of(owner), owner_id=owner,
                            parent_path=folder, name=name, conflict=conflict,
                            expiration=sb.clock.now() + SESSION_SECONDS, defer_commit=defer,
                            actor=caller(request) or owner)
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
                                     conflict=session.conflict, actor=session.actor or None)
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
        wrote = await stream_to(request, part_path(sb.state_dir, session.id), length, GraphError(
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


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def commit_from_source(request: web.Request) -> web.Response:
    """"Handle upload errors": `PUT {drive}/root:/{path_to_parent}` with `name`, conflictBehavior and
    `@microsoft.graph.sourceUrl` (the upload URL) commits a finished session under new metadata."""
    sb = request.app[SANDBOX_KEY]
    data = await json_body(request)
    source = data.get("@microsoft.graph.sourceUrl")
    prefix = f"{sb.url}{UPLOAD_PATH}"
    session_id = urlsplit(source).path.rpartition("/")[2] if isinstance(source, str) else ""
    if not isinstance(source, str) or not source.startswith(prefix) or not session_id.isalnum():
        raise GraphError(400, "invalidRequest", "'@microsoft.graph.sourceUrl' must be the upload session's URL.")
    session = _live_session(sb, session_id)
    owner = drive_owner(request)
    require_reach(request, owner, write=True)
    if store.drive_id_of(owner) != session.drive_id:
        raise GraphError(400, "invalidRequest", "The upload session belongs to another drive.")
    folder = store.normal_path(request.match_info.get("path", ""))
    name = store.check_name(str(data.get("name") or session.name))
    conflict = str(data.get("@microsoft.graph.conflictBehavior") or "fail")
    if conflict not in ("replace", "fail", "rename"):
        raise GraphError(400, "invalidRequest", f"Invalid conflict behavior '{conflict}'.")
    may_write(sb, request, owner, folder, name)
    if session.total is None or session.received < session.total:
        raise GraphError(400, "invalidRequest", "The upload is incomplete; send the missing byte ranges first.",
                         "uploadSessionIncomplete")
    session.parent_path, session.name, session.conflict = folder, name, conflict
    sb.mark_dirty()
    item, created = _finish(sb, session)
    return web.json_response(item_json(sb, item), status=201 if created else 200)


def routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = [web.put(f"{UPLOAD_PATH}{{session_id}}", upload_fragment),
                               web.get(f"{UPLOAD_PATH}{{session_id}}", session_status),
                               web.post(f"{UPLOAD_PATH}{{session_id}}", commit_session),
                               web.delete(f"{UPLOAD_PATH}{{session_id}}", cancel_session)]
    for base in BASES:
        out += [
            web.post(f"{base}/root:/{PATH}:/createUploadSession", create_session),
            web.post(f"{base}/items/{ITEM}:/{PATH}:/createUploadSession", create_session),
            web.post(f"{base}/items/{ITEM}/createUploadSession", create_session),
            web.put(f"{base}/root:/{PATH}:", commit_from_source),
            web.put(f"{base}/root:/{PATH}", commit_from_source),
            web.put(f"{base}/root", commit_from_source),
        ]
    return out
