"""Read state: an event stays unread until the agent acts on it, whatever was pushed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from agentseat.errors import InboxError
from agentseat.runtime.inbox import Event, Inbox

CHILD = str(Path(__file__).with_name("_inbox_child.py"))


def teams(chat_id: str, message_id: str, text: str = "hello") -> Event:
    return Event.teams(chat_id=chat_id, message_id=message_id, sender_id="u-2", sender_upn="two@contoso.com",
                       sender_name="Two", trust="colleague", text=text, created_at="2026-01-01T10:00:00+00:00",
                       source="poll")


def mail(message_id: str) -> Event:
    return Event.mail(message_id=message_id, sender_id="u-1", sender_upn="one@contoso.com", sender_name="One",
                      trust="colleague", text="hi", subject="Subject", created_at="2026-01-01T10:00:00Z",
                      source="poll")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "inbox.db"


@pytest.fixture
def inbox(db: Path):
    with Inbox(db) as opened:
        yield opened


def _ids(events: list[Event]) -> list[str]:
    return [e.message_id for e in events]


def test_new_events_are_unread_oldest_first_by_kind_and_position(inbox: Inbox) -> None:
    inbox.append([teams("19:a", "t1"), mail("m1"), teams("19:b", "t2"), mail("m2")])
    assert _ids(inbox.unread()) == ["t1", "m1", "t2", "m2"]
    assert _ids(inbox.unread(kind="mail")) == ["m1", "m2"]
    assert _ids(inbox.unread(limit=2, after_seq=1)) == ["m1", "t2"]
    assert _ids(inbox.unread()) == ["t1", "m1", "t2", "m2"]  # looking marks nothing
    for bad in ({"limit": 0}, {"after_seq": "1"}, {"after_seq": -1}):
        with pytest.raises(InboxError):
            inbox.unread(**bad)  # type: ignore[arg-type]
        with pytest.raises(InboxError):
            inbox.take_unread(**bad)  # type: ignore[arg-type]
    assert inbox.unread_summary()["unread"] == 4


def test_a_claimed_and_acknowledged_push_leaves_the_event_unread(inbox: Inbox) -> None:
    inbox.ensure_group("channel", 0)
    inbox.append([teams("19:a", "t1")])
    [pushed] = inbox.claim_next("channel", "here:1")
    inbox.ack("channel", [pushed.seq])
    inbox.advance("tools", pushed.seq)
    assert _ids(inbox.unread()) == ["t1"]
    assert inbox.unread_summary()["unread"] == 1


def test_take_unread_returns_the_oldest_and_marks_them_read(inbox: Inbox) -> None:
    inbox.append([teams("19:a", str(i)) for i in range(5)])
    assert _ids(inbox.take_unread(2)) == ["0", "1"]
    assert _ids(inbox.take_unread(2)) == ["2", "3"]
    assert _ids(inbox.unread()) == ["4"]
    assert _ids(inbox.take_unread(10)) == ["4"]
    assert inbox.take_unread(10) == []
    # Read, not gone: history still holds every event, with its read time.
    entries = inbox.entries()
    assert len(entries) == 5 and all(e.read_at and not e.unread for e in entries)


def test_mark_read_by_seq_message_id_chat_and_mail_counts_only_what_was_unread(inbox: Inbox) -> None:
    stored = inbox.append([teams("19:a", "t1"), teams("19:a", "t2"), teams("19:b", "t3"), mail("m1"), mail("m2"),
                           teams("19:c", "t4")])
    seq = {e.message_id: e.seq for e in stored}
    assert inbox.mark_read(seqs=[seq["t4"]]) == 1
    assert inbox.mark_read(seqs=[seq["t4"]]) == 0  # already read
    assert inbox.mark_read(message_ids=["t3", "t3"]) == 1
    assert inbox.mark_read(chat_id="19:a") == 2
    assert inbox.mark_read(mail_message_id="m2") == 1
    assert inbox.mark_read(chat_id="19:zzz", mail_message_id="nope") == 0
    assert inbox.mark_read() == 0
    assert _ids(inbox.unread()) == ["m1"]


def test_marking_a_chat_stops_at_what_the_agent_could_have_seen(inbox: Inbox) -> None:
    first, later = inbox.append([teams("19:a", "seen"), teams("19:a", "arrived-while-replying")])
    assert inbox.mark_read(chat_id="19:a", through_seq=first.seq) == 1
    assert _ids(inbox.unread()) == ["arrived-while-replying"]


def test_a_mail_id_never_marks_a_teams_message_and_a_chat_never_marks_mail(inbox: Inbox) -> None:
    inbox.append([teams("19:a", "same-id"), mail("same-id")])
    assert inbox.mark_read(mail_message_id="same-id") == 1
    assert [e.kind for e in inbox.unread()] == ["teams"]


@pytest.mark.parametrize("bad", [{"seqs": [0]}, {"seqs": ["3"]}, {"seqs": [True]}, {"message_ids": [""]},
                                 {"message_ids": [7]}])
def test_bad_marks_are_refused_and_mark_nothing(inbox: Inbox, bad: dict) -> None:
    inbox.append([teams("19:a", "t1")])
    with pytest.raises(InboxError):
        inbox.mark_read(**bad)
    assert inbox.unread_summary()["unread"] == 1


def test_unknown_names_the_seqs_and_ids_no_event_has(inbox: Inbox) -> None:
    inbox.append([teams("19:a", "t1"), mail("m1")])
    assert inbox.unknown(seqs=[1, 2, 99], message_ids=["m1", "nope"]) == ([99], ["nope"])


def test_unread_summary_names_the_oldest_unread_event(inbox: Inbox) -> None:
    assert inbox.unread_summary() == {"unread": 0, "oldest_unread_at": None, "oldest_unread_seq": None}
    stored = inbox.append([teams("19:a", "t1"), teams("19:a", "t2"), teams("19:a", "t3")])
    inbox.mark_read(seqs=[stored[0].seq])
    summary = inbox.unread_summary()
    assert summary == {"unread": 2, "oldest_unread_at": stored[1].received_at, "oldest_unread_seq": stored[1].seq}


def test_entries_page_history_and_the_newest_with_read_state(inbox: Inbox) -> None:
    inbox.append([teams("19:a", str(i)) for i in range(6)])
    inbox.mark_read(seqs=[2, 5])
    assert [(e.event.seq, e.unread) for e in inbox.entries(since_seq=1, limit=3)] == [(2, False), (3, True),
                                                                                      (4, True)]
    assert [(e.event.seq, e.unread) for e in inbox.entries(limit=2, newest=True)] == [(5, False), (6, True)]


def test_read_state_survives_reopening(db: Path) -> None:
    with Inbox(db) as inbox:
        inbox.append([teams("19:a", "t1"), teams("19:a", "t2")])
        inbox.take_unread(1)
    with Inbox(db) as inbox:
        assert _ids(inbox.unread()) == ["t2"]


def test_unread_lookups_use_the_unread_index(inbox: Inbox) -> None:
    inbox.append([teams("19:a", str(i)) for i in range(20)])
    for sql in ("SELECT seq FROM events WHERE read_at IS NULL AND seq > 0 ORDER BY seq LIMIT 5",
                "SELECT seq FROM events WHERE +kind = 'teams' AND read_at IS NULL AND seq > 0 ORDER BY seq LIMIT 5",
                "SELECT count(*) FROM events WHERE read_at IS NULL"):
        plan = " ".join(str(row[3]) for row in inbox._query("EXPLAIN QUERY PLAN " + sql))
        assert "events_unread" in plan, plan


async def test_concurrent_takes_in_one_process_never_return_the_same_event(inbox: Inbox) -> None:
    await inbox.aappend([teams("19:a", str(i)) for i in range(60)])
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    async def take(name: str) -> None:
        while batch := await inbox.atake_unread(2):
            got[name] += [e.seq for e in batch]

    async with anyio.create_task_group() as tg:
        for name in got:
            tg.start_soon(take, name)
    everything = got["a"] + got["b"] + got["c"]
    assert sorted(everything) == list(range(1, 61))
    assert len(set(everything)) == len(everything)


def test_two_processes_taking_unread_never_get_the_same_event(inbox: Inbox, db: Path) -> None:
    total = 2000
    inbox.append([teams("19:c", str(i)) for i in range(total)])
    procs = [subprocess.Popen([sys.executable, CHILD, "take", str(db), f"t{n}", "t0,t1"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in range(2)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        for proc in procs:
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        outputs = [proc.communicate(timeout=90)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0]
    got = [[int(line) for line in out.split()] for out in outputs]
    assert got[0] and got[1], "both processes must have taken events for the test to mean anything"
    assert set(got[0]) & set(got[1]) == set()
    assert sorted(got[0] + got[1]) == list(range(1, total + 1))
    assert inbox.unread_summary()["unread"] == 0
