"""Minting the tokens the sandbox's Entra half issues.

Claims follow Entra's v2 access tokens: `aud`, `iss`, `tid`, `oid`, `azp`/`appid`,
`idtyp`, and `scp` (delegated) or `roles` (app-only). Resources that take v1.0 tokens
(Azure Storage) get `v1_access_token`'s claims instead.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ..tenant import GRAPH_RESOURCE, TOKEN_EXCHANGE_AUDIENCE

if TYPE_CHECKING:
    from ..state import SandboxState


def issuer(sb: SandboxState) -> str:
    return f"{sb.url}/{sb.tenant.tenant_id}/v2.0"


def _base(sb: SandboxState, *, aud: str, app_id: str, lifetime: int | None) -> dict[str, Any]:
    now = int(sb.clock.now())
    return {
        "aud": aud,
        "iss": issuer(sb),
        "iat": now,
        "nbf": now,
        "exp": now + (lifetime if lifetime is not None else sb.options.access_token_seconds),
        "tid": sb.tenant.tenant_id,
        "azp": app_id,
        "appid": app_id,
        "ver": "2.0",
        "uti": uuid.uuid4().hex[:22],
    }


def delegated_token(sb: SandboxState, *, user_id: str, app_id: str, scopes: list[str] | set[str],
                    lifetime: int | None = None, aud: str = GRAPH_RESOURCE) -> tuple[str, dict[str, Any]]:
    """A user token (`idtyp=user`) for `app_id` acting as `user_id`."""
    claims = {**_base(sb, aud=aud, app_id=app_id, lifetime=lifetime), "idtyp": "user", "oid": user_id,
              "sub": user_id, "scp": " ".join(sorted(scopes))}
    user = sb.tenant.users.get(user_id)
    if user is not None:
        claims["upn"] = user.upn
        claims["name"] = user.display_name
    return sb.pki.sign(claims), claims


def app_token(sb: SandboxState, *, app_id: str, roles: list[str] | set[str], lifetime: int | None = None,
              aud: str = GRAPH_RESOURCE) -> tuple[str, dict[str, Any]]:
    """An app-only token (`idtyp=app`) carrying application `roles`."""
    app = sb.tenant.apps.get(app_id)
    oid = app.sp_object_id if app else app_id
    claims = {**_base(sb, aud=aud, app_id=app_id, lifetime=lifetime), "idtyp": "app", "oid": oid, "sub": oid,
              "roles": sorted(roles)}
    return sb.pki.sign(claims), claims


def v1_issuer(sb: SandboxState) -> str:
    """The STS issuer of v1.0 tokens: `https://sts.windows.net/<tenant-guid>/` (access-token-claims-reference,
    `iss`; the sandbox has no second host, as for its v1 discovery document and Graph's validation tokens)."""
    return f"https://sts.windows.net/{sb.tenant.tenant_id}/"


def v1_access_token(sb: SandboxState, *, aud: str, app_id: str, oid: str, scp: str | None = None,
                    user_id: str | None = None, lifetime: int | None = None) -> tuple[str, dict[str, Any]]:
    """A v1.0 access token, delegated (`user_id` and `scp`) or app-only (no `scp`).

    Per "Access token claims reference"
    (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference): v1.0 tokens name the client in `appid` with
    `appidacr` ("2": a certificate or client assertion authenticated it), never `azp`;
    `iss` and `idp` are the tenant's STS; `ver` is "1.0"; `unique_name` and `upn` name a
    user. Claims with no value are left out ("Claims are present only if a value exists"):
    no `roles` for a resource whose access is Azure RBAC. `idtyp` (an optional claim)
    marks app-only tokens, as the sandbox's other app tokens do.
    """
    now = int(sb.clock.now())
    claims: dict[str, Any] = {
        "aud": aud, "iss": v1_issuer(sb), "iat": now, "nbf": now,
        "exp": now + (lifetime if lifetime is not None else sb.options.access_token_seconds),
        "appid": app_id, "appidacr": "2", "idp": v1_issuer(sb), "oid": oid, "sub": oid,
        "tid": sb.tenant.tenant_id, "uti": uuid.uuid4().hex[:22], "ver": "1.0",
    }
    if user_id is None:
        claims["idtyp"] = "app"
    else:
        user = sb.tenant.users.get(user_id)
        if user is not None:
            claims.update(upn=user.upn, unique_name=user.upn, name=user.display_name)
    if scp:
        claims["scp"] = scp
    return sb.pki.sign(claims), claims


def exchange_token(sb: SandboxState, *, app_id: str, subject: str, lifetime: int | None = None,
                   fmi_path: str | None = None) -> tuple[str, dict[str, Any]]:
    """A federated-credential token for `api://AzureADTokenExchange` (hops 1 and 2).

    `sub` names who may present it as an assertion: hop 1 mints it for the
    Agent Identity named by `fmi_path`.
    """
    claims = {**_base(sb, aud=TOKEN_EXCHANGE_AUDIENCE, app_id=app_id, lifetime=lifetime), "idtyp": "app",
              "sub": subject, "oid": subject}
    if fmi_path:
        claims["fmi_path"] = fmi_path
    return sb.pki.sign(claims), claims


def user_graph_token(sb: SandboxState, user_id: str, scopes: list[str] | None = None) -> str:
    """Test and demo helper: a delegated Graph token for any user of the tenant
    (colleagues have no app of their own in the sandbox)."""
    from ..tenant import AGENT_SCOPES

    app_id = sb.tenant.roles.get("agent_identity", "sandbox-client")
    return delegated_token(sb, user_id=user_id, app_id=app_id, scopes=scopes or list(AGENT_SCOPES))[0]
