"""One conversation history, both directions: the inbox (inbound) joined with the record (outbound).

Inbound text is returned wrapped as untrusted, as `read_teams_messages` returns it; the
agent's own words are returned as they were sent. Entries come oldest first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from ..errors import ToolInputError
from ..runtime.inbox import Event, Inbox
from ..tools.base import parse_time, sender_label, wrap_untrusted
from .store import Record

__all__ = ["Direction", "interactions", "since_bound"]

Direction = Literal["inbound", "outbound", "both"]


def since_bound(since: str | None) -> str | None:
    """`since` (ISO 8601) as a UTC prefix both stores compare as text: `YYYY-MM-DDTHH:MM:SS`."""
    if not since:
        return None
    moment = parse_time(since)
    if moment is None:
        raise ToolInputError(f"since: {since!r} is not an ISO 8601 time", hint="for example 2026-05-01T09:00:00Z")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _inbound(event: Event) -> dict[str, Any]:
    source = f"email:{event.message_id}" if event.kind == "mail" else f"teams:{event.chat_id}"
    who = sender_label(event.sender_name, event.sender_upn)
    view: dict[str, Any] = {"direction": "inbound", "at": event.created_at, "kind": event.kind,
                            "chat_id": event.chat_id, "message_id": event.message_id, "from": who,
                            "trust": event.trust,
                            "text": wrap_untrusted(event.text, source=source, sender=who, at=event.created_at,
                                                   trust=event.trust)}
    if event.subject:
        view["subject"] = wrap_untrusted(event.subject, source=source, sender=who, at=event.created_at,
                                         trust=event.trust)
    return view


def _outbound(row: dict[str, Any]) -> dict[str, Any]:
    view = {"direction": "outbound", "at": row["at"], "kind": row["medium"], "action": row["action"],
            "chat_id": row["chat_id"] or None, "message_id": row["message_id"] or None, "text": row["text"]}
    for key in ("thread_id", "subject"):
        if row[key]:
            view[key] = row[key]
    if row["recipients"]:
        view["to"] = row["recipients"]
    return view


def _moment(view: dict[str, Any]) -> datetime:
    return parse_time(view["at"]) or datetime.min.replace(tzinfo=UTC)


def interactions(inbox: Inbox, record: Record, *, chat_id: str | None = None, person: str | None = None,
                 direction: Direction = "both", since: str | None = None, limit: int = 20,
                 person_ids: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The newest `limit` interactions matching, oldest first. `person_ids`: other names of
    `person` (its object id, looked up in Graph), since chat messages carry ids, not addresses."""
    bound = since_bound(since)
    views: list[dict[str, Any]] = []
    found: dict[int, Event] = {}
    for name in (person, *person_ids) if person else (None,):
        for event in inbox.history(chat_id=chat_id, person=name, since=bound, limit=limit):
            found[event.seq] = event
    if direction in ("both", "inbound"):
        views += [_inbound(e) for e in found.values()]
    if direction in ("both", "outbound"):
        rows = {r["id"]: r for r in record.query(chat_id=chat_id, person=person, since=bound, limit=limit)}
        if person:  # what the agent said in its one-on-one chats with them (chat messages name no recipient)
            for chat in {e.chat_id for e in found.values() if e.chat_type == "oneOnOne" and e.chat_id}:
                if chat_id in (None, chat):
                    rows |= {r["id"]: r for r in record.query(chat_id=chat, since=bound, limit=limit)}
        views += [_outbound(r) for r in rows.values()]
    views.sort(key=_moment)
    return views[-limit:]
