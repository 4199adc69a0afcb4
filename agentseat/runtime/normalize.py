"""Turning Graph resources (a chatMessage, a mail message) into inbox Events.

One place for the rules: HTML becomes plain text, the sender is resolved, trust
is decided from the sponsor list, and system or empty messages are skipped.
Webhook and poller both call these, so an event looks the same whichever way
it arrived (and dedupes by the same key).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..attachments import shared_links
from ..attachments.inbound import listing as attachment_listing
from .events import attachments_json
from .inbox import Event, Source

_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"(?i)<\s*(br|/p|/div|/li|/tr|/h[1-6])\s*/?>")
_IMG = re.compile(r"(?i)<img[^>]*\bsrc=\"([^\"]+)\"[^>]*>")
_LINK = re.compile(r"(?i)<a[^>]*\bhref=\"([^\"]+)\"[^>]*>(.*?)</a>", re.S)
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _image_text(match: re.Match[str]) -> str:
    # A pasted image (hostedContents) is an attachment the event lists by id; its Graph URL in the
    # text would only invite a fetch without the token rules of download_attachment.
    return " [image] " if "/hostedContents/" in match.group(1) else f" [image: {match.group(1)}] "


def html_to_text(content: str) -> str:
    """Plain text from Teams/Outlook HTML: links and images kept as text, tags dropped."""
    text = _IMG.sub(_image_text, content)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2).strip() != m.group(1) else m.group(1), text)
    text = _BREAK.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def body_text(body: dict[str, Any] | None) -> str:
    if not body:
        return ""
    content = str(body.get("content") or "")
    return html_to_text(content) if str(body.get("contentType", "")).lower() == "html" else content.strip()


@dataclass
class TrustPolicy:
    """Who is a sponsor, who is a colleague; and who is the agent itself."""

    tenant_id: str = ""
    sponsor_ids: set[str] = field(default_factory=set)  # object ids, lowercase
    sponsor_names: set[str] = field(default_factory=set)  # UPNs / mail, lowercase
    own_ids: set[str] = field(default_factory=set)  # the agent's id and UPN, lowercase
    domains: set[str] = field(default_factory=set)  # the tenant's mail domains, lowercase

    def trust(self, sender_id: str, sender_upn: str, sender_tenant: str | None = None) -> str:
        sid, upn = sender_id.lower(), sender_upn.lower()
        if (sid and sid in self.sponsor_ids) or (upn and upn in self.sponsor_names):
            return "sponsor"
        if sender_tenant and self.tenant_id and sender_tenant != self.tenant_id:
            return "external"
        if sid or upn.rpartition("@")[2] in self.domains:
            return "colleague"
        return "external"

    def is_own(self, sender_id: str, sender_upn: str = "") -> bool:
        return bool({sender_id.lower(), sender_upn.lower()} & self.own_ids - {""})


def _graph_id(value: Any) -> str:
    """A Graph id is a string; a number or an object in its place names nothing ("")."""
    return value if isinstance(value, str) else ""


def chat_type_of(chat_id: str) -> str:
    """The chatType a chat id shows, or "" when its shape is not one Graph documents.

    The chat resource page's examples: one-on-one chats are `19:{a}_{b}@unq.gbl.spaces`, meeting
    chats `19:meeting_{...}@thread.v2`, group chats `19:{...}@thread.v2`. A chatMessage carries no
    chatType, and reading each chat from Graph would cost a request per event; an unknown shape
    reads as "" and is pushed as a one-on-one would be, the side that never loses a message.
    """
    low = chat_id.lower()
    if low.endswith("@unq.gbl.spaces"):
        return "oneOnOne"
    if low.endswith("@thread.v2"):
        return "meeting" if low.startswith("19:meeting_") else "group"
    return ""


def mentions_agent(message: dict[str, Any], policy: TrustPolicy) -> bool:
    """Whether the chatMessage's `mentions` name the agent's user (chatMessageMention.mentioned.user.id)."""
    mentions = message.get("mentions")
    if not isinstance(mentions, list):
        return False
    for mention in mentions:
        mentioned = mention.get("mentioned") if isinstance(mention, dict) else None
        user = mentioned.get("user") if isinstance(mentioned, dict) else None
        if isinstance(user, dict) and policy.is_own(_graph_id(user.get("id"))):
            return True
    return False


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def chat_message_event(message: dict[str, Any], policy: TrustPolicy, *, source: Source, confirmed: bool,
                       chat_id: str | None = None) -> Event | None:
    """An Event from a Graph chatMessage, or None for system messages, our own, or empty ones.

    `confirmed`: the chatMessage was read from Graph with the agent's token, not taken
    from a notification's resource data (which anyone holding the certificate can forge).
    """
    if message.get("messageType", "message") != "message" or message.get("deletedDateTime"):
        return None
    who = _chat_message_fields(message, policy, chat_id)
    if who is None:
        return None
    return Event.teams(**who, text=body_text(message.get("body")),
                       created_at=str(message.get("createdDateTime") or _now_iso()), source=source, confirmed=confirmed)


def _chat_message_fields(message: dict[str, Any], policy: TrustPolicy, chat_id: str | None) -> dict[str, Any] | None:
    """Who wrote a chatMessage, where, and whether it names the agent; None for our own or a
    message without a sender, chat or id."""
    user = ((message.get("from") or {}).get("user")) or {}
    sender_id = _graph_id(user.get("id"))
    if not sender_id or policy.is_own(sender_id):
        return None
    chat = chat_id or _graph_id(message.get("chatId"))
    message_id = _graph_id(message.get("id"))
    if not chat or not message_id:
        return None
    return {"chat_id": chat, "message_id": message_id, "sender_id": sender_id,
            "sender_upn": str(user.get("userPrincipalName") or ""), "sender_name": str(user.get("displayName") or ""),
            "trust": policy.trust(sender_id, "", user.get("tenantId")), "chat_type": chat_type_of(chat),
            "mentioned": mentions_agent(message, policy),
            # What download_attachment can fetch: hostedContents images, file references, cards.
            "attachments": attachments_json(attachment_listing(message))}


def chat_change_event(message: dict[str, Any], policy: TrustPolicy, *, source: Source, confirmed: bool,
                      chat_id: str | None = None) -> Event | None:
    """A `teams_delete` (deletedDateTime set) or `teams_edit` (lastEditedDateTime set) Event from a
    chatMessage, or None when it is neither (a reaction changes lastModifiedDateTime only), a
    system message, or the agent's own (its own edits and deletions never become events).

    chatMessage resource: `lastEditedDateTime` is "null if the message has never been edited";
    `deletedDateTime` is "null if the message has not been deleted".
    """
    if message.get("messageType", "message") != "message":
        return None
    deleted, edited = message.get("deletedDateTime"), message.get("lastEditedDateTime")
    if not (isinstance(deleted, str) and deleted) and not (isinstance(edited, str) and edited):
        return None
    who = _chat_message_fields(message, policy, chat_id)
    if who is None:
        return None
    kind = "teams_delete" if isinstance(deleted, str) and deleted else "teams_edit"
    if kind == "teams_delete":
        who["attachments"] = ""  # a deleted message has nothing left to download
    return Event.change(
        kind,  # type: ignore[arg-type]
        **who,
        text="" if kind == "teams_delete" else body_text(message.get("body")),
        changed_at=str(deleted if kind == "teams_delete" else edited),
        source=source,
        confirmed=confirmed,
    )


def chat_message_events(message: dict[str, Any], policy: TrustPolicy, *, source: Source, confirmed: bool,
                        chat_id: str | None = None) -> list[Event]:
    """Everything a chatMessage read from Graph says: the message itself (unless deleted; the inbox
    dedupes it when known) and then its latest edit or its deletion. The webhook and the poller
    both read messages this way, so an edit seen both ways is one event."""
    events = [chat_message_event(message, policy, source=source, confirmed=confirmed, chat_id=chat_id),
              chat_change_event(message, policy, source=source, confirmed=confirmed, chat_id=chat_id)]
    return [e for e in events if e is not None]


def mail_event(message: dict[str, Any], policy: TrustPolicy, *, source: Source,
               sender_id: str = "", graph_host: str = "") -> Event | None:
    """An Event from a Graph message (it must carry `body`; rich notifications never do). With
    `graph_host`, the Microsoft 365 file links in its body (a sharing notice's) are its attachments."""
    address = (((message.get("from") or message.get("sender") or {}).get("emailAddress")) or {})
    upn = str(address.get("address") or "")
    if not message.get("id") or policy.is_own(sender_id, upn):
        return None
    return Event.mail(
        message_id=str(message["id"]),
        sender_id=sender_id,
        sender_upn=upn,
        sender_name=str(address.get("name") or ""),
        trust=policy.trust(sender_id, upn),  # type: ignore[arg-type]
        text=body_text(message.get("body")) or str(message.get("bodyPreview") or ""),
        subject=str(message.get("subject") or ""),
        created_at=str(message.get("receivedDateTime") or _now_iso()),
        source=source,
        confirmed=True,  # a mail body is only ever read from Graph (rich mail notifications carry none)
        attachments=attachments_json(shared_links.listing(message.get("body"), graph_host)),
    )
