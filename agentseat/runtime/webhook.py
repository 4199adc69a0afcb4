"""The runtime's HTTP endpoint: Graph's validation handshake and notification POSTs.

Routes: `POST /notifications`, `POST /lifecycle` (Graph's two URLs) and
`GET /health`. It owns the handshake, the body limits and the status code Graph
sees; what a body means (trust, decryption, storage) is runtime/pipeline.py's.

Why the pipeline runs before we answer: Graph counts a notification delivered
on any 2xx, so a 202 sent before the events are committed could be lost by a
kill -9 between answer and commit, with no redelivery. Verifying, decrypting and
one SQLite commit take milliseconds, well inside the 3-second budget
(change-notifications-delivery-webhooks, "Throttling"), so 202 here means
"durably stored". Graph calls (mail bodies, subscription repairs) are only queued
through the pipeline's callbacks, never made while Graph waits.
"""

from __future__ import annotations

import logging
import re
import socket
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote_plus

import aiohttp
import anyio
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .pipeline import ProcessResult

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from agentseat.config import Settings

__all__ = ["MAX_VALIDATION_TOKEN_CHARS", "Processor", "WebhookServer", "WebhookStats", "bind", "validation_token"]

log = structlog.get_logger(__name__)

#: Longest handshake token echoed; Graph's are ~130 characters ("Validation: Testing
#: client application reachability for subscription Request-Id: <guid>").
MAX_VALIDATION_TOKEN_CHARS = 1024
# A slow sender gets this long to deliver its body; Graph sends at once.
_READ_TIMEOUT = 5.0
# Under Graph's 10-second timeout for retried deliveries (change-notifications-delivery-webhooks,
# "HTTP codes and retry logic"): past it we answer 5xx ourselves, so Graph retries.
_PROCESS_DEADLINE = 8.0
# POSTs processed at once; the rest wait with their bodies read but not parsed. Under overload
# every POST in processing holds its parsed and decrypted items (about 250 KB for 20), so without a bound
# memory grew with the backlog (159 MB at 3,200 items/s offered in batches of 20, bench/);
# two worker lanes of 32 calls each stay fed (runtime/coalesce.py).
MAX_POSTS_IN_PROCESS = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SHUTDOWN_GRACE = 5.0
# A connection gets this long to send a request head, and may idle this long between
# requests; aiohttp's default is an hour, so a slowloris could hold sockets (and file
# descriptors) until Graph's deliveries could no longer connect. Above the idle time
# of common HTTP clients (aiohttp's 15 s), so a reused connection is rarely closed under one.
_IDLE_TIMEOUT = 30.0


class Processor(Protocol):
    """What handles the bodies: the `NotificationPipeline`, or an intake process's forwarding wrapper."""

    async def process(self, body: bytes, *, lifecycle_endpoint: bool) -> ProcessResult: ...

    def reject(self, reason: str, *, lifecycle_endpoint: bool = False) -> ProcessResult: ...


#: The body of GET /health: this process's counts, or every intake process's together.
Health = Callable[["WebhookStats"], Awaitable[dict[str, Any]]]


class HandshakeError(ValueError):
    """The `validationToken` query parameter cannot be echoed safely."""


def validation_token(raw_query: str) -> str | None:
    """The handshake token in a raw (still percent-encoded) query string, or None.

    Graph wants "the URL decoded plain text validation token" back
    (change-notifications-delivery-webhooks, "notificationUrl validation"), and
    it form-encodes the query: real handshakes arrive as
    `validationToken=Validation%3a+Testing+client+application+reachability...`,
    so `+` is a space and a literal plus comes as `%2B` (`unquote_plus`, which
    is also what aiohttp's `request.query` does). Plain `unquote` would echo the
    `+` signs and fail every real handshake.
    """
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if unquote_plus(name, errors="replace") != "validationToken":
            continue
        try:
            token = unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            raise HandshakeError("validation token is not UTF-8") from None
        if not token or len(token) > MAX_VALIDATION_TOKEN_CHARS:
            raise HandshakeError("validation token is empty or too long")
        if _CONTROL.search(token):
            raise HandshakeError("validation token contains control characters")
        return token
    return None


