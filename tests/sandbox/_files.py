"""Test helpers for bytes over HTTPS: uploads, downloads, and redirects looked at rather than followed."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
from yarl import URL

from agentseat.sandbox.app import Sandbox

#: The smallest valid PNG (1x1, transparent) and a JPEG's first bytes: what the sandbox sniffs for.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
                       "AAAABJRU5ErkJggg==")
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60 + b"\xff\xd9"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def raw_call(sb: Sandbox, method: str, path: str, token: str | None = None, *, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """One HTTPS request with a byte body; redirects are returned, not followed. (status, body, headers)."""
    url = path if path.startswith("https://") else sb.url + path
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.request(
        method, URL(url, encoded=True), data=data, headers=hdrs, ssl=sb.client_ssl_context(), allow_redirects=False
    ) as resp:
        return resp.status, await resp.read(), resp.headers
