"""Blueprints and certificate credentials in the sandbox's Graph, over real HTTPS."""

from __future__ import annotations

import time
from typing import Any

import jwt

from agentseat.sandbox.app import Sandbox
from tests.sandbox._directory_client import (
    BLUEPRINTS,
    Cert,
    app_with,
    graph,
    new_blueprint,
    provisioner,
    user,
    user_ref,
)


async def _blueprint(sb: Sandbox, name: str = "agentseat blueprint") -> dict[str, Any]:
    return await new_blueprint(sb, name, description="d")


def _proof(cert: Cert, object_id: str, *, lifetime: int = 600, aud: str = "00000002-0000-0000-c000-000000000000",
           nbf: float | None = None) -> str:
    start = int(nbf if nbf is not None else time.time())
    return jwt.encode({"aud": aud, "iss": object_id, "nbf": start, "exp": start + lifetime}, cert.key_pem,
                      algorithm="RS256")


async def _with_cert(sb: Sandbox, cert: Cert) -> dict[str, Any]:
    bp = await _blueprint(sb)
    status, _ = await graph(sb, "PATCH", f"/applications/{bp['id']}", provisioner(sb),
                            {"keyCredentials": [cert.credential()]})
    assert status == 204
    return bp


async def _keys(sb: Sandbox, object_id: str) -> list[dict[str, Any]]:
    status, body = await graph(sb, "GET", f"/applications/{object_id}?$select=keyCredentials", provisioner(sb))
    assert status == 200
    return list(body["keyCredentials"])


# --- blueprints ---------------------------------------------------------------------------
async def test_blueprint_is_created_then_found_by_display_name(sandbox: Sandbox) -> None:
    body = await _blueprint(sandbox, "Finder O'Brien")
    assert body["@odata.type"] == "#microsoft.graph.agentIdentityBlueprint" and body["description"] == "d"
    app = sandbox.tenant.apps[body["appId"]]
    assert app.kind == "blueprint" and app.sponsors == [sandbox.role("sponsor")] and not app.has_principal
    token = provisioner(sandbox)
    for path in ("/applications", BLUEPRINTS):
        status, found = await graph(sandbox, "GET", f"{path}?$filter=displayName eq 'Finder O''Brien'", token)
        assert status == 200 and [a["appId"] for a in found["value"]] == [body["appId"]]
    status, found = await graph(sandbox, "GET", f"/applications?$filter=appId eq '{sandbox.role('provisioner')}'",
                                token)
    assert [a["appId"] for a in found["value"]] == [sandbox.role("provisioner")]
    status, found = await graph(sandbox, "GET", BLUEPRINTS, token)
    assert {a["appId"] for a in found["value"]} == {body["appId"], sandbox.role("blueprint")}


async def test_blueprint_needs_a_sponsor_who_is_a_person(sandbox: Sandbox) -> None:
    token = provisioner(sandbox)
    status, _ = await graph(sandbox, "POST", BLUEPRINTS, token, {"displayName": "no sponsor"})
    assert status == 400
    status, body = await graph(sandbox, "POST", BLUEPRINTS, token,
                               {"displayName": "x", "sponsors@odata.bind": [user_ref(sandbox, "agent_user")]})
    assert status == 400 and "agent users" in body["error"]["message"]
    assert [a for a in sandbox.tenant.apps.values() if a.display_name == "x"] == []


async def test_blueprint_create_refuses_delegated_and_unprivileged_callers(sandbox: Sandbox) -> None:
    body = {"displayName": "x", "sponsors@odata.bind": [user_ref(sandbox)]}
    assert (await graph(sandbox, "POST", BLUEPRINTS, user(sandbox), body))[0] == 403
    assert (await graph(sandbox, "POST", BLUEPRINTS, app_with(sandbox, "Application.Read.All"), body))[0] == 403


async def test_directory_readwrite_all_makes_agent_id_writes_403(sandbox: Sandbox) -> None:
    # The Agent ID pages' known issue (and entrabot Learning #1).
    token = app_with(sandbox, "AgentIdentityBlueprint.ReadWrite.All", "Directory.ReadWrite.All")
    status, body = await graph(sandbox, "POST", BLUEPRINTS, token,
                               {"displayName": "x", "sponsors@odata.bind": [user_ref(sandbox)]})
    assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied"


