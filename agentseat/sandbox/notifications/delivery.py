"""The change-notification delivery engine: from a new chat message or mail to POSTs.

Owns matching a change to live subscriptions, building one notification per
subscription (payloads.py), queueing it per notification URL
(queue.py), lifecycle notifications and their cadence, the validation
handshake, and pausing a subscription whose access token expired. Route modules
call `chat_message`/`mail_message` (synchronous: they only enqueue) on the
sandbox's event loop; `run` owns every worker in one task group.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import aiohttp
import anyio
import structlog
from cryptography import x509
from yarl import URL

from . import payloads
from ..eventhubs import bridge as eventhub_bridge
from .queue import Item, Outbox
from ..graph.resources import mail_json
from .resources import ResourceError, ResourceSpec
from .rules import change_types, live_subscriptions, parse_certificate, spec_of

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import Channel, ChannelMessage, Chat, ChatMessage, MailMessage, Subscription, Team

log = structlog.get_logger(__name__)

#: Housekeeping period (sandbox seconds): expiry pruning, lifecycle cadence, `missed`.
TICK = 30.0
#: reauthorizationRequired cadence, simplified from the illustrative pseudo-code of
#: change-notifications-lifecycle-events ("under 60 min: notify every 15 min"): once
#: the access token or the subscription has under 60 minutes left, one notice every
#: 15 minutes, counted from creation or the last renewal or reauthorization.
REAUTHORIZE_LEAD = 3600.0
REAUTHORIZE_EVERY = 900.0
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


class DeliveryEngine:
    """Graph's notification service for the sandbox tenant."""

    def __init__(self, sb: SandboxState) -> None:
        self.sb = sb
        self.outbox = Outbox(sb, self)
        self._specs: dict[str, ResourceSpec] = {}
        self._certs: dict[str, x509.Certificate] = {}
        self._reauth_sent: dict[str, float] = {}
        self._missed: dict[str, float] = {}  # Outlook subscription id -> end of the drop window

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled; workers live and die in this task group."""
        async with anyio.create_task_group() as tg:
            self.outbox.start(tg)
            task_status.started()
            while True:
                self.tick()
                await self.sb.clock.sleep(TICK)

    # --- changes -------------------------------------------------------------------------
    def chat_message(self, chat: Chat, msg: ChatMessage, change_type: str = "created") -> int:
        """Queue notifications for a chat message; returns how many were queued.

        Matches `/users/{id}/chats/getAllMessages` for every member of the chat
        (the sender included: Graph notifies about one's own messages too) and
        `/chats/{id}/messages`.
        """
        queued = 0
        for sub, spec in self._matching(change_type):
            if spec.is_teams and spec.matches_chat(chat):
                body = payloads.chat_notification(self.sb, sub, msg, change_type, self._cert(sub))
                queued += self._queue(sub, spec, body)
        return queued

    def channel_message(self, team: Team, channel: Channel, msg: ChannelMessage, change_type: str = "created") -> int:
        """Queue notifications for a channel post or reply (`/teams/{id}/channels/{id}/messages`
        covers both: "messages (and replies) in a channel"); returns how many were queued."""
        queued = 0
        for sub, spec in self._matching(change_type):
            if spec.matches_channel(msg):
                body = payloads.channel_notification(self.sb, sub, msg, change_type, self._cert(sub))
                queued += self._queue(sub, spec, body)
        return queued

    def mail_message(self, msg: MailMessage, change_type: str = "created") -> int:
        """Queue notifications for a message in a mailbox (`/me/messages` matches every folder)."""
        queued = 0
        full: dict[str, Any] | None = None
        for sub, spec in self._matching(change_type):
            if not spec.is_outlook:
                continue
            full = full if full is not None else mail_json(self.sb, msg)
            if spec.matches_mail(msg, full):
                body = payloads.mail_notification(self.sb, sub, spec, msg, change_type, self._cert(sub))
                queued += self._queue(sub, spec, body)
        return queued

    def _matching(self, change_type: str) -> list[tuple[Subscription, ResourceSpec]]:
        found = []
        for sub in live_subscriptions(self.sb):
            spec = self.spec(sub)
            if spec is not None and change_type in change_types(sub.change_type):
                found.append((sub, spec))
        return found

    def _queue(self, sub: Subscription, spec: ResourceSpec, body: dict[str, Any]) -> int:
        faults, stats = self.sb.faults, self.sb.stats.notifications
        if faults.chance(faults.drop):
            stats["dropped"] += 1
            return 0
        now = self.sb.clock.now()
        # Graph's own delivery delay (subscription resource, "Latency" table: chat average under
        # 10 s, maximum 1 minute; mail average under 1 minute, maximum 3 minutes), per notification.
        delay = self.sb.behaviour.delivery_delay("mail" if spec.is_outlook else "chat")
        self.outbox.put(sub.notification_url, Item(
            body=body, sub_id=sub.id, audience=payloads.token_audience(sub) if sub.include_resource_data else "",
            lifecycle=False, outlook=spec.is_outlook, enqueued=now, not_before=now + delay,
        ))
        return 1

    # --- lifecycle -----------------------------------------------------------------------
    def lifecycle(self, sub: Subscription, event: str) -> bool:
        """POST a lifecycle notification to the subscription's lifecycleNotificationUrl.

        Whether lifecycle POSTs for rich subscriptions carry validationTokens is not
        stated (reference §7, AMBIGUOUS); the sandbox includes them, so a runtime that
        validates tokens whenever present is exercised. Returns False without a URL.
        """
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"unknown lifecycle event {event!r}")
        if not sub.lifecycle_url:
            log.info("lifecycle_not_sent", subscription=sub.id, lifecycle_event=event, reason="no_lifecycle_url")
            return False
        spec = self.spec(sub)
        now = self.sb.clock.now()
        self.outbox.put(sub.lifecycle_url, Item(
            body=payloads.lifecycle_notification(self.sb, sub, event), sub_id=sub.id,
            audience=payloads.token_audience(sub) if sub.include_resource_data else "", lifecycle=True,
            outlook=spec is not None and spec.is_outlook, enqueued=now, not_before=now,
        ))
        self.sb.stats.notifications[f"lifecycle_{event}"] += 1
        log.info("lifecycle_queued", subscription=sub.id, lifecycle_event=event)
        return True

    def refreshed(self, sub: Subscription) -> None:
        """The subscription's access token was renewed: held notifications may go."""
        self._reauth_sent.pop(sub.id, None)
        self.outbox.wake_all()

    def forget(self, sub_id: str) -> None:
        """The subscription is gone; its queued change notifications are discarded at send time."""
        for cache in (self._specs, self._certs, self._reauth_sent):
            cache.pop(sub_id, None)

    def tick(self) -> None:
        """Periodic duties: prune expired subscriptions, send due reauthorizationRequired
        notices, and `missed` for Outlook subscriptions whose drop window ended."""
        now = self.sb.clock.now()
        for sub in live_subscriptions(self.sb):
            deadline = min(sub.token_expires or math.inf, sub.expiration)
            if not sub.lifecycle_url or deadline - now > REAUTHORIZE_LEAD:
                continue
            since = max(self._reauth_sent.get(sub.id, 0.0), sub.created, sub.last_reauthorize, sub.last_patch)
            if now - since >= REAUTHORIZE_EVERY:
                self._reauth_sent[sub.id] = now
                self.lifecycle(sub, "reauthorizationRequired")
        for sub_id, until in list(self._missed.items()):
            if now < until:
                continue
            del self._missed[sub_id]
            sub = self.sb.tenant.subscriptions.get(sub_id)
            if sub is not None:
                self.lifecycle(sub, "missed")
        self.outbox.wake_all()

    # --- hooks for the outbox ------------------------------------------------------------
    def sub_alive(self, sub_id: str) -> bool:
        sub = self.sb.tenant.subscriptions.get(sub_id)
        return sub is not None and sub.expiration > self.sb.clock.now()

    def token_valid(self, sub_id: str) -> bool:
        sub = self.sb.tenant.subscriptions.get(sub_id)
        return sub is not None and (not sub.token_expires or sub.token_expires > self.sb.clock.now())

    def note_lost(self, item: Item, until: float) -> None:
        """A change notification was dropped for a slow endpoint: Outlook subscriptions get
        `missed` ("Some notifications weren't delivered, for example because of throttling",
        change-notifications-lifecycle-events) once the drop window ends, when Graph knows
        the loss is final; Teams subscriptions get nothing (`missed` is Outlook-only)."""
        if item.outlook and not item.lifecycle:
            self._missed[item.sub_id] = max(self._missed.get(item.sub_id, 0.0), until)

    # --- helpers -------------------------------------------------------------------------
    def spec(self, sub: Subscription) -> ResourceSpec | None:
        spec = self._specs.get(sub.id)
        if spec is None:
            try:
                spec = self._specs[sub.id] = spec_of(self.sb, sub)
            except ResourceError:
                log.warning("subscription_resource_unparsable", subscription=sub.id)
                return None
        return spec

    def _cert(self, sub: Subscription) -> x509.Certificate | None:
        if not sub.include_resource_data or not sub.encryption_certificate:
            return None
        cert = self._certs.get(sub.id)
        if cert is None:
            cert = self._certs[sub.id] = parse_certificate(sub.encryption_certificate)
        return cert

    async def validate_url(self, url: str) -> str | None:
        """The validation handshake (change-notifications-delivery-webhooks, "notificationUrl
        validation"). Returns None on success, else `timeout`, `unreachable`, `status`,
        `content_type` or `echo`.

        POST `url?validationToken=<percent-encoded token>` (the URL's own query string
        is kept) with `Content-Type: text/plain; charset=utf-8` and an empty body; the
        endpoint must answer 200, text/plain, and the URL-decoded token, within 10 s.
        The token is opaque and, like Graph's, holds spaces and colons.
        """
        if eventhub_bridge.is_eventhub_url(url):
            # No handshake for Event Hubs: a validation message goes to the hub (bridge.py).
            self.sb.stats.notifications["validations"] += 1
            return eventhub_bridge.send_validation(self.sb, url)
        assert self.sb.http is not None, "the sandbox's HTTP session starts with the server"
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        base = str(URL(url))
        target = URL(f"{base}{'&' if '?' in base else '?'}validationToken={_form_encode(token)}", encoded=True)
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        try:
            with anyio.fail_after(self.sb.options.validation_timeout):
                async with self.sb.http.post(target, data=b"", headers=headers,
                                             ssl=self.outbox.ssl_context()) as resp:
                    raw = await resp.read()
                    status, content_type = resp.status, resp.content_type
        except TimeoutError:
            failure = "timeout"
        except (aiohttp.ClientError, OSError):
            failure = "unreachable"
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            # "If the client returns an encoded validation token, the validation fails."
            failure = ("status" if status != 200 else "content_type" if content_type != "text/plain"
                       else "echo" if text != token else None)
        self.sb.stats.notifications["validations"] += 1
        if failure:
            self.sb.stats.notifications["validation_failed"] += 1
            log.info("validation_failed", url=url, reason=failure)
        return failure


def _form_encode(token: str) -> str:
    """Encode as Graph does on the wire: form encoding, spaces as `+`, lowercase
    escapes (observed: `validationToken=Validation%3a+Testing+client+...`)."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote_plus(token, safe=""))
