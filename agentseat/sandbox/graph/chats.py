"""Teams chats in the sandbox's Graph: listing, reading, creating chats and adding members.

Also the helpers the control API and other modules use to make chats and post
messages as any user (`ensure_one_on_one`, `create_group_chat`,
`post_chat_message`). Chat messages' own routes live in `chat_messages`.
Rules are from the Graph pages "List chats" (chat-list), "Create chat"
(chat-post) and "Add member to a chat" (chat-post-members).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from . import throttle
from .auth import graph_route, principal
from ..state import SANDBOX_KEY
from .query import (
    GraphError,
    bad_request,
    date_literal,
    filter_clauses,
    graph_errors,
    json_body,
    keyset_page,
    query,
    top,
)
from .resources import chat_json
from ..responses import odata
from ..tenant import Chat, ChatMessage

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import User

log = structlog.get_logger(__name__)

LIST_SCOPES = ("Chat.ReadBasic", "Chat.Read", "Chat.ReadWrite")
LIST_ROLES = ("Chat.ReadBasic.All", "Chat.Read.All", "Chat.ReadWrite.All")
CREATE_SCOPES = ("Chat.Create", "Chat.ReadWrite")
MEMBER_WRITE_SCOPES = ("ChatMember.ReadWrite", "Chat.ReadWrite")
MEMBER_READ_SCOPES = ("ChatMember.Read", "ChatMember.ReadWrite", "Chat.ReadBasic", "Chat.Read", "Chat.ReadWrite")
#: chat-list: $orderby supports only lastMessagePreview/createdDateTime, descending.
CHAT_ORDER = "lastmessagepreview/createddatetime desc"
CHATS_PAGE_DEFAULT = 20  # Graph pages /chats by 20 when no $top is given (microsoft-graph-docs-contrib#4360)
CHATS_PAGE_MAX = 50
EXPAND_MEMBERS_MAX = 25  # chat-list: with $expand=members, only 25 members are returned
MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"
_BIND = re.compile(r"users(?:\('([^']+)'\)|/([^/?#]+))\s*$", re.I)


# --- public helpers -------------------------------------------------------------------------------------------
def one_on_one_id(a_id: str, b_id: str) -> str:
    """Graph's 1:1 chat id shape: `19:{userA}_{userB}@unq.gbl.spaces`."""
    first, second = sorted((a_id, b_id))
    return f"19:{first}_{second}@unq.gbl.spaces"


def ensure_one_on_one(sb: SandboxState, a_id: str, b_id: str) -> tuple[Chat, bool]:
    """The 1:1 chat between two users, and whether it was created now.

    chat-post: "Only one one-on-one chat can exist between two members. If a
    one-on-one chat already exists, this operation will return the existing chat."
    """
    if a_id == b_id:
        raise ValueError("a one-on-one chat needs two different members")
    for uid in (a_id, b_id):
        if uid not in sb.tenant.users:
            raise KeyError(uid)
    existing = sb.tenant.one_on_one(a_id, b_id)
    if existing is not None:
        return existing, False
    now = sb.clock.now()
    chat = Chat(id=one_on_one_id(a_id, b_id), chat_type="oneOnOne", member_ids=[a_id, b_id], created=now,
                last_updated=now)
    sb.tenant.chats[chat.id] = chat
    sb.tenant.messages.setdefault(chat.id, [])
    sb.mark_dirty()
    log.info("chat_created", chat=chat.id, chat_type=chat.chat_type)
    return chat, True


def create_group_chat(sb: SandboxState, member_ids: list[str], topic: str | None) -> Chat:
    """A new group chat (`19:{hex}@thread.v2`); group chats are never deduplicated."""
    members = list(dict.fromkeys(member_ids))
    for uid in members:
        if uid not in sb.tenant.users:
            raise KeyError(uid)
    now = sb.clock.now()
    chat = Chat(id=f"19:{uuid.uuid4().hex}@thread.v2", chat_type="group", member_ids=members, created=now,
                topic=topic or None, last_updated=now)
    sb.tenant.chats[chat.id] = chat
    sb.tenant.messages.setdefault(chat.id, [])
    sb.mark_dirty()
    log.info("chat_created", chat=chat.id, chat_type=chat.chat_type, members=len(members))
    return chat


def _next_message_id(sb: SandboxState, now: float) -> int:
    """Graph's chat message ids are epoch milliseconds ("1612289765949"); keep them unique and rising."""
    last = max((int(msgs[-1].id) for msgs in sb.tenant.messages.values() if msgs), default=0)
    return max(int(now * 1000), last + 1)


