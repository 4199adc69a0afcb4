"""Channel messages in the sandbox's Graph: posts and replies, listed, read and sent.

Rules from channel-list-messages ("Retrieve the list of messages (without the replies)";
`$top` default 20, at most 50; `$expand=replies`, up to 1,000 replies with a
`replies@odata.nextLink` beyond), chatmessage-list-replies (`$top` at most 50),
chatmessage-get, channel-post-messages and chatmessage-post-replies (delegated
ChannelMessage.Send; application permissions are for migration only, not emulated;
201 with the chatMessage). Reads take delegated ChannelMessage.Read.All.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...responses import odata
from ...state import SANDBOX_KEY
from ..attachments import check_attachments
from ..auth import graph_route, principal
from ..chat_messages import message_body
from ..hosted_contents import check_hosted_contents, store_hosted_contents
from ..mentions import check_mentions
from ..query import bad_request, graph_errors, json_body, keyset_page, query, top
from ..throttle import Limit
from .resources import channel_message_json, item
from .store import channel_message_url as hosted_url
from .store import channel_for, find_post, find_reply, post_channel_message, replies_of, thread

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import Channel, ChannelMessage, Team

READ_SCOPES = ("ChannelMessage.Read.All", "Group.Read.All", "Group.ReadWrite.All")
READ_ROLES = ("ChannelMessage.Read.Group", "ChannelMessage.Read.All", "Group.Read.All", "Group.ReadWrite.All")
SEND_SCOPES = ("ChannelMessage.Send", "Group.ReadWrite.All")
PAGE_DEFAULT = 20  # channel-list-messages: "The default page size is 20 messages."
#: "Each page can be extended to a maximum of 50 channel messages"; replies: "maximum allowed $top value is 50".
PAGE_MAX = 50
EXPAND_REPLIES_MAX = 1000  # "By default, the response can contain up to 1,000 replies"
#: throttling-limits (Teams): "GET channel message" 20 rps and "POST channel message" 50 rps per app per
#: tenant, and at most 4 requests per second per app on a given channel.
PER_CHANNEL = Limit("channel", 4.0, 4.0)
MESSAGES_GET = (Limit("app", 20.0, 20.0), PER_CHANNEL)
MESSAGES_POST = (Limit("app", 50.0, 50.0), PER_CHANNEL)


def _viewer(request: web.Request) -> str | None:
    who = principal(request)
    return who.oid if who.kind == "user" else None


def _target(request: web.Request) -> tuple[SandboxState, Team, Channel]:
    sb = request.app[SANDBOX_KEY]
    team, channel = channel_for(sb, request.match_info["team_id"], request.match_info["channel_id"],
                                _viewer(request))
    return sb, team, channel


def _newest_first(msg: ChannelMessage) -> tuple[float, int]:
    return (-msg.created, -int(msg.id))


def _context(team_id: str, channel_id: str, tail: str) -> str:
    return f"https://graph.microsoft.com/v1.0/$metadata#teams('{team_id}')/channels('{channel_id}')/messages{tail}"


def _expand_replies(request: web.Request) -> bool:
    raw = query(request, "$expand")
    if not raw:
        return False
    names = {part.strip().split("(")[0].strip().lower() for part in raw.split(",") if part.strip()}
    if names != {"replies"}:
        raise bad_request(f"Could not find a property named '{raw}' on type 'microsoft.graph.chatMessage'; "
                          "only 'replies' can be expanded.")
    return True


def _with_replies(sb: SandboxState, channel: Channel, post: ChannelMessage) -> dict[str, Any]:
    body = item(sb, post)
    replies = sorted(replies_of(sb, channel, post), key=_newest_first)
    body["replies@odata.context"] = _context(post.team_id, channel.id, f"('{post.id}')/replies")
    body["replies"] = [item(sb, r) for r in replies[:EXPAND_REPLIES_MAX]]
    if len(replies) > EXPAND_REPLIES_MAX:
        body["replies@odata.nextLink"] = (f"{sb.url}/v1.0/teams/{post.team_id}/channels/{channel.id}/messages/"
                                          f"{post.id}/replies")
    return body


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=MESSAGES_GET)
@graph_errors
async def list_posts(request: web.Request) -> web.Response:
    """Root posts, newest first, `$top` per page, a keyset `$skiptoken` so new posts never shift a page."""
    sb, team, channel = _target(request)
    page_size = top(request, default=PAGE_DEFAULT, maximum=PAGE_MAX)
    expand = _expand_replies(request)
    posts = [m for m in thread(sb, channel) if m.reply_to_id is None]
    page, next_link = keyset_page(sb, request, posts, _newest_first, page_size, {"k": "posts", "c": channel.id})
    values = [_with_replies(sb, channel, m) if expand else item(sb, m) for m in page]
    return web.json_response(odata(_context(team.id, channel.id, ""), values, next_link,
                                   **{"@odata.count": len(values)}))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=MESSAGES_GET)
@graph_errors
async def get_post(request: web.Request) -> web.Response:
    sb, _, channel = _target(request)
    return web.json_response(channel_message_json(sb, find_post(sb, channel, request.match_info["message_id"])))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=MESSAGES_GET)
@graph_errors
async def list_replies(request: web.Request) -> web.Response:
    sb, team, channel = _target(request)
    root = find_post(sb, channel, request.match_info["message_id"])
    page_size = top(request, default=PAGE_DEFAULT, maximum=PAGE_MAX)
    page, next_link = keyset_page(sb, request, replies_of(sb, channel, root), _newest_first, page_size,
                                  {"k": "replies", "c": channel.id, "r": root.id})
    values = [item(sb, m) for m in page]
    return web.json_response(odata(_context(team.id, channel.id, f"('{root.id}')/replies"), values, next_link,
                                   **{"@odata.count": len(values)}))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=MESSAGES_GET)
@graph_errors
async def get_reply(request: web.Request) -> web.Response:
    sb, _, channel = _target(request)
    root = find_post(sb, channel, request.match_info["message_id"])
    return web.json_response(channel_message_json(sb, find_reply(sb, channel, root, request.match_info["reply_id"])))


async def _send(request: web.Request, *, reply: bool) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    who = principal(request)
    team, channel = channel_for(sb, request.match_info["team_id"], request.match_info["channel_id"], who.oid)
    root = find_post(sb, channel, request.match_info["message_id"]) if reply else None
    data = await json_body(request)
    content, content_type = message_body(data)
    mentions = check_mentions(sb, data.get("mentions"), content, content_type)
    # Files and quotes as in chats; a quote names a message of this channel.
    attachments = check_attachments(data.get("attachments"), content, sb, sender_id=who.oid,
                                    messages=thread(sb, channel))
    hosted = check_hosted_contents(data.get("hostedContents"), content, attachments)
    msg = post_channel_message(sb, team, channel, who.oid, content, content_type, mentions, attachments,
                               reply_to=root, prepare=lambda m: store_hosted_contents(
                                   sb, m, hosted, hosted_url(sb.graph_url, m)))
    return web.json_response(channel_message_json(sb, msg), status=201)


@graph_route(scopes=SEND_SCOPES, limits=MESSAGES_POST, delegated_only=True)
@graph_errors
async def send_post(request: web.Request) -> web.Response:
    """POST /teams/{team-id}/channels/{channel-id}/messages (channel-post-messages)."""
    return await _send(request, reply=False)


@graph_route(scopes=SEND_SCOPES, limits=MESSAGES_POST, delegated_only=True)
@graph_errors
async def send_reply(request: web.Request) -> web.Response:
    """POST .../messages/{message-id}/replies (chatmessage-post-replies): only a root post takes replies."""
    return await _send(request, reply=True)


def routes() -> list[web.RouteDef]:
    base = "/v1.0/teams/{team_id}/channels/{channel_id}/messages"
    return [
        web.get(base, list_posts),
        web.post(base, send_post),
        web.get(base + "/{message_id}", get_post),
        web.get(base + "/{message_id}/replies", list_replies),
        web.post(base + "/{message_id}/replies", send_reply),
        web.get(base + "/{message_id}/replies/{reply_id}", get_reply),
    ]
