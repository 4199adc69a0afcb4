"""Bearer-token checks for every Graph route, plus faults, throttling and stats.

A route declares what it needs with `@graph_route(...)`; one middleware applies
the same pipeline to all of them: count, inject faults, authenticate, authorize,
throttle, then run the handler (an Outlook one inside its mailbox's concurrency limit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import jwt
from aiohttp import web

from ..entra import replication
from ..responses import graph_error
from ..state import SANDBOX_KEY, SandboxState
from ..tenant import GRAPH_APP_ID, GRAPH_RESOURCE
from . import provisioning
from .throttle import (MAILBOX_CONCURRENCY_CODE, MAILBOX_CONCURRENCY_MESSAGE, MAILBOX_CONCURRENCY_RETRY_AFTER,
                       Limit)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GRAPH_PREFIXES = ("/v1.0/", "/beta/")


@dataclass(frozen=True)
class Principal:
    """Who is calling Graph, from a verified access token."""

    kind: str  # "user" (delegated) | "app" (app-only)
    oid: str  # the user's object id, or the service principal's
    app_id: str
    tenant_id: str
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    expires: float = 0.0


@dataclass(frozen=True)
class RouteSpec:
    scopes: tuple[str, ...] = ()  # any one of these delegated scopes suffices
    roles: tuple[str, ...] = ()  # any one of these application roles suffices
    limits: tuple[Limit, ...] = ()
    delegated_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def graph_route(
    *, scopes: tuple[str, ...] = (), roles: tuple[str, ...] = (), limits: tuple[Limit, ...] = (),
    delegated_only: bool = False,
) -> Callable[[Handler], Handler]:
    """Declare a Graph handler's permissions and throttling limits."""

    def decorate(handler: Handler) -> Handler:
        handler.__graph_route__ = RouteSpec(scopes, roles, limits, delegated_only)  # type: ignore[attr-defined]
        return handler

    return decorate


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL_KEY]


def route_name(request: web.Request) -> str:
    """`METHOD /template` with the version prefix removed, e.g. `GET /chats/{chat_id}/messages`."""
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else request.path
    for prefix in GRAPH_PREFIXES:
        if template.startswith(prefix):
            template = template[len(prefix) - 1 :]
            break
    return f"{request.method} {template}"


def verify_access_token(sb: SandboxState, header: str | None) -> Principal:
    """Check signature, audience, expiry and tenant of a Graph bearer token."""
    if not header or not header.lower().startswith("bearer "):
        raise PermissionError("Access token is empty.")
    token = header[7:].strip()
    try:
        claims = sb.pki.decode(token, audience=[GRAPH_RESOURCE, GRAPH_APP_ID], now=sb.clock.now())
    except jwt.ExpiredSignatureError as exc:
        raise PermissionError("Lifetime validation failed, the token is expired.") from exc
    except jwt.InvalidAudienceError as exc:
        raise PermissionError("Invalid audience.") from exc
    except jwt.InvalidTokenError as exc:
        raise PermissionError("Access token validation failure. Invalid signature.") from exc
    if claims.get("tid") != sb.tenant.tenant_id:
        raise PermissionError("Access token validation failure. Invalid tenant.")
    if claims.get("iat", 0) < sb.tenant.tokens_not_before:
        raise PermissionError("Lifetime validation failed, the token is expired.")
    kind = "user" if claims.get("idtyp") == "user" else "app"
    return Principal(
        kind=kind,
        oid=str(claims.get("oid", "")),
        app_id=str(claims.get("azp") or claims.get("appid") or ""),
        tenant_id=str(claims["tid"]),
        scopes=frozenset(str(claims.get("scp", "")).split()),
        roles=frozenset(claims.get("roles", []) or []),
        expires=float(claims.get("exp", 0)),
    )


def _authorized(spec: RouteSpec, who: Principal) -> bool:
    if who.kind == "user":
        return not spec.scopes or bool(who.scopes.intersection(spec.scopes))
    if spec.delegated_only:
        return False
    return bool(spec.roles) and bool(who.roles.intersection(spec.roles))


