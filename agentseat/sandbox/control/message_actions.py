"""Control API for what people do to a sent chat message: edit, react, unreact, delete.

`POST /_sandbox/messages/{chat_id}/{message_id}/edit` `{text, html?}` (as the author),
`.../react` and `.../unreact` `{from, reaction}`, `.../delete` `{from}` (the author soft-deletes).
Each goes through the same functions as the Graph routes (graph/chat_message_actions.py),
so subscribers are notified exactly as for a change made through Graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..graph import chat_message_actions as actions
from ..graph.query import GraphError
from ..state import SANDBOX_KEY
from .routes import ControlError, _body, _handler, _text, _user

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import Chat, ChatMessage


def _target(request: web.Request) -> tuple[SandboxState, Chat, ChatMessage]:
    sb = request.app[SANDBOX_KEY]
    chat = sb.tenant.chats.get(request.match_info["chat_id"])
    if chat is None:
        raise ControlError(404, f"no chat '{request.match_info['chat_id']}'")
    try:
        return sb, chat, actions.find_message(sb, chat, request.match_info["message_id"])
    except GraphError as exc:
        raise ControlError(404, f"no message '{request.match_info['message_id']}' in that chat") from exc


def _apply(change: Callable[[], ChatMessage], sb: SandboxState) -> web.Response:
    """Run a change; Graph's refusal becomes the control API's error with the same status."""
    try:
        msg = change()
    except GraphError as exc:
        raise ControlError(exc.status, exc.message) from exc
    return web.json_response({"chat_id": msg.chat_id, "message_id": msg.id, **actions.changes_view(sb, msg)})


@_handler
async def edit(request: web.Request) -> web.Response:
    """`{"text", "html"?}`: the author edits the message."""
    sb, chat, msg = _target(request)
    data = await _body(request)
    text = _text(data, "text")
    content_type = "html" if data.get("html") is True else "text"
    return _apply(lambda: actions.edit_message(sb, chat, msg, msg.from_id, text, content_type), sb)


def _member(sb: SandboxState, chat: Chat, data: dict[str, Any]) -> str:
    user = _user(sb, _text(data, "from"), "from")
    if user.id not in chat.member_ids:
        raise ControlError(400, f"from: '{user.upn}' is not a member of that chat")
    return user.id


def _reaction(data: dict[str, Any]) -> str:
    try:
        return actions.check_reaction(data.get("reaction"))
    except GraphError as exc:
        raise ControlError(400, f"reaction: {exc.message}") from exc


@_handler
async def react(request: web.Request) -> web.Response:
    """`{"from", "reaction"}`: a member reacts (like, heart, laugh, surprised, sad, angry or an emoji)."""
    sb, chat, msg = _target(request)
    data = await _body(request)
    user_id, kind = _member(sb, chat, data), _reaction(data)
    return _apply(lambda: actions.set_reaction(sb, chat, msg, user_id, kind), sb)


@_handler
async def unreact(request: web.Request) -> web.Response:
    """`{"from", "reaction"}`: a member takes a reaction back."""
    sb, chat, msg = _target(request)
    data = await _body(request)
    user_id, kind = _member(sb, chat, data), _reaction(data)
    return _apply(lambda: actions.unset_reaction(sb, chat, msg, user_id, kind), sb)


@_handler
async def delete(request: web.Request) -> web.Response:
    """`{"from"}`: the author soft-deletes the message (anyone else: 403, as Graph answers)."""
    sb, chat, msg = _target(request)
    user_id = _member(sb, chat, await _body(request))
    return _apply(lambda: actions.soft_delete(sb, chat, msg, user_id), sb)


def routes() -> list[web.RouteDef]:
    base = "/_sandbox/messages/{chat_id}/{message_id}"
    return [
        web.post(f"{base}/edit", edit),
        web.post(f"{base}/react", react),
        web.post(f"{base}/unreact", unreact),
        web.post(f"{base}/delete", delete),
    ]
