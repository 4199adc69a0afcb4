"""`/_sandbox/messages/{chat_id}/{message_id}/edit` and `.../delete`: a person edits or deletes a message.

Control routes for tests and demos: the author changes their own message, and the sandbox
announces it as Graph would (graph/chat_changes.py). Edit takes `{"text", "html"?, "from"?}`
(`from`, when given, must be the author); delete takes `{"from"}` (the author soft-deletes).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..graph.chat_changes import ChangeError, edit_chat_message, find_chat_message, soft_delete_chat_message
from ..state import SANDBOX_KEY
from .routes import ControlError, _body, _handler, _text, _user

__all__ = ["routes"]


def _target(request: web.Request) -> tuple[Any, Any]:
    sb = request.app[SANDBOX_KEY]
    try:
        return find_chat_message(sb, request.match_info["chat_id"], request.match_info["message_id"])
    except ChangeError as exc:
        raise ControlError(exc.status, exc.message) from None


def _author_check(request: web.Request, msg: Any, ref: str) -> None:
    user = _user(request.app[SANDBOX_KEY], ref, "from")
    if user.id != msg.from_id:
        raise ControlError(403, f"from: '{user.upn}' did not write message '{msg.id}'; only its author can change it")


@_handler
async def edit_message(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    text = _text(data, "text")
    chat, msg = _target(request)
    if data.get("from") is not None:
        _author_check(request, msg, _text(data, "from"))
    try:
        queued = edit_chat_message(sb, chat, msg, text, "html" if data.get("html") is True else "text")
    except ChangeError as exc:
        raise ControlError(exc.status, exc.message) from None
    return web.json_response({"chat_id": chat.id, "message_id": msg.id, "notifications": queued})


@_handler
async def delete_message(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    chat, msg = _target(request)
    _author_check(request, msg, _text(data, "from"))
    queued = soft_delete_chat_message(sb, chat, msg)
    return web.json_response({"chat_id": chat.id, "message_id": msg.id, "notifications": queued})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/_sandbox/messages/{chat_id}/{message_id}/edit", edit_message),
        web.post("/_sandbox/messages/{chat_id}/{message_id}/delete", delete_message),
    ]
