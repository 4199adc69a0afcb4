"""OData query handling shared by the sandbox's Graph list routes (chats and mail).

Owns `$top` limits, date literals, `$select`, `Prefer: odata.maxpagesize`,
opaque paging and delta tokens, keyset pages, and absolute `@odata.nextLink` URLs. It does
not know what a chat or a message is; the route modules decide which options
each resource accepts.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

from aiohttp import web

from ..clock import parse_iso
from ..responses import graph_error

if TYPE_CHECKING:
    from ..state import SandboxState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


class GraphError(Exception):
    """A request Graph would refuse; raised deep in a handler, answered in Graph's error shape."""

    def __init__(self, status: int, code: str, message: str, inner_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code

    def response(self, request: web.Request) -> web.Response:
        return graph_error(self.status, self.code, self.message, request=request, inner_code=self.inner_code)


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def graph_errors(handler: Handler) -> Handler:
    """Turn a `GraphError` raised by `handler` into Graph's error response.

    Put it under `@graph_route`, so the route spec lands on this wrapper."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except GraphError as exc:
            return exc.response(request)

    return wrapped


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or Graph's 400 for anything else."""
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise bad_request("Unable to read JSON request payload. Please ensure Content-Type header is set and "
                          "payload is of valid JSON format.") from exc
    if not isinstance(data, dict):
        raise bad_request("Unable to read JSON request payload: a JSON object is required.")
    return data


def query(request: web.Request, name: str) -> str | None:
    """An OData system option; Graph accepts them with or without the `$` and in any case."""
    wanted = {name.lower(), name.lower().lstrip("$")}
    for key, value in request.query.items():
        if key.lower() in wanted:
            return value
    return None


def top(request: web.Request, *, default: int, maximum: int) -> int:
    raw = query(request, "$top")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise bad_request(f"Invalid value '{raw}' for $top query option found.") from exc
    if value < 1:
        raise bad_request(f"Invalid value '{raw}' for $top query option found.")
    if value > maximum:
        # The wording Graph uses for /chats (msgraph-sdk-powershell#1248).
        raise bad_request("The query specified in the URI is not valid. The limit of "
                          f"'{maximum}' for Top query has been exceeded. The value from the incoming request is "
                          f"'{value}'.")
    return value


def select(request: web.Request) -> list[str] | None:
    raw = query(request, "$select")
    if not raw:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


_MAX_PAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.I)


def prefer_max_page_size(request: web.Request) -> int | None:
    """`Prefer: odata.maxpagesize=N` (delta-query-messages)."""
    match = _MAX_PAGE.search(request.headers.get("Prefer", ""))
    if match is None:
        return None
    return max(1, int(match.group(1)))


def date_literal(text: str) -> float:
    """A DateTimeOffset in a `$filter`, quoted or not, as epoch seconds."""
    value = text.strip().strip("'\"")
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise bad_request(f"The DateTimeOffset text '{value}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?"
                          "(zzzzzz)?' and each field value is within valid range.") from exc


_CLAUSE = re.compile(r"^\s*([A-Za-z/]+)\s+(eq|ne|gt|ge|lt|le)\s+(.+?)\s*$", re.I)


def filter_clauses(raw: str) -> list[tuple[str, str, str]]:
    """Split `a gt x and b eq 'y'` into (property, operator, literal) triples; `or` is not supported here."""
    clauses = []
    for part in re.split(r"\s+and\s+", raw.strip(), flags=re.I):
        match = _CLAUSE.match(part)
        if match is None:
            raise bad_request(f"Invalid filter clause: '{part.strip()}'.")
        clauses.append((match.group(1), match.group(2).lower(), match.group(3)))
    return clauses


# --- opaque tokens ------------------------------------------------------------------------------------------
def _key(sb: SandboxState) -> bytes:
    return (sb.tenant.roles.get("secret_seed") or sb.tenant.tenant_id).encode()


def encode_token(sb: SandboxState, data: Mapping[str, Any]) -> str:
    """Opaque to clients, as Graph's are: base64url JSON with a tenant-keyed MAC so a forged token fails."""
    payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=")
    tag = hmac.new(_key(sb), payload, hashlib.sha256).digest()[:12]
    return payload.decode() + "." + base64.urlsafe_b64encode(tag).rstrip(b"=").decode()


def decode_token(sb: SandboxState, token: str) -> dict[str, Any] | None:
    payload, _, tag = token.strip().partition(".")
    if not payload or not tag:
        return None
    expected = base64.urlsafe_b64encode(hmac.new(_key(sb), payload.encode(), hashlib.sha256).digest()[:12])
    if not hmac.compare_digest(expected.rstrip(b"=").decode(), tag):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def link(sb: SandboxState, request: web.Request, params: Mapping[str, str | int], *, path: str | None = None) -> str:
    """An absolute Graph URL on this sandbox; `$` stays literal as in Graph's links."""
    encoded = urlencode({k: str(v) for k, v in params.items()}, quote_via=quote, safe="$'(),:")
    return f"{sb.url}{path or request.path}" + (f"?{encoded}" if encoded else "")


def carry_query(request: web.Request, *drop: str) -> dict[str, str]:
    """The request's query options minus the named ones (paging links keep the caller's options)."""
    lowered = {d.lower() for d in drop} | {d.lower().lstrip("$") for d in drop}
    return {k: v for k, v in request.query.items() if k.lower() not in lowered}


def keyset_page(sb: SandboxState, request: web.Request, items: Iterable[T], key: Callable[[T], tuple[float, Any]],
                page_size: int, tag: Mapping[str, str]) -> tuple[list[T], str | None]:
    """One page of `items` in `key` order after the request's `$skiptoken`, and the next page's link.

    The token holds the last key served, not an offset, so items added between
    requests never shift a page; `tag` names the listing, and a token minted for
    another listing is refused.
    """
    ordered = sorted(items, key=key)
    skip = query(request, "$skiptoken")
    if skip is not None:
        state = decode_token(sb, skip)
        if state is None or any(state.get(name) != value for name, value in tag.items()):
            raise bad_request("The $skiptoken is invalid or has expired.")
        after = (float(state["t"]), state["i"])  # "i" comes back as the type it was minted with (MAC'd JSON)
        ordered = [item for item in ordered if key(item) > after]
    page = ordered[:page_size]
    next_link = None
    if len(ordered) > page_size:
        last = key(page[-1])
        token = encode_token(sb, {**tag, "t": last[0], "i": last[1]})
        next_link = link(sb, request, {**carry_query(request, "$skiptoken"), "$skiptoken": token})
    return page, next_link
