"""`replication_delay_seconds`: new objects, keys and grants reach the token endpoint and Graph
late, with the errors real tenants give meanwhile (entra/replication.py cites them).

Everything goes over real HTTPS (msal for tokens); the sandbox clock is moved past the delay
instead of sleeping.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.sandbox.tenant import AGENT_SCOPES, GRAPH_APP_ID
from tests.sandbox._agent import (
    EXCHANGE_SCOPE,
    GRAPH_DEFAULT,
    add_key_credential,
    agent_user_token,
    grant_agent_consent,
    hop1,
    identity_app,
    make_cert,
    msal_app,
    register_agent_cert,
)
from tests.sandbox._directory_client import Cert, graph, new_blueprint, provisioner

DELAY = 60.0


@pytest.fixture
def sandbox_options() -> SandboxOptions:
    return SandboxOptions(behaviour={"replication_delay_seconds": DELAY})


def _later(sb: Sandbox) -> None:
    """Move the sandbox clock past the delay: everything written so far has replicated."""
    sb.portal.call(sb.clock.advance, DELAY + 1)  # type: ignore[attr-defined]


def _codes(result: dict[str, Any]) -> list[int]:
    return list(result.get("error_codes") or [])


async def test_a_new_certificate_is_unknown_to_the_token_endpoint_until_it_replicates(sandbox: Sandbox) -> None:
    cert = Cert("new")
    blueprint = sandbox.tenant.apps[sandbox.role("blueprint")]
    status, _ = await graph(sandbox, "PATCH", f"/applications/{blueprint.object_id}", provisioner(sandbox),
                            {"keyCredentials": [cert.credential()]})
    assert status == 204
    early = hop1(sandbox, cert.key_pem, cert.sha1)
    assert _codes(early) == [700027] and "The key was not found" in early["error_description"]
    _later(sandbox)
    assert "access_token" in hop1(sandbox, cert.key_pem, cert.sha1)


async def test_a_new_grant_is_consent_not_granted_until_it_replicates(sandbox: Sandbox) -> None:
    key_pem, sha1, _ = register_agent_cert(sandbox)  # an old key: only the grant is new
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    status, _ = await graph(sandbox, "POST", "/oauth2PermissionGrants", provisioner(sandbox), {
        "clientId": identity.sp_object_id, "consentType": "Principal", "principalId": sandbox.role("agent_user"),
        "resourceId": sandbox.tenant.apps[GRAPH_APP_ID].sp_object_id, "scope": " ".join(AGENT_SCOPES)})
    assert status == 201
    assert _codes(agent_user_token(sandbox, key_pem, sha1)) == [65001]
    _later(sandbox)
    assert "access_token" in agent_user_token(sandbox, key_pem, sha1)


async def test_a_new_blueprint_is_not_found_by_the_token_endpoint_nor_by_id_in_graph(sandbox: Sandbox) -> None:
    bp = await new_blueprint(sandbox, "brand new", principal=True)
    key_pem, _, der = make_cert()
    kc = add_key_credential(sandbox, bp["appId"], der)
    app = msal_app(sandbox, bp["appId"], {"private_key": key_pem, "thumbprint": kc.sha1})
    early = app.acquire_token_for_client([EXCHANGE_SCOPE], fmi_path=sandbox.role("agent_identity"))
    assert _codes(early) == [700016] and "was not found in the directory" in early["error_description"]
    status, body = await graph(sandbox, "GET", f"/applications/{bp['id']}", provisioner(sandbox))
    assert status == 404 and body["error"]["code"] == "Request_ResourceNotFound"
    _later(sandbox)
    assert (await graph(sandbox, "GET", f"/applications/{bp['id']}", provisioner(sandbox)))[0] == 200


async def test_a_new_app_role_is_left_out_of_tokens_and_graph_answers_403_meanwhile(sandbox: Sandbox) -> None:
    key_pem, sha1, _ = register_agent_cert(sandbox)
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    status, _ = await graph(sandbox, "POST", f"/servicePrincipals/{identity.sp_object_id}/appRoleAssignments",
                            provisioner(sandbox), {"principalId": identity.sp_object_id,
                                                   "resourceId": sandbox.tenant.apps[GRAPH_APP_ID].sp_object_id,
                                                   "appRoleId": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"})
    assert status == 201
    sponsors = f"/servicePrincipals/{identity.sp_object_id}/microsoft.graph.agentIdentity/sponsors"

    def app_only() -> str:
        t1 = hop1(sandbox, key_pem, sha1)["access_token"]
        result = identity_app(sandbox, t1).acquire_token_for_client([GRAPH_DEFAULT])
        return str(result["access_token"])

    status, body = await graph(sandbox, "GET", sponsors, app_only())
    assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied"
    _later(sandbox)
    assert (await graph(sandbox, "GET", sponsors, app_only()))[0] == 200


async def test_scopes_added_to_a_grant_reach_tokens_late_and_graph_answers_403_meanwhile(sandbox: Sandbox) -> None:
    key_pem, sha1, _ = register_agent_cert(sandbox)
    grant = grant_agent_consent(sandbox, ("User.Read",))  # an old grant: only the new scopes are on their way
    status, _ = await graph(sandbox, "PATCH", f"/oauth2PermissionGrants/{grant.id}", provisioner(sandbox),
                            {"scope": " ".join(AGENT_SCOPES)})
    assert status == 204
    early = agent_user_token(sandbox, key_pem, sha1)
    assert "Mail.Read" not in early["scope"] and "User.Read" in early["scope"]
    status, body = await graph(sandbox, "GET", "/me/messages", early["access_token"])
    assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied"
    _later(sandbox)
    later = agent_user_token(sandbox, key_pem, sha1)
    assert (await graph(sandbox, "GET", "/me/messages", later["access_token"]))[0] == 200
