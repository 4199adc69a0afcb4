"""Shared pieces of the sandbox's directory routes: OData query options, error
shapes, request bodies, the apps a URL addresses and directory-object references.

It owns no routes; `users`, `apps` and
`service_principals` use it so that every directory route filters, selects
and fails the same way Graph does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from ..auth import principal
from ...state import SANDBOX_KEY
from ...responses import graph_error

if TYPE_CHECKING:
    from ...tenant import App, Tenant

GRAPH_ROOT = "https://graph.microsoft.com"
T = TypeVar("T")

# Known issue on the Agent ID API pages (agentidentityblueprint-post, "Known issue"):
# a client holding either of these has its Agent ID permissions ignored, and gets 403.
AGENT_ID_BLOCKING = frozenset({"Directory.AccessAsUser.All", "Directory.ReadWrite.All"})


def version(request: web.Request) -> str:
    return "beta" if request.path.startswith("/beta/") else "v1.0"


def context(request: web.Request, fragment: str) -> str:
    """`@odata.context` as Graph writes it, always on graph.microsoft.com."""
    return f"{GRAPH_ROOT}/{version(request)}/$metadata#{fragment}"


# --- errors ---------------------------------------------------------------------------
def not_found(request: web.Request, ref: str) -> web.Response:
    return graph_error(404, "Request_ResourceNotFound",
                       f"Resource '{ref}' does not exist or one of its queried reference-property objects are "
                       "not present.", request=request)


def bad_request(request: web.Request, message: str, code: str = "Request_BadRequest") -> web.Response:
    return graph_error(400, code, message, request=request)


def denied(request: web.Request, message: str = "Insufficient privileges to complete the operation.") -> web.Response:
    return graph_error(403, "Authorization_RequestDenied", message, request=request)


def conflict(request: web.Request, message: str) -> web.Response:
    return graph_error(409, "Request_MultipleObjectsWithSameKeyValue", message, request=request)


def invalid_property(request: web.Request, prop: str, resource: str) -> web.Response:
    return bad_request(request, f"Invalid value specified for property '{prop}' of resource '{resource}'.")


def app_only(request: web.Request) -> web.Response | None:
    """403 for a delegated caller on a route whose docs say delegated is "Not supported"."""
    if principal(request).kind == "user":
        return denied(request, "This operation is not supported with delegated permissions; "
                               "call it with an application token.")
    return None


def agent_id_blocked(request: web.Request) -> web.Response | None:
    """The documented Agent ID known issue: Directory.AccessAsUser.All or
    Directory.ReadWrite.All on the token makes Agent ID writes fail with 403
    (also entrabot Learning #1: Azure CLI tokens are rejected)."""
    who = principal(request)
    if AGENT_ID_BLOCKING & (who.scopes | who.roles):
        return denied(request, "Agent ID permissions are ignored for clients granted Directory.AccessAsUser.All "
                               "or Directory.ReadWrite.All; remove that permission and request a new token.")
    return None


def nonblank(value: object) -> bool:
    """A usable displayName: Graph refuses a missing, non-string or blank one."""
    return isinstance(value, str) and bool(value.strip())


def has_any(request: web.Request, names: Iterable[str]) -> bool:
    who = principal(request)
    return bool((who.scopes | who.roles).intersection(names))


# --- bodies ---------------------------------------------------------------------------
async def read_json(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object, or Graph's 400 for an unreadable payload."""
    try:
        body = json.loads(await request.text() or "null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return graph_error(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type "
                                              "header is set and payload is of valid JSON format.", request=request)
    return body


async def agent_id_body(request: web.Request, name_of: str | None = None) -> dict[str, Any] | web.Response:
    """The JSON body of an Agent ID create, or the first error Graph answers: the
    known-issue 403, an unreadable payload, then (given `name_of`, the resource
    type) a missing displayName."""
    if (blocked := agent_id_blocked(request)) is not None:
        return blocked
    body = await read_json(request)
    if isinstance(body, dict) and name_of is not None and not nonblank(body.get("displayName")):
        return invalid_property(request, "displayName", name_of)
    return body


# --- addressing apps ------------------------------------------------------------------
def find_app(request: web.Request, id_param: str, object_id: Callable[[App], str],
             exists: Callable[[App], bool], kind: str | None = None) -> App | web.Response:
    """The app a URL names by `{id_param}` or by the `(appId='...')` alternate key, or
    Graph's 404 when there is none, it lacks the object the route is about
    (`exists`), or it is not of `kind`."""
    tenant = request.app[SANDBOX_KEY].tenant
    if "app_id" in request.match_info:
        app = tenant.app(request.match_info["app_id"])
    else:
        app = next((a for a in tenant.apps.values() if object_id(a) == request.match_info[id_param]), None)
    if app is None or not exists(app) or (kind is not None and app.kind != kind):
        return not_found(request, request.match_info.get(id_param) or request.match_info.get("app_id", ""))
    return app


_REF = re.compile(r"/(users|directoryObjects|groups|servicePrincipals)/([^/?#]+)/?$", re.I)


def reference(url: object) -> tuple[str, str] | None:
    """(`users`|`directoryObjects`|..., id) from an `@odata.bind` / `@odata.id` URL on any Graph host."""
    if not isinstance(url, str):
        return None
    match = _REF.search(url.strip())
    if match is None:
        return None
    return match.group(1).lower(), match.group(2)


MAX_SPONSORS = 100  # agentidentity-post-sponsors: "up to 100 sponsors"


def sponsor_error(tenant: Tenant, url: object) -> tuple[str, str]:
    """(user id, "") for a valid sponsor reference, else ("", why).

    agentidentity-post-sponsors: "Sponsors can include users or groups. Sponsors may
    not include service principals or agent users." The sandbox has no groups.
    """
    ref = reference(url)
    if ref is None:
        return "", f"Invalid sponsor reference '{url}'."
    kind, object_id = ref
    if kind == "groups":
        return "", "Group sponsors are not modelled by this sandbox tenant; use a user."
    user = tenant.users.get(object_id)
    if user is None:
        if kind == "servicePrincipals" or tenant.app_by_object_id(object_id) is not None:
            return "", "Sponsors may not include service principals or agent users."
        return "", f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not " \
                   "present."
    if user.kind == "agentUser":
        return "", "Sponsors may not include service principals or agent users."
    return user.id, ""


def resolve_sponsors(tenant: Tenant, refs: object) -> list[str] | str:
    """The user ids of a required `sponsors@odata.bind` list, or why it is refused."""
    if not isinstance(refs, list) or not refs:
        return "At least one sponsor is required: set 'sponsors@odata.bind' to a list of user references."
    ids: list[str] = []
    for url in refs:
        user_id, why = sponsor_error(tenant, url)
        if why:
            return why
        if user_id not in ids:
            ids.append(user_id)
    if len(ids) > MAX_SPONSORS:
        return f"An agent identity may have at most {MAX_SPONSORS} sponsors."
    return ids


# --- $filter ----------------------------------------------------------------------------
_CLAUSE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s+eq\s+'((?:[^']|'')*)'\s*$")


