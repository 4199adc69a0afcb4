"""`/v1.0/subscriptions`: create, list, get, renew, delete and reauthorize, plus
the `/_sandbox/subscriptions` control routes (expire, remove, lifecycle events).

Owns the request flow: parse, check the rules (rules.py), run the
validation handshake through the delivery engine, store. Delivery itself is
delivery.py's job.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from ..graph import throttle
from ..graph.auth import Principal, graph_route, principal
from ..state import SANDBOX_KEY
from ..responses import graph_error, odata
from .resources import ResourceError, parse_resource
from .rules import (
    CHANNEL_SCOPES,
    CHAT_SCOPES,
    MAIL_SCOPES,
    TLS_VERSIONS,
    WEB_PUSH_FIELDS,
    RuleError,
    authorize_resource,
    bad,
    change_types,
    check_client_state,
    check_conflicts,
    check_rich,
    check_url,
    find,
    live_subscriptions,
    resolve_expiration,
    spec_of,
    subscription_json,
)
from ..tenant import Subscription, new_id

if TYPE_CHECKING:
    from ..state import SandboxState

log = structlog.get_logger(__name__)

#: Any one of these lets a delegated caller reach the routes; the resource's own
#: permission is then checked per subscription (subscription-post-subscriptions).
_ANY_RESOURCE_SCOPE = CHAT_SCOPES + CHANNEL_SCOPES + MAIL_SCOPES
_PATCHABLE = ("expirationDateTime", "notificationUrl")
#: "Don't issue a reauthorize request and an update request for the same subscription
#: within a 10-minute window" (change-notifications-lifecycle-events).
_REAUTHORIZE_PATCH_WINDOW = 600.0

_VALIDATION_FAILED = ("Subscription validation request failed. Notification endpoint must respond with "
                      "200 OK to validation request.")
_VALIDATION_TIMED_OUT = "Subscription validation request timed out."


def _error(request: web.Request, exc: RuleError) -> web.Response:
    return graph_error(exc.status, exc.code, exc.message, request=request)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad("The request body is not valid JSON.", "BadRequest") from None
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.", "BadRequest")
    return body


async def _handshake(request: web.Request, url: str) -> None:
    """"If the endpoint validation fails, Microsoft Graph doesn't create the subscription"
    (change-notifications-delivery-webhooks)."""
    failure = await request.app[SANDBOX_KEY].delivery.validate_url(url)
    if failure == "timeout":
        raise bad(_VALIDATION_TIMED_OUT)
    if failure is not None:
        raise bad(_VALIDATION_FAILED, "ValidationError")


def _note_token_refresh(sb: SandboxState, sub: Subscription, who: Principal, *, kind: str) -> None:
    """Renewal and reauthorization both refresh the access token behind the subscription
    ("When you renew your subscription, your access token is also refreshed")."""
    now = sb.clock.now()
    other = sub.last_patch if kind == "reauthorize" else sub.last_reauthorize
    if other and now - other < _REAUTHORIZE_PATCH_WINDOW:
        sb.stats.notifications["reauthorize_and_patch_within_10min"] += 1
        log.warning("reauthorize_and_patch_within_10min", subscription=sub.id)
    if kind == "reauthorize":
        sub.last_reauthorize = now
    else:
        sub.last_patch = now
    sub.token_expires = who.expires
    sb.delivery.refreshed(sub)


@graph_route(scopes=_ANY_RESOURCE_SCOPE, limits=throttle.SUBSCRIPTIONS)
async def create_subscription(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    who = principal(request)
    try:
        body = await _json_object(request)
        for name in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if body.get(name) in (None, ""):
                raise bad(f"Property '{name}' is required.")
        if any(body.get(name) for name in WEB_PUSH_FIELDS):
            raise bad("Web Push properties are only valid on Web Push subscriptions.")
        types = change_types(body["changeType"])
        notification_url = check_url(sb, body["notificationUrl"], "notificationUrl")
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if lifecycle_url is not None:
            lifecycle_url = check_url(sb, lifecycle_url, "lifecycleNotificationUrl")
        client_state = check_client_state(body.get("clientState"))
        tls = body.get("latestSupportedTlsVersion") or "v1_2"
        if tls not in TLS_VERSIONS:
            raise bad(f"latestSupportedTlsVersion must be one of {', '.join(TLS_VERSIONS)}.")
        app_id_for_tokens = body.get("notificationUrlAppId")
        if app_id_for_tokens is not None and not isinstance(app_id_for_tokens, str):
            raise bad("notificationUrlAppId must be a string.")
        spec = parse_resource(sb, str(body["resource"]), who.oid)
        authorize_resource(sb, spec, who)
        cert = check_rich(spec, body.get("includeResourceData"), body)
        expiration = resolve_expiration(sb, spec, cert is not None, body["expirationDateTime"], lifecycle_url)
        check_conflicts(sb, spec, types, who.app_id, who.oid)
        # Both URLs are validated, even when equal: "you will receive and should respond
        # to two validation requests" (change-notifications-with-resource-data).
        await _handshake(request, notification_url)
        if lifecycle_url:
            await _handshake(request, lifecycle_url)
        check_conflicts(sb, spec, types, who.app_id, who.oid)  # the handshake awaited; state may have moved
    except ResourceError as exc:
        return _error(request, exc)
    now = sb.clock.now()
    sub = Subscription(
        id=new_id(), app_id=who.app_id, creator_id=who.oid, resource=str(body["resource"]),
        change_type=",".join(types), notification_url=notification_url, expiration=expiration,
        client_state=client_state, lifecycle_url=lifecycle_url, include_resource_data=cert is not None,
        encryption_certificate=body.get("encryptionCertificate") if cert is not None else None,
        encryption_certificate_id=body.get("encryptionCertificateId") if cert is not None else None,
        latest_supported_tls_version=tls, notification_url_app_id=app_id_for_tokens,
        token_expires=who.expires, created=now,
    )
    sb.tenant.subscriptions[sub.id] = sub
    sb.mark_dirty()
    log.info("subscription_created", subscription=sub.id, kind=spec.kind, rich=sub.include_resource_data)
    return web.json_response(subscription_json(sub), status=201)


@graph_route(scopes=_ANY_RESOURCE_SCOPE, limits=throttle.SUBSCRIPTIONS)
async def list_subscriptions(request: web.Request) -> web.Response:
    """With a delegated token: "Subscriptions created by this app for the signed-in user only" (subscription-list)."""
    sb = request.app[SANDBOX_KEY]
    who = principal(request)
    mine = [subscription_json(s) for s in live_subscriptions(sb) if s.app_id == who.app_id and s.creator_id == who.oid]
    for item in mine:
        item.pop("@odata.context", None)
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#subscriptions", mine))


def _not_found(request: web.Request, sub_id: str) -> web.Response:
    # "A 404 Not Found response indicates that the subscription no longer exists ...
    # create a new subscription instead of retrying" (subscription-update).
    return graph_error(404, "ResourceNotFound", f"The object was not found. Subscription '{sub_id}' does not exist "
                       "or has expired; create a new subscription.", request=request)


@graph_route(scopes=_ANY_RESOURCE_SCOPE, limits=throttle.SUBSCRIPTIONS)
async def get_subscription(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    sub = find(sb, request.match_info["sub_id"], principal(request))
    if sub is None:
        return _not_found(request, request.match_info["sub_id"])
    return web.json_response(subscription_json(sub))


@graph_route(scopes=_ANY_RESOURCE_SCOPE, limits=throttle.SUBSCRIPTIONS)
async def update_subscription(request: web.Request) -> web.Response:
    """PATCH: "The request body must contain either the expirationDateTime or notificationUrl
    property" (subscription-update); a lifecycle URL "can't be added later"."""
    sb = request.app[SANDBOX_KEY]
    who = principal(request)
    sub_id = request.match_info["sub_id"]
    sub = find(sb, sub_id, who)
    if sub is None:
        return _not_found(request, sub_id)
    try:
        body = await _json_object(request)
        body.pop("@odata.type", None)
        if "lifecycleNotificationUrl" in body:
            raise bad("lifecycleNotificationUrl can't be added or changed by an update; delete the subscription "
                      "and create a new one.")
        extra = sorted(set(body) - set(_PATCHABLE))
        if extra or not body:
            raise bad("Only expirationDateTime and notificationUrl can be updated"
                      + (f"; '{extra[0]}' can't." if extra else "."))
        spec = spec_of(sb, sub)
        authorize_resource(sb, spec, who)
        expiration = sub.expiration
        if "expirationDateTime" in body:
            expiration = resolve_expiration(sb, spec, sub.include_resource_data, body["expirationDateTime"],
                                            sub.lifecycle_url)
        url = sub.notification_url
        if "notificationUrl" in body:
            url = check_url(sb, body["notificationUrl"], "notificationUrl")
            if url != sub.notification_url:
                await _handshake(request, url)
    except ResourceError as exc:
        return _error(request, exc)
    if find(sb, sub_id, who) is None:  # deleted or expired while the handshake ran
        return _not_found(request, sub_id)
    sub.expiration, sub.notification_url = expiration, url
    _note_token_refresh(sb, sub, who, kind="patch")
    sb.mark_dirty()
    log.info("subscription_updated", subscription=sub.id)
    return web.json_response(subscription_json(sub))


