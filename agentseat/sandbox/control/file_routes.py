"""Files and sites in the control API: put a file in someone's drive, look at one, open one as a person.

- `POST /_sandbox/files` `{owner, path, content_base64, share_with?: [upn], role?: "read"|"write",
  notify?: bool, message?: str}` -> 201 `{drive_id, item_id, web_url, sharing_url}`. `owner` is a
  UPN or object id (their OneDrive) or a site's name or id (its library, written as its first
  member); an existing file at `path` is replaced. `sharing_url` is a `users` sharing link (view,
  or edit with role write) naming the `share_with` people: they open the file directly and
  through `/shares/{u!...}`. With `notify`, they also get the sharing notice by mail
  (graph/drive/notices.py), from the owner, linking `sharing_url`.
- `GET /_sandbox/files/{drive_id}/{item_id}` -> `{drive_id, item_id, metadata, content_base64,
  permissions}`: the driveItem and permission JSON Graph would show its owner, and the bytes.
- `GET /_sandbox/files?url=<webUrl or sharing link>&as=<upn>`: a file's bytes as that person would open it
  (403 `{"error"}` when it is not shared with them, 404 when there is no such file or person).
- `POST /_sandbox/sites` `{name, members: [upn], display_name?}` -> 201 `{site_id, drive_id, web_url}`.
The same store and access rules as Graph's routes (graph/drive/), so what is made here is what Graph serves.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..graph.drive import links, notices, store
from ..graph.drive.resources import item_json, permission_json, site_id, site_url
from ..graph.drive.sites import create_site, site_by_ref
from ..graph.query import GraphError
from ..state import SANDBOX_KEY
from .routes import ControlError, _body, _handler, _text, _user

if TYPE_CHECKING:
    from ..state import SandboxState

#: The app a control-API sharing link is recorded under (createLink keeps one link per app).
CONTROL_APP = "sandbox-control"


@_handler
async def open_file(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    url, who = request.query.get("url"), request.query.get("as")
    if not url or not who:
        raise ControlError(400, "give 'url' (the file's webUrl) and 'as' (a UPN or object id)")
    user = _user(sb, who, "as")
    by_link = links.by_url(sb, url)
    item = by_link[0] if by_link is not None else store.by_url(sb, url)
    if item is None or item.is_folder:
        raise ControlError(404, f"url: no file at '{url}'")
    through_link = by_link is not None and links.lets_through(sb, item, by_link[1], user.id)
    if not through_link and not store.can_read(sb, item, user.id):
        raise ControlError(403, f"'{user.upn}' cannot open '{item.name}': it is not shared with them")
    return web.Response(body=store.content(sb, item), content_type=item.mime_type or "application/octet-stream",
                        headers={"X-Sandbox-File-Name": item.name, "X-Sandbox-Item-Id": item.id})


def _owner(sb: SandboxState, ref: str) -> tuple[str, str]:
    """(drive owner key, who writes): a person's OneDrive, or a site's library (written by its first member)."""
    user = sb.tenant.user(ref)
    if user is not None:
        return user.id, user.id
    for site in sb.tenant.sites.values():
        if site.name.lower() == ref.lower():
            return site.guid, (site.member_ids or [site.guid])[0]
    try:
        site = site_by_ref(sb, ref)
    except GraphError as exc:
        raise ControlError(404, f"owner: no user or site '{ref}' in the tenant") from exc
    return site.guid, (site.member_ids or [site.guid])[0]


def _upns(sb: SandboxState, raw: Any, name: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ControlError(400, f"'{name}' must be a list of UPNs or object ids")
    return [_user(sb, v, name).id for v in raw]


@_handler
async def put_file(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    owner, actor = _owner(sb, _text(data, "owner"))
    raw = data.get("content_base64")
    if not isinstance(raw, str):
        raise ControlError(400, "'content_base64' is required: the file's bytes in base64")
    try:
        content = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ControlError(400, "'content_base64' is not valid base64") from exc
    share_with = _upns(sb, data.get("share_with"), "share_with")
    role = data.get("role", "read")
    if role not in ("read", "write"):
        raise ControlError(400, "'role' must be 'read' or 'write'")
    notify = data.get("notify", False)
    if not isinstance(notify, bool):
        raise ControlError(400, "'notify' must be true or false")
    try:
        path = store.normal_path(_text(data, "path"))
        folder, _, name = path.rpartition("/")
        item, _ = store.write_file(sb, owner, folder, name, content, conflict="replace", actor=actor)
    except GraphError as exc:
        raise ControlError(400, f"path: {exc.message}") from exc
    perm, _ = links.create(sb, item, "edit" if role == "write" else "view", "users", app_id=CONTROL_APP,
                           actor=actor, granted_ids=share_with)
    sharer = sb.tenant.users.get(actor)
    if notify and share_with and sharer is not None:  # a site without members has no one to send it
        message = data.get("message")
        notices.send(sb, item, sharer, [sb.tenant.users[u] for u in share_with],
                     message if isinstance(message, str) else None, perm["url"])
    return web.json_response({"drive_id": item.drive_id, "item_id": item.id, "web_url": store.web_url(sb, item),
                              "sharing_url": perm["url"]}, status=201)


@_handler
async def get_file(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    drive_id, item_id = request.match_info["drive_id"], request.match_info["item_id"]
    item = sb.tenant.drive_items.get(item_id)
    if item is None or item.drive_id != drive_id:
        raise ControlError(404, f"no item '{item_id}' in drive '{drive_id}'")
    content = None if item.is_folder else base64.b64encode(store.content(sb, item)).decode()
    metadata = item_json(sb, item)
    metadata.pop("@odata.context", None)
    return web.json_response({"drive_id": drive_id, "item_id": item_id, "metadata": metadata,
                              "content_base64": content,
                              "permissions": [permission_json(sb, p) for p in item.permissions]})


@_handler
async def post_site(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    name = _text(data, "name").strip()
    if not all(c.isalnum() or c in "-_" for c in name):
        raise ControlError(400, "'name' is the site's URL name: letters, digits, '-' and '_' only")
    members = _upns(sb, data.get("members"), "members")
    display = data.get("display_name")
    try:
        site = create_site(sb, name, members, display if isinstance(display, str) and display.strip() else None)
    except GraphError as exc:
        raise ControlError(409, exc.message) from exc
    return web.json_response({"site_id": site_id(sb, site), "drive_id": store.drive_id_of(site.guid),
                              "web_url": site_url(sb, site)}, status=201)


def routes() -> list[web.RouteDef]:
    return [web.get("/_sandbox/files", open_file), web.post("/_sandbox/files", put_file),
            web.get("/_sandbox/files/{drive_id}/{item_id}", get_file), web.post("/_sandbox/sites", post_site)]
