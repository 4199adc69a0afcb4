"""An async Microsoft Graph client on one aiohttp session.

It knows HTTP, not what a chat is: authentication (with one forced refresh on
401), retries (Retry-After on 429/503, jittered backoff on other 5xx, all
bounded by a deadline), client-side pacing, at most four requests in flight per
mailbox (mailbox_gate.py), riding out refusals that only mean "not replicated
yet" (replication.py, when a window is given), `@odata.nextLink` paging and
delta links. The bearer token is only ever sent to the configured Graph host.
"""

from __future__ import annotations

import json
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import anyio
import structlog

from ..config import Settings
from ..errors import GraphError, NotFoundError, ThrottledError
from .mailbox_gate import MailboxGate, is_concurrency_refusal, mailbox_of
from .ratelimit import RateLimiter
from .replication import ReplicationGrace, backoff
from .unprovisioned import unprovisioned_part

log = structlog.get_logger(__name__)

_RETRY_STATUSES = {429, 500, 502, 503, 504}
_REDIRECTS = {301, 302, 303, 307, 308}
_HINTS = {
    401: "the agent's token was rejected: run `agentseat doctor`",
    403: "the agent lacks a permission for this call: run `agentseat setup --grant`",
    404: "the resource does not exist (or the agent is not a member)",
}


class TokenSource(Protocol):
    async def get(self, resource: str | None = None) -> str: ...
    async def invalidate(self, token: str) -> None: ...


class FixedToken:
    """A `TokenSource` holding one token already minted, so a Graph call tests Graph and nothing
    else (doctor and setup's wait check the token chain separately)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get(self, resource: str | None = None) -> str:
        return self._token

    async def invalidate(self, token: str) -> None:
        return None


@dataclass
class GraphResponse:
    status: int
    headers: dict[str, str]
    body: Any = None


@dataclass
class DeltaPage:
    items: list[dict[str, Any]] = field(default_factory=list)
    delta_link: str | None = None


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """System roots plus the configured CA bundle (the sandbox's, or a corporate proxy's)."""
    ctx = ssl.create_default_context()
    if settings.ca_bundle:
        ctx.load_verify_locations(cafile=str(settings.ca_bundle))
    return ctx


def parse_retry_after(value: str | None) -> float | None:
    """Graph sends seconds, sometimes fractional (`2.128`), per the throttling docs."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


