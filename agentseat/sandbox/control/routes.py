"""The sandbox's control plane under `/_sandbox/`: act as any user and steer the emulator.

JSON in and out, no authentication (it listens on loopback only, like the rest
of the sandbox). Posting chat messages and mail goes through the same helpers
as Graph, so the delivery engine notifies subscribers exactly as it would for
a real user. Subscription controls live with the subscriptions module.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from ..state import SANDBOX_KEY
from ..clock import iso
from ..faults import Faults
from ..graph.chat_message_actions import changes_view
from ..graph.chats import ensure_one_on_one, post_chat_message
from ..graph.mail import deliver_mail
from ..graph.hosted_contents import chat_message_url, store_hosted_contents
from ..graph.mentions import build_mentions
from .message_parts import PartError, attachment_view, build_parts, hosted_view

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import User

log = structlog.get_logger(__name__)

FAULT_STATUSES = (403, 404, 429, 500, 502, 503, 504)
_TAG = re.compile(r"<[^>]+>")


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _handler(fn: Any) -> Any:
    """Answer `ControlError` (and bad JSON) as `{"error": ...}` with its status."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)  # type: ignore[no-any-return]
        except ControlError as exc:
            return _error(exc.status, exc.message)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise ControlError(400, "the body must be JSON") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "the body must be a JSON object")
    return data


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ControlError(400, f"'{name}' is required and must be a non-empty string")
    return value


def _user(sb: SandboxState, ref: str, field: str) -> User:
    user = sb.tenant.user(ref)
    if user is None:
        raise ControlError(404, f"{field}: no user '{ref}' in the tenant")
    return user


def _plain(content: str, content_type: str) -> str:
    return _TAG.sub("", content) if content_type == "html" else content


