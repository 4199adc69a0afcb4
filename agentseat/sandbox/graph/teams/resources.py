"""Graph JSON for teams, channels and channel messages (routes and rich notifications share it).

A channel message is a chatMessage as chats return it (graph/resources.py), with the channel's
fields: `channelIdentity {teamId, channelId}`, `replyToId` (the root post's id for a reply),
`chatId: null` and a Teams `webUrl` (chatmessage-post-replies and channel-post-messages examples).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ...clock import iso
from ..resources import chat_message_json

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import Channel, ChannelMessage, Team

_GRAPH = "https://graph.microsoft.com/v1.0/$metadata#"


def team_json(sb: SandboxState, team: Team) -> dict[str, Any]:
    """A team as joinedTeams returns it: "only the id, displayName, description, isArchived and
    tenantId properties are populated. All other properties are returned as null" (user-list-joinedteams)."""
    return {
        "id": team.id, "createdDateTime": None, "displayName": team.display_name, "description": team.description,
        "internalId": None, "classification": None, "specialization": None, "visibility": None, "webUrl": None,
        "isArchived": False, "tenantId": sb.tenant.tenant_id, "isMembershipLimitedToOwners": None,
        "memberSettings": None, "guestSettings": None, "messagingSettings": None, "funSettings": None,
        "discoverySettings": None, "summary": None,
    }


def channel_json(sb: SandboxState, team: Team, channel: Channel) -> dict[str, Any]:
    """A channel (channel-list, channel-get examples)."""
    return {
        "id": channel.id,
        "createdDateTime": iso(channel.created),
        "displayName": channel.display_name,
        "description": channel.description,
        "isFavoriteByDefault": None,
        "email": "",
        "tenantId": sb.tenant.tenant_id,
        "webUrl": (f"https://teams.microsoft.com/l/channel/{quote(channel.id, safe='')}/"
                   f"{quote(channel.display_name)}?groupId={team.id}&tenantId={sb.tenant.tenant_id}"),
        "membershipType": channel.membership_type,
        "isArchived": False,
    }


def message_path(msg: ChannelMessage) -> str:
    """The OData path of a post or a reply, as change notifications and `@odata.context` name it:
    `teams('{t}')/channels('{c}')/messages('{m}')`, and `.../messages('{root}')/replies('{r}')` for
    a reply (changeNotification resource example)."""
    base = f"teams('{msg.team_id}')/channels('{msg.chat_id}')/messages"
    if msg.reply_to_id is None:
        return f"{base}('{msg.id}')"
    return f"{base}('{msg.reply_to_id}')/replies('{msg.id}')"


def channel_message_json(sb: SandboxState, msg: ChannelMessage) -> dict[str, Any]:
    """A channel post or reply as a chatMessage, with its `@odata.context` entity."""
    body = chat_message_json(sb, msg)
    root = msg.reply_to_id or msg.id
    context_path = (f"teams('{msg.team_id}')/channels('{quote(msg.chat_id, safe='')}')/messages"
                    + (f"('{msg.reply_to_id}')/replies/$entity" if msg.reply_to_id else "/$entity"))
    body.update({
        "@odata.context": _GRAPH + context_path,
        "replyToId": msg.reply_to_id,
        "chatId": None,
        "channelIdentity": {"teamId": msg.team_id, "channelId": msg.chat_id},
        "webUrl": (f"https://teams.microsoft.com/l/message/{quote(msg.chat_id, safe='')}/{msg.id}?groupId="
                   f"{msg.team_id}&tenantId={sb.tenant.tenant_id}&createdTime={msg.id}&parentMessageId={root}"),
    })
    return body


def item(sb: SandboxState, msg: ChannelMessage) -> dict[str, Any]:
    """A channel message as a collection item: the collection carries the `@odata.context`."""
    body = channel_message_json(sb, msg)
    body.pop("@odata.context", None)
    return body
