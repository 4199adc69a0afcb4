"""`POST /_sandbox/chats`: make a group chat among tenant users, as one of them would in Teams.

Goes through the same `create_group_chat` as Graph's `POST /chats`, so the chat looks the
same to the agent whichever way it was made. Listing chats and their messages stays in `routes`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..graph.chats import create_group_chat
from ..state import SANDBOX_KEY
from .routes import ControlError, _body, _handler, _user


@_handler
async def create_chat(request: web.Request) -> web.Response:
    """`{"members": [upn, ...], "topic"?}` -> `{"chat_id"}`: a new group chat (never deduplicated)."""
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    refs: Any = data.get("members")
    if not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
        raise ControlError(400, "'members' must be a list of UPNs or object ids")
    ids = list(dict.fromkeys(_user(sb, ref, "members").id for ref in refs))
    # chat-post: a group chat has at least two members (the creator among them), as in Graph.
    if len(ids) < 2:
        raise ControlError(400, "a group chat needs at least two different members")
    topic = data.get("topic")
    if topic is not None and not isinstance(topic, str):
        raise ControlError(400, "'topic' must be a string")
    chat = create_group_chat(sb, ids, topic)
    return web.json_response({"chat_id": chat.id, "chat_type": chat.chat_type, "topic": chat.topic}, status=201)


def routes() -> list[web.RouteDef]:
    return [web.post("/_sandbox/chats", create_chat)]
