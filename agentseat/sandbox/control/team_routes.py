"""Control API for team channels: make teams, post and reply as any member, look at a channel.

`POST /_sandbox/teams` `{name, members:[upn], description?}` -> `{team_id, channel_id}` (the General
channel); `GET /_sandbox/teams/{team_id}/channels/{channel_id}/messages` (posts with their replies);
`POST /_sandbox/channel-messages` `{from, team_id, channel_id, text, html?, mentions?, reply_to?}` ->
`{message_id}`. Also `GET /_sandbox/teams`, `POST /_sandbox/teams/{team_id}/channels` `{name}`, and
`POST /_sandbox/teams/{team_id}/members` `{member}` / `DELETE .../members/{member}` for membership changes,
and `POST /_sandbox/channel-messages/{team_id}/{channel_id}/{message_id}/edit` `{text, html?}` (as the
author) and `.../delete` `{from}` (the author soft-deletes), which notify `updated` and `deleted`.
Posts go through the same helper as Graph's (graph/teams/store.py), so subscribers are notified alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from ..clock import iso
from ..graph.chat_message_actions import changes_view
from ..graph.query import GraphError
from ..graph.teams import store
from ..state import SANDBOX_KEY
from .message_parts import attachment_view, hosted_view
from .routes import ControlError, _body, _handler, _mentioned, _mentioning, _plain, _text, _user

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import Channel, ChannelMessage, Team

log = structlog.get_logger(__name__)


def _team(sb: SandboxState, team_id: Any) -> Team:
    team = sb.tenant.teams.get(str(team_id))
    if team is None:
        raise ControlError(404, f"team_id: no team '{team_id}'")
    return team


def _channel(team: Team, channel_id: Any) -> Channel:
    channel = team.channel(str(channel_id))
    if channel is None:
        raise ControlError(404, f"channel_id: no channel '{channel_id}' in team '{team.display_name}'")
    return channel


def _upns(sb: SandboxState, ids: list[str]) -> list[str]:
    return [sb.tenant.users[m].upn if m in sb.tenant.users else m for m in ids]


@_handler
async def create_team(request: web.Request) -> web.Response:
    """`{"name", "members": [upn, ...], "description"?}` -> `{"team_id", "channel_id"}` (its General channel)."""
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    name = _text(data, "name")
    refs: Any = data.get("members")
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r for r in refs):
        raise ControlError(400, "'members' must be a non-empty list of UPNs or object ids")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise ControlError(400, "'description' must be a string")
    team = store.create_team(sb, name, [_user(sb, ref, "members").id for ref in refs], description)
    return web.json_response({"team_id": team.id, "channel_id": team.channels[0].id, "name": team.display_name},
                             status=201)


async def list_teams(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    teams = [{"id": t.id, "name": t.display_name, "members": _upns(sb, t.member_ids),
              "channels": [{"id": c.id, "name": c.display_name} for c in t.channels]}
             for t in sorted(sb.tenant.teams.values(), key=lambda t: t.created)]
    return web.json_response({"teams": teams})


@_handler
async def create_channel(request: web.Request) -> web.Response:
    """`{"name", "description"?}` -> `{"channel_id"}`: a new standard channel in the team."""
    sb = request.app[SANDBOX_KEY]
    team = _team(sb, request.match_info["team_id"])
    data = await _body(request)
    name = _text(data, "name")
    if any(c.display_name.lower() == name.lower() for c in team.channels):
        raise ControlError(409, f"team '{team.display_name}' already has a channel named '{name}'")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise ControlError(400, "'description' must be a string")
    channel = store.add_channel(sb, team, name, description)
    return web.json_response({"team_id": team.id, "channel_id": channel.id, "name": channel.display_name},
                             status=201)


@_handler
async def add_member(request: web.Request) -> web.Response:
    """`{"member": upn}`: the user joins the team (and so every standard channel)."""
    sb = request.app[SANDBOX_KEY]
    team = _team(sb, request.match_info["team_id"])
    user = _user(sb, _text(await _body(request), "member"), "member")
    if user.id not in team.member_ids:
        team.member_ids.append(user.id)
        sb.mark_dirty()
        log.info("team_member_added", team=team.id)
    return web.json_response({"team_id": team.id, "members": _upns(sb, team.member_ids)})


@_handler
async def remove_member(request: web.Request) -> web.Response:
    """The user leaves the team; Graph then refuses them its channels (403)."""
    sb = request.app[SANDBOX_KEY]
    team = _team(sb, request.match_info["team_id"])
    user = _user(sb, request.match_info["member"], "member")
    if user.id not in team.member_ids:
        raise ControlError(404, f"member: '{user.upn}' is not in team '{team.display_name}'")
    team.member_ids.remove(user.id)
    sb.mark_dirty()
    log.info("team_member_removed", team=team.id)
    return web.json_response({"team_id": team.id, "members": _upns(sb, team.member_ids)})


def _view(sb: SandboxState, msg: ChannelMessage) -> dict[str, Any]:
    user = sb.tenant.users.get(msg.from_id)
    content = "" if msg.deleted is not None else msg.content  # as Graph shows a soft-deleted one
    return {"id": msg.id, "reply_to": msg.reply_to_id, "from": user.upn if user else msg.from_id,
            "text": _plain(content, msg.content_type), "content": content, "content_type": msg.content_type,
            "created": iso(msg.created), "mentions": [_mentioned(sb, m) for m in msg.mentions],
            "attachments": [attachment_view(sb, a) for a in msg.attachments],
            "hosted_images": hosted_view(msg), **changes_view(sb, msg)}


@_handler
async def channel_messages(request: web.Request) -> web.Response:
    """Root posts oldest first, each with its replies oldest first."""
    sb = request.app[SANDBOX_KEY]
    team = _team(sb, request.match_info["team_id"])
    channel = _channel(team, request.match_info["channel_id"])
    messages = store.thread(sb, channel)
    posts = [{**_view(sb, post), "replies": [_view(sb, r) for r in messages if r.reply_to_id == post.id]}
             for post in messages if post.reply_to_id is None]
    return web.json_response({"team_id": team.id, "channel_id": channel.id, "channel": channel.display_name,
                              "messages": posts})


@_handler
async def post_channel_message(request: web.Request) -> web.Response:
    """`{"from", "team_id", "channel_id", "text", "html"?, "mentions"?, "reply_to"?}`: a post, or with
    `reply_to` (a root post's id) a reply in its thread; `mentions` (UPNs or ids) become @mentions."""
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    sender = _user(sb, _text(data, "from"), "from")
    team = _team(sb, _text(data, "team_id"))
    channel = _channel(team, _text(data, "channel_id"))
    if sender.id not in team.member_ids:
        raise ControlError(400, f"from: '{sender.upn}' is not a member of team '{team.display_name}'")
    text = _text(data, "text")
    content, content_type, mentions = text, "html" if data.get("html") is True else "text", []
    if data.get("mentions") is not None:
        content, mentions = _mentioning(sb, data["mentions"], text, content_type)
        content_type = "html"
    root = None
    if data.get("reply_to") is not None:
        try:
            root = store.find_post(sb, channel, str(data["reply_to"]))
        except GraphError as exc:
            raise ControlError(404, f"reply_to: no root post '{data['reply_to']}' in that channel (replies "
                                    "to replies do not exist in Teams)") from exc
    msg = store.post_channel_message(sb, team, channel, sender.id, content, content_type, mentions, reply_to=root)
    return web.json_response({"message_id": msg.id, "team_id": team.id, "channel_id": channel.id,
                              "reply_to": msg.reply_to_id}, status=201)


def _target(request: web.Request) -> tuple[SandboxState, Team, Channel, ChannelMessage]:
    sb = request.app[SANDBOX_KEY]
    team = _team(sb, request.match_info["team_id"])
    channel = _channel(team, request.match_info["channel_id"])
    try:
        return sb, team, channel, store.find_message(sb, channel, request.match_info["message_id"])
    except GraphError as exc:
        raise ControlError(404, f"no message '{request.match_info['message_id']}' in that channel") from exc


def _changed(sb: SandboxState, msg: ChannelMessage) -> web.Response:
    return web.json_response({"message_id": msg.id, "reply_to": msg.reply_to_id, **changes_view(sb, msg)})


@_handler
async def edit_message(request: web.Request) -> web.Response:
    """`{"text", "html"?}`: the author edits a post or a reply."""
    sb, team, channel, msg = _target(request)
    data = await _body(request)
    text = _text(data, "text")
    try:
        store.edit_channel_message(sb, team, channel, msg, text, "html" if data.get("html") is True else "text")
    except GraphError as exc:
        raise ControlError(exc.status, exc.message) from exc
    return _changed(sb, msg)


@_handler
async def delete_message(request: web.Request) -> web.Response:
    """`{"from"}`: the author soft-deletes a post or a reply (anyone else: 403)."""
    sb, team, channel, msg = _target(request)
    user = _user(sb, _text(await _body(request), "from"), "from")
    try:
        store.soft_delete_channel_message(sb, team, channel, msg, user.id)
    except GraphError as exc:
        raise ControlError(exc.status, exc.message) from exc
    return _changed(sb, msg)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/_sandbox/teams", create_team),
        web.get("/_sandbox/teams", list_teams),
        web.post("/_sandbox/teams/{team_id}/channels", create_channel),
        web.post("/_sandbox/teams/{team_id}/members", add_member),
        web.delete("/_sandbox/teams/{team_id}/members/{member}", remove_member),
        web.get("/_sandbox/teams/{team_id}/channels/{channel_id}/messages", channel_messages),
        web.post("/_sandbox/channel-messages", post_channel_message),
        web.post("/_sandbox/channel-messages/{team_id}/{channel_id}/{message_id}/edit", edit_message),
        web.post("/_sandbox/channel-messages/{team_id}/{channel_id}/{message_id}/delete", delete_message),
    ]
