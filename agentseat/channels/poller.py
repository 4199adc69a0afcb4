"""Reading team channels by polling: the fallback for channels no subscription covers.

Graph has no "what changed in my channels" list for a delegated caller, so a round reads,
per uncovered channel, one page of root posts (newest first) with their replies expanded: one
request per channel (Teams allows 4 per second per app on a channel, throttling-limits).
Teams asks apps not to poll in a loop (teams-api-overview, "Polling requirements"): rounds
run no faster than the chat poll interval and its floor (runtime/poll_policy.py), and only
for channels without an active subscription.
The joined teams and channels are listed again at most every `channel_list_seconds`.

Every message read here is read with the agent's own token, so its events are confirmed.
State (watermarks) lives in the inbox's meta table, as the chat poller's does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from ..config import Settings
from ..errors import AgentSeatError, GraphError
from ..graph.times import parse_graph_time, to_graph_time
from ..runtime.events import Event
from ..runtime.inbox import Inbox
from ..runtime.normalize import TrustPolicy
from ..runtime.poll_policy import intervals
from . import graph as channel_graph
from . import names
from .graph import JoinedChannel
from .normalize import ChannelRef, channel_message_event

log = structlog.get_logger(__name__)

_STATE_KEY = "poll.channels"
#: Root posts read per channel per round, each with its replies (channel-list-messages allows 50).
#: A reply to an older thread is found by the next full listing only if its thread is among them.
POSTS_PER_ROUND = 50

Store = Callable[[list[Event]], Awaitable[list[Event]]]
Key = tuple[str, str]  # (team id, channel id)


def _time(value: Any) -> float | None:
    try:
        return parse_graph_time(str(value)) if value else None
    except ValueError:
        return None


class ChannelPoller:
    """Reads channel posts and replies since each channel's watermark; survives restarts."""

    def __init__(self, settings: Settings, graph: Any, inbox: Inbox, policy: TrustPolicy,
                 store: Store | None = None) -> None:
        self._settings = settings
        self._graph = graph
        self._inbox = inbox
        self._policy = policy
        self._store: Store = store or inbox.aappend
        self._lock = anyio.Lock()
        self._joined: list[JoinedChannel] | None = None
        self._listed_at = float("-inf")
        self._state: dict[str, Any] = json.loads(inbox.get_meta(_STATE_KEY) or "{}")
        # First start: nothing older than now is news; later starts resume from the watermarks.
        self._state.setdefault("since", to_graph_time(datetime.now(UTC).timestamp()))
        self._state.setdefault("channels", {})
        self._save()
        self._wanted: str | None = None  # the reason of the one pending full round
        self._wake = anyio.Event()
        #: Set while machines share an event hub (runtime/hub.py): what a round read, less what another
        #: machine stored (eventhub/ledger.py, which counts the skips).
        self.screen: Store | None = None
        self.rounds = 0  # polling rounds, and what they stored (a notification's read counts in its fetch queue)
        self.events = 0
        self.errors = 0

    def _save(self) -> None:
        self._inbox.set_meta(_STATE_KEY, json.dumps(self._state))

    # --- membership --------------------------------------------------------------------
    async def joined(self, *, refresh: bool = False, max_age: float | None = None) -> list[JoinedChannel]:
        """The channels of the agent's teams, listed again when older than `channel_list_seconds`,
        or than `max_age` seconds; `refresh` lists them again whatever their age."""
        age = time.monotonic() - self._listed_at
        stale = age >= self._settings.channel_list_seconds or (max_age is not None and age >= max_age)
        if self._joined is None or refresh or stale:
            found = await channel_graph.joined_channels(self._graph)
            for ch in found:
                names.remember(ch.team_id, ch.team_name, ch.channel_id, ch.channel_name)
            if self._joined is not None and {(c.team_id, c.channel_id) for c in found} != \
                    {(c.team_id, c.channel_id) for c in self._joined}:
                log.info("channel_membership_changed", channels=len(found))
            self._joined, self._listed_at = found, time.monotonic()
        return self._joined

    # --- reading -----------------------------------------------------------------------
    async def sync(self, reason: str = "poll", *, skip: Iterable[Key] = ()) -> int:
        """One round over the joined channels not in `skip`; returns how many events were stored."""
        skipped = set(skip)
        async with self._lock:
            self.rounds += 1
            stored = 0
            for channel in await self.joined():
                if (channel.team_id, channel.channel_id) in skipped:
                    continue
                stored += await self._read_channel(channel)
            if stored:
                log.info("channel_poll_stored", reason=reason, events=stored)
            return stored

    async def _read_channel(self, channel: JoinedChannel) -> int:
        key = f"{channel.team_id}|{channel.channel_id}"
        state = self._state["channels"].get(key) or {"watermark": self._state["since"]}
        floor = parse_graph_time(state["watermark"])
        newest = floor
        try:
            posts = await channel_graph.recent_posts(self._graph, channel.team_id, channel.channel_id,
                                                     POSTS_PER_ROUND)
        except GraphError as exc:
            if exc.status in (403, 404):  # left the team since it was listed: listed again next round
                self._listed_at = float("-inf")
                return 0
            raise
        messages = [m for post in posts for m in (post, *post["replies"])
                    if (at := _time(m.get("createdDateTime"))) is not None and at >= floor]
        events: list[tuple[float, Event]] = []
        for message in messages:
            at = _time(message.get("createdDateTime")) or floor
            newest = max(newest, at)
            event = channel_message_event(message, self._policy, source="poll", confirmed=True,
                                          team_id=channel.team_id, channel_id=channel.channel_id)
            if event is not None:
                events.append((at, event))
        events.sort(key=lambda pair: pair[0])  # conversation order
        read = [e for _, e in events]
        if read and self.screen is not None:
            read = await self.screen(read)
        stored = await self._store(read) if read else []
        self.events += len(stored)
        state["watermark"] = to_graph_time(newest)
        self._state["channels"][key] = state
        self._save()
        return len(stored)

    async def fetch(self, ref: ChannelRef, source: str = "webhook") -> int:
        """Read the message a notification names (a post, or a reply in its thread) and store it."""
        message = await self.read(ref)
        if message is None:
            return 0
        event = channel_message_event(message, self._policy, source=source, confirmed=True,  # type: ignore[arg-type]
                                      team_id=ref.team_id, channel_id=ref.channel_id)
        stored = await self._store([event]) if event is not None else []
        return len(stored)

    async def read_event(self, event: Event) -> dict[str, Any] | None:
        """The message a `channel` event names, as Graph has it (the intake confirms with this)."""
        root = event.thread_id or event.message_id
        reply = event.message_id if event.thread_id else ""
        return await self.read(ChannelRef(event.team_id, event.chat_id or "", root, reply))

    async def read(self, ref: ChannelRef) -> dict[str, Any] | None:
        """GET one channel message with the agent's token; None when Graph does not have it for us."""
        try:
            return await channel_graph.read_message(self._graph, ref.team_id, ref.channel_id, ref.message_id,
                                                    ref.reply_id or None)
        except ValueError:  # an id that cannot be a path segment
            log.info("fetch_id_refused", kind="channel")
            return None
        except GraphError as exc:
            if exc.status not in (400, 403, 404):
                raise
            log.info("channel_message_vanished", status=exc.status)
            return None

    # --- scheduling ----------------------------------------------------------------------
    async def resync(self, reason: str, *, skip: Iterable[Key] = ()) -> None:
        """A round whose errors are logged, never raised."""
        try:
            await self.sync(reason, skip=skip)
        except AgentSeatError as exc:
            self.errors += 1
            log.warning("channel_poll_failed", error=exc.message, hint=exc.hint)

    def resync_soon(self, kind: str = "channel", reason: str = "resync") -> bool:
        """Ask `run` for a round over every channel, subscribed or not (after a gap, a `missed`, a
        full fetch queue); False when one is already pending. Coalesced: a flood costs one round."""
        if self._wanted is not None:
            return False
        self._wanted = reason
        self._wake.set()
        return True

    async def on_resync(self, kind: str, reason: str) -> None:
        """The subscription manager's resync callback (a channel subscription made or `missed`)."""
        self.resync_soon(kind, reason)

    async def run(self, covered: Callable[[], set[Key]] = set, *, poll_uncovered: bool = True) -> None:
        """Until cancelled: every chat interval (held to its floor), read the channels `covered()` leaves
        out (with `poll_uncovered`); every `reconcile_seconds`, and when asked, read them all."""
        every = intervals(self._settings).chat
        last_full = time.monotonic()
        while True:
            reason, self._wanted = self._wanted, None
            if reason is None and time.monotonic() - last_full >= self._settings.reconcile_seconds:
                reason = "timer"
            if reason is not None:
                last_full = time.monotonic()
                await self.resync(reason)
            elif poll_uncovered:
                await self.resync("poll", skip=covered())
            self._wake = anyio.Event()
            if self._wanted is None:
                with anyio.move_on_after(every):
                    await self._wake.wait()
