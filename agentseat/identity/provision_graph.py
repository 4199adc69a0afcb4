"""The Graph calls `agentseat setup` and `teardown` make, as the provisioner app.

It owns the provisioner's credential (a certificate; client_credentials with msal gives an
app-only Graph token) and one small method per directory read or write: Agent Identity
Blueprints, their principals, Agent Identities, sponsors, Agent Users, app roles, delegated
grants, licences and certificate credentials. It decides nothing: `provision.py` plans which
of these to call. Shapes follow the Microsoft Graph pages named beside each call.
"""

from __future__ import annotations

import base64
import os
import socket
import stat
import time
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import anyio
import jwt
import msal
import structlog

from ..config import Settings
from ..errors import ConfigError, GraphError, NotFoundError, TokenError
from ..graph.client import GraphClient
from ..graph.times import to_graph_time
from .keys import AgentCertificate
from .tokens import token_or_raise, msal_http_client, resource_scope

log = structlog.get_logger(__name__)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
#: Microsoft Graph's Application.Read.All app role: lets the Agent Identity read its own
#: sponsors with its app-only token (entrabot-anchor §7.2 step 5, permissions reference).
APPLICATION_READ_ALL = "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"
#: Delegated scopes the runtime needs: chats and mail, and what their change-notification
#: subscriptions need (Chat.ReadWrite covers getAllMessages' Chat.Read; Mail.Read the inbox), and
#: team channels: joined teams, channels, channel messages (read and subscribe) and posting, and
#: Files.ReadWrite for the files the agent sends in chats (upload, invite, shares-get), and for files
#: and documents Files.ReadWrite.All (files others share, Microsoft Search) and Sites.ReadWrite.All
#: (SharePoint sites and their libraries).
#: Keep in step with the sandbox's AGENT_SCOPES (agentseat/sandbox/tenant.py).
REQUIRED_SCOPES = ("User.Read", "User.ReadBasic.All", "Chat.Create", "Chat.ReadWrite", "ChatMessage.Send",
                   "ChatMember.ReadWrite", "Mail.Read", "Mail.Send", "Team.ReadBasic.All",
                   "Channel.ReadBasic.All", "ChannelMessage.Read.All", "ChannelMessage.Send", "Files.ReadWrite",
                   "Files.ReadWrite.All", "Sites.ReadWrite.All")
#: application-rollkey-prooftoken: the proof's `aud` is this fixed id and it lives ten minutes at most.
PROOF_AUDIENCE = "00000002-0000-0000-c000-000000000000"
PROOF_LIFETIME = 600
PROVISIONER = "provisioner"


def _quote(value: str) -> str:
    """An OData string literal: a quote inside is doubled."""
    return "'" + value.replace("'", "''") + "'"