def post_chat_message(sb: SandboxState, chat: Chat, from_id: str, content: str,
                      content_type: str = "text", mentions: list[dict[str, Any]] | None = None,
                      attachments: list[dict[str, Any]] | None = None,
                      prepare: Callable[[ChatMessage], None] | None = None) -> ChatMessage:
    """Store a message as `from_id` and hand it to the delivery engine (non-blocking).

    `prepare` finishes the message once it has its id, before anyone sees it (hosted contents'
    URLs name the message)."""
    now = sb.clock.now()
    number = _next_message_id(sb, now)
    created = max(now, number / 1000)  # the id and createdDateTime agree, as in Graph
    msg = ChatMessage(id=str(number), chat_id=chat.id, from_id=from_id, content=content,
                      content_type=content_type, created=created, last_modified=created,
                      mentions=list(mentions or []), attachments=list(attachments or []))
    if prepare is not None:
        prepare(msg)
    sb.tenant.messages.setdefault(chat.id, []).append(msg)
    chat.last_updated = created
    sb.mark_dirty()
    sb.delivery.chat_message(chat, msg)  # enqueues only: a slow webhook never slows the sender
    log.info("chat_message_posted", chat=chat.id, message=msg.id)
    return msg


def member_json(sb: SandboxState, chat: Chat, user_id: str) -> dict[str, Any]:
    """An aadUserConversationMember (conversationmember resource)."""
    user = sb.tenant.users.get(user_id)
    # Graph's member ids are opaque base64 strings that name tenant, chat and user.
    raw = f"1##0##{sb.tenant.tenant_id}##{chat.id}##{user_id}".encode()
    return {
        "@odata.type": MEMBER_TYPE,
        "id": base64.b64encode(raw).decode(),
        "roles": ["owner"],
        "displayName": user.display_name if user else None,
        "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
        "userId": user_id,
        "email": user.mail if user else None,
        "tenantId": sb.tenant.tenant_id,
    }


def chat_for(sb: SandboxState, chat_id: str, viewer: str | None, *, outsider: int = 404) -> Chat:
    """The chat if `viewer` may use it (None: an app-only caller with a tenant-wide role).

    An unknown chat is 404; a chat the viewer is not in is 404 on chat reads (its
    existence stays hidden) and `outsider=403` where Graph answers Forbidden.
    """
    chat = sb.tenant.chats.get(chat_id)
    if chat is None or (viewer is not None and viewer not in chat.member_ids and outsider == 404):
        raise GraphError(404, "NotFound", f"Chat '{chat_id}' was not found or the caller is not a member.")
    if viewer is not None and viewer not in chat.member_ids:
        raise GraphError(403, "Forbidden", "Forbidden: the signed-in user is not a member of this chat.")
    return chat


def viewer_of(request: web.Request) -> str | None:
    """Whose chats a route reads: the path's `{user_id}` (see `resolve_path_user`), else the
    signed-in user; None for app-only calls (tenant-wide roles)."""
    who = principal(request)
    if who.kind != "user" and request.path.startswith("/v1.0/me/"):
        raise bad_request("/me request is only valid with delegated authentication flow.")
    if "user_id" in request.match_info:
        return resolve_path_user(request).id
    return who.oid if who.kind == "user" else None


def resolve_path_user(request: web.Request) -> User:
    """`{user_id}` in `/users/{user_id}/...`: an id or UPN; delegated callers may only name themselves."""
    sb = request.app[SANDBOX_KEY]
    ref = request.match_info["user_id"]
    user = sb.tenant.user(ref)
    if user is None:
        raise GraphError(404, "Request_ResourceNotFound", f"Resource '{ref}' does not exist or one of its "
                         "queried reference-property objects are not present.")
    who = principal(request)
    if who.kind == "user" and user.id != who.oid:
        raise GraphError(403, "Forbidden", "Forbidden: a delegated caller may only read its own chats.")
    return user


# --- listing ---------------------------------------------------------------------------------------------------
def _last_message(sb: SandboxState, chat: Chat) -> ChatMessage | None:
    messages = sb.tenant.messages.get(chat.id) or []
    return messages[-1] if messages else None


