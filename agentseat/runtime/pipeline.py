"""The notification pipeline: from the body of a Graph POST to stored events and queued fetches.

Steps, each a function testable alone: `parse_collection` -> `screen_items` ->
`check_tokens` on the event loop, then `decrypt_items` -> `plan_actions` -> store in one
worker-thread call (`work_batch`, runtime/batch.py; the store is a `BatchStore`, the
runtime's `Intake`, which keeps claims Graph must confirm durably), then dispatch
(callbacks). `NotificationPipeline.process` runs them in order, logs one debug line per
POST and every drop once per (reason, subscription) per minute. Items whose clientState
matched but whose validation tokens did not verify are fetched from Graph instead of
decrypted, within the budget of runtime/token_fallback.py.

It owns the drop rules and their log lines. It does not own HTTP (runtime/webhook.py),
the trust primitives (runtime/verify.py), the crypto (runtime/crypto.py), the Event
shape (runtime/normalize.py, runtime/inbox.py) or any Graph call: bodies that a
notification cannot carry are fetched by the runtime behind the callbacks.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from pydantic import ValidationError

from agentseat.channels.normalize import ChannelRef
from agentseat.errors import InboxError
from agentseat.logging import debug_on
from agentseat.graph.models import ChangeNotificationCollection
from agentseat.graph.subscription import KnownSubscription

from .batch import (
    FOREIGN_CERTIFICATE,
    BatchStore,
    InboxStore,
    Item,
    Plan,
    Worked,
    decrypt_items,
    plan_actions,
    work_batch,
)
from .coalesce import ThreadCoalescer
from .crypto import KeyRing
from .droplog import Drop, DropLog, grouped
from .events import Source
from .inbox import Inbox
from .normalize import TrustPolicy
from .token_fallback import TokenFallbacks
from .verify import JwksCache, TokenReport, VerificationError, assess_tokens, verify_notification_item

if TYPE_CHECKING:
    from agentseat.config import Settings

__all__ = [
    "FOREIGN_CERTIFICATE", "BatchStore", "ChatFetchCallback", "Drop", "DropLog", "Item", "KnownSubscription", "LifecycleCallback",
    "MailFetchCallback", "NotificationPipeline", "Plan", "ProcessResult", "TokenCheck", "check_tokens",
    "decrypt_items", "parse_collection", "plan_actions", "screen_items",
]

log = structlog.get_logger(__name__)

# Token failures that a later delivery can cure: the signing key is not in our JWKS
# copy yet (keys "are rotated daily", How to validate) or the JWKS endpoint was down.
# Only a sender that knows the clientState gets this far, so retrying is no oracle.
# Used for lifecycle items only: a change item falls back to a Graph read instead.
_RETRYABLE_TOKEN_REASONS = frozenset({"unknown_kid"})
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

LifecycleCallback = Callable[[KnownSubscription, str], Awaitable[None]]
MailFetchCallback = Callable[[str, dict[str, Any]], Awaitable[None]]
ChatFetchCallback = Callable[[str, str], Awaitable[None]]
ChannelFetchCallback = Callable[[ChannelRef], Awaitable[None]]


@dataclass
class ProcessResult:
    """What one POST amounted to. `dropped` counts items by reason (1 for an unreadable body).

    `retry` asks the caller to answer 5xx so Graph delivers again: "If the
    notification isn't processed or queued, return a 5xx" (change-notifications-delivery-webhooks).
    """

    received: int = 0
    accepted: int = 0
    stored: int = 0
    fetches: int = 0
    lifecycle: int = 0
    ignored: int = 0
    fallbacks: int = 0  # items read from Graph because their validation tokens did not verify
    dropped: Counter[str] = field(default_factory=Counter)
    retry: bool = False



# --- steps ---------------------------------------------------------------------------


def parse_collection(body: bytes) -> ChangeNotificationCollection:
    """Parse a POST body; `VerificationError("malformed")` for bad UTF-8, bad JSON or a wrong shape."""
    try:
        return ChangeNotificationCollection.model_validate_json(body)
    except ValidationError:
        # The pydantic message quotes the input, so it is neither kept nor logged.
        raise VerificationError("malformed") from None


def screen_items(
    collection: ChangeNotificationCollection,
    subscriptions: Mapping[str, KnownSubscription],
    *,
    tenant_id: str,
    lifecycle_endpoint: bool,
) -> tuple[list[Item], list[Drop]]:
    """Keep the items of our subscriptions whose clientState and tenant match; the rest of a batch still counts."""
    items: list[Item] = []
    drops: list[Drop] = []
    tenants = (tenant_id,) if tenant_id else ()  # no tenant configured: nothing is ours (fail closed)
    for notification in collection.value:
        sub = subscriptions.get(notification.subscription_id)
        expected = {sub.id: sub.client_state} if sub is not None else {}
        reason = verify_notification_item(notification, expected, tenant_ids=tenants)
        # A lifecycle URL receives only lifecycle events (change-notifications-lifecycle-events);
        # the notification URL takes both, as a subscription may use one URL for both.
        if reason is None and lifecycle_endpoint and not notification.is_lifecycle:
            reason = "wrong_endpoint"
        if reason is None and sub is not None:
            items.append(Item(notification, sub))
        elif sub is None:
            claimed = notification.subscription_id if _GUID.match(notification.subscription_id) else None
            drops.append(Drop(reason or "unknown_subscription", "unknown", claimed=claimed))
        else:
            drops.append(Drop(reason or "malformed", sub.id))
    return items, drops


@dataclass
class TokenCheck:
    """What `check_tokens` decided: items kept (some marked `fallback`), drops, whether Graph
    should retry the POST, and the token report (None when no item relied on tokens)."""

    items: list[Item]
    drops: list[Drop] = field(default_factory=list)
    retry: bool = False
    report: TokenReport | None = None


async def check_tokens(
    collection: ChangeNotificationCollection,
    items: list[Item],
    *,
    jwks: JwksCache,
    settings: Settings,
    source: Source = "webhook",
) -> TokenCheck:
    """Validate `validationTokens` when the items rely on them.

    Rich items always rely on them; lifecycle items when tokens are present. "If
    any tokens fail, consider the change notification suspicious" (change-notifications-
    with-resource-data, How to validate), and which `aud` Graph uses for an Agent
    Identity is not documented (issue 11). So when they fail (or are missing):

    - a rich change item is kept but marked `fallback`: its content is not trusted,
      the message is read from Graph by its id (its clientState already matched);
    - a lifecycle item is dropped, or deferred (retry) when the signing key is not
      known yet; one whose tokens name our Blueprint, and are otherwise Entra's, is
      kept: the lifecycle gate checks every event with Graph before acting.

    Only the Agent Identity's app id (`settings.audience`) counts as verified.
    Basic items never rely on tokens: what they name is fetched with our own token.
    """
    tokens_present = collection.validation_tokens is not None
    if source == "eventhub" and not tokens_present:
        # "No validationTokens are sent" to an event hub (change-notifications-delivery-event-hubs).
        # The hub authenticates the sender instead: only holders of Azure Event Hubs Data Sender
        # on the namespace (Graph's Change Tracking app) can write to it, and we read it over TLS
        # with our own Entra token. Tokens that are present are still checked.
        return TokenCheck(items)
    relies = [i for i in items if i.rich or (i.notification.is_lifecycle and tokens_present)]
    if not relies:
        return TokenCheck(items)
    report = await assess_tokens(
        collection.validation_tokens,
        jwks=jwks,
        audiences={a for a in (settings.audience,) if a},  # empty: "not_configured", never aud ""
        blueprint_audiences={a for a in (settings.blueprint_app_id,) if a} - {settings.audience},
        tenant_ids={t for t in (settings.tenant_id,) if t},
        caller_app_id=settings.change_tracking_app_id,
    )
    if report.reason is None:
        return TokenCheck(items, report=report)
    reason = f"token_{report.reason}"
    suspicious = {id(i) for i in relies}
    lifecycle = [i for i in relies if i.notification.is_lifecycle]
    if lifecycle and not report.blueprint and report.reason in _RETRYABLE_TOKEN_REASONS:
        return TokenCheck([i for i in items if id(i) not in suspicious],
                          [Drop(reason, i.subscription.id) for i in relies], retry=True, report=report)
    kept: list[Item] = []
    drops: list[Drop] = []
    for item in items:
        if id(item) not in suspicious:
            kept.append(item)
        elif not item.notification.is_lifecycle:
            kept.append(dataclasses.replace(item, fallback=reason))
        elif report.blueprint:
            kept.append(item)
        else:
            drops.append(Drop(reason, item.subscription.id))
    return TokenCheck(kept, drops, report=report)



# --- the pipeline --------------------------------------------------------------------


class NotificationPipeline:
    """Runs the steps for one POST body and tells the caller whether Graph should retry.

    `subscriptions` is a live view owned by the subscription manager. The callbacks
    must only queue work (a memory stream send, a task-group start): they run while
    Graph waits for our answer, so none may call Graph. They may run again for the
    same item after a retry, so they must be idempotent; an exception in one makes
    the POST answer 5xx so Graph delivers it again.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        inbox: Inbox,
        keyring: KeyRing,
        jwks: JwksCache,
        policy: TrustPolicy,
        subscriptions: Mapping[str, KnownSubscription],
        on_lifecycle: LifecycleCallback | None = None,
        on_mail_fetch: MailFetchCallback | None = None,
        on_chat_fetch: ChatFetchCallback | None = None,
        on_channel_fetch: ChannelFetchCallback | None = None,
        drop_log: DropLog | None = None,
        store: BatchStore | None = None,
        fallbacks: TokenFallbacks | None = None,
        source: Source = "webhook",
        yield_to_sinks: bool = True,
    ) -> None:
        self._settings, self._inbox, self._keyring, self._jwks = settings, inbox, keyring, jwks
        self._store: BatchStore = store or InboxStore(inbox)
        self._policy, self._subscriptions = policy, subscriptions
        self._on_lifecycle, self._on_mail_fetch, self._on_chat_fetch = on_lifecycle, on_mail_fetch, on_chat_fetch
        self._on_channel_fetch = on_channel_fetch
        self._drop_log = drop_log or DropLog()
        self.fallbacks = fallbacks or TokenFallbacks()
        self._fallback_log = DropLog()  # its own windows: a fallback line never hides a drop line
        self._worker = ThreadCoalescer()
        #: The transport the bodies come by ("webhook", or "eventhub": the same collection read from a hub).
        self.source: Source = source
        #: Yield once after a store so this process's sinks push before Graph's answer; an intake
        #: process has no sinks (agentseat/intake_workers), and the turn would be wasted.
        self._yield_to_sinks = yield_to_sinks

    def reject(self, reason: str, *, lifecycle_endpoint: bool = False) -> ProcessResult:
        """Record a body dropped before parsing (too large, wrong content type, unreadable)."""
        result = ProcessResult()
        self._report([Drop(reason)], result, lifecycle_endpoint)
        return result

    async def process(self, body: bytes, *, lifecycle_endpoint: bool) -> ProcessResult:
        """Parse, verify, decrypt, normalise, store and dispatch one POST body.

        Never raises for bad input: a drop is counted and logged. `InboxError`
        and callback failures set `retry`.
        """
        try:
            collection = parse_collection(body)
        except VerificationError as exc:
            return self.reject(exc.reason, lifecycle_endpoint=lifecycle_endpoint)
        return await self.process_collection(collection, lifecycle_endpoint=lifecycle_endpoint)

    async def process_collection(self, collection: ChangeNotificationCollection, *,
                                 lifecycle_endpoint: bool) -> ProcessResult:
        """`process` for a collection already parsed: the event hub merges the collections of one
        received batch into one (eventhub/consumer.py), one worker call and one transaction for all."""
        result = ProcessResult(received=len(collection.value))
        items, drops = screen_items(collection, self._subscriptions, tenant_id=self._settings.tenant_id,
                                    lifecycle_endpoint=lifecycle_endpoint)
        tokens = await check_tokens(collection, items, jwks=self._jwks, settings=self._settings, source=self.source)
        self.fallbacks.observe(tokens.report)
        if tokens.retry:
            # Nothing of this POST is used: Graph redelivers all of it, and the keys may be known by then.
            result.retry = True
            self._report(tokens.drops, result, lifecycle_endpoint, deferred=True)
            return result
        drops += tokens.drops
        worked = await self._work(self._within_fallback_budget(tokens.items, drops, result, lifecycle_endpoint))
        plan = worked.plan
        result.accepted = len(worked.items) - len(plan.drops)
        self._report(drops + worked.drops + plan.drops, result, lifecycle_endpoint)
        result.ignored = plan.ignored
        if plan.events:
            try:
                if worked.error is not None:
                    raise worked.error
                # Written in the worker: pending confirmations were durable before we got here.
                stored = await self._store.settle(plan.events, worked.written)
            except InboxError as exc:
                # Callbacks are skipped too: Graph redelivers the whole POST.
                log.error("notification_store_failed", error=exc.message, events=len(plan.events))
                result.retry = True
                return result
            result.stored = len(stored)
            if stored and self._yield_to_sinks:
                # The sinks were just woken: let them push before Graph gets its answer. Graph
                # waits up to 3 s for it; the agent is the one that notices a few hundred us.
                await anyio.sleep(0)
        await self._dispatch(plan, result, lifecycle_endpoint)
        # The one line per POST (a batch of up to 1,000 items), counts by outcome; never per item.
        if debug_on(__name__):
            log.debug("notification_processed", endpoint=_endpoint(lifecycle_endpoint), received=result.received,
                      accepted=result.accepted, stored=result.stored, fetches=result.fetches,
                      lifecycle=result.lifecycle, ignored=result.ignored, fallbacks=result.fallbacks,
                      dropped=dict(result.dropped))
        return result

    async def _work(self, items: list[Item]) -> Worked:
        """Decrypt, plan and store `items` with at most one worker-thread call for the POST."""
        if any(item.rich for item in items):
            # One call for all of it: RSA work is ~0.3 ms an item, and a hop costs about as much.
            # POSTs that arrive while it runs share the next hop (runtime/coalesce.py).
            return await self._worker.run(functools.partial(
                work_batch, items, self._keyring, self._policy, source=self.source, write=self._store.write))
        worked = work_batch(items, self._keyring, self._policy, source=self.source)  # nothing to decrypt
        if worked.plan.events:
            await self._worker.run(functools.partial(worked.store, self._store.write))
        return worked

    def _within_fallback_budget(self, items: list[Item], drops: list[Drop], result: ProcessResult,
                                lifecycle_endpoint: bool) -> list[Item]:
        """Items that may fall back to a Graph read; past the cap, a drop the kind's resync makes good."""
        kept: list[Item] = []
        for item in items:
            # Only chat changes cost a read (plan_actions ignores the other change types).
            change = item.notification.change_type
            if item.fallback and (change == "created" or (item.subscription.kind == "teams"
                                                          and change in ("updated", "deleted"))):
                sub = item.subscription
                if not self.fallbacks.admit(sub.kind, item.fallback):
                    drops.append(Drop("token_fallback_capped", sub.id))
                    continue
                result.fallbacks += 1
                self._fallback_log.record(Drop(item.fallback, sub.id), endpoint=_endpoint(lifecycle_endpoint),
                                          event="notification_token_fallback")
            kept.append(item)
        return kept

    async def _dispatch(self, plan: Plan, result: ProcessResult, lifecycle_endpoint: bool) -> None:
        calls: list[tuple[str, Any, tuple[Any, ...], str]] = []
        for sub, event in plan.lifecycle:
            log.info("lifecycle_notification", subscription=sub.id, lifecycle_event=event[:64])
            calls.append(("lifecycle", self._on_lifecycle, (sub, event), sub.id))
        calls += [("mail", self._on_mail_fetch, (mid, partial), "-") for mid, partial in plan.mail_fetches.items()]
        calls += [("chat", self._on_chat_fetch, pair, "-") for pair in plan.chat_fetches]
        calls += [("channel", self._on_channel_fetch, (ref,), "-") for ref in plan.channel_fetches]
        unhandled: list[Drop] = []
        for kind, callback, args, sub_id in calls:
            if callback is None:
                unhandled.append(Drop(f"unhandled_{kind}", sub_id))
                continue
            try:
                await callback(*args)
            except Exception as exc:  # a failed queue: Graph must deliver again ("not processed or queued")
                log.error("notification_callback_failed", callback=kind, error=type(exc).__name__)
                result.retry = True
                continue
            if kind == "lifecycle":
                result.lifecycle += 1
            else:
                result.fetches += 1
        self._report(unhandled, result, lifecycle_endpoint)

    def _report(self, drops: Iterable[Drop], result: ProcessResult, lifecycle_endpoint: bool,
                *, deferred: bool = False) -> None:
        for drop in grouped(drops):
            if deferred:  # not dropped: Graph delivers these items again
                self._drop_log.record(drop, endpoint=_endpoint(lifecycle_endpoint), event="notification_deferred")
            else:
                result.dropped[drop.reason] += drop.items
                self._drop_log.record(drop, endpoint=_endpoint(lifecycle_endpoint))


def _endpoint(lifecycle_endpoint: bool) -> str:
    return "lifecycle" if lifecycle_endpoint else "notifications"
