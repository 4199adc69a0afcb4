"""The sandbox's Entra token endpoint, driven by real msal over loopback HTTPS.

msal is synchronous, so these tests are plain functions; the sandbox runs on
its own loop in another thread. Raw form posts (requests) cover what msal
would never send: forged, expired or misaddressed assertions.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import jwt
import msal
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from agentseat.sandbox.entra import tokens
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.graph.auth import verify_access_token
from agentseat.sandbox.pki import x5t, x5t_s256
from agentseat.sandbox.tenant import PROVISIONER_ROLES, App, User, new_id
from tests.sandbox._agent import (
    EXCHANGE_SCOPE,
    GRAPH_DEFAULT,
    add_key_credential,
    agent_user_token,
    blueprint_app,
    grant_agent_consent,
    hop1,
    identity_app,
    make_cert,
    msal_app,
    register_agent_cert,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# --- helpers ------------------------------------------------------------------------------------
def _session(sb: Sandbox) -> requests.Session:
    s = requests.Session()
    s.verify = str(sb.pki.ca_path)
    s.trust_env = False  # otherwise REQUESTS_CA_BUNDLE overrides verify
    return s


def _post(sb: Sandbox, form: dict[str, str], tenant: str | None = None) -> requests.Response:
    return _session(sb).post(f"{sb.url}/{tenant or sb.tenant.tenant_id}/oauth2/v2.0/token", data=form)


def _get(sb: Sandbox, path: str) -> requests.Response:
    return _session(sb).get(sb.url + path)


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def _assertion(sb: Sandbox, key_pem: str, der: bytes, *, alg: str = "RS256", header: dict[str, Any] | None = None,
               **claims: Any) -> str:
    """A client assertion built by hand, as entrabot builds it (PyJWT + cryptography)."""
    now = int(sb.clock.now())
    body = {"aud": sb.token_endpoint, "iss": sb.role("blueprint"), "sub": sb.role("blueprint"),
            "jti": str(uuid.uuid4()), "nbf": now, "iat": now, "exp": now + 600, **claims}
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    headers = header if header is not None else {"x5t": x5t(der)}
    return jwt.encode(body, key, algorithm=alg, headers=headers)  # type: ignore[arg-type]


def _hop1_form(sb: Sandbox, assertion: str, **extra: str) -> dict[str, str]:
    return {"client_id": sb.role("blueprint"), "grant_type": "client_credentials", "scope": EXCHANGE_SCOPE,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion,
            "fmi_path": sb.role("agent_identity"), **extra}


def _error(resp: requests.Response, status: int, error: str, code: int) -> dict[str, Any]:
    body: dict[str, Any] = resp.json()
    assert resp.status_code == status, body
    assert body["error"] == error, body
    assert body["error_codes"] == [code], body
    assert body["error_description"].startswith(f"AADSTS{code}: "), body
    return body


def _msal_error(result: dict[str, Any], error: str, code: int) -> None:
    assert "access_token" not in result, result
    assert result["error"] == error, result
    assert result["error_codes"] == [code], result


def _add_app(sb: Sandbox, **fields: Any) -> App:
    app = App(app_id=new_id(), object_id=new_id(), sp_object_id=new_id(), display_name="other", **fields)
    sb.portal.call(sb.tenant.apps.__setitem__, app.app_id, app)  # type: ignore[attr-defined]
    return app


@pytest.fixture
def agent(sandbox: Sandbox) -> tuple[str, str, str]:
    """The Blueprint's certificate: (private key PEM, SHA-1 hex, certificate PEM)."""
    return register_agent_cert(sandbox)


