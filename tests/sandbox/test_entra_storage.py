"""The sandbox's Entra issues Azure Storage tokens through the agent's chain, over loopback HTTPS with msal.

v1.0 tokens as Storage takes them ("Authorize with Microsoft Entra ID", Storage REST; "Access token
claims reference"): `iss` the tenant's STS, `aud` https://storage.azure.com (or one account's Blob
service), `appid` not `azp`, `scp` = user_impersonation for the Agent User, no roles app-only.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests

from agentseat.sandbox.app import Sandbox
from tests.sandbox._agent import EXCHANGE_SCOPE, agent_user_token, hop1, identity_app, register_agent_cert

STORAGE = "https://storage.azure.com"


def verified(sandbox: Sandbox, token: str, audience: str) -> dict[str, Any]:
    """The claims, checked against the keys the sandbox publishes at its v1 discovery `jwks_uri`."""
    jwks_uri = requests.get(f"{sandbox.url}/{sandbox.tenant.tenant_id}/.well-known/openid-configuration",
                            verify=str(sandbox.pki.ca_path), timeout=10).json()["jwks_uri"]
    key = jwt.PyJWKClient(jwks_uri, ssl_context=sandbox.client_ssl_context()).get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience)  # type: ignore[no-any-return]


def app_only(sandbox: Sandbox, scope: str) -> dict[str, Any]:
    key_pem, sha1, _ = register_agent_cert(sandbox)
    t1 = hop1(sandbox, key_pem, sha1)["access_token"]
    return identity_app(sandbox, t1).acquire_token_for_client([scope])  # type: ignore[no-any-return]


def user(sandbox: Sandbox, scope: str) -> dict[str, Any]:
    key_pem, sha1, _ = register_agent_cert(sandbox)
    return agent_user_token(sandbox, key_pem, sha1, scopes=[scope])


def test_the_agent_users_storage_token_is_a_v1_delegated_token(sandbox: Sandbox) -> None:
    before = time.time()
    result = user(sandbox, f"{STORAGE}/.default")
    claims = verified(sandbox, result["access_token"], STORAGE)
    tid = sandbox.tenant.tenant_id
    assert claims["iss"] == claims["idp"] == f"https://sts.windows.net/{tid}/" and claims["ver"] == "1.0"
    assert (claims["aud"], claims["tid"], claims["oid"]) == (STORAGE, tid, sandbox.role("agent_user"))
    assert claims["appid"] == sandbox.role("agent_identity") and "azp" not in claims  # v1: appid, never azp
    assert claims["scp"] == "user_impersonation" and "roles" not in claims
    assert claims["upn"] == claims["unique_name"] == sandbox.tenant.users[sandbox.role("agent_user")].upn
    assert claims["nbf"] <= time.time() + 1 and claims["iat"] >= int(before) - 1
    assert claims["exp"] - claims["iat"] == sandbox.options.access_token_seconds
    assert result["scope"].split()[0] == f"{STORAGE}/user_impersonation"
    assert sandbox.stats.tokens["user_fic_storage"] == 1


def test_the_agent_identitys_storage_token_is_app_only_without_roles(sandbox: Sandbox) -> None:
    result = app_only(sandbox, f"{STORAGE}/.default")
    claims = verified(sandbox, result["access_token"], STORAGE)
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    assert claims["iss"] == f"https://sts.windows.net/{sandbox.tenant.tenant_id}/" and claims["ver"] == "1.0"
    assert (claims["appid"], claims["oid"], claims["idtyp"]) == (identity.app_id, identity.sp_object_id, "app")
    # Storage access is Azure RBAC: no app roles to carry, and a claim without a value is left out.
    assert "roles" not in claims and "scp" not in claims
    assert sandbox.stats.tokens["storage"] == 1


@pytest.mark.parametrize(("scope", "audience"), [
    (f"{STORAGE}//.default", f"{STORAGE}/"),  # the resource ID as documented, https://storage.azure.com/
    ("https://devstoreaccount1.blob.core.windows.net/.default", "https://devstoreaccount1.blob.core.windows.net"),
    (f"{STORAGE}/user_impersonation", STORAGE),  # the one delegated scope, named
])
def test_the_other_forms_of_the_storage_resource(sandbox: Sandbox, scope: str, audience: str) -> None:
    claims = jwt.decode(user(sandbox, scope)["access_token"], options={"verify_signature": False})
    assert claims["aud"] == audience and claims["scp"] == "user_impersonation"


def test_storage_scopes_entra_refuses(sandbox: Sandbox) -> None:
    named = app_only(sandbox, f"{STORAGE}/user_impersonation")  # client credentials take `.default` only
    assert named["error"] == "invalid_scope" and 1002012 in named["error_codes"]
    unknown = user(sandbox, f"{STORAGE}/Blob.ReadWrite")  # Storage has no such delegated scope
    assert unknown["error"] == "invalid_scope" and 70011 in unknown["error_codes"]
    key_pem, sha1, _ = register_agent_cert(sandbox)
    t1 = hop1(sandbox, key_pem, sha1)["access_token"]
    identity = identity_app(sandbox, t1)
    t2 = identity.acquire_token_for_client([EXCHANGE_SCOPE])["access_token"]
    two = identity.acquire_token_by_user_federated_identity_credential(
        [f"{STORAGE}/.default", "https://devstoreaccount1.blob.core.windows.net/.default"], assertion=t2,
        user_object_id=sandbox.role("agent_user"))
    assert two["error"] == "invalid_scope" and 28000 in two["error_codes"]  # two resources in one request
