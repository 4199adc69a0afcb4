"""The sandbox's Graph directory: users (including Agent Users), the organization and licences.

Applications, key credentials and blueprints live in `apps`;
service principals, agent identities, sponsors and app roles in
`service_principals`; delegated grants in `grants`.
`routes()` here returns them all, so the server wires one module. Shapes and errors follow the Microsoft Graph pages
named beside each rule.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from . import apps

from . import service_principals
from ..auth import graph_route, principal
from ...entra import replication
from ...state import SANDBOX_KEY
from .common import (
    bad_request,
    collection,
    denied,
    entity,
    filtered,
    has_any,
    invalid_property,
    nonblank,
    not_found,
    read_json,
)
from ..resources import user_json
from ...tenant import TEAMS_SKU_ID, Tenant, User, new_id

if TYPE_CHECKING:
    from ...state import SandboxState

log = structlog.get_logger(__name__)

# Delegated: User.Read covers the caller; reading anyone else needs one of these (user-get permissions).
READ_OTHERS = ("User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All", "Directory.Read.All",
               "Directory.ReadWrite.All")
USER_READ_SCOPES = ("User.Read", "User.ReadWrite", *READ_OTHERS)
USER_READ_ROLES = ("User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All", "Directory.Read.All",
                   "Directory.ReadWrite.All")
USER_WRITE = ("User.ReadWrite.All", "Directory.ReadWrite.All")
# agentuser-post: AgentIdUser.ReadWrite.IdentityParentedBy (least), AgentIdUser.ReadWrite.All, User.ReadWrite.All.
AGENT_USER_WRITE = ("AgentIdUser.ReadWrite.IdentityParentedBy", "AgentIdUser.ReadWrite.All", "User.ReadWrite.All")
LICENSE_WRITE = ("LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All")
LICENSE_READ = ("LicenseAssignment.Read.All", "LicenseAssignment.ReadWrite.All", "Organization.Read.All",
                "Directory.Read.All")
ORG_READ = ("Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All")

# user-post-users: "Only the following characters are allowed A - Z, a - z, 0 - 9, ' . - _ ! # ^ ~".
_UPN_LOCAL = re.compile(r"^[A-Za-z0-9'.\-_!#^~]+$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


@dataclass(frozen=True)
class Sku:
    sku_id: str
    part_number: str
    plans: tuple[tuple[str, str], ...]  # (servicePlanId, servicePlanName)
    prepaid: int


#: The tenant's one subscription: Microsoft 365 E3 (SPE_E3), which carries Teams and an
#: Exchange mailbox; entrabot Learning #13 counts only SKUs whose plans include Teams.
SKUS = {
    TEAMS_SKU_ID: Sku(TEAMS_SKU_ID, "SPE_E3", (
        ("57ff2da0-773e-42df-b2af-ffb7a2317929", "TEAMS1"),
        ("efb87545-963c-4e0d-99df-69c6916d9eb0", "EXCHANGE_S_ENTERPRISE"),
    ), 25),
}


def user_body(sb: SandboxState, user: User) -> dict[str, Any]:
    """A user as Graph returns it. `identityParentId` is the agent identity's object id
    (agentuser resource), while the tenant stores its app id for the token endpoint."""
    tenant = sb.tenant
    body = user_json(sb, user)
    body["mailNickname"] = user.upn.split("@", 1)[0]
    body["businessPhones"] = []
    body["assignedLicenses"] = [{"disabledPlans": [], "skuId": s} for s in user.licenses]
    if user.kind == "agentUser":
        parent = tenant.app(user.identity_parent_id)
        body["identityParentId"] = parent.sp_object_id if parent else user.identity_parent_id
    return body


def consumed(tenant: Tenant, sku_id: str) -> int:
    return sum(1 for u in tenant.users.values() if sku_id in u.licenses)


# --- users --------------------------------------------------------------------------------
@graph_route(scopes=USER_READ_SCOPES, roles=USER_READ_ROLES)
async def get_me(request: web.Request) -> web.Response:
    who = principal(request)
    if who.kind != "user":
        # Graph answers app-only /me with this 400 (there is no signed-in user to resolve).
        return bad_request(request, "/me request is only valid with delegated authentication flow.", code="BadRequest")
    sb = request.app[SANDBOX_KEY]
    user = sb.tenant.users.get(who.oid)
    if user is None:
        return not_found(request, who.oid)
    return entity(request, "users", user_body(sb, user))


def _find_user(request: web.Request) -> User | web.Response:
    """The user or Agent User the URL names (id or UPN), or Graph's 404."""
    ref = request.match_info["user_id"]
    user = request.app[SANDBOX_KEY].tenant.user(ref)
    return user if user is not None and user.kind in ("user", "agentUser") else not_found(request, ref)


