"""The intake: every producer hands its events here, and only the intake appends to the inbox.

A notification is a claim; Graph is the truth (DESIGN, "Trust"). Routing of one event:

- unconfirmed, and its sender would get more than untrusted treatment (the gate says
  `allow` or `hold`, or its trust is `sponsor`): kept as *pending* in `intake.db`
  (before the webhook answers 202) and confirmed by one GET of that message with the
  agent's own token. The event then stored or held carries Graph's sender, text and
  time; a message Graph lacks, or has from someone else, is dropped and counted.
- unconfirmed and `open`: stored from the notification alone, as untrusted data.
- confirmed and `allow`: interceptors (the permission relay, `approve CODE`), then stored.
- confirmed and `open`: stored. Confirmed and `hold`: handed to `gate.hold`.

Invariant: an event with trust `sponsor` is never appended unless it is confirmed.
It does not own the notification checks (runtime/pipeline.py), who may reach the
agent (agentseat/access/, behind `Gate`) or the Graph client (the reader is injected).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import structlog

from agentseat.channels.normalize import channel_message_event
from agentseat.errors import AgentSeatError, InboxError

from .events import CHAT_KINDS, Event
from .fetchq import TokenBucket
from .inbox import Inbox
from .intake_store import PendingStore
from .normalize import TrustPolicy, chat_change_event, chat_message_event

__all__ = ["ChatReader", "Decision", "Gate", "Intake", "Interceptor", "TenantGate", "Written"]

log = structlog.get_logger(__name__)

Decision = Literal["allow", "open", "hold"]
#: True: the event is consumed (never stored or pushed).
Interceptor = Callable[[Event], Awaitable[bool]]
#: GET one chat message with the agent's token; None when Graph does not have it (404).
ChatReader = Callable[[str, str], Awaitable[dict[str, Any] | None]]
#: GET the channel post or reply a `channel` event names (its team, channel and thread); None when Graph lacks it.
ChannelReader = Callable[[Event], Awaitable[dict[str, Any] | None]]
#: (kind, reason): schedule one coalesced resync of that kind.
Overflow = Callable[[str, str], Any]

_ID_CHARS = 100  # Graph's ids are shorter; a forged one is cut in the log
_SEEN = 4096  # keys handled recently: a replayed notification of a stored message costs no GET
#: A backlog longer than this many seconds of confirmations asks for a resync of the kind (the
#: poller coalesces and spaces them): listing reads genuine messages at once, and their pending
#: confirmations are then skipped, so a flood of forged claims cannot queue a sponsor out.
BACKLOG_SECONDS = 2.0


class Gate(Protocol):
    """Who may reach the agent (the access policy implements it; `TenantGate` is today's rule)."""

    def decide(self, event: Event) -> Decision:
        """allow: confirmed first, then stored; open: may be stored from the notification alone
        (untrusted); hold: confirmed first, then handed to `hold`.

        Also called in the notification pipeline's worker thread (`Intake.write`): it only reads."""
        ...

    async def hold(self, event: Event) -> None:
        """Keep a confirmed event out of `events` (and maybe reply with a pairing code)."""
        ...


class TenantGate:
    """Sponsors are allowed, everyone else is open (stored as untrusted data), nothing is held.

    `allowed` names more senders to confirm and allow (the bot's `--allow` until the access
    policy takes it over).
    """

    def __init__(self, allowed: Callable[[Event], bool] | None = None) -> None:
        self._allowed = allowed

    def decide(self, event: Event) -> Decision:
        if event.trust == "sponsor" or (self._allowed is not None and self._allowed(event)):
            return "allow"
        return "open"

    async def hold(self, event: Event) -> None:  # never asked: decide() never holds
        log.warning("intake_hold_unsupported", key=event.key[:3 * _ID_CHARS])


@dataclass
class Written:
    """What `Intake.write` did in the worker thread, for `Intake.settle` to account on the loop."""

    already: list[str] = field(default_factory=list)  # keys stored before
    queued: list[Event] = field(default_factory=list)  # unconfirmed events that need Graph's word
    over: list[Event] = field(default_factory=list)  # of those, the ones the pending queue had no room for
    added: int | None = None  # how many were new in intake.db (None: none were kept)
    stored: list[Event] = field(default_factory=list)  # appended to the inbox, with seq
    error: InboxError | None = None  # the inbox append failed (the pending rows were kept)


class Intake:
    """Routes events to the inbox, to pending confirmation, to interceptors or to the gate's hold.

    `counters` (a plain dict of ints) is what `status` shows: `stored`, `pending` (a gauge),
    `confirmed`, `intercepted`, `held`, `released`, `dropped_<reason>` and the fetch queues'
    counts. Run `run()` in the owner process to confirm pending events.
    """

    def __init__(self, inbox: Inbox, path: str | Path, *, policy: TrustPolicy, gate: Gate | None = None,
                 reader: ChatReader | None = None, on_overflow: Overflow | None = None,
                 max_pending: int = 200, rate: float = 4.0, burst: float = 4.0,
                 max_attempts: int = 3, retry_seconds: float = 2.0) -> None:
        self.inbox = inbox
        self.policy = policy
        self.gate: Gate = gate or TenantGate()
        self.reader = reader
        self.channel_reader: ChannelReader | None = None
        self.on_overflow = on_overflow
        self._store = PendingStore(path)
        self._interceptors: list[Interceptor] = []
        self._max_pending, self._max_attempts, self._retry_seconds = max_pending, max_attempts, retry_seconds
        self._bucket = TokenBucket(rate, burst)
        self._backlog = max(int(rate * BACKLOG_SECONDS), 1)
        self._wakeup: anyio.Event | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.counters: dict[str, int] = dict.fromkeys(
            ("stored", "pending", "confirmed", "intercepted", "held", "released"), 0)
        self.counters["pending"] = self._store.count()

    def close(self) -> None:
        self._store.close()

    def intercept(self, interceptor: Interceptor) -> None:
        """Register a hook that sees every confirmed `allow` event before it is stored, in arrival order."""
        self._interceptors.append(interceptor)

    # --- routing ---------------------------------------------------------------------------
    async def admit(self, events: Iterable[Event]) -> list[Event]:
        """Route each event; return those appended to `events` (with seq).

        Pending events are durable when this returns. Raises `InboxError` when a store
        fails (the webhook then answers 5xx and Graph delivers again).
        """
        to_store: list[Event] = []
        pending: list[Event] = []
        batch = [e for e in events if e.key not in self._seen]
        # A message stored before (by an earlier process: a poll re-reading after a restart)
        # must not reach the gate or the interceptors again: no second pairing code, no
        # second answer. One indexed read per batch; the key is the inbox's unique key.
        stored = await anyio.to_thread.run_sync(self.inbox.stored_keys, [e.key for e in batch]) if batch else set()
        for event in batch:
            if event.key in stored:
                self._remember(event.key)
                self._count("already_stored")
                continue
            decision = self.gate.decide(event)
            if not event.confirmed:
                if decision == "open" and event.trust != "sponsor":
                    to_store.append(event)  # the notification alone: untrusted data
                else:
                    pending.append(event)
                continue
            if decision == "hold":
                self._remember(event.key)
                await self.gate.hold(event)
                self._count("held")
                continue
            if decision == "allow" and await self._intercepted(event):
                continue
            to_store.append(event)
        if pending:
            keep, over = self._room(pending)
            self._queued(pending, over, await anyio.to_thread.run_sync(self._store.add, keep) if keep else None)
        return await self._append(to_store)

    # --- the notification pipeline's store (`BatchStore`, runtime/batch.py) -------------------
    def write(self, events: list[Event]) -> Written:
        """`admit`'s SQLite work for unconfirmed events, in the pipeline's worker thread.

        Routes as `admit` does (stored before: skipped; open: appended; else: kept pending)
        and touches no loop state: `settle` does the bookkeeping. Confirmed events are left to
        `settle`, which admits them (interceptors and holds await). Raises `InboxError` when
        the reads or the pending store fail, before anything is appended.
        """
        batch = [e for e in events if not e.confirmed and e.key not in self._seen]
        to_store: list[Event] = []
        to_queue: list[Event] = []
        for event in batch:
            # Never an unconfirmed sponsor in the inbox: the invariant `_append` checks holds by this rule.
            open_ = self.gate.decide(event) == "open" and event.trust != "sponsor"
            (to_store if open_ else to_queue).append(event)
        # Only the events bound for the pending queue are looked up first; for the others the
        # inbox's unique key decides inside the append (`Inbox.insert`), one query fewer a POST.
        stored = self.inbox.stored_keys([e.key for e in to_queue]) if to_queue else set()
        written = Written(already=[e.key for e in to_queue if e.key in stored])
        written.queued = [e for e in to_queue if e.key not in stored]
        if written.queued:
            keep, written.over = self._room(written.queued)
            written.added = self._store.add(keep) if keep else None
        try:
            written.stored, duplicates = self.inbox.insert(to_store) if to_store else ([], [])
        except InboxError as exc:
            written.error = exc  # raised by `settle`, after the pending rows are counted
        else:
            written.already += duplicates
        return written

    async def settle(self, events: list[Event], written: Written) -> list[Event]:
        """`write`'s bookkeeping, on the loop; returns the events appended (with seq)."""
        for key in written.already:
            self._remember(key)
            self._count("already_stored")
        if written.queued:
            self._queued(written.queued, written.over, written.added)
        if written.error is not None:
            raise written.error
        if written.stored:
            self._count("stored", len(written.stored))
            self.inbox.wake()
        confirmed = [e for e in events if e.confirmed]
        return written.stored + (await self.admit(confirmed) if confirmed else [])

    def note_pending(self, added: int) -> None:
        """Another process (an intake process, agentseat/intake_workers) kept `added` pending rows in
        `intake.db`: count them and wake `run` to confirm them."""
        self._queued([], [], added)

    async def release(self, events: Iterable[Event]) -> list[Event]:
        """Append events the access policy held and now releases, in order."""
        stored = await self._append(list(events))
        self._count("released", len(stored))
        return stored

    async def _intercepted(self, event: Event) -> bool:
        for interceptor in self._interceptors:
            try:
                consumed = await interceptor(event)
            except Exception as exc:  # a broken hook must not lose the message nor fail the POST
                # The type only: an exception's text may quote the message.
                log.warning("intake_interceptor_failed", key=event.key[:3 * _ID_CHARS], error=type(exc).__name__)
                self._count("interceptor_errors")
                continue
            if consumed:
                self._remember(event.key)
                self._count("intercepted")
                return True
        return False

    async def _append(self, events: list[Event]) -> list[Event]:
        safe: list[Event] = []
        for event in events:
            if event.trust == "sponsor" and not event.confirmed:
                # The invariant every sink relies on (CONTRACTS, invariant 2).
                self._count("refused_unconfirmed_sponsor")
                log.error("intake_refused_unconfirmed_sponsor", key=event.key[:3 * _ID_CHARS])
                continue
            safe.append(event)
        if not safe:
            return []
        stored = await self.inbox.aappend(safe)
        self._count("stored", len(stored))
        for event in safe:
            if event.confirmed:
                self._remember(event.key)
        return stored

    def _room(self, events: list[Event]) -> tuple[list[Event], list[Event]]:
        """The events the pending queue has room for, and those over its cap."""
        room = max(self._max_pending - self.counters["pending"], 0)
        return events[:room], events[room:]

    def _queued(self, events: list[Event], over: list[Event], added: int | None) -> None:
        """Account for pending events kept (`added` new rows; None when none were kept) and those over the cap."""
        if over:
            self._count("dropped_confirm_queue_full", len(over))
            log.warning("intake_dropped", reason="confirm_queue_full", items=len(over))
            if self.on_overflow is not None:
                for kind in sorted({e.kind for e in over}):
                    self.on_overflow(kind, "confirm_queue_full")  # a resync reads them from Graph instead
        if added is not None:
            self._count("pending", added)
            if self._wakeup is not None:
                self._wakeup.set()
        if self.counters["pending"] > self._backlog and self.on_overflow is not None:
            for kind in sorted({e.kind for e in events}):
                self.on_overflow(kind, "confirm_backlog")

    # --- confirmation ----------------------------------------------------------------------
    async def run(self) -> None:
        """Confirm pending events (those left by a previous process first) until cancelled."""
        while True:
            self._wakeup = anyio.Event()  # set by any add after this point
            rows = await anyio.to_thread.run_sync(self._store.oldest, 16)
            if not rows:
                await self._wakeup.wait()
                continue
            failed = 0
            for row_id, attempts, event in rows:
                if event.key in self._seen:  # stored meanwhile (a resync read it): no GET needed
                    await anyio.to_thread.run_sync(self._store.remove, row_id)
                    self._count("pending", -1)
                    self._count("confirm_skipped")
                    continue
                await self._bucket.take()
                if not await self._confirm(row_id, attempts, event):
                    failed += 1
            if failed and failed == len(rows):
                await anyio.sleep(self._retry_seconds)  # Graph or the disk is failing: do not spin

    async def _confirm(self, row_id: int, attempts: int, event: Event) -> bool:
        """One GET; route Graph's version or drop the claim. False when it should be tried again."""
        try:
            reason, confirmed = await self._read(event)
            if confirmed is not None:
                await self.admit([confirmed])
                self._count("confirmed")
        except Exception as exc:  # Graph, the disk, or a gate's hold: retried, never the worker's end
            error = exc.message if isinstance(exc, AgentSeatError) else type(exc).__name__
            log.warning("intake_confirm_failed", key=event.key[:3 * _ID_CHARS], attempts=attempts + 1, error=error)
            if attempts + 1 < self._max_attempts:
                await anyio.to_thread.run_sync(self._store.attempt, row_id)
                return False
            reason = "confirm_failed"
            if self.on_overflow is not None:
                self.on_overflow(event.kind, "confirm_failed")
        if reason is not None:
            self._drop(event, reason)
        await anyio.to_thread.run_sync(self._store.remove, row_id)
        self._count("pending", -1)
        return True

    async def _read(self, event: Event) -> tuple[str | None, Event | None]:
        """(drop reason, None) or (None, the event as Graph has it)."""
        if event.kind not in CHAT_KINDS or event.chat_id is None:
            return "unconfirmable", None
        if event.kind == "channel":  # a post or reply is read where the event says it is
            if self.channel_reader is None:
                return "unconfirmable", None
            message = await self.channel_reader(event)
        elif self.reader is None:
            return "unconfirmable", None
        else:
            message = await self.reader(event.chat_id, event.message_id)
        if message is None:
            return "not_in_graph", None
        try:
            confirmed = _normalised(message, event, self.policy)
        except (InboxError, AttributeError, TypeError, ValueError, KeyError):
            return "unusable", None
        if confirmed is None:
            return "not_a_message", None  # deleted (or, for an edit, never edited), a system message, or our own
        if confirmed.message_id != event.message_id or confirmed.sender_id.lower() != event.sender_id.lower():
            return "sender_mismatch", None
        return None, dataclasses.replace(confirmed, received_at=event.received_at)

    # --- bookkeeping -----------------------------------------------------------------------
    def _drop(self, event: Event, reason: str) -> None:
        self._count(f"dropped_{reason}")
        # Ids only, cut short (a forged claim chooses them): never the claimed text.
        log.warning("intake_dropped", reason=reason, kind=event.kind, chat=(event.chat_id or "")[:_ID_CHARS],
                    message=event.message_id[:_ID_CHARS], claimed_sender=event.sender_id[:_ID_CHARS],
                    source=event.source)

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _remember(self, key: str) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > _SEEN:
            self._seen.popitem(last=False)


def _normalised(message: dict[str, Any], event: Event, policy: TrustPolicy) -> Event | None:
    """The event as Graph has the message now. An edit or deletion is confirmed by its current text
    and edit time (a later edit replaces the claimed one), or its deletion; a channel post by where
    the event says it is."""
    if event.kind == "channel":
        return channel_message_event(message, policy, source=event.source, confirmed=True, team_id=event.team_id,
                                     channel_id=event.chat_id or "")
    normalise = chat_message_event if event.kind == "teams" else chat_change_event
    return normalise(message, policy, source=event.source, confirmed=True, chat_id=event.chat_id)
