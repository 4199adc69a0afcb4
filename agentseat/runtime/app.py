"""The composition root: builds every part of the runtime and supervises it.

One `Runtime` per process. All processes of one agent share the inbox; the one
holding the owner lock also runs the webhook, the tunnel, the subscriptions and
the poller, in the mode the settings ask for:

- `poll`: the poller reads chats and mail at its intervals; no public endpoint.
- `webhook`: notifications through the tunnel; the poller only reconciles.
- `auto`: the event hub when one is configured and answers (runtime/transport_choice.py);
  else webhooks while a public URL validates and Graph accepts the subscriptions,
  polling for whatever is not covered, switching back and forth as the tunnel comes
  and goes, and to the hub once it answers.
- `eventhub`: Graph delivers to an Azure event hub the runtime reads outward
  (agentseat/eventhub); the same pipeline as webhooks, no public endpoint.

Sinks (the MCP channel, `watch`, the bot) read the inbox and run beside it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import structlog
from anyio.abc import TaskStatus

from ..access import AccessPolicy
from ..audit import AuditLog
from ..audit.observe import observer as audit_observer
from ..channels.normalize import ChannelRef
from ..channels.poller import ChannelPoller
from ..clock import Clock
from ..clock.scheduler import Timer
from ..clock.timers import Reconcile, maintained
from ..config import Settings
from ..errors import ConfigError, TunnelError
from ..graph.client import GraphClient, ssl_context
from ..graph.replication import ReplicationGrace
from ..identity.keys import KeyStore
from ..identity.tokens import TokenProvider
from ..promises import Promises
from ..record import Record
from ..record.observe import observer as record_observer
from ..subscriptions.endpoints import eventhub_endpoints, webhook_endpoints
from ..subscriptions.channels import ChannelSubscriptionManager
from ..subscriptions.route import LifecycleRoute
from ..summary.daily import DailySummary, sponsor_mailer, summary_time
from ..subscriptions.manager import SubscriptionManager
from ..subscriptions.readiness import Readiness
from ..tunnel import LoopbackTunnel, make_tunnel
from ..tunnel.base import Tunnel
from .delivery_watch import DeliveryWatch
from .describe import describe
from .events import event_key
from .fetchq import FetchQueue
from .hub import HubDuties
from .inbox import Inbox
from .intake import Intake
from .lock import OwnerLock
from .normalize import TrustPolicy
from .permission_replies import PermissionReplies
from ..graph.subscription import is_channel_kind
from ..tenant_facts import TenantFacts
from .pipeline import NotificationPipeline
from .poll_policy import POLICY_KEY
from .poller import Poller
from .token_fallback import TokenFallbacks
from .transport_choice import TransportChoice
from .verify import JwksCache
from .sponsors import resolve_sponsors
from .status import RuntimeStatus
from .unlocked_keys import UnlockedKeys
from .webhook import WebhookServer

if TYPE_CHECKING:
    from ..intake_workers import IntakeWorkers

log = structlog.get_logger(__name__)

ALL_KINDS = frozenset({"teams", "mail"})
Sink = Callable[["Runtime"], Awaitable[None]]


class Runtime:
    """Everything one agent needs at run time, built from settings."""

    def __init__(self, settings: Settings, *, tunnel: Tunnel | None = None) -> None:
        missing = settings.missing_identity()
        if missing:
            raise ConfigError(f"missing settings: {', '.join(missing)}",
                              hint="run `agentseat setup`, or `agentseat demo` to try the sandbox")
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        own = {settings.agent_user_id, settings.agent_user_upn} - {""}
        self.inbox = Inbox(settings.state_dir / "inbox.db", own_ids=own)
        self.audit = AuditLog(settings.state_dir / "audit.db")  # issue 15: actions and gate refusals
        self.keys = KeyStore(settings)
        self.unlocked = UnlockedKeys(self.keys, settings.cert_thumbprint)
        # What `setup` just created may not have replicated yet: ride out its refusals for a while.
        self.replication = ReplicationGrace(settings.replication_grace_seconds, own_ids=(
            settings.agent_user_id, settings.agent_user_upn, settings.agent_id, settings.agent_object_id,
            settings.blueprint_app_id, settings.blueprint_object_id))
        self.tokens = TokenProvider(settings, self.unlocked.msal_credential, replication=self.replication)
        self.graph = GraphClient(settings, self.tokens, replication=self.replication)
        self.policy = TrustPolicy(
            tenant_id=settings.tenant_id,
            sponsor_names={s.lower() for s in settings.sponsors if "@" in s},
            sponsor_ids={s.lower() for s in settings.sponsors if "@" not in s},
            own_ids={o.lower() for o in own},
            domains={settings.agent_user_upn.rpartition("@")[2].lower()} - {""},
        )
        # Every producer hands its events to the intake; only the intake appends to the inbox.
        # Who may reach the agent (AGENTSEAT_INBOUND_POLICY): the intake's gate, with access.db.
        self.access = AccessPolicy(settings)
        self.intake = Intake(self.inbox, settings.state_dir / "intake.db", policy=self.policy, gate=self.access)
        self.access.attach(self.intake, self.graph, self.intake.intercept)
        #: What this tenant was seen to do and what we adapted to (status, doctor --live).
        self.facts = TenantFacts(settings.state_dir)
        self.poller = Poller(settings, self.graph, self.inbox, self.policy, store=self.intake.admit, facts=self.facts)
        #: Messages reconciles find that no notification delivered (variant 8: silent webhook failure).
        self.delivery = DeliveryWatch(self.inbox, self.facts)
        self.poller.on_found = self.delivery.found
        #: Team channels: polled where no channel subscription covers them (channels/poller.py).
        self.channels = ChannelPoller(settings, self.graph, self.inbox, self.policy, store=self.intake.admit)
        self.intake.channel_reader = self.channels.read_event
        self.intake.reader = self.poller.read_chat_message
        self.intake.on_overflow = self._resync_soon
        if settings.permission_relay:  # a sponsor's `yes <id>` answers a relayed Claude Code permission prompt
            self.intake.intercept(PermissionReplies(settings, self.graph, self.policy, audit=self.audit.append))
        self.lock = OwnerLock(settings.state_dir / "runtime.lock")
        # Rich items whose validation tokens fail are read from Graph instead, capped (issue 11).
        self.token_fallbacks = TokenFallbacks(facts=self.facts, on_capped=self._resync_soon)
        #: The Agent User's mailbox and Teams presence, each waited for on its own (readiness.py).
        self.readiness = Readiness(self.graph, self.facts, on_ready=self._part_ready, hold=settings.mode != "poll")
        self._deferred: dict[str, str] = {}  # kind -> reason of a read put off until its part is ready
        self.status = RuntimeStatus(mode=settings.mode)
        self._tunnel_override = tunnel
        self.manager: SubscriptionManager | None = None
        self.channel_manager: ChannelSubscriptionManager | None = None
        self.webhook: WebhookServer | None = None  # the owner's, while webhooks run
        self.intake_workers: IntakeWorkers | None = None  # AGENTSEAT_INTAKE_PROCESSES > 1, while webhooks run
        self.hub: HubDuties | None = None  # the owner's, in eventhub mode (its consumer: `self.hub.consumer`)
        self.transport: TransportChoice | None = None  # the owner's, in auto mode: what it chose and why
        self.fetches: dict[str, FetchQueue] = {}  # per-kind reads notifications ask for, while webhooks run
        self._sponsors_known: anyio.Event | None = None  # set once sponsors are resolved (or could not be)
        # --- memory and clock (issue 15): what the agent said, what it did, what it promised ---
        self.record = Record(settings.state_dir / "record.db", retention_days=settings.record_retention_days)
        self.graph.observers += [record_observer(self.record), audit_observer(self.audit)]
        self.access.audit = self.audit.append  # held senders and approvals
        self.promises = Promises(settings.state_dir / "promises.db")
        #: The one place that owns time: run by the owner only, so each reminder is raised once.
        timers: list[Timer] = []
        if (summary_at := summary_time(settings.daily_summary_at)) is not None:  # AGENTSEAT_DAILY_SUMMARY_AT
            mailer = (sponsor_mailer(self.graph, settings.sponsors[0])
                      if settings.daily_summary_mail and settings.sponsors else None)
            timers.append(DailySummary(summary_at, settings.timezone, inbox=self.inbox, record=self.record,
                                       promises=self.promises, mail=mailer))
        self.clock = Clock(self.promises, self.inbox, timers=timers)

    async def aclose(self) -> None:
        await self.graph.close()
        self.intake.close()
        self.access.close()
        self.inbox.close()
        self.record.close()
        self.audit.close()
        self.promises.close()
        self.lock.release()

    # --- shared by every process -------------------------------------------------------
    async def resolve_sponsors(self) -> None:
        """Sponsors come from settings and from the Agent Identity in Graph; ids make matching exact."""
        await resolve_sponsors(self.settings, self.graph, self.tokens, self.policy)

    async def run(self, sinks: list[Sink] = (), *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run sinks and, once elected, the owner's duties, until cancelled."""
        self._sponsors_known = sponsors_known = anyio.Event()

        async def resolve() -> None:
            try:
                await self.resolve_sponsors()
            finally:
                sponsors_known.set()

        try:
            async with anyio.create_task_group() as tg:
                # Sponsors are looked up beside startup, not before it: only the owner's
                # event sources need them, and they wait below (trust is decided on intake).
                tg.start_soon(resolve)
                for sink in sinks:
                    tg.start_soon(sink, self)
                self.status.role = "sink" if not self.lock.try_acquire() else "owner"
                task_status.started()
                if self.status.role == "sink":
                    log.info("runtime_attached_as_sink", owner_pid=self.lock.owner_pid())
                    await self.lock.acquire()
                    self.status.role = "owner"
                    log.info("runtime_took_over", pid=os.getpid())
                await self._own()
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose()

    # --- the owner's duties -----------------------------------------------------------
    async def _own(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._confirm_pending)
            tg.start_soon(self.poller.run_resyncs)
            tg.start_soon(self.access.run)  # releases what approvals allow, from this process or the CLI
            tg.start_soon(self.readiness.run)
            await tg.start(self.clock.run)  # reminders (and the daily summary): owner only
            await self._sources()
            tg.cancel_scope.cancel()

    async def _confirm_pending(self) -> None:
        """Confirm what notifications claim (left over from a previous process too); trust needs sponsors."""
        await self._sponsors_resolved()
        await self.intake.run()

    async def _sources(self) -> None:
        mode, no_tunnel = self.settings.mode, self.settings.tunnel == "none" and self._tunnel_override is None
        if mode == "auto":  # the hub if configured and answering, else as below (transport_choice.py)
            self.transport = TransportChoice(self.settings, self.tokens, self.inbox, self.clock,
                                             fallback="poll" if no_tunnel else "webhook", note=self._note)
            await self.transport.run(fallback=self._poll_all if no_tunnel else functools.partial(
                self._webhooks, fallback=True), hub=functools.partial(self._webhooks, fallback=False, eventhub=True),
                outage=self._hub_outage)
        elif mode == "poll":
            await self._poll_all()
        else:
            await self._webhooks(fallback=False, eventhub=mode == "eventhub")

    async def _poll_all(self) -> None:
        await self._sponsors_resolved()
        self.readiness.release()  # polling: no subscription will answer the readiness probes
        await self.readiness.usable("teams")  # its probe reads the chat list first: 1 per second
        self.status.source, self.status.polling = "poll", sorted(ALL_KINDS)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.channels.run)
            await self.poller.run(set(ALL_KINDS))

    async def _sponsors_resolved(self) -> None:
        if self._sponsors_known is not None:
            await self._sponsors_known.wait()

    async def _after_sponsors(self, duty: Callable[[], Awaitable[None]]) -> None:
        await self._sponsors_resolved()
        await duty()

    async def sponsors_known(self) -> None:
        """Wait until the sponsors are resolved (or could not be): whom to ask depends on it."""
        await self._sponsors_resolved()

    def _tunnel(self) -> Tunnel:
        if self._tunnel_override is not None:
            return self._tunnel_override
        if self.settings.tunnel == "loopback":
            return LoopbackTunnel(self.settings.webhook_host)
        tunnel = make_tunnel(self.settings)
        if tunnel is None:
            raise ConfigError("webhook mode needs a tunnel", hint="use --tunnel ngrok|static, or --mode poll")
        return tunnel

    async def _webhooks(self, *, fallback: bool, eventhub: bool = False) -> None:
        """Push delivery: webhooks through the tunnel, or (`eventhub`) the hub Graph delivers to."""
        settings = self.settings
        source = "eventhub" if eventhub else "webhook"
        certs = await anyio.to_thread.run_sync(self.unlocked.key_ring)
        ring, active = certs
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context(settings)))
        # Reads that notifications ask for: one bounded, rate-capped queue per kind, so a flood
        # of one never delays the other nor fails a POST (a full queue drops and resyncs instead).
        self.fetches = {
            "mail": FetchQueue("mail", functools.partial(self.poller.fetch_mail, source=source),
                               counters=self.intake.counters, on_overflow=self.poller.resync_soon),
            "teams": FetchQueue("teams", functools.partial(self.poller.fetch_chat_message, source=source),
                                counters=self.intake.counters, on_overflow=self.poller.resync_soon),
        }
        self.fetches["channel"] = FetchQueue("channel", functools.partial(self.channels.fetch, source=source),
                                             counters=self.intake.counters, on_overflow=self.channels.resync_soon)
        mail_fetches, chat_fetches = self.fetches["mail"], self.fetches["teams"]
        self.manager = manager = SubscriptionManager(
            settings, self.graph, self.inbox, certificate_b64=active.der_b64, certificate_id=active.sha1_thumbprint,
            on_resync=self.poller.resync, facts=self.facts, readiness=self.readiness,
            endpoints=eventhub_endpoints if eventhub else webhook_endpoints,
        )
        self.channel_manager = channel_manager = ChannelSubscriptionManager(
            settings, self.graph, self.inbox, certificate_b64=active.der_b64, certificate_id=active.sha1_thumbprint,
            on_resync=self.channels.on_resync, facts=self.facts,
            endpoints=eventhub_endpoints if eventhub else webhook_endpoints,  # with a hub, channels deliver there too
        )

        async def on_mail_fetch(message_id: str, partial: dict[str, Any]) -> None:
            self.delivery.notified("mail", event_key("mail", None, message_id))
            mail_fetches.offer(message_id)

        async def on_chat_fetch(chat_id: str, message_id: str) -> None:
            self.delivery.notified("teams", event_key("teams", chat_id, message_id))
            chat_fetches.offer(chat_id, message_id)

        async def on_channel_fetch(ref: ChannelRef) -> None:
            self.fetches["channel"].offer(ref)

        # Lifecycle events go to the gate holding the subscription (or, a hub's follower, to its manager).
        route = LifecycleRoute(manager, channel_manager)
        pipeline = NotificationPipeline(
            settings=settings, inbox=self.inbox, keyring=ring,
            jwks=JwksCache(settings.jwks_url, session, ssl=ssl_context(settings)),
            policy=self.policy, subscriptions=route.known,
            on_lifecycle=route.offer, on_mail_fetch=on_mail_fetch, on_chat_fetch=on_chat_fetch,
            on_channel_fetch=on_channel_fetch, store=self.delivery.observing(self.intake),
            fallbacks=self.token_fallbacks, source=source,
        )
        tunnel = None if eventhub else self._tunnel()
        if eventhub and settings.intake_processes > 1:
            self._note("AGENTSEAT_INTAKE_PROCESSES is for webhook delivery; the hub's partitions are shared out by "
                       "the Event Hubs client instead (one process reads here)")
        reconcile = Reconcile(self.poller, settings.reconcile_seconds, self.clock.now)
        try:
            async with anyio.create_task_group() as tg:
                if tunnel is not None:
                    if settings.intake_processes > 1:  # imported only then: `serve` starts without it
                        from ..intake_workers import IntakeWorkers, Lent
                    workers = self.intake_workers = None if settings.intake_processes < 2 else IntakeWorkers(Lent(
                        settings=settings, ring=ring, policy=self.policy, access=self.access, known=route.known,
                        pipeline=pipeline, inbox=self.inbox, intake=self.intake, delivery=self.delivery,
                        on_lifecycle=route.offer, on_mail_fetch=on_mail_fetch, on_chat_fetch=on_chat_fetch,
                        on_channel_fetch=on_channel_fetch, resync=self._resync_soon, facts=self.facts),
                        settings.intake_processes - 1)
                    self.webhook = WebhookServer(settings, pipeline, **({"health": workers.health} if workers else {}))
                    port = await tg.start(functools.partial(self.webhook.run, share=workers is not None))
                    if workers is not None:  # once trust is decided as here: they judge senders too
                        tg.start_soon(self._after_sponsors, functools.partial(workers.run, self.webhook))
                tg.start_soon(mail_fetches.run)
                tg.start_soon(chat_fetches.run)
                tg.start_soon(manager.lifecycle.run)  # checked and coalesced (subscriptions/lifecycle.py)
                tg.start_soon(self.fetches["channel"].run)
                tg.start_soon(channel_manager.lifecycle.run)
                # Channels no subscription covers (refused, over the cap, no public URL) are polled in auto mode
                # and with a hub.
                tg.start_soon(functools.partial(self.channels.run, self._covered_channels,
                                                poll_uncovered=fallback or eventhub))
                if tunnel is not None:  # with a hub, only its manager reconciles (runtime/hub.py)
                    self.clock.add(reconcile)  # the clock says when to reconcile (one place owns time)
                tg.start_soon(self.delivery.run)
                if tunnel is None:
                    await self._eventhub_loop(pipeline, reconcile, route)
                else:
                    await self._tunnel_loop(tunnel, port, fallback=fallback)
        finally:
            self.clock.remove(reconcile)
            with anyio.CancelScope(shield=True):
                if tunnel is not None:
                    await tunnel.stop()
                await session.close()

    async def _tunnel_loop(self, tunnel: Tunnel, port: int, *, fallback: bool) -> None:
        """Keep a public URL; while there is none (or Graph refuses a kind), poll instead."""
        assert self.manager is not None and self.channel_manager is not None
        backoff = 1.0
        while True:
            try:
                url = await tunnel.start(port)
            except (TunnelError, ConfigError) as exc:
                if not fallback and isinstance(exc, ConfigError):
                    raise  # webhook mode cannot work without a tunnel setting that makes sense
                self._note(f"no public URL ({exc.message}); "
                           + ("polling until the tunnel comes back" if fallback else f"retrying in {backoff:g} s"))
                with anyio.move_on_after(backoff):
                    await (self._poll(set(ALL_KINDS)) if fallback else anyio.sleep_forever())
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = 1.0
            self.status.public_url = url
            await self._sponsors_resolved()  # events are about to flow (the tunnel started meanwhile): trust needs them
            active = await self.manager.sync(url)
            if "teams" in active:  # Teams no longer polled (poll_policy.py): the warning is over
                self.facts.warn(POLICY_KEY, None)
            self.delivery.cover(active)
            await self._resync_all("startup" if self.status.source == "" else "url_changed")
            # After the chats' startup read, which many channels must not delay (subscriptions/channels.py).
            await self.channel_manager.subscribe(url, self.channels)
            uncovered = set(ALL_KINDS) - active
            for kind in sorted(uncovered):
                self._note(f"{kind}: {self.manager.states[kind].error or 'not subscribed'}")
            async with anyio.create_task_group() as tg:
                tg.start_soon(maintained, self.clock, self.manager)  # renewals: the clock says when
                if self.channel_manager is not None:
                    tg.start_soon(maintained, self.clock, self.channel_manager, "renewals.channels")
                    tg.start_soon(self.channel_manager.keep_current, self.channels.joined)
                self.status.source = "webhook" if not uncovered else "webhook+poll"
                self.status.polling = sorted(uncovered) if fallback else []
                if uncovered and fallback:
                    tg.start_soon(self.poller.run, uncovered)
                await tunnel.wait_lost()
                tg.cancel_scope.cancel()
            # Next round: a new URL (ngrok hands out another), and the subscriptions move there.
            log.warning("tunnel_lost", public_url=url)
            self.delivery.cover(())
            self.status.public_url = ""

    async def _eventhub_loop(self, pipeline: NotificationPipeline, reconcile: Reconcile,
                             route: LifecycleRoute) -> None:
        """Event Hubs mode (runtime/hub.py): read the hub; manage the subscriptions or follow them."""
        assert self.manager is not None
        await self._sponsors_resolved()  # events are about to flow: trust needs the sponsors
        self.hub = HubDuties(self.settings, pipeline, self.inbox, self.tokens, self.manager, self.poller,
                             self.delivery, self.facts, list(self.fetches.values()), self.status, ALL_KINDS,
                             resync_all=self._resync_all, note=self._note,
                             reconcile=functools.partial(self._clock_serves, reconcile),
                             maintain=functools.partial(maintained, self.clock, self.manager),
                             channel_manager=self.channel_manager, channels=self.channels, lifecycle=route,
                             maintain_channels=functools.partial(maintained, self.clock, self.channel_manager,
                                                                 "renewals.channels"))
        await self.hub.run()

    async def _hub_outage(self) -> None:
        """auto, while the hub it reads does not answer: the hub's duties poll (runtime/hub.py)."""
        await (self.hub.poll_outage() if self.hub is not None else anyio.sleep_forever())

    async def _clock_serves(self, timer: Timer) -> None:
        """The clock serves `timer` until this task is cancelled (the hub's manager duty ends)."""
        self.clock.add(timer)
        try:
            await anyio.sleep_forever()
        finally:
            self.clock.remove(timer)

    def _covered_channels(self) -> set[tuple[str, str]]:
        if self.channel_manager is None or not (self.status.public_url or self.hub is not None):
            return set()
        return self.channel_manager.covered()

    def _resync_soon(self, kind: str, reason: str) -> bool:
        """One coalesced read of `kind` (a channel subscription's kind, or `channel`: every channel)."""
        if kind == "channel" or is_channel_kind(kind):
            return self.channels.resync_soon(kind, reason)
        return self.poller.resync_soon(kind, reason)

    def _part_ready(self, kind: str) -> None:
        """The mailbox or Teams presence became ready: subscribe now and read what it hid."""
        if self.manager is not None:
            self.manager.retry_now(kind)
        self.poller.resync_soon(kind, self._deferred.pop(kind, "ready"))

    async def _resync_all(self, reason: str) -> None:
        """Read what the gap before now may hide, chats and mail side by side."""
        self.channels.resync_soon("channel", reason)
        async with anyio.create_task_group() as tg:
            for kind in sorted(ALL_KINDS):
                tg.start_soon(self._resync_when_ready, kind, reason)

    async def _resync_when_ready(self, kind: str, reason: str) -> None:
        if not await self.readiness.usable(kind):
            self._deferred[kind] = reason  # the mailbox or Teams is not there yet: read once it is
            return
        await self.poller.resync(kind, reason)

    async def _poll(self, kinds: set[str]) -> None:
        await self._sponsors_resolved()  # what polling stores is judged by who the sponsors are
        self.readiness.release()  # no subscription will answer the readiness probes meanwhile
        self.status.source, self.status.polling = "poll", sorted(kinds)
        await self.poller.run(kinds)

    def _note(self, text: str) -> None:
        log.info("runtime_note", note=text)
        self.status.notes = [*self.status.notes[-9:], text]

    def describe(self) -> dict[str, Any]:
        """What `status` shows: mode, subscriptions, last event, counts, unread events (runtime/describe.py)."""
        return describe(self)