def _chat_filter(raw: str) -> list[tuple[str, str, Any]]:
    """The few `$filter` forms the sandbox evaluates on chats (chatType, topic, lastUpdatedDateTime)."""
    parsed: list[tuple[str, str, Any]] = []
    for prop, op, literal in filter_clauses(raw):
        name = prop.lower()
        if name in ("chattype", "topic") and op == "eq":
            parsed.append((name, op, literal.strip().strip("'")))
        elif name == "lastupdateddatetime" and op in ("gt", "ge", "lt", "le"):
            parsed.append((name, op, date_literal(literal)))
        else:
            raise bad_request(f"Invalid filter clause: the sandbox does not support '{prop} {op}' on chats.")
    return parsed


def _chat_matches(chat: Chat, clauses: list[tuple[str, str, Any]]) -> bool:
    for name, op, value in clauses:
        if name == "chattype" and chat.chat_type.lower() != str(value).lower():
            return False
        if name == "topic" and (chat.topic or "") != value:
            return False
        if name == "lastupdateddatetime":
            ts = chat.last_updated or chat.created
            if not {"gt": ts > value, "ge": ts >= value, "lt": ts < value, "le": ts <= value}[op]:
                return False
    return True


def _chat_body(sb: SandboxState, chat: Chat, expand: set[str]) -> dict[str, Any]:
    body = chat_json(sb, chat, expand_preview="lastmessagepreview" in expand)
    if "members" in expand:
        body["members"] = [member_json(sb, chat, uid) for uid in chat.member_ids[:EXPAND_MEMBERS_MAX]]
    return body


def _expand(raw: str | None) -> set[str]:
    if not raw:
        return set()
    wanted = set()
    for part in raw.split(","):
        name = part.strip().split("(")[0].strip().lower()
        if name not in ("members", "lastmessagepreview"):
            raise bad_request(f"Could not find a property named '{part.strip()}' on type 'microsoft.graph.chat'.")
        wanted.add(name)
    return wanted


async def _list_chats(request: web.Request, user_id: str) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    page_size = top(request, default=CHATS_PAGE_DEFAULT, maximum=CHATS_PAGE_MAX)
    expand = _expand(query(request, "$expand"))
    order = query(request, "$orderby")
    by_preview = False
    if order is not None and sb.behaviour.chats_orderby == "rejected":
        # entrabot reports a 400 for $orderby on /me/chats from real tenants, although chat-list
        # documents it; the wording is Graph's for a query option a Teams route does not allow.
        raise bad_request("Query option 'OrderBy' is not allowed. To allow it, set the 'AllowedQueryOptions' "
                          "property on EnableQueryAttribute or QueryValidationSettings.")
    if order is not None:
        if " ".join(order.lower().split()) != CHAT_ORDER:
            raise bad_request(f"$orderby '{order}' is not supported. Only 'lastMessagePreview/createdDateTime "
                              "desc' is supported.")
        by_preview = True
    raw_filter = query(request, "$filter")
    clauses = _chat_filter(raw_filter) if raw_filter else []

    def key(chat: Chat) -> tuple[float, str]:
        if by_preview:
            last = _last_message(sb, chat)
            ts = last.created if last is not None else float("-inf")  # chats without messages sort last
        else:
            ts = chat.last_updated or chat.created
        return (-ts, chat.id)

    chats = (c for c in sb.tenant.chats.values() if user_id in c.member_ids and _chat_matches(c, clauses))
    page, next_link = keyset_page(sb, request, chats, key, page_size, {"k": "chats"})
    values = [_chat_body(sb, chat, expand) for chat in page]
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#chats", values, next_link,
                                   **{"@odata.count": len(values)}))


@graph_route(scopes=LIST_SCOPES, limits=throttle.CHAT_LIST)
@graph_errors
async def list_my_chats(request: web.Request) -> web.Response:
    return await _list_chats(request, principal(request).oid)


@graph_route(scopes=LIST_SCOPES, roles=LIST_ROLES, limits=throttle.CHAT_LIST)
@graph_errors
async def list_user_chats(request: web.Request) -> web.Response:
    return await _list_chats(request, resolve_path_user(request).id)


@graph_route(scopes=LIST_SCOPES, roles=LIST_ROLES, limits=throttle.CHAT_GET)
@graph_errors
async def get_chat(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    chat = chat_for(sb, request.match_info["chat_id"], viewer_of(request))
    expand = _expand(query(request, "$expand"))
    body = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#chats/$entity",
            **_chat_body(sb, chat, expand)}
    return web.json_response(body)


