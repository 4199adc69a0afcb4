"""Read state of the inbox: which events the agent has acted on.

An event is unread (`events.read_at IS NULL`) from its append until the agent acts on it:
a send or reply in its chat or mail thread, a tool returning it, or `mark_read`. A push
never marks it read, because hosts drop pushes without a word (claude-code-host §1).

This module owns the read-state queries. `Inbox` mixes them in and provides the
connection, the transactions and the error mapping; it knows nothing of read state
beyond the column and its index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from agentseat.errors import InboxError

from .events import COLUMNS, Event

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
#: Seqs or ids per statement: well under SQLite's bound-variable limit on every build.
_CHUNK = 500
#: Served by the partial index events_unread (seq order, unread rows only).
_UNREAD = "read_at IS NULL"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored event with its read state: `read_at` is None while it is unread."""

    event: Event
    read_at: str | None

    @property
    def unread(self) -> bool:
        return self.read_at is None


def _chunks(values: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _marks(seqs: Iterable[int], message_ids: Iterable[str]) -> tuple[list[int], list[str]]:
    """The seqs and message ids to mark, checked: a bad one is a caller's bug, not a no-op."""
    seq_list = list(dict.fromkeys(seqs))
    ids = list(dict.fromkeys(message_ids))
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in seq_list):
        raise InboxError("seqs must be ints >= 1", hint="a bug in the caller; nothing was marked")
    if any(not isinstance(m, str) or not m for m in ids):
        raise InboxError("message ids must be non-empty strings", hint="a bug in the caller; nothing was marked")
    return seq_list, ids


def _check_int(name: str, value: int | None, minimum: int) -> None:
    # SQLite reads a negative LIMIT as "no limit" and compares a str seq with ints quietly: refuse both.
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise InboxError(f"{name} must be an int >= {minimum}, not {value!r}", hint="a bug in the caller")


def _kind(kind: str | None) -> tuple[str, tuple[str, ...]]:
    # `+kind` keeps the planner on the small unread index instead of events_kind_seq,
    # which would walk every event of that kind, read or not.
    return ("+kind = ? AND", (kind,)) if kind is not None else ("", ())


