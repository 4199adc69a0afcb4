"""Team channel data in the tenant: making teams, finding what a caller may reach, posting.

Shared by the Graph routes and the control API, so a post made either way is stored
and notified alike. Membership rules: a team's channels and messages are for its
members (standard channels: every team member is in them); an unknown team, channel
or message is 404 and a team the caller is not in is 403 (channel-list-messages,
"Microsoft Teams service admins can access teams that they aren't a member of" is not emulated).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from ...tenant import Channel, ChannelMessage, Team
from ..query import GraphError

if TYPE_CHECKING:
    from ...state import SandboxState

log = structlog.get_logger(__name__)

GENERAL = "General"


def new_channel_id() -> str:
    """Graph's standard channel id shape: `19:{32 hex}@thread.tacv2` (channel-list example)."""
    return f"19:{uuid.uuid4().hex}@thread.tacv2"


def create_team(sb: SandboxState, name: str, member_ids: list[str], description: str | None = None) -> Team:
    """A team with its General channel, which every team has and which cannot be removed."""
    members = list(dict.fromkeys(member_ids))
    for uid in members:
        if uid not in sb.tenant.users:
            raise KeyError(uid)
    now = sb.clock.now()
    general = Channel(id=new_channel_id(), display_name=GENERAL, created=now, description=description)
    team = Team(id=str(uuid.uuid4()), display_name=name, member_ids=members, created=now, description=description,
                channels=[general])
    sb.tenant.teams[team.id] = team
    sb.tenant.channel_messages[general.id] = []
    sb.mark_dirty()
    log.info("team_created", team=team.id, members=len(members))
    return team


def add_channel(sb: SandboxState, team: Team, name: str, description: str | None = None) -> Channel:
    channel = Channel(id=new_channel_id(), display_name=name, created=sb.clock.now(), description=description)
    team.channels.append(channel)
    sb.tenant.channel_messages[channel.id] = []
    sb.mark_dirty()
    log.info("channel_created", team=team.id, channel=channel.id)
    return channel


def team_for(sb: SandboxState, team_id: str, viewer: str | None) -> Team:
    """The team if `viewer` (None: an app-only caller) may see it; 404 unknown, 403 not a member."""
    team = sb.tenant.teams.get(team_id)
    if team is None:
        raise GraphError(404, "NotFound", f"No team found with Group Id {team_id}")
    if viewer is not None and viewer not in team.member_ids:
        raise GraphError(403, "Forbidden", "Forbidden: the signed-in user is not a member of this team.")
    return team


def channel_for(sb: SandboxState, team_id: str, channel_id: str, viewer: str | None) -> tuple[Team, Channel]:
    team = team_for(sb, team_id, viewer)
    channel = team.channel(channel_id)
    if channel is None:
        raise GraphError(404, "NotFound", f"Channel '{channel_id}' was not found in team '{team_id}'.")
    return team, channel


def thread(sb: SandboxState, channel: Channel) -> list[ChannelMessage]:
    return sb.tenant.channel_messages.setdefault(channel.id, [])


def find_post(sb: SandboxState, channel: Channel, message_id: str) -> ChannelMessage:
    """A root post of the channel; a reply's id is not a post (chatmessage-get on a channel)."""
    for msg in thread(sb, channel):
        if msg.id == message_id and msg.reply_to_id is None:
            return msg
    raise GraphError(404, "NotFound", f"Message {message_id} was not found in this channel.")


def replies_of(sb: SandboxState, channel: Channel, root: ChannelMessage) -> list[ChannelMessage]:
    return [m for m in thread(sb, channel) if m.reply_to_id == root.id]


def find_reply(sb: SandboxState, channel: Channel, root: ChannelMessage, reply_id: str) -> ChannelMessage:
    for msg in replies_of(sb, channel, root):
        if msg.id == reply_id:
            return msg
    raise GraphError(404, "NotFound", f"Reply {reply_id} was not found under message {root.id}.")


