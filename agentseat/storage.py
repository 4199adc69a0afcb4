"""Private SQLite files in the state dir: how a store opens one and runs a write transaction.

The inbox, the intake's pending confirmations, the access store and the permission store
each keep their own file (one concern each). What they share lives here: the file is
created 0600 before SQLite opens it (SQLite gives -wal and -shm the same mode), WAL with
synchronous NORMAL, and BEGIN IMMEDIATE transactions. Errors stay the caller's: each store
maps `sqlite3.Error` to its own message and hint.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["connect", "create_private", "immediate", "open_store"]


def create_private(path: Path) -> None:
    """Create `path` (and its folder, 0700) readable by this user only, unless it exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def connect(path: Path, *, busy_timeout: float = 5.0) -> tuple[sqlite3.Connection, str]:
    """A connection in autocommit mode, rows by name, WAL; returns it with the journal mode got.

    timeout= is SQLite's busy_timeout. isolation_level=None: writers issue BEGIN IMMEDIATE, so a
    write takes the lock up front and never fails upgrading a read (SQLITE_BUSY_SNAPSHOT).
    WAL + NORMAL: COMMIT returns once the commit is in the WAL (OS page cache), so a killed
    process (kill -9) loses nothing committed; a power cut may lose the last commits.
    """
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchall()[0][0])
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn, mode


def open_store(path: Path, schema: str, what: str, hint: str = "") -> sqlite3.Connection:
    """A private store at `path` with `schema` (statements split on `;`) created in one transaction.

    `what` names the store in the error ("the audit log"); failing, it is an InboxError whose hint
    says to check the folder is writable, then `hint`.
    """
    from .errors import InboxError  # errors imports nothing of ours; kept local so storage stays a leaf

    try:
        create_private(path)
        conn, _ = connect(path)
        try:
            with immediate(conn) as tx:
                for statement in filter(str.strip, schema.split(";")):
                    tx.execute(statement)
        except BaseException:
            conn.close()
            raise
    except (sqlite3.Error, OSError) as exc:
        raise InboxError(f"cannot open {what} at {path}: {exc}",
                         hint=f"check that {path.parent} is writable" + (f"; {hint}" if hint else "")) from exc
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (for example on SQLITE_FULL)
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