# --- the provisioner's token ----------------------------------------------------------------
class ProvisionerTokens:
    """App-only Graph tokens for the provisioner app (a `TokenSource` for `GraphClient`).

    The provisioner is the admin-consented app of entrabot-anchor §7.1; its key file must be
    private to this user. msal caches the token; a 401 drops the app so the next call mints anew.
    """

    def __init__(self, settings: Settings) -> None:
        missing = [name for name, value in (("AGENTSEAT_TENANT_ID", settings.tenant_id),
                                            ("AGENTSEAT_PROVISIONER_APP_ID", settings.provisioner_app_id),
                                            ("AGENTSEAT_PROVISIONER_CERT_PATH", settings.provisioner_cert_path),
                                            ("AGENTSEAT_PROVISIONER_KEY_PATH", settings.provisioner_key_path))
                   if not value]
        if missing:
            raise ConfigError(f"provisioning needs {', '.join(missing)}",
                              hint="set them for an admin-consented provisioner app with a certificate, or pass "
                              "`--env-file <sandbox>/sandbox.env` to use the sandbox tenant")
        self._settings = settings
        self._app: msal.ConfidentialClientApplication | None = None

    def check(self) -> None:
        """Raise `ConfigError` now if the provisioner's certificate or key cannot be used (read-only)."""
        self._credential()

    def _credential(self) -> dict[str, Any]:
        assert self._settings.provisioner_cert_path and self._settings.provisioner_key_path
        key_path = Path(self._settings.provisioner_key_path)
        try:
            st = key_path.stat()
            cert_pem = Path(self._settings.provisioner_cert_path).read_text("ascii")
            key_pem = key_path.read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the provisioner's certificate or key: {exc}",
                              hint="check AGENTSEAT_PROVISIONER_CERT_PATH and AGENTSEAT_PROVISIONER_KEY_PATH") from None
        if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
            raise ConfigError(f"refusing to use {key_path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read "
                              "the provisioner's private key", hint=f"chmod 600 {key_path}")
        # public_certificate makes msal sign PS256 with x5t#S256 (the SHA-1 thumbprint is deprecated).
        credential: dict[str, Any] = {"private_key": key_pem, "public_certificate": cert_pem}
        if self._settings.provisioner_key_passphrase:
            credential["passphrase"] = self._settings.provisioner_key_passphrase.get_secret_value().encode()
        return credential

    def _mint(self) -> str:
        settings = self._settings
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    settings.provisioner_app_id, client_credential=self._credential(),
                    authority=f"{settings.authority_host}/{settings.tenant_id}",
                    http_client=msal_http_client(settings), instance_discovery=False,
                    timeout=settings.graph_timeout_seconds,
                )
            except ValueError as exc:
                raise TokenError(f"provisioner sign-in failed: {str(exc).splitlines()[0][:200]}", hop=PROVISIONER,
                                 hint="check AGENTSEAT_AUTHORITY_HOST, AGENTSEAT_TENANT_ID and the provisioner's "
                                 "certificate and key") from exc
        try:
            result = self._app.acquire_token_for_client([resource_scope(settings.graph_resource)])
        except (ValueError, OSError) as exc:
            raise TokenError(f"provisioner sign-in failed: {type(exc).__name__}", hop=PROVISIONER,
                             hint="check AGENTSEAT_AUTHORITY_HOST, AGENTSEAT_CA_BUNDLE and the network") from exc
        return token_or_raise(PROVISIONER, result)

    async def get(self, resource: str | None = None) -> str:
        return await anyio.to_thread.run_sync(self._mint)

    async def invalidate(self, token: str) -> None:
        self._app = None


# --- certificates -----------------------------------------------------------------------------
def credential_sha1(entry: dict[str, Any]) -> str | None:
    """The SHA-1 thumbprint (uppercase hex) a keyCredential carries in `customKeyIdentifier`.

    Graph shows it as hex for certificates; as Edm.Binary it may also come base64-encoded.
    """
    value = str(entry.get("customKeyIdentifier") or "")
    if len(value) == 40 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.upper()
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return raw.hex().upper() if len(raw) == 20 else None


def proof_of_possession(signer: AgentCertificate, object_id: str) -> str:
    """The JWT addKey/removeKey demand, signed with a certificate already on the application
    (application-rollkey-prooftoken: aud fixed, iss the application's object id, nbf..exp <= 10 min)."""
    now = int(time.time())
    x5t = base64.urlsafe_b64encode(bytes.fromhex(signer.sha1_thumbprint)).rstrip(b"=").decode("ascii")
    claims = {"aud": PROOF_AUDIENCE, "iss": object_id, "nbf": now, "exp": now + PROOF_LIFETIME}
    return jwt.encode(claims, signer.private_key, algorithm="RS256", headers={"x5t": x5t})


def new_key_credential(cert: AgentCertificate) -> dict[str, Any]:
    """A keyCredential for `cert` (keyCredential resource: AsymmetricX509Cert, usage Verify, base64 DER)."""
    return {
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "key": cert.der_b64,
        "displayName": f"agentseat {socket.gethostname()}"[:90],
        "startDateTime": to_graph_time(cert.certificate.not_valid_before_utc.timestamp()),
        "endDateTime": to_graph_time(cert.not_after.timestamp()),
    }


