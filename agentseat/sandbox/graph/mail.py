"""Outlook mail in the sandbox's Graph: mailboxes, reading, sending and replying.

Also the helpers the control API and tests use to deliver mail from any
address and to change messages (`deliver_mail`, `mark_read`, `delete_message`).
Every change takes the next `tenant.mail_seq`, which the delta query in
`mail_delta` reads. Rules come from "List messages" (user-list-messages),
"user: sendMail", "message: reply" and the Mail permission reference.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from . import throttle
from .auth import graph_route, principal
from ..state import SANDBOX_KEY
from .query import (
    GraphError,
    bad_request,
    carry_query,
    date_literal,
    filter_clauses,
    graph_errors,
    json_body,
    link,
    query,
    select,
    top,
)
from .resources import mail_json
from ..responses import odata
from ..tenant import MailMessage

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import User

log = structlog.get_logger(__name__)

READ_SCOPES = ("Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite")
READ_ROLES = ("Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite")
WRITE_SCOPES = ("Mail.ReadWrite",)
WRITE_ROLES = ("Mail.ReadWrite",)
SEND_SCOPES = ("Mail.Send",)
SEND_ROLES = ("Mail.Send",)
#: Outlook's well-known folder names; the sandbox keeps mail only in the first two.
WELL_KNOWN_FOLDERS = ("inbox", "sentitems", "drafts", "deleteditems", "junkemail", "archive", "outbox")
PAGE_DEFAULT = 10  # Outlook lists return 10 messages per page by default
PAGE_MAX = 1000
_BASIC_HIDDEN = ("body", "bodyPreview", "uniqueBody")  # Mail.ReadBasic: "except body, previewBody, attachments"


# --- public helpers --------------------------------------------------------------------------------------------
def _outlook_id(prefix: str) -> str:
    # Outlook ids are long base64 strings ("AAMkAGI2..."); url-safe keeps them usable in paths.
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(42)).decode()


def _next_seq(sb: SandboxState) -> int:
    sb.tenant.mail_seq += 1
    return sb.tenant.mail_seq


def _notify(sb: SandboxState, msg: MailMessage, change_type: str) -> None:
    # The engine filters by subscription resource (inbox, sent items, whole mailbox); it only enqueues.
    sb.delivery.mail_message(msg, change_type)


def mailbox(sb: SandboxState, owner_id: str) -> list[MailMessage]:
    """A user's messages (deleted ones included, for delta), oldest first."""
    return sb.tenant.mail.setdefault(owner_id, [])


def find_message(sb: SandboxState, owner_id: str, message_id: str) -> MailMessage | None:
    for msg in sb.tenant.mail.get(owner_id, []):
        if msg.id == message_id and not msg.deleted:
            return msg
    return None


def deliver_mail(sb: SandboxState, from_address: str, to: list[str], subject: str, body: str, body_type: str = "text",
                 *, conversation_id: str | None = None, save_to_sent: bool = True,
                 cc: list[str] | None = None) -> list[MailMessage]:
    """Deliver one message: a copy in each tenant recipient's inbox, then one in the sender's sent items.

    Addresses outside the tenant are accepted and go nowhere, as mail to another
    organisation would leave this one. Returns the new messages, inboxes first.
    """
    sender = sb.tenant.user(from_address)
    from_name = sender.display_name if sender else from_address
    from_addr = sender.mail if sender else from_address
    conversation = conversation_id or _outlook_id("AAQkA")
    internet_id = f"<{uuid.uuid4().hex}@{sb.tenant.domain}>"
    now = sb.clock.now()
    created: list[MailMessage] = []
    owners: list[tuple[str, str]] = []
    seen: set[str] = set()
    for address in [*to, *(cc or [])]:
        user = sb.tenant.user(address)
        if user is not None and user.id not in seen:
            seen.add(user.id)
            owners.append((user.id, "inbox"))
    if sender is not None and save_to_sent:
        owners.append((sender.id, "sentitems"))
    for owner_id, folder in owners:
        msg = MailMessage(
            id=_outlook_id("AAMkA"), owner_id=owner_id, folder=folder, subject=subject, body=body,
            body_type=body_type, from_address=from_addr, from_name=from_name, to=list(to), received=now,
            conversation_id=conversation, internet_message_id=internet_id, is_read=folder == "sentitems",
            change_seq=_next_seq(sb),
        )
        mailbox(sb, owner_id).append(msg)
        created.append(msg)
    sb.mark_dirty()
    for msg in created:
        _notify(sb, msg, "created")
    log.info("mail_delivered", copies=len(created), external_sender=sender is None)
    return created


def mark_read(sb: SandboxState, msg: MailMessage, is_read: bool = True) -> None:
    if msg.is_read == is_read:
        return
    msg.is_read = is_read
    msg.change_seq = _next_seq(sb)
    sb.mark_dirty()
    _notify(sb, msg, "updated")


