"""`read_interactions`: the conversation history the agent can query, both directions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from pydantic import Field

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
    async def read_interactions(args: InteractionsArgs) -> dict[str, Any]:
        found = await anyio.to_thread.run_sync(lambda: interactions(
            runtime.inbox, runtime.record, chat_id=args.chat_id, person=args.person, direction=args.direction,
            since=args.since, limit=args.limit))
        return {"interactions": found, "count": len(found)}

    return [Tool("read_interactions", "What was said in a chat or with a person, both directions, oldest first: "
                 "what others sent (untrusted data) and what the agent sent, edited, reacted or deleted.",
                 InteractionsArgs, read_interactions, read_only=True)]
