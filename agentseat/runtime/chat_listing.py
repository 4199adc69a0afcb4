"""Listing the agent's chats and reading a chat's new messages, whatever the tenant allows.

The docs allow `$orderby=lastMessagePreview/createdDateTime desc` on /me/chats (chat-list)
and `$filter=lastModifiedDateTime gt ...` on a chat's messages (chat-list-messages), but
entrabot reports a 400 on the first and an unreliable second on real tenants (issue 11,
variant 3). So:

- the chat list asks for Graph's order; on a 400 it lists every page without ordering and
  sorts locally, then asks for the order again at most once a day;
- a chat is read page by page, newest first, until a message is older than its watermark:
  `$filter` only saves requests, correctness never depends on it. A page that brings back
  messages older than the bound shows the filter was ignored.

Both findings are recorded as tenant facts (`chats_orderby`, `messages_filter`) for `status`
and `doctor`. This module owns the Graph queries and the evidence, not the watermarks or the
events (runtime/poller.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..errors import GraphError
from ..graph.times import parse_graph_time
from ..tenant_facts import TenantFacts

__all__ = ["ChatLister", "ChatRead", "ORDERBY_RETRY_SECONDS", "ORDERED_CHAT_PARAMS", "PLAIN_CHAT_PARAMS",
           "read_messages_since"]

log = structlog.get_logger(__name__)

ORDERED_CHAT_PARAMS = {
    "$expand": "lastMessagePreview",
    "$orderby": "lastMessagePreview/createdDateTime desc",
    "$top": "50",
}
PLAIN_CHAT_PARAMS = {"$expand": "lastMessagePreview", "$top": "50"}
#: A tenant that refused `$orderby` is asked again this long after (it may start to allow it).
ORDERBY_RETRY_SECONDS = 86_400.0
_NEVER = float("-inf")


def preview_time(chat: dict[str, Any]) -> float:
    """When the chat's newest message was created; chats without one sort last."""
    created = (chat.get("lastMessagePreview") or {}).get("createdDateTime")
    try:
        return parse_graph_time(str(created)) if created else _NEVER
    except ValueError:
        return _NEVER


def modified_time(message: dict[str, Any]) -> float | None:
    raw = message.get("lastModifiedDateTime") or message.get("createdDateTime")
    try:
        return parse_graph_time(str(raw)) if raw else None
    except ValueError:
        return None


class ChatLister:
    """Pages of the agent's chats, newest message first, with Graph's order or our own.

    `state` is the poller's persisted dict; this class keeps `orderby_rejected_at` (epoch
    seconds) in it, so a restart does not ask a refusing tenant again before the day is over.
    """

    def __init__(self, graph: Any, state: dict[str, Any], facts: TenantFacts | None = None, *,
                 clock: Any = time.time) -> None:
        self._graph = graph
        self._state = state
        self._facts = facts
        self._clock = clock

    @property
    def ordered(self) -> bool:
        """Whether the next listing asks Graph for the order (False while a refusal is fresh)."""
        rejected = self._state.get("orderby_rejected_at")
        return rejected is None or self._clock() - float(rejected) >= ORDERBY_RETRY_SECONDS

    async def pages(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield pages of chats, newest message first; unordered listings come as one sorted page."""
        if self.ordered:
            async with aclosing(self._graph.pages("/me/chats", dict(ORDERED_CHAT_PARAMS))) as listing:
                try:
                    first = await anext(listing, None)
                except GraphError as exc:
                    if exc.status != 400:
                        raise
                    self._rejected(exc)
                else:
                    self._record("chats_orderby", "supported")
                    self._state.pop("orderby_rejected_at", None)
                    if first is not None:
                        yield first
                        async for page in listing:
                            yield page
                    return
        yield await self._all_sorted()

    async def _all_sorted(self) -> list[dict[str, Any]]:
        """Every page without `$orderby`, each chat once (a chat that moves while we page may
        be listed twice), sorted as Graph would have: newest message first."""
        chats: dict[str, dict[str, Any]] = {}
        async for page in self._graph.pages("/me/chats", dict(PLAIN_CHAT_PARAMS)):
            for chat in page:
                chat_id = str(chat.get("id"))
                if chat_id not in chats or preview_time(chat) > preview_time(chats[chat_id]):
                    chats[chat_id] = chat
        return sorted(chats.values(), key=lambda c: (-preview_time(c), str(c.get("id"))))

    def _rejected(self, exc: GraphError) -> None:
        log.warning("chats_orderby_rejected", status=exc.status, code=exc.code,
                    retry_in_hours=ORDERBY_RETRY_SECONDS / 3600)
        self._state["orderby_rejected_at"] = self._clock()
        self._record("chats_orderby", "rejected")

    def _record(self, key: str, value: str) -> None:
        if self._facts is not None and self._facts.get(key) != value:
            self._facts.record(key, value)


@dataclass
class ChatRead:
    """What one read of a chat found."""

    #: Messages modified at or after the bound, newest first (the bound itself is kept: a message
    #: in the same instant as the watermark is deduped by the inbox, never lost).
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: A message strictly older than the bound came back: Graph did not apply `$filter`.
    older_seen: bool = False
    #: Distinct modification times among `messages` (two or more: the chat holds a message older
    #: than the newest, which a later read can use as evidence of the filter).
    times: set[float] = field(default_factory=set)
    requests: int = 0


async def read_messages_since(graph: Any, chat_path: str, bound: str) -> ChatRead:
    """Every message of `chat_path` (a quoted `/chats/{id}`) modified at or after `bound`.

    Newest first, page by page, stopping at the first page that reaches older messages:
    with the filter applied there are none, and without it that page is where the new ones end.
    """
    floor = parse_graph_time(bound)
    params = {
        "$orderby": "lastModifiedDateTime desc",
        # Graph applies $filter only with a $orderby on the same property (chat-list-messages).
        "$filter": f"lastModifiedDateTime gt {bound}",
        "$top": "50",
    }
    read = ChatRead()
    async with aclosing(graph.pages(f"{chat_path}/messages", params)) as pages:
        async for page in pages:
            read.requests += 1
            for message in page:
                modified = modified_time(message)
                if modified is not None and modified < floor:
                    read.older_seen = True
                    continue  # ordered newest first: only older ones follow
                read.messages.append(message)
                if modified is not None:
                    read.times.add(modified)
            if read.older_seen:
                break
    return read
