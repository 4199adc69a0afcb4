"""`read_interactions`: the conversation history the agent can query, both directions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
from pydantic import Field

from ..errors import AgentSeatError
from ..tools.base import Args, Tool
from .history import Direction, interactions

if TYPE_CHECKING:
    from ..runtime.app import Runtime


class InteractionsArgs(Args):
    chat_id: str | None = Field(default=None, description="Only this chat or channel.")
    person: str | None = Field(default=None, description="Only messages from (or mail to) this person: UPN, id or name.")
    direction: Direction = Field(default="both", description="inbound, outbound or both.")
    since: str | None = Field(default=None, description="ISO 8601 time; only what happened after it.")
    limit: int = Field(default=20, ge=1, le=200)


def tools(runtime: Runtime) -> list[Tool]:
    async def person_ids(person: str | None) -> tuple[str, ...]:
        # Chat messages name their sender by object id and display name only: find the id of an address.
        if not person or "@" not in person:
            return ()
        try:
            user = await runtime.graph.get(f"/users/{quote(person, safe='@')}", **{"$select": "id"})
        except AgentSeatError:
            return ()
        return (str(user.get("id") or ""),) if isinstance(user, dict) and user.get("id") else ()

    async def read_interactions(args: InteractionsArgs) -> dict[str, Any]:
        ids = await person_ids(args.person)
        found = await anyio.to_thread.run_sync(lambda: interactions(
            runtime.inbox, runtime.record, chat_id=args.chat_id, person=args.person, direction=args.direction,
            since=args.since, limit=args.limit, person_ids=ids))
        return {"interactions": found, "count": len(found)}

    return [Tool("read_interactions", "What was said in a chat or with a person, both directions, oldest first: "
                 "what others sent (untrusted data) and what the agent sent, edited, reacted or deleted.",
                 InteractionsArgs, read_interactions, read_only=True)]