@graph_route(scopes=_ANY_RESOURCE_SCOPE, limits=throttle.SUBSCRIPTIONS)
async def delete_subscription(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    sub = find(sb, request.match_info["sub_id"], principal(request))
    if sub is None:
        return _not_found(request, request.match_info["sub_id"])
    del sb.tenant.subscriptions[sub.id]
    sb.delivery.forget(sub.id)
    sb.mark_dirty()
    log.info("subscription_deleted", subscription=sub.id)
    return web.Response(status=204)


@graph_route(scopes=_ANY_RESOURCE_SCOPE, limits=throttle.SUBSCRIPTIONS)
async def reauthorize_subscription(request: web.Request) -> web.Response:
    """POST /subscriptions/{id}/reauthorize: no body, 204 (subscription-reauthorize)."""
    sb = request.app[SANDBOX_KEY]
    who = principal(request)
    sub = find(sb, request.match_info["sub_id"], who)
    if sub is None:
        return _not_found(request, request.match_info["sub_id"])
    try:
        authorize_resource(sb, spec_of(sb, sub), who)
    except ResourceError as exc:
        return _error(request, exc)
    _note_token_refresh(sb, sub, who, kind="reauthorize")
    sb.mark_dirty()
    log.info("subscription_reauthorized", subscription=sub.id)
    return web.Response(status=204)


# --- /_sandbox/subscriptions: the control half ---------------------------------------------
def _control_sub(request: web.Request) -> Subscription:
    sb = request.app[SANDBOX_KEY]
    sub = find(sb, request.match_info["sub_id"])
    if sub is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "no such live subscription"}),
                               content_type="application/json")
    return sub


