"""Service principals in the sandbox's Graph: blueprint principals, agent identities,
their sponsors, and app role assignments (application permissions).

The tenant folds an app's service principal into its `App` record
(`sp_object_id`, `has_principal`); agent identities are service principals only.
Delegated grants live in `grants`.
"""

from __future__ import annotations

import base64
import uuid
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from . import grants
from ..auth import graph_route, principal
from ...entra import replication
from ...state import SANDBOX_KEY
from .common import (
    MAX_SPONSORS,
    agent_id_blocked,
    agent_id_body,
    app_only,
    bad_request,
    collection,
    conflict,
    context,
    entity,
    filtered,
    find_app,
    invalid_property,
    not_found,
    read_json,
    resolve_sponsors,
    sponsor_error,
)
from ...tenant import GRAPH_APP_ID, App, new_id

if TYPE_CHECKING:
    from ...state import SandboxState

log = structlog.get_logger(__name__)

MICROSOFT_TENANT_ID = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"  # owner of first-party apps such as Graph
SP_READ = ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "AgentIdentity.Read.All",
           "AgentIdentity.ReadWrite.All", "AgentIdentityBlueprintPrincipal.Read.All",
           "AgentIdentityBlueprintPrincipal.ReadWrite.All")
PRINCIPAL_CREATE = ("AgentIdentityBlueprintPrincipal.Create", "AgentIdentityBlueprintPrincipal.ReadWrite.All")
IDENTITY_CREATE = ("AgentIdentity.Create.All", "AgentIdentity.CreateAsManager", "AgentIdentity.ReadWrite.All")
SP_DELETE = ("Application.ReadWrite.All", "AgentIdentity.DeleteRestore.All", "AgentIdentity.ReadWrite.All",
             "AgentIdentityBlueprintPrincipal.ReadWrite.All")
# agentidentity-list-sponsors names AgentIdentity.ReadWrite.All; entrabot reads sponsors with the
# agent identity's own two-hop token holding Application.Read.All (entrabot-anchor §7.2 step 5).
SPONSORS_READ = ("AgentIdentity.ReadWrite.All", "AgentIdentity.Read.All", "Application.Read.All",
                 "Application.ReadWrite.All", "Directory.Read.All")
SPONSORS_WRITE = ("AgentIdentity.ReadWrite.All",)  # agentidentity-post/delete-sponsors: application only
ROLE_ASSIGN = ("AppRoleAssignment.ReadWrite.All",)
ROLE_READ = ("Application.Read.All", "Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All",
             "Directory.Read.All")

#: Microsoft Graph's application permissions by value, with their published app role ids.
GRAPH_APP_ROLES = {
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f",
    "Chat.Read.All": "6b7d71aa-70aa-4810-a8d9-5d9fb2830017",
    "DelegatedPermissionGrant.ReadWrite.All": "8e8e4742-1d95-4f68-9d56-6ee75648c72a",
    "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
    "Mail.Read": "810c84a8-4a9e-49e6-bf7d-12d183f40d01",
    "Organization.Read.All": "498476ce-e0fe-48b0-b801-37ba7e2685c6",
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "User.ReadWrite.All": "741f803b-c850-494e-b5df-cde7c675a1ca",
}


def app_role_id(name: str) -> str:
    """A role's id: Graph's published one, else a stable sandbox id (for roles not pinned above)."""
    return GRAPH_APP_ROLES.get(name) or str(uuid.uuid5(uuid.NAMESPACE_URL, f"agentseat-sandbox/graph-role/{name}"))


def role_name(role_id: str, granted: list[str]) -> str | None:
    for name in (*GRAPH_APP_ROLES, *granted):
        if app_role_id(name) == role_id.lower():
            return name
    return None


# --- JSON ---------------------------------------------------------------------------------
def sp_json(sb: SandboxState, app: App) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": app.sp_object_id,
        "appId": app.app_id,
        "displayName": app.display_name,
        "accountEnabled": True,
        "appOwnerOrganizationId": MICROSOFT_TENANT_ID if app.app_id == GRAPH_APP_ID else sb.tenant.tenant_id,
        "servicePrincipalType": "Application",
        "servicePrincipalNames": [app.app_id],
        "tags": [],
        "appRoles": [],
    }
    if app.app_id == GRAPH_APP_ID:
        body["servicePrincipalNames"].append("https://graph.microsoft.com")
        body["appRoles"] = [{"allowedMemberTypes": ["Application"], "description": name, "displayName": name,
                             "id": rid, "isEnabled": True, "origin": "Application", "value": name}
                            for name, rid in GRAPH_APP_ROLES.items()]
    if app.kind == "blueprint":
        body = {"@odata.type": "#microsoft.graph.agentIdentityBlueprintPrincipal", **body}
    elif app.kind == "agentIdentity":
        # agentidentity resource: servicePrincipalType is ServiceIdentity for all agent identities.
        body = {"@odata.type": "#microsoft.graph.agentIdentity", **body, "servicePrincipalType": "ServiceIdentity",
                "agentIdentityBlueprintId": app.blueprint_app_id}
    return body


