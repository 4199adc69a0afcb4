"""The triage rules of the daily summary, as plain code.

Each conversation of the day is one *thread*: a chat (or channel) by its id, a mail by its
message id. Its newest inbound message decides where the thread goes:

1. *handled*: the agent said something in that thread (a send, reply, edit or reaction
   in the same chat) after the newest inbound message.
2. *needs you*: not answered, and from a sponsor, or in a one-on-one chat, or an @mention
   of the agent (in a chat or a channel), or a mail.
3. *heads-up*: not answered, and only overheard: group chatter and channel posts that did
   not mention the agent (and are not a sponsor's), edits and deletions.

Promises: open ones overdue by a day or more are *needs you*; open ones due in the next
24 hours (or overdue by less than a day) are *heads-up*; promises resolved today are
*handled*. Reminders and earlier summaries are the agent's own and are left out.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..promises.store import Promise
from ..runtime.events import Event

__all__ = ["Day", "Item", "triage"]

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Item:
    thread: str
    line: str


@dataclass
class Day:
    needs_you: list[Item] = field(default_factory=list)
    handled: list[Item] = field(default_factory=list)
    heads_up: list[Item] = field(default_factory=list)

    def sections(self) -> list[tuple[str, list[Item]]]:
        return [("Needs you", self.needs_you), ("Handled", self.handled), ("Heads-up", self.heads_up)]

    def text(self) -> str:
        out = []
        for title, items in self.sections():
            out.append(f"{title} ({len(items)}):")
            out += [f"- {item.line}" for item in items] or ["- nothing"]
        return "\n".join(out)

    def html(self, title: str) -> str:
        parts = [f"<h2>{html.escape(title)}</h2>"]
        for name, items in self.sections():
            lines = "".join(f"<li>{html.escape(item.line)}</li>" for item in items) or "<li>nothing</li>"
            parts.append(f"<h3>{html.escape(name)} ({len(items)})</h3><ul>{lines}</ul>")
        return "".join(parts)


def _when(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _thread(event: Event) -> str:
    return f"mail:{event.message_id}" if event.kind == "mail" else str(event.chat_id)


def _who(event: Event) -> str:
    return event.sender_name or event.sender_upn or event.sender_id or "someone"


def _snippet(text: str, limit: int = 80) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[:limit - 1] + "…"


def _urgent(event: Event) -> bool:
    return (event.trust == "sponsor" or event.kind == "mail" or event.mentioned
            or (event.kind == "teams" and event.chat_type in ("oneOnOne", "")))


def triage(inbound: list[Event], outbound: list[dict[str, Any]], promises: list[Promise], now: datetime) -> Day:
    """The day's interactions and the promises, each in exactly one section."""
    day = Day()
    said: dict[str, datetime] = {}  # thread -> the agent's last word in it
    for row in outbound:
        thread = row.get("chat_id") or (f"mail:{row['thread_id']}" if row.get("thread_id") else "")
        if thread:
            said[thread] = max(said.get(thread, datetime.min.replace(tzinfo=UTC)), _when(row["at"]))
    newest: dict[str, Event] = {}
    for event in inbound:
        if event.kind in ("reminder", "summary"):
            continue
        thread = _thread(event)
        if thread not in newest or _when(event.created_at) >= _when(newest[thread].created_at):
            newest[thread] = event
    for thread, event in sorted(newest.items(), key=lambda kv: _when(kv[1].created_at)):
        what = f"{event.subject}: " if event.kind == "mail" and event.subject else ""
        line = f"{_who(event)} ({event.kind}): {what}{_snippet(event.text)}"
        if thread in said and said[thread] >= _when(event.created_at):
            day.handled.append(Item(thread, line))
        elif event.kind in ("teams", "mail", "channel") and _urgent(event):
            day.needs_you.append(Item(thread, line))
        else:
            day.heads_up.append(Item(thread, line))
    for promise in promises:
        due = promise.due_at()
        if promise.resolved_at is not None:
            if now - _when(promise.resolved_at) < DAY:
                day.handled.append(Item(promise.chat_id, f"promise kept: {_snippet(promise.description)} "
                                                         f"({promise.resolution})"))
            continue
        if now - due >= DAY:
            day.needs_you.append(Item(promise.chat_id, f"promise overdue since {promise.due}: "
                                                       f"{_snippet(promise.description)} ({promise.id})"))
        elif due - now < DAY:
            day.heads_up.append(Item(promise.chat_id, f"promise due {promise.due}: {_snippet(promise.description)} "
                                                      f"({promise.id})"))
    return day