def delete_message(sb: SandboxState, msg: MailMessage) -> None:
    """Delete a message; it stays as a tombstone so a delta round can report `@removed`."""
    if msg.deleted:
        return
    msg.deleted = True
    msg.change_seq = _next_seq(sb)
    sb.mark_dirty()
    _notify(sb, msg, "deleted")


# --- request helpers ---------------------------------------------------------------------------------------------
def mailbox_owner(request: web.Request) -> User:
    """`/me` or `/users/{user_id}`: delegated callers reach only their own mailbox."""
    sb = request.app[SANDBOX_KEY]
    who = principal(request)
    ref = request.match_info.get("user_id")
    if ref is None:
        if who.kind != "user":
            raise bad_request("/me request is only valid with delegated authentication flow.")
        ref = who.oid
    user = sb.tenant.user(ref)
    if user is None:
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{ref}' is invalid.")
    if who.kind == "user" and user.id != who.oid:
        # Mail.Read covers only the signed-in user's mailbox (the .Shared scopes cover others).
        raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    return user


def folder_name(request: web.Request) -> str:
    raw = request.match_info["folder_id"]
    name = raw.strip().strip("'").lower()
    if name not in WELL_KNOWN_FOLDERS:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return name


def _basic_only(request: web.Request) -> bool:
    who = principal(request)
    granted = who.scopes if who.kind == "user" else who.roles
    return not granted.intersection({"Mail.Read", "Mail.ReadWrite"})


def render(request: web.Request, msg: MailMessage, fields: list[str] | None) -> dict[str, Any]:
    """mail_json with `$select`; Mail.ReadBasic never sees the body."""
    sb = request.app[SANDBOX_KEY]
    body = mail_json(sb, msg, fields)
    if _basic_only(request):
        for name in _BASIC_HIDDEN:
            body.pop(name, None)
    return body


def _message(request: web.Request) -> MailMessage:
    sb = request.app[SANDBOX_KEY]
    owner = mailbox_owner(request)
    msg = find_message(sb, owner.id, request.match_info["message_id"])
    if msg is None:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return msg


def _mail_filter(raw: str) -> list[tuple[str, str, Any]]:
    clauses: list[tuple[str, str, Any]] = []
    for prop, op, literal in filter_clauses(raw):
        name = prop.lower()
        if name == "receiveddatetime" and op in ("gt", "ge", "lt", "le", "eq"):
            clauses.append((name, op, date_literal(literal)))
        elif name == "isread" and op in ("eq", "ne") and literal.strip().lower() in ("true", "false"):
            clauses.append((name, op, literal.strip().lower() == "true"))
        elif name == "conversationid" and op == "eq":
            clauses.append((name, op, literal.strip().strip("'")))
        else:
            raise bad_request(f"The sandbox does not support the filter clause '{prop} {op} {literal}'.",
                              code="ErrorInvalidUrlQueryFilter")
    return clauses


def _matches(msg: MailMessage, clauses: list[tuple[str, str, Any]]) -> bool:
    ops = {"gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b,
           "le": lambda a, b: a <= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b}
    values = {"receiveddatetime": msg.received, "isread": msg.is_read, "conversationid": msg.conversation_id}
    return all(ops[op](values[name], value) for name, op, value in clauses)


async def _list(request: web.Request, folder: str | None) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    owner = mailbox_owner(request)
    page_size = top(request, default=PAGE_DEFAULT, maximum=PAGE_MAX)
    raw_skip = query(request, "$skip") or "0"
    if not raw_skip.isdigit():
        raise bad_request(f"Invalid value '{raw_skip}' for $skip query option found.")
    skip = int(raw_skip)
    order = " ".join((query(request, "$orderby") or "receivedDateTime desc").lower().split())
    if order not in ("receiveddatetime desc", "receiveddatetime asc", "receiveddatetime"):
        raise bad_request(f"The sandbox orders messages by receivedDateTime only, not '{order}'.")
    raw_filter = query(request, "$filter")
    clauses = _mail_filter(raw_filter) if raw_filter else []
    messages = [m for m in mailbox(sb, owner.id)
                if not m.deleted and (folder is None or m.folder == folder) and _matches(m, clauses)]
    messages.sort(key=lambda m: (m.received, m.change_seq), reverse=order.endswith("desc"))
    page = messages[skip:skip + page_size]
    fields = select(request)
    next_link = None
    if skip + page_size < len(messages):
        # Outlook pages with $skip in its nextLink.
        next_link = link(sb, request, {**carry_query(request, "$skip"), "$skip": skip + page_size})
    context = f"https://graph.microsoft.com/v1.0/$metadata#users('{owner.id}')/messages"
    return web.json_response(odata(context, [render(request, m, fields) for m in page], next_link))


# --- routes ------------------------------------------------------------------------------------------------------
@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=throttle.OUTLOOK)
@graph_errors
async def list_messages(request: web.Request) -> web.Response:
    return await _list(request, None)


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=throttle.OUTLOOK)
@graph_errors
async def list_folder_messages(request: web.Request) -> web.Response:
    return await _list(request, folder_name(request))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=throttle.OUTLOOK)
