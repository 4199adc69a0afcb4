"""Teams tools that act on a message already sent: edit and delete the agent's own, react and unreact.

Each first reads the message (GET /chats/{id}/messages/{id}): that is where "not the agent's"
is refused with a clear error before Graph is asked to change anything, and where a wrong
id or a chat the agent is not in surfaces as a plain 404/403 instead of a refused write
(which the Graph client would otherwise wait on while grants may still be replicating).
None of these is risky: they change only the agent's own messages and reactions.
Graph routes: chatmessage-update (PATCH, delegated), chatmessage-softdelete
(`/users/{id}/chats/{id}/messages/{id}/softDelete`), chatmessage-setreaction / -unsetreaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import structlog
from pydantic import Field

from ..errors import GraphError, NotFoundError, ToolInputError
from ..graph.reactions import accepted, reaction_type
from .base import Args, Tool, check_size, message_body, neutralise, not_a_member

if TYPE_CHECKING:
    from ..runtime.app import Runtime

log = structlog.get_logger(__name__)

Format = Literal["text", "markdown"]
_REACTION_HELP = ("like, heart, laugh, surprised, sad, angry, or one unicode emoji (for example 👍 🎉 ✅); "
                  "Teams shows it under the message")


class MessageArgs(Args):
    chat_id: str = Field(min_length=1, description="The chat the message is in.")
    message_id: str = Field(min_length=1, description="The message's id (from a send, a reply, "
                            "read_teams_messages or an event).")


class EditArgs(MessageArgs):
    text: str = Field(min_length=1, description="The new text; it replaces the whole message.")
    format: Format = Field("text", description="\"text\" (default) or \"markdown\".")


class ReactArgs(MessageArgs):
    reaction: str = Field(min_length=1, description=_REACTION_HELP + ".")


def _item(chat_id: str, message_id: str) -> str:
    return f"/chats/{quote(chat_id, safe=':@.')}/messages/{quote(message_id, safe='')}"


class MessageActions:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._graph = runtime.graph
        self._settings = runtime.settings

    async def _message(self, chat_id: str, message_id: str) -> dict[str, Any]:
        """The message as Graph has it; a wrong id or chat is a tool error that says which."""
        try:
            msg = await self._graph.get(_item(chat_id, message_id))
        except NotFoundError as exc:
            raise ToolInputError(f"no message {message_id!r} in chat {chat_id!r}",
                                 hint="take ids from read_teams_messages, an event, or a send's result") from exc
        except GraphError as exc:
            raise not_a_member(exc, chat_id) or exc
        if not isinstance(msg, dict):
            raise GraphError(f"GET {_item(chat_id, message_id)} returned no message", status=502)
        return msg

    async def _own(self, chat_id: str, message_id: str, verb: str) -> dict[str, Any]:
        """The message, if the agent sent it and it is not deleted; anyone else's is refused here."""
        msg = await self._message(chat_id, message_id)
        user = (msg.get("from") or {}).get("user") or {}
        if not self._rt.policy.is_own(str(user.get("id") or "")):
            who = neutralise(str(user.get("displayName") or user.get("id") or "someone else"))
            log.info("message_action_refused", action=verb, chat=chat_id, reason="not_own")
            raise ToolInputError(f"refused: message {message_id!r} was sent by {who}, not by the agent; the agent "
                                 f"can {verb} only its own messages",
                                 hint="to answer it, reply_in_chat; to acknowledge it, react")
        if msg.get("deletedDateTime"):
            raise ToolInputError(f"message {message_id!r} has been deleted", hint="send a new message instead")
        return msg

    def _refused(self, exc: GraphError, what: str) -> ToolInputError:
        return ToolInputError(f"Teams refused to {what}: {exc.message}",
                              hint="check the ids; read_teams_messages shows the chat's messages")

    async def edit(self, args: EditArgs) -> dict[str, Any]:
        body = message_body(args.text, args.format)
        check_size(body["content"])
        await self._own(args.chat_id, args.message_id, "edit")
        try:
            await self._graph.patch(_item(args.chat_id, args.message_id), {"body": body})
        except GraphError as exc:
            if exc.status in (400, 403, 404):
                raise self._refused(exc, "edit the message") from exc
            raise
        log.info("teams_message_edited", chat=args.chat_id, format=args.format)
        return {"edited": True, "chat_id": args.chat_id, "message_id": args.message_id,
                "note": "an edit notifies no one; for a finished answer people should see, send a new reply"}

    async def delete(self, args: MessageArgs) -> dict[str, Any]:
        await self._own(args.chat_id, args.message_id, "delete")
        me = quote(self._settings.agent_user_id, safe="")
        try:
            await self._graph.post(f"/users/{me}{_item(args.chat_id, args.message_id)}/softDelete")
        except GraphError as exc:
            if exc.status in (400, 403, 404):
                raise self._refused(exc, "delete the message") from exc
            raise
        log.info("teams_message_deleted", chat=args.chat_id)
        return {"deleted": True, "chat_id": args.chat_id, "message_id": args.message_id}

    async def _reaction(self, args: ReactArgs, action: str) -> dict[str, Any]:
        kind = reaction_type(args.reaction)
        if kind is None:
            raise ToolInputError(f"{args.reaction!r} is not a Teams reaction",
                                 hint=f"use one of: {accepted()}")
        msg = await self._message(args.chat_id, args.message_id)
        if msg.get("deletedDateTime"):
            raise ToolInputError(f"message {args.message_id!r} has been deleted", hint="there is nothing to react to")
        try:
            await self._graph.post(f"{_item(args.chat_id, args.message_id)}/{action}", {"reactionType": kind})
        except GraphError as exc:
            if exc.status in (400, 403, 404):
                raise self._refused(exc, f"{'add' if action == 'setReaction' else 'remove'} the reaction") from exc
            raise
        log.info("teams_reaction", action=action, chat=args.chat_id)
        return {"chat_id": args.chat_id, "message_id": args.message_id, "reaction": kind}

    async def react(self, args: ReactArgs) -> dict[str, Any]:
        return {"reacted": True, **await self._reaction(args, "setReaction")}

    async def unreact(self, args: ReactArgs) -> dict[str, Any]:
        return {"unreacted": True, **await self._reaction(args, "unsetReaction")}


def tools(runtime: Runtime) -> list[Tool]:
    t = MessageActions(runtime)
    return [
        Tool("edit_message", "Edit one of the agent's own Teams messages (for example a \"working…\" note turned "
             "into progress). Refused for anyone else's message. An edit notifies no one, so send a finished "
             "answer as a new reply (reply_in_chat) rather than only editing.", EditArgs, t.edit),
        Tool("delete_message", "Delete one of the agent's own Teams messages (Teams shows \"This message has been "
             "deleted\"). Refused for anyone else's message.", MessageArgs, t.delete),
        Tool("react", "React to a Teams message: " + _REACTION_HELP + ". A quick way to acknowledge a message.",
             ReactArgs, t.react),
        Tool("unreact", "Remove a reaction the agent added to a Teams message.", ReactArgs, t.unreact),
    ]
