"""Which accepted Graph writes are the agent speaking, and what each one said.

Every send path (tools, the bot, access codes, permission answers) goes through the
`GraphClient`; after Graph accepts a write it hands (method, route, body sent, body
returned) to its observers, and this module says whether that was a message and which.
A pure function over Graph's routes (chatmessage-post, chatmessage-update,
chatmessage-softdelete, chatmessage-setreaction, user-sendmail, message-reply,
channel-post-messages, chatmessage-post-replies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ..runtime.normalize import body_text

__all__ = ["Outbound", "outbound"]

_SEG = r"([^/]+)"
_CHAT_POST = re.compile(rf"^/(?:me/)?chats/{_SEG}/messages$")
_CHAT_ITEM = re.compile(rf"^/(?:me/)?chats/{_SEG}/messages/{_SEG}$")
_CHAT_REACT = re.compile(rf"^/(?:me/)?chats/{_SEG}/messages/{_SEG}/(setReaction|unsetReaction)$")
_CHAT_DELETE = re.compile(rf"^/users/{_SEG}/chats/{_SEG}/messages/{_SEG}/softDelete$")
_CHANNEL_POST = re.compile(rf"^/teams/{_SEG}/channels/{_SEG}/messages$")
_CHANNEL_REPLY = re.compile(rf"^/teams/{_SEG}/channels/{_SEG}/messages/{_SEG}/replies$")
_CHANNEL_ITEM = re.compile(rf"^/teams/{_SEG}/channels/{_SEG}/messages/{_SEG}(?:/replies/{_SEG})?$")
_MAIL_SEND = re.compile(r"^/(?:me|users/[^/]+)/sendMail$")
_MAIL_REPLY = re.compile(rf"^/(?:me|users/[^/]+)/messages/{_SEG}/(reply|replyAll|forward)$")


@dataclass(frozen=True)
class Outbound:
    """One thing the agent said or did to a message."""

    action: str  # send | reply | edit | delete | react | unreact
    medium: str  # teams | channel | mail
    chat_id: str = ""  # the chat or channel id; "" for mail
    thread_id: str = ""  # a channel reply's root post, or the mail replied to
    message_id: str = ""
    recipients: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""


def _addresses(items: Any) -> tuple[str, ...]:
    out: list[str] = []
    for item in items if isinstance(items, list) else []:
        address = ((item or {}).get("emailAddress") or {}).get("address") if isinstance(item, dict) else None
        if address:
            out.append(str(address))
    return tuple(out)


def _body(sent: Any) -> str:
    return body_text(sent.get("body")) if isinstance(sent, dict) and isinstance(sent.get("body"), dict) else ""


def _id(returned: Any) -> str:
    return str(returned.get("id") or "") if isinstance(returned, dict) else ""


def outbound(method: str, route: str, sent: Any, returned: Any) -> Outbound | None:
    """The message this accepted write was, or None when it was not one (a read, a chat, a file)."""
    method, path = method.upper(), unquote(route.split("?", 1)[0]).rstrip("/")
    if method == "POST":
        if m := _CHAT_POST.match(path):
            return Outbound("send", "teams", m[1], message_id=_id(returned), text=_body(sent))
        if m := _CHAT_REACT.match(path):
            kind = str((sent or {}).get("reactionType", "")) if isinstance(sent, dict) else ""
            return Outbound("react" if m[3] == "setReaction" else "unreact", "teams", m[1], message_id=m[2], text=kind)
        if m := _CHAT_DELETE.match(path):
            return Outbound("delete", "teams", m[2], message_id=m[3])
        if m := _CHANNEL_POST.match(path):
            return Outbound("send", "channel", m[2], message_id=_id(returned), text=_body(sent))
        if m := _CHANNEL_REPLY.match(path):
            return Outbound("reply", "channel", m[2], thread_id=m[3], message_id=_id(returned), text=_body(sent))
        if _MAIL_SEND.match(path):
            message = (sent or {}).get("message") or {} if isinstance(sent, dict) else {}
            to = sum((_addresses(message.get(k)) for k in ("toRecipients", "ccRecipients", "bccRecipients")), ())
            return Outbound("send", "mail", recipients=to, subject=str(message.get("subject") or ""),
                            text=_body(message))
        if m := _MAIL_REPLY.match(path):
            comment = str((sent or {}).get("comment") or "") if isinstance(sent, dict) else ""
            return Outbound("reply", "mail", thread_id=m[1], text=comment.strip())
    if method == "PATCH":
        if m := _CHAT_ITEM.match(path):
            return Outbound("edit", "teams", m[1], message_id=m[2], text=_body(sent))
        if m := _CHANNEL_ITEM.match(path):
            return Outbound("edit", "channel", m[2], thread_id=m[3] if m[4] else "", message_id=m[4] or m[3],
                            text=_body(sent))
    return None
