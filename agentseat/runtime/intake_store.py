"""The intake's durable store: notifications awaiting confirmation by Graph (`intake.db`).

A chat message that would be trusted is written here before the webhook answers
202, so a killed process (kill -9) loses nothing: the next start confirms what is
left. It owns only this file; routing and the Graph GET live in runtime/intake.py.
Rows hold message text, so the file is created 0600 like the inbox.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import structlog

from agentseat.errors import InboxError
from agentseat.storage import connect, create_private, immediate

from .events import Event

__all__ = ["PendingStore"]

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending(id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL, event TEXT NOT NULL, queued_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS pending_kind ON pending(kind, id);
"""


class PendingStore:
    """Pending events by arrival order, deduplicated by event key; one short transaction per call."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            create_private(self.path)
            # A commit is in the WAL when it returns, which survives kill -9 (as the inbox).
            self._conn, _ = connect(self.path, busy_timeout=busy_timeout)
            with self._tx() as conn:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise InboxError(f"cannot open the intake store at {self.path}: {exc}",
                             hint=f"check that {self.path.parent} is writable") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, immediate(self._conn) as conn:
            yield conn

    def add(self, events: Iterable[Event]) -> int:
        """Keep the events whose key is not pending yet; return how many were new."""
        now = datetime.now(UTC).isoformat()
        added = 0
        try:
            with self._tx() as conn:
                for event in events:
                    cur = conn.execute("INSERT OR IGNORE INTO pending(key, kind, event, queued_at) VALUES (?, ?, ?, ?)",
                                       (event.key, event.kind, event.to_json(), now))
                    added += cur.rowcount
        except sqlite3.Error as exc:
            log.warning("intake_store_error", op="add", code=getattr(exc, "sqlite_errorname", type(exc).__name__))
            raise InboxError("the intake store could not keep a pending message",
                             hint=f"check the disk of {self.path.parent}; Graph delivers it again") from exc
        return added

    def oldest(self, limit: int = 16) -> list[tuple[int, int, Event]]:
        """Up to `limit` pending events, oldest first, as (row id, attempts, event)."""
        with self._lock:
            rows = self._conn.execute("SELECT id, attempts, event FROM pending ORDER BY id LIMIT ?",
                                      (limit,)).fetchall()
        return [(row[0], row[1], Event.from_row({**json.loads(row[2]), "seq": 0})) for row in rows]

    def remove(self, row_id: int) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM pending WHERE id = ?", (row_id,))

    def attempt(self, row_id: int) -> None:
        """Count a failed confirmation (a Graph error that may pass)."""
        with self._tx() as conn:
            conn.execute("UPDATE pending SET attempts = attempts + 1 WHERE id = ?", (row_id,))

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM pending").fetchone()[0])
