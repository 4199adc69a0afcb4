"""Helpers for the directory tests: Graph calls over real HTTPS, tokens and certificates."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from agentseat.sandbox import tenant as tenant_mod
from agentseat.sandbox import tokens
from agentseat.sandbox.app import Sandbox


async def graph(sb: Sandbox, method: str, path: str, token: str | None = None, body: Any = None,
                *, version: str = "v1.0") -> tuple[int, Any]:
    """One Graph request; returns (status, parsed JSON or None)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.request(
        method, f"{sb.url}/{version}{path}", json=body, headers=headers, ssl=sb.client_ssl_context()
    ) as resp:
        text = await resp.text()
        return resp.status, (await resp.json(content_type=None)) if text else None


def provisioner(sb: Sandbox) -> str:
    return tokens.app_token(sb, app_id=sb.role("provisioner"), roles=list(tenant_mod.PROVISIONER_ROLES))[0]


def app_with(sb: Sandbox, *roles: str, app_id: str | None = None) -> str:
    return tokens.app_token(sb, app_id=app_id or sb.role("provisioner"), roles=list(roles))[0]


def user(sb: Sandbox, role: str = "sponsor", scopes: list[str] | None = None) -> str:
    return tokens.user_graph_token(sb, sb.role(role), scopes)


def user_ref(sb: Sandbox, role: str = "sponsor") -> str:
    return f"https://graph.microsoft.com/v1.0/users/{sb.role(role)}"


class Cert:
    """A self-signed certificate and its key, as `agentseat setup` would generate."""

    def __init__(self, name: str = "agent", days: int = 365) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(self.key, hashes.SHA256())
        )
        self.der = self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.der).decode()

    @property
    def sha1(self) -> str:
        return self.cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - a thumbprint

    def credential(self, **extra: Any) -> dict[str, Any]:
        return {"type": "AsymmetricX509Cert", "usage": "Verify", "key": self.b64, "displayName": "device", **extra}
