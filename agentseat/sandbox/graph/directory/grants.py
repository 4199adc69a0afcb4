"""Delegated permission grants (oAuth2PermissionGrant) in the sandbox's Graph.

A grant is keyed by client service principal, resource service principal and
(for consentType Principal) the user; the tenant stores it by app ids, which
`Tenant.granted_scopes` reads when the token endpoint decides what a user token
may carry. Grant ids follow Graph's form: the base64url of those object ids.
"""

from __future__ import annotations

import base64
import uuid
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from ..auth import graph_route
from ...entra import replication
from ...state import SANDBOX_KEY
from .common import (
    bad_request,
    collection,
    conflict,
    entity,
    filtered,
    invalid_property,
    not_found,
    read_json,
)
from ...tenant import App, Grant

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import Tenant

log = structlog.get_logger(__name__)

GRANT_WRITE = ("DelegatedPermissionGrant.ReadWrite.All",)
GRANT_READ = ("DelegatedPermissionGrant.Read.All", "DelegatedPermissionGrant.ReadWrite.All", "Directory.Read.All")
_CREATE_PROPS = {"clientId", "consentType", "principalId", "resourceId", "scope", "startTime", "expiryTime"}


def grant_id(client_sp: str, resource_sp: str, principal_id: str = "") -> str:
    """Graph's grant id: base64url of the client and resource object ids (and the user's)."""
    raw = uuid.UUID(client_sp).bytes_le + uuid.UUID(resource_sp).bytes_le
    if principal_id:
        raw += uuid.UUID(principal_id).bytes_le
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _sp(sb: SandboxState, sp_object_id: object) -> App | None:
    for app in sb.tenant.apps.values():
        if app.sp_object_id == sp_object_id and app.has_principal:
            return app
    return None


def drop_client_grants(tenant: Tenant, client_app_id: str) -> None:
    """A deleted service principal takes the delegated grants it held as client with it."""
    for grant_id in [gid for gid, grant in tenant.grants.items() if grant.client_app_id == client_app_id]:
        del tenant.grants[grant_id]


def grant_json(sb: SandboxState, grant: Grant) -> dict[str, Any]:
    client, resource = sb.tenant.app(grant.client_app_id), sb.tenant.app(grant.resource)
    return {
        "clientId": client.sp_object_id if client else grant.client_app_id,
        "consentType": "Principal" if grant.principal_id else "AllPrincipals",
        "id": grant.id,
        "principalId": grant.principal_id or None,
        "resourceId": resource.sp_object_id if resource else grant.resource,
        "scope": grant.scope,
    }


@graph_route(scopes=GRANT_WRITE, roles=GRANT_WRITE)
async def create_grant(request: web.Request) -> web.Response:
    """oauth2permissiongrant-post: one grant per client, resource and user (409 on a repeat)."""
    sb = request.app[SANDBOX_KEY]
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    for prop in body:
        if prop not in _CREATE_PROPS:
            return bad_request(request, f"Invalid property '{prop}'.")
    client, resource = _sp(sb, body.get("clientId")), _sp(sb, body.get("resourceId"))
    if client is None:
        return invalid_property(request, "clientId", "OAuth2PermissionGrant")
    if resource is None:
        return invalid_property(request, "resourceId", "OAuth2PermissionGrant")
    consent = body.get("consentType")
    principal_id = body.get("principalId")
    if consent == "Principal":
        user = sb.tenant.users.get(str(principal_id))
        if user is None:
            return invalid_property(request, "principalId", "OAuth2PermissionGrant")
        principal_id = user.id
    elif consent == "AllPrincipals":
        if principal_id is not None:  # "principalId ... If consentType is AllPrincipals this value is null"
            return invalid_property(request, "principalId", "OAuth2PermissionGrant")
        principal_id = ""
    else:
        return invalid_property(request, "consentType", "OAuth2PermissionGrant")
    scope = body.get("scope", "")
    if not isinstance(scope, str):
        return invalid_property(request, "scope", "OAuth2PermissionGrant")
    new_id = grant_id(client.sp_object_id, resource.sp_object_id, principal_id)
    if any(g.client_app_id == client.app_id and g.resource == resource.app_id and g.principal_id == principal_id
           for g in sb.tenant.grants.values()):
        # Scopes for one client+resource+user live in one grant; add more with PATCH.
        return conflict(request, "Permission entry already exists.")
    grant = Grant(id=new_id, client_app_id=client.app_id, principal_id=principal_id, scope=" ".join(scope.split()),
                  resource=resource.app_id)
    sb.tenant.grants[grant.id] = grant
    replication.grant_created(sb, grant)
    sb.mark_dirty()
    log.info("directory_grant_created", client=client.app_id, principal=principal_id or "all",
             scopes=len(grant.scope.split()))
    return entity(request, "oauth2PermissionGrants", grant_json(sb, grant), status=201)


@graph_route(scopes=GRANT_READ, roles=GRANT_READ)
async def list_grants(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    bodies = [grant_json(sb, g) for g in sb.tenant.grants.values()]
    found = filtered(request, bodies, {
        "clientId": lambda b: b["clientId"], "principalId": lambda b: b["principalId"] or "",
        "resourceId": lambda b: b["resourceId"], "consentType": lambda b: b["consentType"], "id": lambda b: b["id"],
    }, "OAuth2PermissionGrant")
    if isinstance(found, web.Response):
        return found
    return collection(request, "oauth2PermissionGrants", found)


def _grant(request: web.Request) -> Grant | web.Response:
    """The grant the URL names, or Graph's 404."""
    grant = request.app[SANDBOX_KEY].tenant.grants.get(request.match_info["grant_id"])
    return not_found(request, request.match_info["grant_id"]) if grant is None else grant


@graph_route(scopes=GRANT_READ, roles=GRANT_READ)
async def get_grant(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    grant = _grant(request)
    if isinstance(grant, web.Response):
        return grant
    return entity(request, "oauth2PermissionGrants", grant_json(sb, grant))


@graph_route(scopes=GRANT_WRITE, roles=GRANT_WRITE)
async def update_grant(request: web.Request) -> web.Response:
    """oauth2permissiongrant-update: only `scope` changes; the list sent replaces the old one."""
    sb = request.app[SANDBOX_KEY]
    grant = _grant(request)
    if isinstance(grant, web.Response):
        return grant
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    for prop in body:
        if prop != "scope":
            return bad_request(request, f"Property '{prop}' of resource 'OAuth2PermissionGrant' cannot be updated.")
    if not isinstance(body.get("scope"), str):
        return invalid_property(request, "scope", "OAuth2PermissionGrant")
    previous, grant.scope = grant.scope, " ".join(body["scope"].split())
    replication.grant_changed(sb, grant, previous)
    sb.mark_dirty()
    log.info("directory_grant_updated", grant=grant.id, scopes=len(grant.scope.split()))
    return web.Response(status=204)


@graph_route(scopes=GRANT_WRITE, roles=GRANT_WRITE)
async def delete_grant(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    if sb.tenant.grants.pop(request.match_info["grant_id"], None) is None:
        return not_found(request, request.match_info["grant_id"])
    sb.mark_dirty()
    return web.Response(status=204)


def route_table() -> list[tuple[str, str, Any]]:
    one = "/oauth2PermissionGrants/{grant_id}"
    return [("GET", "/oauth2PermissionGrants", list_grants), ("POST", "/oauth2PermissionGrants", create_grant),
            ("GET", one, get_grant), ("PATCH", one, update_grant), ("DELETE", one, delete_grant)]
