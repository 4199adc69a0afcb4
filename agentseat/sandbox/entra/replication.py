"""Replication delay: what Entra has written but its token endpoint and Graph cannot see yet.

A real tenant takes from seconds to minutes to replicate a new directory object, key or
grant (behaviour `replication_delay_seconds`). Routes that write say so here (`written`,
`scope_changed`); the token endpoint and the Graph middleware ask before they answer, and
answer in the shapes real tenants give while an object is on its way:

- token endpoint, new application or Agent Identity: AADSTS700016, "Application with identifier
  ... was not found in the directory" (AzureAD/microsoft-authentication-library-for-dotnet#3706,
  openshift/openshift-azure#2211); new service principal: AADSTS7000229;
- token endpoint, new certificate: AADSTS700027, "The key was not found" (the latency of new
  credentials: microsoftgraph/microsoft-graph-docs#17966);
- token endpoint, new delegated grant: AADSTS65001, consent not granted
  (AzureAD/microsoft-authentication-library-for-dotnet#2612); new scopes or app roles are left
  out of the token (microsoftgraph/microsoft-graph-docs#4765 and #10907);
- Graph, a path naming a new object: 404 Request_ResourceNotFound (Azure/azure-cli#1332,
  microsoftgraph/msgraph-sdk-powershell#1191); a call refused for lack of a permission granted
  moments ago: 403 Authorization_RequestDenied (MicrosoftDocs/azure-docs#85676,
  microsoftgraph/msgraph-bicep-types#193).

Nothing here changes the tenant; with a delay of 0 every question answers "visible".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..clock import Clock
from ..responses import graph_error

if TYPE_CHECKING:
    from ..graph.auth import Principal
    from ..state import SandboxState
    from ..tenant import App, Grant, KeyCredential, User


class Replication:
    """When each new thing was written (sandbox clock), and the scopes a changed grant had before.

    Keys come from the `*_key` helpers; routes report writes through the functions below it.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._born: dict[str, float] = {}
        self._scope_before: dict[str, str] = {}

    def written(self, *keys: str) -> None:
        """Record that these keys (see the `*_key` helpers) were written just now."""
        now = self._clock.now()
        for key in keys:
            self._born[key.lower()] = now

    def remember_scope(self, grant_id: str, scope: str) -> None:
        self._scope_before[grant_key(grant_id)] = scope

    def unseen(self, key: str, delay: float) -> bool:
        born = self._born.get(key.lower())
        return born is not None and delay > 0 and self._clock.now() - born < delay

    def scope_before(self, grant_id: str) -> str:
        return self._scope_before.get(grant_key(grant_id), "")


def app_key(app_id: str) -> str:
    return f"app:{app_id}"


def principal_key(app_id: str) -> str:
    return f"sp:{app_id}"


def object_key(object_id: str) -> str:
    """Any id a Graph path may name: object ids, app ids, user ids and UPNs, grant ids."""
    return f"id:{object_id}"


def credential_key(sha1: str) -> str:
    return f"key:{sha1}"


def grant_key(grant_id: str) -> str:
    return f"grant:{grant_id}"


def role_key(app_id: str, role: str) -> str:
    return f"role:{app_id}:{role}"


def _delay(sb: SandboxState) -> float:
    return sb.behaviour.replication_delay_seconds


# --- what the routes that write report -------------------------------------------------------
def app_created(sb: SandboxState, app: App) -> None:
    """A new application (Blueprint) or Agent Identity: unknown to the token endpoint, 404 by id."""
    sb.replication.written(app_key(app.app_id), object_key(app.app_id), object_key(app.object_id))
    if app.kind == "agentIdentity":  # it is its own service principal
        sb.replication.written(principal_key(app.app_id), object_key(app.sp_object_id))


def principal_created(sb: SandboxState, app: App) -> None:
    sb.replication.written(principal_key(app.app_id), object_key(app.sp_object_id))


def user_created(sb: SandboxState, user: User) -> None:
    sb.replication.written(object_key(user.id), object_key(user.upn))


def keys_added(sb: SandboxState, keys: list[KeyCredential]) -> None:
    sb.replication.written(*(credential_key(kc.sha1) for kc in keys))


def role_assigned(sb: SandboxState, app: App, role: str) -> None:
    sb.replication.written(role_key(app.app_id, role))


def grant_created(sb: SandboxState, grant: Grant) -> None:
    sb.replication.remember_scope(grant.id, "")
    sb.replication.written(grant_key(grant.id), object_key(grant.id))


def grant_changed(sb: SandboxState, grant: Grant, previous: str) -> None:
    """Readers keep seeing `previous` (or nothing, for a grant still on its way) until it replicates."""
    if not sb.replication.unseen(grant_key(grant.id), _delay(sb)):
        sb.replication.remember_scope(grant.id, previous)
    sb.replication.written(grant_key(grant.id))


# --- what the token endpoint sees --------------------------------------------------------------
def app_unseen(sb: SandboxState, app: App) -> bool:
    return sb.replication.unseen(app_key(app.app_id), _delay(sb))


def principal_unseen(sb: SandboxState, app: App) -> bool:
    return sb.replication.unseen(principal_key(app.app_id), _delay(sb))


def user_unseen(sb: SandboxState, user: User) -> bool:
    return sb.replication.unseen(object_key(user.id), _delay(sb))


def visible_keys(sb: SandboxState, app: App) -> list[KeyCredential]:
    """The app's certificates the token endpoint knows: a new one signs nothing yet."""
    return [kc for kc in app.key_credentials if not sb.replication.unseen(credential_key(kc.sha1), _delay(sb))]


def visible_scope(sb: SandboxState, grant: Grant) -> str:
    """A grant's scopes as replicas see them: nothing for a new grant, the old list for a changed one."""
    if sb.replication.unseen(grant_key(grant.id), _delay(sb)):
        return sb.replication.scope_before(grant.id)
    return grant.scope


def visible_roles(sb: SandboxState, app: App) -> list[str]:
    """The app roles a new app-only token carries: a role assigned moments ago is not among them."""
    return [r for r in app.roles if not sb.replication.unseen(role_key(app.app_id, r), _delay(sb))]


# --- what Graph sees ---------------------------------------------------------------------------
def _recently_granted(sb: SandboxState, who: Principal) -> bool:
    delay = _delay(sb)
    if who.kind == "app":
        app = sb.tenant.app(who.app_id)
        return app is not None and any(sb.replication.unseen(role_key(app.app_id, r), delay) for r in app.roles)
    return any(sb.replication.unseen(grant_key(g.id), delay) for g in sb.tenant.grants.values()
               if g.client_app_id == who.app_id and g.principal_id in (who.oid, ""))


def graph_refusal(sb: SandboxState, request: web.Request, who: Principal, authorized: bool) -> web.Response | None:
    """Graph's answer while something the request depends on is still replicating, else None."""
    delay = _delay(sb)
    if delay <= 0:
        return None
    for value in request.match_info.values():
        if sb.replication.unseen(object_key(value), delay):
            return graph_error(404, "Request_ResourceNotFound", f"Resource '{value}' does not exist or one of its "
                               "queried reference-property objects are not present.", request=request)
    if not authorized and _recently_granted(sb, who):
        return graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.",
                           request=request)
    return None
