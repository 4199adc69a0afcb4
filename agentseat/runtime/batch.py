"""One POST's accepted items in the worker thread: decrypt, plan and store in one call.

The notification pipeline (runtime/pipeline.py) checks a body on the event loop, then
hands what passed to `work_batch` in a single `anyio.to_thread.run_sync`: decrypting
(RSA-OAEP, AES, HMAC), normalising into events and the SQLite writes would each cost a
thread hop of their own otherwise, and a hop costs more than the planning
(bench/hotpath.py, the `webhook_one_hop` variant). `decrypt_items` and `plan_actions` stay
pure steps, testable alone; `BatchStore` splits storing into the part that runs in the
worker (`write`: SQLite only) and the part that runs back on the loop (`settle`: counters,
wake-ups, anything async).

It does not own the checks before (runtime/pipeline.py), the crypto (runtime/crypto.py),
the routing of events (runtime/intake.py) or the Event shape (runtime/events.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentseat.channels.normalize import ChannelRef, plan_item
from agentseat.errors import InboxError
from agentseat.graph.models import ChangeNotification
from agentseat.graph.subscription import KnownSubscription, is_channel_kind

from .crypto import DecryptionError, KeyRing
from .droplog import Drop
from .events import Event, Source
from .inbox import Inbox
from .normalize import TrustPolicy, chat_change_event, chat_message_event

__all__ = ["FOREIGN_CERTIFICATE", "BatchStore", "InboxStore", "Item", "Plan", "Worked", "decrypt_items", "plan_actions",
           "work_batch"]

#: `Item.fallback` of a hub item encrypted for another machine's certificate (`decrypt_items`).
FOREIGN_CERTIFICATE = "foreign_certificate"

# `resource` is an opaque relative path; Graph writes both `chats('x')/messages('y')`
# and `chats/x/messages/y` forms (change-notifications-delivery-webhooks examples).
_CHAT_IN_RESOURCE = re.compile(r"(?i)\bchats(?:\('([^']+)'\)|/([^/('?]+))")
_MESSAGE_IN_RESOURCE = re.compile(r"(?i)\bmessages(?:\('([^']+)'\)|/([^/('?]+))")


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


class BatchStore(Protocol):
    """Where a POST's events go, in two halves around the worker-thread call.

    `write` runs in the worker thread, inside `work_batch`: SQLite reads and writes only,
    no event-loop state (it may raise `InboxError`: Graph then delivers the POST again).
    `settle` runs back on the loop with what `write` returned: counters, wake-ups, and
    anything that must await; it returns the events appended to the inbox (with seq) and
    may raise `InboxError` too.
    """

    def write(self, events: list[Event]) -> Any: ...

    async def settle(self, events: list[Event], written: Any) -> list[Event]: ...


class InboxStore:
    """Events straight into the inbox, one transaction (no intake: tools and tests)."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def write(self, events: list[Event]) -> list[Event]:
        return self.inbox.append(events)

    async def settle(self, events: list[Event], written: list[Event]) -> list[Event]:
        if written:
            self.inbox.wake()  # the append ran in the worker thread: wake same-process sinks here
        return written

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


@dataclass
class Worked:
    """What `work_batch` did: the items it kept, its decrypt drops, the plan, and what the
    store's `write` returned, or the `InboxError` it raised (nothing of the POST is stored then)."""

    items: list[Item]
    drops: list[Drop]
    plan: Plan
    written: Any = None
    error: InboxError | None = None

    def store(self, write: Callable[[list[Event]], Any]) -> Worked:
        """Run `write` on the plan's events (in the worker thread), keeping its error."""
        if self.plan.events:
            try:
                self.written = write(self.plan.events)
            except InboxError as exc:
                self.error = exc
        return self


def work_batch(items: list[Item], keyring: KeyRing, policy: TrustPolicy, *, source: Source = "webhook",
               write: Callable[[list[Event]], Any] | None = None) -> Worked:
    """Decrypt, plan and (with `write`) store one POST's items: the body of its one worker-thread call."""
    # A hub's items may be for another machine's certificate (read from Graph instead); a webhook's never are.
    read_foreign = source == "eventhub"
    kept, drops = decrypt_items(items, keyring, read_foreign) if any(item.rich for item in items) else (items, [])
    worked = Worked(kept, drops, plan_actions(kept, policy, source=source))
    return worked.store(write) if write is not None else worked