# --- the directory --------------------------------------------------------------------------
class Directory:
    """One method per Graph call of provisioning; reads return None when a thing does not exist."""

    def __init__(self, settings: Settings, graph: GraphClient) -> None:
        self.settings = settings
        self.graph = graph
        # Agent Users are created and read on beta (agentuser-post is a beta API).
        self.beta = settings.graph_url.rsplit("/", 1)[0] + "/beta"
        self.key_route = ""  # "blueprint" | "generic": how the Blueprint's keys were last written

    async def _list(self, path: str, **params: str) -> list[dict[str, Any]]:
        return [item async for page in self.graph.pages(path, params or None) for item in page]

    async def _one(self, path: str, **params: str) -> dict[str, Any] | None:
        try:
            body = await self.graph.get(path, **params)
        except NotFoundError:
            return None
        return body if isinstance(body, dict) else None

    def ref(self, user_id: str) -> str:
        """A directory reference for `@odata.bind` / `@odata.id`, on the configured Graph host."""
        return f"{self.settings.graph_url}/users/{user_id}"

    # organization and users
    async def organization(self) -> dict[str, Any]:
        orgs = await self._list("/organization")
        if not orgs:
            raise GraphError("GET /organization returned no organization", status=200,
                             hint="check that the provisioner has Organization.Read.All")
        return orgs[0]

    async def user(self, ref: str, select: str = "id,userPrincipalName,displayName") -> dict[str, Any] | None:
        # Guest UPNs carry '#EXT#': quoted, or the rest of the path would read as a fragment.
        return await self._one(f"/users/{quote(ref, safe='@')}", **{"$select": select})

    # blueprints (agentidentityblueprint-post) and their principals (agentidentityblueprintprincipal-post)
    async def blueprints(self, *, app_id: str = "", name: str = "") -> list[dict[str, Any]]:
        clause = f"appId eq {_quote(app_id)}" if app_id else f"displayName eq {_quote(name)}"
        return await self._list("/applications/microsoft.graph.agentIdentityBlueprint", **{"$filter": clause})

    async def create_blueprint(self, name: str, sponsor_ids: list[str]) -> dict[str, Any]:
        body = {"displayName": name, "description": "Created by agentseat setup",
                "sponsors@odata.bind": [self.ref(s) for s in sponsor_ids]}
        return dict(await self.graph.post("/applications/microsoft.graph.agentIdentityBlueprint", body))

    async def blueprint_principal(self, app_id: str) -> dict[str, Any] | None:
        found = await self._list("/servicePrincipals/microsoft.graph.agentIdentityBlueprintPrincipal",
                                 **{"$filter": f"appId eq {_quote(app_id)}"})
        return found[0] if found else None

    async def create_blueprint_principal(self, app_id: str) -> dict[str, Any]:
        return dict(await self.graph.post("/servicePrincipals/microsoft.graph.agentIdentityBlueprintPrincipal",
                                          {"appId": app_id}))

    # agent identities (agentidentity-post) and their sponsors
    async def agent_identities(self, *, app_id: str = "", blueprint_app_id: str = "") -> list[dict[str, Any]]:
        clause = f"appId eq {_quote(app_id)}" if app_id else f"agentIdentityBlueprintId eq {_quote(blueprint_app_id)}"
        return await self._list("/servicePrincipals/microsoft.graph.agentIdentity", **{"$filter": clause})

    async def create_agent_identity(self, name: str, blueprint_app_id: str, sponsor_ids: list[str]) -> dict[str, Any]:
        body = {"displayName": name, "agentIdentityBlueprintId": blueprint_app_id,
                "sponsors@odata.bind": [self.ref(s) for s in sponsor_ids]}
        return dict(await self.graph.post("/servicePrincipals/microsoft.graph.agentIdentity", body))

    async def sponsors(self, identity_sp_id: str) -> set[str]:
        found = await self._list(f"/servicePrincipals/{identity_sp_id}/microsoft.graph.agentIdentity/sponsors")
        return {str(s["id"]) for s in found}

    async def add_sponsor(self, identity_sp_id: str, user_id: str) -> None:
        await self.graph.post(f"/servicePrincipals/{identity_sp_id}/microsoft.graph.agentIdentity/sponsors/$ref",
                              {"@odata.id": self.ref(user_id)})

    # agent users (agentuser-post, beta): found by UPN, else by identityParentId
    async def agent_user(self, *, upn: str = "", parent_id: str = "", user_id: str = "") -> dict[str, Any] | None:
        select = {"$select": "id,userPrincipalName,displayName,identityParentId,usageLocation,assignedLicenses"}
        if user_id:
            return await self._one(f"{self.beta}/users/{user_id}", **select)
        clause = f"userPrincipalName eq {_quote(upn)}" if upn else f"identityParentId eq {_quote(parent_id)}"
        try:
            found = await self._list(f"{self.beta}/users", **{"$filter": clause}, **select)
        except GraphError as exc:
            if exc.status == 400 and not upn:
                return None  # a directory that cannot filter on identityParentId: found by UPN only
            raise
        return found[0] if found else None

    async def create_agent_user(self, name: str, upn: str, parent_id: str) -> dict[str, Any]:
        body = {"@odata.type": "microsoft.graph.agentUser", "displayName": name, "userPrincipalName": upn,
                "mailNickname": upn.split("@", 1)[0], "accountEnabled": True, "identityParentId": parent_id}
        return dict(await self.graph.post(f"{self.beta}/users", body))

    # Microsoft Graph's own principal, app roles (serviceprincipal-post-approleassignments)
    async def graph_principal(self) -> dict[str, Any]:
        found = await self._list("/servicePrincipals", **{"$filter": f"appId eq {_quote(GRAPH_APP_ID)}"})
        if not found:
            raise GraphError("Microsoft Graph has no service principal in this tenant", status=404,
                             hint="this tenant cannot grant Graph permissions; check AGENTSEAT_TENANT_ID")
        return found[0]

    async def app_roles(self, sp_id: str) -> set[str]:
        return {str(a["appRoleId"]).lower() for a in await self._list(f"/servicePrincipals/{sp_id}/appRoleAssignments")}

    async def assign_app_role(self, sp_id: str, resource_id: str, role_id: str) -> None:
        await self.graph.post(f"/servicePrincipals/{sp_id}/appRoleAssignments",
                              {"principalId": sp_id, "resourceId": resource_id, "appRoleId": role_id})

    # delegated consent (oauth2permissiongrant-post / -update / -delete, on v1.0: entrabot Learning #15)
    async def grant(self, client_id: str, user_id: str, resource_id: str) -> dict[str, Any] | None:
        clause = f"clientId eq {_quote(client_id)} and principalId eq {_quote(user_id)}"
        found = [g for g in await self._list("/oauth2PermissionGrants", **{"$filter": clause})
                 if g.get("resourceId") == resource_id and g.get("consentType") == "Principal"]
        return found[0] if found else None

    async def create_grant(self, client_id: str, user_id: str, resource_id: str, scopes: list[str]) -> dict[str, Any]:
        # startTime is required by some tenants (entrabot Learning #10).
        body = {"clientId": client_id, "consentType": "Principal", "principalId": user_id,
                "resourceId": resource_id, "scope": " ".join(scopes), "startTime": to_graph_time(time.time())}
        return dict(await self.graph.post("/oauth2PermissionGrants", body))

    async def set_grant_scopes(self, grant_id: str, scopes: list[str]) -> None:
        await self.graph.patch(f"/oauth2PermissionGrants/{grant_id}", {"scope": " ".join(scopes)})

    async def grants_of(self, client_id: str) -> list[dict[str, Any]]:
        return await self._list("/oauth2PermissionGrants", **{"$filter": f"clientId eq {_quote(client_id)}"})

    # licences (user-assignlicense: usageLocation must be set first)
    async def subscribed_skus(self) -> list[dict[str, Any]]:
        return await self._list("/subscribedSkus")

    async def set_usage_location(self, user_id: str, country: str) -> None:
        await self.graph.patch(f"/users/{user_id}", {"usageLocation": country})

    async def assign_licence(self, user_id: str, sku_id: str) -> None:
        await self.graph.post(f"/users/{user_id}/assignLicense",
                              {"addLicenses": [{"skuId": sku_id, "disabledPlans": []}], "removeLicenses": []})

    # certificate credentials of the Blueprint
    async def key_credentials(self, object_id: str) -> list[dict[str, Any]]:
        body = await self.graph.get(f"/applications/{object_id}", **{"$select": "id,keyCredentials"})
        return list(body.get("keyCredentials") or [])

    async def append_key(self, object_id: str, cert: AgentCertificate, signer: AgentCertificate | None) -> str:
        """Add `cert` to the application's keyCredentials, never dropping one. Returns how.

        With a key already registered we use addKey, which appends by definition and proves
        possession (application-addkey). Without one, addKey is unavailable ("Applications that
        don't have any existing valid certificates ... use Update application"), and PATCH
        replaces the whole list (application-update), so the existing entries are sent back by
        keyId: Graph never returns `key` on reads and keeps a credential named that way, as
        `az ad app credential reset --append` relies on.
        """
        if signer is not None:
            body = {"keyCredential": {k: v for k, v in new_key_credential(cert).items() if "DateTime" not in k},
                    "passwordCredential": None, "proof": proof_of_possession(signer, object_id)}
            await self._blueprint_route(object_id, "/addKey", lambda path: self.graph.post(path, body))
            return "addKey"
        existing = await self.key_credentials(object_id)
        kept = [{k: entry.get(k) for k in ("keyId", "type", "usage", "displayName", "customKeyIdentifier",
                                           "startDateTime", "endDateTime")} | {"key": None} for entry in existing]
        body = {"keyCredentials": [*kept, new_key_credential(cert)]}
        await self._blueprint_route(object_id, "", lambda path: self.graph.patch(path, body))
        return "PATCH"

    async def remove_key(self, object_id: str, key_id: str, signer: AgentCertificate) -> None:
        """application-removekey: drop one credential, proving possession of a (remaining) one."""
        body = {"keyId": key_id, "proof": proof_of_possession(signer, object_id)}
        await self._blueprint_route(object_id, "/removeKey", lambda path: self.graph.post(path, body))

    async def _blueprint_route(self, object_id: str, action: str, send: Callable[[str], Awaitable[Any]]) -> None:
        """Write a Blueprint's keys on its typed route, else on the generic application route.

        The v1.0 docs give `/applications/{id}/microsoft.graph.agentIdentityBlueprint` with
        /addKey, /removeKey and PATCH (agentidentityblueprint-addkey, -removekey, -update;
        AgentIdentityBlueprint.AddRemoveCreds.All); third parties report 404/403 on the generic
        /applications/{id}/addKey for Blueprints, while a tenant without the typed routes (or a
        provisioner holding only Application.ReadWrite.All) refuses the typed one. The route that
        worked is kept in `key_route` ("blueprint" or "generic") and tried first next time.
        """
        typed, generic = f"/applications/{object_id}/microsoft.graph.agentIdentityBlueprint{action}", \
            f"/applications/{object_id}{action}"
        first, then = (generic, typed) if self.key_route == "generic" else (typed, generic)
        try:
            await send(first)
        except GraphError as exc:
            if exc.status not in (400, 403, 404):
                raise
            log.info("provision_key_route_refused", route="generic" if first == generic else "blueprint",
                     status=exc.status, code=exc.code)
            await send(then)
            first = then
        self.key_route = "generic" if first == generic else "blueprint"

    # deletions, each tolerant of the thing being gone already (teardown is idempotent)
    async def delete(self, path: str) -> bool:
        try:
            await self.graph.delete(path)
        except NotFoundError:
            return False
        return True
