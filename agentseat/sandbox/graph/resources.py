"""Graph JSON for the sandbox's resources, shared by routes and rich notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..clock import iso
from ..tenant import Chat, ChatMessage, MailMessage, Reaction, User

if TYPE_CHECKING:
    from ..state import SandboxState


def identity(user: User | None, fallback_id: str = "") -> dict[str, Any]:
    if user is None:
        return {"id": fallback_id, "displayName": None, "userIdentityType": "aadUser"}
    return {
        "@odata.type": "#microsoft.graph.teamworkUserIdentity",
        "id": user.id,
        "displayName": user.display_name,
        "userIdentityType": "aadUser",
        "tenantId": None,
    }


def user_json(sb: SandboxState, user: User) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.agentUser" if user.kind == "agentUser" else "#microsoft.graph.user",
        "id": user.id,
        "userPrincipalName": user.upn,
        "displayName": user.display_name,
        "mail": user.mail,
        "accountEnabled": user.account_enabled,
        "usageLocation": user.usage_location or None,
        **({"identityParentId": user.identity_parent_id} if user.kind == "agentUser" else {}),
    }


def chat_message_json(sb: SandboxState, msg: ChatMessage) -> dict[str, Any]:
    """A chatMessage as `GET /chats/{id}/messages` and rich notifications carry it."""
    user = sb.tenant.users.get(msg.from_id)
    return {
        "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#chats('{msg.chat_id}')/messages/$entity",
        "id": msg.id,
        "replyToId": None,
        "etag": msg.id,
        "messageType": "message",
        "createdDateTime": iso(msg.created),
        "lastModifiedDateTime": iso(msg.last_modified),
        "lastEditedDateTime": iso(msg.edited) if msg.edited is not None else None,
        "deletedDateTime": iso(msg.deleted) if msg.deleted is not None else None,
        "subject": None,
        "summary": None,
        "chatId": msg.chat_id,
        "importance": "normal",
        "locale": "en-us",
        "webUrl": None,
        "channelIdentity": None,
        "policyViolation": None,
        "eventDetail": None,
        "from": {"application": None, "device": None, "user": identity(user, msg.from_id)},
        # A soft-deleted message keeps its place in the chat with an empty body (its content is
        # kept here only so undoSoftDelete can bring it back).
        "body": {"contentType": msg.content_type, "content": "" if msg.deleted is not None else msg.content},
        "attachments": [dict(a) for a in msg.attachments],
        "mentions": [dict(m) for m in msg.mentions],
        "reactions": [reaction_json(sb, r) for r in msg.reactions],
    }


#: chatMessageReaction: the backward-compatible reaction types, and the names Teams shows for them.
LEGACY_REACTION_NAMES = {"like": "Like", "heart": "Heart", "laugh": "Laugh", "surprised": "Surprised",
                         "sad": "Sad", "angry": "Angry"}


def reaction_json(sb: SandboxState, reaction: Reaction) -> dict[str, Any]:
    """A chatMessageReaction: type, time, and the user as a chatMessageReactionIdentitySet."""
    return {
        "reactionType": reaction.reaction_type,
        "displayName": LEGACY_REACTION_NAMES.get(reaction.reaction_type),
        "reactionContentUrl": None,
        "createdDateTime": iso(reaction.created),
        "user": {"application": None, "device": None,
                 "user": identity(sb.tenant.users.get(reaction.user_id), reaction.user_id)},
    }


def chat_json(sb: SandboxState, chat: Chat, *, expand_preview: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": chat.id,
        "topic": chat.topic,
        "createdDateTime": iso(chat.created),
        "lastUpdatedDateTime": iso(chat.last_updated or chat.created),
        "chatType": chat.chat_type,
        "webUrl": f"https://teams.microsoft.com/l/chat/{chat.id}/0",
        "tenantId": sb.tenant.tenant_id,
        "onlineMeetingInfo": None,
        "viewpoint": None,
    }
    if expand_preview:
        messages = sb.tenant.messages.get(chat.id) or []
        last = messages[-1] if messages else None
        body["lastMessagePreview@odata.context"] = (
            f"https://graph.microsoft.com/v1.0/$metadata#chats('{chat.id}')/lastMessagePreview/$entity"
        )
        body["lastMessagePreview"] = None if last is None else {
            "id": last.id,
            "createdDateTime": iso(last.created),
            "isDeleted": last.deleted is not None,
            "messageType": "message",
            "eventDetail": None,
            "body": {"contentType": last.content_type,
                     "content": "" if last.deleted is not None else last.content[:200]},
            "from": {"application": None, "device": None,
                     "user": identity(sb.tenant.users.get(last.from_id), last.from_id)},
        }
    return body


def mail_json(sb: SandboxState, msg: MailMessage, select: list[str] | None = None) -> dict[str, Any]:
    """A message resource; `select` (case-insensitive names) trims it as `$select` does."""
    recipients = [{"emailAddress": {"address": a, "name": _name(sb, a)}} for a in msg.to]
    full: dict[str, Any] = {
        "@odata.etag": f'W/"{msg.id[-16:]}"',
        "id": msg.id,
        "createdDateTime": iso(msg.received),
        "lastModifiedDateTime": iso(msg.received),
        "receivedDateTime": iso(msg.received),
        "sentDateTime": iso(msg.received),
        "hasAttachments": False,
        "internetMessageId": msg.internet_message_id,
        "subject": msg.subject,
        "bodyPreview": " ".join(msg.body.split())[:255],
        "importance": "normal",
        "parentFolderId": msg.folder,
        "conversationId": msg.conversation_id,
        "isRead": msg.is_read,
        "isDraft": False,
        "body": {"contentType": msg.body_type, "content": msg.body},
        "sender": {"emailAddress": {"name": msg.from_name, "address": msg.from_address}},
        "from": {"emailAddress": {"name": msg.from_name, "address": msg.from_address}},
        "toRecipients": recipients,
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
    }
    if not select:
        return full
    wanted = {s.strip().lower() for s in select if s.strip()}
    picked = {k: v for k, v in full.items() if k.lower() in wanted}
    return {"@odata.etag": full["@odata.etag"], "id": msg.id, **picked}


def _name(sb: SandboxState, address: str) -> str:
    user = sb.tenant.user(address)
    return user.display_name if user else address
