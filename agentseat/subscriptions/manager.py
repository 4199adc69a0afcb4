"""A desired-state reconciler for the agent's Graph subscriptions.

It creates the subscriptions in `specs.desired_specs`, each with its own fresh
clientState, adopts live ones it made before (Graph allows one per app per
resource: a duplicate is a 409), renews them well before expiry, and checks
lifecycle notifications against Graph before acting on them (lifecycle.py
queues and coalesces them). Every gap (downtime, `missed`, a recreation, a URL
move) is handed to `on_resync` so the poller reads what the gap hid.

A refusal is never final (refusals.py): a too-long lifetime is asked again with the
maximum Graph names, an unprovisioned part of the Agent User is waited for (readiness.py),
anything else is retried on a backoff; `status` shows why and when (`subscription.<kind>`).
Secrets live in the inbox's 0600 meta table, never in a log line, `status` or a repr.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from ..config import Settings
from ..errors import GraphError, NotFoundError
from ..graph.times import parse_graph_time
from ..runtime.inbox import Inbox
from ..graph.subscription import KnownSubscription
from .endpoints import Endpoints, webhook_endpoints
from .known import KnownView, new_client_state, read_legacy_client_state, remove_legacy_client_state
from .lifecycle import LifecycleCounters, LifecycleGate
from .refusals import BACKOFF_MAX_SECONDS, LIFETIME_FACTS, backoff_seconds, explain, max_minutes
from .refusals import not_provisioned, refusal_warning, within
from .specs import SubscriptionSpec, desired_specs, expiry
from .state import SubscriptionState, describe_states, dump_states, load_states, next_check_seconds

if TYPE_CHECKING:
    from ..tenant_facts import TenantFacts
    from .readiness import Readiness

log = structlog.get_logger(__name__)

_META_KEY = "subscriptions"
Resync = Callable[[str, str], Awaitable[None]]  # (kind, reason)
#: "Don't issue a reauthorize request and an update request for the same subscription
#: within a 10-minute window" (change-notifications-lifecycle-events): one PATCH does both.
REAUTHORIZE_WINDOW_SECONDS = 600.0
#: A failed renewal of a subscription close to expiry is retried at most this often.
_DUE_RETRY_SECONDS = 60.0
#: A kind without a live subscription (refused, or removed and not recreated) is tried
#: again after this long, then twice as long each time, at most hourly (refusals.py):
#: a refusal never leaves it to polling for good.
RETRY_CREATE_SECONDS = 30.0
#: Tenant fact: how mail is subscribed ("basic": without resource data, see specs.py).
MAIL_PAYLOAD_FACT = "mail_subscription"
#: The next upkeep is due after at most 300 s, and at least 5 s (the clock wakes for it: clock/timers.py).
MAX_CHECK_SECONDS, MIN_CHECK_SECONDS = 300.0, 5.0


class SubscriptionManager:
    """Keeps the agent's subscriptions alive for one public URL at a time."""

    def __init__(self, settings: Settings, graph: Any, inbox: Inbox, *, certificate_b64: str, certificate_id: str,
                 on_resync: Resync, specs: list[SubscriptionSpec] | None = None, facts: TenantFacts | None = None,
                 readiness: Readiness | None = None, meta_key: str = _META_KEY,
                 endpoints: Callable[[str], Endpoints] = webhook_endpoints) -> None:
        self._settings = settings
        #: The URLs a subscription names for the current `url` (the webhook's two, or an Event Hub's one).
        self._endpoints = endpoints
        self._graph = graph
        self._inbox = inbox
        self._cert = certificate_b64
        self._cert_id = certificate_id
        self._on_resync = on_resync
        self._facts = facts
        self._readiness = readiness
        self._meta_key = meta_key
        self.specs = [self._known_lifetime(s) for s in (desired_specs(settings) if specs is None else specs)]
        self.states: dict[str, SubscriptionState] = {s.kind: SubscriptionState(s.kind) for s in self.specs}
        self.known = KnownView()  # live view the webhook pipeline checks
        self.counters = LifecycleCounters()
        self.lifecycle = LifecycleGate(holds=self.known.holds, check_removed=self._check_removed,
                                       reauthorize=self._reauthorize, resync=on_resync, counters=self.counters)
        self.url = ""
        self._lock = anyio.Lock()
        self._patched_at: dict[str, float] = {}  # subscription id -> monotonic time of our last PATCH
        self._upkeep_wanted = anyio.Event()  # the clock (or a lost subscription) asks `maintain` for a pass
        self.upkeep_pending = False
        self._next_check = datetime.now(UTC)  # absolute: the clock compares it with its own now
        #: Called when the next due time moved (a pass ended, a refusal, a retry now): the clock looks again.
        self.on_schedule_change: Callable[[], None] = lambda: None
        # Versions before per-subscription secrets shared one; their live subscriptions
        # keep verifying with it until `sync` replaces them.
        self._legacy = read_legacy_client_state(settings.state_dir)
        self._load()
        if facts is not None and any(s.kind == "mail" for s in self.specs):
            facts.record(MAIL_PAYLOAD_FACT, "rich" if self._spec("mail").rich else "basic")

    # --- lifetimes Graph told us ------------------------------------------------------
    def _known_lifetime(self, spec: SubscriptionSpec) -> SubscriptionSpec:
        """A lifetime a previous run read from Graph's refusal is used from the start."""
        key = LIFETIME_FACTS.get(spec.kind, "")
        return within(spec, self._facts.get(key)) if self._facts is not None else spec

    def _adapt_lifetime(self, spec: SubscriptionSpec, exc: GraphError) -> SubscriptionSpec | None:
        """After "Subscription expiration can only be N minutes in the future.": the spec with N
        (recorded as a tenant fact), or None when the refusal names no shorter lifetime."""
        adapted = within(spec, max_minutes(exc))
        if adapted is spec:
            return None
        self.specs = [adapted if s.kind == spec.kind else s for s in self.specs]
        if self._facts is not None and spec.kind in LIFETIME_FACTS:
            self._facts.record(LIFETIME_FACTS[spec.kind], adapted.minutes)
        log.warning("subscription_lifetime_adapted", kind=spec.kind, minutes=adapted.minutes)
        return adapted

    # --- persistence ------------------------------------------------------------------
    def _load(self) -> None:
        self._stored: dict[str, SubscriptionState] = {}  # kinds saved before and not (yet) in the specs
        for kind, state in load_states(self._inbox.get_meta(self._meta_key), self._legacy).items():
            if kind in self.states:
                self.states[kind] = state
            else:
                self._stored[kind] = state
        self._refresh_known()

    def _save(self) -> None:
        self._inbox.set_meta(self._meta_key, dump_states(self.states))
        self._refresh_known()

    def _refresh_known(self) -> None:
        self.known.hold(KnownSubscription(s.id, s.kind, s.client_state, rich=s.rich)  # type: ignore[arg-type]
                        for s in self.states.values() if s.id and s.state == "active")

    def _let_go(self, state: SubscriptionState, *, grace: bool) -> None:
        """Stop holding `state`'s subscription. With `grace` (we replaced it), its change
        notifications in flight still verify briefly; never its lifecycle events."""
        if state.id:
            self.known.retire(KnownSubscription(state.id, state.kind, state.client_state,  # type: ignore[arg-type]
                                                rich=state.rich), grace=grace)
            self._patched_at.pop(state.id, None)
        state.id, state.client_state = "", ""

    def _is_legacy(self, secret: str) -> bool:
        return bool(self._legacy) and secret == self._legacy

    # --- reconciliation ----------------------------------------------------------------
    def active_kinds(self) -> set[str]:
        return {k for k, s in self.states.items() if s.state == "active"}

    async def sync(self, public_url: str) -> set[str]:
        """Make every desired subscription point at `public_url` (or the Event Hubs address); returns the active kinds."""
        async with self._lock:
            self.url = public_url.rstrip("/")
            live = await self._list_live()
            # Each kind side by side: a POST waits for Graph to validate the URL, and the kinds share nothing.
            async with anyio.create_task_group() as tg:
                for spec in self.specs:
                    if live is None:
                        tg.start_soon(self._keep_unlisted, spec)
                    else:
                        tg.start_soon(self._reconcile, spec, [s for s in live if spec.matches(str(s.get("resource")))])
            self._save()
            if self._legacy and not any(self._is_legacy(s.client_state) for s in self.states.values() if s.id):
                if remove_legacy_client_state(self._settings.state_dir):
                    log.info("legacy_client_state_removed")
            return self.active_kinds()

    async def follow(self, url: str) -> set[str]:
        """Hold the live subscriptions another process manages for `url`, changing nothing in Graph.

        For machines that share an event hub (eventhub/lease.py): one manages the
        subscriptions, the others only need each one's id and clientState to verify what
        they read; Graph echoes the clientState to the app that made the subscription.
        """
        async with self._lock:
            self.url = url.rstrip("/")
            if (live := await self._list_live()) is None:
                return self.active_kinds()
            for spec in self.specs:
                keep = next((s for s in live if spec.matches(str(s.get("resource", ""))) and self._points_here(s)
                             and self._secret_for(s)), None)
                if keep is not None and str(keep["id"]) != self.states[spec.kind].id:
                    self._take_over(spec, keep, self._secret_for(keep))
            return self.active_kinds()

    async def _list_live(self) -> list[dict[str, Any]] | None:
        """Graph's list of the agent's subscriptions, or None when it cannot be read."""
        try:
            return [s async for page in self._graph.pages("/subscriptions") for s in page]
        except GraphError as exc:
            log.warning("subscriptions_list_failed", status=exc.status, code=exc.code)
            return None

    def _secret_for(self, live: dict[str, Any]) -> str:
        """The clientState of a live subscription, if it is one we can verify and may keep."""
        sub_id = str(live.get("id", ""))
        secret = next((s.client_state for s in self.states.values() if s.id == sub_id and s.client_state), "")
        secret = secret or self.known.retired_secret(sub_id)
        echoed = live.get("clientState")
        if not secret and isinstance(echoed, str):
            secret = echoed  # Graph's own answer, read with our token
        # A subscription on the old shared secret is replaced: it may be captured, and it is
        # accepted for every subscription that shares it.
        return "" if self._is_legacy(secret) else secret

    @property
    def _notify_url(self) -> str:
        return self._endpoints(self.url).notification

    @property
    def _lifecycle_url(self) -> str:
        return self._endpoints(self.url).lifecycle

    def _points_here(self, live: dict[str, Any], *, lifecycle_only: bool = False) -> bool:
        lifecycle_ok = live.get("lifecycleNotificationUrl") == self._lifecycle_url
        return lifecycle_ok and (lifecycle_only or live.get("notificationUrl") == self._notify_url)

    async def _reconcile(self, spec: SubscriptionSpec, existing: list[dict[str, Any]]) -> None:
        state = self.states[spec.kind]
        # The one we hold first: a second that also points here is a duplicate to replace.
        ordered = sorted(existing, key=lambda s: str(s.get("id")) != state.id)
        keep = next((s for s in ordered if self._points_here(s) and self._secret_for(s)
                     and spec.same_payload(s)), None)
        reason = "created"
        for stale in existing:
            if stale is not keep:
                # A different URL (lifecycleNotificationUrl cannot be changed by PATCH,
                # subscription-update), or a secret we cannot or should not keep: replaced.
                if str(stale["id"]) == state.id:
                    self._let_go(state, grace=True)
                reason = "rotated" if self._points_here(stale) and reason != "moved" else "moved"
                await self._delete(str(stale["id"]))
        if keep is not None:
            self._take_over(spec, keep, self._secret_for(keep))
            await self._renew_if_due(spec)
            return
        if state.id:  # Graph no longer lists it
            self._let_go(state, grace=False)
        await self._create(spec, reason=reason, resync=False)

    async def _keep_unlisted(self, spec: SubscriptionSpec) -> None:
        """Graph's list is unavailable: what we hold is the best we know. Keep it if it points
        here and has its own secret (a renewal finds out if it is gone), else replace it."""
        state = self.states[spec.kind]
        if state.id and state.state == "active":
            if state.url == self._notify_url and not self._is_legacy(state.client_state):
                await self._renew_if_due(spec)
                return
            await self._delete(state.id)
            self._let_go(state, grace=True)
        await self._reconcile(spec, [])

    def _take_over(self, spec: SubscriptionSpec, live: dict[str, Any], secret: str) -> None:
        state = self.states[spec.kind]
        adopted = state.id != str(live["id"])
        if adopted and state.id:
            self._let_go(state, grace=True)
        state.id, state.url, state.state, state.error = str(live["id"]), self._notify_url, "active", ""
        state.client_state = secret
        echoed = live.get("includeResourceData")  # what Graph says it promised, else what we asked for
        state.rich = spec.rich if echoed is None else bool(echoed)
        state.expires = parse_graph_time(str(live["expirationDateTime"]))
        self._active(state)
        self._save()
        if adopted:
            log.info("subscription_adopted", kind=spec.kind, subscription=state.id)

    async def _create(self, spec: SubscriptionSpec, *, reason: str, resync: bool = True, adopt: bool = True) -> None:
        state = self.states[spec.kind]
        if not self.url:
            # No public URL yet: a lifecycle event can arrive between the webhook's start and
            # the first `sync` (Graph redelivers what it queued while we were down). Creating
            # now would point Graph at "/notifications" and be refused; `sync` creates it.
            self._let_go(state, grace=False)
            state.state, state.error = "pending", ""
            self._save()
            log.info("subscription_deferred", kind=spec.kind, reason=reason)
            return
        secret = new_client_state()  # every subscription its own, fresh, never reused
        body = spec.body(notification_url=self._notify_url, lifecycle_url=self._lifecycle_url,
                         client_state=secret, certificate_b64=self._cert, certificate_id=self._cert_id)
        try:
            created = await self._graph.post("/subscriptions", body)
        except GraphError as exc:
            adapted = self._adapt_lifetime(spec, exc)
            if adapted is not None:  # asked again at once with the lifetime Graph named
                return await self._create(adapted, reason=reason, resync=resync, adopt=adopt)
            if exc.status == 409 and adopt:
                # One already exists for this resource (Graph allows one): take it over if it
                # is ours and points here, else replace it, so something is always renewed.
                log.warning("subscription_conflict", kind=spec.kind)
                if await self._adopt(spec, reason=reason, resync=resync):
                    return
                return await self._create(spec, reason=reason, resync=resync, adopt=False)
            if exc.status == 409:
                self.counters.actions["conflicts_unresolved"] += 1
            self._refused(spec, exc)
            return
        self._let_go(state, grace=False)
        state.id, state.url, state.state, state.error = str(created["id"]), self._notify_url, "active", ""
        state.client_state, state.rich = secret, spec.rich
        state.expires = parse_graph_time(str(created["expirationDateTime"]))
        self._active(state)
        self._save()
        log.info("subscription_created", kind=spec.kind, subscription=state.id, reason=reason)
        if resync:
            self.lifecycle.resync(spec.kind, reason)

    async def _adopt(self, spec: SubscriptionSpec, *, reason: str, resync: bool) -> bool:
        """After a 409: find our subscription for `spec`'s resource and keep it alive."""
        if (live := await self._list_live()) is None:
            return False
        for candidate in (s for s in live if spec.matches(str(s.get("resource", "")))):
            secret = self._secret_for(candidate)
            if not (secret and self._points_here(candidate, lifecycle_only=True)):
                await self._delete(str(candidate["id"]))  # points elsewhere, or we cannot verify it
                continue
            self._take_over(spec, candidate, secret)
            self.counters.actions["adopted"] += 1
            if candidate.get("notificationUrl") != self._notify_url:
                await self.renew(spec.kind, reason="adopted", move=True)
            else:
                await self._renew_if_due(spec)
            if resync:
                self.lifecycle.resync(spec.kind, reason)
            return True
        return False

    def _refused(self, spec: SubscriptionSpec, exc: GraphError) -> None:
        """Remember why, and when to ask again; `status` shows both."""
        state = self.states[spec.kind]
        self._let_go(state, grace=False)
        state.refusals += 1
        state.state, state.error = "refused", explain(exc)
        wait = backoff_seconds(state.refusals, first=RETRY_CREATE_SECONDS, most=BACKOFF_MAX_SECONDS)
        state.retry_at = datetime.now(UTC).timestamp() + wait
        part = not_provisioned(exc)
        if part is not None and self._readiness is not None:
            self._readiness.not_ready(part, f"{exc.status} {exc.code}")  # it asks us again once ready
        if self._facts is not None:
            self._facts.warn(f"subscription.{spec.kind}", refusal_warning(spec.kind, state))
        self._reschedule()
        log.warning("subscription_refused", kind=spec.kind, status=exc.status, code=exc.code, why=state.error,
                    retry_in=round(wait))
        self._save()

    def _active(self, state: SubscriptionState) -> None:
        state.refusals, state.retry_at = 0, 0.0
        if self._readiness is not None:  # Graph keeps it: its part of the Agent User is there
            self._readiness.confirm(state.kind)
        if self._facts is not None:
            self._facts.warn(f"subscription.{state.kind}", None)

    def retry_now(self, kind: str) -> None:
        """Ask again for `kind` at the next look (its part of the Agent User became ready)."""
        state = self.states.get(kind)
        if state is None or state.state == "active":
            return
        state.retry_at = 0.0
        self._reschedule()

    async def _delete(self, subscription_id: str) -> None:
        try:
            await self._graph.delete(f"/subscriptions/{subscription_id}")
        except GraphError as exc:
            if not isinstance(exc, NotFoundError):  # already gone is what we wanted
                log.warning("subscription_delete_failed", subscription=subscription_id, status=exc.status)

    # --- renewal ------------------------------------------------------------------------
    def _spec(self, kind: str) -> SubscriptionSpec:
        return next(s for s in self.specs if s.kind == kind)

    def _due(self, spec: SubscriptionSpec) -> bool:
        state = self.states[spec.kind]
        left = state.expires - datetime.now(UTC).timestamp()
        return left < spec.minutes * 60 * self._settings.renew_fraction

    async def _renew_if_due(self, spec: SubscriptionSpec) -> None:
        if self.states[spec.kind].state == "active" and self._due(spec):
            await self.renew(spec.kind, reason="due")

    async def renew(self, kind: str, *, reason: str, move: bool = False) -> None:
        """One PATCH of expirationDateTime: renews and reauthorizes in a single call
        (never both a reauthorize and a PATCH within 10 minutes, lifecycle docs)."""
        spec, state = self._spec(kind), self.states[kind]
        if not state.id:
            return await self._create(spec, reason=reason)
        body = {"expirationDateTime": expiry(spec.minutes, slack=spec.slack_seconds)}
        if move:
            body["notificationUrl"] = self._notify_url
        self._patched_at[state.id] = time.monotonic()
        try:
            updated = await self._graph.patch(f"/subscriptions/{state.id}", body)
        except NotFoundError:
            log.info("subscription_gone", kind=kind, subscription=state.id)
            self._let_go(state, grace=False)
            return await self._create(spec, reason="recreated")
        except GraphError as exc:
            if self._adapt_lifetime(spec, exc) is not None:  # the tenant's maximum fell: renew within it
                return await self.renew(kind, reason=reason, move=move)
            log.warning("subscription_renew_failed", kind=kind, status=exc.status, code=exc.code)
            return None
        state.expires = parse_graph_time(str(updated["expirationDateTime"]))
        state.url = str(updated.get("notificationUrl") or state.url)
        self._save()
        log.info("subscription_renewed", kind=kind, subscription=state.id, reason=reason)
        return None

    # --- lifecycle jobs (queued and coalesced by lifecycle.py) ---------------------------
    async def _check_removed(self, kind: str, reason: str) -> None:
        """`subscriptionRemoved` is a claim: Graph is asked, and only a 404 recreates."""
        async with self._lock:
            state = self.states[kind]
            if not state.id:
                return
            self.counters.actions["removal_checks"] += 1
            try:
                live = await self._graph.get(f"/subscriptions/{state.id}")
            except NotFoundError:
                log.info("subscription_removal_confirmed", kind=kind, subscription=state.id)
                self._let_go(state, grace=False)
                self.counters.actions["removal_confirmed"] += 1
                await self._create(self._spec(kind), reason="removed")
                return
            except GraphError as exc:
                # Unknown either way: the subscription is kept and renewed as usual.
                self.counters.actions["removal_check_failed"] += 1
                log.warning("subscription_removal_check_failed", kind=kind, status=exc.status, code=exc.code)
                return
            self.counters.dropped["removal_refuted"] += 1
            log.warning("lifecycle_removal_refuted", kind=kind, subscription=state.id)
            if isinstance(live, dict) and live.get("expirationDateTime"):
                state.expires = parse_graph_time(str(live["expirationDateTime"]))
                self._save()

    async def _reauthorize(self, kind: str, reason: str) -> None:
        """At most one PATCH per subscription per 10 minutes, unless it is due for renewal."""
        async with self._lock:
            state, spec = self.states[kind], self._spec(kind)
            if state.state != "active" or not state.id:
                return
            since = time.monotonic() - self._patched_at.get(state.id, float("-inf"))
            if since < REAUTHORIZE_WINDOW_SECONDS and not (self._due(spec) and since >= _DUE_RETRY_SECONDS):
                self.counters.dropped["reauthorize_rate_limited"] += 1
                log.info("lifecycle_reauthorize_skipped", kind=kind, subscription=state.id,
                         seconds_since_patch=round(since))
                return
            self.counters.actions["renewed"] += 1
            await self.renew(kind, reason=reason)

    # --- upkeep --------------------------------------------------------------------------
    async def maintain(self) -> None:
        """Renew whatever is due and retry what is missing: one pass now, then one each time
        `request_upkeep` asks (the clock, at `next_check_at`). The runtime cancels it when the
        URL goes away. Nothing here sleeps: the clock owns time."""
        while True:
            self._upkeep_wanted = anyio.Event()
            async with self._lock:
                for spec in self.specs:
                    state = self.states[spec.kind]
                    if state.state == "active":
                        await self._renew_if_due(spec)
                    elif self.url and state.retry_at <= datetime.now(UTC).timestamp():
                        await self._create(spec, reason="retry")
            self.upkeep_pending = False
            self._reschedule()
            await self._upkeep_wanted.wait()

    def request_upkeep(self) -> None:
        """Ask `maintain` for a pass (it is due); `next_check_at` says nothing until it ran."""
        self.upkeep_pending = True
        self._upkeep_wanted.set()

    def next_check_at(self) -> datetime:
        """When the next renewal or retry is due (none: MAX_CHECK_SECONDS after the last look)."""
        return self._next_check

    def _reschedule(self) -> None:
        now = datetime.now(UTC)
        wait = next_check_seconds(self.states.values(), now.timestamp(), least=MIN_CHECK_SECONDS,
                                  most=MAX_CHECK_SECONDS)
        self._next_check = now + timedelta(seconds=wait)
        self.on_schedule_change()

    async def drop_all(self) -> None:
        """Delete our subscriptions (used by teardown and when leaving webhook mode for good)."""
        async with self._lock:
            for state in self.states.values():
                if state.id:
                    await self._delete(state.id)
                self._let_go(state, grace=False)
                state.state = "pending"
            self._save()

    def status(self) -> dict[str, Any]:
        return describe_states(self.states, self._spec)
