"""`audit.db`: rows whose hash covers the previous row's hash and the row itself.

`hash = sha256(prev_hash + canonical JSON of {id, at, kind, action, detail})`, canonical
meaning sorted keys, no spaces, UTF-8. Ids are consecutive from 1, so a removed row
breaks the chain at its successor and a changed one at itself. Detail is facts only
(routes, ids, reasons): callers never pass message bodies, tokens or keys, and
`_scrub` drops any key that names one, in case.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from ..storage import immediate, open_store

__all__ = ["AuditLog", "Broken", "row_hash"]

log = structlog.get_logger(__name__)

GENESIS = "0" * 64
_SCHEMA = """CREATE TABLE IF NOT EXISTS audit(id INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL,
    action TEXT NOT NULL, detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL)"""
_SECRET_WORDS = ("token", "secret", "password", "passphrase", "key", "authorization", "content", "body", "text")


@dataclass(frozen=True)
class Broken:
    """Where `verify` found the chain broken."""

    row: int
    reason: str


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(prev: str, row_id: int, at: str, kind: str, action: str, detail: str) -> str:
    payload = _canonical({"id": row_id, "at": at, "kind": kind, "action": action, "detail": json.loads(detail)})
    return hashlib.sha256((prev + payload).encode("utf-8")).hexdigest()


def _scrub(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if not any(word in k.lower() for word in _SECRET_WORDS)
            or k in ("digest",)}


class AuditLog:
    """Append and verify; every process of the agent appends to the same file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = open_store(path, _SCHEMA, "the audit log")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def append(self, kind: str, action: str, **detail: Any) -> int:
        """Append one row: `kind` is `action` (changed something outside) or `refusal` (a gate said no)."""
        body = _canonical(_scrub(detail))
        at = datetime.now(UTC).isoformat()
        with self._lock, immediate(self._conn) as conn:
            last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchall()
            row_id, prev = (int(last[0][0]) + 1, str(last[0][1])) if last else (1, GENESIS)
            conn.execute("INSERT INTO audit(id, at, kind, action, detail, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (row_id, at, kind, action, body, prev, row_hash(prev, row_id, at, kind, action, body)))
        log.debug("audit_appended", id=row_id, kind=kind, action=action)
        return row_id

    def rows(self, since: str | None = None, limit: int | None = None, *, newest: bool = False) -> list[dict[str, Any]]:
        sql = "SELECT * FROM audit" + (" WHERE at >= ?" if since else "")
        sql += " ORDER BY id DESC" if newest else " ORDER BY id"
        args: tuple[Any, ...] = (since,) if since else ()
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        with self._lock:
            found = [dict(r) | {"detail": json.loads(r["detail"])} for r in self._conn.execute(sql, args).fetchall()]
        return list(reversed(found)) if newest else found

    def _all(self) -> Iterator[sqlite3.Row]:
        with self._lock:
            yield from self._conn.execute("SELECT * FROM audit ORDER BY id").fetchall()

    def verify(self) -> tuple[int, Broken | None]:
        """Walk the chain: (rows checked, the first break or None)."""
        prev, expected, count = GENESIS, 1, 0
        for row in self._all():
            count += 1
            if row["id"] != expected:
                return count, Broken(expected, f"row {expected} is missing (the next row is {row['id']})")
            if row["prev"] != prev:
                return count, Broken(row["id"], f"row {row['id']} does not follow row {row['id'] - 1}: "
                                                "a row before it was changed or removed")
            try:
                actual = row_hash(prev, row["id"], row["at"], row["kind"], row["action"], row["detail"])
            except ValueError:
                actual = ""
            if actual != row["hash"]:
                return count, Broken(row["id"], f"row {row['id']} was changed after it was written")
            prev, expected = row["hash"], expected + 1
        return count, None