async def control_list(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    now = sb.clock.now()
    items = [{**subscription_json(s), "tokenExpires": s.token_expires, "tokenExpired": now > s.token_expires}
             for s in live_subscriptions(sb)]
    return web.json_response({"value": items})


async def control_action(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    sub = _control_sub(request)
    action = request.match_info["action"]
    now = sb.clock.now()
    if action == "expire":
        sub.expiration = now  # removed silently at the next look, as Graph does
        find(sb, sub.id)
    elif action == "remove":
        del sb.tenant.subscriptions[sub.id]
        sb.delivery.forget(sub.id)
        sb.delivery.lifecycle(sub, "subscriptionRemoved")
    elif action == "reauthorize":
        sb.delivery.lifecycle(sub, "reauthorizationRequired")
    elif action == "missed":
        if not spec_of(sb, sub).is_outlook:
            # `missed` is sent for Outlook resources only (change-notifications-lifecycle-events).
            return web.json_response({"error": "missed lifecycle events exist only for Outlook resources"},
                                     status=400)
        sb.delivery.lifecycle(sub, "missed")
    elif action == "token-expired":
        # "If an access token expires, notifications aren't delivered" until renewed.
        sub.token_expires = now - 1
        sb.delivery.lifecycle(sub, "reauthorizationRequired")
    else:
        return web.json_response({"error": f"unknown subscription action '{action}'"}, status=404)
    sb.mark_dirty()
    log.info("subscription_control", subscription=sub.id, action=action)
    return web.json_response({"id": sub.id, "action": action})


def routes() -> list[web.RouteDef]:
    defs: list[web.RouteDef] = []
    for version in ("/v1.0", "/beta"):
        defs += [
            web.post(f"{version}/subscriptions", create_subscription),
            web.get(f"{version}/subscriptions", list_subscriptions),
            web.get(f"{version}/subscriptions/{{sub_id}}", get_subscription),
            web.patch(f"{version}/subscriptions/{{sub_id}}", update_subscription),
            web.delete(f"{version}/subscriptions/{{sub_id}}", delete_subscription),
            web.post(f"{version}/subscriptions/{{sub_id}}/reauthorize", reauthorize_subscription),
        ]
    defs += [
        web.get("/_sandbox/subscriptions", control_list),
        web.post("/_sandbox/subscriptions/{sub_id}/{action}", control_action),
    ]
    return defs