# --- discovery and keys ---------------------------------------------------------------------------
def test_openid_configuration_points_at_the_sandbox(sandbox: Sandbox) -> None:
    tid = sandbox.tenant.tenant_id
    doc = _get(sandbox, f"/{tid}/v2.0/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"{sandbox.url}/{tid}/v2.0"
    assert doc["token_endpoint"] == sandbox.token_endpoint
    assert doc["authorization_endpoint"] == f"{sandbox.url}/{tid}/oauth2/v2.0/authorize"
    assert doc["jwks_uri"] == f"{sandbox.url}/{tid}/discovery/v2.0/keys"
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    # The tenant's domain is an alias; the document still names the tenant id.
    by_domain = _get(sandbox, f"/{sandbox.tenant.domain}/v2.0/.well-known/openid-configuration").json()
    assert by_domain["token_endpoint"] == sandbox.token_endpoint
    common = _get(sandbox, "/common/v2.0/.well-known/openid-configuration").json()
    assert common["issuer"] == f"{sandbox.url}/{{tenantid}}/v2.0"
    assert common["jwks_uri"] == f"{sandbox.url}/common/discovery/v2.0/keys"
    v1 = _get(sandbox, f"/{tid}/.well-known/openid-configuration").json()
    assert v1["issuer"] == f"https://sts.windows.net/{tid}/"
    assert v1["jwks_uri"] == f"{sandbox.url}/common/discovery/keys"
    assert v1["token_endpoint"] == f"{sandbox.url}/{tid}/oauth2/token"


def test_unknown_tenant_is_aadsts90002_for_discovery_msal_and_token(sandbox: Sandbox) -> None:
    body = _error(_get(sandbox, "/not-a-tenant/v2.0/.well-known/openid-configuration"), 400, "invalid_tenant", 90002)
    assert "Tenant 'not-a-tenant' not found" in body["error_description"]
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(
            sandbox.role("blueprint"), client_credential={"client_assertion": lambda: "x"},
            authority=f"{sandbox.url}/not-a-tenant", http_client=_session(sandbox), instance_discovery=False,
        )
    _error(_post(sandbox, {"grant_type": "client_credentials"}, tenant=str(uuid.uuid4())),
           400, "invalid_request", 90002)
    # A multi-tenant alias cannot say whose app-only token this is.
    _error(_post(sandbox, {"grant_type": "client_credentials"}, tenant="common"), 400, "invalid_request", 50059)
    _error(_get(sandbox, "/not-a-tenant/discovery/v2.0/keys"), 400, "invalid_request", 90002)


def test_jwks_publishes_the_signing_kid_and_keeps_the_old_key_after_rotation(sandbox: Sandbox) -> None:
    tid = sandbox.tenant.tenant_id
    token = tokens.user_graph_token(sandbox, sandbox.role("agent_user"))
    old_kid = jwt.get_unverified_header(token)["kid"]
    for path in ("/common/discovery/keys", "/common/discovery/v2.0/keys", f"/{tid}/discovery/v2.0/keys"):
        assert old_kid in {k["kid"] for k in _get(sandbox, path).json()["keys"]}
    new = sandbox.portal.call(sandbox.pki.rotate)  # type: ignore[attr-defined]
    keys = {k["kid"]: k for k in _get(sandbox, f"/{tid}/discovery/v2.0/keys").json()["keys"]}
    assert {old_kid, new.kid} <= set(keys)
    # The token signed before the rotation still verifies with the published key.
    public = jwt.PyJWK(keys[old_kid]).key
    assert jwt.decode(token, public, algorithms=["RS256"], audience="https://graph.microsoft.com")["oid"]
    assert jwt.get_unverified_header(tokens.user_graph_token(sandbox, sandbox.role("agent_user")))["kid"] == new.kid


# --- the three hops with msal ---------------------------------------------------------------------
def test_three_hops_with_msal_give_the_agent_user_a_delegated_graph_token(
    sandbox: Sandbox, agent: tuple[str, str, str]
) -> None:
    key_pem, sha1, _ = agent
    grant_agent_consent(sandbox)
    result = agent_user_token(sandbox, key_pem, sha1)
    assert result["token_type"] == "Bearer" and result["expires_in"] > 3000
    claims = _claims(result["access_token"])
    assert claims["idtyp"] == "user"
    assert claims["oid"] == sandbox.role("agent_user")
    assert claims["tid"] == sandbox.tenant.tenant_id
    assert claims["azp"] == claims["appid"] == sandbox.role("agent_identity")
    assert set(claims["scp"].split()) == {"User.Read", "User.ReadBasic.All", "Chat.Create", "Chat.ReadWrite",
                                          "ChatMessage.Send", "ChatMember.ReadWrite", "Mail.Read", "Mail.Send",
                                          "Team.ReadBasic.All", "Channel.ReadBasic.All", "ChannelMessage.Read.All",
                                          "ChannelMessage.Send", "Files.ReadWrite", "Files.ReadWrite.All",
                                          "Sites.ReadWrite.All"}
    who = verify_access_token(sandbox, f"Bearer {result['access_token']}")  # Graph's own check accepts it
    assert (who.kind, who.oid) == ("user", sandbox.role("agent_user"))
    # msal recorded the Agent User as an account (it needs id_token/client_info for that).
    assert result["id_token_claims"]["preferred_username"] == "agent@contoso.test"
    assert sandbox.stats.tokens == {"fmi_path": 1, "agent_identity": 1, "user_fic": 1}


def test_hop1_token_is_bound_to_the_agent_identity_and_msal_caches_it(
    sandbox: Sandbox, agent: tuple[str, str, str]
) -> None:
    key_pem, sha1, _ = agent
    app = blueprint_app(sandbox, key_pem, sha1)
    first = app.acquire_token_for_client([EXCHANGE_SCOPE], fmi_path=sandbox.role("agent_identity"))
    claims = _claims(first["access_token"])
    assert claims["aud"] == "api://AzureADTokenExchange"
    assert claims["azp"] == sandbox.role("blueprint") and claims["sub"] == sandbox.role("agent_identity")
    again = app.acquire_token_for_client([EXCHANGE_SCOPE], fmi_path=sandbox.role("agent_identity"))
    assert again["token_source"] == "cache" and again["access_token"] == first["access_token"]
    assert sandbox.stats.tokens["fmi_path"] == 1


def test_hop3_by_username_and_with_explicit_consented_scopes(sandbox: Sandbox, agent: tuple[str, str, str]) -> None:
    key_pem, sha1, _ = agent
    grant_agent_consent(sandbox, ["User.Read", "Chat.ReadWrite"])
    t1 = hop1(sandbox, key_pem, sha1)["access_token"]
    identity = identity_app(sandbox, t1)
    t2 = identity.acquire_token_for_client([EXCHANGE_SCOPE])["access_token"]
    result = identity.acquire_token_by_user_federated_identity_credential(
        ["https://graph.microsoft.com/Chat.ReadWrite"], assertion=t2, username="agent@contoso.test"
    )
    assert _claims(result["access_token"])["scp"] == "Chat.ReadWrite"
    assert _claims(result["access_token"])["oid"] == sandbox.role("agent_user")
    # A scope that was never consented is refused, even next to consented ones.
    refused = identity.acquire_token_by_user_federated_identity_credential(
        ["https://graph.microsoft.com/Chat.ReadWrite", "https://graph.microsoft.com/Mail.Send"],
        assertion=t2, username="agent@contoso.test",
    )
    _msal_error(refused, "invalid_grant", 65001)


def test_hop3_without_consent_is_aadsts65001(sandbox: Sandbox, agent: tuple[str, str, str]) -> None:
    key_pem, sha1, _ = agent
    grant_agent_consent(sandbox, ["User.Read"], client_app_id=sandbox.role("provisioner"))  # someone else's consent
    result = agent_user_token(sandbox, key_pem, sha1)
    _msal_error(result, "invalid_grant", 65001)
    assert "has not consented to use the application" in result["error_description"]
    assert sandbox.stats.token_errors["AADSTS65001"] == 1
    assert "user_fic" not in sandbox.stats.tokens


def test_admin_consent_for_all_principals_counts(sandbox: Sandbox, agent: tuple[str, str, str]) -> None:
    key_pem, sha1, _ = agent
    grant_agent_consent(sandbox, ["Mail.Read"], user_id="")  # consentType AllPrincipals
    assert _claims(agent_user_token(sandbox, key_pem, sha1)["access_token"])["scp"] == "Mail.Read"


def test_hop3_for_a_user_that_is_not_this_identitys_agent_user_is_refused(
    sandbox: Sandbox, agent: tuple[str, str, str]
) -> None:
    key_pem, sha1, _ = agent
    grant_agent_consent(sandbox)
    other_identity = _add_app(sandbox, kind="agentIdentity", blueprint_app_id=sandbox.role("blueprint"))
    stranger = User(id=new_id(), upn="other-agent@contoso.test", display_name="other agent",
                    mail="other-agent@contoso.test", kind="agentUser", identity_parent_id=other_identity.app_id)
    sandbox.portal.call(sandbox.tenant.users.__setitem__, stranger.id, stranger)  # type: ignore[attr-defined]
    t1 = hop1(sandbox, key_pem, sha1)["access_token"]
    identity = identity_app(sandbox, t1)
    t2 = identity.acquire_token_for_client([EXCHANGE_SCOPE])["access_token"]
    for user in (sandbox.role("sponsor"), stranger.id, str(uuid.uuid4())):
        result = identity.acquire_token_by_user_federated_identity_credential(
            [GRAPH_DEFAULT], assertion=t2, user_object_id=user
        )
        _msal_error(result, "invalid_grant", 50034)


def test_hop3_request_validation(sandbox: Sandbox, agent: tuple[str, str, str]) -> None:
    key_pem, sha1, _ = agent
    grant_agent_consent(sandbox)
    t1 = hop1(sandbox, key_pem, sha1)["access_token"]
    t2 = identity_app(sandbox, t1).acquire_token_for_client([EXCHANGE_SCOPE])["access_token"]
    base = {"grant_type": "user_fic", "client_id": sandbox.role("agent_identity"), "client_assertion": t1,
            "client_assertion_type": ASSERTION_TYPE, "scope": f"{GRAPH_DEFAULT} openid profile offline_access",
            "user_federated_identity_credential": t2, "user_id": sandbox.role("agent_user"),
            "requested_token_use": "on_behalf_of"}
    assert _post(sandbox, base).status_code == 200  # the raw request entrabot sends
    without_user = {k: v for k, v in base.items() if k != "user_id"}
    assert "'user_id'" in _error(_post(sandbox, without_user), 400, "invalid_request", 900144)["error_description"]
    without_fic = {k: v for k, v in base.items() if k != "user_federated_identity_credential"}
    _error(_post(sandbox, without_fic), 400, "invalid_request", 900144)
    _error(_post(sandbox, {**base, "scope": f"{EXCHANGE_SCOPE} openid"}), 400, "invalid_scope", 70011)
    agent_user = sandbox.tenant.users[sandbox.role("agent_user")]
    sandbox.portal.call(setattr, agent_user, "account_enabled", False)  # type: ignore[attr-defined]
    _error(_post(sandbox, base), 400, "invalid_grant", 50057)


def test_hop3_needs_the_identitys_own_t2(sandbox: Sandbox, agent: tuple[str, str, str]) -> None:
    key_pem, sha1, _ = agent
    grant_agent_consent(sandbox)
    t1 = hop1(sandbox, key_pem, sha1)["access_token"]
    # T1 (the Blueprint's token) is not the identity's own T2.
    result = identity_app(sandbox, t1).acquire_token_by_user_federated_identity_credential(
        [GRAPH_DEFAULT], assertion=t1, user_object_id=sandbox.role("agent_user")
    )
    _msal_error(result, "invalid_grant", 500131)


def test_hop2_graph_scope_gives_an_app_only_token_with_the_identitys_roles(
    sandbox: Sandbox, agent: tuple[str, str, str]
) -> None:
    key_pem, sha1, _ = agent
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    sandbox.portal.call(setattr, identity, "roles", ["User.Read.All"])  # type: ignore[attr-defined]
    t1 = hop1(sandbox, key_pem, sha1)["access_token"]
    result = identity_app(sandbox, t1).acquire_token_for_client([GRAPH_DEFAULT])
    claims = _claims(result["access_token"])
    assert (claims["idtyp"], claims["oid"], claims["roles"]) == ("app", identity.sp_object_id, ["User.Read.All"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert sandbox.stats.tokens["agent_identity_app"] == 1


def test_provisioner_certificate_buys_an_app_token_with_its_roles(sandbox: Sandbox) -> None:
    directory = sandbox.pki.directory
    sha1 = sandbox.tenant.apps[sandbox.role("provisioner")].key_credentials[0].sha1
    app = msal_app(sandbox, sandbox.role("provisioner"),
                   {"private_key": (directory / "provisioner.key.pem").read_text(), "thumbprint": sha1})
    claims = _claims(app.acquire_token_for_client([GRAPH_DEFAULT])["access_token"])
    assert claims["roles"] == sorted(PROVISIONER_ROLES) and claims["idtyp"] == "app"
    assert sandbox.stats.tokens["provisioner"] == 1


# --- certificates -----------------------------------------------------------------------------------
def test_x5t_s256_with_ps256_from_msal_public_certificate(sandbox: Sandbox, agent: tuple[str, str, str]) -> None:
    key_pem, _, cert_pem = agent
    # With `public_certificate` msal signs PS256 and names the key by x5t#S256 only.
    app = msal_app(sandbox, sandbox.role("blueprint"), {"private_key": key_pem, "public_certificate": cert_pem})
    result = app.acquire_token_for_client([EXCHANGE_SCOPE], fmi_path=sandbox.role("agent_identity"))
    assert _claims(result["access_token"])["sub"] == sandbox.role("agent_identity")


def test_rs256_with_x5t_s256_as_entrabot_builds_it(sandbox: Sandbox) -> None:
    key_pem, _, der = make_cert()
    add_key_credential(sandbox, sandbox.role("blueprint"), der)
    assertion = _assertion(sandbox, key_pem, der, header={"x5t#S256": x5t_s256(der), "typ": "JWT"})
    assert _post(sandbox, _hop1_form(sandbox, assertion)).status_code == 200


def test_unknown_or_revoked_certificate_is_invalid_client_700027(
    sandbox: Sandbox, agent: tuple[str, str, str]
) -> None:
    key_pem, sha1, _ = agent
    unregistered_key, _, der = make_cert()
    body = _error(_post(sandbox, _hop1_form(sandbox, _assertion(sandbox, unregistered_key, der))),
                  401, "invalid_client", 700027)
    assert "The key was not found" in body["error_description"]
    # Revoke: take the Blueprint's certificate off the app. A fresh msal client is refused.
    assert "access_token" in hop1(sandbox, key_pem, sha1)
    certificates = sandbox.tenant.apps[sandbox.role("blueprint")].key_credentials
    sandbox.portal.call(certificates.clear)  # type: ignore[attr-defined]
    _msal_error(hop1(sandbox, key_pem, sha1), "invalid_client", 700027)
    assert sandbox.stats.token_errors["AADSTS700027"] == 2


def test_signature_by_another_key_and_expired_key_credential_are_refused(sandbox: Sandbox) -> None:
    key_pem, _, der = make_cert()
    add_key_credential(sandbox, sandbox.role("blueprint"), der)
    other_key, _, _ = make_cert()
    body = _error(_post(sandbox, _hop1_form(sandbox, _assertion(sandbox, other_key, der))), 401, "invalid_client",
                  700027)
    assert "did not match the expected signature" in body["error_description"]
    old_key, _, old_der = make_cert()
    now = sandbox.clock.now()
    add_key_credential(sandbox, sandbox.role("blueprint"), old_der, start=now - 7200, end=now - 3600)
    body = _error(_post(sandbox, _hop1_form(sandbox, _assertion(sandbox, old_key, old_der))), 401, "invalid_client",
                  700027)
    assert "The key used is expired" in body["error_description"]


def test_expired_assertion_is_aadsts700024(sandbox: Sandbox) -> None:
    key_pem, _, der = make_cert()
    add_key_credential(sandbox, sandbox.role("blueprint"), der)
    now = int(sandbox.clock.now())
    expired = _assertion(sandbox, key_pem, der, nbf=now - 7200, iat=now - 7200, exp=now - 3600)
    _error(_post(sandbox, _hop1_form(sandbox, expired)), 401, "invalid_client", 700024)
    early = _assertion(sandbox, key_pem, der, nbf=now + 3600, exp=now + 4000)
    _error(_post(sandbox, _hop1_form(sandbox, early)), 401, "invalid_client", 700024)


def test_assertion_for_another_audience_or_client_is_refused(sandbox: Sandbox) -> None:
    key_pem, _, der = make_cert()
    add_key_credential(sandbox, sandbox.role("blueprint"), der)
    wrong_aud = _assertion(sandbox, key_pem, der, aud="https://login.microsoftonline.com/other/oauth2/v2.0/token")
    _error(_post(sandbox, _hop1_form(sandbox, wrong_aud)), 401, "invalid_client", 700023)
    # Entra takes the token endpoint with or without a trailing slash.
    slash = _assertion(sandbox, key_pem, der, aud=sandbox.token_endpoint + "/")
    assert _post(sandbox, _hop1_form(sandbox, slash)).status_code == 200
    wrong_iss = _assertion(sandbox, key_pem, der, iss=sandbox.role("provisioner"), sub=sandbox.role("provisioner"))
    _error(_post(sandbox, _hop1_form(sandbox, wrong_iss)), 401, "invalid_client", 700021)


def test_unsigned_and_hmac_assertions_are_invalid_client(sandbox: Sandbox) -> None:
    _, _, der = make_cert()
    add_key_credential(sandbox, sandbox.role("blueprint"), der)
    now = int(sandbox.clock.now())
    claims = {"aud": sandbox.token_endpoint, "iss": sandbox.role("blueprint"), "sub": sandbox.role("blueprint"),
              "exp": now + 600, "nbf": now}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"x5t": x5t(der)})
    hmac = jwt.encode(claims, base64.b64encode(der).decode(), algorithm="HS256", headers={"x5t": x5t(der)})
    for forged in (unsigned, hmac):
        _error(_post(sandbox, _hop1_form(sandbox, forged)), 401, "invalid_client", 700027)
    _error(_post(sandbox, _hop1_form(sandbox, "not-a-jwt")), 401, "invalid_client", 50027)


# --- fmi_path and the federated hop ---------------------------------------------------------------------
def test_fmi_path_must_name_a_child_agent_identity_of_this_blueprint(
    sandbox: Sandbox, agent: tuple[str, str, str]
) -> None:
    key_pem, sha1, _ = agent
    other_blueprint = _add_app(sandbox, kind="blueprint")
    foreign = _add_app(sandbox, kind="agentIdentity", blueprint_app_id=other_blueprint.app_id)
    for path in (foreign.app_id, sandbox.role("provisioner"), sandbox.role("agent_user")):
        _msal_error(hop1(sandbox, key_pem, sha1, fmi_path=path), "invalid_request", 700211)
    # fmi_path only buys the exchange scope.
    result = blueprint_app(sandbox, key_pem, sha1).acquire_token_for_client(
        [GRAPH_DEFAULT], fmi_path=sandbox.role("agent_identity"))
    _msal_error(result, "invalid_request", 700211)


def test_blueprint_cannot_get_an_app_only_graph_token(sandbox: Sandbox, agent: tuple[str, str, str]) -> None:
    key_pem, sha1, _ = agent
    result = blueprint_app(sandbox, key_pem, sha1).acquire_token_for_client([GRAPH_DEFAULT])
    _msal_error(result, "unauthorized_client", 82001)


def test_hop2_refuses_a_t1_not_minted_for_this_identity(sandbox: Sandbox, agent: tuple[str, str, str]) -> None:
    key_pem, sha1, _ = agent
    sibling = _add_app(sandbox, kind="agentIdentity", blueprint_app_id=sandbox.role("blueprint"))
    for_sibling = hop1(sandbox, key_pem, sha1, fmi_path=sibling.app_id)["access_token"]
    assert "access_token" in identity_app(sandbox, for_sibling, client_id=sibling.app_id).acquire_token_for_client(
        [EXCHANGE_SCOPE])
    _msal_error(identity_app(sandbox, for_sibling).acquire_token_for_client([EXCHANGE_SCOPE]), "invalid_client",
                700211)
    # Without fmi_path the Blueprint's exchange token is its own (entrabot learning #12: AADSTS700211).
    own = blueprint_app(sandbox, key_pem, sha1).acquire_token_for_client([EXCHANGE_SCOPE])["access_token"]
    _msal_error(identity_app(sandbox, own).acquire_token_for_client([EXCHANGE_SCOPE]), "invalid_client", 700211)
    # A Graph token is not an exchange token; a forged one is not Entra's.
    graph = tokens.user_graph_token(sandbox, sandbox.role("agent_user"))
    _msal_error(identity_app(sandbox, graph).acquire_token_for_client([EXCHANGE_SCOPE]), "invalid_client", 700212)
    forged = jwt.encode({**_claims(for_sibling), "sub": sandbox.role("agent_identity")}, make_cert()[0],
                        algorithm="RS256", headers={"kid": jwt.get_unverified_header(for_sibling)["kid"]})
    _msal_error(identity_app(sandbox, forged).acquire_token_for_client([EXCHANGE_SCOPE]), "invalid_client", 700211)


def test_hop2_refuses_an_expired_t1(sandbox: Sandbox, agent: tuple[str, str, str]) -> None:
    key_pem, sha1, _ = agent
    t1 = hop1(sandbox, key_pem, sha1)["access_token"]
    sandbox.portal.call(sandbox.clock.advance, sandbox.options.access_token_seconds + 60)  # type: ignore[attr-defined]
    _msal_error(identity_app(sandbox, t1).acquire_token_for_client([EXCHANGE_SCOPE]), "invalid_client", 700024)


# --- request validation and error shapes ------------------------------------------------------------------
def test_errors_have_entras_shape_and_status(sandbox: Sandbox) -> None:
    body = _error(_post(sandbox, {"grant_type": "client_credentials", "client_id": str(uuid.uuid4()),
                                  "scope": GRAPH_DEFAULT}), 400, "unauthorized_client", 700016)
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(body)
    assert body["trace_id"] in body["error_description"]
    _error(_post(sandbox, {"client_id": sandbox.role("blueprint")}), 400, "invalid_request", 900144)
    _error(_post(sandbox, {"grant_type": "password", "client_id": sandbox.role("blueprint")}),
           400, "unsupported_grant_type", 70003)
    _error(_post(sandbox, {"grant_type": "client_credentials", "client_id": sandbox.role("blueprint"),
                           "scope": EXCHANGE_SCOPE}), 401, "invalid_client", 7000218)
    _error(_get(sandbox, f"/{sandbox.tenant.tenant_id}/oauth2/v2.0/token"), 400, "invalid_request", 900561)
    _error(_post(sandbox, {"grant_type": "client_credentials", "client_id": sandbox.role("blueprint"),
                           "scope": EXCHANGE_SCOPE, "client_secret": "guess"}), 401, "invalid_client", 7000215)
    _error(_post(sandbox, {"grant_type": "client_credentials", "client_id": sandbox.role("blueprint"),
                           "scope": EXCHANGE_SCOPE, "client_assertion": "x", "client_assertion_type": "password"}),
           400, "invalid_request", 50027)
    # A Blueprint without its explicitly created BlueprintPrincipal cannot sign in.
    no_principal = _add_app(sandbox, kind="blueprint", has_principal=False)
    _error(_post(sandbox, {"grant_type": "client_credentials", "client_id": no_principal.app_id,
                           "scope": EXCHANGE_SCOPE}), 401, "invalid_client", 7000229)
    assert sandbox.stats.token_errors["AADSTS700016"] == 1 and sandbox.stats.token_errors["AADSTS70003"] == 1
    assert sum(sandbox.stats.tokens.values()) == 0


def test_client_credentials_needs_a_default_scope_of_one_known_resource(sandbox: Sandbox) -> None:
    key_pem, _, der = make_cert()
    add_key_credential(sandbox, sandbox.role("blueprint"), der)

    def form(scope: str) -> dict[str, str]:
        return _hop1_form(sandbox, _assertion(sandbox, key_pem, der), scope=scope)

    _error(_post(sandbox, form("https://graph.microsoft.com/User.Read")), 400, "invalid_scope", 1002012)
    _error(_post(sandbox, form("https://storage.example.test/.default")), 400, "invalid_resource", 500011)
    _error(_post(sandbox, form(f"{EXCHANGE_SCOPE} {GRAPH_DEFAULT}")), 400, "invalid_scope", 28000)


def test_user_fic_is_only_for_agent_identities(sandbox: Sandbox) -> None:
    directory = sandbox.pki.directory
    sha1 = sandbox.tenant.apps[sandbox.role("provisioner")].key_credentials[0].sha1
    app = msal_app(sandbox, sandbox.role("provisioner"),
                   {"private_key": (directory / "provisioner.key.pem").read_text(), "thumbprint": sha1})
    t2 = tokens.exchange_token(sandbox, app_id=sandbox.role("provisioner"), subject=sandbox.role("provisioner"))[0]
    result = app.acquire_token_by_user_federated_identity_credential(
        [GRAPH_DEFAULT], assertion=t2, user_object_id=sandbox.role("agent_user"))
    _msal_error(result, "unauthorized_client", 70003)

