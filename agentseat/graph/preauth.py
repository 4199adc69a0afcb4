"""Requests to pre-authenticated URLs: a download redirect's target and an upload session's URL.

Graph hands these out already authorised (driveitem-get-content: "the 302 response's URL is
pre-authenticated"; driveitem-createuploadsession: "don't include an Authorization header" in
the PUTs to uploadUrl), so they go without the agent's token, on a session of their own that
has never seen it. The caller checks the host first (graph/hosts.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import aiohttp

from ..config import Settings
from ..errors import GraphError
from .client import read_limited, ssl_context


def _session(settings: Settings) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context(settings)),
                                 timeout=aiohttp.ClientTimeout(total=settings.graph_timeout_seconds))


async def get_bytes(settings: Settings, url: str, limit: int) -> tuple[bytes, str]:
    """The body of `url` (at most `limit` bytes) and its Content-Type; no token, no further redirect."""
    try:
        async with _session(settings) as http, http.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise GraphError(f"the download URL answered {resp.status}", status=resp.status, code="DownloadFailed",
                                 hint="try again; the link may have expired")
            return await read_limited(resp, limit), resp.content_type
    except aiohttp.ClientError as exc:
        raise GraphError(f"cannot reach the download URL ({type(exc).__name__})", status=0, code="Unreachable",
                         hint="check the network") from exc


async def put_range(settings: Settings, url: str, chunk: bytes | AsyncIterable[bytes], start: int, total: int,
                    length: int | None = None) -> tuple[int, Any]:
    """PUT one byte range of an upload session (Content-Range `bytes start-end/total`); (status, JSON body).

    `chunk` is the bytes, or pieces of them streamed as they are read (then `length` says how many):
    the Content-Length is always sent, since upload sessions take no chunked transfer encoding.
    """
    size = len(chunk) if isinstance(chunk, bytes) else length
    if size is None:
        raise ValueError("a streamed range needs its length")
    headers = {"Content-Range": f"bytes {start}-{start + size - 1}/{total}", "Content-Length": str(size)}
    try:
        async with _session(settings) as http, http.put(url, data=chunk, headers=headers,
                                                         allow_redirects=False) as resp:
            text = await resp.text()
            if not 200 <= resp.status < 300 or not text:
                return resp.status, None  # the caller says which range failed; the body is not ours to log
            return resp.status, json.loads(text)
    except (aiohttp.ClientError, ValueError) as exc:
        raise GraphError(f"the upload session failed ({type(exc).__name__})", status=0, code="UploadFailed",
                         hint="try sending the file again") from exc


async def download_to(settings: Settings, url: str, out: Path, limit: int) -> int:
    """Stream the body of `url` into the new file `out` (0600), at most `limit` bytes; the size written.

    Past the limit the partial file is removed and a GraphError `TooLarge` raised, so a large
    file never sits in memory and never stays half-written on disk.
    """
    size = 0
    try:
        async with _session(settings) as http, http.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise GraphError(f"the download URL answered {resp.status}", status=resp.status, code="DownloadFailed",
                                 hint="try again; the link may have expired")
            if resp.content_length is not None and resp.content_length > limit:
                raise _too_large(resp.content_length, limit)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as fh:
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(size, limit)
                    fh.write(chunk)
    except aiohttp.ClientError as exc:
        out.unlink(missing_ok=True)
        raise GraphError(f"cannot reach the download URL ({type(exc).__name__})", status=0, code="Unreachable",
                         hint="check the network") from exc
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return size


async def session_status(settings: Settings, url: str) -> tuple[int, Any]:
    """GET an upload session's URL: (status, JSON body with `nextExpectedRanges`)."""
    try:
        async with _session(settings) as http, http.get(url, allow_redirects=False) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if 200 <= resp.status < 300 and text else None)
    except (aiohttp.ClientError, ValueError) as exc:
        raise GraphError(f"cannot read the upload session's status ({type(exc).__name__})", status=0,
                         code="UploadFailed", hint="try the upload again") from exc


def _too_large(size: int, limit: int) -> GraphError:
    return GraphError(f"the file is larger than {limit} bytes (at least {size})", status=0, code="TooLarge",
                      hint="ask for a smaller file or an extract")
