"""The durable inbox: dedupe, order, own-message filter, cursors, claims, crash safety, wake-ups, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from agentseat.errors import InboxError
from agentseat.runtime.inbox import Event, Inbox

CHILD = str(Path(__file__).with_name("_inbox_child.py"))
SECRET_TEXT = "TOP-SECRET-BODY do not log"


def mail(message_id: str, *, sender_id: str = "u-1", sender_upn: str = "one@contoso.com", text: str = "hi",
         source: str = "webhook") -> Event:
    return Event.mail(message_id=message_id, sender_id=sender_id, sender_upn=sender_upn, sender_name="One",
                      trust="colleague", text=text, subject="Subject", created_at="2026-01-01T10:00:00Z",
                      source=source)  # type: ignore[arg-type]


def teams(chat_id: str, message_id: str, **kw: str) -> Event:
    fields = {"sender_id": "u-2", "sender_upn": "two@contoso.com", "sender_name": "Two", "trust": "sponsor",
              "text": "hello", "created_at": "2026-01-01T10:00:00+00:00", "source": "poll"} | kw
    return Event.teams(chat_id=chat_id, message_id=message_id, **fields)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "inbox.db"


@pytest.fixture
def inbox(db: Path):
    with Inbox(db) as opened:
        yield opened


# --- Event ---------------------------------------------------------------------


def test_constructors_build_the_dedupe_key():
    assert teams("19:abc@thread.v2", "m1").key == "teams:19:abc@thread.v2:m1"
    assert mail("AAMk=").key == "mail:AAMk="


def test_event_round_trips_through_json_and_rows(inbox: Inbox):
    event = inbox.append([teams("19:c", "m1", text="é <b>")])[0]
    assert Event(**json.loads(event.to_json())) == event
    assert inbox.read(0) == [event]


@pytest.mark.parametrize("change", [{"key": "mail:other"}, {"trust": "stranger"}, {"kind": "sms"},
                                    {"created_at": "yesterday"}, {"text": "\ud800"}, {"chat_id": None}])
def test_invalid_event_is_rejected_with_inbox_error(change: dict):
    with pytest.raises(InboxError):
        dataclasses.replace(teams("19:c", "m1"), **change)


def test_batch_with_a_bad_item_stores_nothing(inbox: Inbox):
    with pytest.raises(InboxError):
        inbox.append([mail("a"), {"key": "mail:b"}])  # type: ignore[list-item]
    assert inbox.count() == 0


# --- append: dedupe, order, own messages ----------------------------------------


def test_duplicates_and_overlaps_make_one_event(inbox: Inbox):
    first = inbox.append([mail(str(i)) for i in range(5)] + [mail("0")])
    assert [e.message_id for e in first] == ["0", "1", "2", "3", "4"]
    # A poll overlapping the webhook's delivery returns only what is new.
    second = inbox.append([mail(str(i), source="poll") for i in range(3, 8)])
    assert [e.message_id for e in second] == ["5", "6", "7"]
    assert inbox.append([mail("2"), mail("7")]) == []
    assert inbox.count() == 8
    assert inbox.read(0, limit=100)[3].source == "webhook"  # the first copy wins


def test_seq_is_strictly_increasing_in_append_order(inbox: Inbox):
    seqs = [e.seq for n in range(4) for e in inbox.append([teams("19:c", f"{n}-{i}") for i in range(3)])]
    assert seqs == sorted(seqs) and len(set(seqs)) == 12 and seqs[0] >= 1
    assert [e.seq for e in inbox.read(0)] == seqs
    assert inbox.latest_seq() == seqs[-1] == inbox.last_event().seq  # type: ignore[union-attr]


def test_own_messages_are_dropped_by_id_and_upn_case_insensitively(db: Path):
    with Inbox(db, own_ids={"AGENT-OID", "Agent@Contoso.com", ""}) as inbox:
        stored = inbox.append([
            mail("1", sender_id="agent-oid", sender_upn="alias@contoso.com"),
            teams("19:c", "2", sender_id="other", sender_upn="AGENT@contoso.COM"),
            mail("3", sender_id="u-9", sender_upn=""),
        ])
        assert [e.message_id for e in stored] == ["3"]
        assert inbox.count() == 1


def test_read_filters_by_kind_and_honours_limit(inbox: Inbox):
    inbox.append([mail("m1"), teams("19:c", "t1"), mail("m2"), teams("19:c", "t2")])
    assert [e.message_id for e in inbox.read(0, kind="teams")] == ["t1", "t2"]
    assert [e.message_id for e in inbox.read(1, limit=2)] == ["t1", "m2"]
    assert inbox.count("mail") == 2 and inbox.latest_seq("mail") == 3
    with pytest.raises(InboxError):
        inbox.read(0, limit=-1)


def test_inbox_file_is_private_and_in_wal_mode(inbox: Inbox, db: Path):
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- cursors and meta ----------------------------------------------------------


def test_cursor_resumes_after_reopening_and_never_moves_back(db: Path):
    with Inbox(db) as inbox:
        inbox.append([mail(str(i)) for i in range(6)])
        assert inbox.cursor("bot") == 0
        assert inbox.advance("bot", 4) == 4
        assert inbox.advance("bot", 2) == 4
        with pytest.raises(InboxError):
            inbox.advance("bot", "9")  # type: ignore[arg-type]
    with Inbox(db) as inbox:
        assert inbox.cursor("bot") == 4 and inbox.cursor("events") == 0
        assert [e.seq for e in inbox.read(inbox.cursor("bot"))] == [5, 6]


def test_meta_persists_and_can_be_deleted(db: Path):
    with Inbox(db) as inbox:
        inbox.set_meta("subscription:chats", '{"id": "s1"}')
        inbox.set_meta("subscription:chats", '{"id": "s2"}')
    with Inbox(db) as inbox:
        assert inbox.get_meta("subscription:chats") == '{"id": "s2"}'
        inbox.set_meta("subscription:chats", None)
        assert inbox.get_meta("subscription:chats") is None


# --- claim groups ---------------------------------------------------------------


def test_new_group_starts_at_its_start_seq_and_ignores_later_starts(inbox: Inbox):
    inbox.append([mail(str(i)) for i in range(5)])
    assert inbox.ensure_group("push", inbox.latest_seq()) == 5
    inbox.append([mail("new")])
    assert inbox.ensure_group("push", 0) == 5  # exists: the start does not move
    assert [e.message_id for e in inbox.claim_next("push", "w1")] == ["new"]
    assert inbox.claim_next("push", "w2") == []


async def test_claimants_in_one_process_share_a_group_without_overlap(inbox: Inbox):
    await inbox.aensure_group("push", 0)
    await inbox.aappend([mail(str(i)) for i in range(30)])
    got: dict[str, list[int]] = {"a": [], "b": []}

    async def claim(name: str) -> None:
        while batch := await inbox.aclaim_next("push", name, limit=2):
            got[name] += [e.seq for e in batch]

    async with anyio.create_task_group() as tg:
        tg.start_soon(claim, "a")
        tg.start_soon(claim, "b")
    assert sorted(got["a"] + got["b"]) == list(range(1, 31))


def test_an_empty_claim_tells_where_the_group_stands(db: Path):
    # Another claimant (here another connection, as another server would be) took everything:
    # this one's empty claim still says how far the group got, so its sink catches up.
    with Inbox(db) as here, Inbox(db) as there:
        here.ensure_group("push", 0)
        assert here.claimed_through("push") is None  # no claim yet
        here.append([mail(str(i)) for i in range(3)])
        assert [e.seq for e in there.claim_next("push", "w2")] == [1, 2, 3]
        assert here.claim_next("push", "w1") == []
        assert here.claimed_through("push") == 3 == here.group_position("push")


async def test_wait_for_new_sees_an_existing_event_at_once(inbox: Inbox):
    inbox.append([mail("a"), teams("c1", "b")])
    assert await inbox.wait_for_new(1, timeout=30)
    assert await inbox.wait_for_new(0, timeout=30, kind="mail")
    assert not await inbox.wait_for_new(1, timeout=0.05, kind="mail")


def test_claim_on_unknown_group_is_an_error(inbox: Inbox):
    with pytest.raises(InboxError, match="unknown claim group"):
        inbox.claim_next("nope", "w1")


def test_restarted_group_resumes_with_what_it_missed_and_no_duplicates(db: Path):
    with Inbox(db) as inbox:
        inbox.ensure_group("push", 0)
        inbox.append([mail(str(i)) for i in range(10)])
        first = inbox.claim_next("push", "window-1", limit=4)
    with Inbox(db) as inbox:  # the host restarted the server; events arrived meanwhile
        inbox.append([mail(str(i)) for i in range(10, 13)])
        inbox.ensure_group("push", inbox.latest_seq())
        rest = inbox.claim_next("push", "window-1b", limit=100)
    assert [e.seq for e in first] == [1, 2, 3, 4]
    assert [e.seq for e in rest] == list(range(5, 14))


def test_two_processes_claiming_together_get_every_event_exactly_once(inbox: Inbox, db: Path):
    total = 2000
    inbox.append([teams("19:c", str(i)) for i in range(total)])
    inbox.ensure_group("push", 0)
    procs = [subprocess.Popen([sys.executable, CHILD, "claim", str(db), "push", f"p{n}", "p0,p1"],
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
    assert got[0] and got[1], "both processes must have claimed for the test to mean anything"
    assert set(got[0]) & set(got[1]) == set()
    assert sorted(got[0] + got[1]) == list(range(1, total + 1))
    assert inbox.claim_next("push", "late") == []


# --- crash safety ----------------------------------------------------------------


def test_kill_9_loses_no_committed_event(db: Path):
    Inbox(db).close()
    proc = subprocess.Popen([sys.executable, CHILD, "append", str(db)], stdout=subprocess.PIPE, text=True)
    reported: dict[str, int] = {}
    try:
        while len(reported) < 500:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "the child stopped before it was killed"
            key, seq = line.split()
            reported[key] = int(seq)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        tail, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    for line in tail.splitlines(keepends=True):
        if line.endswith("\n") and line.strip():
            key, seq = line.split()
            reported[key] = int(seq)
    with Inbox(db) as inbox:
        stored = {e.key: e.seq for e in inbox.read(0, limit=1_000_000)}
        assert inbox._query("PRAGMA integrity_check")[0][0] == "ok"
    assert {k: stored.get(k) for k in reported} == reported


# --- wake-ups ---------------------------------------------------------------------


async def _until_waiting(inbox: Inbox) -> None:
    with anyio.fail_after(30):
        while not inbox._waiters:
            await anyio.sleep(0.005)


async def test_wait_for_new_wakes_on_an_in_process_append(db: Path):
    # A poll interval of an hour: only the in-process wake-up can end this wait in time.
    with Inbox(db, poll_interval=3600) as inbox:
        result: list[bool] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _collect(result, inbox.wait_for_new(0, timeout=30)))
            await _until_waiting(inbox)
            await inbox.aappend([mail("1")])
        assert result == [True]


async def test_wait_for_new_wakes_on_another_process_append(db: Path):
    with Inbox(db, poll_interval=0.02) as inbox:
        result: list[bool] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: _collect(result, inbox.wait_for_new(0, timeout=60)))
            await _until_waiting(inbox)
            await anyio.run_process([sys.executable, CHILD, "append_one", str(db), "from-child"])
        assert result == [True]
        assert inbox.last_event().message_id == "from-child"  # type: ignore[union-attr]


async def test_wait_for_new_returns_false_when_nothing_of_that_kind_arrives(inbox: Inbox):
    await inbox.aappend([teams("19:c", "t1")])
    assert await inbox.wait_for_new(0) is True
    assert await inbox.wait_for_new(0, timeout=0.2, kind="mail") is False


async def _collect(into: list[bool], waiting) -> None:
    into.append(await waiting)


# --- errors ----------------------------------------------------------------------


def test_full_disk_is_a_clear_error_that_loses_nothing_and_logs_no_text(inbox: Inbox, db: Path):
    inbox.append([mail("kept")])
    # max_page_count caps the file the way a full disk does: SQLITE_FULL on the next page.
    pages = inbox._query("PRAGMA page_count")[0][0]
    inbox._query(f"PRAGMA max_page_count = {pages}")
    big = [mail(f"big-{i}", text=SECRET_TEXT * 2000) for i in range(3)]
    with capture_logs() as logs, pytest.raises(InboxError) as err:
        inbox.append(big)
    assert "disk is full" in err.value.message and f"free space in {db.parent}" in (err.value.hint or "")
    assert SECRET_TEXT not in repr(logs) and SECRET_TEXT not in str(err.value)
    assert [e.message_id for e in inbox.read(0)] == ["kept"]
    inbox._query("PRAGMA max_page_count = 1073741823")  # space freed: the same batch goes in
    assert len(inbox.append(big)) == 3


def test_corrupt_inbox_is_a_clear_error_and_is_left_untouched(db: Path):
    db.parent.mkdir(parents=True)
    garbage = b"this is not sqlite " * 500
    db.write_bytes(garbage)
    with pytest.raises(InboxError) as err:
        Inbox(db)
    assert "corrupt" in err.value.message and "move the file aside" in (err.value.hint or "")
    assert db.read_bytes() == garbage


def test_claims_of_a_dead_claimant_are_taken_over_and_acked_ones_are_not(tmp_path) -> None:  # noqa: ANN001
    from agentseat.runtime.inbox import Event, Inbox

    with Inbox(tmp_path / "inbox.db") as inbox:
        inbox.ensure_group("g", 0)
        inbox.append([Event.teams(chat_id="c", message_id=str(i), sender_id="u", sender_upn="", sender_name="",
                                  trust="colleague", text=f"t{i}", created_at="2026-01-01T00:00:00Z",
                                  source="poll") for i in range(4)])
        alive = {"a": True, "b": True}
        first = inbox.claim_next("g", "a", 2, alive=alive.get)
        inbox.ack("g", [first[0].seq])  # "a" pushed one, then died before acking the other
        alive["a"] = False
        taken = inbox.claim_next("g", "b", 10, alive=alive.get)
        assert [e.text for e in taken] == ["t1", "t2", "t3"]
        assert inbox.claim_next("g", "b", 10, alive=alive.get) == []  # its own claims are not handed out twice
        inbox.release("g", "b")  # "b" shuts down without pushing
        again = inbox.claim_next("g", "c", 10, alive={**alive, "b": True}.get)
        assert [e.text for e in again] == ["t1", "t2", "t3"]


def test_a_claim_acknowledges_only_its_own_previous_batch_in_the_same_transaction(tmp_path) -> None:  # noqa: ANN001
    from agentseat.runtime.inbox import Event, Inbox

    with Inbox(tmp_path / "inbox.db") as inbox:
        inbox.ensure_group("g", 0)
        inbox.append([Event.teams(chat_id="c", message_id=str(i), sender_id="u", sender_upn="", sender_name="",
                                  trust="colleague", text=f"t{i}", created_at="2026-01-01T00:00:00Z",
                                  source="poll") for i in range(6)])
        alive = {"a": True, "b": True}
        mine = inbox.claim_next("g", "a", 2, alive=alive.get)
        theirs = inbox.claim_next("g", "b", 2, alive=alive.get)
        # "a" acknowledges its batch, and names one of "b"'s by mistake: only its own counts.
        assert [e.text for e in inbox.claim_next("g", "a", 2, alive=alive.get,
                                                 ack=[e.seq for e in mine] + [theirs[0].seq])] == ["t4", "t5"]
        alive["a"] = alive["b"] = False
        taken = inbox.claim_next("g", "c", 10, alive=alive.get)
        # "a"'s first batch was acknowledged with its second claim; the rest is taken over.
        assert [e.text for e in taken] == ["t2", "t3", "t4", "t5"]


def test_a_claim_on_the_loop_shares_the_groups_order_with_worker_thread_claims(db: Path):
    with Inbox(db) as inbox:
        inbox.ensure_group("push", 0)
        inbox.append([mail(str(i)) for i in range(5)])
        first = inbox.claim_now("push", "w1", 2)
        assert first is not None and [e.seq for e in first] == [1, 2]
        assert [e.seq for e in inbox.claim_next("push", "w2", 2)] == [3, 4]  # the other connection sees it
        later = inbox.claim_now("push", "w1", 5, ack=[e.seq for e in first])
        assert later is not None and [e.seq for e in later] == [5]
        assert inbox.claimed_through("push") == 5
        done = sqlite3.connect(db).execute("SELECT seq FROM claims WHERE done = 1 ORDER BY seq").fetchall()
        assert done == [(1,), (2,)]  # acknowledged in the same transaction


def test_a_claim_on_the_loop_never_waits_for_another_writer(db: Path):
    with Inbox(db, busy_timeout=30.0) as inbox:
        inbox.ensure_group("push", 0)
        inbox.append([mail("a")])
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process mid-write holds the lock
        try:
            assert inbox.claim_now("push", "w1") is None  # at once, not after the 30 s busy timeout
        finally:
            other.execute("ROLLBACK")
            other.close()
        again = inbox.claim_now("push", "w1")
        assert again is not None and [e.message_id for e in again] == ["a"]
