"""SharePoint sites in the sandbox: the site resource, finding one by id or path, and its drives.

Rules from "Get a site resource" (site-get: the id is "a composite ID of: site collection
hostname, site collection unique ID, site unique ID"; Sites.Read.All or Sites.ReadWrite.All),
"Get a site resource by path" (site-getbypath: `GET /sites/{hostname}:/{relative-path}`),
"Get drive" (drive-get: `GET /sites/{siteId}/drive`, the default document library) and
"List drives" (drive-list: `GET /sites/{siteId}/drives`) and "Search for sites" (site-search:
`GET /sites?search={query}`). Each sandbox site has one library,
whose items are ordinary driveItems (items.py serves `/sites/{site-id}/drive/...`). Site
membership decides access: members read and write; others get 403 accessDenied for the site,
and reach only the items shared with them.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import structlog
from aiohttp import web

from ...clock import iso
from ...responses import odata
from ...state import SANDBOX_KEY
from ...tenant import Site
from ..auth import graph_route, principal
from ..query import GraphError, graph_errors
from .access import access_denied
from .resources import drive_json, sharepoint_host, site_id, site_url

if TYPE_CHECKING:
    from ...state import SandboxState

log = structlog.get_logger(__name__)

SITE_SCOPES = ("Sites.Read.All", "Sites.ReadWrite.All")
SITE_ROLES = ("Sites.Read.All", "Sites.ReadWrite.All")


def _not_found(ref: str) -> GraphError:
    return GraphError(404, "itemNotFound", f"Requested site could not be found: '{ref}'.")


def site_by_ref(sb: SandboxState, ref: str) -> Site:
    """The site a `{site-id}` names: the composite id, or its `{collection},{web}` guid part; `root` and
    the bare SharePoint host name the tenant's root site (site-get, "Get the tenant's root site")."""
    if ref.lower() in ("root", sharepoint_host(sb).lower()):
        for site in sb.tenant.sites.values():
            if site.everyone and not site.name:
                return site
        raise _not_found(ref)
    parts = [p.strip().lower() for p in unquote(ref).split(",") if p.strip()]
    for site in sb.tenant.sites.values():
        if site.guid.lower() in parts or unquote(ref).lower() == site_id(sb, site).lower():
            return site
    raise _not_found(ref)


def site_by_path(sb: SandboxState, hostname: str, path: str) -> Site:
    """site-getbypath: the host is the tenant's SharePoint host (or the sandbox's own, where webUrls point)."""
    hosts = {sharepoint_host(sb).lower(), urlsplit(sb.url).netloc.lower()}
    if hostname.lower() not in hosts:
        raise _not_found(f"{hostname}:/{path}")
    wanted = "/" + unquote(path).strip("/").lower()
    for site in sb.tenant.sites.values():
        if wanted == (f"/sites/{site.name.lower()}" if site.name else "/"):
            return site
    raise _not_found(f"{hostname}:/{path}")


def site_json(sb: SandboxState, site: Site) -> dict[str, Any]:
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#sites/$entity",
        "id": site_id(sb, site),
        "createdDateTime": iso(site.created),
        "description": site.description,
        "displayName": site.display_name,
        "name": site.name,
        "lastModifiedDateTime": iso(site.created),
        "webUrl": site_url(sb, site),
        "siteCollection": {"hostname": sharepoint_host(sb)},
        "root": {},
    }


def visible(request: web.Request, site: Site) -> Site:
    who = principal(request)
    if who.kind == "user" and not site.everyone and who.oid not in site.member_ids:
        raise access_denied()
    return site


def create_site(sb: SandboxState, name: str, member_ids: list[str], display_name: str | None = None) -> Site:
    """A new team site with an empty default library (the control API's `POST /_sandbox/sites`)."""
    if any(s.name.lower() == name.lower() for s in sb.tenant.sites.values()):
        raise GraphError(409, "nameAlreadyExists", f"A site named '{name}' already exists.")
    site = Site(guid=str(uuid.uuid4()), web_guid=str(uuid.uuid4()), name=name, display_name=display_name or name,
                member_ids=list(dict.fromkeys(member_ids)), created=sb.clock.now())
    sb.tenant.sites[site.guid] = site
    sb.mark_dirty()
    log.info("site_created", site=site.guid, members=len(site.member_ids))
    return site


@graph_route(scopes=SITE_SCOPES, roles=SITE_ROLES)
@graph_errors
async def get_site(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    return web.json_response(site_json(sb, visible(request, site_by_ref(sb, request.match_info["site_id"]))))


@graph_route(scopes=SITE_SCOPES, roles=SITE_ROLES)
@graph_errors
async def get_site_by_path(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    site = site_by_path(sb, request.match_info["hostname"], request.match_info["path"])
    return web.json_response(site_json(sb, visible(request, site)))


@graph_route(scopes=SITE_SCOPES, roles=SITE_ROLES)
@graph_errors
async def list_drives(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    site = visible(request, site_by_ref(sb, request.match_info["site_id"]))
    body = drive_json(sb, site.guid)
    body.pop("@odata.context", None)
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#drives", [body]))


@graph_route(scopes=SITE_SCOPES, roles=SITE_ROLES)
@graph_errors
async def search_sites(request: web.Request) -> web.Response:
    """site-search: `GET /sites?search={query}`, sites whose name or title holds the words, that the
    caller can open (a member; an app-only caller sees all)."""
    sb = request.app[SANDBOX_KEY]
    raw = request.query.get("search")
    if raw is None:
        raise GraphError(400, "invalidRequest", "Give a search query: /sites?search={query}.")
    words = [w for w in unquote(raw).strip("'\"").lower().split() if w != "*"]
    who = principal(request)
    found = []
    for site in sorted(sb.tenant.sites.values(), key=lambda s: s.name.lower()):
        text = f"{site.name} {site.display_name} {site.description}".lower()
        if all(w in text for w in words) and (who.kind != "user" or site.everyone or who.oid in site.member_ids):
            body = site_json(sb, site)
            body.pop("@odata.context", None)
            found.append(body)
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#sites", found))


def routes() -> list[web.RouteDef]:
    """The by-path form first: its `{hostname}:/` would otherwise read as a site id."""
    return [
        web.get("/v1.0/sites/{hostname:[^/,]+}:/{path:[^:]*}:", get_site_by_path),
        web.get("/v1.0/sites/{hostname:[^/,]+}:/{path:[^:]*}", get_site_by_path),
        web.get("/v1.0/sites", search_sites),
        web.get("/v1.0/sites/{site_id}/drives", list_drives),
        web.get("/v1.0/sites/{site_id}", get_site),
    ]