class GraphClient:
    """Graph calls as the agent. Use as an async context manager, or call `close()`."""

    def __init__(
        self,
        settings: Settings,
        tokens: TokenSource,
        *,
        session: aiohttp.ClientSession | None = None,
        limiter: RateLimiter | None = None,
        replication: ReplicationGrace | None = None,
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._base = settings.graph_url
        self._base_path = urlsplit(self._base).path
        self._host = settings.graph_host
        self._own_session = session is None
        self._session_obj = session  # created on first use: aiohttp needs a running loop
        self._limiter = limiter or RateLimiter()
        self.mailboxes = MailboxGate()
        #: The Agent User's own names: `/users/{them}/messages` is the same mailbox as `/me/messages`.
        self._me = {settings.agent_user_id, settings.agent_user_upn} - {""}
        self._replication = replication
        self.requests = 0
        #: Called as (method, route, json sent, body returned) after Graph accepts a write (the
        #: interaction record and the audit log), in a worker thread since each writes SQLite;
        #: an observer's failure never fails the call.
        self.observers: list[Callable[[str, str, Any, Any], None]] = []

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._session_obj is None:
            self._session_obj = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_context(self._settings), limit=32),
                timeout=aiohttp.ClientTimeout(total=self._settings.graph_timeout_seconds),
            )
        return self._session_obj

    async def close(self) -> None:
        if self._own_session and self._session_obj is not None:
            await self._session_obj.close()
            self._session_obj = None

    # --- URLs ------------------------------------------------------------------------------
    def url(self, path_or_url: str) -> str:
        """An absolute URL on the Graph host; anything else is refused (the token must not leak)."""
        if path_or_url.startswith(("https://", "http://")):
            parts = urlsplit(path_or_url)
            if parts.scheme != "https" or parts.netloc.lower() != self._host or parts.username or parts.password:
                raise GraphError(
                    f"refusing to send the agent's token to {parts.scheme}://{parts.hostname}",
                    status=0,
                    code="ForeignHost",
                    hint=f"only {self._host} receives the token (AGENTSEAT_GRAPH_URL)",
                )
            return path_or_url
        return self._base + ("" if path_or_url.startswith("/") else "/") + path_or_url

    def _route_path(self, url: str) -> str:
        path = urlsplit(url).path
        return path[len(self._base_path) :] if path.startswith(self._base_path) else path

    # --- core --------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        raw: int | None = None,
        redirects: bool = True,
    ) -> GraphResponse:
        """One Graph call. `data` sends bytes (uploads); `raw` reads the body as bytes, at most that
        many (more is a GraphError `TooLarge`); `redirects=False` returns a 3xx as it is, so its
        target can be fetched without the token (graph/content.py, graph/preauth.py)."""
        url = self.url(path_or_url)
        route = self._route_path(url)
        mailbox = mailbox_of(route, self._me)
        deadline = time.monotonic() + self._settings.graph_deadline_seconds
        refreshed = False
        attempt = replicating = 0
        while True:
            await self._limiter.wait(method, route)
            token = await self._tokens.get()
            started = time.perf_counter()
            async with self.mailboxes.slot(mailbox):  # Outlook: 4 in flight per mailbox
                try:
                    async with self._session.request(
                        method, url, params=params, json=json, data=data, allow_redirects=redirects,
                        headers={"Authorization": f"Bearer {token}", **(headers or {})},
                    ) as resp:
                        self.requests += 1
                        ok = 200 <= resp.status < 300
                        body = await (read_limited(resp, raw) if raw is not None and ok else _read_body(resp))
                        status, resp_headers = resp.status, dict(resp.headers)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, resp_headers, body = 0, {}, None
                    error: Exception | None = exc
                else:
                    error = None
            log.debug("graph_call", method=method, route=route, status=status,
                      ms=round((time.perf_counter() - started) * 1000, 1))
            if 200 <= status < 300 or (not redirects and status in _REDIRECTS):
                if self._replication is not None:
                    self._replication.graph_succeeded(method, route, json)
                if method.upper() != "GET" and self.observers:
                    await anyio.to_thread.run_sync(self._observe, method, route, json, body)
                return GraphResponse(status, resp_headers, body)
            if status == 401 and not refreshed:
                refreshed = True  # exactly one forced refresh and one retry
                await self._tokens.invalidate(token)
                continue
            if status == 0 and method.upper() == "POST" and not isinstance(error, aiohttp.ClientConnectorError):
                # The request may have reached Graph before the connection broke: sending a
                # POST again could post a chat message twice. Only GET/PATCH/PUT/DELETE are
                # safe to repeat blindly; a POST is repeated only if it never connected.
                raise _error(status, body, method, route, error=error)
            if is_concurrency_refusal(status, body):
                self.mailboxes.refused(mailbox)
            if status in _RETRY_STATUSES or status == 0:
                attempt += 1
                wait = self._retry_wait(status, resp_headers, attempt)
                if time.monotonic() + wait > deadline:
                    raise _error(status, body, method, route, error=error, exhausted=True,
                                 retry_after=parse_retry_after(resp_headers.get("Retry-After")))
                log.info("graph_retry", method=method, route=route, status=status, wait=round(wait, 3),
                         attempt=attempt)
                await anyio.sleep(wait)
                continue
            # An unprovisioned mailbox or Teams presence is not replication: the readiness probe waits for it.
            grace = self._replication if status in (403, 404) and not _unprovisioned(status, body) else None
            reason = grace.graph_reason(method, route, status, json) if grace is not None else None
            if grace is not None and reason is not None:
                replicating += 1
                wait = backoff(replicating)
                window = grace.graph_window(route, status)
                if wait <= min(deadline - time.monotonic(), window):
                    log.info("graph_replication_wait", method=method, route=route, status=status, reason=reason,
                             wait=round(wait, 3), attempt=replicating, window_left=round(window, 1))
                    await anyio.sleep(wait)
                    continue
            raise _error(status, body, method, route, replicating=replicating > 0)

    def _observe(self, method: str, route: str, sent: Any, returned: Any) -> None:
        for observer in self.observers:
            try:
                observer(method, route, sent, returned)
            except Exception as exc:  # the write happened; a full disk must not make it look failed
                log.warning("graph_observer_failed", method=method, route=route, error=type(exc).__name__)

    @staticmethod
    def _retry_wait(status: int, headers: dict[str, str], attempt: int) -> float:
        if status in (429, 503) and (after := parse_retry_after(headers.get("Retry-After"))) is not None:
            return after
        # Full jitter keeps many clients from retrying in lockstep.
        return random.uniform(0, min(30.0, 0.5 * 2 ** (attempt - 1)))

    # --- conveniences ----------------------------------------------------------------------
    async def get(self, path: str, **params: Any) -> Any:
        return (await self.request("GET", path, params=params or None)).body

    async def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return (await self.request("POST", path, json=json, **kw)).body

    async def patch(self, path: str, json: Any) -> Any:
        return (await self.request("PATCH", path, json=json)).body

    async def delete(self, path: str) -> None:
        await self.request("DELETE", path)

    async def pages(self, path: str, params: dict[str, Any] | None = None, *,
                    headers: dict[str, str] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield each page's `value`, following `@odata.nextLink` (which carries the query)."""
        url: str | None = path
        while url:
            body = (await self.request("GET", url, params=params, headers=headers)).body or {}
            params = None
            yield list(body.get("value", []))
            url = body.get("@odata.nextLink")

    async def delta(self, start: str, params: dict[str, Any] | None = None, *, page_size: int | None = None) -> DeltaPage:
        """Run a delta round: from a path (first sync) or a saved deltaLink, to the new deltaLink."""
        headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else None
        result = DeltaPage()
        url: str | None = start
        while url:
            body = (await self.request("GET", url, params=params, headers=headers)).body or {}
            params = None
            result.items.extend(body.get("value", []))
            url = body.get("@odata.nextLink")
            result.delta_link = body.get("@odata.deltaLink", result.delta_link)
        return result


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body as bytes, refusing (GraphError `TooLarge`) once it passes `limit`, before reading it all."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> GraphError:
    return GraphError(f"the content is larger than {limit} bytes (at least {size})", status=0, code="TooLarge",
                      hint="it is too big to fetch here; open it in Teams instead")


async def _read_body(resp: aiohttp.ClientResponse) -> Any:
    if resp.status == 204:
        return None
    text = await resp.text()
    if resp.content_type == "application/json" and text:
        try:
            return json.loads(text)
        except ValueError:
            return text  # a proxy's or gateway's broken "JSON" error page: keep it as text
    return text or None


def _unprovisioned(status: int, body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    return unprovisioned_part(status, error.get("code"), str(error.get("message", ""))) is not None


def _error(status: int, body: Any, method: str, route: str, *, error: Exception | None = None,
           exhausted: bool = False, retry_after: float | None = None, replicating: bool = False) -> GraphError:
    code, message = None, ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        message = str(body["error"].get("message", ""))[:300]
    if status == 0:
        text = f"{method} {route}: cannot reach Graph ({type(error).__name__ if error else 'error'})"
        return GraphError(text, status=0, code="Unreachable",
                          hint="check AGENTSEAT_GRAPH_URL, AGENTSEAT_CA_BUNDLE and the network")
    text = f"{method} {route} -> {status}{f' {code}' if code else ''}{f': {message}' if message else ''}"
    if exhausted:
        cls = ThrottledError if status in (429, 503) else GraphError
        return cls(text + " (gave up after the retry deadline)", status=status, code=code, retry_after=retry_after,
                   hint="Graph is throttling or failing; try again later (AGENTSEAT_GRAPH_DEADLINE_SECONDS)")
    cls = NotFoundError if status == 404 else GraphError
    hint = _HINTS.get(status)
    if replicating:  # waited for replication and it did not come: say both
        hint = (f"still refused after waiting for replication; {hint or 'check the setup'}"
                " (AGENTSEAT_REPLICATION_GRACE_SECONDS)")
    return cls(text, status=status, code=code, hint=hint)
