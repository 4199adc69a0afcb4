"""`GET /_sandbox/files?url=<webUrl>&as=<upn>`: a file's bytes as that person would open it.

How a test checks that a file the agent sent is one the recipient can open: the same access
rule as Graph's OneDrive routes (graph/drive/store.py), answered in the control API's shape:
the bytes with the file's type, 403 `{"error"}` when it is not shared with that person, 404
when there is no such file or person.
"""

from __future__ import annotations

from aiohttp import web

from ..graph.drive import store
from ..state import SANDBOX_KEY
from .routes import ControlError, _handler, _user


@_handler
async def open_file(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    url, who = request.query.get("url"), request.query.get("as")
    if not url or not who:
        raise ControlError(400, "give 'url' (the file's webUrl) and 'as' (a UPN or object id)")
    user = _user(sb, who, "as")
    item = store.by_url(sb, url)
    if item is None or item.is_folder:
        raise ControlError(404, f"url: no file at '{url}'")
    if not store.can_read(sb, item, user.id):
        raise ControlError(403, f"'{user.upn}' cannot open '{item.name}': it is not shared with them")
    return web.Response(body=store.content(sb, item), content_type=item.mime_type or "application/octet-stream",
                        headers={"X-Sandbox-File-Name": item.name, "X-Sandbox-Item-Id": item.id})


def routes() -> list[web.RouteDef]:
    return [web.get("/_sandbox/files", open_file)]
