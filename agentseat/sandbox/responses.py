"""Error bodies in the exact shapes Entra and Graph use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def graph_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, request: web.Request | None = None,
    inner_code: str | None = None,
) -> web.Response:
    """Graph's error envelope: {"error": {"code", "message", "innerError": {...}}}; `inner_code` is a
    detailed code in innerError (OneDrive's "Detailed error codes", e.g. fragmentOverlap)."""
    inner: dict[str, Any] = {"code": inner_code} if inner_code else {}
    inner |= {"date": _now(), "request-id": str(uuid.uuid4())}
    if request is not None and (cid := request.headers.get("client-request-id")):
        inner["client-request-id"] = cid
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return web.json_response(body, status=status, headers=headers)


def entra_error(status: int, error: str, aadsts: int, description: str) -> web.Response:
    """Entra's OAuth error shape, with an AADSTS code leading the description."""
    trace = str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": f"AADSTS{aadsts}: {description} Trace ID: {trace} Timestamp: {_now()}Z",
        "error_codes": [aadsts],
        "timestamp": _now() + "Z",
        "trace_id": trace,
        "correlation_id": str(uuid.uuid4()),
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    }
    return web.json_response(body, status=status)


def odata(context: str, value: list[dict[str, Any]], next_link: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.context": context, **extra, "value": value}
    if next_link:
        body["@odata.nextLink"] = next_link
    return body
