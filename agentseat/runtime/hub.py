"""The runtime's duties in Event Hubs mode: read the hub; manage the subscriptions, or follow them.

One machine per hub (the lease holder, eventhub/lease.py; always this one with the local
checkpoint store) points the subscriptions at the hub, resyncs and reconciles, and acts on
lifecycle notifications; the others learn the subscriptions from Graph, only read the
partitions they own, and hand the lifecycle notifications they read to the holder
(eventhub/forward.py), which relays them to its own lifecycle gate once per lease renewal.
When the holder stops, another takes the lease and its duties. Every machine shares the keys
it stores, and every resync skips what another stored (eventhub/ledger.py). runtime/app.py builds this
with the parts it owns; this module owns only the order of the duties and the hand-over, and
(for `auto`, runtime/transport_choice.py) the polling while the hub does not answer.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import structlog

from ..errors import ConfigError
from ..eventhub.settings import notification_url
from .poll_policy import POLICY_KEY

if TYPE_CHECKING:
    from ..channels.poller import ChannelPoller
    from ..config import Settings
    from ..eventhub.forward import LifecycleForwarder
    from ..identity.tokens import TokenProvider
    from ..subscriptions.channels import ChannelSubscriptionManager
    from ..subscriptions.route import LifecycleRoute
    from ..subscriptions.manager import SubscriptionManager
    from ..tenant_facts import TenantFacts
    from .delivery_watch import DeliveryWatch
    from .fetchq import FetchQueue
    from .inbox import Inbox
    from .pipeline import NotificationPipeline
    from .poller import Poller

__all__ = ["FOLLOW_SECONDS", "HubDuties"]

log = structlog.get_logger(__name__)

#: A machine that does not manage the hub's subscriptions reads Graph's list this often (and when
#: it reads a notification of a subscription it does not know: consumer.py).
FOLLOW_SECONDS = 300.0


@dataclass
class HubDuties:
    """Event Hubs mode for one runtime; `consumer` is set once running (for `status`)."""

    settings: Settings
    pipeline: NotificationPipeline
    inbox: Inbox
    tokens: TokenProvider
    manager: SubscriptionManager
    poller: Poller
    delivery: DeliveryWatch
    facts: TenantFacts
    fetches: list[FetchQueue]
    status: Any  # the runtime's RuntimeStatus: source and polling are shown by `status`
    kinds: frozenset[str]
    resync_all: Callable[[str], Awaitable[None]]
    note: Callable[[str], None]
    #: Runs the reconcile on the runtime's clock until cancelled (the manager's duty only).
    reconcile: Callable[[], Awaitable[None]]
    #: Runs the subscription manager's renewals, on the runtime's clock, until cancelled.
    maintain: Callable[[], Awaitable[None]]
    #: Where lifecycle events go: `forward` is set on it while this machine follows (None: act here, always).
    lifecycle: LifecycleRoute | None = None
    consumer: Any = None
    #: Team channels: their subscriptions point at the hub too (subscriptions/channels.py); None: only polled.
    channel_manager: ChannelSubscriptionManager | None = None
    channels: ChannelPoller | None = None
    maintain_channels: Callable[[], Awaitable[None]] | None = None  # their renewals, on the clock
    managing: bool = False  # this machine holds the subscriptions (always, with the local checkpoint store)

    async def run(self) -> None:
        """Read the hub until cancelled, managing or following as the lease decides."""
        try:  # the Azure SDK is an extra: only this mode needs it
            from ..eventhub.consumer import EventHubConsumer
            from ..eventhub.forward import LifecycleForwarder, relay
            from ..eventhub.lease import LeaseLost
        except ImportError as exc:
            raise ConfigError(f"--mode eventhub needs the Azure Event Hubs SDK ({exc.name} is missing)",
                              hint="pip install 'agentseat[eventhub]', or use --mode poll") from None
        address = notification_url(self.settings)
        self.consumer = consumer = EventHubConsumer.for_runtime(
            self.settings, self.pipeline, self.inbox, self.tokens, fetches=self.fetches,
            on_unknown=lambda: self._learn(address))
        lease = consumer.lease()
        records = consumer.lifecycle_records() if self.lifecycle is not None else None
        # A follower's lifecycle events become records for the holder: written even after this machine took
        # the lease meanwhile (its own relay then finds them), so the forwarder lives as long as the consumer.
        forwarder = None if records is None else LifecycleForwarder(records, self.manager.counters)
        # Machines sharing the hub (a Blob store): each shares the keys it stores, and every resync here
        # skips what another stored (eventhub/ledger.py); None with the local store (one machine).
        ledger = consumer.ledger()
        try:
            async with anyio.create_task_group() as tg:
                if ledger is not None:
                    self._screen(ledger.screen)
                    tg.start_soon(ledger.run)
                if forwarder is not None:
                    tg.start_soon(forwarder.run)
                await tg.start(consumer.run)
                while True:
                    if lease is not None:
                        self._forward_to(forwarder)  # before any event is read: only the holder acts
                        async with anyio.create_task_group() as follow:
                            follow.start_soon(self._follow, address)
                            await lease.acquire()
                            follow.cancel_scope.cancel()
                    self._forward_to(None)  # the holder acts through its own gate
                    try:
                        self.managing = True
                        async with anyio.create_task_group() as duties:
                            if lease is not None:
                                duties.start_soon(lease.keep)
                            if ledger is not None:  # the manager deletes what no resync can read any more
                                duties.start_soon(ledger.prune_every)
                            if lease is not None and records is not None and self.lifecycle is not None:
                                # What followers forwarded, now and at each renewal: one list each time.
                                duties.start_soon(functools.partial(
                                    relay, records, self.lifecycle.known, self.lifecycle.act,
                                    every=lease.expiry / 3, counters=self.manager.counters))
                            await self._manage(duties, address, shared=lease is not None)
                    except* LeaseLost:
                        self.managing = False
                        self.note("another machine manages the subscriptions now; following it")
        finally:
            with anyio.CancelScope(shield=True):
                await consumer.aclose()  # after the consumer and the lease are done with the store
                if ledger is not None:  # after its last flush (its task's end)
                    self._screen(None)
                    await ledger.aclose()

    async def poll_outage(self) -> None:
        """`auto` while the hub does not answer (runtime/transport_choice.py): poll what it covers, until cancelled.

        Only the machine managing the subscriptions polls (always this one with the local checkpoint
        store): its resyncs skip what the others stored (eventhub/ledger.py), a follower's would not.
        """
        if not self.managing:
            await anyio.sleep_forever()
        before = self.status.source, self.status.polling
        kinds = set(self.kinds) - set(before[1])  # what Graph refused is polled already (`_manage`)
        self.status.source, self.status.polling = "eventhub+poll", sorted(self.kinds)
        try:
            await self.poller.run(kinds)
        finally:
            self.status.source, self.status.polling = before
            if "teams" in kinds:  # Teams is no longer polled: its policy warning is over (poll_policy.py)
                self.facts.warn(POLICY_KEY, None)

    def _screen(self, screen: Callable[[list[Any]], Awaitable[list[Any]]] | None) -> None:
        """Resyncs of chats, mail and channels store what they read through `screen` (None: everything)."""
        self.poller.screen = screen
        if self.channels is not None:
            self.channels.screen = screen

    def _forward_to(self, forwarder: LifecycleForwarder | None) -> None:
        """Lifecycle events this machine reads go to `forwarder` (following), or to its own gates (None)."""
        if self.lifecycle is not None:
            self.lifecycle.forward = None if forwarder is None else forwarder.offer

    async def _follow(self, address: str) -> None:
        """Not the manager: learn the subscriptions the manager keeps, and read only the hub."""
        self.status.source, self.status.polling = "eventhub-follower", []
        while True:
            await self._learn(address)
            await anyio.sleep(FOLLOW_SECONDS)

    async def _learn(self, address: str) -> None:
        """Hold the subscriptions the managing machine keeps (chats and mail, and the joined channels')."""
        self.delivery.cover(await self.manager.follow(address))
        if self.channel_manager is not None and self.channels is not None and not self.managing:
            await self.channel_manager.follow_joined(address, self.channels)

    async def _manage(self, duties: anyio.abc.TaskGroup, address: str, *, shared: bool = False) -> None:
        """The manager's part: point the subscriptions at the hub, resync, reconcile; poll what Graph refuses."""
        held = {kind: s.id for kind, s in self.manager.states.items() if s.id and s.state == "active"}
        active = await self.manager.sync(address)
        if "teams" in active:  # Teams no longer polled (poll_policy.py): the warning is over
            self.facts.warn(POLICY_KEY, None)
        self.delivery.cover(active)
        # Machines sharing the hub: a subscription that stayed live (the one this machine held or followed)
        # left no gap, since all it notified is in the hub and stored by its partition's owner. Reading it
        # again from this machine's old watermark would store other machines' messages a second time.
        kept = {kind for kind in active if shared and held.get(kind) == self.manager.states[kind].id}
        for kind in sorted(kept):
            await self.poller.mark_read(kind)
        if set(self.kinds) - kept:
            await self.resync_all("startup")
        if self.channel_manager is not None and self.channels is not None:  # after the chats' startup read
            await self.channel_manager.subscribe(address, self.channels)
            if self.maintain_channels is not None:
                duties.start_soon(self.maintain_channels)
            duties.start_soon(self.channel_manager.keep_current, self.channels.joined)
        log.info("eventhub_managing", active=sorted(active), marked_read=sorted(kept))
        uncovered = set(self.kinds) - active
        for kind in sorted(uncovered):
            self.note(f"{kind}: {self.manager.states[kind].error or 'not subscribed'}")
        self.status.source = "eventhub" if not uncovered else "eventhub+poll"
        self.status.polling = sorted(uncovered)
        duties.start_soon(self.maintain)
        duties.start_soon(self.reconcile)
        if uncovered:
            duties.start_soon(self.poller.run, uncovered)