def _principal_apps(sb: SandboxState) -> list[App]:
    return [a for a in sb.tenant.apps.values() if a.has_principal]


def _lookup(request: web.Request, kind: str | None = None) -> App | web.Response:
    """The service principal the URL names (its object id or the appId), or Graph's 404."""
    return find_app(request, "sp_id", lambda a: a.sp_object_id, lambda a: a.has_principal, kind)


_SP_FILTERS = {"appId": lambda a: a.app_id, "displayName": lambda a: a.display_name, "id": lambda a: a.sp_object_id}


# --- service principals ---------------------------------------------------------------------
@graph_route(scopes=SP_READ, roles=SP_READ)
async def list_service_principals(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    kind = {"microsoft.graph.agentIdentity": "agentIdentity",
            "microsoft.graph.agentIdentityBlueprintPrincipal": "blueprint"}.get(request.path.rsplit("/", 1)[-1])
    apps = [a for a in _principal_apps(sb) if kind is None or a.kind == kind]
    fields = {**_SP_FILTERS, "agentIdentityBlueprintId": lambda a: a.blueprint_app_id}
    found = filtered(request, apps, fields, "ServicePrincipal")
    if isinstance(found, web.Response):
        return found
    entity_set = "servicePrincipals" + (f"/{request.path.rsplit('/', 1)[-1]}" if kind else "")
    return collection(request, entity_set, [sp_json(sb, a) for a in found])


@graph_route(scopes=SP_READ, roles=SP_READ)
async def get_service_principal(request: web.Request) -> web.Response:
    app = _lookup(request, "agentIdentity" if request.path.endswith("/microsoft.graph.agentIdentity") else None)
    if isinstance(app, web.Response):
        return app
    return entity(request, "servicePrincipals", sp_json(request.app[SANDBOX_KEY], app))


@graph_route(scopes=PRINCIPAL_CREATE, roles=PRINCIPAL_CREATE)
async def create_blueprint_principal(request: web.Request) -> web.Response:
    """agentidentityblueprintprincipal-post: the body names the blueprint's appId.
    The principal is never implicit (entrabot Learning #2)."""
    sb = request.app[SANDBOX_KEY]
    body = await agent_id_body(request)
    if isinstance(body, web.Response):
        return body
    app = sb.tenant.app(str(body.get("appId", "")))
    if app is None or app.kind != "blueprint":
        return invalid_property(request, "appId", "ServicePrincipal")
    if app.has_principal:
        # A second service principal for one appId is a conflict (servicePrincipal-post).
        return conflict(request, f"The service principal cannot be created, updated, or restored because the "
                                     f"service principal name {app.app_id} is already in use.")
    app.has_principal = True
    replication.principal_created(sb, app)
    sb.mark_dirty()
    log.info("directory_blueprint_principal_created", app_id=app.app_id)
    return entity(request, "servicePrincipals", sp_json(sb, app), status=201)


@graph_route(scopes=IDENTITY_CREATE, roles=IDENTITY_CREATE)
async def create_agent_identity(request: web.Request) -> web.Response:
    """agentidentity-post: displayName, agentIdentityBlueprintId and a valid sponsor are required."""
    sb = request.app[SANDBOX_KEY]
    body = await agent_id_body(request, "ServicePrincipal")
    if isinstance(body, web.Response):
        return body
    name = body["displayName"]
    # The page's example names agentIdentityBlueprintId; its prose says agentIdentityBlueprintAppId.
    blueprint_ref = body.get("agentIdentityBlueprintId") or body.get("agentIdentityBlueprintAppId") or ""
    blueprint = sb.tenant.app(str(blueprint_ref))
    if blueprint is None or blueprint.kind != "blueprint":
        return invalid_property(request, "agentIdentityBlueprintId", "ServicePrincipal")
    if not blueprint.has_principal:
        return bad_request(request, f"The agent identity blueprint '{blueprint.app_id}' has no service principal in "
                                    "this tenant; create its agentIdentityBlueprintPrincipal first.")
    sponsors = resolve_sponsors(sb.tenant, body.get("sponsors@odata.bind"))
    if isinstance(sponsors, str):
        return bad_request(request, sponsors)
    sp_id = new_id()
    # An agent identity has no application object: its object id is the principal's.
    identity = App(app_id=new_id(), object_id=sp_id, sp_object_id=sp_id, display_name=name, kind="agentIdentity",
                   blueprint_app_id=blueprint.app_id, sponsors=sponsors)
    sb.tenant.apps[identity.app_id] = identity
    replication.app_created(sb, identity)
    if sb.tenant.roles.get("agent_identity") not in sb.tenant.apps:
        sb.tenant.roles["agent_identity"] = identity.app_id  # setup re-created the demo's agent identity
    sb.mark_dirty()
    log.info("directory_agent_identity_created", app_id=identity.app_id, blueprint=blueprint.app_id)
    created = {**sp_json(sb, identity), "createdByAppId": principal(request).app_id}
    return entity(request, "servicePrincipals", created, status=201)


@graph_route(scopes=SP_DELETE, roles=SP_DELETE)
async def delete_service_principal(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    app = _lookup(request)
    if isinstance(app, web.Response):
        return app
    if app.kind in ("agentIdentity", "blueprint") and (blocked := agent_id_blocked(request)) is not None:
        return blocked
    if app.kind == "agentIdentity":
        del sb.tenant.apps[app.app_id]  # nothing but the principal exists
    else:
        app.has_principal = False  # the application object stays; only its principal goes
        app.roles = []
    grants.drop_client_grants(sb.tenant, app.app_id)
    sb.mark_dirty()
    log.info("directory_service_principal_deleted", app_id=app.app_id, kind=app.kind)
    return web.Response(status=204)


# --- sponsors -------------------------------------------------------------------------------
def _sponsored(request: web.Request) -> App | web.Response:
    """The agent identity of a sponsors route; agentidentity-*-sponsors support application tokens only."""
    if (refused := app_only(request)) is not None:
        return refused
    return _lookup(request, "agentIdentity")


@graph_route(roles=SPONSORS_READ)
async def list_sponsors(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    identity = _sponsored(request)
    if isinstance(identity, web.Response):
        return identity
    users = [sb.tenant.users[s] for s in identity.sponsors if s in sb.tenant.users]
    value = [{"@odata.type": "#microsoft.graph.user", "id": u.id, "displayName": u.display_name,
              "userPrincipalName": u.upn, "mail": u.mail} for u in users]
    return collection(request, "directoryObjects", value)


@graph_route(roles=SPONSORS_WRITE)
async def add_sponsor(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    identity = _sponsored(request)
    if isinstance(identity, web.Response):
        return identity
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    user_id, why = sponsor_error(sb.tenant, body.get("@odata.id"))
    if why:
        return not_found(request, str(body.get("@odata.id"))) if "does not exist" in why else bad_request(request, why)
    if user_id in identity.sponsors:
        return bad_request(request, "One or more added object references already exist for the following modified "
                                    "properties: 'sponsors'.")
    if len(identity.sponsors) >= MAX_SPONSORS:
        return bad_request(request, f"An agent identity may have at most {MAX_SPONSORS} sponsors.")
    identity.sponsors.append(user_id)
    sb.mark_dirty()
    log.info("directory_sponsor_added", app_id=identity.app_id, sponsor=user_id)
    return web.Response(status=204)


@graph_route(roles=SPONSORS_WRITE)
async def remove_sponsor(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    identity = _sponsored(request)
    if isinstance(identity, web.Response):
        return identity
    user_id = request.match_info["user_id"]
    if user_id not in identity.sponsors:
        return not_found(request, user_id)
    if len(identity.sponsors) == 1:
        # agentidentity-delete-sponsors: "Agent identities require at least one sponsor".
        return bad_request(request, "Agent identities require at least one sponsor; add another sponsor before "
                                    "removing this one.")
    identity.sponsors.remove(user_id)
    sb.mark_dirty()
    log.info("directory_sponsor_removed", app_id=identity.app_id, sponsor=user_id)
    return web.Response(status=204)


# --- app role assignments ---------------------------------------------------------------------
def _assignment_id(principal_sp: str, role_id: str) -> str:
    raw = uuid.UUID(principal_sp).bytes_le + uuid.UUID(role_id).bytes_le
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _assignment_json(sb: SandboxState, app: App, name: str) -> dict[str, Any]:
    graph = sb.tenant.apps[GRAPH_APP_ID]
    role_id = app_role_id(name)
    return {"id": _assignment_id(app.sp_object_id, role_id), "deletedDateTime": None, "appRoleId": role_id,
            "principalDisplayName": app.display_name, "principalId": app.sp_object_id,
            "principalType": "ServicePrincipal", "resourceDisplayName": graph.display_name,
            "resourceId": graph.sp_object_id}


@graph_route(scopes=ROLE_READ, roles=ROLE_READ)
async def list_app_role_assignments(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    app = _lookup(request)
    if isinstance(app, web.Response):
        return app
    return collection(request, f"servicePrincipals('{app.sp_object_id}')/appRoleAssignments",
                      [_assignment_json(sb, app, name) for name in app.roles])


@graph_route(scopes=ROLE_ASSIGN, roles=ROLE_ASSIGN)
async def assign_app_role(request: web.Request) -> web.Response:
    """serviceprincipal-post-approleassignments: grant an application permission to the
    client service principal in the URL (it must equal principalId)."""
    sb = request.app[SANDBOX_KEY]
    app = _lookup(request)
    if isinstance(app, web.Response):
        return app
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    if str(body.get("principalId", "")).lower() != app.sp_object_id.lower():
        return invalid_property(request, "principalId", "AppRoleAssignment")
    resource = next((a for a in sb.tenant.apps.values() if a.sp_object_id == str(body.get("resourceId", ""))), None)
    if resource is None or not resource.has_principal:
        return not_found(request, str(body.get("resourceId", "")))
    name = role_name(str(body.get("appRoleId", "")), app.roles) if resource.app_id == GRAPH_APP_ID else None
    if name is None:
        return bad_request(request, f"Permission being assigned was not found on application "
                                    f"'{resource.sp_object_id}'.")
    if name in app.roles:
        return bad_request(request, "Permission being assigned already exists on the object.")
    app.roles.append(name)
    replication.role_assigned(sb, app, name)
    sb.mark_dirty()
    log.info("directory_app_role_assigned", app_id=app.app_id, role=name)
    body_json = {"@odata.context": context(request, f"servicePrincipals('{app.sp_object_id}')/appRoleAssignments/"
                                                    "$entity"), **_assignment_json(sb, app, name)}
    return web.json_response(body_json, status=201)


@graph_route(scopes=ROLE_ASSIGN, roles=ROLE_ASSIGN)
async def remove_app_role(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    app = _lookup(request)
    if isinstance(app, web.Response):
        return app
    assignment = request.match_info["assignment_id"]
    for name in app.roles:
        if _assignment_id(app.sp_object_id, app_role_id(name)) == assignment:
            app.roles.remove(name)
            sb.mark_dirty()
            return web.Response(status=204)
    return not_found(request, assignment)


def route_table() -> list[tuple[str, str, Any]]:
    by_id, by_app_id = "/servicePrincipals/{sp_id}", "/servicePrincipals(appId='{app_id}')"
    identity = by_id + "/microsoft.graph.agentIdentity"
    table: list[tuple[str, str, Any]] = [
        ("GET", "/servicePrincipals", list_service_principals),
        ("GET", "/servicePrincipals/microsoft.graph.agentIdentity", list_service_principals),
        ("POST", "/servicePrincipals/microsoft.graph.agentIdentity", create_agent_identity),
        ("GET", "/servicePrincipals/microsoft.graph.agentIdentityBlueprintPrincipal", list_service_principals),
        ("POST", "/servicePrincipals/microsoft.graph.agentIdentityBlueprintPrincipal", create_blueprint_principal),
        ("GET", identity, get_service_principal),
        ("GET", identity + "/sponsors", list_sponsors),
        ("POST", identity + "/sponsors/$ref", add_sponsor),
        ("DELETE", identity + "/sponsors/{user_id}/$ref", remove_sponsor),
        ("DELETE", by_id + "/appRoleAssignments/{assignment_id}", remove_app_role),
    ]
    for base in (by_id, by_app_id):
        table += [("GET", base, get_service_principal), ("DELETE", base, delete_service_principal),
                  ("GET", base + "/appRoleAssignments", list_app_role_assignments),
                  ("POST", base + "/appRoleAssignments", assign_app_role)]
    return table + grants.route_table()
