"""The durable inbox: a SQLite event log in the state dir.

It owns the `Event` contract, deduplication by event key, the `seq` order,
per-sink cursors, atomic claims for a shared push group (the claim rules live in
`inbox_claims.py`), read state (the queries live in `readstate.py`), and wake-ups
for sinks waiting on new events. It does not parse notifications, decide trust,
or deliver anything: producers hand it normalised Events, sinks read them.

Sync methods are the core, each one short transaction; the `a*` wrappers run them
in a worker thread, as a write may wait `busy_timeout` for another process's lock.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog

from agentseat.errors import InboxError
from agentseat.logging import debug_on
from agentseat.storage import connect, create_private, immediate

from .events import COLUMNS, Event, Kind, Source, Trust, event_key
from .inbox_claims import RELEASED, claim_in, claimant_alive
from .inbox_schema import SCHEMA, SCHEMA_VERSION, upgrade
from .readstate import Entry, ReadState

__all__ = ["Entry", "Event", "Inbox", "Kind", "Source", "Trust", "claimant_alive", "event_key"]

log = structlog.get_logger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


_T = TypeVar("_T")


_FIELDS = tuple(f.name for f in dataclasses.fields(Event))
_INSERT = f"INSERT OR IGNORE INTO events({', '.join(_FIELDS[1:])}) VALUES ({', '.join('?' * (len(_FIELDS) - 1))})"


def _kind_filter(kind: str | None) -> tuple[str, tuple[str, ...]]:  # served by the index (kind, seq)
    return ("kind = ? AND", (kind,)) if kind is not None else ("", ())


def _latest(conn: sqlite3.Connection, kind: str | None) -> int:
    where, args = _kind_filter(kind)
    rows = conn.execute(f"SELECT seq FROM events WHERE {where} seq > 0 ORDER BY seq DESC LIMIT 1", args).fetchall()
    return rows[0][0] if rows else 0


def _check_int(name: str, value: int, minimum: int) -> None:
    # SQLite reads a negative LIMIT as "no limit" and would store a str as a seq: refuse both.
    if not isinstance(value, int) or value < minimum:
        raise InboxError(f"{name} must be an int >= {minimum}, not {value!r}", hint="a bug in the caller")




class Inbox(ReadState):
    """The event log of one agent, shared by every process of that agent on this machine.

    Groups: of the processes in a group (for example "push") exactly one gets each
    event. `ensure_group(group, start_seq)` creates a group once, to deliver events
    after start_seq; later calls change nothing, so a restarted server gets what it
    missed. Claims outlive processes and count until acknowledged (`ack`, or the claimant's
    next `claim_next(ack=...)`): a dead claimant's open claims are taken over, at least once.
    Cursors: `advance(sink, seq)` after handling events gives a lone sink at-least-once.
    Read state (`ReadState`): an event is unread until the agent acts on it; claims and
    cursors never change it, so a push that went nowhere leaves the event unread.
    """

    def __init__(self, path: str | os.PathLike[str], *, own_ids: Iterable[str] = (),
                 poll_interval: float = 0.05, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        # Lower-cased, empties removed: an event with an empty upn must not match an unset id.
        self._own = frozenset(i.strip().lower() for i in own_ids if i and i.strip())
        self._poll_interval = poll_interval
        self._busy_timeout = busy_timeout
        # One connection, one thread at a time under this lock: a sqlite3 connection must not be
        # used concurrently, and connections per anyio worker thread could not be closed
        # deterministically. Writers in one process serialise on SQLite's write lock anyway.
        self._lock = threading.Lock()
        # Waiters in this process park on their own anyio.Event; appends on the loop set them.
        self._waiters: set[anyio.Event] = set()
        self._loop_thread: int | None = None
        # Each group's claimed_through as this process's last claim left it (`claimed_through`).
        self._claimed: dict[str, int] = {}
        self._loop_conn: sqlite3.Connection | None = None  # `claim_now`'s, opened at its first use
        with self._errors("open"):
            create_private(self.path)  # messages are private
            self._conn = self._connect()
            try:
                self._init_schema()
                # A second connection only reads PRAGMA data_version, which changes when
                # any *other* connection commits (this process's main one included).
                self._watch = self._connect()
            except BaseException:
                self._conn.close()
                raise
        log.debug("inbox_opened", path=str(self.path))

    def _connect(self, busy_timeout: float | None = None) -> sqlite3.Connection:
        # A power cut may lose the last commits (storage.connect); reconciliation polls fetch
        # them again, and dedupe by key makes that safe.
        conn, mode = connect(self.path, busy_timeout=self._busy_timeout if busy_timeout is None else busy_timeout)
        if mode != "wal":
            log.warning("inbox_not_wal", journal_mode=mode, path=str(self.path))
        return conn

    def _init_schema(self) -> None:
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchall()[0][0]
            if version > SCHEMA_VERSION:
                raise InboxError(f"the inbox at {self.path} was written by a newer agentseat",
                                 hint="upgrade agentseat, or move the file aside to start a new inbox")
            upgrade(conn)
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._watch.close()
            if self._loop_conn is not None:
                self._loop_conn.close()

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _errors(self, op: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._inbox_error(op, exc) from exc
        except OSError as exc:
            raise InboxError(f"cannot open the inbox at {self.path}: {exc.strerror}",
                             hint=f"check that {self.path.parent} exists and is writable") from exc

    def _inbox_error(self, op: str, exc: sqlite3.Error) -> InboxError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        log.warning("inbox_error", op=op, code=name, path=str(self.path))  # the code only, never an event
        where, kept = self.path.parent, "nothing from this write was stored"
        if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            return InboxError(f"inbox {op} failed: the disk is full", hint=f"free space in {where}; {kept}")
        if code == sqlite3.SQLITE_IOERR:
            return InboxError(f"inbox {op} failed: disk I/O error", hint=f"check the disk of {where}; {kept}")
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return InboxError(f"the inbox at {self.path} is corrupt",
                              hint="stop agentseat, move the file aside (with its -wal and -shm files) and restart; "
                                   "messages still on Graph are fetched again")
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return InboxError(f"inbox {op} timed out waiting for another agentseat process",
                              hint="retry; if it persists, look for a hung agentseat process")
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
            return InboxError(f"cannot write the inbox at {self.path}", hint=f"check permissions of {where}")
        return InboxError(f"inbox {op} failed ({name})", hint=f"check {self.path}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        with self._lock, immediate(self._conn) as conn:
            yield conn

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        # fetchall() finishes the statement: an open read would stall WAL checkpoints.
        with self._errors("read"), self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def append(self, events: Iterable[Event]) -> list[Event]:
        """Store the events whose key is new, in one transaction; return them with their seq.

        Duplicates (within the batch or already stored) and the agent's own messages
        are skipped. All or nothing: on any error nothing of the batch is stored.
        """
        return self.insert(events)[0]

    def insert(self, events: Iterable[Event]) -> tuple[list[Event], list[str]]:
        """`append`, also returning the keys it skipped as stored already (duplicates, not own messages).

        The unique key decides, inside the one transaction: a caller need not ask `stored_keys`
        first for events it would store anyway.
        """
        batch = list(events)
        if not all(isinstance(e, Event) for e in batch):
            raise InboxError("append() takes Event objects only", hint="a bug in the caller; nothing was stored")
        stored: list[Event] = []
        duplicates: list[str] = []
        with self._errors("append"), self._tx() as conn:
            for event in batch:
                if event.sender_id.lower() in self._own or event.sender_upn.lower() in self._own:
                    if debug_on(__name__):
                        log.debug("own_event_dropped", key=event.key)
                    continue
                values = [getattr(event, name) for name in _FIELDS[1:]]
                cur = conn.execute(_INSERT, values)  # OR IGNORE: a known key is a duplicate, not an error
                if cur.rowcount == 1:
                    stored.append(event.with_seq(cur.lastrowid))
                else:
                    duplicates.append(event.key)
        if stored:
            if debug_on(__name__):
                log.debug("events_appended", count=len(stored), last_seq=stored[-1].seq)
            if threading.get_ident() == self._loop_thread:
                self._wake()
        return stored, duplicates

    def stored_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` are stored already (a re-read message need not be routed again)."""
        wanted = list(dict.fromkeys(keys))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):  # under SQLite's bound-parameter limit
            chunk = wanted[start:start + 500]
            rows = self._query(f"SELECT key FROM events WHERE key IN ({', '.join('?' * len(chunk))})", chunk)
            found.update(r[0] for r in rows)
        return found

    def read(self, since_seq: int, limit: int = 100, kind: str | None = None) -> list[Event]:
        """Events with seq > since_seq, in seq order, at most `limit`, optionally of one kind."""
        _check_int("limit", limit, 1)
        where, args = _kind_filter(kind)
        rows = self._query(f"SELECT {COLUMNS} FROM events WHERE {where} seq > ? ORDER BY seq LIMIT ?",
                           (*args, since_seq, limit))
        return [Event.from_row(r) for r in rows]

    def latest_seq(self, kind: str | None = None) -> int:
        """The highest stored seq (of one kind), 0 when there is none."""
        with self._errors("read"), self._lock:
            return _latest(self._conn, kind)

    def count(self, kind: str | None = None) -> int:
        where, args = _kind_filter(kind)
        return self._query(f"SELECT count(*) FROM events WHERE {where} seq > 0", args)[0][0]

    def last_event(self) -> Event | None:
        rows = self._query(f"SELECT {COLUMNS} FROM events ORDER BY seq DESC LIMIT 1")
        return Event.from_row(rows[0]) if rows else None

    # --- the interaction record's inbound half (agentseat/record/history.py) ---
    def history(self, *, chat_id: str | None = None, person: str | None = None, since: str | None = None,
                limit: int = 20, kinds: Iterable[str] = ("teams", "mail", "channel", "teams_edit", "teams_delete"),
                ) -> list[Event]:
        """The newest `limit` inbound messages matching, newest first (time: `created_at`)."""
        _check_int("limit", limit, 1)
        kinds = tuple(kinds)
        where, args = [f"kind IN ({', '.join('?' * len(kinds))})"], list(kinds)
        if chat_id:
            where.append("chat_id = ?")
            args.append(chat_id)
        if person:
            where.append("(lower(sender_upn) = ? OR lower(sender_id) = ? OR lower(sender_name) LIKE ?)")
            args += [person.lower(), person.lower(), f"%{person.lower()}%"]
        if since:
            where.append("created_at >= ?")
            args.append(since)
        rows = self._query(f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(where)} "
                           "ORDER BY created_at DESC, seq DESC LIMIT ?", (*args, limit))
        return [Event.from_row(r) for r in rows]

    def cursor(self, sink: str) -> int:
        """The last seq `sink` has handled; 0 for a sink never seen."""
        rows = self._query("SELECT seq FROM cursors WHERE sink = ?", (sink,))
        return rows[0][0] if rows else 0

    def advance(self, sink: str, seq: int) -> int:
        """Move `sink`'s cursor to `seq`, never backwards; return the cursor."""
        _check_int("seq", seq, 0)
        with self._errors("advance"), self._tx() as conn:
            conn.execute("INSERT INTO cursors(sink, seq) VALUES (?, ?) "
                         "ON CONFLICT(sink) DO UPDATE SET seq = max(seq, excluded.seq)", (sink, seq))
            return conn.execute("SELECT seq FROM cursors WHERE sink = ?", (sink,)).fetchall()[0][0]

    def ensure_group(self, group: str, start_seq: int) -> int:
        """Create `group` delivering events after `start_seq`, unless it exists; return its position.

        The position is the seq through which the group has claimed events. Use
        `latest_seq()` as start on a group's first start, so history is not replayed.
        """
        _check_int("start_seq", start_seq, 0)
        with self._errors("ensure_group"), self._tx() as conn:
            conn.execute("INSERT OR IGNORE INTO groups(name, start_seq, claimed_through, created_at) "
                         "VALUES (?, ?, ?, ?)", (group, start_seq, start_seq, _now()))
            return conn.execute("SELECT claimed_through FROM groups WHERE name = ?", (group,)).fetchall()[0][0]

    def group_position(self, group: str) -> int | None:
        rows = self._query("SELECT claimed_through FROM groups WHERE name = ?", (group,))
        return rows[0][0] if rows else None

    def claim_next(self, group: str, claimant: str, limit: int = 50,
                   alive: Callable[[str], bool] | None = None, *, ack: Iterable[int] = ()) -> list[Event]:
        """Claim, in seq order, up to `limit` events no live member of `group` holds.

        One BEGIN IMMEDIATE transaction: concurrent claimants in any process are
        serialised by SQLite's write lock, so no event is handed out twice and, as
        claims always take the lowest unclaimed seqs, none is skipped. Claims that a
        dead claimant took but never acknowledged (it crashed between claim and
        push) are taken over first, so an event is never lost to a crash; the price
        is that an event pushed just before such a crash is pushed again.

        `ack`: seqs of this claimant's previous batch, marked delivered in the same
        transaction (one commit per batch instead of two; as `ack()` does).
        """
        _check_int("limit", limit, 1)
        with self._errors("claim"), self._tx() as conn:
            events = self._claim_in(conn, group, claimant, limit, alive or claimant_alive, ack)
        return self._claimed_events(group, claimant, events)

    def claim_now(self, group: str, claimant: str, limit: int = 50, *, ack: Iterable[int] = ()) -> list[Event] | None:
        """`claim_next` on the event loop, or None when it would have to wait (then use `aclaim_next`).

        A claim is an indexed read and a few small writes, less than a worker-thread hop
        costs in latency (bench/hotpath.py), so the loop makes it itself on a connection of
        its own that never waits: no busy timeout, and no WAL checkpoint (a commit past the
        checkpoint size would fsync on the loop), which the worker connection's commits run.
        Another writer holding the lock, in this process or another, means None.
        """
        _check_int("limit", limit, 1)
        # This process's writers take `_lock` first: a worker thread in a write means None at
        # once, and a worker that comes during the claim waits on the lock, woken when it is
        # released. Without it the worker met SQLITE_BUSY, whose busy handler sleeps 1 ms, then
        # 2, then 5, holding `_lock` meanwhile: under load a fifth of the worker's time (bench/).
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._loop_conn is None:
                conn = self._connect(busy_timeout=0.0)
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                self._loop_conn = conn
            with immediate(self._loop_conn) as conn:
                events = self._claim_in(conn, group, claimant, limit, claimant_alive, ack)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise self._inbox_error("claim", exc) from exc
        except sqlite3.Error as exc:
            raise self._inbox_error("claim", exc) from exc
        finally:
            self._lock.release()
        return self._claimed_events(group, claimant, events)

    def _claim_in(self, conn: sqlite3.Connection, group: str, claimant: str, limit: int,
                  alive: Callable[[str], bool], ack: Iterable[int]) -> list[Event]:
        """The claim inside an open write transaction (inbox_claims.py); remembers the group's position."""
        events, self._claimed[group] = claim_in(conn, group, claimant, limit, alive, ack)
        return events

    def _claimed_events(self, group: str, claimant: str, events: list[Event]) -> list[Event]:
        if events and debug_on(__name__):
            log.debug("events_claimed", group=group, claimant=claimant, first=events[0].seq, last=events[-1].seq)
        return events

    def claimed_through(self, group: str) -> int | None:
        """`group_position` as this process's last `claim_next` saw it (None before one), without I/O."""
        return self._claimed.get(group)

    def ack(self, group: str, seqs: Iterable[int]) -> None:
        """Mark claimed events as delivered: nobody takes them over any more."""
        values = [(group, int(seq)) for seq in seqs]
        if values:
            with self._errors("ack"), self._tx() as conn:
                conn.executemany("UPDATE claims SET done = 1 WHERE grp = ? AND seq = ?", values)

    def release(self, group: str, claimant: str) -> int:
        """Give back this claimant's unacknowledged claims (on shutdown or a failed push)."""
        with self._errors("release"), self._tx() as conn:
            cur = conn.execute("UPDATE claims SET claimant = ? WHERE grp = ? AND claimant = ? AND done = 0",
                               (RELEASED, group, claimant))
            return cur.rowcount

    def get_meta(self, k: str) -> str | None:
        rows = self._query("SELECT v FROM meta WHERE k = ?", (k,))
        return rows[0][0] if rows else None

    def set_meta(self, k: str, v: str | None) -> None:
        """Store a small string (for example subscription state); None deletes it."""
        with self._errors("set_meta"), self._tx() as conn:
            if v is None:
                conn.execute("DELETE FROM meta WHERE k = ?", (k,))
            else:
                conn.execute("INSERT INTO meta(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", (k, v))

    async def _run(self, func: Callable[..., _T], *args: Any) -> _T:
        # Not abandoned on cancel: the thread finishes, and its result (a claim, an
        # append) reaches the caller, who is cancelled at its next checkpoint.
        return await anyio.to_thread.run_sync(func, *args)

    async def aappend(self, events: Iterable[Event]) -> list[Event]:
        stored = await self._run(self.append, list(events))
        if stored:
            self._wake()  # back on the loop thread: wake same-process sinks now
        return stored

    async def aread(self, since_seq: int, limit: int = 100, kind: str | None = None) -> list[Event]:
        return await self._run(self.read, since_seq, limit, kind)

    async def aadvance(self, sink: str, seq: int) -> int:
        return await self._run(self.advance, sink, seq)

    async def aensure_group(self, group: str, start_seq: int) -> int:
        return await self._run(self.ensure_group, group, start_seq)

    async def aack(self, group: str, seqs: Iterable[int]) -> None:
        await self._run(self.ack, group, list(seqs))

    async def arelease(self, group: str, claimant: str) -> int:
        return await self._run(self.release, group, claimant)

    async def aclaim_next(self, group: str, claimant: str, limit: int = 50, *, ack: Iterable[int] = ()) -> list[Event]:
        return await self._run(functools.partial(self.claim_next, group, claimant, limit, ack=list(ack)))

    def wake(self) -> None:
        """Wake same-process sinks; call it on the loop after an append made in a worker thread."""
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            waiter.set()

    def _data_version(self) -> int:
        # Called on the loop thread: it reads the WAL index in shared memory, microseconds.
        with self._errors("watch"):
            return self._watch.execute("PRAGMA data_version").fetchall()[0][0]

    async def wait_for_new(self, after_seq: int, timeout: float | None = None, *, kind: str | None = None) -> bool:
        """Wait until an event (of `kind`) with seq > after_seq exists; False on timeout.

        Appends on this loop wake waiters at once; other processes' commits are seen
        by polling `PRAGMA data_version` every `poll_interval` seconds.
        """
        self._loop_thread = threading.get_ident()
        with anyio.move_on_after(timeout):
            while True:
                waiter = anyio.Event()
                self._waiters.add(waiter)
                try:
                    version = self._data_version()  # taken before the read, so no commit slips between
                    # On the loop, as data_version: an indexed read, microseconds; a worker-thread
                    # call would cost tens, twice an event at batch 1 (bench/hotpath.py).
                    with self._errors("watch"):
                        latest = _latest(self._watch, kind)
                    if latest > after_seq:
                        return True
                    while not waiter.is_set():
                        with anyio.move_on_after(self._poll_interval):
                            await waiter.wait()
                        if self._data_version() != version:
                            break
                finally:
                    self._waiters.discard(waiter)
        return False