async def test_application_is_addressed_by_object_id_or_app_id(sandbox: Sandbox) -> None:
    bp = await _blueprint(sandbox)
    token = provisioner(sandbox)
    status, by_app_id = await graph(sandbox, "GET", f"/applications(appId='{bp['appId']}')", token)
    assert status == 200 and by_app_id["id"] == bp["id"]
    status, cast = await graph(sandbox, "GET", f"/applications/{bp['id']}/microsoft.graph.agentIdentityBlueprint",
                               token)
    assert status == 200 and cast["appId"] == bp["appId"]
    assert (await graph(sandbox, "GET", "/applications/00000000-0000-0000-0000-000000000002", token))[0] == 404


async def test_agent_identities_have_no_application_object(sandbox: Sandbox) -> None:
    status, _ = await graph(sandbox, "GET", f"/applications(appId='{sandbox.role('agent_identity')}')",
                            provisioner(sandbox))
    assert status == 404


async def test_deleted_blueprint_is_gone(sandbox: Sandbox) -> None:
    bp = await _blueprint(sandbox)
    token = provisioner(sandbox)
    assert (await graph(sandbox, "DELETE", f"/applications/{bp['id']}", token))[0] == 204
    assert bp["appId"] not in sandbox.tenant.apps
    assert (await graph(sandbox, "GET", f"/applications/{bp['id']}", token))[0] == 404


# --- PATCH keyCredentials -------------------------------------------------------------------
async def test_key_credentials_read_back_without_key_and_with_sha1_thumbprint(sandbox: Sandbox) -> None:
    cert = Cert()
    bp = await _with_cert(sandbox, cert)
    [key] = await _keys(sandbox, bp["id"])
    assert key["key"] is None and key["customKeyIdentifier"] == cert.sha1
    assert key["type"] == "AsymmetricX509Cert" and key["usage"] == "Verify" and key["displayName"] == "device"
    assert key["endDateTime"].endswith("Z") and key["keyId"]
    stored = sandbox.tenant.apps[bp["appId"]].key_credentials
    assert [kc.sha1 for kc in stored] == [cert.sha1] and stored[0].cert_der_b64 == cert.b64


async def test_patch_key_credentials_replaces_the_whole_list(sandbox: Sandbox) -> None:
    # Graph's list-replace: entrabot's cert upload locked other machines out this way.
    first, second = Cert("first"), Cert("second")
    bp = await _with_cert(sandbox, first)
    status, _ = await graph(sandbox, "PATCH", f"/applications/{bp['id']}", provisioner(sandbox),
                            {"keyCredentials": [second.credential()]})
    assert status == 204
    assert [k["customKeyIdentifier"] for k in await _keys(sandbox, bp["id"])] == [second.sha1]


async def test_patch_keeps_a_credential_resent_by_key_id_without_key(sandbox: Sandbox) -> None:
    first, second = Cert("first"), Cert("second")
    bp = await _with_cert(sandbox, first)
    existing = await _keys(sandbox, bp["id"])  # as read back: key is null
    status, _ = await graph(sandbox, "PATCH", f"/applications/{bp['id']}", provisioner(sandbox),
                            {"keyCredentials": [*existing, second.credential()]})
    assert status == 204
    keys = await _keys(sandbox, bp["id"])
    assert [k["customKeyIdentifier"] for k in keys] == [first.sha1, second.sha1]
    assert keys[0]["keyId"] == existing[0]["keyId"]


async def test_patch_with_unknown_key_id_and_no_key_is_400_and_changes_nothing(sandbox: Sandbox) -> None:
    first = Cert()
    bp = await _with_cert(sandbox, first)
    status, _ = await graph(sandbox, "PATCH", f"/applications/{bp['id']}", provisioner(sandbox), {
        "keyCredentials": [{"keyId": "5c1c6b5e-0000-4000-8000-000000000000", "type": "AsymmetricX509Cert",
                            "usage": "Verify", "key": None}]})
    assert status == 400
    assert [k["customKeyIdentifier"] for k in await _keys(sandbox, bp["id"])] == [first.sha1]


async def test_patch_refuses_bad_certificates_and_dates(sandbox: Sandbox) -> None:
    bp = await _blueprint(sandbox)
    token = provisioner(sandbox)
    cert = Cert()
    bad = [
        {**cert.credential(), "key": "bm90IGEgY2VydA=="},
        cert.credential(usage="Sign"),
        cert.credential(endDateTime="2099-01-01T00:00:00Z"),
    ]
    for entry in bad:
        status, body = await graph(sandbox, "PATCH", f"/applications/{bp['id']}", token, {"keyCredentials": [entry]})
        assert status == 400, entry
    assert body["error"]["message"] == "Key credential end date is invalid."
    assert sandbox.tenant.apps[bp["appId"]].key_credentials == []