def _may_read(request: web.Request, user: User, others: tuple[str, ...] = READ_OTHERS) -> bool:
    who = principal(request)
    return who.kind != "user" or who.oid == user.id or has_any(request, others)


@graph_route(scopes=USER_READ_SCOPES, roles=USER_READ_ROLES)
async def get_user(request: web.Request) -> web.Response:
    user = _find_user(request)
    if isinstance(user, web.Response):
        return user
    if not _may_read(request, user):
        return denied(request)
    return entity(request, "users", user_body(request.app[SANDBOX_KEY], user))


@graph_route(scopes=READ_OTHERS, roles=USER_READ_ROLES)
async def list_users(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    users = [u for u in sb.tenant.users.values() if u.kind in ("user", "agentUser")]
    found = filtered(request, users, {
        "userPrincipalName": lambda u: u.upn, "mail": lambda u: u.mail, "id": lambda u: u.id,
        "displayName": lambda u: u.display_name, "mailNickname": lambda u: u.upn.split("@", 1)[0],
    }, "User")
    if isinstance(found, web.Response):
        return found
    return collection(request, "users", [user_body(sb, u) for u in found])


@graph_route(scopes=AGENT_USER_WRITE, roles=AGENT_USER_WRITE)
async def create_user(request: web.Request) -> web.Response:
    """POST /users (with `@odata.type` agentUser) or POST /users/microsoft.graph.agentUser (agentuser-post)."""
    sb = request.app[SANDBOX_KEY]
    tenant = sb.tenant
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    odata_type = str(body.get("@odata.type", "")).lstrip("#").lower()
    agent = request.path.endswith("/microsoft.graph.agentUser") or odata_type == "microsoft.graph.agentuser"
    if not agent and not has_any(request, USER_WRITE):
        return denied(request)  # the AgentIdUser.* permissions create agent users only
    required = ["accountEnabled", "displayName", "mailNickname", "userPrincipalName"]
    required.append("identityParentId" if agent else "passwordProfile")
    for prop in required:
        if body.get(prop) in (None, ""):
            return invalid_property(request, prop, "User")
    if not isinstance(body["accountEnabled"], bool):
        return invalid_property(request, "accountEnabled", "User")
    upn = str(body["userPrincipalName"])
    local, _, domain = upn.rpartition("@")
    if not local or not _UPN_LOCAL.match(local):
        return invalid_property(request, "userPrincipalName", "User")
    if domain.lower() != tenant.domain.lower():
        return bad_request(request, "The domain portion of the userPrincipalName property is invalid. You must use "
                                    "one of the verified domain names in your organization.")
    if tenant.user(upn) is not None:
        return bad_request(request, "Another object with the same value for property userPrincipalName already "
                                    "exists.")
    parent_app_id = ""
    if agent:
        # agentuser-post: identityParentId is the agent identity's object id; its app id is accepted too,
        # and the tenant stores the app id (what the token endpoint's user_fic hop compares).
        ref = str(body["identityParentId"])
        parent = tenant.app(ref) or tenant.app_by_object_id(ref)
        if parent is None or parent.kind != "agentIdentity":
            return invalid_property(request, "identityParentId", "User")
        # agentuser-post: an identityParentId already linked to another agentUser is a 400.
        if any(u.kind == "agentUser" and u.identity_parent_id == parent.app_id for u in tenant.users.values()):
            return bad_request(request, f"The agent identity '{ref}' is already the identity parent of another "
                                        "agent user.")
        parent_app_id = parent.app_id
    user = User(id=new_id(), upn=upn, display_name=str(body["displayName"]), mail=upn,
                kind="agentUser" if agent else "user", identity_parent_id=parent_app_id,
                account_enabled=body["accountEnabled"])
    tenant.users[user.id] = user
    replication.user_created(sb, user)
    sb.provisioning.started(user.id)  # no mailbox or Teams presence yet (graph/provisioning.py)
    if agent and tenant.roles.get("agent_user") not in tenant.users:
        tenant.roles["agent_user"] = user.id  # setup re-created the demo's agent: keep the well-known name
    sb.mark_dirty()
    log.info("directory_user_created", user=user.id, kind=user.kind)
    return entity(request, "users", user_body(sb, user), status=201)


@graph_route(scopes=("User.ReadWrite", *USER_WRITE), roles=(*USER_WRITE, "AgentIdUser.ReadWrite.All",
                                                              "AgentIdUser.ReadWrite.IdentityParentedBy"))
async def update_user(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    user = _find_user(request)
    if isinstance(user, web.Response):
        return user
    if not _may_read(request, user, USER_WRITE):
        return denied(request)
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    checks = {
        # agentUser/user resource: usageLocation is a two-letter ISO 3166 code, not nullable.
        "usageLocation": lambda v: isinstance(v, str) and bool(_COUNTRY.match(v)),
        "displayName": nonblank,
        "accountEnabled": lambda v: isinstance(v, bool),
    }
    for prop, value in body.items():
        if prop not in checks:
            return bad_request(request, f"Invalid property '{prop}'.")
        if not checks[prop](value):
            return invalid_property(request, prop, "User")
    # Every property was valid: only now change the user, so a refused PATCH changes nothing.
    if "usageLocation" in body:
        user.usage_location = body["usageLocation"].upper()
    if "displayName" in body:
        user.display_name = body["displayName"]
    if "accountEnabled" in body:
        user.account_enabled = body["accountEnabled"]
    sb.mark_dirty()
    return web.Response(status=204)


@graph_route(scopes=USER_WRITE, roles=(*USER_WRITE, "User.DeleteRestore.All", "AgentIdUser.ReadWrite.All"))
async def delete_user(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    tenant = sb.tenant
    user = _find_user(request)
    if isinstance(user, web.Response):
        return user
    del tenant.users[user.id]
    for grant_id in [g for g, grant in tenant.grants.items() if grant.principal_id == user.id]:
        del tenant.grants[grant_id]
    for app in tenant.apps.values():
        if user.id in app.sponsors:
            app.sponsors.remove(user.id)
    sb.mark_dirty()
    log.info("directory_user_deleted", user=user.id, kind=user.kind)
    return web.Response(status=204)


# --- licences -----------------------------------------------------------------------------
def _sku_json(tenant: Tenant, sku: Sku) -> dict[str, Any]:
    return {
        "accountId": tenant.tenant_id,
        "accountName": "Contoso",
        "appliesTo": "User",
        "capabilityStatus": "Enabled",
        "consumedUnits": consumed(tenant, sku.sku_id),
        "id": f"{tenant.tenant_id}_{sku.sku_id}",
        "prepaidUnits": {"enabled": sku.prepaid, "lockedOut": 0, "suspended": 0, "warning": 0},
        "servicePlans": [{"servicePlanId": pid, "servicePlanName": name, "provisioningStatus": "Success",
                          "appliesTo": "User"} for pid, name in sku.plans],
        "skuId": sku.sku_id,
        "skuPartNumber": sku.part_number,
        "subscriptionIds": [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant.tenant_id}/{sku.sku_id}"))],
    }


@graph_route(scopes=LICENSE_READ, roles=LICENSE_READ)
async def subscribed_skus(request: web.Request) -> web.Response:
    tenant = request.app[SANDBOX_KEY].tenant
    return collection(request, "subscribedSkus", [_sku_json(tenant, s) for s in SKUS.values()])


@graph_route(scopes=LICENSE_WRITE, roles=LICENSE_WRITE)
async def assign_license(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    tenant = sb.tenant
    user = _find_user(request)
    if isinstance(user, web.Response):
        return user
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    adds, removes = body.get("addLicenses"), body.get("removeLicenses")
    # user-assignlicense: both collections are required (either may be empty).
    if not isinstance(adds, list) or not all(isinstance(a, dict) for a in adds):
        return invalid_property(request, "addLicenses", "assignLicense")
    if not isinstance(removes, list) or not all(isinstance(r, str) for r in removes):
        return invalid_property(request, "removeLicenses", "assignLicense")
    add_ids = [str(a.get("skuId", "")) for a in adds]
    for sku_id in [*add_ids, *removes]:
        if sku_id not in SKUS:
            return bad_request(request, f"License {sku_id} does not correspond to a valid company License.")
    if add_ids and not user.usage_location:
        return bad_request(request, "License assignment cannot be done for user with invalid usage location.")
    for sku_id in removes:
        if sku_id not in user.licenses:
            return bad_request(request, "User does not have a corresponding license.")
    for sku_id in add_ids:
        if sku_id not in user.licenses and consumed(tenant, sku_id) >= SKUS[sku_id].prepaid:
            return bad_request(request, f"Subscription for license {sku_id} does not have any available licenses.")
    user.licenses = [s for s in user.licenses if s not in removes]
    user.licenses += [s for s in dict.fromkeys(add_ids) if s not in user.licenses]
    if add_ids:
        sb.provisioning.started(user.id)  # a licence starts provisioning (graph/provisioning.py)
    sb.mark_dirty()
    log.info("directory_license_assigned", user=user.id, added=len(add_ids), removed=len(removes))
    return entity(request, "users", user_body(sb, user))


@graph_route(scopes=("User.Read", "User.Read.All", "Directory.Read.All", "LicenseAssignment.Read.All"),
             roles=(*USER_READ_ROLES, "LicenseAssignment.Read.All", "LicenseAssignment.ReadWrite.All"))
async def license_details(request: web.Request) -> web.Response:
    user = _find_user(request)
    if isinstance(user, web.Response):
        return user
    if not _may_read(request, user, ("User.Read.All", "Directory.Read.All", "LicenseAssignment.Read.All")):
        return denied(request)
    details = []
    for sku_id in user.licenses:
        sku = SKUS[sku_id]
        details.append({
            "id": base64.urlsafe_b64encode(uuid.UUID(sku_id).bytes + uuid.UUID(user.id).bytes).decode().rstrip("="),
            "skuId": sku_id,
            "skuPartNumber": sku.part_number,
            "servicePlans": [{"servicePlanId": pid, "servicePlanName": name, "provisioningStatus": "Success",
                              "appliesTo": "User"} for pid, name in sku.plans],
        })
    return collection(request, f"users('{user.id}')/licenseDetails", details)


# --- organization -------------------------------------------------------------------------
@graph_route(scopes=("User.Read", *ORG_READ), roles=ORG_READ)
async def organization(request: web.Request) -> web.Response:
    tenant = request.app[SANDBOX_KEY].tenant
    org = {
        "id": tenant.tenant_id,
        "displayName": "Contoso",
        "countryLetterCode": "US",
        "tenantType": "AAD",
        "verifiedDomains": [{"capabilities": "Email, OfficeCommunicationsOnlineService", "isDefault": True,
                             "isInitial": True, "name": tenant.domain, "type": "Managed"}],
    }
    return collection(request, "organization", [org])


def _own_routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/me", get_me),
        ("GET", "/organization", organization),
        ("GET", "/subscribedSkus", subscribed_skus),
        ("GET", "/users", list_users),
        ("POST", "/users", create_user),
        ("POST", "/users/microsoft.graph.agentUser", create_user),
        ("GET", "/users/{user_id}", get_user),
        ("PATCH", "/users/{user_id}", update_user),
        ("DELETE", "/users/{user_id}", delete_user),
        ("POST", "/users/{user_id}/assignLicense", assign_license),
        ("GET", "/users/{user_id}/licenseDetails", license_details),
    ]


def routes() -> list[web.RouteDef]:
    """Every directory route, on /v1.0 and on /beta (entrabot creates Agent Users on beta)."""
    table = [*_own_routes(), *apps.route_table(), *service_principals.route_table()]
    return [web.route(method, prefix + path, handler)
            for prefix in ("/v1.0", "/beta") for method, path, handler in table]
