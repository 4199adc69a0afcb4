"""The notification pipeline: from the body of a Graph POST to stored events and queued fetches.

Steps, each a function testable alone: `parse_collection` -> `screen_items` ->
`check_tokens` -> `decrypt_items` -> `plan_actions` -> store (one call of the `store`
callback, the runtime's `Intake.admit`, which keeps claims Graph must confirm durably)
-> dispatch (callbacks). `NotificationPipeline.process` runs them in order and
logs every drop once per (reason, subscription) per minute. Items whose clientState
matched but whose validation tokens did not verify are fetched from Graph instead of
decrypted, within the budget of runtime/token_fallback.py.

It owns the drop rules and their log lines. It does not own HTTP (runtime/webhook.py),
the trust primitives (runtime/verify.py), the crypto (runtime/crypto.py), the Event
shape (runtime/normalize.py, runtime/inbox.py) or any Graph call: bodies that a
notification cannot carry are fetched by the runtime behind the callbacks.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from pydantic import ValidationError

from agentseat.channels.normalize import ChannelRef, plan_item
from agentseat.errors import InboxError
from agentseat.graph.models import ChangeNotification, ChangeNotificationCollection
from agentseat.graph.subscription import KnownSubscription, is_channel_kind

from .crypto import DecryptionError, KeyRing
from .droplog import Drop, DropLog, grouped
from .events import Source
from .inbox import Event, Inbox
from .normalize import TrustPolicy, chat_change_event, chat_message_event
from .token_fallback import TokenFallbacks
from .verify import JwksCache, TokenReport, VerificationError, assess_tokens, verify_notification_item

if TYPE_CHECKING:
    from agentseat.config import Settings

__all__ = [
    "ChatFetchCallback", "Drop", "DropLog", "Item", "KnownSubscription", "LifecycleCallback", "MailFetchCallback",
    "NotificationPipeline", "Plan", "ProcessResult", "StoreCallback", "TokenCheck", "check_tokens", "decrypt_items",
    "parse_collection", "plan_actions", "screen_items",
]

log = structlog.get_logger(__name__)

# Token failures that a later delivery can cure: the signing key is not in our JWKS
# copy yet (keys "are rotated daily", How to validate) or the JWKS endpoint was down.
# Only a sender that knows the clientState gets this far, so retrying is no oracle.
# Used for lifecycle items only: a change item falls back to a Graph read instead.
_RETRYABLE_TOKEN_REASONS = frozenset({"unknown_kid"})
#: `Item.fallback` of a hub item encrypted for another machine's certificate (`decrypt_items`).
FOREIGN_CERTIFICATE = "foreign_certificate"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# `resource` is an opaque relative path; Graph writes both `chats('x')/messages('y')`
# and `chats/x/messages/y` forms (change-notifications-delivery-webhooks examples).
_CHAT_IN_RESOURCE = re.compile(r"(?i)\bchats(?:\('([^']+)'\)|/([^/('?]+))")
_MESSAGE_IN_RESOURCE = re.compile(r"(?i)\bmessages(?:\('([^']+)'\)|/([^/('?]+))")

LifecycleCallback = Callable[[KnownSubscription, str], Awaitable[None]]
MailFetchCallback = Callable[[str, dict[str, Any]], Awaitable[None]]
ChatFetchCallback = Callable[[str, str], Awaitable[None]]
ChannelFetchCallback = Callable[[ChannelRef], Awaitable[None]]
#: Hands normalised events on (the runtime's `Intake.admit`); returns those appended to the inbox.
StoreCallback = Callable[[list[Event]], Awaitable[list[Event]]]


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


@dataclass(frozen=True, slots=True)
class Item:
    """An item that passed the checks so far; `resource` is the decrypted resource of a rich item.

    `fallback` (a `token_*` reason) marks a rich item whose validation tokens did not
    verify: its content is never decrypted, the message it names is read from Graph. So is
    a hub item encrypted for another machine's certificate (`FOREIGN_CERTIFICATE`).
    """

    notification: ChangeNotification
    subscription: KnownSubscription
    resource: dict[str, Any] | None = None
    fallback: str | None = None

    @property
    def rich(self) -> bool:
        return self.notification.encrypted_content is not None


@dataclass
class Plan:
    """What the accepted items ask for: events to store, fetches and lifecycle reactions to queue."""

    events: list[Event] = field(default_factory=list)
    chat_fetches: list[tuple[str, str]] = field(default_factory=list)
    mail_fetches: dict[str, dict[str, Any]] = field(default_factory=dict)
    channel_fetches: list[ChannelRef] = field(default_factory=list)
    lifecycle: list[tuple[KnownSubscription, str]] = field(default_factory=list)
    ignored: int = 0
    drops: list[Drop] = field(default_factory=list)


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


def decrypt_items(items: list[Item], keyring: KeyRing, read_foreign: bool = False) -> tuple[list[Item], list[Drop]]:
    """Decrypt every rich item (CPU bound: the caller runs this in a worker thread, once per POST)."""
    kept: list[Item] = []
    drops: list[Drop] = []
    for item in items:
        encrypted = item.notification.encrypted_content
        if encrypted is None or item.fallback:  # a fallback item's content is never trusted, so never read
            kept.append(item)
            continue
        try:
            resource = json.loads(keyring.decrypt(encrypted))
        except DecryptionError as exc:
            if read_foreign and exc.reason == "unknown_certificate":
                # A hub's items (`read_foreign`) are encrypted for the certificate of the machine that made the
                # subscription; every machine has its own (its own `setup`): the others read the message from Graph.
                kept.append(dataclasses.replace(item, fallback=FOREIGN_CERTIFICATE))
                continue
            drops.append(Drop(f"decrypt_{exc.reason}", item.subscription.id))
            continue
        except ValueError:  # not UTF-8 or not JSON (UnicodeDecodeError is a ValueError)
            resource = None
        if not isinstance(resource, dict):
            drops.append(Drop("decrypt_not_json", item.subscription.id))
            continue
        kept.append(dataclasses.replace(item, resource=resource))
    return kept, drops


def _from_resource(pattern: re.Pattern[str], resource: str | None) -> str | None:
    match = pattern.search(resource or "")
    return (match.group(1) or match.group(2)) if match else None


def plan_actions(items: Iterable[Item], policy: TrustPolicy, *, source: Source = "webhook") -> Plan:
    """Normalise accepted items into events, fetches and lifecycle reactions (no I/O)."""
    plan = Plan()
    for item in items:
        n, sub = item.notification, item.subscription
        if n.lifecycle_event is not None:
            plan.lifecycle.append((sub, n.lifecycle_event))
            continue
        change = n.change_type
        if change not in ("created", "updated", "deleted") or (change != "created" and sub.kind != "teams"):
            # Mail subscribes to `created` only (subscriptions/specs.py); anything else is not ours to act on.
            plan.ignored += 1
            continue
        if is_channel_kind(sub.kind):  # by the chat rules (channels/normalize.py, `plan_item`)
            outcome = plan_item(n.resource, item.resource, rich=sub.rich, fallback=bool(item.fallback), policy=policy,
                                source=source)
            if isinstance(outcome, Event):
                plan.events.append(outcome)
            elif isinstance(outcome, ChannelRef):
                plan.channel_fetches.append(outcome)
            elif outcome == "ignored":
                plan.ignored += 1
            else:
                plan.drops.append(Drop(outcome, sub.id))
            continue
        data_id = n.resource_data.id if n.resource_data is not None else None
        resource = item.resource
        if change == "deleted":
            # A deleted message has no resource data to carry, so the item names only its id
            # (teams-changenotifications-chatmessage); what was deleted, and by whom, is read from Graph.
            resource = None
        elif resource is None and sub.rich and not item.fallback:
            # Graph sends resource data on every item of a subscription made with
            # includeResourceData (change-notifications-with-resource-data); an item
            # without it is not Graph's, and fetching what it names would let anyone
            # holding the clientState spend our Graph budget (issue 10, point 5).
            # Token fallbacks are read from Graph too, but within their own budget.
            plan.drops.append(Drop("basic_on_rich", sub.id))
            continue
        if sub.kind == "teams":
            chat_id = _from_resource(_CHAT_IN_RESOURCE, n.resource)
            if resource is None:
                message_id = data_id or _from_resource(_MESSAGE_IN_RESOURCE, n.resource)
                if not chat_id or not message_id:
                    plan.drops.append(Drop("malformed", sub.id))
                    continue
                plan.chat_fetches.append((chat_id, message_id))
                continue
            in_payload = resource.get("chatId")
            if in_payload is not None and not isinstance(in_payload, str):
                plan.drops.append(Drop("unusable", sub.id))  # Graph writes ids as strings
                continue
            # `updated` carries the message as it is now: an edit (or a deletion) becomes its own
            # event; one that is neither (a reaction) is nothing new.
            normalise = chat_message_event if change == "created" else chat_change_event
            try:
                event = normalise(resource, policy, source=source, confirmed=False,
                                  chat_id=in_payload or chat_id or None)
            except (InboxError, AttributeError, TypeError, ValueError, KeyError):
                # A chatMessage we cannot turn into a valid Event (odd types or dates).
                plan.drops.append(Drop("unusable", sub.id))
                continue
            if event is None:  # system message, our own, deleted or without a sender
                plan.ignored += 1
            else:
                plan.events.append(event)
            continue
        # Mail: a rich payload has only the $select-ed fields and never the body
        # (outlook-change-notifications-overview), so the runtime fetches the message.
        message_id = (resource or {}).get("id") or data_id or _from_resource(_MESSAGE_IN_RESOURCE, n.resource)
        if not isinstance(message_id, str) or not message_id:
            plan.drops.append(Drop("malformed", sub.id))
            continue
        plan.mail_fetches.setdefault(message_id, resource or {})
    return plan


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
        store: StoreCallback | None = None,
        fallbacks: TokenFallbacks | None = None,
        source: Source = "webhook",
    ) -> None:
        self._settings, self._inbox, self._keyring, self._jwks = settings, inbox, keyring, jwks
        self._store: StoreCallback = store or inbox.aappend
        self._policy, self._subscriptions = policy, subscriptions
        self._on_lifecycle, self._on_mail_fetch, self._on_chat_fetch = on_lifecycle, on_mail_fetch, on_chat_fetch
        self._on_channel_fetch = on_channel_fetch
        self._drop_log = drop_log or DropLog()
        self.fallbacks = fallbacks or TokenFallbacks()
        self._fallback_log = DropLog()  # its own windows: a fallback line never hides a drop line
        #: The transport the bodies come by ("webhook", or "eventhub": the same collection read from a hub).
        self.source: Source = source

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
        items = self._within_fallback_budget(tokens.items, drops, result, lifecycle_endpoint)
        if any(item.rich for item in items):
            # One thread hop for the whole POST: RSA work per item is ~1 ms, a hop costs more.
            items, decrypt_drops = await anyio.to_thread.run_sync(decrypt_items, items, self._keyring,
                                                                  self.source == "eventhub")
            drops += decrypt_drops
        plan = plan_actions(items, self._policy, source=self.source)
        result.accepted = len(items) - len(plan.drops)
        self._report(drops + plan.drops, result, lifecycle_endpoint)
        result.ignored = plan.ignored
        if plan.events:
            try:
                # One SQLite transaction per POST; pending confirmations are durable when it returns.
                stored = await self._store(plan.events)
            except InboxError as exc:
                # Callbacks are skipped too: Graph redelivers the whole POST.
                log.error("notification_store_failed", error=exc.message, events=len(plan.events))
                result.retry = True
                return result
            result.stored = len(stored)
        await self._dispatch(plan, result, lifecycle_endpoint)
        log.debug("notification_processed", endpoint=_endpoint(lifecycle_endpoint), received=result.received,
                  accepted=result.accepted, stored=result.stored, fetches=result.fetches,
                  lifecycle=result.lifecycle, ignored=result.ignored, dropped=sum(result.dropped.values()))
        return result

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