@graph_errors
async def get_message(request: web.Request) -> web.Response:
    msg = _message(request)
    body = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#users('{msg.owner_id}')/messages/$entity",
            **render(request, msg, select(request))}
    return web.json_response(body)


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES, limits=throttle.OUTLOOK)
@graph_errors
async def update_message(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    msg = _message(request)
    data = await json_body(request)
    unknown = set(data) - {"isRead"}
    if unknown:
        raise bad_request(f"The sandbox can only update isRead, not {', '.join(sorted(unknown))}.")
    if "isRead" in data:
        if not isinstance(data["isRead"], bool):
            raise bad_request("'isRead' must be true or false.")
        mark_read(sb, msg, data["isRead"])
    return web.json_response(render(request, msg, None))


@graph_route(scopes=WRITE_SCOPES, roles=WRITE_ROLES, limits=throttle.OUTLOOK)
@graph_errors
async def remove_message(request: web.Request) -> web.Response:
    delete_message(request.app[SANDBOX_KEY], _message(request))
    return web.Response(status=204)


def _addresses(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"'{field}' must be a list of recipients.")
    out = []
    for item in value:
        address = (item.get("emailAddress") or {}).get("address") if isinstance(item, dict) else None
        if not isinstance(address, str) or "@" not in address:
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        out.append(address.strip())
    return out


def _body(message: dict[str, Any]) -> tuple[str, str]:
    body = message.get("body") or {}
    if not isinstance(body, dict):
        raise bad_request("'body' must be an itemBody object.")
    body_type = str(body.get("contentType") or "text").lower()
    if body_type not in ("text", "html"):
        raise bad_request(f"contentType '{body.get('contentType')}' is not supported; use 'Text' or 'HTML'.")
    content = body.get("content") or ""
    if not isinstance(content, str):
        raise bad_request("'body.content' must be a string.")
    return content, body_type


@graph_route(scopes=SEND_SCOPES, roles=SEND_ROLES, limits=throttle.OUTLOOK)
@graph_errors
async def send_mail(request: web.Request) -> web.Response:
    """user-sendmail: 202 Accepted with no body; saveToSentItems defaults to true."""
    sb = request.app[SANDBOX_KEY]
    sender = mailbox_owner(request)
    data = await json_body(request)
    message = data.get("message")
    if not isinstance(message, dict):
        raise bad_request("'message' is required.", code="ErrorInvalidParameter")
    to = _addresses(message.get("toRecipients"), "toRecipients")
    cc = _addresses(message.get("ccRecipients"), "ccRecipients")
    bcc = _addresses(message.get("bccRecipients"), "bccRecipients")
    if not (to or cc or bcc):
        raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid., A message can't be "
                         "sent because it contains no recipients.")
    save = data.get("saveToSentItems", True)
    if not isinstance(save, bool):
        raise bad_request("'saveToSentItems' must be true or false.")
    subject = message.get("subject") or ""
    if not isinstance(subject, str):
        raise bad_request("'subject' must be a string.")
    content, body_type = _body(message)
    deliver_mail(sb, sender.mail, to, subject, content, body_type, save_to_sent=save, cc=[*cc, *bcc])
    return web.Response(status=202)


@graph_route(scopes=SEND_SCOPES, roles=SEND_ROLES, limits=throttle.OUTLOOK)
@graph_errors
async def reply(request: web.Request) -> web.Response:
    """message-reply: to the original sender, "RE:" subject, same conversation; 202 with no body."""
    sb = request.app[SANDBOX_KEY]
    original = _message(request)
    sender = sb.tenant.users[original.owner_id]
    data = await json_body(request) if request.can_read_body else {}
    comment = data.get("comment") or ""
    if not isinstance(comment, str):
        raise bad_request("'comment' must be a string.")
    message = data.get("message") or {}
    if not isinstance(message, dict):
        raise bad_request("'message' must be a message object.")
    to = _addresses(message.get("toRecipients"), "toRecipients") or [original.from_address]
    extra, body_type = _body(message) if message.get("body") else ("", "text")
    content = "\n\n".join(part for part in (comment, extra) if part)
    subject = original.subject if original.subject.lower().startswith("re:") else f"RE: {original.subject}"
    deliver_mail(sb, sender.mail, to, subject, content, body_type, conversation_id=original.conversation_id)
    return web.Response(status=202)


def routes() -> list[web.RouteDef]:
    """Mail routes; `mail_delta.routes()` must be registered first (`/messages/delta`)."""
    out: list[web.RouteDef] = []
    for base in ("/v1.0/me", "/v1.0/users/{user_id}"):
        out += [
            web.get(f"{base}/messages", list_messages),
            web.get(f"{base}/mailFolders/{{folder_id}}/messages", list_folder_messages),
            web.get(f"{base}/messages/{{message_id}}", get_message),
            web.patch(f"{base}/messages/{{message_id}}", update_message),
            web.delete(f"{base}/messages/{{message_id}}", remove_message),
            web.post(f"{base}/sendMail", send_mail),
            web.post(f"{base}/messages/{{message_id}}/reply", reply),
        ]
    return out
