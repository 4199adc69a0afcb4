"""Helpers for the directory tests: Graph calls over real HTTPS, tokens and certificates."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from agentseat.sandbox import tenant as tenant_mod
from agentseat.sandbox.entra import tokens
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.pki import sha1_thumbprint_hex
from tests.sandbox._agent import make_cert


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


BLUEPRINTS = "/applications/microsoft.graph.agentIdentityBlueprint"
PRINCIPALS = "/servicePrincipals/microsoft.graph.agentIdentityBlueprintPrincipal"


async def new_blueprint(sb: Sandbox, name: str = "bp", *, principal: bool = False, sponsors: list[str] | None = None,
                        **extra: Any) -> dict[str, Any]:
    """A blueprint created through Graph by the provisioner (sponsored by the sponsor unless
    `sponsors` names others), with its service principal when `principal` is set."""
    token = provisioner(sb)
    status, bp = await graph(sb, "POST", BLUEPRINTS, token,
                             {"displayName": name, "sponsors@odata.bind": sponsors or [user_ref(sb)], **extra})
    assert status == 201, bp
    if principal:
        assert (await graph(sb, "POST", PRINCIPALS, token, {"appId": bp["appId"]}))[0] == 201
    return bp  # type: ignore[no-any-return]


class Cert:
    """A self-signed certificate and its private key, as `agentseat setup` would generate."""

    def __init__(self, name: str = "agent") -> None:
        self.key_pem, _, self.der = make_cert(name)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.der).decode()

    @property
    def sha1(self) -> str:
        return sha1_thumbprint_hex(self.der)

    def credential(self, **extra: Any) -> dict[str, Any]:
        return {"type": "AsymmetricX509Cert", "usage": "Verify", "key": self.b64, "displayName": "device", **extra}
