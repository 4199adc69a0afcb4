"""Users, Agent Users, licences and the organization in the sandbox's Graph, over real HTTPS."""

from __future__ import annotations

import base64

import anyio
import pytest

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.tenant import TEAMS_SKU_ID, Grant
from tests.sandbox._agent import agent_user_token, make_cert
from tests.sandbox._directory_client import app_with, graph, new_blueprint, provisioner, user, user_ref


def _agent_user_body(sb: Sandbox, upn: str, parent: str | None = None) -> dict[str, object]:
    return {"@odata.type": "microsoft.graph.agentUser", "displayName": "Second agent", "userPrincipalName": upn,
            "identityParentId": parent or sb.tenant.apps[sb.role("agent_identity")].sp_object_id,
            "mailNickname": upn.split("@")[0], "accountEnabled": True}


async def _free_identity(sb: Sandbox) -> str:
    """An agent identity without an agent user yet (the demo's one already has its agent)."""
    token = provisioner(sb)
    # The host-less `/users/{id}` form of a reference, which the sandbox resolves too.
    bp = await new_blueprint(sb, principal=True, sponsors=[f"/users/{sb.role('sponsor')}"])
    status, identity = await graph(sb, "POST", "/servicePrincipals/microsoft.graph.agentIdentity", token, {
        "displayName": "agent 2", "agentIdentityBlueprintId": bp["appId"],
        "sponsors@odata.bind": [f"https://graph.microsoft.com/v1.0/users/{sb.role('sponsor')}"]})
    assert status == 201
    return str(identity["id"])


# --- /me and /users ------------------------------------------------------------------------
async def test_me_returns_the_signed_in_user_and_honours_select(sandbox: Sandbox) -> None:
    status, body = await graph(sandbox, "GET", "/me", user(sandbox))
    assert status == 200
    assert body["id"] == sandbox.role("sponsor") and body["userPrincipalName"] == "ada@contoso.test"
    assert body["@odata.context"].endswith("$metadata#users/$entity")
    status, body = await graph(sandbox, "GET", "/me?$select=displayName,id", user(sandbox))
    assert set(body) == {"@odata.context", "@odata.type", "displayName", "id"}
    assert body["@odata.context"].endswith("#users(displayName,id)/$entity")


async def test_me_with_an_app_token_is_the_delegated_only_400(sandbox: Sandbox) -> None:
    status, body = await graph(sandbox, "GET", "/me", provisioner(sandbox))
    assert status == 400
    assert body["error"]["message"] == "/me request is only valid with delegated authentication flow."


@pytest.mark.parametrize("path", ["/me", "/users", "/organization", "/subscribedSkus", "/applications",
                                  "/servicePrincipals", "/oauth2PermissionGrants"])
async def test_directory_routes_without_a_token_are_401(sandbox: Sandbox, path: str) -> None:
    status, body = await graph(sandbox, "GET", path)
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"


