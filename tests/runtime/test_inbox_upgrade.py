"""An inbox written by an earlier agentseat opens after an upgrade and replays nothing.

Found by the soak (bench/soak.py): a runtime restarted on newer code could not
open the inbox its predecessor wrote ("inbox open failed (SQLITE_ERROR)", exit 74),
because `claims.done` was added to `CREATE TABLE IF NOT EXISTS`, which leaves an
existing table unchanged, and the new index on it failed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agentseat.runtime.inbox import Event, Inbox

# The schema as agentseat wrote it before claims were acknowledged (commit 5d24a74^).
_OLD_SCHEMA = """
CREATE TABLE events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, chat_id TEXT,
    message_id TEXT NOT NULL, sender_id TEXT NOT NULL, sender_upn TEXT NOT NULL, sender_name TEXT NOT NULL,
    trust TEXT NOT NULL, text TEXT NOT NULL, subject TEXT, created_at TEXT NOT NULL, received_at TEXT NOT NULL,
    source TEXT NOT NULL);
CREATE INDEX events_kind_seq ON events(kind, seq);
CREATE TABLE cursors(sink TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE groups(name TEXT PRIMARY KEY, start_seq INTEGER NOT NULL,
    claimed_through INTEGER NOT NULL, created_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE claims(grp TEXT NOT NULL, seq INTEGER NOT NULL, claimant TEXT NOT NULL,
    claimed_at TEXT NOT NULL, PRIMARY KEY(grp, seq)) WITHOUT ROWID;
CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 1;
"""
_NOW = "2026-02-02T17:56:05+00:00"


def _old_inbox(path: Path, events: int, claimed: int) -> None:
    """An inbox as the earlier version left it: `claimed` events pushed by a process now gone."""
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    for n in range(1, events + 1):
        conn.execute("INSERT INTO events(key, kind, chat_id, message_id, sender_id, sender_upn, sender_name, trust, "
                     "text, subject, created_at, received_at, source) VALUES (?, 'teams', 'c', ?, 's', 'u', 'n', "
                     "'colleague', ?, NULL, ?, ?, 'webhook')", (f"teams:c:{n}", str(n), f"old {n}", _NOW, _NOW))
    conn.execute("INSERT INTO groups VALUES ('push', 0, ?, ?)", (claimed, _NOW))
    conn.executemany("INSERT INTO claims VALUES ('push', ?, 'elsewhere:999999', ?)",
                     [(n, _NOW) for n in range(1, claimed + 1)])
    conn.commit()
    conn.close()


def test_inbox_written_before_claim_acknowledgement_opens_and_replays_nothing(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    _old_inbox(path, events=3, claimed=2)
    with Inbox(path) as inbox:
        assert [e.text for e in inbox.read(0)] == ["old 1", "old 2", "old 3"]
        # The two events the old version pushed are not taken over from their dead claimant.
        claimed = inbox.claim_next("push", "here:1", alive=lambda claimant: False)
        assert [e.text for e in claimed] == ["old 3"]
    with Inbox(path) as inbox:  # and the upgrade is done once: a second open changes nothing
        assert inbox.count() == 3


def test_events_from_before_read_state_count_as_read_and_new_ones_are_unread(tmp_path: Path) -> None:
    """Schema 1 counted a push as delivered: after the upgrade its events are read, so the first
    session is not handed the whole history; what arrives afterwards is unread."""
    path = tmp_path / "inbox.db"
    _old_inbox(path, events=3, claimed=3)
    with Inbox(path) as inbox:
        assert inbox.unread_summary() == {"unread": 0, "oldest_unread_at": None, "oldest_unread_seq": None}
        assert all(not entry.unread for entry in inbox.entries())
        assert inbox.take_unread(10) == []
        [new] = inbox.append([Event.teams(chat_id="c", message_id="after", sender_id="s", sender_upn="u",
                                          sender_name="n", trust="colleague", text="new", created_at=_NOW,
                                          source="webhook")])
        assert [e.message_id for e in inbox.unread()] == ["after"]
    with Inbox(path) as inbox:  # reopening does not upgrade again: the new event stays unread
        assert inbox.unread_summary()["oldest_unread_seq"] == new.seq