def _number(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ControlError(400, f"'{name}' must be a number")
    return float(value)


# --- acting as users ----------------------------------------------------------------------------------------
@_handler
async def post_message(request: web.Request) -> web.Response:
    """`{"from", "to" | "chat_id", "text", "html"?, "mentions"?, "images"?, "files"?, "reply_to"?}`: a DM (1:1
    chat made if needed) or a post in a chat; `mentions` (UPNs or ids) become Teams @mentions, `@upn` in the
    text marking where; images, files and reply_to as Teams sends them (control/message_parts.py)."""
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    sender = _user(sb, _text(data, "from"), "from")
    extras = any(data.get(k) is not None for k in ("images", "files", "reply_to"))
    text = _text(data, "text") if not extras or data.get("text") else ""
    content_type = "html" if data.get("html") is True else "text"
    if data.get("chat_id") is not None:
        chat = sb.tenant.chats.get(str(data["chat_id"]))
        if chat is None:
            raise ControlError(404, f"chat_id: no chat '{data['chat_id']}'")
        if sender.id not in chat.member_ids:
            raise ControlError(400, f"from: '{sender.upn}' is not a member of that chat")
        created = False
    elif data.get("to") is not None:
        peer = _user(sb, _text(data, "to"), "to")
        if peer.id == sender.id:
            raise ControlError(400, "'from' and 'to' must be different users")
        chat, created = ensure_one_on_one(sb, sender.id, peer.id)
    else:
        raise ControlError(400, "give 'to' (a user, for a direct message) or 'chat_id'")
    content, mentions = text, []
    if data.get("mentions") is not None:
        content, mentions = _mentioning(sb, data["mentions"], text, content_type)
        content_type = "html"
    # --- images, files and reply_to (message_parts) ---
    try:
        parts = build_parts(sb, chat, sender, data)
    except PartError as exc:
        raise ControlError(exc.status, exc.message) from exc
    if parts.empty and not content.strip():
        raise ControlError(400, "'text' is required and must be a non-empty string")
    if not parts.empty:
        body = content if content_type == "html" else html.escape(content, quote=False)
        content, content_type = parts.before + (f"<p>{body}</p>" if body else "") + parts.after, "html"
    msg = post_chat_message(sb, chat, sender.id, content, content_type, mentions, parts.attachments,
                            prepare=lambda m: store_hosted_contents(sb, m, parts.hosted,
                                                                    chat_message_url(sb, chat.id, m.id)))
    return web.json_response({"chat_id": chat.id, "message_id": msg.id, "created": created}, status=201)


def _mentioning(sb: SandboxState, refs: Any, text: str, content_type: str) -> tuple[str, list[dict[str, Any]]]:
    """`mentions` (UPNs or ids) as Teams sends them: `<at id="n">` markers and the mentions array."""
    if not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
        raise ControlError(400, "'mentions' must be a list of UPNs or object ids")
    if content_type == "html":
        raise ControlError(400, "'mentions' builds the HTML itself: give plain 'text' without 'html'")
    users = list({u.id: u for u in (_user(sb, ref, "mentions") for ref in refs)}.values())
    return build_mentions(sb, text, users)


@_handler
async def post_mail(request: web.Request) -> web.Response:
    """`{"from", "to" (string or list), "subject", "body", "html"?}`; `from` may be outside the tenant."""
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    sender = _text(data, "from")
    to_raw = data.get("to")
    to = [to_raw] if isinstance(to_raw, str) else to_raw
    if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise ControlError(400, "'to' must be an address or a list of addresses")
    subject = data.get("subject", "")
    body = data.get("body", "")
    if not isinstance(subject, str) or not isinstance(body, str):
        raise ControlError(400, "'subject' and 'body' must be strings")
    if "@" not in sender and sb.tenant.user(sender) is None:
        raise ControlError(400, "'from' must be an address or a tenant user")
    first = next((u for a in to if (u := sb.tenant.user(a)) is not None), None)
    if first is None:
        raise ControlError(404, "to: none of the recipients has a mailbox in the tenant")
    messages = deliver_mail(sb, sender, to, subject, body, "html" if data.get("html") is True else "text")
    inbox = next(m for m in messages if m.owner_id == first.id and m.folder == "inbox")
    return web.json_response({"message_id": inbox.id, "conversation_id": inbox.conversation_id}, status=201)


# --- looking at the tenant ------------------------------------------------------------------------------------------
async def list_users(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    names: dict[str, list[str]] = {}
    for role, ref in sb.tenant.roles.items():
        names.setdefault(ref, []).append(role)
    users = [{"id": u.id, "upn": u.upn, "display_name": u.display_name, "mail": u.mail, "kind": u.kind,
              "roles": sorted(names.get(u.id, []))} for u in sb.tenant.users.values()]
    return web.json_response({"users": users})


async def list_chats(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    chats = []
    for chat in sorted(sb.tenant.chats.values(), key=lambda c: c.created):
        members = [sb.tenant.users[m].upn if m in sb.tenant.users else m for m in chat.member_ids]
        chats.append({"id": chat.id, "chat_type": chat.chat_type, "topic": chat.topic, "members": members,
                      "created": iso(chat.created), "last_updated": iso(chat.last_updated or chat.created),
                      "messages": len(sb.tenant.messages.get(chat.id, []))})
    return web.json_response({"chats": chats})


@_handler
async def chat_messages(request: web.Request) -> web.Response:
    """Oldest first, with the sender's UPN, plain text, and any edit, deletion and reactions."""
    sb = request.app[SANDBOX_KEY]
    chat_id = request.match_info["chat_id"]
    if chat_id not in sb.tenant.chats:
        raise ControlError(404, f"no chat '{chat_id}'")
    out = []
    for msg in sb.tenant.messages.get(chat_id, []):
        user = sb.tenant.users.get(msg.from_id)
        content = "" if msg.deleted is not None else msg.content  # as Graph shows a soft-deleted one
        out.append({"id": msg.id, "from": user.upn if user else msg.from_id, "text": _plain(content,
                    msg.content_type), "content": content, "content_type": msg.content_type,
                    "created": iso(msg.created), "mentions": [_mentioned(sb, m) for m in msg.mentions],
                    "attachments": [attachment_view(sb, a) for a in msg.attachments],
                    "hosted_images": hosted_view(msg), **changes_view(sb, msg)})
    return web.json_response({"chat_id": chat_id, "messages": out})


def _mentioned(sb: SandboxState, mention: dict[str, Any]) -> dict[str, Any]:
    user_id = ((mention.get("mentioned") or {}).get("user") or {}).get("id", "")
    user = sb.tenant.users.get(user_id)
    return {"id": mention.get("id"), "text": mention.get("mentionText"), "user_id": user_id,
            "upn": user.upn if user else None}


@_handler
async def mailbox(request: web.Request) -> web.Response:
    """A user's messages, newest first; `?folder=inbox|sentitems` narrows it."""
    sb = request.app[SANDBOX_KEY]
    user = _user(sb, request.match_info["upn"], "mailbox")
    folder = request.query.get("folder")
    out = []
    for msg in reversed(sb.tenant.mail.get(user.id, [])):
        if msg.deleted or (folder and msg.folder != folder.lower()):
            continue
        out.append({"id": msg.id, "folder": msg.folder, "from": msg.from_address, "to": msg.to,
                    "subject": msg.subject, "body": msg.body, "body_type": msg.body_type, "is_read": msg.is_read,
                    "received": iso(msg.received), "conversation_id": msg.conversation_id,
                    "internet_message_id": msg.internet_message_id})
    return web.json_response({"upn": user.upn, "messages": out})


# --- steering the emulator ----------------------------------------------------------------------------------------
@_handler
async def set_faults(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    try:
        faults = Faults.from_json(data)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ControlError(400, f"invalid faults: {exc}") from exc
    for fault in faults.routes:
        if not 0.0 <= fault.rate <= 1.0:
            raise ControlError(400, "invalid faults: graph rate must be between 0 and 1")
        if fault.status not in FAULT_STATUSES:
            raise ControlError(400, f"invalid faults: status must be one of {FAULT_STATUSES}")
        if fault.retry_after is not None and fault.retry_after < 0:
            raise ControlError(400, "invalid faults: retry_after must not be negative")
    if faults.delay_ms < 0:
        raise ControlError(400, "invalid faults: delay_ms must not be negative")
    sb.faults = faults
    log.info("faults_set", routes=len(faults.routes), seed=faults.seed)
    return web.json_response(faults.to_json())


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX_KEY].faults.to_json())


async def clear_faults(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    sb.faults = Faults()
    return web.json_response(sb.faults.to_json())


async def rotate_keys(request: web.Request) -> web.Response:
    key = request.app[SANDBOX_KEY].pki.rotate()
    log.info("signing_key_rotated", kid=key.kid)
    return web.json_response({"kid": key.kid})


async def get_stats(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    now = sb.clock.now()
    active = sum(1 for s in sb.tenant.subscriptions.values() if s.expiration > now)
    return web.json_response({**sb.stats.snapshot(), "subscriptions": active, "clock": iso(now)})


async def reset_stats(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    sb.stats.reset()
    return web.json_response(sb.stats.snapshot())


@_handler
async def set_clock(request: web.Request) -> web.Response:
    """`{"advance_seconds": N}` jumps forward (never back: Graph time does not rewind); `{"speed": X}`."""
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    advance, speed = _number(data, "advance_seconds"), _number(data, "speed")
    if advance is None and speed is None:
        raise ControlError(400, "give 'advance_seconds' and/or 'speed'")
    if advance is not None and advance < 0:
        raise ControlError(400, "'advance_seconds' must not be negative")
    if speed is not None and speed <= 0:
        raise ControlError(400, "'speed' must be positive")
    if speed is not None:
        sb.clock.set_speed(speed)
    if advance:
        sb.clock.advance(advance)
    return web.json_response({"clock": iso(sb.clock.now()), "speed": sb.clock.speed})


async def expire_tokens(request: web.Request) -> web.Response:
    """Every token issued so far stops working for Graph; tokens issued from now on work.

    Token `iat` has whole seconds, so the clock steps to the next whole second:
    then old tokens have `iat` below the cut and new ones do not.
    """
    sb = request.app[SANDBOX_KEY]
    now = sb.clock.now()
    cut = math.floor(now) + 1
    sb.clock.advance(cut - now)
    sb.tenant.tokens_not_before = float(cut)
    sb.mark_dirty()
    log.info("tokens_expired")
    return web.json_response({"not_before": iso(cut)})


@_handler
async def set_throttle(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    data = await _body(request)
    enabled = data.get("enabled")
    if not isinstance(enabled, bool):
        raise ControlError(400, "'enabled' must be true or false")
    sb.throttle.enabled = enabled
    sb.throttle.reset()
    return web.json_response({"enabled": enabled})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/_sandbox/messages", post_message),
        web.post("/_sandbox/mail", post_mail),
        web.get("/_sandbox/users", list_users),
        web.get("/_sandbox/chats", list_chats),
        web.get("/_sandbox/chats/{chat_id}/messages", chat_messages),
        web.get("/_sandbox/mail/{upn}", mailbox),
        web.post("/_sandbox/faults", set_faults),
        web.get("/_sandbox/faults", get_faults),
        web.delete("/_sandbox/faults", clear_faults),
        web.post("/_sandbox/keys/rotate", rotate_keys),
        web.get("/_sandbox/stats", get_stats),
        web.delete("/_sandbox/stats", reset_stats),
        web.post("/_sandbox/clock", set_clock),
        web.post("/_sandbox/tokens/expire", expire_tokens),
        web.post("/_sandbox/throttle", set_throttle),
    ]