async def test_patch_needs_an_application_write_permission(sandbox: Sandbox) -> None:
    bp = await _blueprint(sandbox)
    body = {"keyCredentials": [Cert().credential()]}
    assert (await graph(sandbox, "PATCH", f"/applications/{bp['id']}", user(sandbox), body))[0] == 403
    assert (await graph(sandbox, "PATCH", f"/applications/{bp['id']}",
                        app_with(sandbox, "Application.Read.All"), body))[0] == 403


# --- addKey / removeKey ----------------------------------------------------------------------
async def test_add_key_with_a_valid_proof_appends(sandbox: Sandbox) -> None:
    first, second = Cert("first"), Cert("second")
    bp = await _with_cert(sandbox, first)
    status, body = await graph(sandbox, "POST", f"/applications/{bp['id']}/addKey", provisioner(sandbox), {
        "keyCredential": {"type": "AsymmetricX509Cert", "usage": "Verify", "key": second.b64},
        "passwordCredential": None, "proof": _proof(first, bp["id"])})
    assert status == 200, body
    assert body["customKeyIdentifier"] == second.sha1 and body["key"] is None
    assert [k["customKeyIdentifier"] for k in await _keys(sandbox, bp["id"])] == [first.sha1, second.sha1]


async def test_add_key_accepts_microsoft_graph_as_proof_audience(sandbox: Sandbox) -> None:
    first, second = Cert("first"), Cert("second")
    bp = await _with_cert(sandbox, first)
    proof = _proof(first, bp["id"], aud="00000003-0000-0000-c000-000000000000")
    status, _ = await graph(sandbox, "POST", f"/applications(appId='{bp['appId']}')/addKey", provisioner(sandbox),
                            {"keyCredential": second.credential(), "passwordCredential": None, "proof": proof})
    assert status == 200


async def test_add_key_refuses_invalid_proofs(sandbox: Sandbox) -> None:
    first, second, stranger = Cert("first"), Cert("second"), Cert("stranger")
    bp = await _with_cert(sandbox, first)
    proofs = [
        _proof(stranger, bp["id"]),  # not signed by a registered certificate
        _proof(first, bp["appId"]),  # iss must be the object id, not the appId
        _proof(first, bp["id"], lifetime=3600),  # longer than 10 minutes
        _proof(first, bp["id"], aud="api://other"),
        _proof(first, bp["id"], nbf=time.time() - 7200),  # expired
        "not-a-jwt",
    ]
    for proof in proofs:
        status, _ = await graph(sandbox, "POST", f"/applications/{bp['id']}/addKey", provisioner(sandbox),
                                {"keyCredential": second.credential(), "passwordCredential": None, "proof": proof})
        assert status == 400, proof
    assert [k["customKeyIdentifier"] for k in await _keys(sandbox, bp["id"])] == [first.sha1]


async def test_add_key_without_any_certificate_is_refused(sandbox: Sandbox) -> None:
    # "Applications that don't have any existing valid certificates ... won't be able to use this service action."
    cert = Cert()
    bp = await _blueprint(sandbox)
    status, body = await graph(sandbox, "POST", f"/applications/{bp['id']}/addKey", provisioner(sandbox),
                               {"keyCredential": cert.credential(), "passwordCredential": None,
                                "proof": _proof(cert, bp["id"])})
    assert status == 400 and "Update application" in body["error"]["message"]


async def test_remove_key_with_a_valid_proof(sandbox: Sandbox) -> None:
    first, second = Cert("first"), Cert("second")
    bp = await _with_cert(sandbox, first)
    token = provisioner(sandbox)
    _, added = await graph(sandbox, "POST", f"/applications/{bp['id']}/addKey", token, {
        "keyCredential": second.credential(), "passwordCredential": None, "proof": _proof(first, bp["id"])})
    first_id = (await _keys(sandbox, bp["id"]))[0]["keyId"]
    status, _ = await graph(sandbox, "POST", f"/applications/{bp['id']}/removeKey", token,
                            {"keyId": first_id, "proof": _proof(second, bp["id"])})
    assert status == 204
    assert [k["keyId"] for k in await _keys(sandbox, bp["id"])] == [added["keyId"]]
    status, _ = await graph(sandbox, "POST", f"/applications/{bp['id']}/removeKey", token,
                            {"keyId": first_id, "proof": _proof(Cert("stranger"), bp["id"])})
    assert status == 400
