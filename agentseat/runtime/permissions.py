"""Pending permission requests, shared by every `agentseat serve` of one agent: `permissions.db`.

Claude Code asks one `serve` process (the one it started) to relay a permission prompt;
the sponsor's answer is read by another (the one holding the owner lock, which runs the
intake). This small SQLite file joins the two: the asking process writes the request and
waits for it to change, the owner's interceptor records the answer. It also remembers
which refusal notices a sponsor has already been sent, so each is sent once.

It owns the reply rule (`parse_reply`) and the 10-minute lifetime. It does not talk to
Graph or MCP.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import structlog

from ..storage import connect, create_private, immediate

log = structlog.get_logger(__name__)

FILE_NAME = "permissions.db"
#: How long a sponsor may answer (issue 9, point 7).
TTL_SECONDS = 600.0
#: Claude Code's request ids: 5 letters a-z without `l` (claude-code-host §4).
REQUEST_ID = re.compile(r"^[a-km-z]{5}$")
#: The reply the official channel plugins accept, any case (claude-code-host §4).
REPLY = re.compile(r"^\s*(y|yes|n|no)\s+([a-km-z]{5})\s*$", re.IGNORECASE)
#: A message that starts like an answer but is not one: worth telling the sponsor why it did nothing.
ATTEMPT = re.compile(r"^\s*(y|yes|n|no|allow|deny)\b", re.IGNORECASE)

Behavior = Literal["allow", "deny"]
Status = Literal["pending", "allow", "deny", "expired", "delivered"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests(request_id TEXT PRIMARY KEY, created_at REAL NOT NULL, process TEXT NOT NULL,
    tool_name TEXT NOT NULL, status TEXT NOT NULL, answered_by TEXT, answered_at REAL, answer_key TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS asks(request_id TEXT NOT NULL, sponsor_id TEXT NOT NULL, chat_id TEXT NOT NULL,
    PRIMARY KEY(request_id, sponsor_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notices(request_id TEXT NOT NULL, sponsor_id TEXT NOT NULL, reason TEXT NOT NULL,
    at REAL NOT NULL, PRIMARY KEY(request_id, sponsor_id, reason)) WITHOUT ROWID;
"""


def parse_reply(text: str) -> tuple[Behavior, str] | None:
    """`("allow"|"deny", request_id)` when `text` is exactly an answer, else None."""
    match = REPLY.match(text)
    if match is None:
        return None
    return ("allow" if match.group(1).lower().startswith("y") else "deny"), match.group(2).lower()


@dataclass(frozen=True)
class Request:
    """One relayed permission request as stored."""

    request_id: str
    created_at: float
    process: str
    tool_name: str
    status: Status
    answered_by: str | None = None
    answer_key: str | None = None  # the inbox key of the message that answered it

    def expired(self, now: float) -> bool:
        return now - self.created_at > TTL_SECONDS


