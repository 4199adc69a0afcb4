"""`send_card`: an Adaptive Card (given, or made from a template) posted in a chat.

Graph route: chat-post-messages, "Example: Send a card" — the card travels as an attachment
`{id, contentType: "application/vnd.microsoft.card.adaptive", content: <card JSON as a string>}`
and the html body holds `<attachment id="{id}"></attachment>` where Teams draws it.
The card is checked first (agentseat.adaptive_card), so an invalid one is a tool error that
names its JSON path and nothing is sent.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import structlog
from pydantic import Field

from ..cards.check import MAX_CARD_BYTES, CardError, check_card
from ..cards.templates import TemplateError, describe, render
from ..errors import GraphError, NotFoundError, ToolInputError
from .base import Args, Tool

if TYPE_CHECKING:
    from ..runtime.app import Runtime

log = structlog.get_logger(__name__)

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
Template = Literal["status", "task_list", "build_result"]


class CardArgs(Args):
    chat_id: str = Field(min_length=1, description="The chat to post the card in (from list_chats or an event).")
    card: dict[str, Any] | str | None = Field(
        None, description="An Adaptive Card (JSON object, or a JSON string): type \"AdaptiveCard\", version "
        "\"1.5\" or lower, body and actions. Give this or template.")
    template: Template | None = Field(None, description="A ready card instead of `card`; fill it with `fields`. "
                                      + describe() + ".")
    fields: dict[str, Any] | None = Field(None, description="The template's fields, e.g. {\"title\": \"Deploy\", "
                                          "\"status\": \"done\"}; task_list tasks are strings or "
                                          "{\"title\", \"done\"}; facts is {label: value}.")


def _card_of(args: CardArgs) -> dict[str, Any]:
    if (args.card is None) == (args.template is None):
        raise ToolInputError("give exactly one of card and template",
                             hint="card for your own Adaptive Card JSON; template + fields for a ready one")
    if args.template is not None:
        try:
            card = render(args.template, args.fields or {})
        except TemplateError as exc:
            raise ToolInputError(str(exc), hint=f"templates and their fields: {describe()}") from exc
    else:
        if args.fields:
            raise ToolInputError("fields go with a template, not with card", hint="put the values into the card")
        card = args.card  # type: ignore[assignment]
        if isinstance(card, str):
            try:
                card = json.loads(card)
            except json.JSONDecodeError as exc:
                raise ToolInputError(f"card is not valid JSON: {exc}", hint="send the card as a JSON object") from exc
    try:
        return check_card(card)
    except CardError as exc:
        raise ToolInputError(f"invalid Adaptive Card: {exc}",
                             hint="fix the card at those paths (Teams supports Adaptive Cards up to version 1.5, "
                             f"about {MAX_CARD_BYTES // 1024} KB), or use a template") from exc


class Cards:
    def __init__(self, runtime: Runtime) -> None:
        self._graph = runtime.graph

    async def send(self, args: CardArgs) -> dict[str, Any]:
        card = _card_of(args)
        attachment_id = uuid.uuid4().hex
        payload = {
            "body": {"contentType": "html", "content": f"<attachment id=\"{attachment_id}\"></attachment>"},
            "attachments": [{"id": attachment_id, "contentType": CARD_TYPE, "contentUrl": None,
                             "content": json.dumps(card, ensure_ascii=False), "name": None, "thumbnailUrl": None}],
        }
        try:
            msg = await self._graph.post(f"/chats/{quote(args.chat_id, safe=':@.')}/messages", payload)
        except NotFoundError as exc:
            raise ToolInputError(f"no chat {args.chat_id!r} that the agent is a member of",
                                 hint="use list_chats for chat ids") from exc
        except GraphError as exc:
            if exc.status in (400, 403):
                raise ToolInputError(f"Teams refused the card: {exc.message}",
                                     hint="check the chat id and the card") from exc
            raise
        log.info("teams_card_sent", chat=args.chat_id, template=args.template)
        return {"sent": True, "chat_id": args.chat_id, "message_id": msg.get("id"),
                "created_at": msg.get("createdDateTime"), "attachment_id": attachment_id}


def tools(runtime: Runtime) -> list[Tool]:
    c = Cards(runtime)
    return [Tool("send_card", "Post an Adaptive Card (version 1.5 or lower, as Teams supports) in a Teams chat: "
                 "your own card JSON, or a template (status, task_list, build_result) filled with fields. "
                 "The card is checked first; an invalid one is refused with the JSON path of each problem.",
                 CardArgs, c.send)]
