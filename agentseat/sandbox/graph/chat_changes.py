"""Changing a stored chat message as its author: an edit or a soft delete, and the change notification.

What Graph does when a person edits or deletes a message in Teams: the message keeps its id and
`createdDateTime`; an edit sets `lastEditedDateTime` (and `lastModifiedDateTime`), a soft delete
sets `deletedDateTime` (chatMessage resource; chatmessage-update, chatmessage-softdelete). Each is
announced to the subscriptions that asked for that change type: `updated` with the message as it
now is, `deleted` with the id only (teams-changenotifications-chatmessage; payloads.py).

It owns the state change and the hand-off to the delivery engine, not the HTTP routes that call
it (the Graph PATCH/softDelete routes and the control API).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import Chat, ChatMessage

__all__ = ["ChangeError", "edit_chat_message", "find_chat_message", "soft_delete_chat_message"]

log = structlog.get_logger(__name__)


class ChangeError(Exception):
    """A change the tenant refuses; `status` is the HTTP status a route answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def find_chat_message(sb: SandboxState, chat_id: str, message_id: str) -> tuple[Chat, ChatMessage]:
    chat = sb.tenant.chats.get(chat_id)
    if chat is None:
        raise ChangeError(404, f"no chat '{chat_id}'")
    for msg in sb.tenant.messages.get(chat.id, []):
        if msg.id == message_id:
            return chat, msg
    raise ChangeError(404, f"no message '{message_id}' in chat '{chat_id}'")


def _changed_at(sb: SandboxState, msg: ChatMessage) -> float:
    # Strictly later than the last change: a watermark at the old lastModifiedDateTime must see it.
    return max(sb.clock.now(), msg.last_modified + 0.001)


def edit_chat_message(sb: SandboxState, chat: Chat, msg: ChatMessage, content: str,
                      content_type: str = "text") -> int:
    """Replace the body; `updated` goes to subscribers of that change type. Returns notifications queued."""
    if msg.deleted is not None:
        raise ChangeError(400, f"message '{msg.id}' is deleted; it cannot be edited")
    now = _changed_at(sb, msg)
    msg.content, msg.content_type = content, content_type
    msg.edited = msg.last_modified = now
    sb.mark_dirty()
    log.info("chat_message_edited", chat=chat.id, message=msg.id)
    return sb.delivery.chat_message(chat, msg, "updated")


def soft_delete_chat_message(sb: SandboxState, chat: Chat, msg: ChatMessage) -> int:
    """Mark the message deleted; `deleted` goes to subscribers of that change type. Returns notifications
    queued (0 when it was deleted already: softDelete of a deleted message changes nothing)."""
    if msg.deleted is not None:
        return 0
    now = _changed_at(sb, msg)
    msg.deleted = msg.last_modified = now
    sb.mark_dirty()
    log.info("chat_message_deleted", chat=chat.id, message=msg.id)
    return sb.delivery.chat_message(chat, msg, "deleted")
