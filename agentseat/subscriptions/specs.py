"""What the agent subscribes to: resource, change type, lifetime and payload per kind.

Rules from Graph's docs: chat messages for all of a user's chats are
`/users/{id}/chats/getAllMessages` (delegated Chat.Read), rich notifications
need an encryption certificate, and Teams subscriptions over an hour need a
lifecycle URL (subscription-post-subscriptions). Lifetimes: chatMessage 4,320
minutes (some tenants: 60, see refusals.py); mail 10,080 minutes without
resource data, 1,440 with it (subscription resource, "Subscription lifetime").

Mail subscribes without resource data: a rich mail notification never carries
the body (outlook-change-notifications-overview), so the runtime GETs every
message by id either way; basic costs the same one read per message and lives
seven times longer (README, "Mail subscriptions: why basic"). A basic
notification is only a claim: the message is read from Graph before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..config import Settings

#: Mail fields a rich notification may carry (Body/UniqueBody cannot be selected); used
#: only if mail is subscribed with resource data (`mail_rich_spec`).
MAIL_SELECT = "id,subject,from,receivedDateTime,bodyPreview,conversationId,internetMessageId"
MAIL_RESOURCE = "/me/mailFolders('inbox')/messages"


@dataclass(frozen=True)
class SubscriptionSpec:
    kind: str  # "teams" | "mail"
    resource: str
    change_type: str
    minutes: int
    rich: bool = True
    #: Asked for this much less than `minutes`, so a lifetime read from Graph's refusal is not
    #: refused again for the clock difference between us and Graph.
    slack_seconds: int = 0

    def body(self, *, notification_url: str, lifecycle_url: str, client_state: str,
             certificate_b64: str, certificate_id: str, now: datetime | None = None) -> dict[str, Any]:
        """The POST /subscriptions body."""
        body: dict[str, Any] = {
            "changeType": self.change_type,
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": self.resource,
            "expirationDateTime": expiry(self.minutes, now, slack=self.slack_seconds),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        }
        if self.rich:
            body |= {"includeResourceData": True, "encryptionCertificate": certificate_b64,
                     "encryptionCertificateId": certificate_id}
        return body

    def same_payload(self, live: dict[str, Any]) -> bool:
        """A live subscription made with the other payload choice (rich mail from an earlier
        version) is replaced: the pipeline screens items by what the subscription promises."""
        rich = live.get("includeResourceData")
        if rich is not None and bool(rich) != self.rich:
            return False
        # changeType cannot be PATCHed (subscription-update): one made by an earlier version
        # for `created` only would never deliver edits and deletions, so it is replaced too.
        live_types = live.get("changeType")
        return live_types is None or _types(str(live_types)) == _types(self.change_type)

    def matches(self, resource: str) -> bool:
        """Same resource path; the query (`$select`) may differ, so a subscription made with
        another payload choice is found, and replaced, rather than left to run beside ours."""
        return _norm(resource).partition("?")[0] == _norm(self.resource).partition("?")[0]


def _types(value: str) -> frozenset[str]:
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def _norm(resource: str) -> str:
    return resource.strip().lstrip("/").lower().replace("mailfolders/inbox", "mailfolders('inbox')")


def expiry(minutes: int, now: datetime | None = None, *, slack: float = 0.0) -> str:
    when = (now or datetime.now(UTC)) + timedelta(minutes=minutes) - timedelta(seconds=slack)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def desired_specs(settings: Settings) -> list[SubscriptionSpec]:
    """The subscriptions a webhook-mode runtime keeps alive."""
    return [
        SubscriptionSpec(
            kind="teams",
            resource=f"/users/{settings.agent_user_id}/chats/getAllMessages",
            # Edits and deletions arrive as `updated` / `deleted` (teams-changenotifications-chatmessage:
            # "subscribe to changes (create, update, and delete) to messages in a channel or chat").
            change_type="created,updated,deleted",
            minutes=settings.chat_subscription_minutes,
        ),
        SubscriptionSpec(
            kind="mail",
            resource=MAIL_RESOURCE,
            change_type="created",
            minutes=settings.mail_subscription_minutes,
            rich=False,
        ),
    ]


def mail_rich_spec(minutes: int = 1440) -> SubscriptionSpec:
    """The rich alternative (1,440 minutes at most, body never included), kept for the
    measurement in tests/subscriptions/test_mail_basic.py."""
    return SubscriptionSpec(kind="mail", resource=f"{MAIL_RESOURCE}?$select={MAIL_SELECT}", change_type="created",
                            minutes=minutes, rich=True)
