"""The sandbox's Entra half: OpenID discovery, the signing keys, and the v2 token endpoint.

It issues what the agent's three-hop chain asks for (entrabot-anchor §1.3;
Learn: "agent user OAuth flow", "agent autonomous app OAuth flow"):

- hop 1, `client_credentials` + certificate + `fmi_path`: the Blueprint gets T1
  for one of its Agent Identities;
- hop 2, `client_credentials` + T1 as the assertion: the Agent Identity gets T2
  (exchange scope) or an app-only token for a resource;
- hop 3, `user_fic` + T1 + T2: the Agent Identity gets its Agent User's
  delegated token, limited to the consented scopes.

Ordinary apps (the provisioner) use `client_credentials` with a certificate.
Besides Graph, hops 2 and 3 reach two Azure resources: Event Hubs and Storage (storage.py).
Client authentication lives in `clients.py`, token minting in `tokens.py`.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import structlog
import anyio
from aiohttp import web

from . import replication, tokens
from ..state import SANDBOX_KEY
from .clients import ClientAuth, OAuthError, authenticate, missing, unknown_client, verify_user_credential
from .storage import DELEGATED_SCOPE, is_storage, storage_app_token, storage_scope, storage_user_token
from ..tenant import GRAPH_APP_ID, GRAPH_RESOURCE, TOKEN_EXCHANGE_AUDIENCE, App, User

if TYPE_CHECKING:
    from ..state import SandboxState

log = structlog.get_logger(__name__)

MULTI_TENANT = ("common", "organizations")
#: Scopes msal adds to every user grant (`_decorate_scope`), plus `email`.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
EXCHANGE, GRAPH, EVENTHUBS = "exchange", "graph", "eventhubs"
#: Azure Event Hubs' resource ("Authenticate an application with Microsoft Entra ID to access Event Hubs
#: resources": request `https://eventhubs.azure.net/.default`); tokens for it reach the sandbox's hub (eventhubs/).
EVENTHUBS_RESOURCE = "https://eventhubs.azure.net"
DEFAULT = ".default"


# --- discovery ---------------------------------------------------------------------
def resolve_tenant(sb: SandboxState, segment: str) -> str | None:
    """The tenant id a path segment names (its id or domain), `common`/`organizations`, or None."""
    low = segment.lower()
    if low in (sb.tenant.tenant_id.lower(), sb.tenant.domain.lower()):
        return sb.tenant.tenant_id
    if low in MULTI_TENANT:
        return low
    return None


def openid_configuration(sb: SandboxState, segment: str, *, v2: bool = True) -> dict[str, Any]:
    """Entra's discovery document for a tenant, or for `common` (whose issuer is a template)."""
    tenant = resolve_tenant(sb, segment)
    if tenant is None:
        raise KeyError(segment)
    path = segment if tenant in MULTI_TENANT else tenant
    base = f"{sb.url}/{path}"
    if v2:
        # The multi-tenant documents publish the issuer with a literal "{tenantid}".
        issuer = f"{sb.url}/{{tenantid}}/v2.0" if tenant in MULTI_TENANT else tokens.issuer(sb)
        jwks = f"{base}/discovery/v2.0/keys"
        oauth = f"{base}/oauth2/v2.0"
    else:
        # v1 tokens name the STS host (graph-change-notifications §6); the sandbox has no second host.
        issuer = f"https://sts.windows.net/{'{tenantid}' if tenant in MULTI_TENANT else tenant}/"
        jwks = f"{sb.url}/common/discovery/keys"
        oauth = f"{base}/oauth2"
    doc: dict[str, Any] = {
        "token_endpoint": f"{oauth}/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": jwks,
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{sb.graph_url.rsplit('/', 1)[0]}/oidc/userinfo",
        "authorization_endpoint": f"{oauth}/authorize",
        "device_authorization_endpoint": f"{oauth}/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{oauth}/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
                             "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "msgraph_host": "graph.microsoft.com",
    }
    return doc


def _tenant_not_found(segment: str) -> OAuthError:
    return OAuthError(400, "invalid_request", 90002, f"Tenant '{segment}' not found. Check to make sure you have the "
                      "correct tenant ID and are signing into the correct cloud. Check with your subscription "
                      "administrator, this may happen if there are no active subscriptions for the tenant.")


async def _openid(request: web.Request, *, v2: bool) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    segment = request.match_info["tenant"]
    try:
        return web.json_response(openid_configuration(sb, segment, v2=v2))
    except KeyError:
        err = _tenant_not_found(segment)
        # Discovery answers an unknown tenant with `invalid_tenant` (msal turns any 4xx into a ValueError).
        return OAuthError(400, "invalid_tenant", err.code, err.description).response()


async def _openid_v2(request: web.Request) -> web.Response:
    return await _openid(request, v2=True)


