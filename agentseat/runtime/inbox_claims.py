"""The claim rules of a push group: which process pushes which event.

`Inbox` (inbox.py) owns the connection, the lock and the transactions, and calls `claim_in`
inside an open write transaction. This module owns what a claim takes: the events a dead
claimant held and never acknowledged first, then the lowest unclaimed seqs, and what "dead"
means for a `host:pid` claimant.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

import structlog

from agentseat.errors import InboxError

from .events import COLUMNS, Event

__all__ = ["RELEASED", "claim_in", "claimant_alive"]

log = structlog.get_logger(__name__)

#: The claimant of claims given back (`Inbox.release`): never alive, so the next claim takes them.
RELEASED = "released"


def claimant_alive(claimant: str) -> bool:
    """Whether a `host:pid[:...]` claimant still runs. The inbox is local to one
    machine, so a claimant from this host whose pid is gone has died."""
    host, _, rest = claimant.partition(":")
    if claimant == RELEASED:
        return False
    if host != socket.gethostname():
        return True  # cannot tell; never steal from a live process
    try:
        os.kill(int(rest.split(":")[0]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError, OverflowError):
        return True
    return True


def claim_in(conn: sqlite3.Connection, group: str, claimant: str, limit: int,
             alive: Callable[[str], bool], ack: Iterable[int]) -> tuple[list[Event], int]:
    """The claim inside an open write transaction: the events, and the group's position after it.

    `ack` (the claimant's previous batch) is marked delivered first, in the same transaction.
    """
    done = [(group, claimant, int(seq)) for seq in ack]
    conn.executemany("UPDATE claims SET done = 1 WHERE grp = ? AND claimant = ? AND seq = ?", done)
    rows = conn.execute("SELECT claimed_through FROM groups WHERE name = ?", (group,)).fetchall()
    if not rows:
        raise InboxError(f"unknown claim group {group!r}", hint="call ensure_group() before claim_next()")
    now = datetime.now(timezone.utc).isoformat()
    holders = [r[0] for r in conn.execute(
        "SELECT DISTINCT claimant FROM claims WHERE grp = ? AND done = 0 AND claimant != ?", (group, claimant))]
    dead = [h for h in holders if not alive(h)]
    orphans = [Event.from_row(r) for r in conn.execute(
        f"SELECT {COLUMNS} FROM events WHERE seq IN (SELECT seq FROM claims WHERE grp = ? AND done = 0 "
        f"AND claimant IN ({', '.join('?' * len(dead))})) ORDER BY seq LIMIT ?",
        (group, *dead, limit)).fetchall()] if dead else []
    if orphans:
        conn.executemany("UPDATE claims SET claimant = ?, claimed_at = ? WHERE grp = ? AND seq = ?",
                         [(claimant, now, group, e.seq) for e in orphans])
        log.info("claims_taken_over", group=group, claimant=claimant, count=len(orphans))
    events = [Event.from_row(r) for r in conn.execute(
        f"SELECT {COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        (rows[0][0], limit - len(orphans))).fetchall()] if len(orphans) < limit else []
    if events:
        # The primary key (grp, seq) makes a double claim fail loudly even if this logic were wrong.
        conn.executemany("INSERT INTO claims(grp, seq, claimant, claimed_at) VALUES (?, ?, ?, ?)",
                         [(group, e.seq, claimant, now) for e in events])
        conn.execute("UPDATE groups SET claimed_through = ? WHERE name = ?", (events[-1].seq, group))
    return orphans + events, events[-1].seq if events else rows[0][0]
