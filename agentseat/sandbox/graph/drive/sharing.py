"""Sharing in the sandbox's drives: invitations, sharing links, permissions, and shared items by URL.

Rules from "Send a sharing invitation" (driveitem-invite: recipients by email or objectId,
roles read | write, 200 with the permission collection, a notice by mail with `sendInvitation`), "Create a sharing link"
(driveitem-createlink; the link rules are in links.py), "List permissions"
(driveitem-list-permissions: the owner sees all, anyone else only their own), "Get permission"
and "Delete a sharing permission" (permission-delete: 204; only permissions on the item itself,
not inherited ones) and "Access shared items" (shares-get: `/shares/{u!base64url(url)}/driveItem`
and its `/content`, for a sharing link's URL or an item's webUrl; `Prefer: redeemSharingLink`).
Someone the item is not shared with gets 403 accessDenied, as SharePoint answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...clock import parse_iso
from ...responses import odata
from ...state import SANDBOX_KEY
from ..auth import graph_route, principal
from ..query import GraphError, graph_errors, json_body
from . import links, notices, store
from .access import grantees
from .items import BASES, ITEM, READ_ROLES, READ_SCOPES, addressed_item, caller, redirect_to_content
from .resources import item_json, permission_json
from .upload import WRITE_ROLES, WRITE_SCOPES

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem, User

#: shares-get: delegated Files.ReadWrite (least privileged), Files.ReadWrite.All, Sites.ReadWrite.All.
SHARES_SCOPES = WRITE_SCOPES
#: driveitem-invite: "A plain text formatted message ... Maximum length 2000 characters."
MESSAGE_MAX = 2000


def _invalid(message: str) -> GraphError:
    return GraphError(400, "invalidRequest", message)


def _recipients(sb: SandboxState, raw: Any) -> list[tuple[User, str | None]]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("'recipients' must be a non-empty collection of driveRecipient.")
    out = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise _invalid("Each recipient must be a driveRecipient object.")
        ref = entry.get("objectId") or entry.get("email") or entry.get("alias")
        if not isinstance(ref, str) or not ref:
            raise _invalid("A driveRecipient needs 'email', 'alias' or 'objectId'.")
        user = sb.tenant.user(ref)
        if user is None:
            # External sharing (guests) is not part of the sandbox's tenant.
            raise _invalid(f"The recipient '{ref}' is not a user in this organization.")
        out.append((user, entry.get("email") if isinstance(entry.get("email"), str) else None))
    return out


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def invite(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    item = addressed_item(request, write=True)
    if not store.can_write(sb, item, caller(request)):
        raise store.access_denied()
    if item.parent_id is None:
        raise _invalid("Permissions cannot be added to the root of a drive.")
    data = await json_body(request)
    roles = data.get("roles")
    if not isinstance(roles, list) or not roles or any(r not in store.ROLES for r in roles):
        raise _invalid("'roles' must list 'read' and/or 'write'.")
    for flag in ("requireSignIn", "sendInvitation"):
        if flag in data and not isinstance(data[flag], bool):
            raise _invalid(f"'{flag}' must be true or false.")
    message = data.get("message")
    if message is not None and (not isinstance(message, str) or len(message) > MESSAGE_MAX):
        raise _invalid(f"'message' must be a string of at most {MESSAGE_MAX} characters.")
    recipients = _recipients(sb, data.get("recipients"))
    perms = [store.grant(sb, item, user, list(roles), email) for user, email in recipients]
    sharer = sb.tenant.users.get(caller(request) or "")
    if data.get("sendInvitation") is True and sharer is not None:
        notices.send(sb, item, sharer, [user for user, _ in recipients], message)
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#Collection(permission)",
                                   [permission_json(sb, p) for p in perms]))


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def create_link(request: web.Request) -> web.Response:
    """driveitem-createlink: 201 with a new link's permission, 200 with the app's existing one."""
    sb = request.app[SANDBOX_KEY]
    item = addressed_item(request, write=True)
    if not store.can_write(sb, item, caller(request)):
        raise store.access_denied()
    data = await json_body(request)
    link_type, scope = data.get("type"), data.get("scope") or links.DEFAULT_SCOPE
    if link_type == "embed":
        raise GraphError(400, "notSupported", "Embed links are only available for files in OneDrive personal.")
    if link_type not in links.TYPES:
        raise _invalid("'type' must be 'view' or 'edit'.")
    if scope not in links.SCOPES:
        raise _invalid("'scope' must be 'anonymous', 'organization' or 'users'.")
    if data.get("password") is not None:
        raise GraphError(400, "notSupported", "Link passwords are available in OneDrive personal only.")
    if scope == "anonymous" and sb.behaviour.anonymous_sharing_links != "enabled":
        # The docs say only that an administrator may disable anonymous links; what tenants answer
        # then is 403 Forbidden (OneDrive/onedrive-api-docs#413), OneDrive's code for it accessDenied.
        raise GraphError(403, "accessDenied", "Anonymous sharing links are disabled for this organization by its "
                         "administrator; use scope 'organization' or 'users'.")
    expiration = None
    if data.get("expirationDateTime") is not None:
        try:
            expiration = parse_iso(str(data["expirationDateTime"]))
        except ValueError as exc:
            raise _invalid("'expirationDateTime' must be a date and time like 2030-01-31T00:00:00Z.") from exc
    perm, created = links.create(sb, item, link_type, scope, app_id=principal(request).app_id,
                                 actor=caller(request), expiration=expiration)
    return web.json_response(permission_json(sb, perm), status=201 if created else 200)


def _visible_permissions(request: web.Request, item: DriveItem) -> list[dict[str, Any]]:
    """driveitem-list-permissions: someone who may edit sees all; anyone else only their own."""
    sb = request.app[SANDBOX_KEY]
    who = caller(request)
    if store.can_write(sb, item, who):
        return list(item.permissions)
    return [p for p in item.permissions if who in grantees(p)]


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def list_permissions(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    item = addressed_item(request)
    context = f"https://graph.microsoft.com/v1.0/$metadata#drives('{item.drive_id}')/items('{item.id}')/permissions"
    return web.json_response(odata(context, [permission_json(sb, p) for p in _visible_permissions(request, item)]))


def _permission(request: web.Request, item: DriveItem) -> dict[str, Any]:
    wanted = request.match_info["perm_id"]
    for perm in _visible_permissions(request, item):
        if perm["id"] == wanted:
            return perm
    raise store.not_found(f"Permission '{wanted}' was not found on this item.")


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def get_permission(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    return web.json_response(permission_json(sb, _permission(request, addressed_item(request))))


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def delete_permission(request: web.Request) -> web.Response:
    """permission-delete: 204; whoever it named (or whoever holds the link) loses that access at once."""
    sb = request.app[SANDBOX_KEY]
    item = addressed_item(request, write=True)
    if not store.can_write(sb, item, caller(request)):
        raise store.access_denied()
    perm = _permission(request, item)
    item.permissions.remove(perm)
    sb.mark_dirty()
    return web.Response(status=204)


def shared_item(request: web.Request) -> DriveItem:
    """The item `{share_id}` names (an encoded sharing link or webUrl), if the caller may open it that way."""
    sb = request.app[SANDBOX_KEY]
    url = store.decode_share_id(request.match_info["share_id"])
    if url is None:
        raise _invalid("The shareId is not a valid encoded sharing URL ('u!' + unpadded base64url).")
    who = caller(request)
    found = links.by_url(sb, url)
    if found is not None:
        item, perm = found
        if not links.live(sb, perm):
            raise store.not_found("The sharing link has expired.")
        if not links.lets_through(sb, item, perm, who):
            raise store.access_denied()
        # shares-get, Prefer: "redeemSharingLink" grants durable access; "...IfNecessary" this request only.
        if who is not None and "redeemsharinglink" in request.headers.get("Prefer", "").lower().replace(
                "redeemsharinglinkifnecessary", ""):
            links.redeem(sb, perm, who)
        return item
    item = store.by_url(sb, url)
    if item is None:
        raise store.not_found()
    return store.readable(sb, item, who)


@graph_route(scopes=SHARES_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def get_share(request: web.Request) -> web.Response:
    """The sharedDriveItem: id, name, owner (the driveItem is its `driveItem` relationship)."""
    sb = request.app[SANDBOX_KEY]
    item = shared_item(request)
    owner = sb.tenant.users.get(item.owner_id)
    site = sb.tenant.sites.get(item.owner_id)
    who = ({"user": {"id": owner.id, "displayName": owner.display_name}} if owner is not None
           else {"group": {"id": site.guid, "displayName": site.display_name}} if site is not None else {})
    return web.json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#shares/$entity",
                              "id": request.match_info["share_id"], "name": item.name, "owner": who})


@graph_route(scopes=SHARES_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def get_shared_item(request: web.Request) -> web.Response:
    return web.json_response(item_json(request.app[SANDBOX_KEY], shared_item(request)))


@graph_route(scopes=SHARES_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def get_shared_content(request: web.Request) -> web.Response:
    return redirect_to_content(request.app[SANDBOX_KEY], shared_item(request))


def routes() -> list[web.RouteDef]:
    out = [
        web.get("/v1.0/shares/{share_id}/driveItem/content", get_shared_content),
        web.get("/v1.0/shares/{share_id}/driveItem", get_shared_item),
        web.get("/v1.0/shares/{share_id}", get_share),
    ]
    for base in BASES:
        out += [web.post(f"{base}/items/{ITEM}/invite", invite),
                web.post(f"{base}/items/{ITEM}/createLink", create_link),
                web.get(f"{base}/items/{ITEM}/permissions", list_permissions),
                web.get(f"{base}/items/{ITEM}/permissions/{{perm_id}}", get_permission),
                web.delete(f"{base}/items/{ITEM}/permissions/{{perm_id}}", delete_permission)]
    return out