class ReadState:
    """The read-state half of `Inbox` (sync core, `a*` wrappers for the event loop)."""

    if TYPE_CHECKING:  # provided by Inbox
        def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...
        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _errors(self, op: str) -> AbstractContextManager[None]: ...
        async def _run(self, func: Callable[..., _T], *args: Any) -> _T: ...

    def unread(self, limit: int = 100, kind: str | None = None, after_seq: int = 0) -> list[Event]:
        """Unread events with seq > after_seq, oldest first, at most `limit`; marks nothing."""
        _check_int("limit", limit, 1)
        _check_int("after_seq", after_seq, 0)
        where, args = _kind(kind)
        rows = self._query(f"SELECT {COLUMNS} FROM events WHERE {where} {_UNREAD} AND seq > ? ORDER BY seq LIMIT ?",
                           (*args, after_seq, limit))
        return [Event.from_row(r) for r in rows]

    def take_unread(self, limit: int = 100, kind: str | None = None, after_seq: int = 0) -> list[Event]:
        """Return the oldest unread events and mark them read, in one BEGIN IMMEDIATE transaction.

        SQLite's write lock serialises takers in every process, so two callers (two tool calls,
        two `serve` processes) never both get the same event as unread.
        """
        _check_int("limit", limit, 1)
        _check_int("after_seq", after_seq, 0)
        where, args = _kind(kind)
        with self._errors("take_unread"), self._tx() as conn:
            rows = conn.execute(f"SELECT {COLUMNS} FROM events WHERE {where} {_UNREAD} AND seq > ? "
                                "ORDER BY seq LIMIT ?", (*args, after_seq, limit)).fetchall()
            events = [Event.from_row(r) for r in rows]
            if events:
                now = _now()
                conn.executemany("UPDATE events SET read_at = ? WHERE seq = ?", [(now, e.seq) for e in events])
        if events:
            log.debug("unread_taken", count=len(events), first=events[0].seq, last=events[-1].seq)
        return events

    def mark_read(self, *, seqs: Iterable[int] = (), message_ids: Iterable[str] = (), chat_id: str | None = None,
                  mail_message_id: str | None = None, through_seq: int | None = None) -> int:
        """Mark unread events read; return how many changed (already read ones do not count).

        `chat_id`: every unread event of that Teams chat (a send or reply there acts on them).
        `mail_message_id`: that mail (a reply to it). `through_seq` limits all of it to events
        with seq <= through_seq: what the agent could have seen when it acted.
        """
        seq_list, ids = _marks(seqs, message_ids)
        _check_int("through_seq", through_seq, 0)
        clauses: list[tuple[str, tuple[Any, ...]]] = []
        clauses += [(f"seq IN ({', '.join('?' * len(c))})", tuple(c)) for c in _chunks(seq_list)]
        clauses += [(f"message_id IN ({', '.join('?' * len(c))})", tuple(c)) for c in _chunks(ids)]
        if chat_id is not None:
            clauses.append(("+kind IN ('teams', 'teams_edit', 'teams_delete') AND chat_id = ?", (chat_id,)))
        if mail_message_id is not None:
            clauses.append(("+kind = 'mail' AND message_id = ?", (mail_message_id,)))
        bound, bound_args = ("AND seq <= ?", (through_seq,)) if through_seq is not None else ("", ())
        changed = 0
        if clauses:
            now = _now()
            with self._errors("mark_read"), self._tx() as conn:
                for clause, args in clauses:  # each only touches unread rows: nothing is counted twice
                    changed += conn.execute(f"UPDATE events SET read_at = ? WHERE {_UNREAD} AND {clause} {bound}",
                                            (now, *args, *bound_args)).rowcount
            log.debug("events_marked_read", count=changed, by_chat=chat_id is not None,
                      by_mail=mail_message_id is not None, seqs=len(seq_list), message_ids=len(ids))
        return changed

    def unknown(self, *, seqs: Iterable[int] = (), message_ids: Iterable[str] = ()) -> tuple[list[int], list[str]]:
        """Which of these seqs and message ids no stored event has (to refuse a mistyped mark)."""
        seq_list, ids = _marks(seqs, message_ids)
        known_seqs: set[int] = set()
        known_ids: set[str] = set()
        for chunk in _chunks(seq_list):
            rows = self._query(f"SELECT seq FROM events WHERE seq IN ({', '.join('?' * len(chunk))})", chunk)
            known_seqs |= {r[0] for r in rows}
        for chunk in _chunks(ids):
            rows = self._query(f"SELECT DISTINCT message_id FROM events WHERE message_id IN "
                               f"({', '.join('?' * len(chunk))})", chunk)
            known_ids |= {r[0] for r in rows}
        return [s for s in seq_list if s not in known_seqs], [m for m in ids if m not in known_ids]

    def unread_summary(self) -> dict[str, Any]:
        """`{"unread": n, "oldest_unread_at": received_at | None, "oldest_unread_seq": seq | None}`."""
        count = self._query(f"SELECT count(*) FROM events WHERE {_UNREAD}")[0][0]
        oldest = self._query(f"SELECT seq, received_at FROM events WHERE {_UNREAD} ORDER BY seq LIMIT 1")
        return {"unread": count, "oldest_unread_at": oldest[0][1] if oldest else None,
                "oldest_unread_seq": oldest[0][0] if oldest else None}

    def entries(self, *, since_seq: int = 0, limit: int = 100, kind: str | None = None,
                newest: bool = False) -> list[Entry]:
        """Events with their read state, read or not, in seq order; marks nothing.

        `newest=True`: the newest `limit` events (still returned oldest first), else the
        first `limit` after since_seq.
        """
        _check_int("limit", limit, 1)
        _check_int("since_seq", since_seq, 0)
        where = "kind = ? AND" if kind is not None else ""
        args = (kind,) if kind is not None else ()
        order = "DESC" if newest else ""
        rows = self._query(f"SELECT {COLUMNS}, read_at FROM events WHERE {where} seq > ? ORDER BY seq {order} "
                           "LIMIT ?", (*args, since_seq, limit))
        found = [Entry(Event.from_row(r), r["read_at"]) for r in rows]
        return found[::-1] if newest else found

    async def aunread(self, limit: int = 100, kind: str | None = None, after_seq: int = 0) -> list[Event]:
        return await self._run(self.unread, limit, kind, after_seq)

    async def atake_unread(self, limit: int = 100, kind: str | None = None, after_seq: int = 0) -> list[Event]:
        return await self._run(self.take_unread, limit, kind, after_seq)

    async def amark_read(self, *, seqs: Iterable[int] = (), message_ids: Iterable[str] = (),
                         chat_id: str | None = None, mail_message_id: str | None = None,
                         through_seq: int | None = None) -> int:
        return await self._run(partial(self.mark_read, seqs=list(seqs), message_ids=list(message_ids),
                                       chat_id=chat_id, mail_message_id=mail_message_id, through_seq=through_seq))

    async def aunknown(self, *, seqs: Iterable[int] = (),
                       message_ids: Iterable[str] = ()) -> tuple[list[int], list[str]]:
        return await self._run(partial(self.unknown, seqs=list(seqs), message_ids=list(message_ids)))

    async def aunread_summary(self) -> dict[str, Any]:
        return await self._run(self.unread_summary)

    async def aentries(self, *, since_seq: int = 0, limit: int = 100, kind: str | None = None,
                       newest: bool = False) -> list[Entry]:
        return await self._run(partial(self.entries, since_seq=since_seq, limit=limit, kind=kind, newest=newest))
