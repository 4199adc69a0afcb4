"""`record.db`: the agent's own messages, kept `AGENTSEAT_RECORD_RETENTION_DAYS` days.

One row per accepted send, reply, edit, reaction or deletion: when, where (chat or
thread), to whom, a SHA-256 digest of the text, and the text. Rows older than the
retention are pruned on open and then at most once an hour, as rows are added.
Every process records what it sent itself, so the file is shared like the inbox.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from ..storage import immediate, open_store
from .classify import Outbound

__all__ = ["Record"]

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbound(
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, action TEXT NOT NULL, medium TEXT NOT NULL,
    chat_id TEXT NOT NULL, thread_id TEXT NOT NULL, message_id TEXT NOT NULL, recipients TEXT NOT NULL,
    subject TEXT NOT NULL, digest TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbound_at ON outbound(at);
CREATE INDEX IF NOT EXISTS outbound_chat ON outbound(chat_id, at)
"""
_PRUNE_EVERY = 3600.0


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class Record:
    """The outbound half of every conversation; the inbox is the inbound half."""

    def __init__(self, path: Path, *, retention_days: float = 30.0) -> None:
        self.path = path
        self.retention = timedelta(days=retention_days)
        self._lock = threading.Lock()
        self._pruned_at = 0.0
        self._conn = open_store(path, _SCHEMA, "the interaction record", "move a corrupt file aside")
        self.prune()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add(self, entry: Outbound, at: datetime | None = None) -> int:
        """Store one entry; returns its id."""
        moment = _iso(at or datetime.now(UTC))
        digest = hashlib.sha256(entry.text.encode("utf-8")).hexdigest()
        with self._lock, immediate(self._conn) as conn:
            cur = conn.execute(
                "INSERT INTO outbound(at, action, medium, chat_id, thread_id, message_id, recipients, subject, digest,"
                " text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (moment, entry.action, entry.medium, entry.chat_id, entry.thread_id, entry.message_id,
                 json.dumps(list(entry.recipients)), entry.subject, digest, entry.text))
            row_id = int(cur.lastrowid or 0)
        log.info("interaction_recorded", action=entry.action, medium=entry.medium, chat=entry.chat_id or None)
        if time.monotonic() - self._pruned_at > _PRUNE_EVERY:
            self.prune()
        return row_id

    def prune(self, now: datetime | None = None) -> int:
        """Delete rows older than the retention; returns how many went."""
        cut = _iso((now or datetime.now(UTC)) - self.retention)
        with self._lock, immediate(self._conn) as conn:
            gone = conn.execute("DELETE FROM outbound WHERE at < ?", (cut,)).rowcount
        self._pruned_at = time.monotonic()
        if gone:
            log.info("interactions_pruned", count=gone)
        return gone

    def query(self, *, chat_id: str | None = None, person: str | None = None, since: str | None = None,
              limit: int = 20) -> list[dict[str, Any]]:
        """The newest `limit` rows matching, newest first."""
        where, args = ["1 = 1"], []  # type: ignore[var-annotated]
        if chat_id:
            where.append("chat_id = ?")
            args.append(chat_id)
        if person:
            where.append("lower(recipients) LIKE ?")
            args.append(f"%{person.lower()}%")
        if since:
            where.append("at >= ?")
            args.append(since)
        with self._lock:
            rows = self._conn.execute(f"SELECT * FROM outbound WHERE {' AND '.join(where)} "
                                      "ORDER BY at DESC, id DESC LIMIT ?", (*args, limit)).fetchall()
        return [dict(row) | {"recipients": json.loads(row["recipients"])} for row in rows]

    def count_since(self, since: str) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM outbound WHERE at >= ?", (since,)).fetchall()[0][0])
