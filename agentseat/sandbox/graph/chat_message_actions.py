"""What a person does to a chat message after it is sent: edit, soft delete and undo, react and unreact.

Rules come from "Update chatMessage" (chatmessage-update: delegated callers may update the
message, 204 No Content; application callers only `policyViolation`), "chatMessage:
softDelete" / "undoSoftDelete" (delegated Chat.ReadWrite only, 204, documented on
`/users/{id}/chats/{id}/messages/{id}`) and "chatMessage: setReaction" / "unsetReaction"
(Chat.ReadWrite or ChatMessage.Send, `{"reactionType": ...}`, 204). The docs do not give the
error for touching someone else's message; Teams lets only the sender edit or delete one,
and the sandbox answers 403 Forbidden as it does for other writes the caller may not make.

The plain functions (`edit_message`, `soft_delete`, `set_reaction`, ...) are shared with the
control API, so a person acting through `/_sandbox/` changes a message exactly as Graph would.
Each change goes through `notify_message_changed`, the one place that decides which change
notification it produces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from ...graph.reactions import LEGACY_REACTIONS, reaction_type
from ..clock import iso
from ..state import SANDBOX_KEY
from .auth import graph_route, principal
from .chat_messages import message_body
from .chats import chat_for, resolve_path_user
from .query import GraphError, bad_request, graph_errors, json_body
from .throttle import Limit
from ..tenant import Reaction

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import Chat, ChatMessage

log = structlog.get_logger(__name__)

EDIT_SCOPES = ("Chat.ReadWrite",)
DELETE_SCOPES = ("Chat.ReadWrite",)
REACT_SCOPES = ("Chat.ReadWrite", "ChatMessage.Send")
#: throttling-limits, Teams: "Other API calls for Microsoft Teams" 30 rps per app per tenant, 1 rps per user.
WRITE_LIMITS = (Limit("app", 30.0, 30.0), Limit("user", 1.0, 1.0))


# --- the changes themselves (Graph routes and the control API) -----------------------------------------------
def find_message(sb: SandboxState, chat: Chat, message_id: str) -> ChatMessage:
    for message in sb.tenant.messages.get(chat.id, []):
        if message.id == message_id:
            return message
    raise GraphError(404, "NotFound", f"Message {message_id} was not found in this chat.")


def notify_message_changed(sb: SandboxState, chat: Chat, msg: ChatMessage, change_type: str) -> None:
    """Hand a changed message to the delivery engine as `updated` or `deleted` (non-blocking).

    Edits and reactions are `updated`, a soft delete is `deleted`, an undo is `updated`
    (the message is back with new content). Only subscriptions whose changeType lists that
    type are notified (subscription resource, changeType).
    """
    sb.delivery.chat_message(chat, msg, change_type)


def _touch(sb: SandboxState, chat: Chat, msg: ChatMessage) -> float:
    # Strictly later than the last change: a poller's watermark at the old lastModifiedDateTime must see it.
    now = max(sb.clock.now(), msg.last_modified + 0.001)
    msg.last_modified = now
    sb.mark_dirty()
    return now


def _own(msg: ChatMessage, user_id: str, verb: str) -> None:
    if msg.from_id != user_id:
        raise GraphError(403, "Forbidden", f"Forbidden: only the sender of a message can {verb} it.")


def edit_message(sb: SandboxState, chat: Chat, msg: ChatMessage, user_id: str, content: str,
                 content_type: str) -> ChatMessage:
    """The sender replaces the body; `lastEditedDateTime` and `lastModifiedDateTime` move on."""
    _own(msg, user_id, "edit")
    if msg.deleted is not None:
        raise GraphError(400, "BadRequest", "A deleted message cannot be edited.")
    msg.content, msg.content_type = content, content_type
    msg.edited = _touch(sb, chat, msg)
    log.info("chat_message_edited", chat=chat.id, message=msg.id)
    notify_message_changed(sb, chat, msg, "updated")
    return msg


def soft_delete(sb: SandboxState, chat: Chat, msg: ChatMessage, user_id: str) -> ChatMessage:
    """The sender deletes; the message stays in the chat with `deletedDateTime` and no content."""
    _own(msg, user_id, "delete")
    if msg.deleted is None:
        msg.deleted = _touch(sb, chat, msg)
        log.info("chat_message_deleted", chat=chat.id, message=msg.id)
        notify_message_changed(sb, chat, msg, "deleted")
    return msg


def undo_soft_delete(sb: SandboxState, chat: Chat, msg: ChatMessage, user_id: str) -> ChatMessage:
    _own(msg, user_id, "restore")
    if msg.deleted is not None:
        msg.deleted = None
        _touch(sb, chat, msg)
        log.info("chat_message_restored", chat=chat.id, message=msg.id)
        notify_message_changed(sb, chat, msg, "updated")
    return msg


def check_reaction(value: Any) -> str:
    """`reactionType` as Graph takes it, or 400 naming what it takes."""
    if not isinstance(value, str) or not value.strip():
        raise bad_request("'reactionType' is required: {\"reactionType\": \"👍\"}.")
    kind = reaction_type(value)
    if kind is None:
        raise bad_request(f"Invalid reactionType '{value}'. Supported values are unicode emoji and "
                          f"{', '.join(LEGACY_REACTIONS)}.")
    return kind


def set_reaction(sb: SandboxState, chat: Chat, msg: ChatMessage, user_id: str, kind: str) -> ChatMessage:
    """Any member may react, once per reaction type; setting it again changes nothing."""
    if msg.deleted is not None:
        raise GraphError(400, "BadRequest", "Cannot react to a deleted message.")
    if any(r.user_id == user_id and r.reaction_type == kind for r in msg.reactions):
        return msg
    msg.reactions.append(Reaction(reaction_type=kind, user_id=user_id, created=sb.clock.now()))
    _touch(sb, chat, msg)
    log.info("chat_message_reaction_set", chat=chat.id, message=msg.id)
    notify_message_changed(sb, chat, msg, "updated")
    return msg


def unset_reaction(sb: SandboxState, chat: Chat, msg: ChatMessage, user_id: str, kind: str) -> ChatMessage:
    """Removes only the caller's own reaction of that type; none to remove changes nothing."""
    kept = [r for r in msg.reactions if not (r.user_id == user_id and r.reaction_type == kind)]
    if len(kept) != len(msg.reactions):
        msg.reactions = kept
        _touch(sb, chat, msg)
        log.info("chat_message_reaction_unset", chat=chat.id, message=msg.id)
        notify_message_changed(sb, chat, msg, "updated")
    return msg


