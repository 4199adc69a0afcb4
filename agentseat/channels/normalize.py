"""Channel chatMessages and notification resources, as inbox Events and ids.

A channel post or reply is a chatMessage with `channelIdentity: {teamId, channelId}` and
`replyToId` (null for a root post, the root's id for a reply; chatmessage resource). It
becomes an Event of kind `channel` (runtime/events.py): `chat_id` holds the channel,
`thread_id` the root post of a reply. Sender, trust and the @mention of the agent follow the
chat rules (runtime/normalize.py), so a channel line is judged like a group-chat line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from ..attachments.inbound import listing as attachment_listing
from ..errors import InboxError
from ..runtime.events import Event, Source, attachments_json
from ..runtime.normalize import TrustPolicy, body_text, mentions_agent

# Graph writes `teams('{t}')/channels('{c}')/messages('{m}')` and, for a reply,
# `.../messages('{root}')/replies('{r}')` (teams-changenotifications-chatmessage); the
# slash form `teams/{t}/channels/{c}/messages/{m}` is accepted too, as for chats.
_PART = r"(?:\('([^']+)'\)|/([^/('?]+))"
_RESOURCE = re.compile(rf"(?i)\bteams{_PART}/channels{_PART}/messages{_PART}(?:/replies{_PART})?")


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """The message a notification names: a root post, or (reply_id set) a reply in its thread."""

    team_id: str
    channel_id: str
    message_id: str
    reply_id: str = ""


def _pick(match: re.Match[str], n: int) -> str:
    return unquote(match.group(2 * n + 1) or match.group(2 * n + 2) or "")


def parse_resource(resource: str | None) -> ChannelRef | None:
    """The ids in a channel message notification's `resource`, or None when it names none."""
    match = _RESOURCE.search(resource or "")
    if match is None:
        return None
    team, channel, message, reply = (_pick(match, n) for n in range(4))
    if not (team and channel and message):
        return None
    return ChannelRef(team, channel, message, reply)


def _id(value: Any) -> str:
    return value if isinstance(value, str) else ""


def channel_message_event(message: dict[str, Any], policy: TrustPolicy, *, source: Source, confirmed: bool,
                          team_id: str = "", channel_id: str = "") -> Event | None:
    """An Event from a channel chatMessage, or None for system, deleted, empty or the agent's own messages.

    `team_id` and `channel_id` are where the message was read from; the message's own
    `channelIdentity` is used only when they are not given.
    """
    if message.get("messageType", "message") != "message" or message.get("deletedDateTime"):
        return None
    user = ((message.get("from") or {}).get("user")) or {}
    sender_id = _id(user.get("id"))
    if not sender_id or policy.is_own(sender_id):
        return None
    identity = message.get("channelIdentity") or {}
    team = team_id or _id(identity.get("teamId"))
    channel = channel_id or _id(identity.get("channelId"))
    message_id = _id(message.get("id"))
    if not (team and channel and message_id):
        return None
    thread = _id(message.get("replyToId"))
    return Event.channel(
        team_id=team, channel_id=channel, message_id=message_id, thread_id="" if thread == message_id else thread,
        sender_id=sender_id, sender_upn=str(user.get("userPrincipalName") or ""),
        sender_name=str(user.get("displayName") or ""),
        trust=policy.trust(sender_id, "", user.get("tenantId")),  # type: ignore[arg-type]
        text=body_text(message.get("body")),
        created_at=str(message.get("createdDateTime") or datetime.now(UTC).isoformat()),
        source=source, confirmed=confirmed, mentioned=mentions_agent(message, policy),
        # What download_attachment can fetch (hostedContents images, file references, cards), as for chats.
        attachments=attachments_json(attachment_listing(message)),
    )



def plan_item(resource: str | None, payload: dict[str, Any] | None, *, rich: bool, fallback: bool,
              policy: TrustPolicy, source: Source = "webhook") -> Event | ChannelRef | str:
    """What one `created` item of a channel subscription asks for, by the chat rules: an unconfirmed
    Event from a rich item's decrypted `payload` (the intake confirms what needs trust), the message
    to read from Graph (a basic item, or a rich one whose validation tokens failed), "ignored" (a
    system, deleted or own message, or a payload that is not the message named), or a drop reason."""
    ref = parse_resource(resource)
    if ref is None:
        return "malformed"
    if payload is None:
        # Graph sends resource data on every item of a rich subscription: one without it is not
        # Graph's, and reading what it names would spend our budget for anyone (runtime/pipeline.py).
        return "basic_on_rich" if rich and not fallback else ref
    try:
        event = channel_message_event(payload, policy, source=source, confirmed=False,
                                      team_id=ref.team_id, channel_id=ref.channel_id)
    except (InboxError, AttributeError, TypeError, ValueError, KeyError):
        return "unusable"
    if event is None or event.message_id != (ref.reply_id or ref.message_id):
        return "ignored"
    return event
