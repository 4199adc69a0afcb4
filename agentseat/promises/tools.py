"""`add_promise`, `list_promises`, `resolve_promise`: the agent's commitments, reminded when due."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from pydantic import Field

from ..clock.poke import poke
from ..tools.base import Args, Tool
from .due import parse_due

if TYPE_CHECKING:
    from ..runtime.app import Runtime


class AddArgs(Args):
    chat_id: str = Field(min_length=1, description="The chat the promise was made in; the reminder names it.")
    description: str = Field(min_length=1, max_length=2000, description="What was promised, to whom.")
    due: str = Field(min_length=1, description="ISO time, or `in 2 hours`, `tomorrow 9:00`, `friday 14:30` "
                     "(the sponsor's time zone).")


class ListArgs(Args):
    open_only: bool = True


class ResolveArgs(Args):
    id: str = Field(min_length=1, description="The promise's id (from add_promise or list_promises).")
    resolution: str = Field(min_length=1, max_length=2000, description="What became of it: done, dropped, ...")


def tools(runtime: Runtime) -> list[Tool]:
    def _wake() -> None:
        runtime.clock.wake()  # this process owns the clock: look now
        poke(runtime.promises)  # another process does: a datagram wakes it

    async def add(args: AddArgs) -> dict[str, Any]:
        due = parse_due(args.due, runtime.settings.timezone)
        promise = await anyio.to_thread.run_sync(
            lambda: runtime.promises.add(args.chat_id, args.description, due))
        _wake()
        runtime.audit.append("action", "promise_added", promise=promise.id, chat_id=promise.chat_id, due=promise.due)
        return promise.view() | {"timezone": runtime.settings.timezone}

    async def listing(args: ListArgs) -> dict[str, Any]:
        found = await anyio.to_thread.run_sync(lambda: runtime.promises.promised(open_only=args.open_only))
        return {"promises": [p.view() for p in found], "count": len(found)}

    async def resolve(args: ResolveArgs) -> dict[str, Any]:
        promise = await anyio.to_thread.run_sync(runtime.promises.resolve, args.id, args.resolution)
        _wake()
        runtime.audit.append("action", "promise_resolved", promise=promise.id)
        return promise.view()

    return [
        Tool("add_promise", "Remember a promise made in a chat; a `reminder` event arrives when it falls due.",
             AddArgs, add),
        Tool("list_promises", "The agent's promises, soonest due first (open ones unless open_only is false).",
             ListArgs, listing, read_only=True),
        Tool("resolve_promise", "Close a promise with what became of it; no reminder follows.", ResolveArgs, resolve),
    ]
