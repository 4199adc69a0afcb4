"""Sharing in the sandbox's OneDrive: invitations, the permissions list, and shared items by URL.

Rules from "Send a sharing invitation" (driveitem-invite: recipients by email or objectId,
roles read | write, 200 with the permission collection), "List permissions"
(driveitem-list-permissions: the owner sees all, anyone else only their own) and "Access
shared items" (shares-get: `/shares/{u!base64url(url)}/driveItem`, and its `/content`).
Someone the item is not shared with gets 403 accessDenied, as SharePoint answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...responses import odata
from ...state import SANDBOX_KEY
from ..auth import graph_route
from ..query import GraphError, graph_errors, json_body
from . import store
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
    item = addressed_item(request)
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
    perms = [store.grant(sb, item, user, list(roles), email) for user, email in _recipients(sb, data.get("recipients"))]
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#Collection(permission)",
                                   [permission_json(sb, p) for p in perms]))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def list_permissions(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    item = addressed_item(request)
    who = caller(request)
    mine = [p for p in item.permissions if who is None or item.owner_id == who or p["user_id"] == who]
    context = f"https://graph.microsoft.com/v1.0/$metadata#drives('{item.drive_id}')/items('{item.id}')/permissions"
    return web.json_response(odata(context, [permission_json(sb, p) for p in mine]))


def shared_item(request: web.Request) -> DriveItem:
    """The item `{share_id}` names (an encoded sharing URL), readable by the caller."""
    sb = request.app[SANDBOX_KEY]
    url = store.decode_share_id(request.match_info["share_id"])
    if url is None:
        raise _invalid("The shareId is not a valid encoded sharing URL ('u!' + unpadded base64url).")
    item = store.by_url(sb, url)
    if item is None:
        raise store.not_found()
    return store.readable(sb, item, caller(request))


@graph_route(scopes=SHARES_SCOPES, roles=WRITE_ROLES)
@graph_errors
async def get_share(request: web.Request) -> web.Response:
    """The sharedDriveItem: id, name, owner (the driveItem is its `driveItem` relationship)."""
    sb = request.app[SANDBOX_KEY]
    item = shared_item(request)
    owner = sb.tenant.users[item.owner_id]
    return web.json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#shares/$entity",
                              "id": request.match_info["share_id"], "name": item.name,
                              "owner": {"user": {"id": owner.id, "displayName": owner.display_name}}})


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
                web.get(f"{base}/items/{ITEM}/permissions", list_permissions)]
    return out
