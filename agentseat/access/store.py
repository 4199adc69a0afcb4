"""`access.db`: who may reach the agent, who asked, and what they sent meanwhile.

Three tables in one SQLite file (WAL, 0600) in the state dir, shared by the running
runtime and the `agentseat access` command:

- `allow`: people approved by a sponsor (kept across restarts), by object id and addresses;
- `codes`: pending pairing codes, one per sender, valid `CODE_SECONDS`;
- `held`: messages kept back (the whole Event as JSON), in arrival order, and `dropped`:
  keys of messages a sponsor denied, so a later poll does not hold them again;
- `consumed`: keys of sponsors' `approve CODE` messages already acted on.

It decides nothing: the policy (`policy.py`) says who is allowed, the store remembers it.
Each method is one short transaction; the clock is injectable for tests.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ..errors import AgentSeatError
from ..runtime.events import Event
from ..storage import connect, create_private, immediate

log = structlog.get_logger(__name__)

#: A pairing code is valid this long (the official channel plugins' rule).
CODE_SECONDS = 3600.0
#: At most this many codes are pending at once.
MAX_PENDING = 3
#: Held messages kept per sender; past it, newer ones are dropped (a flood cannot fill the disk).
MAX_HELD_PER_SENDER = 200
#: Codes avoid look-alikes (0/O, 1/I/L) so they survive being read aloud or retyped.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS allow (
    key TEXT PRIMARY KEY, sender_id TEXT NOT NULL DEFAULT '', upn TEXT NOT NULL DEFAULT '',
    mail TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '', added_at REAL NOT NULL, via TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS codes (
    code TEXT PRIMARY KEY, sender_key TEXT NOT NULL UNIQUE, sender_id TEXT NOT NULL, upn TEXT NOT NULL,
    mail TEXT NOT NULL, name TEXT NOT NULL, external INTEGER NOT NULL, chat_id TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS held (
    n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, sender_key TEXT NOT NULL,
    event TEXT NOT NULL, held_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS held_sender ON held(sender_key, n);
CREATE TABLE IF NOT EXISTS dropped (key TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS consumed (key TEXT PRIMARY KEY, at REAL NOT NULL)
"""


class AccessError(AgentSeatError):
    """An access command cannot be carried out (an unknown or expired code, a bad name)."""


def sender_key(event: Event) -> str:
    """Who sent it, as the store keys people: the object id, else the mail address."""
    return (event.sender_id or event.sender_upn).strip().lower()


def normalise_code(text: str) -> str:
    return text.strip().upper()


@dataclass(frozen=True)
class Person:
    """An allowlist entry: any of its id, UPN or mail address identifies the person."""

    key: str
    sender_id: str = ""
    upn: str = ""
    mail: str = ""
    name: str = ""
    added_at: float = 0.0
    via: str = ""

    def names(self) -> set[str]:
        return {v.lower() for v in (self.key, self.sender_id, self.upn, self.mail) if v}


@dataclass(frozen=True)
class PendingCode:
    code: str
    sender_key: str
    sender_id: str
    upn: str
    mail: str
    name: str
    external: bool
    chat_id: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class Held:
    """One held message: its arrival number (order) and the Event as it was confirmed."""

    n: int
    sender_key: str
    event: Event
    held_at: float


