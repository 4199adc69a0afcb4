"""Inline images of channel posts and replies: hostedContents list, get and `$value`.

chatmessagehostedcontent-get and chatmessage-list-hostedcontents document
`/teams/{id}/channels/{id}/messages/{id}/hostedContents[/{id}]` and the same under
`.../replies/{id}`; delegated ChannelMessage.Read.All. The lookup and the answers are the chat
messages' own (graph/hosted_contents.py); only finding the message is channel-specific.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..auth import graph_route
from ..hosted_contents import get_response, list_response, value_response
from ..query import graph_errors
from .messages import MESSAGES_GET, READ_ROLES, READ_SCOPES, _target
from .store import find_post, find_reply

if TYPE_CHECKING:
    from ...tenant import ChannelMessage

BASE = "/v1.0/teams/{team_id}/channels/{channel_id}/messages/{message_id}"


def _message(request: web.Request) -> ChannelMessage:
    sb, _, channel = _target(request)
    root = find_post(sb, channel, request.match_info["message_id"])
    if "reply_id" in request.match_info:
        return find_reply(sb, channel, root, request.match_info["reply_id"])
    return root


def _context(request: web.Request, suffix: str) -> str:
    m = request.match_info
    tail = f"/replies('{m['reply_id']}')" if "reply_id" in m else ""
    return (f"https://graph.microsoft.com/v1.0/$metadata#teams('{m['team_id']}')/channels('{m['channel_id']}')"
            f"/messages('{m['message_id']}'){tail}/hostedContents{suffix}")


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=MESSAGES_GET)
@graph_errors
async def list_hosted(request: web.Request) -> web.Response:
    return list_response(_message(request), _context(request, ""))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=MESSAGES_GET)
@graph_errors
async def get_hosted(request: web.Request) -> web.Response:
    return get_response(_message(request), request.match_info["hosted_id"], _context(request, "/$entity"))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=MESSAGES_GET)
@graph_errors
async def get_hosted_value(request: web.Request) -> web.Response:
    sb, _, _ = _target(request)
    return value_response(sb, _message(request), request.match_info["hosted_id"])


def routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = []
    for base in (BASE, BASE + "/replies/{reply_id}"):
        out += [web.get(f"{base}/hostedContents", list_hosted),
                web.get(f"{base}/hostedContents/{{hosted_id}}/$value", get_hosted_value),
                web.get(f"{base}/hostedContents/{{hosted_id}}", get_hosted)]
    return out
