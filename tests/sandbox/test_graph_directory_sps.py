"""Service principals, agent identities, sponsors, app roles and delegated grants, over real HTTPS."""

from __future__ import annotations

from typing import Any

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.tenant import GRAPH_APP_ID
from tests.sandbox._directory_client import PRINCIPALS, app_with, graph, new_blueprint, provisioner, user, user_ref

IDENTITIES = "/servicePrincipals/microsoft.graph.agentIdentity"
APPLICATION_READ_ALL = "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"


def _identity_body(bp: dict[str, Any], sb: Sandbox, name: str = "agent 2") -> dict[str, Any]:
    return {"displayName": name, "agentIdentityBlueprintId": bp["appId"], "sponsors@odata.bind": [user_ref(sb)]}


def _sponsors_path(sb: Sandbox) -> str:
    return f"/servicePrincipals/{sb.tenant.apps[sb.role('agent_identity')].sp_object_id}" \
           "/microsoft.graph.agentIdentity/sponsors"


def _graph_sp(sb: Sandbox) -> str:
    return sb.tenant.apps[GRAPH_APP_ID].sp_object_id


# --- principals and identities ---------------------------------------------------------------
async def test_blueprint_principal_is_created_once_then_409(sandbox: Sandbox) -> None:
    bp = await new_blueprint(sandbox)
    token = provisioner(sandbox)
    status, sp = await graph(sandbox, "POST", PRINCIPALS, token, {"appId": bp["appId"]})
    assert status == 201 and sp["@odata.type"] == "#microsoft.graph.agentIdentityBlueprintPrincipal"
    assert sandbox.tenant.apps[bp["appId"]].has_principal
    status, body = await graph(sandbox, "POST", PRINCIPALS, token, {"appId": bp["appId"]})
    assert status == 409 and "already in use" in body["error"]["message"]