async def _openid_v1(request: web.Request) -> web.Response:
    return await _openid(request, v2=False)


async def _jwks(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    if resolve_tenant(sb, request.match_info["tenant"]) is None:
        return _tenant_not_found(request.match_info["tenant"]).response()
    # Every published key, old and new: Entra keeps a rotated-out key published for a while.
    return web.json_response(sb.pki.jwks())


# --- scopes ----------------------------------------------------------------------------
def _resource_of(sb: SandboxState, scope: str) -> tuple[str, str]:
    """(resource, permission) of one scope; a bare name means Microsoft Graph, as in Entra."""
    low = scope.lower()
    if low.startswith(TOKEN_EXCHANGE_AUDIENCE.lower() + "/"):
        return EXCHANGE, scope[len(TOKEN_EXCHANGE_AUDIENCE) + 1 :]
    for prefix in (GRAPH_RESOURCE + "/", GRAPH_APP_ID + "/"):
        if low.startswith(prefix.lower()):
            # Entra tolerates the doubled slash of "https://graph.microsoft.com//.default".
            return GRAPH, scope[len(prefix) :].lstrip("/")
    if low.startswith(EVENTHUBS_RESOURCE + "/"):
        return EVENTHUBS, scope[len(EVENTHUBS_RESOURCE) + 1 :].lstrip("/")
    storage = storage_scope(scope)
    if storage is not None:
        return storage  # Storage's resource is its audience: storage.azure.com, or one account's Blob service
    if "/" not in scope and ":" not in scope:
        return GRAPH, scope
    resource = scope.rsplit("/", 1)[0]
    raise OAuthError(400, "invalid_resource", 500011, f"The resource principal named {resource} was not found in "
                     f"the tenant named {sb.tenant.domain}. This can happen if the application has not been "
                     "installed by the administrator of the tenant or consented to by any user in the tenant. You "
                     "might have sent your authentication request to the wrong tenant.")


def _requested(sb: SandboxState, form: dict[str, str], *, user: bool) -> tuple[str, list[str]]:
    """The one resource a request targets and the permissions asked of it."""
    raw = form.get("scope", "").split()
    scopes = [s for s in raw if not (user and s.lower() in OIDC_SCOPES)]
    if not scopes:
        raise missing("scope")
    parsed = [_resource_of(sb, s) for s in scopes]
    resources = {r for r, _ in parsed}
    if len(resources) > 1:
        raise OAuthError(400, "invalid_scope", 28000, "Provided value for the input parameter scope is not valid "
                         "because it contains more than one resource.")
    perms = [p for _, p in parsed]
    if not user and any(p.lower() != DEFAULT for p in perms):
        # Learn (client credentials): the scope must be the resource's `/.default`.
        raise OAuthError(400, "invalid_scope", 1002012, f"The provided value for scope {' '.join(scopes)} is not "
                         "valid. Client credential flows must have a scope value with /.default suffixed to the "
                         "resource identifier (application ID URI).")
    return resources.pop(), perms


def _granted(sb: SandboxState, client_id: str, user_id: str) -> dict[str, str]:
    """Consented Graph scopes (lower-case name -> name) for this client and user.

    A `Principal` grant names the user; an `AllPrincipals` (admin) grant has
    no principal and covers every user.
    """
    graph = sb.tenant.app(GRAPH_APP_ID)
    graph_ids = {GRAPH_APP_ID} | ({graph.sp_object_id, graph.object_id} if graph else set())
    names: dict[str, str] = {}
    for grant in sb.tenant.grants.values():
        if grant.client_app_id == client_id and grant.principal_id in (user_id, "", None) and (
            grant.resource in graph_ids
        ):
            names.update({s.lower(): s for s in replication.visible_scope(sb, grant).split()})
    return names


# --- grants ------------------------------------------------------------------------------
Issued = tuple[str, str, dict[str, Any], dict[str, Any]]  # stats label, token, claims, extra response fields


def _client_credentials(sb: SandboxState, form: dict[str, str], client: ClientAuth) -> Issued:
    app = client.app
    resource, _ = _requested(sb, form, user=False)
    fmi_path = form.get("fmi_path", "")
    if fmi_path:
        child = sb.tenant.app(fmi_path)
        if child is not None and replication.app_unseen(sb, child):
            raise unknown_client(sb, fmi_path)  # a new Agent Identity is not in the directory yet
        if (resource != EXCHANGE or app.kind != "blueprint" or child is None or child.kind != "agentIdentity"
                or child.blueprint_app_id != app.app_id):
            # "Agent identity blueprints can only impersonate their child agent
            # identities" (agent autonomous app OAuth flow). The code for this case
            # is undocumented; entrabot (learning #12) saw AADSTS700211 for a wrong
            # fmi_path or scope, and our runtime explains that code.
            raise OAuthError(400, "invalid_request", 700211, f"No matching federated identity record found for "
                             f"presented assertion issuer. The fmi_path '{fmi_path}' does not name an agent identity "
                             f"of '{app.app_id}', or the scope is not {TOKEN_EXCHANGE_AUDIENCE}/.default.")
        token, claims = tokens.exchange_token(sb, app_id=app.app_id, subject=child.app_id, fmi_path=fmi_path)
        return "fmi_path", token, claims, {}
    if resource == EXCHANGE:
        token, claims = tokens.exchange_token(sb, app_id=app.app_id, subject=app.app_id)
        return ("agent_identity" if app.kind == "agentIdentity" else "exchange"), token, claims, {}
    if app.kind == "blueprint":
        # A Blueprint never gets an app-only token of its own; it only
        # impersonates its agent identities (AADSTS82001, seen by many Agent 365 samples).
        raise OAuthError(400, "unauthorized_client", 82001, f"Agentic application '{app.app_id}' is not permitted "
                         f"to request app-only tokens for resource '{GRAPH_APP_ID}'.")
    if resource == EVENTHUBS:
        # Event Hubs access is Azure RBAC on the namespace, not app roles in the token.
        token, claims = tokens.app_token(sb, app_id=app.app_id, roles=[], aud=EVENTHUBS_RESOURCE)
        return "eventhubs", token, claims, {}
    if is_storage(resource):
        token, claims = storage_app_token(sb, app, resource)
        return "storage", token, claims, {}
    token, claims = tokens.app_token(sb, app_id=app.app_id, roles=replication.visible_roles(sb, app))
    label = {"agentIdentity": "agent_identity_app", "provisioner": "provisioner"}.get(app.kind, "client_credentials")
    return label, token, claims, {}


def _agent_user(sb: SandboxState, identity: App, form: dict[str, str]) -> User:
    ref = form.get("user_id") or form.get("username") or ""
    if not ref:
        raise missing("user_id")
    user = sb.tenant.users.get(ref) if form.get("user_id") else sb.tenant.user(ref)
    if user is None or replication.user_unseen(sb, user):
        raise OAuthError(400, "invalid_grant", 50034, f"The user account {ref} does not exist in the "
                         f"{sb.tenant.tenant_id} directory. To sign into this application, the account must be "
                         "added to the directory.")
    if user.kind != "agentUser" or user.identity_parent_id != identity.app_id:
        # "The agent's user account can be impersonated only by a single agent
        # identity" (agent user OAuth flow); any other user is not one this
        # identity can reach, so it answers as if the account were absent.
        raise OAuthError(400, "invalid_grant", 50034, f"The user account {ref} does not exist in the "
                         f"{sb.tenant.tenant_id} directory as an agent user of agent identity '{identity.app_id}'.")
    if not user.account_enabled:
        raise OAuthError(400, "invalid_grant", 50057, "The user account is disabled.")
    return user


def _user_fic(sb: SandboxState, form: dict[str, str], client: ClientAuth) -> Issued:
    identity = client.app
    if client.method != "federated":
        raise OAuthError(400, "unauthorized_client", 70003, "The app requested an unsupported grant type "
                         "'user_fic': only an agent identity can impersonate its agent user.")
    t2 = form.get("user_federated_identity_credential", "")
    if not t2:
        raise missing("user_federated_identity_credential")
    verify_user_credential(sb, identity, t2)
    user = _agent_user(sb, identity, form)
    resource, perms = _requested(sb, form, user=True)
    if resource == EVENTHUBS:
        return _user_eventhubs(sb, identity, user, perms)
    if is_storage(resource):
        token, claims = storage_user_token(sb, identity, user, resource, perms)
        return "user_fic_storage", token, claims, _user_extra(sb, identity, user,
                                                              f"{resource.rstrip('/')}/{DELEGATED_SCOPE}")
    if resource != GRAPH:
        raise OAuthError(400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not "
                         f"valid. The scope {form.get('scope', '')} is not valid.")
    granted = _granted(sb, identity.app_id, user.id)
    explicit = [p for p in perms if p.lower() != DEFAULT]
    absent = [p for p in explicit if p.lower() not in granted]
    if not granted or absent:
        # Delegated access needs consent for this identity and user; `.default`
        # means everything consented (Learn: scopes and permissions).
        raise OAuthError(400, "invalid_grant", 65001, f"The user or administrator has not consented to use the "
                         f"application with ID '{identity.app_id}' named '{identity.display_name}'. Send an "
                         "interactive authorization request for this user and resource.")
    scopes = sorted(granted.values()) if len(explicit) < len(perms) else sorted(granted[p.lower()] for p in explicit)
    token, claims = tokens.delegated_token(sb, user_id=user.id, app_id=identity.app_id, scopes=scopes)
    extra = {
        # msal asked for openid/profile/offline_access: an id_token and
        # client_info let it record the account (msal token_cache.__add).
        "scope": " ".join([f"{GRAPH_RESOURCE}/{s}" for s in scopes] + ["openid", "profile"]),
        "id_token": _id_token(sb, identity, user),
        "client_info": _b64url(json.dumps({"uid": user.id, "utid": sb.tenant.tenant_id}).encode()),
    }
    return "user_fic", token, claims, extra


def _user_eventhubs(sb: SandboxState, identity: App, user: User, perms: list[str]) -> Issued:
    """The Agent User's delegated Event Hubs token: Event Hubs' one delegated permission is
    `user_impersonation`; access itself is Azure RBAC, which the sandbox does not model."""
    if any(p.lower() not in (DEFAULT, "user_impersonation") for p in perms):
        raise OAuthError(400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not "
                         f"valid. The scope {' '.join(perms)} is not valid.")
    token, claims = tokens.delegated_token(sb, user_id=user.id, app_id=identity.app_id,
                                           scopes=["user_impersonation"], aud=EVENTHUBS_RESOURCE)
    return "user_fic_eventhubs", token, claims, _user_extra(sb, identity, user,
                                                            f"{EVENTHUBS_RESOURCE}/user_impersonation")


def _user_extra(sb: SandboxState, identity: App, user: User, scope: str) -> dict[str, Any]:
    """A delegated token response's fields besides the token: msal records the account from them."""
    return {"scope": f"{scope} openid profile", "id_token": _id_token(sb, identity, user),
            "client_info": _b64url(json.dumps({"uid": user.id, "utid": sb.tenant.tenant_id}).encode())}


def _id_token(sb: SandboxState, client: App, user: User) -> str:
    now = int(sb.clock.now())
    return sb.pki.sign({
        "aud": client.app_id, "iss": tokens.issuer(sb), "iat": now, "nbf": now,
        "exp": now + sb.options.access_token_seconds, "sub": user.id, "oid": user.id, "tid": sb.tenant.tenant_id,
        "name": user.display_name, "preferred_username": user.upn, "ver": "2.0",
    })


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the token endpoint ------------------------------------------------------------------------
def _form(raw: Any) -> dict[str, str]:
    form: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            form.setdefault(key, value)  # the first of repeated parameters counts
    return form


def _audiences(sb: SandboxState, segment: str) -> set[str]:
    """Token endpoint URLs a certificate assertion may name as `aud` (trailing slash ignored)."""
    return {f"{sb.url}/{t}/oauth2/v2.0/token" for t in (segment, sb.tenant.tenant_id)}


async def _token(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    delay = sb.behaviour.graph_delay()  # the token endpoint is a round trip like any Graph call
    if delay > 0:
        await anyio.sleep(delay)
    segment = request.match_info["tenant"]
    form = _form(await request.post())
    grant = form.get("grant_type", "")
    try:
        tenant = resolve_tenant(sb, segment)
        if tenant is None:
            raise _tenant_not_found(segment)
        if tenant in MULTI_TENANT:
            # An app-only or agent grant must name its tenant.
            raise OAuthError(400, "invalid_request", 50059, "No tenant-identifying information found in either "
                             "the request or implied by any provided credentials.")
        if not grant:
            raise missing("grant_type")
        if grant not in ("client_credentials", "user_fic"):
            raise OAuthError(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type "
                             f"'{grant}'.")
        client = authenticate(sb, form, _audiences(sb, segment))
        handler = _client_credentials if grant == "client_credentials" else _user_fic
        label, token, claims, extra = handler(sb, form, client)
    except OAuthError as exc:
        sb.stats.token_errors[f"AADSTS{exc.code}"] += 1
        log.info("token_rejected", grant=grant, client_id=form.get("client_id", ""), code=exc.code)
        return exc.response()
    sb.stats.tokens[label] += 1
    log.info("token_issued", grant=label, client_id=client.app.app_id)
    lifetime = int(claims["exp"] - sb.clock.now())
    body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token, **extra}
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def _token_get(request: web.Request) -> web.Response:
    return OAuthError(400, "invalid_request", 900561, "The endpoint only accepts POST requests. Received a GET "
                      "request.").response()


def routes() -> list[web.RouteDef]:
    return [
        web.get("/{tenant}/v2.0/.well-known/openid-configuration", _openid_v2),
        web.get("/{tenant}/.well-known/openid-configuration", _openid_v1),
        web.get("/{tenant}/discovery/v2.0/keys", _jwks),
        web.get("/{tenant}/discovery/keys", _jwks),
        web.post("/{tenant}/oauth2/v2.0/token", _token),
        web.get("/{tenant}/oauth2/v2.0/token", _token_get, allow_head=False),
    ]
