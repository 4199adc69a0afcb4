"""`agentseat inbox`: the agent's inbound events as the person at the terminal sees them.

It lists unread events (or, with `--all`, the newest events read or not) from the
durable inbox, one line each with a preview, or as JSON. It reads and changes nothing:
an event listed here is still unread for the agent. It also formats the unread summary
that `agentseat status` and the `status` tool show. Messages held by the access policy
(`access.db`, never pushed) are listed after the events.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from datetime import datetime, timezone
from typing import Any, TextIO

from ..config import Settings
from .events import Event
from .inbox import Inbox

#: Roughly one terminal line per event.
PREVIEW_CHARS = 80
_SPACE = re.compile(r"\s+")


def age_seconds(at: str | None, now: datetime | None = None) -> int | None:
    """Whole seconds since the ISO time `at`; None when there is none or it cannot be read."""
    if not at:
        return None
    try:
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0, int(((now or datetime.now(timezone.utc)) - moment).total_seconds()))


def format_age(seconds: int | None) -> str:
    """`45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`: precise enough to tell fresh from forgotten."""
    if seconds is None:
        return "unknown"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return f"{seconds} s"
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def unread_status(summary: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The inbox's `unread_summary()` with the oldest unread event's age added."""
    return {**summary, "oldest_unread_age_seconds": age_seconds(summary.get("oldest_unread_at"), now)}


def unread_line(status: dict[str, Any]) -> str:
    """`3 (oldest #12, received 2 h 5 min ago)` or `none`."""
    if not status["unread"]:
        return "none"
    return (f"{status['unread']} (oldest #{status['oldest_unread_seq']}, received "
            f"{format_age(status['oldest_unread_age_seconds'])} ago)")


def _printable(text: str) -> str:
    # Message text is anyone's: control, format (bidi override) and other C* characters could
    # move the cursor or reorder what the terminal shows, so each becomes a space.
    return "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)


def preview(event: Event, limit: int = PREVIEW_CHARS) -> str:
    """One line of the event: the subject and text of a mail, the text of a chat message."""
    text = f"{event.subject or '(no subject)'}: {event.text}" if event.kind == "mail" else event.text
    line = _SPACE.sub(" ", _printable(text)).strip()
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def _row(event: Event, read_at: str | None) -> dict[str, Any]:
    return {"seq": event.seq, "kind": event.kind, "received_at": event.received_at, "created_at": event.created_at,
            "from": {"name": event.sender_name, "upn": event.sender_upn, "id": event.sender_id},
            "trust": event.trust, "confirmed": event.confirmed, "chat_id": event.chat_id,
            "message_id": event.message_id, "subject": event.subject, "read_at": read_at,
            "preview": preview(event), "text": event.text}


def collect(inbox: Inbox, *, everything: bool = False, limit: int = 50) -> dict[str, Any]:
    """The listing as data: the unread summary and the events (unread oldest first, or with
    `everything` the newest `limit` events, read or not, in seq order)."""
    if everything:
        rows = [_row(entry.event, entry.read_at) for entry in inbox.entries(limit=limit, newest=True)]
    else:
        rows = [_row(event, None) for event in inbox.unread(limit=limit)]
    return {"unread": unread_status(inbox.unread_summary()), "all": everything, "events": rows}


def _line(row: dict[str, Any]) -> str:
    sender = _printable(row["from"]["upn"] or row["from"]["name"] or row["from"]["id"] or "unknown")
    trust = row["trust"] if row["confirmed"] else f"{row['trust']}?"
    state = "unread" if row["read_at"] is None else "read"
    return (f"#{row['seq']:<5} {row['kind']:<5} {row['received_at'][:16].replace('T', ' ')}  {state:<6} "
            f"{sender} ({trust})  {row['preview']}")


def render(listing: dict[str, Any], out: TextIO) -> None:
    """The listing as text: a header line, then one line per event."""
    unread, rows = listing["unread"], listing["events"]
    print(f"unread: {unread_line(unread)}", file=out)
    if not rows:
        print("no events" if listing["all"] else "nothing unread", file=out)
        return
    for row in rows:
        print(_line(row), file=out)
    if not listing["all"] and unread["unread"] > len(rows):
        print(f"… and {unread['unread'] - len(rows)} more unread (--limit to see more)", file=out)
    if any(not row["confirmed"] for row in rows):
        print("trust marked ? was taken from a notification, not confirmed with Graph", file=out)


def show_inbox(settings: Settings, *, everything: bool = False, limit: int = 50, as_json: bool = False,
               out: TextIO | None = None) -> int:
    """`agentseat inbox`: print the listing; 0 always (an empty inbox is a state, not an error)."""
    out = out or sys.stdout
    path = settings.state_dir / "inbox.db"
    if not path.exists():
        listing: dict[str, Any] = {"unread": unread_status({"unread": 0, "oldest_unread_at": None,
                                                           "oldest_unread_seq": None}),
                                   "all": everything, "events": []}
    else:
        with Inbox(path) as inbox:
            listing = collect(inbox, everything=everything, limit=limit)
    listing["held"] = held_rows(settings, limit)
    if as_json:
        # ASCII escapes: raw bidi or control characters from a message must not reach a terminal.
        print(json.dumps(listing, ensure_ascii=True, indent=1), file=out)
    else:
        render(listing, out)
        render_held(listing["held"], out)
    return 0


def held_rows(settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    """Messages the access policy holds (not in the inbox: never pushed), oldest first."""
    from ..access import held_messages

    if not (settings.state_dir / "access.db").exists():
        return []
    return [{**_row(h.event, None), "seq": None, "held": h.n} for h in held_messages(settings, limit)]


def render_held(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        return
    how = "`agentseat access approve CODE|SENDER` lets the sender through"
    print(f"held by the access policy ({len(rows)}), not shown to the agent; {how}:", file=out)
    for row in rows:
        sender = _printable(row["from"]["upn"] or row["from"]["name"] or row["from"]["id"] or "unknown")
        at = row["received_at"][:16].replace("T", " ")
        print(f"held  {row['kind']:<5} {at}  {sender} ({row['trust']})  {row['preview']}", file=out)
