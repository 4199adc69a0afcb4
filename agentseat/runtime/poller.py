"""Reading chats and mail by polling: the fallback behind webhooks, and the whole
event source in poll mode.

Teams asks apps not to poll for changes in a loop (teams-api-overview, "Polling
requirements"), so a chat round costs one request when nothing changed: the chat
list ordered by newest message, read until the first chat whose newest message
we already know (where a tenant refuses the order, every page, sorted here:
runtime/chat_listing.py). Only chats whose preview changed are read, from their own
watermark, page by page until the messages are older than it, so a burst, a long
downtime or a tenant that ignores `$filter` loses nothing. Mail uses a delta query.
Every message becomes an Event through the same normaliser as the webhook, so the
inbox dedupes a message that arrived both ways.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import anyio
import structlog

from ..config import Settings
from ..errors import AgentSeatError, GraphError, NotFoundError
from ..graph.times import parse_graph_time, to_graph_time
from ..tenant_facts import TenantFacts
from .chat_listing import ChatLister, read_messages_since
from .inbox import Event, Inbox
from .normalize import TrustPolicy, chat_message_events, mail_event
from .poll_policy import POLICY_KEY, intervals, policy_warning

log = structlog.get_logger(__name__)

MAIL_FIELDS = "id,subject,from,sender,receivedDateTime,body,bodyPreview,conversationId,internetMessageId"
_CHATS_KEY, _MAIL_KEY = "poll.chats", "poll.mail"
#: Rounds asked for by `resync_soon` start at least this far apart: GET /me/chats allows one
#: request per second per user (throttling-limits, Teams), and a flood must not spend it all.
RESYNC_GAP_SECONDS = 1.0

Store = Callable[[list[Event]], Awaitable[list[Event]]]
#: What a resync read, less what another machine sharing the event hub stored (eventhub/ledger.py).
Screen = Callable[[list[Event]], Awaitable[list[Event]]]
#: (events a chat or mail round stored, the round's reason): what reconciles found (runtime/delivery_watch.py).
Found = Callable[[list[Event], str], None]


@dataclass
class PollCounters:
    chat_rounds: int = 0
    mail_rounds: int = 0
    chats_read: int = 0
    events: int = 0
    errors: int = 0
    last_error: str = ""
    #: The intervals poll mode uses (0 until it polls); the chat one never below its floor.
    chat_interval: float = 0.0
    mail_interval: float = 0.0
    by_reason: dict[str, int] = field(default_factory=dict)
    #: Messages a resync read that another machine on the shared hub had stored (its ledger): not stored here.
    resync_skipped_other_machine: int = 0


def _segment(value: str) -> str | None:
    """An id from a notification as one URL path segment, or None if it cannot be one.

    The id is sender data: unquoted, `../../users` or `x?$select=` would send the
    agent's token to another Graph route. "." and ".." stay path steps even when
    escaped (URLs are normalised), so they are refused.
    """
    if value in ("", ".", ".."):
        return None
    return quote(value, safe="")


def preview_mark(preview: dict[str, Any]) -> str:
    """What the poller remembers of a chat's `lastMessagePreview`: its id, and a digest of its body
    and `isDeleted`, so an edit or deletion of a chat's newest message is seen without a new one."""
    body = preview.get("body") or {}
    seen = f"{body.get('content', '') if isinstance(body, dict) else ''}|{bool(preview.get('isDeleted'))}"
    return f"{preview.get('id') or ''}|{hashlib.sha256(seen.encode('utf-8', 'replace')).hexdigest()[:16]}"


