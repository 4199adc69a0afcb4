"""`promises.db`: the agent's promises and the clock's own bookkeeping.

A promise is open until resolved. `fired_at` is set once its reminder is in the inbox; the
reminder's key (`reminder:{id}:{due}`) makes raising it twice (a crash between the two
writes) harmless. The `meta` table holds the clock's next due time (`next_due`) and the
loopback port its owner listens on for pokes (`clock_port`), so any process that adds a
promise can wake the owner at once instead of the owner polling.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ToolInputError
from ..storage import immediate, open_store

__all__ = ["Promise", "Promises"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS promises(id TEXT PRIMARY KEY, chat_id TEXT NOT NULL, description TEXT NOT NULL,
    due TEXT NOT NULL, created_at TEXT NOT NULL, fired_at TEXT, resolved_at TEXT, resolution TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS promises_pending ON promises(due) WHERE fired_at IS NULL AND resolved_at IS NULL;
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID
"""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Promise:
    id: str
    chat_id: str
    description: str
    due: str  # UTC ISO 8601
    created_at: str
    fired_at: str | None = None
    resolved_at: str | None = None
    resolution: str | None = None

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    def due_at(self) -> datetime:
        return datetime.fromisoformat(self.due)

    def view(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None} | {"open": self.open}


class Promises:
    """Promises shared by every process of the agent; the clock's owner reads what fell due."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = open_store(path, _SCHEMA, "the promises")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Promise]:
        with self._lock:
            return [Promise(**dict(r)) for r in self._conn.execute(sql, args).fetchall()]

    def add(self, chat_id: str, description: str, due: datetime, *, now: datetime | None = None) -> Promise:
        promise = Promise(f"p-{secrets.token_hex(4)}", chat_id, description, _iso(due), _iso(now or datetime.now(UTC)))
        with self._lock, immediate(self._conn) as conn:
            conn.execute("INSERT INTO promises(id, chat_id, description, due, created_at) VALUES (?, ?, ?, ?, ?)",
                         (promise.id, promise.chat_id, promise.description, promise.due, promise.created_at))
        return promise

    def get(self, promise_id: str) -> Promise | None:
        found = self._rows("SELECT * FROM promises WHERE id = ?", (promise_id,))
        return found[0] if found else None

    def promised(self, *, open_only: bool = True) -> list[Promise]:
        where = "WHERE resolved_at IS NULL " if open_only else ""
        return self._rows(f"SELECT * FROM promises {where}ORDER BY due, id")

    def resolve(self, promise_id: str, resolution: str, *, now: datetime | None = None) -> Promise:
        with self._lock, immediate(self._conn) as conn:
            done = conn.execute("UPDATE promises SET resolved_at = ?, resolution = ? WHERE id = ? AND resolved_at "
                                "IS NULL", (_iso(now or datetime.now(UTC)), resolution, promise_id)).rowcount
        promise = self.get(promise_id)
        if promise is None:
            raise ToolInputError(f"there is no promise {promise_id!r}", hint="list_promises shows their ids")
        if not done:
            raise ToolInputError(f"promise {promise_id!r} was resolved already ({promise.resolution})",
                                 hint="list_promises shows the open ones")
        return promise

    def pending(self, through: datetime, limit: int = 100) -> list[Promise]:
        """Open promises due by `through` whose reminder has not been raised, oldest first."""
        return self._rows("SELECT * FROM promises WHERE fired_at IS NULL AND resolved_at IS NULL AND due <= ? "
                          "ORDER BY due LIMIT ?", (_iso(through), limit))

    def next_due(self) -> datetime | None:
        """When the next pending promise falls due, None when none is pending."""
        with self._lock:
            rows = self._conn.execute("SELECT min(due) FROM promises WHERE fired_at IS NULL AND resolved_at IS NULL"
                                      ).fetchall()
        return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None

    def mark_fired(self, promise_id: str, at: datetime) -> None:
        with self._lock, immediate(self._conn) as conn:
            conn.execute("UPDATE promises SET fired_at = ? WHERE id = ?", (_iso(at), promise_id))

    def get_meta(self, k: str) -> str | None:
        with self._lock:
            rows = self._conn.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchall()
        return str(rows[0][0]) if rows else None

    def set_meta(self, k: str, v: str | None) -> None:
        with self._lock, immediate(self._conn) as conn:
            if v is None:
                conn.execute("DELETE FROM meta WHERE k = ?", (k,))
            else:
                conn.execute("INSERT INTO meta(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                             (k, v))
