"""The daily summary on a recorded day: each interaction in the right section; raised once a day."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from agentseat.clock import Clock
from agentseat.promises import Promises
from agentseat.record import Outbound, Record
from agentseat.runtime.inbox import Event, Inbox
from agentseat.summary import triage
from agentseat.summary.daily import DailySummary
from agentseat.tools.channel import envelope

NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def _at(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat()


def _teams(chat: str, mid: str, who: str, trust: str, text: str, hours_ago: float, *, chat_type: str = "oneOnOne",
           mentioned: bool = False) -> Event:
    return Event.teams(chat_id=chat, message_id=mid, sender_id=f"id-{who}", sender_upn=f"{who}@contoso.com",
                       sender_name=who.title(), trust=trust, text=text, created_at=_at(hours_ago), source="poll",
                       confirmed=True, chat_type=chat_type, mentioned=mentioned)  # type: ignore[arg-type]


def _recorded_day(tmp_path: Path) -> tuple[Inbox, Record, Promises]:
    inbox, record, promises = Inbox(tmp_path / "inbox.db"), Record(tmp_path / "record.db"), Promises(tmp_path / "p.db")
    inbox.append([
        _teams("19:ada", "1", "ada", "sponsor", "Please send the Q3 figures", 6),  # answered below: handled
        _teams("19:bob", "2", "bob", "colleague", "Can you review my draft?", 5),  # unanswered DM: needs you
        _teams("19:grp", "3", "cy", "colleague", "lunch anyone?", 4, chat_type="group"),  # overheard: heads-up
        _teams("19:grp2", "4", "dee", "colleague", "@agent status?", 3, chat_type="group", mentioned=True),  # needs you
        _teams("19:ada2", "5", "ada", "sponsor", "thanks! one more thing", 2),  # sponsor, unanswered: needs you
        Event.mail(message_id="m1", sender_id="id-eve", sender_upn="eve@contoso.com", sender_name="Eve",
                   trust="colleague", text="Invoice attached", subject="Invoice", created_at=_at(1), source="poll",
                   confirmed=True),  # mail, unanswered: needs you
    ])
    record.add(Outbound("send", "teams", "19:ada", message_id="9", text="Here they are"), at=NOW - timedelta(hours=5))
    overdue = promises.add("19:ada", "send the board deck", NOW - timedelta(days=2), now=NOW - timedelta(days=3))
    soon = promises.add("19:bob", "review Bob's draft", NOW + timedelta(hours=3), now=NOW)
    promises.add("19:bob", "quarterly check", NOW + timedelta(days=30), now=NOW)
    kept = promises.add("19:ada", "book the room", NOW - timedelta(hours=8), now=NOW - timedelta(days=1))
    promises.resolve(kept.id, "booked", now=NOW - timedelta(hours=7))
    assert overdue and soon
    return inbox, record, promises


def test_each_interaction_lands_in_its_section(tmp_path: Path) -> None:
    inbox, record, promises = _recorded_day(tmp_path)
    day = triage(inbox.history(limit=100), record.query(limit=100), promises.promised(open_only=False), NOW)
    assert [i.thread for i in day.needs_you] == ["19:bob", "19:grp2", "19:ada2", "mail:m1", "19:ada"]
    assert "overdue" in day.needs_you[-1].line and "board deck" in day.needs_you[-1].line
    assert [i.thread for i in day.handled] == ["19:ada", "19:ada"]
    assert "Q3 figures" in day.handled[0].line and "promise kept: book the room" in day.handled[1].line
    assert [i.thread for i in day.heads_up] == ["19:grp", "19:bob"]
    assert "review Bob's draft" in day.heads_up[1].line
    assert "<h3>Needs you (5)</h3>" in day.html("Daily summary")
    for store in (inbox, record, promises):
        store.close()


async def test_the_summary_hour_raises_one_summary_event_a_day(tmp_path: Path) -> None:
    inbox, record, promises = _recorded_day(tmp_path)
    mailed: list[tuple[str, str]] = []

    async def mail(subject: str, body: str) -> None:
        mailed.append((subject, body))

    now = NOW - timedelta(hours=1)  # 16:00 UTC = 17:00 in Berlin: before 17:30
    timer = DailySummary(time(17, 30), "Europe/Berlin", inbox=inbox, record=record, promises=promises, mail=mail)
    clock = Clock(promises, inbox, now=lambda: now, timers=[timer])
    before = inbox.latest_seq()
    assert await clock.tick() == datetime(2026, 3, 2, 16, 30, tzinfo=UTC)  # next: the summary (promise was overdue)
    assert inbox.read(before, kind="summary") == []
    now = NOW  # 18:00 in Berlin
    await clock.tick()
    await clock.tick()
    [summary] = inbox.read(before, kind="summary")
    assert summary.key == "summary:2026-03-02" and summary.text.startswith("Needs you (5):")
    assert "Open promises: 3" in summary.text
    assert envelope(summary)["meta"]["kind"] == "summary"
    assert [s for s, _ in mailed] == ["Daily summary 2026-03-02"] and "<h3>Handled (2)</h3>" in mailed[0][1]
    assert timer.next_at(now) == datetime(2026, 3, 3, 16, 30, tzinfo=UTC)
    for store in (inbox, record, promises):
        store.close()