def changes_view(sb: SandboxState, msg: ChatMessage) -> dict[str, Any]:
    """A message's edit, deletion and reactions as the control API shows them (UPNs, ISO times)."""
    reactions = []
    for r in msg.reactions:
        user = sb.tenant.users.get(r.user_id)
        reactions.append({"reaction": r.reaction_type, "from": user.upn if user else r.user_id,
                          "created": iso(r.created)})
    return {"edited": iso(msg.edited) if msg.edited is not None else None,
            "deleted": iso(msg.deleted) if msg.deleted is not None else None,
            "last_modified": iso(msg.last_modified), "reactions": reactions}


# --- Graph routes -------------------------------------------------------------------------------------------------
def _target(request: web.Request) -> tuple[SandboxState, Chat, ChatMessage, str]:
    """The chat, message and acting user; `/users/{id}/...` must name the caller."""
    sb = request.app[SANDBOX_KEY]
    who = principal(request)
    if "user_id" in request.match_info:
        resolve_path_user(request)  # 404 for no such user, 403 for someone else
    chat = chat_for(sb, request.match_info["chat_id"], who.oid, outsider=403)
    return sb, chat, find_message(sb, chat, request.match_info["message_id"]), who.oid


@graph_route(scopes=EDIT_SCOPES, limits=WRITE_LIMITS, delegated_only=True)
@graph_errors
async def patch_message(request: web.Request) -> web.Response:
    sb, chat, msg, user_id = _target(request)
    data = await json_body(request)
    if "policyViolation" in data:
        # chatmessage-update: policyViolation is the one property delegated callers cannot update.
        raise bad_request("policyViolation can only be updated with application permissions.")
    content, content_type = message_body(data)
    edit_message(sb, chat, msg, user_id, content, content_type)
    return web.Response(status=204)  # chatmessage-update, delegated: 204 No Content


@graph_route(scopes=DELETE_SCOPES, limits=WRITE_LIMITS, delegated_only=True)
@graph_errors
async def soft_delete_route(request: web.Request) -> web.Response:
    sb, chat, msg, user_id = _target(request)
    soft_delete(sb, chat, msg, user_id)
    return web.Response(status=204)


@graph_route(scopes=DELETE_SCOPES, limits=WRITE_LIMITS, delegated_only=True)
@graph_errors
async def undo_soft_delete_route(request: web.Request) -> web.Response:
    sb, chat, msg, user_id = _target(request)
    undo_soft_delete(sb, chat, msg, user_id)
    return web.Response(status=204)


@graph_route(scopes=REACT_SCOPES, limits=WRITE_LIMITS, delegated_only=True)
@graph_errors
async def set_reaction_route(request: web.Request) -> web.Response:
    sb, chat, msg, user_id = _target(request)
    set_reaction(sb, chat, msg, user_id, check_reaction((await json_body(request)).get("reactionType")))
    return web.Response(status=204)


@graph_route(scopes=REACT_SCOPES, limits=WRITE_LIMITS, delegated_only=True)
@graph_errors
async def unset_reaction_route(request: web.Request) -> web.Response:
    sb, chat, msg, user_id = _target(request)
    unset_reaction(sb, chat, msg, user_id, check_reaction((await json_body(request)).get("reactionType")))
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    """PATCH and the reactions on `/chats/...` as documented; softDelete and undo on `/users/{id}/chats/...`
    as documented. `/me/...` is Graph's alias for the signed-in user's `/users/{id}/...`."""
    out: list[web.RouteDef] = []
    for base in ("/v1.0/chats", "/v1.0/me/chats", "/v1.0/users/{user_id}/chats"):
        item = f"{base}/{{chat_id}}/messages/{{message_id}}"
        out += [web.patch(item, patch_message),
                web.post(f"{item}/setReaction", set_reaction_route),
                web.post(f"{item}/unsetReaction", unset_reaction_route)]
    for base in ("/v1.0/me/chats", "/v1.0/users/{user_id}/chats"):
        item = f"{base}/{{chat_id}}/messages/{{message_id}}"
        out += [web.post(f"{item}/softDelete", soft_delete_route),
                web.post(f"{item}/undoSoftDelete", undo_soft_delete_route)]
    return out