class PermissionStore:
    """The requests, who was asked where, and the notices sent. Each call is one short transaction.

    A connection per call: calls are rare (a request, a sponsor's reply, a poll every
    fraction of a second while a request waits), and nothing has to be closed.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        create_private(self.path)  # who answered what is private
        with self._tx() as conn:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn, _ = connect(self.path)
        try:
            with immediate(conn):
                yield conn
        finally:
            conn.close()

    # --- the asking process ------------------------------------------------------------------------
    def add(self, request_id: str, process: str, tool_name: str, now: float | None = None) -> bool:
        """Record a new pending request; False when a live request already has this id (ids are short)."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = conn.execute("SELECT status, created_at FROM requests WHERE request_id = ?", (request_id,)).fetchone()
            if row is not None and row[0] == "pending" and now - row[1] <= TTL_SECONDS:
                return False
            # An old request with the same id is history: its asks and notices go with it.
            conn.execute("DELETE FROM asks WHERE request_id = ?", (request_id,))
            conn.execute("DELETE FROM notices WHERE request_id = ?", (request_id,))
            conn.execute("INSERT OR REPLACE INTO requests(request_id, created_at, process, tool_name, status) "
                         "VALUES (?, ?, ?, ?, 'pending')", (request_id, now, process, tool_name))
            # Keep the file small: nothing older than a day is ever looked at again.
            conn.execute("DELETE FROM requests WHERE created_at < ?", (now - 86_400,))
        return True

    def asked(self, request_id: str, sponsor_id: str, chat_id: str) -> None:
        """The question went to `sponsor_id` in their one-on-one chat `chat_id`."""
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO asks(request_id, sponsor_id, chat_id) VALUES (?, ?, ?)",
                         (request_id, sponsor_id.lower(), chat_id))

    def finish(self, request_id: str, status: Literal["expired", "delivered"]) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE requests SET status = ? WHERE request_id = ?", (status, request_id))

    # --- the owner's interceptor ----------------------------------------------------------------
    def get(self, request_id: str) -> Request | None:
        with self._tx() as conn:
            row = conn.execute("SELECT request_id, created_at, process, tool_name, status, answered_by, answer_key "
                               "FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else Request(*row)

    def chat_of(self, sponsor_id: str) -> str | None:
        """The one-on-one chat a question last went to `sponsor_id` in."""
        with self._tx() as conn:
            row = conn.execute("SELECT a.chat_id FROM asks a JOIN requests r USING (request_id) WHERE a.sponsor_id = ? "
                               "ORDER BY r.created_at DESC LIMIT 1", (sponsor_id.lower(),)).fetchone()
        return None if row is None else str(row[0])

    def open_for(self, sponsor_id: str, now: float | None = None) -> str | None:
        """The newest request still waiting that `sponsor_id` was asked, if any."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = conn.execute("SELECT r.request_id FROM requests r JOIN asks a USING (request_id) "
                               "WHERE a.sponsor_id = ? AND r.status = 'pending' AND r.created_at >= ? "
                               "ORDER BY r.created_at DESC LIMIT 1", (sponsor_id.lower(), now - TTL_SECONDS)).fetchone()
        return None if row is None else str(row[0])

    def answer(self, request_id: str, behavior: Behavior, sponsor_id: str, key: str = "",
               now: float | None = None) -> bool:
        """Record the answer (from the message with inbox key `key`) if the request still waits and is
        in time; False when another answer or time won."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            changed = conn.execute("UPDATE requests SET status = ?, answered_by = ?, answered_at = ?, answer_key = ? "
                                   "WHERE request_id = ? AND status = 'pending' AND created_at >= ?",
                                   (behavior, sponsor_id.lower(), now, key or None, request_id,
                                    now - TTL_SECONDS)).rowcount
        return changed == 1

    def expire(self, request_id: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE requests SET status = 'expired' WHERE request_id = ? AND status = 'pending'",
                         (request_id,))

    def first_notice(self, request_id: str, sponsor_id: str, reason: str, now: float | None = None) -> bool:
        """True the first time `reason` is noted for this request and sponsor: the one time to tell them."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            return conn.execute("INSERT OR IGNORE INTO notices(request_id, sponsor_id, reason, at) VALUES (?, ?, ?, ?)",
                                (request_id, sponsor_id.lower(), reason, now)).rowcount == 1

    # --- async wrappers: SQLite may wait on another process's write lock ---------------------------
    async def aget(self, request_id: str) -> Request | None:
        return await anyio.to_thread.run_sync(self.get, request_id)

    async def wait_answer(self, request_id: str, *, interval: float = 0.2) -> Behavior | None:
        """The sponsor's answer, or None once the request expired (or vanished); polls at `interval`.

        Polling a tiny table is cheaper to get right than a cross-process wake-up, and an
        answer typed by a person can wait a fifth of a second.
        """
        while True:
            request = await self.aget(request_id)
            if request is None:
                return None
            if request.status in ("allow", "deny"):
                return request.status  # type: ignore[return-value]
            if request.status != "pending":
                return None
            if request.expired(time.time()):
                await anyio.to_thread.run_sync(self.expire, request_id)
                continue  # an answer may have landed just before the expiry; read again
            await anyio.sleep(interval)
