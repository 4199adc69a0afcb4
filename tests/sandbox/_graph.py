"""Test helpers for the Graph route tests: one HTTPS request to the sandbox, and a call on its loop."""

from __future__ import annotations

from typing import Any

import aiohttp
from yarl import URL

from agentseat.sandbox.app import Sandbox


async def call(sb: Sandbox, method: str, path: str, token: str | None = None, *, body: Any = None,
               raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """One HTTPS request; `path` is relative to the sandbox or an absolute link it returned.

    `raw` goes out as the JSON body byte for byte, for tests of bodies that are not valid JSON.
    Returns (status, parsed JSON or text, headers).
    """
    url = path if path.startswith("https://") else sb.url + path
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    if raw is not None:
        hdrs["Content-Type"] = "application/json"
    async with aiohttp.ClientSession() as session, session.request(
        method, URL(url, encoded=True), json=body, data=raw, headers=hdrs, ssl=sb.client_ssl_context()
    ) as resp:
        data = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, data, resp.headers


def on_loop(sb: Sandbox, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `fn` on the sandbox's own event loop, where its state may be changed safely."""
    return sb.portal.call(lambda: fn(*args, **kwargs))  # type: ignore[attr-defined]