def _next_id(sb: SandboxState, now: float) -> int:
    """Epoch milliseconds, as Graph's channel message ids are ("1616990171266"), unique and rising
    across chats and channels alike."""
    last = max((int(msgs[-1].id) for store in (sb.tenant.messages, sb.tenant.channel_messages)
                for msgs in store.values() if msgs), default=0)
    return max(int(now * 1000), last + 1)


def post_channel_message(sb: SandboxState, team: Team, channel: Channel, from_id: str, content: str,
                         content_type: str = "text", mentions: list[dict[str, Any]] | None = None,
                         attachments: list[dict[str, Any]] | None = None,
                         reply_to: ChannelMessage | None = None,
                         prepare: Callable[[ChannelMessage], None] | None = None) -> ChannelMessage:
    """Store a post (or, with `reply_to`, a reply in its thread) and hand it to delivery (non-blocking).
    `prepare` finishes the message once it has its id (hosted contents' URLs name it)."""
    now = sb.clock.now()
    number = _next_id(sb, now)
    created = max(now, number / 1000)  # the id and createdDateTime agree, as in Graph
    msg = ChannelMessage(id=str(number), chat_id=channel.id, from_id=from_id, content=content,
                         content_type=content_type, created=created, last_modified=created,
                         mentions=list(mentions or []), attachments=list(attachments or []), team_id=team.id,
                         reply_to_id=reply_to.id if reply_to is not None else None)
    if prepare is not None:
        prepare(msg)
    thread(sb, channel).append(msg)
    sb.mark_dirty()
    sb.delivery.channel_message(team, channel, msg)  # enqueues only: a slow webhook never slows the sender
    log.info("channel_message_posted", team=team.id, channel=channel.id, message=msg.id,
             reply=reply_to is not None)
    return msg


def channel_message_url(graph_url: str, msg: ChannelMessage) -> str:
    """Where a channel message lives in Graph: a reply sits under its root post's `/replies`."""
    base = f"{graph_url}/teams/{msg.team_id}/channels/{msg.chat_id}/messages"
    return f"{base}/{msg.reply_to_id}/replies/{msg.id}" if msg.reply_to_id else f"{base}/{msg.id}"


# --- changes after sending (the control API's edit and delete) ------------------------------------------------
def find_message(sb: SandboxState, channel: Channel, message_id: str) -> ChannelMessage:
    """A post or a reply of the channel, by id."""
    for msg in thread(sb, channel):
        if msg.id == message_id:
            return msg
    raise GraphError(404, "NotFound", f"Message {message_id} was not found in this channel.")


def _touch(sb: SandboxState, msg: ChannelMessage) -> float:
    # Strictly later than the last change, so a poller's lastModifiedDateTime watermark sees it.
    now = max(sb.clock.now(), msg.last_modified + 0.001)
    msg.last_modified = now
    sb.mark_dirty()
    return now


def edit_channel_message(sb: SandboxState, team: Team, channel: Channel, msg: ChannelMessage, content: str,
                         content_type: str) -> ChannelMessage:
    """The sender replaces the body: an `updated` change (chatmessage-update)."""
    if msg.deleted is not None:
        raise GraphError(400, "BadRequest", "A deleted message cannot be edited.")
    msg.content, msg.content_type = content, content_type
    msg.edited = _touch(sb, msg)
    sb.delivery.channel_message(team, channel, msg, "updated")
    log.info("channel_message_edited", team=team.id, channel=channel.id, message=msg.id)
    return msg


def soft_delete_channel_message(sb: SandboxState, team: Team, channel: Channel, msg: ChannelMessage,
                                user_id: str) -> ChannelMessage:
    """The sender deletes (chatmessage-softdelete): a `deleted` change; the message keeps its place."""
    if msg.from_id != user_id:
        raise GraphError(403, "Forbidden", "Forbidden: only the sender of a message can delete it.")
    if msg.deleted is None:
        msg.deleted = _touch(sb, msg)
        sb.delivery.channel_message(team, channel, msg, "deleted")
        log.info("channel_message_deleted", team=team.id, channel=channel.id, message=msg.id)
    return msg