class FilterError(ValueError):
    pass


def parse_filter(text: str | None) -> list[tuple[str, str]]:
    """`prop eq 'value' [and prop eq 'value']...` -> [(prop, value)]; the subset setup needs.

    Anything else raises `FilterError` so a route answers 400 instead of ignoring the filter.
    """
    if text is None or not text.strip():
        return []
    clauses: list[tuple[str, str]] = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.I):
        match = _CLAUSE.match(part)
        if match is None:
            raise FilterError(part.strip())
        clauses.append((match.group(1), match.group(2).replace("''", "'")))
    return clauses


def filtered(request: web.Request, items: Iterable[T], fields: dict[str, Callable[[T], str]],
             resource: str) -> list[T] | web.Response:
    """Apply `$filter` with the given filterable fields (case-insensitive, as directory `eq` is)."""
    try:
        clauses = parse_filter(request.query.get("$filter"))
    except FilterError as exc:
        return bad_request(request, f"Invalid filter clause: {exc}", code="Request_UnsupportedQuery")
    lower = {k.lower(): v for k, v in fields.items()}
    for prop, _ in clauses:
        if prop.lower() not in lower:
            return bad_request(request, f"Unsupported or invalid query filter clause specified for property "
                                        f"'{prop}' of resource '{resource}'.", code="Request_UnsupportedQuery")
    out = []
    for item in items:
        if all((lower[p.lower()](item) or "").lower() == v.lower() for p, v in clauses):
            out.append(item)
    return out


# --- $select ------------------------------------------------------------------------------
def selected(request: web.Request) -> list[str] | None:
    raw = request.query.get("$select")
    if raw is None or not raw.strip():
        return None
    return [s.strip() for s in raw.split(",") if s.strip()]


def pick(body: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Trim an entity to `$select` (case-insensitive); OData annotations stay."""
    if not select:
        return body
    wanted = {s.lower() for s in select}
    return {k: v for k, v in body.items() if k.startswith("@odata.type") or k.lower() in wanted}


def entity(request: web.Request, entity_set: str, body: dict[str, Any], *, status: int = 200) -> web.Response:
    """One entity with its `@odata.context`, `$select` applied as Graph names it."""
    select = selected(request)
    fragment = f"{entity_set}({','.join(select)})/$entity" if select else f"{entity_set}/$entity"
    return web.json_response({"@odata.context": context(request, fragment), **pick(body, select)}, status=status)


def collection(request: web.Request, entity_set: str, bodies: list[dict[str, Any]]) -> web.Response:
    select = selected(request)
    fragment = f"{entity_set}({','.join(select)})" if select else entity_set
    return web.json_response({"@odata.context": context(request, fragment),
                              "value": [pick(b, select) for b in bodies]})
