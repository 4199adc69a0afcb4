"""One subscription per joined team channel, added and removed as memberships change.

Graph (teams-changenotifications-chatmessage; subscription-post-subscriptions): a delegated
caller subscribes to `/teams/{team-id}/channels/{channel-id}/messages` with
ChannelMessage.Read.All; the tenant-wide `/teams/getAllMessages` is application-only. The
lifetime is chatMessage's (4,320 minutes; a tenant's lower maximum is read from its refusal as
for chats, refusals.py). Quotas (change-notifications-overview, chatMessage): one subscription
per app and channel, and 10,000 Teams subscriptions per organisation shared by every app, so
the agent keeps at most `channel_subscriptions_max` and polls the rest (channels/poller.py).

Channel subscriptions carry resource data, as chat ones do: a post is stored from the
notification as untrusted data, with no Graph read, and anything to be trusted (a sponsor's
post) is confirmed with Graph first by the intake (runtime/intake.py). Channels are throttled
at 4 requests per second per app (throttling-limits), so a read per post would make a busy
channel's mentions wait; items whose validation tokens fail are read instead, within the
token-fallback budget.

`ChannelSubscriptionManager` is the chat/mail reconciler (manager.py) with a spec list that
changes: `refresh` turns the joined channels into specs, creates what is new and deletes what
the agent left. Its state is kept under its own meta key.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from ..channels.graph import JoinedChannel
from ..config import Settings
from ..errors import AgentSeatError
from ..graph.subscription import CHANNEL_KIND_PREFIX
from ..runtime.inbox import Inbox
from .manager import SubscriptionManager
from .state import SubscriptionState
from .refusals import LIFETIME_FACTS, within
from .specs import SubscriptionSpec

if TYPE_CHECKING:
    from ..channels.poller import ChannelPoller

log = structlog.get_logger(__name__)

META_KEY = "subscriptions.channels"
#: A listing of the joined channels this recent is current enough to subscribe from.
LISTING_REUSE_SECONDS = 10.0
Key = tuple[str, str]  # (team id, channel id)


def channel_kind(team_id: str, channel_id: str) -> str:
    return f"{CHANNEL_KIND_PREFIX}{team_id}:{channel_id}"


def channel_spec(settings: Settings, team_id: str, channel_id: str) -> SubscriptionSpec:
    return SubscriptionSpec(kind=channel_kind(team_id, channel_id),
                            resource=f"/teams/{team_id}/channels/{channel_id}/messages",
                            # New posts and replies are what the agent acts on; edits in channels are not events.
                            change_type="created", minutes=settings.chat_subscription_minutes)


class ChannelSubscriptionManager(SubscriptionManager):
    """The subscription manager over a changing set of channel specs."""

    def __init__(self, settings: Settings, graph: Any, inbox: Inbox, *, certificate_b64: str, certificate_id: str,
                 on_resync: Callable[[str, str], Awaitable[None]], **kw: Any) -> None:
        super().__init__(settings, graph, inbox, certificate_b64=certificate_b64, certificate_id=certificate_id,
                         on_resync=on_resync, specs=[], meta_key=META_KEY, **kw)
        self.channels: dict[str, Key] = {}  # kind -> (team id, channel id)
        self._capped_at: int | None = None  # the joined count last warned about

    def covered(self) -> set[Key]:
        """Channels with an active subscription: the poller leaves these alone."""
        return {self.channels[k] for k in self.active_kinds() if k in self.channels}

    async def refresh(self, joined: list[JoinedChannel]) -> None:
        """Hold a spec for each joined channel (at most `channel_subscriptions_max`), delete the rest."""
        cap = self._settings.channel_subscriptions_max
        keys = list(dict.fromkeys((c.team_id, c.channel_id) for c in joined))
        if len(keys) > cap and self._capped_at != len(keys):
            log.warning("channel_subscriptions_capped", joined=len(keys), max=cap, polled=len(keys) - cap)
        self._capped_at = len(keys) if len(keys) > cap else None
        # Channels already subscribed keep their place under the cap; new ones fill what is left.
        held = [k for k in keys if channel_kind(*k) in self.states]
        wanted = (held + [k for k in keys if k not in held])[:cap]
        await self.set_specs([channel_spec(self._settings, *k) for k in wanted])
        self.channels = {channel_kind(*k): k for k in wanted}

    async def subscribe(self, url: str, channels: ChannelPoller) -> None:
        """One subscription per joined channel, pointing at `url` (the webhook's, or the event hub's address)."""
        try:
            # Current membership; the startup read listed it moments ago (GET /me/joinedTeams + each team's channels).
            await self.refresh(await channels.joined(max_age=LISTING_REUSE_SECONDS))
        except AgentSeatError as exc:  # teams not readable now: the channels are polled until the next listing
            log.warning("channel_list_failed", error=exc.message)
        await self.sync(url)
        # What was posted between the startup read and the subscriptions: one more read of every channel.
        channels.resync_soon("channel", "subscribed")

    async def follow_joined(self, url: str, channels: ChannelPoller) -> set[str]:
        """A machine that does not manage the hub's subscriptions (runtime/hub.py): hold those the managing
        machine keeps for the joined channels, so their notifications verify here, changing nothing in Graph."""
        try:
            joined = list(dict.fromkeys((c.team_id, c.channel_id) for c in await channels.joined()))
        except AgentSeatError as exc:
            log.warning("channel_list_failed", error=exc.message)
            return self.active_kinds()
        keys = joined[:self._settings.channel_subscriptions_max]  # the manager keeps no more than this
        async with self._lock:
            self.specs = [channel_spec(self._settings, *k) for k in keys]
            for spec in self.specs:
                self.states.setdefault(spec.kind, self._stored.pop(spec.kind, None) or SubscriptionState(spec.kind))
            self.channels = {channel_kind(*k): k for k in keys}
        return await self.follow(url)

    async def set_specs(self, specs: list[SubscriptionSpec]) -> None:
        async with self._lock:
            kinds = {s.kind for s in specs}
            for kind in [k for k in self.states if k not in kinds]:
                state = self.states.pop(kind)
                if state.id:
                    await self._delete(state.id)
                    log.info("channel_subscription_dropped", subscription=state.id)
                self._let_go(state, grace=False)
            for kind in [k for k in self._stored if k not in kinds]:  # saved by an earlier run, channel left since
                if (gone := self._stored.pop(kind)).id:
                    await self._delete(gone.id)
            added = [self._known_lifetime(s) for s in specs if s.kind not in self.states]
            for spec in added:
                self.states[spec.kind] = self._stored.pop(spec.kind, None) or SubscriptionState(spec.kind)
            new = {s.kind: s for s in added}
            self.specs = [new.get(s.kind) or self._current(s) for s in specs]
            if self.url:
                for spec in added:
                    if not self.states[spec.kind].id:
                        # A channel joined while running: read what was posted before the subscription.
                        await self._create(spec, reason="joined")
            self._save()

    def _save(self) -> None:
        # Channels saved by an earlier run stay saved until `refresh` knows whether they are still joined.
        saved = {**self._stored, **self.states}
        self._inbox.set_meta(self._meta_key, json.dumps({k: asdict(v) for k, v in saved.items()}))
        self._refresh_known()

    # A lifecycle job may run after the channel it names was left (its spec dropped): nothing to do.
    async def _check_removed(self, kind: str, reason: str) -> None:
        if kind in self.states:
            await super()._check_removed(kind, reason)

    async def _reauthorize(self, kind: str, reason: str) -> None:
        if kind in self.states:
            await super()._reauthorize(kind, reason)

    def _known_lifetime(self, spec: SubscriptionSpec) -> SubscriptionSpec:
        """Channel messages are chatMessages: the longest lifetime the chats' refusal taught applies."""
        return within(spec, self._facts.get(LIFETIME_FACTS["teams"])) if self._facts is not None else spec

    def _current(self, spec: SubscriptionSpec) -> SubscriptionSpec:
        # A held spec keeps the lifetime a refusal taught it.
        return next((s for s in self.specs if s.kind == spec.kind), spec)

    async def keep_current(self, list_joined: Callable[[], Awaitable[list[JoinedChannel]]]) -> None:
        """List the joined channels every `channel_list_seconds` and follow them, until cancelled."""
        while True:
            await anyio.sleep(self._settings.channel_list_seconds)
            try:
                await self.refresh(await list_joined())
            except AgentSeatError as exc:
                log.warning("channel_list_failed", error=exc.message)