@graph_route(scopes=MEMBER_READ_SCOPES, roles=LIST_ROLES, limits=throttle.CHAT_GET)
@graph_errors
async def list_members(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    chat = chat_for(sb, request.match_info["chat_id"], viewer_of(request))
    context = f"https://graph.microsoft.com/v1.0/$metadata#chats('{chat.id}')/members"
    return web.json_response(odata(context, [member_json(sb, chat, uid) for uid in chat.member_ids],
                                   **{"@odata.count": len(chat.member_ids)}))


# --- creating ----------------------------------------------------------------------------------------------------
def _bound_user(sb: SandboxState, member: Any) -> str:
    """The user id named by a member's `user@odata.bind` (id or UPN, `users('x')` or `users/x`)."""
    if not isinstance(member, dict):
        raise bad_request("Each member must be an aadUserConversationMember object.")
    odata_type = member.get("@odata.type")
    if odata_type is not None and str(odata_type).lower() != MEMBER_TYPE.lower():
        raise bad_request(f"Member type '{odata_type}' is not supported; use '{MEMBER_TYPE}'.")
    bind = member.get("user@odata.bind")
    if not isinstance(bind, str) or (match := _BIND.search(bind)) is None:
        raise bad_request("Each member needs 'user@odata.bind': "
                          "\"https://graph.microsoft.com/v1.0/users('{id-or-upn}')\".")
    ref = match.group(1) or match.group(2)
    user = sb.tenant.user(ref)
    if user is None:
        raise GraphError(404, "NotFound", f"User '{ref}' was not found in the tenant.")
    return user.id


@graph_route(scopes=CREATE_SCOPES, limits=throttle.CHAT_CREATE, delegated_only=True)
@graph_errors
async def create_chat(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    caller = principal(request).oid
    body = await json_body(request)
    chat_type = str(body.get("chatType", ""))
    members = body.get("members")
    if chat_type.lower() not in ("oneonone", "group"):
        raise bad_request("'chatType' is required and must be 'oneOnOne' or 'group'.")
    if not isinstance(members, list) or not members:
        raise bad_request("'members' is required: list every participant, the caller included.")
    ids = [_bound_user(sb, m) for m in members]
    # chat-post: every participant, including the caller, must be listed.
    if caller not in ids:
        raise bad_request("The caller must be one of the members of the chat.")
    if chat_type.lower() == "oneonone":
        if len(ids) != 2 or ids[0] == ids[1]:
            raise bad_request("A oneOnOne chat must have exactly two different members.")
        chat, created = ensure_one_on_one(sb, ids[0], ids[1])
    else:
        if len(set(ids)) < 2:
            raise bad_request("A group chat needs at least two members.")
        topic = body.get("topic")
        if topic is not None and not isinstance(topic, str):
            raise bad_request("'topic' must be a string.")
        chat, created = create_group_chat(sb, ids, topic), True
    log.info("chat_create_request", chat=chat.id, created=created)
    body_out = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#chats/$entity", **chat_json(sb, chat)}
    return web.json_response(body_out, status=201)


@graph_route(scopes=MEMBER_WRITE_SCOPES, limits=throttle.CHAT_CREATE, delegated_only=True)
@graph_errors
async def add_member(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    chat = chat_for(sb, request.match_info["chat_id"], principal(request).oid)
    body = await json_body(request)
    if chat.chat_type != "group":
        # Members can only be added to group chats; a 1:1 chat keeps its two members.
        raise bad_request("Members cannot be added to a oneOnOne chat.")
    user_id = _bound_user(sb, body)
    if user_id not in chat.member_ids:
        chat.member_ids.append(user_id)
        chat.last_updated = sb.clock.now()
        sb.mark_dirty()
        log.info("chat_member_added", chat=chat.id)
    out = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#chats('{chat.id}')/members/$entity",
           **member_json(sb, chat, user_id)}
    return web.json_response(out, status=201)


def routes() -> list[web.RouteDef]:
    """Chat routes; `chat_messages.routes()` must be registered first (getAllMessages)."""
    return [
        web.get("/v1.0/me/chats", list_my_chats),
        web.get("/v1.0/chats", list_my_chats),
        web.post("/v1.0/chats", create_chat),
        web.get("/v1.0/users/{user_id}/chats", list_user_chats),
        web.get("/v1.0/chats/{chat_id}", get_chat),
        web.get("/v1.0/me/chats/{chat_id}", get_chat),
        web.get("/v1.0/users/{user_id}/chats/{chat_id}", get_chat),
        web.get("/v1.0/chats/{chat_id}/members", list_members),
        web.get("/v1.0/me/chats/{chat_id}/members", list_members),
        web.post("/v1.0/chats/{chat_id}/members", add_member),
    ]
