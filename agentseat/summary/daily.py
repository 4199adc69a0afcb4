"""The daily summary: at `AGENTSEAT_DAILY_SUMMARY_AT` in the sponsor's time zone, a `summary`
event (and, with `AGENTSEAT_DAILY_SUMMARY_MAIL=1`, an HTML mail to the primary sponsor).

A timer of the runtime's clock (clock/scheduler.py): it says when it is next due, and the
day it last ran is kept in the promises store (`summary_last_day`), so a restart neither
repeats nor skips it; one missed while nothing ran is raised at the next start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import structlog

from ..clock.scheduler import Timer
from ..errors import ConfigError
from ..promises.store import Promises
from ..record.store import Record
from ..runtime.events import Event
from ..runtime.inbox import Inbox
from .triage import Day, triage

__all__ = ["DailySummary", "summary_time"]

log = structlog.get_logger(__name__)

LAST_KEY = "summary_last_day"
Mailer = Callable[[str, str], Awaitable[None]]  # (subject, html)


def summary_time(value: str) -> time | None:
    """`HH:MM` as a time; None when empty (off)."""
    if not value.strip():
        return None
    try:
        hour, minute = (int(part) for part in value.strip().split(":"))
        return time(hour, minute)
    except ValueError:
        raise ConfigError(f"AGENTSEAT_DAILY_SUMMARY_AT={value!r} is not HH:MM", hint="for example 17:30") from None


class DailySummary(Timer):
    name = "daily_summary"

    def __init__(self, at: time, zone: str, *, inbox: Inbox, record: Record, promises: Promises,
                 mail: Mailer | None = None) -> None:
        self.at, self.zone = at, ZoneInfo(zone)
        self.inbox, self.record, self.promises, self.mail = inbox, record, promises, mail

    def _today(self, now: datetime) -> datetime:
        local = now.astimezone(self.zone)
        return datetime.combine(local.date(), self.at, tzinfo=self.zone)

    def next_at(self, now: datetime) -> datetime | None:
        today = self._today(now)
        if self.promises.get_meta(LAST_KEY) == today.date().isoformat():
            return datetime.combine(today.date() + timedelta(days=1), self.at, tzinfo=self.zone).astimezone(UTC)
        return today.astimezone(UTC)

    def compose(self, now: datetime) -> tuple[str, Day]:
        since = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
        inbound = self.inbox.history(since=since, limit=1000)
        outbound = self.record.query(since=since, limit=1000)
        promises = self.promises.promised(open_only=False)
        day = triage(inbound, outbound, promises, now)
        open_count = sum(1 for p in promises if p.open)
        return day.text() + f"\nOpen promises: {open_count} (list_promises shows them).", day

    async def fire(self, now: datetime) -> None:
        day_name = self._today(now).date().isoformat()
        text, day = await anyio.to_thread.run_sync(self.compose, now)
        event = Event.summary(day=day_name, text=text, at=self._today(now).astimezone(UTC).isoformat(),
                              received_at=now.isoformat())
        stored = await self.inbox.aappend([event])
        await anyio.to_thread.run_sync(self.promises.set_meta, LAST_KEY, day_name)
        log.info("daily_summary_raised", day=day_name, needs_you=len(day.needs_you), handled=len(day.handled),
                 heads_up=len(day.heads_up), new=bool(stored))
        if stored and self.mail is not None:
            try:
                await self.mail(f"Daily summary {day_name}", day.html(f"Daily summary {day_name}"))
            except Exception as exc:  # the event is raised either way; the mail is a copy
                log.warning("daily_summary_mail_failed", error=getattr(exc, "message", type(exc).__name__))


def sponsor_mailer(graph: Any, sponsor: str) -> Mailer:
    """Mail through `/me/sendMail` (user-sendmail) to `sponsor` (a UPN, or an object id looked up)."""

    async def send(subject: str, body_html: str) -> None:
        address = sponsor
        if "@" not in sponsor:
            user = await graph.get(f"/users/{sponsor}", **{"$select": "mail,userPrincipalName"})
            address = user.get("mail") or user.get("userPrincipalName")
        message = {"subject": subject, "body": {"contentType": "html", "content": body_html},
                   "toRecipients": [{"emailAddress": {"address": address}}]}
        await graph.post("/me/sendMail", {"message": message, "saveToSentItems": True})

    return send
