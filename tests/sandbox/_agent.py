"""Test helpers: give the sandbox's agent a certificate and consent, and walk the token chain with msal.

`agentseat setup` does the same through Graph; tests that are not about setup
use these to reach a working agent quickly.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.pki import sha1_thumbprint_hex
from agentseat.sandbox.tenant import AGENT_SCOPES, Grant, KeyCredential

EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


def self_signed(common_name: str, *, bits: int = 2048, days: int = 365) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A fresh RSA key and a self-signed certificate for it, valid from yesterday for `days`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256())
    )
    return key, cert


def make_cert(common_name: str = "agentseat test") -> tuple[str, str, bytes]:
    """A fresh RSA-2048 self-signed certificate: (private key PEM, certificate PEM, DER)."""
    key, cert = self_signed(common_name)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key_pem, cert_pem, cert.public_bytes(serialization.Encoding.DER)


def add_key_credential(sandbox: Sandbox, app_id: str, der: bytes, *, start: float | None = None,
                       end: float | None = None) -> KeyCredential:
    """Append (never replace) a certificate to an app's keyCredentials."""
    now = sandbox.clock.now()
    kc = KeyCredential(
        key_id=str(uuid.uuid4()), sha1=sha1_thumbprint_hex(der), cert_der_b64=base64.b64encode(der).decode(),
        start=now - 86400 if start is None else start, end=now + 365 * 86400 if end is None else end,
        display_name="test certificate",
    )

    def add() -> None:
        sandbox.tenant.apps[app_id].key_credentials.append(kc)
        sandbox.mark_dirty()

    sandbox.portal.call(add)  # type: ignore[attr-defined]
    return kc


def register_agent_cert(sandbox: Sandbox, app_id: str | None = None) -> tuple[str, str, str]:
    """Register a new certificate on the Blueprint: (private key PEM, SHA-1 hex thumbprint, certificate PEM)."""
    key_pem, cert_pem, der = make_cert()
    add_key_credential(sandbox, app_id or sandbox.role("blueprint"), der)
    return key_pem, sha1_thumbprint_hex(der), cert_pem


def grant_agent_consent(sandbox: Sandbox, scopes: tuple[str, ...] | list[str] = AGENT_SCOPES,
                        *, user_id: str | None = None, client_app_id: str | None = None) -> Grant:
    """Delegated consent (oauth2PermissionGrant, consentType Principal) for the Agent Identity and its user."""
    grant = Grant(id=str(uuid.uuid4()), client_app_id=client_app_id or sandbox.role("agent_identity"),
                  principal_id=user_id or sandbox.role("agent_user"), scope=" ".join(scopes))

    def add() -> None:
        sandbox.tenant.grants[grant.id] = grant
        sandbox.mark_dirty()

    sandbox.portal.call(add)  # type: ignore[attr-defined]
    return grant


def msal_app(sandbox: Sandbox, client_id: str, credential: dict[str, Any]) -> msal.ConfidentialClientApplication:
    """A real msal client pointed at the sandbox authority (discovery and all)."""
    session = requests.Session()
    session.verify = str(sandbox.pki.ca_path)
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override Session.verify
    # unless the session ignores the environment.
    session.trust_env = False
    return msal.ConfidentialClientApplication(
        client_id, client_credential=credential, authority=f"{sandbox.url}/{sandbox.tenant.tenant_id}",
        http_client=session, instance_discovery=False,
    )


def blueprint_app(sandbox: Sandbox, key_pem: str, sha1_hex: str) -> msal.ConfidentialClientApplication:
    return msal_app(sandbox, sandbox.role("blueprint"), {"private_key": key_pem, "thumbprint": sha1_hex})


def identity_app(sandbox: Sandbox, t1: str, client_id: str | None = None) -> msal.ConfidentialClientApplication:
    # A callable, as msal prefers over a static assertion string.
    return msal_app(sandbox, client_id or sandbox.role("agent_identity"), {"client_assertion": lambda: t1})


def hop1(sandbox: Sandbox, key_pem: str, sha1_hex: str, fmi_path: str | None = None) -> dict[str, Any]:
    app = blueprint_app(sandbox, key_pem, sha1_hex)
    result: dict[str, Any] = app.acquire_token_for_client(
        [EXCHANGE_SCOPE], fmi_path=fmi_path or sandbox.role("agent_identity")
    )
    return result


def agent_user_token(sandbox: Sandbox, key_pem: str, sha1_hex: str, scopes: list[str] | None = None) -> dict[str, Any]:
    """All three hops with msal; returns msal's result for hop 3 (raises if a hop fails)."""
    t1 = hop1(sandbox, key_pem, sha1_hex)
    assert "access_token" in t1, t1
    identity = identity_app(sandbox, t1["access_token"])
    t2 = identity.acquire_token_for_client([EXCHANGE_SCOPE])
    assert "access_token" in t2, t2
    return identity.acquire_token_by_user_federated_identity_credential(  # type: ignore[no-any-return]
        scopes or [GRAPH_DEFAULT], assertion=t2["access_token"], user_object_id=sandbox.role("agent_user")
    )
