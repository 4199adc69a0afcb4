"""Resumable uploads: the byte ranges of a driveItem upload session, resumed where Graph says.

Rules from driveitem-createuploadsession ("Upload large files with an upload session"):
- each range but the last is a multiple of 320 KiB (327,680 bytes) and under 60 MiB; the page
  suggests 5-10 MiB per request, so ranges here are 32 x 320 KiB = 10 MiB;
- ranges go in order, with the same total each time; 202 carries `nextExpectedRanges`, the last
  range answers 200/201 with the driveItem;
- "If a request fails or is disconnected ... all bytes in that request are ignored": after a
  5xx or a dropped connection, GET the upload URL and resume from its `nextExpectedRanges`;
- 416 means the range was already received: ask for the status and go on from there;
- 404 means the session expired or was cancelled: its bytes are gone (the caller starts again);
- 409 at the last range: the name was taken meanwhile and the conflict behaviour is `fail`.
The upload URL is pre-authenticated: the PUTs go without the token (preauth.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import structlog

from ..config import Settings
from ..errors import GraphError
from . import preauth

log = structlog.get_logger(__name__)

UNIT = 320 * 1024
CHUNK = 32 * UNIT
#: A range is read from its source and sent in pieces of this size, so memory holds one piece, not a range.
PIECE = 1024 * 1024
#: Failed attempts in a row (at one offset) before the upload gives up.
MAX_FAILURES = 5

Reader = Callable[[int, int], Awaitable[bytes]]
Progress = Callable[[int, int], Awaitable[None]]


class SessionGone(GraphError):
    """The upload session expired or was cancelled (404): start a new one."""


def _next_offset(body: Any, size: int) -> int | None:
    """The first byte of `nextExpectedRanges` ("start-" or "start-end"); None when it names none."""
    ranges = body.get("nextExpectedRanges") if isinstance(body, dict) else None
    if not isinstance(ranges, list) or not ranges:
        return None
    start = str(ranges[0]).partition("-")[0]
    return int(start) if start.isdigit() and int(start) <= size else None


async def _resume_at(settings: Settings, url: str, size: int) -> int | None:
    status, body = await preauth.session_status(settings, url)
    if status == 404:
        raise SessionGone("the upload session expired", status=404, code="itemNotFound",
                          hint="send the file again")
    return _next_offset(body, size) if 200 <= status < 300 else None


async def _pieces(read: Reader, offset: int, length: int) -> AsyncIterator[bytes]:
    """The range `offset`..`offset + length` in PIECE-sized reads, each only when the socket wants it."""
    end = offset + length
    while offset < end:
        piece = await read(offset, min(PIECE, end - offset))
        if not piece:
            raise GraphError("the file got shorter while it was uploaded", status=0, code="UploadFailed",
                             hint="send it again once it stops changing")
        offset += len(piece)
        yield piece


async def send(settings: Settings, url: str, size: int, read: Reader, *, chunk: int = CHUNK,
               progress: Progress | None = None) -> dict[str, Any]:
    """Send `size` bytes (read with `read(offset, length)`) to the upload session at `url`; the driveItem."""
    if chunk % UNIT:
        raise ValueError("upload ranges must be a multiple of 320 KiB")
    offset, failures = 0, 0
    while True:
        length = min(chunk, size - offset)
        try:
            status, body = await preauth.put_range(settings, url, _pieces(read, offset, length), offset, size, length)
        except GraphError as exc:  # a dropped connection: the range is lost, the session is not
            status, body = exc.status, None
        if status in (200, 201):
            return dict(body or {})
        if status == 202:
            failures = 0
            offset = _next_offset(body, size) or offset + length
            if progress is not None:
                await progress(offset, size)
            continue
        if status == 404:
            raise SessionGone("the upload session expired", status=404, code="itemNotFound",
                              hint="send the file again")
        if status == 409:
            raise GraphError("a file of that name appeared while uploading (conflict behaviour fail)", status=409,
                             code="nameAlreadyExists", hint="upload again with conflict=\"replace\" or \"rename\"")
        failures += 1
        if failures > MAX_FAILURES or status not in (0, 416, 500, 502, 503, 504):
            raise GraphError(f"the upload session refused bytes {offset}-{offset + length - 1}: {status}",
                             status=status, code="UploadFailed", hint="try sending the file again")
        log.info("upload_range_retry", offset=offset, status=status, attempt=failures)
        await anyio.sleep(min(0.5 * 2 ** (failures - 1), 8.0))
        resumed = await _resume_at(settings, url, size)
        if resumed is not None:
            offset = resumed
