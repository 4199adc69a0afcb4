"""`session_brief`: the agent's state in a few lines, for the model at the start of a session.

Today's counts (in the sponsor's time zone), the most active chats, open promises, unread
events and subscription health. Short by design: details are one tool call away.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import anyio

from ..tools.base import Args, Tool

if TYPE_CHECKING:
    from ..runtime.app import Runtime

__all__ = ["brief", "tools"]


def brief(runtime: Runtime, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    local = now.astimezone(ZoneInfo(runtime.settings.timezone))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    since = start.strftime("%Y-%m-%dT%H:%M:%S")
    inbound = runtime.inbox.history(since=since, limit=1000)
    outbound = runtime.record.query(since=since, limit=1000)
    busy = Counter(e.chat_id or "mail" for e in inbound) + Counter(r["chat_id"] or "mail" for r in outbound)
    promises = runtime.promises.promised(open_only=True)
    overdue = [p for p in promises if p.due_at() < now]
    # The owner keeps its subscriptions in the inbox (as `agentseat status` reads them): every process sees them.
    raw = runtime.inbox.get_meta("subscriptions")
    subscriptions = {kind: sub.get("state") for kind, sub in (json.loads(raw) if raw else {}).items()}
    return {
        "today": {"date": local.date().isoformat(), "received": len(inbound), "sent": len(outbound),
                  "timezone": runtime.settings.timezone},
        "active_chats": [{"chat_id": chat, "messages": n} for chat, n in busy.most_common(3)],
        "open_promises": {"count": len(promises), "overdue": len(overdue),
                          "next": [{"id": p.id, "due": p.due, "description": p.description[:80]}
                                   for p in promises[:3]]},
        "unread": runtime.inbox.unread_summary()["unread"],
        "subscriptions": subscriptions or "none recorded (poll mode, or not started yet)",
    }


def tools(runtime: Runtime) -> list[Tool]:
    async def session_brief(args: Args) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(brief, runtime)

    return [Tool("session_brief", "The agent's state at a glance: today's counts, busiest chats, open promises, "
                 "unread events, subscription health. Call it first in a session.", Args, session_brief,
                 read_only=True)]