@web.middleware
async def graph_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(GRAPH_PREFIXES):
        return await handler(request)
    sb = request.app[SANDBOX_KEY]
    name = route_name(request)
    sb.stats.requests[name] += 1
    spec: RouteSpec | None = getattr(request.match_info.handler, "__graph_route__", None)
    outlook = spec is not None and any(limit.scope == "mailbox" for limit in spec.limits)
    delay = sb.behaviour.graph_delay()
    if delay > 0 and not outlook:
        await anyio.sleep(delay)  # a real round trip, before any answer (Outlook's: while in flight, below)
    fault = sb.faults.route_fault(name)
    if fault is not None:
        return _fault_answer(sb, request, fault.status, fault.retry_after)
    if spec is None:
        # Unknown Graph path: Graph answers 400 BadRequest for unsupported segments.
        return graph_error(400, "BadRequest", f"Resource not found for the segment '{request.path}'.",
                           request=request)
    try:
        who = verify_access_token(sb, request.headers.get("Authorization"))
    except PermissionError as exc:
        return graph_error(401, "InvalidAuthenticationToken", str(exc), request=request)
    if (unseen := replication.graph_refusal(sb, request, who, _authorized(spec, who))) is not None:
        return unseen  # new objects and grants reach Graph late (entra/replication.py)
    if not _authorized(spec, who):
        return graph_error(403, "Forbidden", "Missing scope permissions on the request. API requires one of "
                           f"'{', '.join(spec.scopes or spec.roles)}'.", request=request)
    mailbox = _mailbox(sb, request, who)
    keys = {"user": who.oid, "mailbox": mailbox, "app": who.app_id,
            "chat": request.match_info.get("chat_id", "-"),
            # throttling-limits: "A maximum of 4 requests per second per app can be issued on a given
            # team or channel" (Teams service limits).
            "channel": f"{who.app_id}:{request.match_info.get('channel_id', '-')}"}
    wait = sb.throttle.check(name, spec.limits, keys)
    if wait is not None:
        sb.stats.throttled[name] += 1
        return graph_error(429, "TooManyRequests", "Please retry again later.",
                           headers={"Retry-After": f"{wait:g}"}, request=request)
    # A mailbox or Teams presence still being provisioned answers as Graph does (provisioning.py).
    refused = provisioning.refusal(sb, name, who.oid, who.kind == "user", request.match_info.get("user_id"))
    if refused is not None:
        return graph_error(refused.status, refused.code, refused.message, request=request)
    request[PRINCIPAL_KEY] = who
    if not outlook:
        return await handler(request)
    # Outlook allows 4 concurrent requests per app ID and mailbox (throttling-limits, "Outlook
    # service limits"); the one over it is refused at once, the others run their course.
    in_flight = sb.throttle.mailboxes.arrive(who.app_id, mailbox)
    try:
        sb.stats.in_flight(mailbox, in_flight)
        if sb.throttle.enabled and in_flight > sb.behaviour.outlook_max_concurrency:
            sb.stats.throttled[f"{name} (MailboxConcurrency)"] += 1
            return graph_error(429, MAILBOX_CONCURRENCY_CODE, MAILBOX_CONCURRENCY_MESSAGE,
                               headers={"Retry-After": f"{MAILBOX_CONCURRENCY_RETRY_AFTER:g}"}, request=request)
        if delay > 0:
            await anyio.sleep(delay)
        return await handler(request)
    finally:
        sb.throttle.mailboxes.leave(who.app_id, mailbox)


def _mailbox(sb: SandboxState, request: web.Request, who: Principal) -> str:
    """The mailbox a request addresses: `/users/{user_id}/...` names it, `/me/...` is the caller's."""
    ref = request.match_info.get("user_id")
    if ref is None:
        return who.oid
    user = sb.tenant.user(ref)
    return user.id if user is not None else ref.lower()


def _fault_answer(sb: SandboxState, request: web.Request, status: int, retry_after: float | None) -> web.Response:
    """An injected fault, in the shape Graph answers it with."""
    sb.stats.throttled[f"fault {status}"] += 1
    if status == 429:
        wait = retry_after if retry_after is not None else 1.0
        return graph_error(429, "TooManyRequests", "Please retry again later.",
                           headers={"Retry-After": f"{wait:g}"}, request=request)
    if status == 403:
        # What a grant that has not replicated yet looks like to the caller.
        return graph_error(403, "Forbidden", "Missing scope permissions on the request.", request=request)
    if status == 404:
        # What a directory object or item that has not replicated yet looks like.
        return graph_error(404, "ResourceNotFound", "Resource not found.", request=request)
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return graph_error(status, "ServiceUnavailable" if status == 503 else "InternalServerError",
                       "The service is temporarily unavailable.", headers=headers, request=request)
