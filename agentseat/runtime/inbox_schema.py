"""The inbox's SQLite schema (version 4) and the upgrade of inboxes earlier versions wrote."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import structlog

__all__ = ["SCHEMA", "SCHEMA_VERSION", "upgrade"]

log = structlog.get_logger("agentseat.runtime.inbox")

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, chat_id TEXT,
    message_id TEXT NOT NULL, sender_id TEXT NOT NULL, sender_upn TEXT NOT NULL, sender_name TEXT NOT NULL,
    trust TEXT NOT NULL, text TEXT NOT NULL, subject TEXT, created_at TEXT NOT NULL, received_at TEXT NOT NULL,
    source TEXT NOT NULL, confirmed INTEGER NOT NULL DEFAULT 0, read_at TEXT, chat_type TEXT NOT NULL DEFAULT '',
    mentioned INTEGER NOT NULL DEFAULT 0, attachments TEXT NOT NULL DEFAULT '', team_id TEXT NOT NULL DEFAULT '',
    thread_id TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS events_kind_seq ON events(kind, seq);
CREATE INDEX IF NOT EXISTS events_unread ON events(seq) WHERE read_at IS NULL;
CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups(name TEXT PRIMARY KEY, start_seq INTEGER NOT NULL,
    claimed_through INTEGER NOT NULL, created_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claims(grp TEXT NOT NULL, seq INTEGER NOT NULL, claimant TEXT NOT NULL,
    claimed_at TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(grp, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_open ON claims(grp, done, claimant);
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
"""


def upgrade(conn: sqlite3.Connection) -> None:
    """Add to an inbox written by an earlier agentseat the columns `SCHEMA` now has.

    `CREATE TABLE IF NOT EXISTS` leaves an existing table as it is, so without this
    the index on `claims.done` fails and the runtime cannot open its inbox at all.
    Claims made before `done` existed were pushed under that version's at-most-once
    rule: they count as done, or the first claim after the upgrade would take them
    over from their dead claimants and push the whole history again.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(claims)").fetchall()}
    if columns and "done" not in columns:
        conn.execute("ALTER TABLE claims ADD COLUMN done INTEGER NOT NULL DEFAULT 0")
        conn.execute("UPDATE claims SET done = 1")
        log.info("inbox_upgraded", added="claims.done")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)").fetchall()}
    if columns and "confirmed" not in columns:
        # Schema 1 had no read state: a push counted as delivered, so what it holds counts as
        # read, or the first session after the upgrade would be handed the whole history.
        # Only polled events were read from Graph; webhook events came from notifications.
        conn.execute("ALTER TABLE events ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0")
        conn.execute("ALTER TABLE events ADD COLUMN read_at TEXT")
        conn.execute("UPDATE events SET confirmed = (source = 'poll'), read_at = ?", (datetime.now(timezone.utc).isoformat(),))
        log.info("inbox_upgraded", added="events.confirmed,events.read_at")
    if columns and "chat_type" not in columns:
        # Schema 2 did not know chat types or mentions: "" and 0 read as "push it", as it was pushed then.
        conn.execute("ALTER TABLE events ADD COLUMN chat_type TEXT NOT NULL DEFAULT ''")
        conn.execute("ALTER TABLE events ADD COLUMN mentioned INTEGER NOT NULL DEFAULT 0")
        log.info("inbox_upgraded", added="events.chat_type,events.mentioned")
    if columns and "attachments" not in columns:
        # Schema 3 had no attachments or channels: its events had neither.
        for column in ("attachments", "team_id", "thread_id"):
            conn.execute(f"ALTER TABLE events ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        log.info("inbox_upgraded", added="events.attachments,events.team_id,events.thread_id")
