"""Requests to pre-authenticated URLs: a download redirect's target and an upload session's URL.

Graph hands these out already authorised (driveitem-get-content: "the 302 response's URL is
pre-authenticated"; driveitem-createuploadsession: "don't include an Authorization header" in
the PUTs to uploadUrl), so they go without the agent's token, on a session of their own that
has never seen it. The caller checks the host first (graph/hosts.py).
"""

from __future__ import annotations

import json
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


async def put_range(settings: Settings, url: str, chunk: bytes, start: int, total: int) -> tuple[int, Any]:
    """PUT one byte range of an upload session (Content-Range `bytes start-end/total`); (status, JSON body)."""
    headers = {"Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{total}",
               "Content-Length": str(len(chunk))}
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