class AccessStore:
    """The `access.db` file. Safe for one runtime and any number of CLI processes at once."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        create_private(self.path)  # held messages are private
        self._conn, _ = connect(self.path, busy_timeout=busy_timeout)
        with self._tx() as conn:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            name = getattr(exc, "sqlite_errorname", type(exc).__name__)
            log.warning("access_db_error", code=name, path=str(self.path))
            raise AccessError(f"{self.path} cannot be read or written ({name})",
                              hint=f"check the disk and permissions of {self.path.parent}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._errors(), self._lock, immediate(self._conn) as conn:
            yield conn

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._errors(), self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def data_version(self) -> int:
        """Changes whenever another connection (a CLI command) commits to the file."""
        return int(self._query("PRAGMA data_version")[0][0])

    # --- the allowlist --------------------------------------------------------------------------
    def allowed(self) -> list[Person]:
        return [Person(**dict(row)) for row in self._query("SELECT * FROM allow ORDER BY added_at, key")]

    def add_allowed(self, key: str, *, sender_id: str = "", upn: str = "", mail: str = "", name: str = "",
                    via: str = "cli") -> Person:
        """Add (or complete) an entry; `key` is the object id when known, else an address."""
        key = key.strip().lower()
        if not key:
            raise AccessError("an empty name cannot be allowed")
        person = Person(key, sender_id.lower(), upn.lower(), mail.lower(), name, self.clock(), via)
        with self._tx() as conn:
            conn.execute("INSERT INTO allow VALUES (?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
                         "sender_id = COALESCE(NULLIF(excluded.sender_id, ''), sender_id), "
                         "upn = COALESCE(NULLIF(excluded.upn, ''), upn), "
                         "mail = COALESCE(NULLIF(excluded.mail, ''), mail), "
                         "name = COALESCE(NULLIF(excluded.name, ''), name)",
                         (person.key, person.sender_id, person.upn, person.mail, person.name, person.added_at,
                          person.via))
        return person

    def remove_allowed(self, name: str) -> list[Person]:
        """Remove every entry that `name` (an id, UPN or address) identifies; returns them."""
        name = name.strip().lower()
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM allow WHERE ? IN (key, sender_id, upn, mail)", (name,)).fetchall()
            conn.execute("DELETE FROM allow WHERE ? IN (key, sender_id, upn, mail)", (name,))
        return [Person(**dict(row)) for row in rows]

    # --- pairing codes ----------------------------------------------------------------------------
    def pending(self) -> list[PendingCode]:
        rows = self._query("SELECT * FROM codes WHERE expires_at > ? ORDER BY created_at", (self.clock(),))
        return [PendingCode(**{**dict(row), "external": bool(row["external"])}) for row in rows]

    def may_offer(self, event: Event) -> bool:
        """Whether `offer_code` could give this sender a code now (checked before any Graph call)."""
        rows = self._query("SELECT sender_key FROM codes WHERE expires_at > ?", (self.clock(),))
        return len(rows) < MAX_PENDING and sender_key(event) not in {r["sender_key"] for r in rows}

    def offer_code(self, event: Event, *, upn: str = "", mail: str = "") -> PendingCode | None:
        """A new code for this sender, or None: one is pending for them already, or `MAX_PENDING` are."""
        now, key = self.clock(), sender_key(event)
        with self._tx() as conn:
            conn.execute("DELETE FROM codes WHERE expires_at <= ?", (now,))
            if conn.execute("SELECT 1 FROM codes WHERE sender_key = ?", (key,)).fetchone():
                return None
            if conn.execute("SELECT COUNT(*) FROM codes").fetchone()[0] >= MAX_PENDING:
                return None
            while True:
                code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
                if not conn.execute("SELECT 1 FROM codes WHERE code = ?", (code,)).fetchone():
                    break
            pending = PendingCode(code, key, event.sender_id.lower(), (upn or event.sender_upn).lower(),
                                  mail.lower(), event.sender_name, event.trust == "external",
                                  event.chat_id or "", now, now + CODE_SECONDS)
            conn.execute("INSERT INTO codes VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (pending.code, pending.sender_key, pending.sender_id, pending.upn, pending.mail,
                          pending.name, int(pending.external), pending.chat_id, pending.created_at,
                          pending.expires_at))
        return pending

    def withdraw_code(self, code: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM codes WHERE code = ?", (normalise_code(code),))

    def drop_code_of(self, name: str) -> None:
        """Forget the pending code of a sender approved without it."""
        with self._tx() as conn:
            conn.execute("DELETE FROM codes WHERE ? IN (sender_key, sender_id, upn, mail)", (name.strip().lower(),))

    def code(self, code: str) -> PendingCode | None:
        """The pending (unexpired) code, or None."""
        rows = self._query("SELECT * FROM codes WHERE code = ? AND expires_at > ?",
                           (normalise_code(code), self.clock()))
        return PendingCode(**{**dict(rows[0]), "external": bool(rows[0]["external"])}) if rows else None

    def approve_code(self, code: str, *, via: str) -> Person:
        """Allow the code's sender for good and drop the code; their held messages then go out
        with the runtime's next release (`releasable`). Raises AccessError for an unknown code."""
        pending = self.code(code)
        if pending is None:
            raise AccessError(f"no pending pairing code {normalise_code(code)!r}",
                              hint="codes expire after 1 hour; `agentseat access list` shows the pending ones")
        with self._tx() as conn:
            conn.execute("DELETE FROM codes WHERE code = ?", (pending.code,))
        return self.add_allowed(pending.sender_key, sender_id=pending.sender_id, upn=pending.upn,
                                mail=pending.mail, name=pending.name, via=via)

    def deny_code(self, code: str) -> tuple[PendingCode, int]:
        """Drop the code and every message its sender has held; returns the code and how many."""
        pending = self.code(code)
        if pending is None:
            raise AccessError(f"no pending pairing code {normalise_code(code)!r}",
                              hint="`agentseat access list` shows the pending ones")
        names = {v for v in (pending.sender_key, pending.sender_id, pending.upn, pending.mail) if v}
        with self._tx() as conn:
            conn.execute("DELETE FROM codes WHERE code = ?", (pending.code,))
            dropped = self._drop_held(conn, names)
        return pending, dropped

    def _drop_held(self, conn: sqlite3.Connection, names: set[str]) -> int:
        marks = ",".join("?" * len(names))
        rows = conn.execute(f"SELECT key FROM held WHERE sender_key IN ({marks})", tuple(names)).fetchall()
        conn.executemany("INSERT OR IGNORE INTO dropped VALUES (?, ?)", [(r["key"], self.clock()) for r in rows])
        conn.execute(f"DELETE FROM held WHERE sender_key IN ({marks})", tuple(names))
        return len(rows)

    def consume(self, key: str) -> bool:
        """Record that the message `key` (a sponsor's `approve CODE`) was acted on; False if it was
        already, so a message read again after a restart is not acted on twice."""
        with self._tx() as conn:
            return conn.execute("INSERT OR IGNORE INTO consumed VALUES (?, ?)", (key, self.clock())).rowcount == 1

    # --- held messages ----------------------------------------------------------------------------
    def hold(self, event: Event) -> bool:
        """Keep `event` back; False if it is held already, was denied, or its sender holds too many."""
        key = sender_key(event)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM dropped WHERE key = ?", (event.key,)).fetchone():
                return False
            count = conn.execute("SELECT COUNT(*) FROM held WHERE sender_key = ?", (key,)).fetchone()[0]
            if count >= MAX_HELD_PER_SENDER:
                log.warning("access_held_limit", sender=key, limit=MAX_HELD_PER_SENDER)
                return False
            cursor = conn.execute("INSERT OR IGNORE INTO held(key, sender_key, event, held_at) VALUES (?,?,?,?)",
                                  (event.key, key, event.to_json(), self.clock()))
            return cursor.rowcount == 1

    def held(self, limit: int = 1000) -> list[Held]:
        """Held messages, oldest first."""
        rows = self._query("SELECT * FROM held ORDER BY n LIMIT ?", (limit,))
        return [_held(row) for row in rows]

    def held_counts(self) -> dict[str, int]:
        rows = self._query("SELECT sender_key, COUNT(*) AS c FROM held GROUP BY sender_key ORDER BY MIN(n)")
        return {row["sender_key"]: row["c"] for row in rows}

    def drop_sender(self, name: str) -> int:
        """Deny by sender: drop their held messages (and any code of theirs)."""
        name = name.strip().lower()
        with self._tx() as conn:
            conn.execute("DELETE FROM codes WHERE ? IN (sender_key, sender_id, upn, mail)", (name,))
            return self._drop_held(conn, {name})

    def forget_held(self, numbers: Iterable[int]) -> None:
        """Remove held rows once they are released into the inbox."""
        with self._tx() as conn:
            conn.executemany("DELETE FROM held WHERE n = ?", [(n,) for n in numbers])


def _held(row: sqlite3.Row) -> Held:
    data = json.loads(row["event"])
    return Held(row["n"], row["sender_key"], Event(**data), row["held_at"])