async def test_service_principal_is_found_by_app_id(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    status, body = await graph(sandbox, "GET", f"/servicePrincipals?$filter=appId eq '{GRAPH_APP_ID}'", token)
    assert status == 200 and [sp["id"] for sp in body["value"]] == [_graph_sp(sandbox)]
    graph_sp = body["value"][0]
    assert {"value": "Application.Read.All", "id": APPLICATION_READ_ALL}.items() <= next(
        r for r in graph_sp["appRoles"] if r["value"] == "Application.Read.All").items()
    status, body = await graph(sandbox, "GET", f"/servicePrincipals(appId='{GRAPH_APP_ID}')", token)
    assert status == 200 and body["id"] == _graph_sp(sandbox)
    bp = await new_blueprint(sandbox)
    status, body = await graph(sandbox, "GET", f"/servicePrincipals?$filter=appId eq '{bp['appId']}'", token)
    assert body["value"] == []  # no principal until it is created


async def test_agent_identity_needs_its_blueprint_principal(sandbox: Sandbox) -> None:
    bp = await new_blueprint(sandbox)
    status, body = await graph(sandbox, "POST", IDENTITIES, provisioner(sandbox), _identity_body(bp, sandbox))
    assert status == 400 and "agentIdentityBlueprintPrincipal" in body["error"]["message"]


async def test_agent_identity_is_created_and_found_again(sandbox: Sandbox) -> None:
    bp = await new_blueprint(sandbox, principal=True)
    token = provisioner(sandbox)
    status, body = await graph(sandbox, "POST", IDENTITIES, token, _identity_body(bp, sandbox, "EntraBot Agent - h"))
    assert status == 201
    assert body["@odata.type"] == "#microsoft.graph.agentIdentity" and body["agentIdentityBlueprintId"] == bp["appId"]
    assert body["servicePrincipalType"] == "ServiceIdentity"
    identity = sandbox.tenant.apps[body["appId"]]
    assert identity.kind == "agentIdentity" and identity.sp_object_id == body["id"]
    status, found = await graph(sandbox, "GET", f"{IDENTITIES}?$filter=displayName eq 'EntraBot Agent - h'", token)
    assert [sp["id"] for sp in found["value"]] == [body["id"]]
    status, found = await graph(sandbox, "GET", f"{IDENTITIES}?$filter=agentIdentityBlueprintId eq '{bp['appId']}'",
                                token)
    assert [sp["id"] for sp in found["value"]] == [body["id"]]


async def test_agent_identity_needs_a_sponsor_and_a_known_blueprint(sandbox: Sandbox) -> None:
    bp = await new_blueprint(sandbox, principal=True)
    token = provisioner(sandbox)
    no_sponsor = {k: v for k, v in _identity_body(bp, sandbox).items() if k != "sponsors@odata.bind"}
    assert (await graph(sandbox, "POST", IDENTITIES, token, no_sponsor))[0] == 400
    unknown = {**_identity_body(bp, sandbox), "agentIdentityBlueprintId": "00000000-0000-0000-0000-000000000003"}
    assert (await graph(sandbox, "POST", IDENTITIES, token, unknown))[0] == 400
    assert (await graph(sandbox, "POST", IDENTITIES, user(sandbox), _identity_body(bp, sandbox)))[0] == 403
    assert [a for a in sandbox.tenant.apps.values() if a.display_name == "agent 2"] == []


async def test_deleting_an_agent_identity_removes_it(sandbox: Sandbox) -> None:
    bp = await new_blueprint(sandbox, principal=True)
    token = provisioner(sandbox)
    _, identity = await graph(sandbox, "POST", IDENTITIES, token, _identity_body(bp, sandbox))
    assert (await graph(sandbox, "DELETE", f"/servicePrincipals/{identity['id']}", token))[0] == 204
    assert identity["appId"] not in sandbox.tenant.apps
    assert (await graph(sandbox, "GET", f"/servicePrincipals/{identity['id']}", token))[0] == 404


# --- sponsors ---------------------------------------------------------------------------------
async def test_sponsors_are_listed_added_and_removed(sandbox: Sandbox) -> None:
    token, path = provisioner(sandbox), _sponsors_path(sandbox)
    status, body = await graph(sandbox, "GET", path, token)
    assert status == 200 and [s["id"] for s in body["value"]] == [sandbox.role("sponsor")]
    status, _ = await graph(sandbox, "POST", f"{path}/$ref", token,
                            {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/"
                                          f"{sandbox.role('colleague1')}"})
    assert status == 204
    status, body = await graph(sandbox, "POST", f"{path}/$ref", token, {"@odata.id": user_ref(sandbox, "colleague1")})
    assert status == 400 and "already exist" in body["error"]["message"]
    _, body = await graph(sandbox, "GET", path, token)
    assert [s["id"] for s in body["value"]] == [sandbox.role("sponsor"), sandbox.role("colleague1")]
    assert (await graph(sandbox, "DELETE", f"{path}/{sandbox.role('sponsor')}/$ref", token))[0] == 204
    assert sandbox.tenant.apps[sandbox.role("agent_identity")].sponsors == [sandbox.role("colleague1")]


async def test_the_last_sponsor_cannot_be_removed(sandbox: Sandbox) -> None:
    token, path = provisioner(sandbox), _sponsors_path(sandbox)
    status, body = await graph(sandbox, "DELETE", f"{path}/{sandbox.role('sponsor')}/$ref", token)
    assert status == 400 and "at least one sponsor" in body["error"]["message"]
    assert (await graph(sandbox, "DELETE", f"{path}/{sandbox.role('colleague2')}/$ref", token))[0] == 404


async def test_agent_users_and_unknown_objects_cannot_be_sponsors(sandbox: Sandbox) -> None:
    token, path = provisioner(sandbox), _sponsors_path(sandbox)
    status, _ = await graph(sandbox, "POST", f"{path}/$ref", token, {"@odata.id": user_ref(sandbox, "agent_user")})
    assert status == 400
    unknown = "https://graph.microsoft.com/v1.0/users/00000000-0000-0000-0000-000000000004"
    status, _ = await graph(sandbox, "POST", f"{path}/$ref", token, {"@odata.id": unknown})
    assert status == 404
    assert sandbox.tenant.apps[sandbox.role("agent_identity")].sponsors == [sandbox.role("sponsor")]


async def test_sponsors_are_app_only(sandbox: Sandbox) -> None:
    path = _sponsors_path(sandbox)
    assert (await graph(sandbox, "GET", path, user(sandbox)))[0] == 403
    assert (await graph(sandbox, "POST", f"{path}/$ref", user(sandbox),
                        {"@odata.id": user_ref(sandbox, "colleague1")}))[0] == 403
    assert (await graph(sandbox, "POST", f"{path}/$ref", app_with(sandbox, "Application.Read.All"),
                        {"@odata.id": user_ref(sandbox, "colleague1")}))[0] == 403


async def test_agent_identity_reads_its_sponsors_with_application_read_all(sandbox: Sandbox) -> None:
    # entrabot's sponsor gate: the agent identity's own two-hop token, role Application.Read.All.
    agent = sandbox.role("agent_identity")
    status, body = await graph(sandbox, "GET", _sponsors_path(sandbox),
                               app_with(sandbox, "Application.Read.All", app_id=agent))
    assert status == 200 and [s["userPrincipalName"] for s in body["value"]] == ["ada@contoso.test"]
    assert (await graph(sandbox, "GET", _sponsors_path(sandbox), app_with(sandbox, app_id=agent)))[0] == 403


# --- app role assignments --------------------------------------------------------------------
async def test_app_role_assignment_grants_the_role_once(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    path = f"/servicePrincipals/{identity.sp_object_id}/appRoleAssignments"
    body = {"principalId": identity.sp_object_id, "resourceId": _graph_sp(sandbox), "appRoleId": APPLICATION_READ_ALL}
    status, created = await graph(sandbox, "POST", path, token, body)
    assert status == 201 and created["appRoleId"] == APPLICATION_READ_ALL
    assert identity.roles == ["Application.Read.All"]
    _, listed = await graph(sandbox, "GET", path, token)
    assert [a["appRoleId"] for a in listed["value"]] == [APPLICATION_READ_ALL]
    status, again = await graph(sandbox, "POST", path, token, body)
    assert status == 400 and "already exists" in again["error"]["message"]
    assert (await graph(sandbox, "DELETE", f"{path}/{created['id']}", token))[0] == 204
    assert identity.roles == []


async def test_app_role_assignment_bodies_are_checked(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    path = f"/servicePrincipals/{identity.sp_object_id}/appRoleAssignments"
    good = {"principalId": identity.sp_object_id, "resourceId": _graph_sp(sandbox), "appRoleId": APPLICATION_READ_ALL}
    bad = [{**good, "appRoleId": "00000000-0000-0000-0000-000000000005"},
           {**good, "principalId": sandbox.tenant.apps[sandbox.role("blueprint")].sp_object_id}]
    for body in bad:
        assert (await graph(sandbox, "POST", path, token, body))[0] == 400
    assert (await graph(sandbox, "POST", path, token, {**good, "resourceId": identity.sp_object_id + "0"}))[0] == 404
    assert (await graph(sandbox, "POST", path, app_with(sandbox, "Application.ReadWrite.All"), good))[0] == 403
    assert identity.roles == []


# --- delegated permission grants ----------------------------------------------------------
async def test_consent_is_created_found_merged_and_deleted(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    agent = sandbox.role("agent_user")
    body = {"clientId": identity.sp_object_id, "consentType": "Principal", "principalId": agent,
            "resourceId": _graph_sp(sandbox), "scope": "User.Read Chat.ReadWrite", "startTime": "2024-01-01T00:00:00Z"}
    status, grant = await graph(sandbox, "POST", "/oauth2PermissionGrants", token, body)
    assert status == 201 and grant["clientId"] == identity.sp_object_id and grant["principalId"] == agent
    assert sandbox.tenant.granted_scopes(identity.app_id, agent) == {"User.Read", "Chat.ReadWrite"}
    status, conflict = await graph(sandbox, "POST", "/oauth2PermissionGrants", token, body)
    assert status == 409 and conflict["error"]["message"] == "Permission entry already exists."
    query = f"/oauth2PermissionGrants?$filter=clientId eq '{identity.sp_object_id}' and principalId eq '{agent}'"
    _, found = await graph(sandbox, "GET", query, token)
    assert [g["id"] for g in found["value"]] == [grant["id"]]
    status, _ = await graph(sandbox, "PATCH", f"/oauth2PermissionGrants/{grant['id']}", token,
                            {"scope": "User.Read Chat.ReadWrite Mail.Read"})
    assert status == 204
    assert sandbox.tenant.granted_scopes(identity.app_id, agent) == {"User.Read", "Chat.ReadWrite", "Mail.Read"}
    assert (await graph(sandbox, "PATCH", f"/oauth2PermissionGrants/{grant['id']}", token,
                        {"clientId": identity.sp_object_id}))[0] == 400
    assert (await graph(sandbox, "DELETE", f"/oauth2PermissionGrants/{grant['id']}", token))[0] == 204
    assert sandbox.tenant.granted_scopes(identity.app_id, agent) == set()
    assert (await graph(sandbox, "GET", f"/oauth2PermissionGrants/{grant['id']}", token))[0] == 404


async def test_consent_with_mismatched_ids_is_refused(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    good = {"clientId": identity.sp_object_id, "consentType": "Principal", "principalId": sandbox.role("agent_user"),
            "resourceId": _graph_sp(sandbox), "scope": "User.Read"}
    bad = [{**good, "clientId": identity.app_id},  # the app id is not the principal's object id
           {**good, "resourceId": GRAPH_APP_ID},
           {**good, "principalId": "00000000-0000-0000-0000-000000000006"},
           {**good, "consentType": "AllPrincipals"},
           {**good, "consentType": "Someone"}]
    for body in bad:
        status, _ = await graph(sandbox, "POST", "/oauth2PermissionGrants", token, body)
        assert status == 400, body
    assert (await graph(sandbox, "POST", "/oauth2PermissionGrants", user(sandbox), good))[0] == 403
    assert sandbox.tenant.grants == {}
