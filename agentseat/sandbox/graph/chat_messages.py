"""Chat messages in the sandbox's Graph: list and send, and the `getAllMessages` exports.

Rules come from "List messages in a chat" (chat-list-messages), "Send
chatMessage in a chat" (chat-post-messages) and "chats: getAllMessages" /
"chatMessage: delta" (delegated calls are not supported). Chats themselves and
the `post_chat_message` helper live in `chats`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from . import throttle
from .auth import graph_route, principal
from ..state import SANDBOX_KEY
from .chats import chat_for, post_chat_message, resolve_path_user, viewer_of
from .query import (
    GraphError,
    bad_request,
    carry_query,
    date_literal,
    decode_token,
    encode_token,
    filter_clauses,
    graph_errors,
    json_body,
    keyset_page,
    link,
    query,
    top,
)
from .attachments import check_attachments
from .hosted_contents import chat_message_url, check_hosted_contents, store_hosted_contents
from .mentions import check_mentions
from .resources import chat_message_json
from ..responses import graph_error, odata
from .throttle import Limit

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import ChatMessage

log = structlog.get_logger(__name__)

READ_SCOPES = ("Chat.Read", "Chat.ReadWrite")
READ_ROLES = ("Chat.Read.All", "Chat.ReadWrite.All", "ChatMessage.Read.Chat")
SEND_SCOPES = ("ChatMessage.Send", "Chat.ReadWrite", "Group.ReadWrite.All")
EXPORT_ROLES = ("Chat.Read.All", "Chat.ReadWrite.All")
PAGE_DEFAULT = 20
PAGE_MAX = 50  # chat-list-messages: "Maximum allowed $top value is 50."
#: Teams rejects messages over about 28 KB with "Request Entity too large" (Teams message size limit).
MAX_CONTENT_BYTES = 28 * 1024
#: throttling-limits: GET /users/{id}/chats/getAllMessages, 200 rps per app per tenant.
GET_ALL_MESSAGES = (Limit("app", 200.0, 200.0),)
_ORDER_PROPS = {"lastmodifieddatetime": "lastModifiedDateTime", "createddatetime": "createdDateTime"}
#: chat-list-messages: "lastModifiedDateTime supports gt and lt; createdDateTime supports lt".
_FILTER_OPS = {"lastModifiedDateTime": ("gt", "lt"), "createdDateTime": ("lt",)}


def _ts(msg: ChatMessage, prop: str) -> float:
    return msg.last_modified if prop == "lastModifiedDateTime" else msg.created


def _order(request: web.Request) -> tuple[str, bool]:
    """The ordering property and whether `$orderby` was given: desc only, two properties."""
    raw = query(request, "$orderby")
    if raw is None:
        return "lastModifiedDateTime", False
    words = raw.split()
    prop = _ORDER_PROPS.get(words[0].lower()) if words else None
    if prop is None or len(words) > 2:
        raise bad_request(f"$orderby '{raw}' is not supported. Use lastModifiedDateTime desc or createdDateTime desc.")
    if len(words) == 1 or words[1].lower() != "desc":
        raise bad_request("Ascending order is not supported. Only descending order (desc) is supported for "
                          f"'{prop}'.")
    return prop, True


def _filter(request: web.Request, prop: str, ordered: bool) -> Callable[[ChatMessage], bool] | None:
    """chat-list-messages: "You can only filter results if the request URL contains the $orderBy and
    $filter query parameters configured for the same property; otherwise, the $filter query option is ignored.\""""
    raw = query(request, "$filter")
    if not raw or not ordered:
        return None
    try:
        clauses = filter_clauses(raw)
    except GraphError:
        return None  # a filter on another shape of property is ignored, as the rule says
    if any(p.lower() != prop.lower() for p, _, _ in clauses):
        return None
    bounds = []
    for _, op, literal in clauses:
        if op not in _FILTER_OPS[prop]:
            raise bad_request(f"The '{op}' operator is not supported on '{prop}'; supported: "
                              f"{', '.join(_FILTER_OPS[prop])}.")
        bounds.append((op, date_literal(literal)))

    def keep(msg: ChatMessage) -> bool:
        ts = _ts(msg, prop)
        return all(ts > value if op == "gt" else ts < value for op, value in bounds)

    return keep


def _item(sb: SandboxState, msg: ChatMessage) -> dict[str, Any]:
    """A message as a collection item: the collection carries the `@odata.context`."""
    item = chat_message_json(sb, msg)
    item.pop("@odata.context", None)
    return item


def _page(sb: SandboxState, request: web.Request, messages: list[ChatMessage], prop: str, kind: str,
          context: str) -> web.Response:
    """Newest first by `prop`, `$top` per page, keyset `$skiptoken` so new messages never shift a page."""
    page_size = top(request, default=PAGE_DEFAULT, maximum=PAGE_MAX)

    def key(msg: ChatMessage) -> tuple[float, int]:
        return (-_ts(msg, prop), -int(msg.id))

    page, next_link = keyset_page(sb, request, messages, key, page_size, {"k": kind, "p": prop})
    values = [_item(sb, msg) for msg in page]
    return web.json_response(odata(context, values, next_link, **{"@odata.count": len(values)}))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=throttle.CHAT_MESSAGES_GET)
@graph_errors
async def list_messages(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    chat = chat_for(sb, request.match_info["chat_id"], viewer_of(request), outsider=403)
    prop, ordered = _order(request)
    # `messages_filter: ignored`: entrabot found $filter on chat messages unreliable on real
    # tenants (its Learning #16); here it is accepted and not applied, the worst case.
    keep = None if sb.behaviour.messages_filter == "ignored" else _filter(request, prop, ordered)
    messages = [m for m in sb.tenant.messages.get(chat.id, []) if keep is None or keep(m)]
    context = f"https://graph.microsoft.com/v1.0/$metadata#chats('{chat.id}')/messages"
    return _page(sb, request, messages, prop, "messages", context)


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=throttle.CHAT_GET)
@graph_errors
async def get_message(request: web.Request) -> web.Response:
    """GET /chats/{chat-id}/messages/{message-id} (chatmessage-get)."""
    sb = request.app[SANDBOX_KEY]
    chat = chat_for(sb, request.match_info["chat_id"], viewer_of(request), outsider=403)
    wanted = request.match_info["message_id"]
    for message in sb.tenant.messages.get(chat.id, []):
        if message.id == wanted:
            return web.json_response(chat_message_json(sb, message))
    return graph_error(404, "NotFound", f"Message {wanted} was not found in this chat.", request=request)


def message_body(data: dict[str, Any]) -> tuple[str, str]:
    """`(content, contentType)` of a chatMessage body being sent or edited, checked as Graph does."""
    body = data.get("body")
    if not isinstance(body, dict):
        raise bad_request("'body' is required: {\"body\": {\"contentType\": \"text\", \"content\": \"...\"}}.")
    content = body.get("content")
    content_type = str(body.get("contentType") or "text").lower()
    if content_type not in ("text", "html"):
        raise bad_request(f"contentType '{body.get('contentType')}' is not supported; use 'text' or 'html'.")
    if not isinstance(content, str) or not content.strip():
        raise bad_request("The message body content cannot be empty.")
    if len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
        raise GraphError(413, "RequestEntityTooLarge", "Request Entity too large: the message is over the "
                         "Teams limit of about 28 KB.")
    return content, content_type


@graph_route(scopes=SEND_SCOPES, limits=throttle.CHAT_MESSAGES_POST, delegated_only=True)
@graph_errors
async def send_message(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    who = principal(request)
    chat = chat_for(sb, request.match_info["chat_id"], who.oid, outsider=403)
    data = await json_body(request)
    content, content_type = message_body(data)
    mentions = check_mentions(sb, data.get("mentions"), content, content_type)
    attachments = check_attachments(data.get("attachments"), content, sb, sender_id=who.oid,
                                    messages=sb.tenant.messages.get(chat.id, []))
    hosted = check_hosted_contents(data.get("hostedContents"), content, attachments)
    msg = post_chat_message(sb, chat, who.oid, content, content_type, mentions, attachments, prepare=lambda m: (
        store_hosted_contents(sb, m, hosted, chat_message_url(sb, chat.id, m.id))))
    return web.json_response(chat_message_json(sb, msg), status=201)


# --- getAllMessages (export) and its delta: application permissions only -------------------------------------
def _export_scope(request: web.Request) -> list[ChatMessage]:
    sb = request.app[SANDBOX_KEY]
    if request.path.startswith("/v1.0/me/"):
        raise bad_request("/me request is only valid with delegated authentication flow.")
    user_id = resolve_path_user(request).id if "user_id" in request.match_info else None
    return [m for chat in sb.tenant.chats.values() if user_id is None or user_id in chat.member_ids
            for m in sb.tenant.messages.get(chat.id, [])]


def _not_delegated(request: web.Request) -> web.Response | None:
    # chats-getallmessages and chatmessage-delta: delegated "Not supported"; Graph answers a
    # delegated call with 412 PreconditionFailed (reference §8.2).
    if principal(request).kind == "user":
        return graph_error(412, "PreconditionFailed", "Requested API is not supported in delegated context",
                           request=request)
    return None


@graph_route(roles=EXPORT_ROLES, limits=GET_ALL_MESSAGES)
@graph_errors
async def get_all_messages(request: web.Request) -> web.Response:
    if (refused := _not_delegated(request)) is not None:
        return refused
    sb = request.app[SANDBOX_KEY]
    messages = _export_scope(request)
    keep = _filter(request, "lastModifiedDateTime", True)
    messages = [m for m in messages if keep is None or keep(m)]
    return _page(sb, request, messages, "lastModifiedDateTime", "export",
                 "https://graph.microsoft.com/v1.0/$metadata#Collection(chatMessage)")


@graph_route(roles=EXPORT_ROLES, limits=GET_ALL_MESSAGES)
@graph_errors
async def get_all_messages_delta(request: web.Request) -> web.Response:
    """Initial round: every message up to a watermark, oldest first; then only newer ones."""
    if (refused := _not_delegated(request)) is not None:
        return refused
    sb = request.app[SANDBOX_KEY]
    page_size = top(request, default=PAGE_DEFAULT, maximum=PAGE_MAX)
    messages = _export_scope(request)
    state: dict[str, Any]
    skip, delta = query(request, "$skiptoken"), query(request, "$deltatoken")
    if skip is not None or delta is not None:
        decoded = decode_token(sb, skip or delta or "")
        if decoded is None or decoded.get("k") != "chatdelta":
            raise GraphError(400, "BadRequest", "The delta or skip token is invalid.")
        state = decoded
        if delta is not None:  # a new round starts at the last watermark
            state = {**state, "a": state["w"], "w": None, "f": None}
    else:
        since = None
        raw = query(request, "$filter")
        if raw:
            clauses = filter_clauses(raw)
            if any(p.lower() != "lastmodifieddatetime" or op != "gt" for p, op, _ in clauses):
                raise bad_request("Only '$filter=lastModifiedDateTime gt {timestamp}' is supported on delta.")
            since = max(date_literal(lit) for _, _, lit in clauses)
        state = {"k": "chatdelta", "a": 0, "w": None, "f": since}
    watermark = state["w"] if state["w"] is not None else max((int(m.id) for m in messages), default=state["a"])
    pending = sorted((m for m in messages if state["a"] < int(m.id) <= watermark
                      and (state["f"] is None or m.last_modified > state["f"])), key=lambda m: int(m.id))
    page = pending[:page_size]
    values = [_item(sb, msg) for msg in page]
    base = {k: v for k, v in carry_query(request, "$skiptoken", "$deltatoken", "$filter", "$top").items()}
    extra: dict[str, str] = {}
    if len(pending) > page_size:
        token = encode_token(sb, {**state, "a": int(page[-1].id), "w": watermark})
        extra["@odata.nextLink"] = link(sb, request, {**base, "$skiptoken": token})
    else:
        token = encode_token(sb, {"k": "chatdelta", "a": watermark, "w": watermark, "f": None})
        extra["@odata.deltaLink"] = link(sb, request, {**base, "$deltatoken": token})
    body = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(chatMessage)", **extra,
            "value": values}
    return web.json_response(body)


def all_messages_routes() -> list[web.RouteDef]:
    """Registered before `/chats/{chat_id}` so `getAllMessages` is not read as a chat id."""
    return [
        web.get("/v1.0/users/{user_id}/chats/getAllMessages", get_all_messages),
        web.get("/v1.0/users/{user_id}/chats/getAllMessages/delta", get_all_messages_delta),
        web.get("/v1.0/me/chats/getAllMessages", get_all_messages),
        web.get("/v1.0/me/chats/getAllMessages/delta", get_all_messages_delta),
        web.get("/v1.0/chats/getAllMessages", get_all_messages),
        web.get("/v1.0/chats/getAllMessages/delta", get_all_messages_delta),
    ]


def routes() -> list[web.RouteDef]:
    """Registered before `chats.routes()`, whose `/chats/{chat_id}` would swallow getAllMessages."""
    return [
        *all_messages_routes(),
        web.get("/v1.0/chats/{chat_id}/messages", list_messages),
        web.get("/v1.0/me/chats/{chat_id}/messages", list_messages),
        web.get("/v1.0/users/{user_id}/chats/{chat_id}/messages", list_messages),
        web.post("/v1.0/chats/{chat_id}/messages", send_message),
        web.get("/v1.0/chats/{chat_id}/messages/{message_id}", get_message),
        web.get("/v1.0/me/chats/{chat_id}/messages/{message_id}", get_message),
        web.post("/v1.0/me/chats/{chat_id}/messages", send_message),
    ]