@dataclass
class WebhookStats:
    """Counters since start. `public()` is what /health shows: totals only, no drop reasons."""

    handshakes: int = 0
    bad_handshakes: int = 0
    posts: int = 0
    received: int = 0
    accepted: int = 0
    stored: int = 0
    fetches: int = 0
    lifecycle: int = 0
    failures: int = 0  # POSTs answered 5xx
    dropped: Counter[str] = field(default_factory=Counter)
    failing: bool = False  # the last POST could not be stored or queued

    def add(self, result: ProcessResult) -> None:
        self.posts += 1
        self.received += result.received
        self.accepted += result.accepted
        self.stored += result.stored
        self.fetches += result.fetches
        self.lifecycle += result.lifecycle
        self.dropped.update(result.dropped)
        self.failures += int(result.retry)
        if result.retry or result.accepted:  # a forged POST must not make a failing store look healthy
            self.failing = result.retry

    def public(self) -> dict[str, int]:
        # Per-reason counts stay in logs and `WebhookServer.stats`: on a public URL they
        # would tell a forger which check failed, which the constant 202 hides.
        return {"handshakes": self.handshakes, "posts": self.posts, "stored": self.stored,
                "fetches": self.fetches, "lifecycle": self.lifecycle,
                "dropped": sum(self.dropped.values()), "failures": self.failures}


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, where a request it cannot parse is a drop, not an error.

    aiohttp answers malformed HTTP with 400 itself and logs it as an error with a
    traceback whose message quotes the offending bytes, so any stranger could fill
    the log with tracebacks of their own text. Those become `bad_http` drops (one
    line per minute, no detail); every other error is logged as aiohttp does.
    """

    def __init__(self, on_bad_request: Any) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._on_bad_request = on_bad_request

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self._on_bad_request()
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


_PIPELINE = web.AppKey("pipeline", Processor)
_STATS = web.AppKey("stats", WebhookStats)
_HEALTH = web.AppKey("health", Health)
_MAX_BODY = web.AppKey("max_body", int)
_SLOTS = web.AppKey("slots", anyio.Semaphore)


def _accepted() -> web.Response:
    # "Respond to the notification with an HTTP 202 Accepted ... even if the validation
    # fails later" (change-notifications-with-resource-data): an attacker learns nothing.
    return web.Response(status=202)


def _retry() -> web.Response:
    # "If the notification isn't processed or queued, return a 5xx" (change-notifications-delivery-webhooks).
    return web.Response(status=500)


def _where(exc: BaseException) -> str:
    # The failing line, not the message: exception text may quote message content.
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename.rpartition('/')[2]}:{frames[-1].lineno}" if frames else "?"


async def _read_body(request: web.Request, limit: int) -> tuple[bytes | None, str | None]:
    """At most `limit` bytes of the body, or (None, reason). Never raises 413: Graph must see 202."""
    if request.content_length is not None and request.content_length > limit:
        return None, "too_large"  # unread: aiohttp drains or closes the connection after we answer
    if request.content.is_eof():
        # The whole body came with the headers (a notification POST is small): take it as it
        # is, without the timer and the read loop below, which cost more than the copy.
        try:
            whole = request.content.read_nowait()
        except (aiohttp.ClientPayloadError, ConnectionError):
            return None, "unreadable"
        return (whole, None) if len(whole) <= limit else (None, "too_large")
    body = bytearray()
    with anyio.move_on_after(_READ_TIMEOUT) as scope:
        try:
            async for chunk in request.content.iter_any():
                body += chunk
                if len(body) > limit:
                    return None, "too_large"
        except (aiohttp.ClientPayloadError, ConnectionError):
            return None, "unreadable"
    if scope.cancelled_caught:
        return None, "read_timeout"
    return bytes(body), None


async def _receive(request: web.Request, *, lifecycle_endpoint: bool) -> web.Response:
    stats = request.app[_STATS]
    pipeline = request.app[_PIPELINE]
    # The handshake comes first, before the body is read or parsed: its body is
    # not documented, and Graph only waits 10 seconds for the echo.
    try:
        token = validation_token(request.rel_url.raw_query_string)
    except HandshakeError as exc:
        stats.bad_handshakes += 1
        log.warning("validation_handshake_refused", reason=str(exc), endpoint=request.path)
        return web.Response(status=400)
    if token is not None:
        stats.handshakes += 1
        log.info("validation_handshake", endpoint=request.path, token_chars=len(token))
        # text/plain with nosniff: the token is sender text echoed back, never markup.
        return web.Response(text=token, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    if request.content_type != "application/json":
        stats.add(pipeline.reject("content_type", lifecycle_endpoint=lifecycle_endpoint))
        return _accepted()
    body, problem = await _read_body(request, request.app[_MAX_BODY])
    if body is None:
        stats.add(pipeline.reject(problem or "unreadable", lifecycle_endpoint=lifecycle_endpoint))
        return _accepted()
    try:
        # The slot is taken after the read: a sender that trickles its body holds no slot.
        with anyio.fail_after(_PROCESS_DEADLINE):
            async with request.app[_SLOTS]:
                result = await pipeline.process(body, lifecycle_endpoint=lifecycle_endpoint)
    except TimeoutError:
        log.error("notification_processing_timeout", endpoint=request.path, seconds=_PROCESS_DEADLINE)
        stats.add(ProcessResult(retry=True))
        return _retry()
    except Exception as exc:  # a bug: answer 5xx so Graph keeps the notification
        log.error("notification_processing_failed", endpoint=request.path, error=type(exc).__name__,
                  where=_where(exc))
        stats.add(ProcessResult(retry=True))
        return _retry()
    stats.add(result)
    return _retry() if result.retry else _accepted()


async def _notifications(request: web.Request) -> web.Response:
    return await _receive(request, lifecycle_endpoint=False)


async def _lifecycle(request: web.Request) -> web.Response:
    return await _receive(request, lifecycle_endpoint=True)


async def own_health(stats: WebhookStats) -> dict[str, Any]:
    return {"ok": not stats.failing, "counts": stats.public()}


async def _health(request: web.Request) -> web.Response:
    body = await request.app[_HEALTH](request.app[_STATS])
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket that intake processes can inherit and accept on beside this one.

    One socket shared (not SO_REUSEPORT): every platform's kernel hands each connection to one
    accepting process, and a busy process accepts less, so the load balances itself."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class WebhookServer:
    """The aiohttp server for Graph's notification and lifecycle URLs.

    `run` binds `settings.webhook_host:settings.webhook_port` (0 picks a free
    port), reports the port through `task_status.started(port)` and serves until
    cancelled; shutdown gives in-flight POSTs a few seconds to commit.
    """

    def __init__(self, settings: Settings, pipeline: Processor, *, health: Health = own_health) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._health = health
        self.stats = WebhookStats()
        self.port: int | None = None
        #: The listening socket when `run` was asked to share it (intake processes accept on it too).
        self.socket: socket.socket | None = None

    def build_app(self) -> web.Application:
        # client_max_size only guards request.read()/post(), which no handler calls;
        # the limit that matters is enforced in _read_body, answering 202, not 413.
        app = web.Application(client_max_size=self._settings.webhook_max_body)
        app[_PIPELINE] = self._pipeline
        app[_STATS] = self.stats
        app[_MAX_BODY] = self._settings.webhook_max_body
        # fast_acquire: a free slot is taken without yielding to the loop (anyio's default yields
        # once per acquire: one more loop turn a POST, for nothing while slots are free).
        app[_SLOTS] = anyio.Semaphore(MAX_POSTS_IN_PROCESS, fast_acquire=True)
        app[_HEALTH] = self._health
        app.router.add_post("/notifications", _notifications)
        app.router.add_post("/lifecycle", _lifecycle)
        app.router.add_get("/health", _health)
        return app

    async def run(self, *, sock: socket.socket | None = None, share: bool = False,
                  task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled: on `sock` (an intake process's inherited one), on a socket of its
        own that `self.socket` shares (`share`), or on the host and port of the settings."""
        # access_log=None: an access line would record the handshake token in the URL.
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False,
                               shutdown_timeout=_SHUTDOWN_GRACE, keepalive_timeout=_IDLE_TIMEOUT,
                               logger=_ServerLog(lambda: self.stats.add(self._pipeline.reject("bad_http"))))
        await runner.setup()
        try:
            if sock is None and share:
                sock = self.socket = bind(self._settings.webhook_host, self._settings.webhook_port)
            site: web.BaseSite = (web.SockSite(runner, sock) if sock is not None else
                                  web.TCPSite(runner, self._settings.webhook_host, self._settings.webhook_port))
            await site.start()
            self.port = int(runner.addresses[0][1])
            log.info("webhook_listening", host=self._settings.webhook_host, port=self.port)
            task_status.started(self.port)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()
            log.info("webhook_stopped", port=self.port)