class Poller:
    """Reads what changed since the last round; state lives in the inbox so it survives restarts."""

    def __init__(self, settings: Settings, graph: Any, inbox: Inbox, policy: TrustPolicy,
                 store: Store | None = None, *, facts: TenantFacts | None = None,
                 on_found: Found | None = None) -> None:
        self._settings = settings
        self._graph = graph
        self._inbox = inbox
        self._policy = policy
        self._append: Store = store or inbox.aappend  # the runtime passes `Intake.admit`
        self._resync_reasons: dict[str, str] = {}  # kind -> reason of the one pending resync
        self._resync_wanted: dict[str, anyio.Event] = {}
        self._chat_lock = anyio.Lock()
        self._mail_lock = anyio.Lock()
        self.counters = PollCounters()
        self._chats: dict[str, Any] = json.loads(inbox.get_meta(_CHATS_KEY) or "{}")
        self._mail: dict[str, Any] = json.loads(inbox.get_meta(_MAIL_KEY) or "{}")
        now = to_graph_time(datetime.now(UTC).timestamp())
        # First start: nothing older than now is news. Later starts resume from the watermarks.
        self._chats.setdefault("since", now)
        self._chats.setdefault("chats", {})
        self._mail.setdefault("since", now)
        # Kept at once, not after the first round: a runtime stopped before its first read
        # (Teams' startup read waits for the readiness probe) must not move "now" on restart,
        # or what was sent while it was down would count as old.
        for key, state in ((_CHATS_KEY, self._chats), (_MAIL_KEY, self._mail)):
            if inbox.get_meta(key) is None:
                inbox.set_meta(key, json.dumps(state))
        self._facts = facts
        self.on_found = on_found
        self._lister = ChatLister(graph, self._chats, facts)
        #: Set while machines share an event hub (runtime/hub.py): resync results go through it first.
        self.screen: Screen | None = None

    async def _store(self, events: list[Event], reason: str | None = None) -> int:
        if reason is not None and events and self.screen is not None:  # a resync round, not a notification's fetch
            kept = await self.screen(events)
            self.counters.resync_skipped_other_machine += len(events) - len(kept)
            events = kept
        stored = await self._append(events) if events else []
        self.counters.events += len(stored)
        if reason is not None and stored and self.on_found is not None:
            self.on_found(stored, reason)
        return len(stored)

    # --- chats ----------------------------------------------------------------------------
    async def sync_chats(self, reason: str = "poll") -> int:
        """One round over the chat list; returns how many new events were stored."""
        async with self._chat_lock:
            self.counters.chat_rounds += 1
            self.counters.by_reason[reason] = self.counters.by_reason.get(reason, 0) + 1
            known: dict[str, dict[str, str]] = self._chats["chats"]
            since = self._chats["since"]
            stored = 0
            done = False
            # Previews are recorded only when the round completes: the "unchanged preview, stop"
            # shortcut below is sound only if every chat listed before that one was read.
            previews: dict[str, tuple[str, str]] = {}  # chat id -> (preview id, watermark)
            async with aclosing(self._lister.pages()) as listing:
                async for page in listing:
                    for chat in page:
                        preview = chat.get("lastMessagePreview") or {}
                        chat_id, preview_id = str(chat.get("id")), str(preview.get("id") or "")
                        if not preview_id:
                            continue
                        state = known.get(chat_id, {})
                        mark = preview_mark(preview)
                        if state.get("preview") == mark:
                            done = True  # ordered newest first: every later chat is unchanged too
                            break
                        watermark = state.get("watermark", since)
                        created = str(preview.get("createdDateTime", since))
                        # The same newest message with another body or isDeleted: it was edited or
                        # deleted, so the chat is read from its watermark (the change is newer).
                        changed = str(state.get("preview", "")).partition("|")[0] == preview_id
                        if parse_graph_time(created) <= parse_graph_time(watermark) and not changed:
                            previews[chat_id] = (mark, watermark)
                            continue  # nothing newer than what we have
                        stored += await self._read_chat(chat_id, watermark, known, reason)
                        previews[chat_id] = (mark, known[chat_id]["watermark"])
                        # Keep each chat's new watermark at once: a round over a long backlog can
                        # outlast the process (kill -9, a restart), and the next one reads on from here.
                        self._inbox.set_meta(_CHATS_KEY, json.dumps(self._chats))
                    if done:
                        break
            for chat_id, (preview_id, watermark) in previews.items():
                known.setdefault(chat_id, {"watermark": watermark})["preview"] = preview_id
            self._inbox.set_meta(_CHATS_KEY, json.dumps(self._chats))
            return stored

    async def _read_chat(self, chat_id: str, watermark: str, known: dict[str, dict[str, Any]],
                         reason: str = "poll") -> int:
        """Every message modified since `watermark`, across pages (not just the newest ten), with
        or without Graph applying `$filter`."""
        self.counters.chats_read += 1
        state = dict(known.get(chat_id, {}))
        read = await read_messages_since(self._graph, f"/chats/{chat_id}", watermark)
        newest = watermark
        groups: list[list[Event]] = []
        for message in read.messages:
            modified = str(message.get("lastModifiedDateTime") or message.get("createdDateTime") or "")
            if modified and parse_graph_time(modified) > parse_graph_time(newest):
                newest = modified
            # A message modified since the watermark may be new, edited or deleted: the message
            # (deduped when known) and its edit or deletion, each under its own key.
            groups.append(chat_message_events(message, self._policy, source="poll", confirmed=True,
                                              chat_id=chat_id))
        # Oldest first, so inbox order follows conversation order (a message before its edit).
        events = [event for group in reversed(groups) for event in group]
        probe = self._filter_evidence(state, read.older_seen, read.times)
        stored = await self._store(events, reason)
        if probe:  # after storing: the messages never wait for a question about the tenant
            settled = await read_messages_since(self._graph, f"/chats/{chat_id}", newest)
            self._record("messages_filter", "ignored" if settled.older_seen else "supported")
        if newest != watermark:
            # `deep`: the chat holds a message older than its watermark, so the next read shows
            # whether Graph applies the filter (chat_listing.ChatRead.times).
            state["deep"] = len(read.times) >= 2 or bool(state.get("msg"))
            state["msg"] = True  # the watermark is a message's own time
        state.update(preview=state.get("preview", ""), watermark=newest)
        known[chat_id] = state
        return stored

    def _filter_evidence(self, state: dict[str, Any], older_seen: bool, times: set[float]) -> bool:
        """Record whether Graph applies `$filter` on chat messages, from what a read showed;
        True when one more read of this chat would settle it.

        Older messages coming back prove it ignored; none coming back from a chat known to hold
        some proves it applied. Until a read proves either, the fact says `unverified`; a chat
        seen with two messages settles it with one extra read (once per tenant).
        """
        if self._facts is None:
            return False
        if older_seen:
            self._record("messages_filter", "ignored")
        elif state.get("deep"):
            self._record("messages_filter", "supported")
        elif self._facts.get("messages_filter") in (None, "unverified"):
            self._record("messages_filter", "unverified")
            return len(times) >= 2
        return False

    def _record(self, key: str, value: str) -> None:
        if self._facts is not None and self._facts.get(key) != value:
            self._facts.record(key, value)

    # --- mail -----------------------------------------------------------------------------
    async def sync_mail(self, reason: str = "poll") -> int:
        """One delta round on the inbox folder; new messages (with body) become events."""
        async with self._mail_lock:
            self.counters.mail_rounds += 1
            self.counters.by_reason[reason] = self.counters.by_reason.get(reason, 0) + 1
            link = self._mail.get("delta_link")
            start = link or "/me/mailFolders/inbox/messages/delta"
            params = None if link else {"$select": MAIL_FIELDS}
            try:
                page = await self._graph.delta(start, params, page_size=50)
            except GraphError as exc:
                if link and exc.status in (400, 404, 410):
                    log.warning("mail_delta_reset", status=exc.status, code=exc.code)
                    self._mail.pop("delta_link", None)  # an expired token: start a fresh round
                    self._inbox.set_meta(_MAIL_KEY, json.dumps(self._mail))
                raise
            since = parse_graph_time(self._mail["since"])
            events = []
            for item in page.items:
                if "@removed" in item:
                    continue
                received = item.get("receivedDateTime")
                if received and parse_graph_time(str(received)) <= since:
                    continue
                event = mail_event(item, self._policy, source="poll", graph_host=self._settings.graph_host)
                if event is not None:
                    events.append(event)
            stored = await self._store(events, reason)
            if page.delta_link:
                self._mail["delta_link"] = page.delta_link
            self._inbox.set_meta(_MAIL_KEY, json.dumps(self._mail))
            return stored

    # --- catching up without reading ---------------------------------------------------------
    async def mark_read(self, kind: str) -> None:
        """Move `kind`'s watermarks to now without reading: what came before was delivered another way.

        For a machine that takes over an event hub's subscriptions while they stayed live
        (runtime/hub.py): every message since its old watermark reached the hub and was stored
        by the machine that owned its partition, so reading from there would store it twice.
        """
        now = to_graph_time(datetime.now(UTC).timestamp())
        if kind == "teams":
            async with self._chat_lock:
                self._chats["since"] = now
                for state in self._chats["chats"].values():
                    state["watermark"] = now  # the preview stays: an unchanged chat costs no read
                self._inbox.set_meta(_CHATS_KEY, json.dumps(self._chats))
        elif kind == "mail":
            async with self._mail_lock:  # the delta link stays; the rounds skip mail received before `since`
                self._mail["since"] = now
                self._inbox.set_meta(_MAIL_KEY, json.dumps(self._mail))
        log.info("poll_marked_read", kind=kind)

    async def fetch_mail(self, message_id: str, source: str = "webhook") -> int:
        """Read one message with its body (rich mail notifications never carry it)."""
        if (segment := _segment(message_id)) is None:
            log.info("fetch_id_refused", kind="mail", chars=len(message_id))
            return 0
        try:
            message = await self._graph.get(f"/me/messages/{segment}", **{"$select": MAIL_FIELDS})
        except NotFoundError:
            log.info("mail_vanished", message=message_id)
            return 0
        event = mail_event(message, self._policy, source=source,  # type: ignore[arg-type]
                           graph_host=self._settings.graph_host)
        return await self._store([event]) if event else 0

    async def read_chat_message(self, chat_id: str, message_id: str) -> dict[str, Any] | None:
        """GET one chat message with the agent's token (one request); None when Graph does not have it.

        Both ids come from a notification, so each is quoted as one path segment. A chat
        the agent is not in answers 403 or 404 (chatmessage-get): for us it does not exist.
        """
        chat, message_segment = _segment(chat_id), _segment(message_id)
        if chat is None or message_segment is None:
            log.info("fetch_id_refused", kind="teams", chars=len(chat_id) + len(message_id))
            return None
        try:
            message = await self._graph.get(f"/chats/{chat}/messages/{message_segment}")
        except GraphError as exc:
            if exc.status not in (400, 403, 404):
                raise
            log.info("chat_message_vanished", chat=chat_id, message=message_id, status=exc.status)
            return None
        return message if isinstance(message, dict) else None

    async def fetch_chat_message(self, chat_id: str, message_id: str, source: str = "webhook") -> int:
        """Read one chat message (a notification without resource data names only its id; a
        `deleted` one never has any): the message, its latest edit or its deletion, as Graph has it."""
        message = await self.read_chat_message(chat_id, message_id)
        if message is None:
            return 0
        events = chat_message_events(message, self._policy, source=source, confirmed=True,  # type: ignore[arg-type]
                                     chat_id=chat_id)
        return await self._store(events) if events else 0

    # --- scheduling -------------------------------------------------------------------------
    async def resync(self, kind: str, reason: str) -> None:
        """Read what a gap may have hidden; errors are logged, never raised to the caller."""
        try:
            count = await (self.sync_chats(reason) if kind == "teams" else self.sync_mail(reason))
            (log.debug if reason == "poll" else log.info)("resync_done", kind=kind, reason=reason, events=count)
        except AgentSeatError as exc:
            self._note_error(exc)

    def resync_soon(self, kind: str, reason: str) -> bool:
        """Ask for one resync of `kind` without waiting; False when one is already pending.

        At most one resync per kind runs and one waits, however many ask (a flood of
        dropped fetches or lifecycle events costs one read of the kind, not one each).
        """
        if kind in self._resync_reasons:
            self.counters.by_reason["coalesced"] = self.counters.by_reason.get("coalesced", 0) + 1
            return False
        self._resync_reasons[kind] = reason
        if (wanted := self._resync_wanted.get(kind)) is not None:
            wanted.set()
        return True

    async def run_resyncs(self) -> None:
        """Run the resyncs `resync_soon` asks for, one kind beside the other, until cancelled."""
        async with anyio.create_task_group() as tg:
            for kind in ("teams", "mail"):
                tg.start_soon(self._resync_worker, kind)

    async def _resync_worker(self, kind: str) -> None:
        while True:
            self._resync_wanted[kind] = wanted = anyio.Event()
            if kind not in self._resync_reasons:
                await wanted.wait()
            reason = self._resync_reasons.pop(kind)
            started = anyio.current_time()
            await self.resync(kind, reason)
            await anyio.sleep(max(0.0, RESYNC_GAP_SECONDS - (anyio.current_time() - started)))

    def _note_error(self, exc: AgentSeatError) -> None:
        self.counters.errors += 1
        self.counters.last_error = str(exc)
        log.warning("poll_failed", error=exc.message, hint=exc.hint)

    async def run(self, kinds: set[str]) -> None:
        """Poll the given kinds at their intervals until cancelled (Teams no faster than its floor,
        runtime/poll_policy.py); while Teams is polled, `status` says so and what to use instead."""
        chosen = intervals(self._settings)
        self.counters.chat_interval, self.counters.mail_interval = chosen.chat, chosen.mail
        if "teams" in kinds:
            if chosen.raised:
                log.warning("chat_poll_interval_raised", configured=self._settings.chat_poll_seconds,
                            used=chosen.chat, reason=chosen.raised)
            if self._facts is not None:
                self._facts.warn(POLICY_KEY, policy_warning(chosen))
        async with anyio.create_task_group() as tg:
            if "teams" in kinds:
                tg.start_soon(self._every, chosen.chat, "teams")
            if "mail" in kinds:
                tg.start_soon(self._every, chosen.mail, "mail")

    async def _every(self, seconds: float, kind: str) -> None:
        while True:
            await self.resync(kind, "poll")
            await anyio.sleep(seconds)