async def test_user_is_found_by_upn_and_unknown_id_is_404(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    status, body = await graph(sandbox, "GET", "/users/grace@contoso.test", token)
    assert status == 200 and body["id"] == sandbox.role("colleague1")
    status, body = await graph(sandbox, "GET", "/users/00000000-0000-0000-0000-000000000001", token)
    assert status == 404 and body["error"]["code"] == "Request_ResourceNotFound"


async def test_user_read_alone_reads_only_the_caller(sandbox: Sandbox) -> None:
    token = user(sandbox, scopes=["User.Read"])
    assert (await graph(sandbox, "GET", f"/users/{sandbox.role('sponsor')}", token))[0] == 200
    status, body = await graph(sandbox, "GET", f"/users/{sandbox.role('colleague1')}", token)
    assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied"
    basic = user(sandbox, scopes=["User.ReadBasic.All"])
    assert (await graph(sandbox, "GET", f"/users/{sandbox.role('colleague1')}", basic))[0] == 200


async def test_app_token_without_a_user_role_is_403(sandbox: Sandbox) -> None:
    status, _ = await graph(sandbox, "GET", f"/users/{sandbox.role('sponsor')}", app_with(sandbox, "Mail.Read"))
    assert status == 403


async def test_users_filter_by_upn_finds_exactly_one_and_bad_filters_are_400(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    status, body = await graph(sandbox, "GET", "/users?$filter=userPrincipalName eq 'Agent@contoso.test'", token)
    assert status == 200 and [u["id"] for u in body["value"]] == [sandbox.role("agent_user")]
    status, body = await graph(sandbox, "GET", "/users?$filter=userPrincipalName eq 'nobody@contoso.test'", token)
    assert body["value"] == []
    status, _ = await graph(sandbox, "GET", "/users?$filter=startswith(displayName,'A')", token)
    assert status == 400
    status, _ = await graph(sandbox, "GET", "/users?$filter=jobTitle eq 'x'", token)
    assert status == 400


# --- agent users -----------------------------------------------------------------------------
async def test_agent_user_is_created_on_beta_and_found_again_by_upn(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    parent = await _free_identity(sandbox)
    status, body = await graph(sandbox, "POST", "/users", token, _agent_user_body(sandbox, "agent2@contoso.test",
                                                                                    parent), version="beta")
    assert status == 201
    assert body["@odata.type"] == "#microsoft.graph.agentUser" and body["identityParentId"] == parent
    stored = sandbox.tenant.users[body["id"]]
    # The tenant keeps the parent's app id, which the token endpoint's user_fic hop names.
    assert stored.kind == "agentUser" and sandbox.tenant.app(stored.identity_parent_id).sp_object_id == parent
    status, found = await graph(sandbox, "GET", "/users?$filter=userPrincipalName eq 'agent2@contoso.test'", token)
    assert [u["id"] for u in found["value"]] == [body["id"]]


async def test_agent_user_outside_the_verified_domain_is_400(sandbox: Sandbox) -> None:
    parent = await _free_identity(sandbox)
    status, body = await graph(sandbox, "POST", "/users", provisioner(sandbox),
                               _agent_user_body(sandbox, "agent2@example.com", parent), version="beta")
    assert status == 400 and "verified domain" in body["error"]["message"]
    assert sandbox.tenant.user("agent2@example.com") is None


async def test_duplicate_upn_is_400_with_graphs_message(sandbox: Sandbox) -> None:
    parent = await _free_identity(sandbox)
    status, body = await graph(sandbox, "POST", "/users", provisioner(sandbox),
                               _agent_user_body(sandbox, "grace@contoso.test", parent), version="beta")
    assert status == 400
    assert body["error"]["message"] == ("Another object with the same value for property userPrincipalName "
                                        "already exists.")


async def test_identity_parent_already_linked_to_an_agent_user_is_400(sandbox: Sandbox) -> None:
    status, _ = await graph(sandbox, "POST", "/users/microsoft.graph.agentUser", provisioner(sandbox),
                            _agent_user_body(sandbox, "agent2@contoso.test"))
    assert status == 400
    assert sandbox.tenant.user("agent2@contoso.test") is None


async def test_identity_parent_must_be_an_agent_identity(sandbox: Sandbox) -> None:
    blueprint = sandbox.tenant.apps[sandbox.role("blueprint")].sp_object_id
    status, body = await graph(sandbox, "POST", "/users", provisioner(sandbox),
                               _agent_user_body(sandbox, "agent2@contoso.test", blueprint), version="beta")
    assert status == 400 and "identityParentId" in body["error"]["message"]


async def test_delegated_token_without_agent_user_permission_cannot_create_one(sandbox: Sandbox) -> None:
    status, _ = await graph(sandbox, "POST", "/users", user(sandbox),
                            _agent_user_body(sandbox, "agent2@contoso.test"), version="beta")
    assert status == 403


async def test_deleting_a_user_removes_its_grants_and_then_it_is_404(sandbox: Sandbox) -> None:
    colleague = sandbox.role("colleague2")
    sandbox.portal.call(lambda: sandbox.tenant.grants.update(
        g=Grant(id="g", client_app_id=sandbox.role("agent_identity"), principal_id=colleague, scope="User.Read")))
    token = provisioner(sandbox)
    assert (await graph(sandbox, "DELETE", f"/users/{colleague}", token))[0] == 204
    assert "g" not in sandbox.tenant.grants
    assert (await graph(sandbox, "GET", f"/users/{colleague}", token))[0] == 404
    assert (await graph(sandbox, "DELETE", f"/users/{colleague}", token))[0] == 404


async def test_refused_user_patch_changes_nothing(sandbox: Sandbox) -> None:
    grace = sandbox.role("colleague1")
    status, _ = await graph(sandbox, "PATCH", f"/users/{grace}", provisioner(sandbox),
                            {"usageLocation": "GB", "accountEnabled": "yes"})
    assert status == 400
    assert sandbox.tenant.users[grace].usage_location == "" and sandbox.tenant.users[grace].account_enabled
    assert (await graph(sandbox, "PATCH", f"/users/{grace}", user(sandbox), {"usageLocation": "GB"}))[0] == 403


# --- licences and organization ---------------------------------------------------------------
async def test_licence_needs_a_usage_location_then_is_assigned(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    grace = sandbox.role("colleague1")
    add = {"addLicenses": [{"skuId": TEAMS_SKU_ID, "disabledPlans": []}], "removeLicenses": []}
    status, body = await graph(sandbox, "POST", f"/users/{grace}/assignLicense", token, add)
    assert status == 400
    assert body["error"]["message"] == "License assignment cannot be done for user with invalid usage location."
    _, skus = await graph(sandbox, "GET", "/subscribedSkus", token)
    before = skus["value"][0]["consumedUnits"]
    assert (await graph(sandbox, "PATCH", f"/users/{grace}", token, {"usageLocation": "US"}))[0] == 204
    status, body = await graph(sandbox, "POST", f"/users/{grace}/assignLicense", token, add)
    assert status == 200 and body["assignedLicenses"] == [{"disabledPlans": [], "skuId": TEAMS_SKU_ID}]
    _, details = await graph(sandbox, "GET", f"/users/{grace}/licenseDetails", token)
    assert [d["skuId"] for d in details["value"]] == [TEAMS_SKU_ID]
    _, skus = await graph(sandbox, "GET", "/subscribedSkus", token)
    assert skus["value"][0]["consumedUnits"] == before + 1


async def test_licence_bodies_are_validated(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    grace = sandbox.role("colleague1")
    await graph(sandbox, "PATCH", f"/users/{grace}", token, {"usageLocation": "US"})
    unknown = {"addLicenses": [{"skuId": "11111111-1111-1111-1111-111111111111"}], "removeLicenses": []}
    status, body = await graph(sandbox, "POST", f"/users/{grace}/assignLicense", token, unknown)
    assert status == 400 and "valid company License" in body["error"]["message"]
    status, _ = await graph(sandbox, "POST", f"/users/{grace}/assignLicense", token,
                            {"addLicenses": [{"skuId": TEAMS_SKU_ID}]})
    assert status == 400  # removeLicenses is required
    assert sandbox.tenant.users[grace].licenses == []
    for bad in ("USA", None):
        assert (await graph(sandbox, "PATCH", f"/users/{grace}", token, {"usageLocation": bad}))[0] == 400
    assert sandbox.tenant.users[grace].usage_location == "US"


async def test_licence_assignment_needs_a_licence_permission(sandbox: Sandbox) -> None:
    add = {"addLicenses": [{"skuId": TEAMS_SKU_ID}], "removeLicenses": []}
    status, _ = await graph(sandbox, "POST", f"/users/{sandbox.role('colleague1')}/assignLicense",
                            app_with(sandbox, "Organization.Read.All"), add)
    assert status == 403


async def test_subscribed_skus_offer_a_teams_capable_sku(sandbox: Sandbox) -> None:
    status, body = await graph(sandbox, "GET", "/subscribedSkus", provisioner(sandbox))
    assert status == 200
    sku = body["value"][0]
    assert sku["skuId"] == TEAMS_SKU_ID and sku["prepaidUnits"]["enabled"] == 25
    assert {"TEAMS1", "EXCHANGE_S_ENTERPRISE"} <= {p["servicePlanName"] for p in sku["servicePlans"]}
    assert sku["consumedUnits"] == 1  # the demo agent already holds one


async def test_organization_names_the_tenant_and_its_verified_domain(sandbox: Sandbox) -> None:
    status, body = await graph(sandbox, "GET", "/organization", user(sandbox))
    assert status == 200
    org = body["value"][0]
    assert org["id"] == sandbox.tenant.tenant_id
    assert [d["name"] for d in org["verifiedDomains"]] == ["contoso.test"]


# --- the whole setup flow ---------------------------------------------------------------------
async def test_agent_provisioned_through_graph_gets_a_three_hop_token(sandbox: Sandbox) -> None:
    """Teardown then setup, as `agentseat setup` does it, then the token chain works for the new agent."""
    token, sb = provisioner(sandbox), sandbox
    old = {k: sb.role(k) for k in ("agent_user", "agent_identity", "blueprint")}
    assert (await graph(sb, "DELETE", f"/users/{old['agent_user']}", token))[0] == 204
    assert (await graph(sb, "DELETE", f"/servicePrincipals(appId='{old['agent_identity']}')", token))[0] == 204
    assert (await graph(sb, "DELETE", f"/applications(appId='{old['blueprint']}')", token))[0] == 204

    _, bp = await graph(sb, "POST", "/applications/microsoft.graph.agentIdentityBlueprint", token,
                        {"displayName": "agentseat agent", "sponsors@odata.bind": [user_ref(sb)]})
    assert (await graph(sb, "POST", "/servicePrincipals/microsoft.graph.agentIdentityBlueprintPrincipal", token,
                        {"appId": bp["appId"]}))[0] == 201
    key_pem, _, der = make_cert()
    cert = {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(der).decode()}
    assert (await graph(sb, "PATCH", f"/applications/{bp['id']}", token, {"keyCredentials": [cert]}))[0] == 204
    _, identity = await graph(sb, "POST", "/servicePrincipals/microsoft.graph.agentIdentity", token, {
        "displayName": "agentseat agent", "agentIdentityBlueprintId": bp["appId"],
        "sponsors@odata.bind": [user_ref(sb)]})
    status, agent = await graph(sb, "POST", "/users", token, _agent_user_body(sb, "agent@contoso.test",
                                                                               identity["id"]), version="beta")
    assert status == 201
    graph_sp = (await graph(sb, "GET", "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')",
                            token))[1]["id"]
    assert (await graph(sb, "POST", "/oauth2PermissionGrants", token, {
        "clientId": identity["id"], "consentType": "Principal", "principalId": agent["id"], "resourceId": graph_sp,
        "scope": "User.Read Chat.ReadWrite"}))[0] == 201
    # The well-known names follow the re-created objects.
    assert (sb.role("agent_user"), sb.role("agent_identity"), sb.role("blueprint")) == (
        agent["id"], identity["appId"], bp["appId"])

    sha1 = (await graph(sb, "GET", f"/applications/{bp['id']}", token))[1]["keyCredentials"][0]["customKeyIdentifier"]
    result = await anyio.to_thread.run_sync(agent_user_token, sb, key_pem, sha1)
    assert "access_token" in result, result
    status, me = await graph(sb, "GET", "/me", result["access_token"])
    assert status == 200 and me["id"] == agent["id"] and me["identityParentId"] == identity["id"]
